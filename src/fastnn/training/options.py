"""The configuration of one fit: :class:`FitConfig`, its defaults written once
and its arguments validated once.

:meth:`fastnn.MLP.fit` builds it from its keywords (``fit(X, y, epochs=5,
learning_rate=0.1)``) or takes one (``fit(X, y, config=FitConfig(...))``);
the training loop reads it; the config files' fit keys and their command-line
flags are its fields (:func:`config_fields`).

>>> from fastnn.training import FitConfig
>>> c = FitConfig(epochs=3, lr_schedule="cosine")
>>> c.epochs, c.batch_size, type(c.lr_schedule).__name__
(3, 128, 'Cosine')
>>> c.replace(batch_size=32).batch_size
32
>>> FitConfig(epochs=-1)
Traceback (most recent call last):
...
ValueError: epochs must be >= 0, got -1
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .. import optim, schedules
from ..augment import Augment
from .._validation import check_choice, check_float, check_int
from .history import Callback

if TYPE_CHECKING:  # pragma: no cover
    from .._typing import PathLike

#: ``fit(loss_reduction=...)``: the batch's loss is averaged over its rows (fastnn's
#: and PyTorch's default), over its weights (scikit-learn's normalisation with
#: sample weights), or summed (as the original reports write it).
LOSS_REDUCTIONS = ("mean", "weighted_mean", "sum")
#: ``fit(monitor=...)``: what early stopping and the best-epoch restore watch
#: (``val_accuracy`` for classifiers, ``val_r2`` for regressors).
MONITORS = ("val_loss", "val_accuracy", "val_r2")
#: ``fit(class_weight=...)`` by name.
CLASS_WEIGHTS = ("balanced",)


class ShorthandDefault(float):
    """A default of fit's SGD shorthand (``learning_rate``, ``momentum``, ``l1``,
    ``l2``): the value of :class:`fastnn.optim.SGD`'s default, marked, so that
    ``fit`` can tell an argument left out from one passed (with ``optimizer=``,
    the shorthand must be left out)."""

    __slots__ = ()


def shorthand_defaults() -> dict[str, ShorthandDefault]:
    """fit's SGD shorthand defaults, read from :class:`fastnn.optim.SGD`."""
    return {k: ShorthandDefault(v) for k, v in optim.params_of("sgd").items()
            if k in ("learning_rate", "momentum", "l1", "l2")}


_SGD = shorthand_defaults()
#: ``field(metadata=...)`` of the fields a config file cannot set (objects, the
#: optimizer's keys, which configs give as ``optimizer`` and its parameters, and
#: what the command line sets by flags of its own)
_NOT_A_CONFIG_KEY = {"config_key": False}


def _field(default: Any, *, config_key: bool = True) -> Any:
    return dataclasses.field(default=default, metadata={} if config_key else _NOT_A_CONFIG_KEY)


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """How :meth:`fastnn.MLP.fit` trains: every keyword of ``fit`` but the data
    (``X``, ``y``, ``sample_weight``, ``validation_data``), with its default.

    epochs : epochs to train (0: none).
    batch_size : rows per mini-batch (a batch never holds more than the
        training set).
    optimizer : a :mod:`fastnn.optim` optimizer (``SGD``, ``Adam``) or its
        name; it owns its state, so the same object passed to another
        ``fit`` continues from it, and so does a name (a new optimizer of
        that name with its defaults, taking the state of the model's previous
        optimizer when that one is of the same kind). Without it, ``learning_rate``,
        ``momentum``, ``l2`` and ``l1`` are the shorthand for
        ``fastnn.optim.SGD(...)`` (whose defaults they take), which continues
        the momentum of the model's previous SGD fit. ``model.optimizer_`` is
        the last one used.
    class_weight : ``"balanced"`` (n_samples / (n_classes * count), counted
        on the training rows, n_classes the classes present there, as
        scikit-learn's ``compute_class_weight``) or ``{class: weight}`` (classifiers only). It
        multiplies ``fit``'s ``sample_weight``: each row's loss is weighted,
        the batch's loss is the sum over its rows divided by its number of
        rows (``loss_reduction="mean"``) or by the sum of its rows' weights
        (``"weighted_mean"``, scikit-learn's normalisation). The history's
        ``loss`` is that weighted mean; ``val_loss`` is unweighted.
    validation_split : fraction of (X, y) held out, stratified and shuffled
        with the model's seed (or ``fit``'s ``validation_data=(X_val, y_val)``).
    early_stopping : patience in epochs on ``monitor`` (``"val_loss"`` or
        ``"val_accuracy"``; ``"val_r2"`` for a regressor), where an epoch
        improves only when it beats the best by more than ``min_delta``
        (None: off). The weights of the best epoch are restored at the end of
        every validated fit.
    lr_decay : multiply the learning rate by this after an epoch whose
        validation accuracy improved by less than ``lr_decay_threshold``,
        but never below ``min_learning_rate`` (the shorthand for
        ``lr_schedule=fastnn.schedules.Plateau(lr_decay, lr_decay_threshold,
        min_learning_rate)``).
    verbose : show a progress bar (tqdm).
    callbacks : objects with Keras-style ``on_*`` hooks (:class:`fastnn.Callback`).
    checkpoint : path; the full training state (weights, optimizer state,
        history, schedule, best weights) is saved there atomically after
        every epoch, and a later ``fit`` with the same path, data and
        arguments resumes from it, giving the weights of an uninterrupted run.
    loss_reduction : ``"mean"`` (default) steps on the batch's mean loss;
        ``"weighted_mean"`` on its weighted sum divided by the batch's weight
        sum (as ``"mean"`` without weights); ``"sum"`` on its sum, as the
        original reports' ``E = -sum_n sum_k t_k ln y_k``, so their learning
        rates and penalties apply as written: the step with ``learning_rate``
        eta and penalties l1, l2 (added to the summed gradient) equals the
        mean-loss step with eta*B, l1/B, l2/B for batch size B (for Adam:
        eps/B, l1/B, l2/B). A smaller last batch of an epoch (b < B rows) is
        scaled by the nominal B too, i.e. weighs B/b times its sum. The
        history's ``loss`` is the mean per sample either way.
    shuffle : visit the training rows in a fresh random order each epoch
        (seeded by the model's seed and the epoch number); ``False``: in
        their given order.
    lr_schedule : a :mod:`fastnn.schedules` schedule (``Step``,
        ``Exponential``, ``Cosine``, ``Plateau``, ...), its name, or a mapping
        ``{"name": "cosine", "warmup_epochs": 2, ...}``: the rate of each
        epoch, scaling the optimizer's ``learning_rate`` (None: that rate
        throughout). Applied per epoch; epochs count from 0 in each ``fit``
        (a fit resumed from a checkpoint continues the count).
    augment : a :class:`fastnn.augment.Augment` (or a mapping of its
        parameters): every training image is deformed afresh in every epoch,
        in the compiled loop, reproducibly (keyed by the seed, the epoch and
        the row). Rows must be images: ``image_shape`` given, or square.
        Validation, evaluation and prediction never augment.
    exact_sums : make each batch's weight and bias gradients as float64 sums of
        float64 products (exact for float32 data), with the sample weights
        applied in them, then round them for the update: with
        ``loss_reduction="weighted_mean"`` (a batch over its weight sum, as
        the copies' mean; ``"mean"`` divides by the rows, not the copies) a
        row of integer weight w trains as w copies of it, whatever the rows' order, to the
        bit in float32 too (but where a float64 sum's own rounding flips its
        rounding to float32: about batch * 2**-29 of a step's gradients) (scikit-learn's sample-weight semantics, which
        :mod:`fastnn.sklearn`'s estimators keep). Costs time: the weight
        gradients run at the double kernels' speed. Dense products only (a
        sparse X is scattered into dense rows).

    Construction validates every field (a ``TypeError`` or ``ValueError``
    that names it) and normalises it (``lr_schedule`` becomes a
    :class:`~fastnn.schedules.Schedule`, ``augment`` an
    :class:`~fastnn.augment.Augment`, ``callbacks`` a tuple); what depends on
    the model (``monitor``'s metric, ``class_weight``'s classes, the
    augmentation's image shape) and on the data is checked by ``fit``.
    """

    epochs: int = _field(10)
    batch_size: int = _field(128)
    optimizer: optim.Optimizer | str | None = _field(None, config_key=False)
    learning_rate: float = _field(_SGD["learning_rate"], config_key=False)
    momentum: float = _field(_SGD["momentum"], config_key=False)
    l2: float = _field(_SGD["l2"], config_key=False)
    l1: float = _field(_SGD["l1"], config_key=False)
    class_weight: Literal["balanced"] | dict[int, float] | None = _field(None)
    validation_split: float = _field(0.0)
    early_stopping: int | None = _field(None)
    monitor: str = _field("val_loss")
    min_delta: float = _field(0.0)
    lr_decay: float | None = _field(None)
    lr_decay_threshold: float = _field(0.001)
    min_learning_rate: float = _field(0.0)
    verbose: bool = _field(True, config_key=False)
    callbacks: Sequence[Callback] | None = _field(None, config_key=False)
    checkpoint: PathLike | None = _field(None, config_key=False)
    loss_reduction: str = _field("mean")
    shuffle: bool = _field(True)
    lr_schedule: schedules.ScheduleSpec = _field(None)
    augment: Augment | Mapping[str, Any] | None = _field(None)
    exact_sums: bool = _field(False)

    def __post_init__(self) -> None:
        if self.lr_schedule is not None and self.lr_decay is not None:
            raise ValueError("give lr_schedule or lr_decay, not both (lr_decay=f is "
                             "lr_schedule=fastnn.schedules.Plateau(factor=f, ...))")
        if self.lr_decay is None:  # their rule is lr_decay's: alone they would do nothing
            fields = {f.name: f.default for f in dataclasses.fields(self)}
            unused = [k for k in ("lr_decay_threshold", "min_learning_rate")
                      if getattr(self, k) != fields[k]]
            if unused:
                raise ValueError(f"{' and '.join(unused)} {'go' if len(unused) > 1 else 'goes'} "
                                 f"with lr_decay, which is not given (a schedule takes its "
                                 f"own: lr_schedule={{'name': ..., 'min_learning_rate': ...}})")
        checked = {
            "epochs": check_int(self.epochs, "epochs", low=0),
            "batch_size": check_int(self.batch_size, "batch_size", low=1, high=2**31 - 1),
            "validation_split": check_float(self.validation_split, "validation_split",
                                            low=0.0, high=1.0, high_open=True),
            "early_stopping": check_int(self.early_stopping, "early_stopping", low=1,
                                        allow_none=True),
            "monitor": check_choice(self.monitor, "monitor", MONITORS),
            "min_delta": check_float(self.min_delta, "min_delta", low=0.0),
            "lr_decay": check_float(self.lr_decay, "lr_decay", low=0.0, high=1.0,
                                    low_open=True, allow_none=True),
            "lr_decay_threshold": check_float(self.lr_decay_threshold, "lr_decay_threshold"),
            "min_learning_rate": check_float(self.min_learning_rate, "min_learning_rate",
                                             low=0.0),
            "loss_reduction": check_choice(self.loss_reduction, "loss_reduction",
                                           LOSS_REDUCTIONS),
            "lr_schedule": schedules.make(self.lr_schedule),
        }
        if not isinstance(self.verbose, (bool, int, np.integer)):
            raise TypeError(f"verbose must be a bool, got {self.verbose!r}")
        if not isinstance(self.shuffle, (bool, np.bool_)):
            raise TypeError(f"shuffle must be a bool, got {self.shuffle!r}")
        if not isinstance(self.exact_sums, (bool, np.bool_)):
            raise TypeError(f"exact_sums must be a bool, got {self.exact_sums!r}")
        try:
            callbacks = tuple(self.callbacks or ())
        except TypeError:
            raise TypeError(f"callbacks must be a list of fastnn.Callback instances, "
                            f"got {self.callbacks!r}") from None
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be fastnn.Callback instances, "
                                f"got {type(cb).__name__}")
        if self.checkpoint is not None and not isinstance(self.checkpoint, (str, os.PathLike)):
            raise TypeError(f"checkpoint must be a path, got {self.checkpoint!r}")
        checked.update(callbacks=callbacks, augment=Augment.coerce(self.augment))
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    @classmethod
    def of(cls, config: FitConfig | None, options: Mapping[str, Any]) -> FitConfig:
        """``config`` (the defaults when None) with ``options`` replacing its
        fields: what ``fit(X, y, config=..., **options)`` trains with. An unknown
        option is a TypeError that names it."""
        unknown = [k for k in options if k not in _FIELDS]
        if unknown:
            raise TypeError(f"fit() got an unexpected keyword argument {unknown[0]!r} "
                            f"(its keywords: {', '.join(_FIELDS)}, sample_weight, "
                            f"validation_data, config)")
        if config is None:
            return cls(**options)
        if not isinstance(config, cls):
            raise TypeError(f"config must be a fastnn.training.FitConfig, got {config!r}")
        return config.replace(**options) if options else config

    def replace(self, **changes: Any) -> FitConfig:
        """A copy with ``changes`` (validated as a new config)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """``{field: default}``, in order: the defaults of ``fit``'s keywords."""
        return {f.name: f.default for f in dataclasses.fields(cls)}


_FIELDS = tuple(f.name for f in dataclasses.fields(FitConfig))


def config_fields() -> dict[str, Any]:
    """The fields of :class:`FitConfig` that a config file (and so a command-line
    flag) can set, with their defaults: all but the optimizer and its SGD
    shorthand (a config's ``optimizer`` key and its parameters), ``verbose``,
    ``callbacks`` and ``checkpoint``.

    >>> "epochs" in config_fields(), "learning_rate" in config_fields()
    (True, False)
    """
    return {f.name: f.default for f in dataclasses.fields(FitConfig)
            if f.metadata.get("config_key", True)}
