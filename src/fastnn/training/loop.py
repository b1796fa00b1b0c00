"""The training loop: epochs, validation, early stopping, callbacks, checkpoints.

Python decides policy once per chunk of batches; the batches themselves run
inside one compiled call (:func:`fastnn.kernels.train_batches`), so small
batches pay no Python overhead per step, and all buffers are allocated once
per ``fit``. Between chunks Python can react to Ctrl-C.
"""
from __future__ import annotations

import dataclasses
import os
import threading
import time
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from .. import kernels as _compiled
from .. import threads
from .._atomic import check_target
from .._layout import as_sizes, workspace_sizes
from .._typing import ArrayLike
from . import tuning
from .history import History
from .options import FitConfig
from .plan import plan_fit, resolve_optimizer
from .state import TrainState, _fingerprint

if TYPE_CHECKING:  # pragma: no cover
    from ..model import MLP


#: Rows per compiled call (rounded down to whole batches, at least one batch):
#: bounds the reaction time to Ctrl-C, which Python sees between calls only.
CHUNK_ROWS = 8192
#: An epoch whose mean training loss exceeds this many times ln(classes), the
#: loss of a uniform guess, has diverged (e.g. learning_rate=1e4 gives ~1e18).
#: A regressor's squared error has no such scale (unscaled inputs start it
#: anywhere); its runaway overflows to inf, which is caught as non-finite.
DIVERGED_LOSS = 1000.0


class TrainingDivergedWarning(RuntimeWarning):
    """The loss became NaN, infinite or runaway (a mean epoch loss above
    ``DIVERGED_LOSS * ln(classes)``); training stopped and weights were restored."""


class Workspace:
    """The buffers of one ``fit``, allocated once: work space of the size of
    the parameters (``grads``: the compiled loop keeps transposed weight
    copies there, the NumPy twin the gradients), activations, deltas, batch
    labels, batch sample weights (``wbuf``) and dropout masks (``masks``)."""

    def __init__(self, sizes, batch_size, dtype):
        need = workspace_sizes(sizes, batch_size)
        self.grads = np.zeros(need.params, dtype=dtype)
        self.acts = np.empty(need.acts, dtype=dtype)
        self.deltas = np.empty(need.deltas, dtype=dtype)
        self.ybuf = np.empty(batch_size, dtype=np.intp)
        self.wbuf = np.empty(need.wbuf, dtype=dtype)
        self.masks = np.empty(need.masks, dtype=np.uint8)


def epoch_order(train_idx, seed, epoch):
    """The row order of one epoch: a permutation that depends on (seed, epoch) only."""
    rng = np.random.default_rng([seed, 1, epoch])
    return train_idx[rng.permutation(train_idx.shape[0])]



def _fresh_progress_lock():
    """In a forked child, a fresh thread lock in tqdm's progress-bar lock (every
    verbose fit takes it): a thread of the parent that held it (another fit's
    bar) does not exist in the child, and would hold the child's copy for good.
    Only the thread lock is replaced (creating tqdm's multiprocessing lock here
    would fix the child's start method)."""
    try:
        from tqdm.std import TqdmDefaultWriteLock
        from tqdm.std import tqdm as std_tqdm
        old, new = getattr(TqdmDefaultWriteLock, "th_lock", None), threading.RLock()
        TqdmDefaultWriteLock.th_lock = new
        for cls in {std_tqdm, tqdm}:
            lock = cls.__dict__.get("_lock")
            if lock is not None and isinstance(getattr(lock, "locks", None), list):
                lock.locks = [new if lk is old else lk for lk in lock.locks]
    except (ImportError, AttributeError):  # another tqdm: its own business
        pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fresh_progress_lock)


# -- the loop ------------------------------------------------------------------

def fit(model: MLP, X: ArrayLike, y: ArrayLike, config: FitConfig | None = None, *,
        sample_weight: ArrayLike | None = None,
        validation_data: tuple[ArrayLike, ArrayLike] | None = None,
        kernels: Any = None, **options: Any) -> History:
    """Train ``model`` (see :meth:`fastnn.MLP.fit`) as ``config`` (a
    :class:`FitConfig`; its defaults when None) says, with ``options`` (its
    fields, by keyword) replacing its values. ``kernels``: the module whose
    ``train_batches`` runs the epochs (the compiled one by default;
    :mod:`fastnn.reference` gives the pure-NumPy trainer of the same algorithm)."""
    config = FitConfig.of(config, options)
    kernels = _compiled if kernels is None else kernels
    opt = resolve_optimizer(model, config)
    plan = plan_fit(model, X, y, config, sample_weight=sample_weight,
                    validation_data=validation_data, optimizer=opt)
    opt.bind(model.n_params, model.dtype)
    model.optimizer_ = opt
    state, fingerprint = _begin(model, opt, plan, validation_data is not None)
    history = state.history
    model.history_ = history  # this fit's, as it grows (also if a callback raises)
    if state.epoch > plan.epochs:  # resumed past the end asked for: nothing to train
        warnings.warn(f"the checkpoint {os.fspath(plan.checkpoint)!r} holds {state.epoch} "
                      f"epochs, more than the {plan.epochs} asked: nothing was trained, and "
                      f"the model is the checkpoint's", UserWarning, stacklevel=3)
    ws = Workspace(as_sizes(model.layers), plan.batch_size, model.dtype)
    last_good = state.snapshot()
    model.stop_training = False
    for cb in plan.callbacks:
        cb.set_model(model)
        cb.on_train_begin()
    bar = tqdm(total=plan.epochs, initial=state.epoch, disable=not config.verbose, unit="epoch",
               desc=f"fit {list(model.layers)}")
    try:
        with threads.limit():
            for epoch in range(state.epoch, plan.epochs):
                if history.stopped_epoch is not None or model.stop_training:
                    break
                last_good = _epoch(kernels, state, ws, plan, epoch, last_good, bar, fingerprint)
                if last_good is None:  # interrupted or diverged
                    break
    except KeyboardInterrupt:
        # Ctrl-C outside the compiled batches (validation, callbacks, checkpoint):
        # the weights are those of a whole epoch; the last checkpoint is intact
        history.interrupted = True
        warnings.warn("training interrupted between batches; returning the history so far",
                      RuntimeWarning, stacklevel=3)
    finally:
        bar.close()
        if plan.validating and state.best is not None:
            # also after Ctrl-C, or an error a callback raised: the model holds the
            # weights of history.best_epoch
            state.restore(state.best)
    for cb in plan.callbacks:
        cb.on_train_end({"history": history})
    model.history_ = history
    return history


def _begin(model, opt, plan, own_validation_data):
    """``(state, fingerprint)`` of a fit's start: a fresh :class:`TrainState`, or with
    a checkpoint the one saved there (when its file exists) and the fingerprint of
    the fit's model, data and arguments that keys it (None without a checkpoint)."""
    state = TrainState(model, opt, History(plan.params), opt.learning_rate, model.epochs_trained)
    if plan.checkpoint is None:
        return state, None
    check_target(plan.checkpoint, "checkpoint ")  # before the first epoch, not when it is saved
    fingerprint = _fingerprint(
        plan.X, plan.y, {"layers": list(model.layers), "seed": model.seed, "init": model.init,
                         "dropout": list(model.dropout_rates),
                         "val": None if plan.X_val is None else plan.X_val.shape[0],
                         # the epochs too where the schedule's rates depend on them
                         **{k: v for k, v in plan.params.items() if k != "epochs"
                            or (plan.schedule is not None and plan.schedule.reads_fit_epochs)}},
        plan.X_val if own_validation_data else None,
        plan.y_val if own_validation_data else None, plan.weights)
    if os.path.exists(plan.checkpoint):
        state = TrainState.resume(plan.checkpoint, model, opt, fingerprint)
        state.history.params = plan.params  # this call's (the epochs may differ)
    return state, fingerprint


def _epoch(kernels, state, ws, plan, epoch, last_good, bar, fingerprint):
    """Train, validate and record epoch ``epoch``: the snapshot of its start
    (``last_good``'s buffer reused), or None when it was interrupted or diverged
    (the weights restored, the history marked, a warning given)."""
    model, history = state.model, state.history
    for cb in plan.callbacks:  # first: a base rate a callback sets is this epoch's (Keras')
        cb.on_epoch_begin(epoch)
    state.begin_epoch(epoch, plan)
    last_good = state.snapshot(last_good[0])
    t0 = time.perf_counter()
    run = _run_epoch(kernels, state, ws, plan)
    elapsed = time.perf_counter() - t0
    if run.interrupted:
        history.interrupted = True
        if not state.finite():
            state.restore(last_good)
        warnings.warn(f"training interrupted in epoch {epoch} after {run.rows} "
                      "samples; returning the history so far", RuntimeWarning,
                      stacklevel=4)
        return None
    # a finite loss on the last batch can still leave overflowed weights,
    # or weights whose outputs overflow (a non-finite validation loss);
    # and as the loss is computed stably, a runaway step size shows as a
    # huge but finite loss rather than NaN
    diverged = (run.diverged or not state.finite()
                or run.loss_sum > (DIVERGED_LOSS * plan.reference_loss
                                   * plan.loss_scale * run.rows))
    if plan.validating and not diverged:
        val_loss, val_acc = model.evaluate(plan.X_val, plan.y_val,
                                           check_overflow=False)
        # a runaway the epoch's last steps made shows here first (the training
        # loss is measured before each step): past the bound and a hundredfold
        # the last epoch's (or a uniform guess's), a jump, not the slow climb of
        # an overfitting model; such weights are no best epoch
        last = history.history.get("val_loss") or [plan.reference_loss]
        diverged = not np.isfinite(val_loss) or (
            val_loss > DIVERGED_LOSS * plan.reference_loss and val_loss > 100.0 * last[-1])
    if diverged:
        history.diverged = True
        state.restore(state.best if state.best is not None else last_good)
        warnings.warn(f"loss or weights became NaN, infinite or runaway in epoch "
                      f"{epoch} (learning rate {state.learning_rate:g}); training "
                      "stopped and the last finite weights were restored",
                      TrainingDivergedWarning, stacklevel=4)
        return None
    if model.is_classifier:
        logs = {"loss": run.loss_sum / run.rows, "accuracy": run.correct / run.rows}
    else:  # the kernels' (1/2) sum_j err^2 per row -> the error per element
        logs = {"loss": 2.0 * run.loss_sum / (run.rows * model.layers[-1])}
    if plan.validating:
        logs.update({"val_loss": val_loss, f"val_{model.metric_name}": val_acc})
    logs.update(lr=state.learning_rate, time=elapsed)
    state.end_epoch(epoch, logs, plan)
    for cb in plan.callbacks:
        cb.on_epoch_end(epoch, dict(logs))
    bar.update(1)
    bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items() if k not in ("lr", "time")})
    if plan.checkpoint is not None:
        state.save(plan.checkpoint, fingerprint)
    return last_good


def chunk_rows(batch_size):
    """Rows per compiled call for ``batch_size``: whole batches, 8,192 rows or
    fewer, but at least one batch (a batch is never split across calls, so a
    batch larger than 8,192 rows is one uninterruptible call).

    >>> chunk_rows(128), chunk_rows(100), chunk_rows(20000)
    (8192, 8100, 20000)
    """
    return max(batch_size, CHUNK_ROWS // batch_size * batch_size)


def _loss_args(model, plan):
    """The loss keywords of ``train_batches`` (none at their defaults, so that a
    ``kernels`` module written before them still works)."""
    args = {}
    if model.loss != "cross_entropy":
        args["loss"] = model.loss
    if plan.kernel_reduction != "mean":
        args["loss_reduction"] = plan.kernel_reduction
    if plan.exact_sums:
        args["exact_sums"] = True
    return args


def _plan_key(model, plan, sizes, n_threads, dropout, opt):
    """What the step plan's timing depends on (tuning.py's key): the widths,
    the batch, the dtype, the threads, and what the step does besides the
    products (loss, optimizer, dropout, augmentation, exact sums, sparse rows)."""
    return (tuple(int(s) for s in sizes), plan.batch_size, np.dtype(model.dtype).str, n_threads,
            model.loss, opt.kind, dropout is not None,
            plan.augment is not None, plan.exact_sums, not isinstance(plan.X, np.ndarray),
            plan.weights is not None)


@dataclasses.dataclass
class EpochRun:
    rows: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    diverged: bool = False
    interrupted: bool = False


def _run_epoch(kernels, state, ws, plan):
    """One epoch, a compiled chunk of batches at a time; Ctrl-C is caught
    between chunks, where the model is consistent. Returns an :class:`EpochRun`."""
    model, opt = state.model, state.optimizer
    epoch = state.absolute_epoch
    order = epoch_order(plan.train_idx, model.seed, epoch) if plan.shuffle else plan.train_idx
    chunk = chunk_rows(plan.batch_size)
    sizes = as_sizes(model.layers)
    dropout = model.dropout_rates if any(model.dropout_rates) else None
    if dropout is not None:
        dropout = np.asarray(dropout, dtype=np.float64)
    n_threads = threads.training_threads()
    # the step plan (threads and splits) of a threaded compiled fit: timed on
    # its first batches, then kept (tuning.py); the same weights whatever it is
    tune_key = _plan_key(model, plan, sizes, n_threads, dropout, opt) \
        if kernels is _compiled and n_threads > 1 else None
    n_weights = int(np.dot(sizes[:-1], sizes[1:]))
    run = EpochRun()
    try:
        while run.rows < order.size and not run.diverged:
            start, stop = run.rows, min(run.rows + chunk, order.size)
            # the epoch's loss sum goes on in the kernel: the same additions in the
            # same order however the epoch is divided among calls
            nt, call_args, segment = n_threads, {"loss_start": run.loss_sum}, None
            if tune_key is not None:
                step_plan, seg_rows, segment = tuning.next_plan(tune_key, plan.batch_size,
                                                                n_weights, order.size)
                if seg_rows is not None:
                    stop = min(start + seg_rows, order.size)
                nt, split = tuning.call_args(step_plan, n_threads)
                if split is not None:
                    call_args["split_threshold"] = split
            hyper = opt.hyper(state.learning_rate, plan.grad_scale)
            # Count the chunk's steps before the call: Ctrl-C pressed while it runs
            # without the GIL raises only once it has returned, having updated the
            # parameters and slots, and the count must then agree with them
            planned = -(-(stop - start) // plan.batch_size)
            opt.t += planned
            run.rows = stop
            rows, t0 = 0, time.perf_counter()
            try:
                rows, ls, c, run.diverged = kernels.train_batches(
                    plan.X, plan.y, order, start, stop, plan.batch_size, sizes,
                    model.activation, model.parameters, opt.slots, ws, hyper,
                    sample_weight=plan.weights, dropout=dropout, seed=model.seed, epoch=epoch,
                    n_threads=nt, augment=plan.augment, **_loss_args(model, plan), **call_args)
            finally:
                if segment is not None:
                    tuning.record(tune_key, segment, rows, time.perf_counter() - t0)
            if rows != stop - start:  # diverged: its last batch made no update
                opt.t -= planned - -(-rows // plan.batch_size)
                run.rows = start + rows
            run.loss_sum = ls  # loss_start + this call's batches
            run.correct += c
    except KeyboardInterrupt:
        run.interrupted = True
    return run
