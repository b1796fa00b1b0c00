"""Training: :func:`fit` and what it is made of.

- :mod:`~fastnn.training.options`: :class:`FitConfig`, how a fit trains
  (every keyword of ``fit`` but the data), its defaults written once and
  validated once;
- :mod:`~fastnn.training.loop`: the epoch loop (:func:`fit`), the compiled
  chunks of batches, divergence and Ctrl-C;
- :mod:`~fastnn.training.tuning`: the step plan of a threaded fit (which
  phases split over the threads, or one thread), timed on its first batches;
- :mod:`~fastnn.training.plan`: the config checked against the model and the
  data (:class:`FitPlan`): the validation split, sample and class weights;
- :mod:`~fastnn.training.state`: what a fit carries between epochs
  (:class:`TrainState`) and its checkpoint file;
- :mod:`~fastnn.training.history`: :class:`History` and :class:`Callback`.

The names below are re-exported here: ``fastnn.training.fit``,
``fastnn.training.History``, ... stay where they were.
"""
from .history import Callback, History
from .loop import (CHUNK_ROWS, DIVERGED_LOSS, EpochRun, TrainingDivergedWarning, Workspace,
                   chunk_rows, epoch_order, fit)
from .options import (CLASS_WEIGHTS, LOSS_REDUCTIONS, MONITORS, FitConfig, ShorthandDefault,
                      config_fields, shorthand_defaults)
from .plan import (FitPlan, check_without_data, plan_fit, random_split, resolve_optimizer,
                   stratified_split)
from .state import TrainState

__all__ = ["fit", "FitConfig", "config_fields", "Callback", "History",
           "TrainingDivergedWarning", "Workspace", "FitPlan", "TrainState", "EpochRun",
           "CHUNK_ROWS", "DIVERGED_LOSS", "LOSS_REDUCTIONS", "MONITORS", "CLASS_WEIGHTS",
           "ShorthandDefault", "shorthand_defaults", "plan_fit", "check_without_data",
           "resolve_optimizer", "stratified_split", "random_split", "chunk_rows", "epoch_order"]
