"""The training loop: epochs, validation, early stopping, callbacks, checkpoints.

Python decides policy once per chunk of batches; the batches themselves run
inside one compiled call (:func:`fastnn.kernels.train_batches`), so small
batches pay no Python overhead per step, and all buffers are allocated once
per ``fit``. Between chunks Python can react to Ctrl-C.
"""
from __future__ import annotations

import hashlib
import json
import os
import dataclasses
import time
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from . import kernels as _compiled
from . import optim, schedules, serialization, threads
from ._atomic import atomic_write_text
from .augment import Augment
from ._layout import as_sizes, workspace_sizes
from ._typing import ArrayLike, PathLike
from ._validation import check_choice, check_float, check_int, check_X, check_y

if TYPE_CHECKING:  # pragma: no cover
    from .model import MLP

#: Rows per compiled call (rounded down to whole batches, at least one batch):
#: bounds the reaction time to Ctrl-C, which Python sees between calls only.
CHUNK_ROWS = 8192
#: An epoch whose mean training loss exceeds this many times ln(classes), the
#: loss of a uniform guess, has diverged (e.g. learning_rate=1e4 gives ~1e18).
#: A regressor's squared error has no such scale (unscaled inputs start it
#: anywhere); its runaway overflows to inf, which is caught as non-finite.
DIVERGED_LOSS = 1000.0
#: ``fit(loss_reduction=...)``: the batch's loss is averaged over its rows (fastnn's
#: and PyTorch's default), over its weights (scikit-learn's normalisation with
#: sample weights), or summed (as the original reports write it).
LOSS_REDUCTIONS = ("mean", "weighted_mean", "sum")
#: ``fit(monitor=...)``: what early stopping and the best-epoch restore watch
#: (``val_accuracy`` for classifiers, ``val_r2`` for regressors).
MONITORS = ("val_loss", "val_accuracy", "val_r2")
#: ``fit(class_weight=...)`` by name.
CLASS_WEIGHTS = ("balanced",)


class TrainingDivergedWarning(RuntimeWarning):
    """The loss became NaN, infinite or runaway (a mean epoch loss above
    ``DIVERGED_LOSS * ln(classes)``); training stopped and weights were restored."""


class Callback:
    """Base class for Keras-style callbacks passed to ``fit(callbacks=[...])``.

    ``logs`` holds the epoch's metrics (``loss``, ``accuracy``, ``val_loss``,
    ``val_accuracy``, ``lr``, ``time``; a regressor's: ``loss``, ``val_loss``,
    ``val_r2``, ``lr``, ``time``). Set ``self.model.stop_training = True``
    to stop after the current epoch.
    """

    model: Any = None  # the MLP being trained (set by fit)

    def set_model(self, model: MLP) -> None:
        self.model = model

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        pass

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        pass

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        pass


class History:
    """What ``fit`` returns: per-epoch metrics, Keras-style.

    ``history`` maps ``loss``, ``accuracy`` (running means over the epoch's
    batches, before each update), ``val_loss``, ``val_accuracy`` (after the
    epoch, when validating), ``lr`` and ``time`` (seconds of training) to
    per-epoch lists (a regressor's: ``loss`` and ``val_loss`` the mean squared
    error, ``val_r2``, ``lr``, ``time``). ``best_epoch`` is the index of the epoch whose weights
    the model holds at the end when validating; ``stopped_epoch`` the index
    at which early stopping fired; ``diverged``/``interrupted`` say why
    training ended early.
    """

    def __init__(self, params: dict[str, Any] | None = None) -> None:
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []
        self.params: dict[str, Any] = dict(params or {})
        self.best_epoch: int | None = None
        self.stopped_epoch: int | None = None
        self.diverged = False
        self.interrupted = False

    def _append(self, epoch: int, logs: dict[str, float]) -> None:
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)

    def to_dict(self) -> dict[str, Any]:
        return {"history": self.history, "epoch": self.epoch, "params": self.params,
                "best_epoch": self.best_epoch, "stopped_epoch": self.stopped_epoch,
                "diverged": self.diverged, "interrupted": self.interrupted}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> History:
        h = cls(d.get("params"))
        h.history = {k: list(v) for k, v in d["history"].items()}
        h.epoch = list(d["epoch"])
        for key in ("best_epoch", "stopped_epoch", "diverged", "interrupted"):
            setattr(h, key, d.get(key, getattr(h, key)))
        return h

    def to_json(self, path: PathLike | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            atomic_write_text(path, text)
        return text

    def __repr__(self) -> str:
        n = len(self.epoch)
        last = {k: round(v[-1], 4) for k, v in self.history.items() if v}
        return f"History({n} epochs, best_epoch={self.best_epoch}, last={last})"


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


def stratified_split(y, fraction, seed, n_classes):
    """Indices ``(train, val)``: a shuffled split keeping class proportions."""
    rng = np.random.default_rng([seed, 2])
    perm = rng.permutation(len(y))
    grouped = perm[np.argsort(y[perm], kind="stable")]
    counts = np.bincount(y, minlength=n_classes)
    take = np.floor(counts * fraction + 0.5).astype(np.intp)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    val = np.concatenate([grouped[s:s + t] for s, t in zip(starts, take)])
    mask = np.ones(len(y), dtype=bool)
    mask[val] = False
    return np.flatnonzero(mask).astype(np.intp), np.sort(val).astype(np.intp)


def random_split(n, fraction, seed):
    """Indices ``(train, val)``: a shuffled split (a regressor's validation_split),
    ``round(n * fraction)`` rows held out."""
    rng = np.random.default_rng([seed, 2])
    perm = rng.permutation(n)
    take = int(np.floor(n * fraction + 0.5))
    return np.sort(perm[take:]).astype(np.intp), np.sort(perm[:take]).astype(np.intp)


def epoch_order(train_idx, seed, epoch):
    """The row order of one epoch: a permutation that depends on (seed, epoch) only."""
    rng = np.random.default_rng([seed, 1, epoch])
    return train_idx[rng.permutation(train_idx.shape[0])]


def _fingerprint(X, y, config, X_val=None, y_val=None, weights=None):
    h = hashlib.sha256()
    h.update(json.dumps(config, sort_keys=True).encode())
    for A, labels in ((X, y), (X_val, y_val)):
        if A is None:
            continue
        h.update(repr(A.shape).encode())
        sample = A[:: max(1, A.shape[0] // 257)]
        if hasattr(sample, "toarray"):  # CSR
            sample = sample.toarray()
        h.update(np.ascontiguousarray(sample).tobytes())
        h.update(labels.tobytes())
    if weights is not None:
        h.update(weights.tobytes())
    return h.hexdigest()


# -- the arguments of one fit, validated once ---------------------------------

class ShorthandDefault(float):
    """A default of fit's SGD shorthand (``learning_rate``, ``momentum``, ``l1``,
    ``l2``): the value of :class:`fastnn.optim.SGD`'s default, marked, so that
    ``fit`` can tell an argument left out from one passed (with ``optimizer=``,
    the shorthand must be left out)."""

    __slots__ = ()


def shorthand_defaults():
    """fit's SGD shorthand defaults, read from :class:`fastnn.optim.SGD`."""
    return {k: ShorthandDefault(v) for k, v in optim.params_of("sgd").items()
            if k in ("learning_rate", "momentum", "l1", "l2")}


@dataclasses.dataclass
class FitPlan:
    """The validated arguments of one ``fit``: data, schedule and policy."""
    X: np.ndarray
    y: np.ndarray
    train_idx: np.ndarray
    X_val: object
    y_val: object
    weights: object            # per-row training weights (model dtype) or None
    loss_scale: float          # their mean over the training rows (1 without weights)
    reference_loss: float      # a trivial guess's loss per row (the divergence check's unit)
    kernel_reduction: str      # the kernels' loss_reduction: "mean" or "weighted_mean"
    epochs: int
    batch_size: int            # rows per batch (<= training rows)
    grad_scale: float          # 1, or the nominal batch size for loss_reduction="sum"
    shuffle: bool
    early_stopping: object
    monitor: str
    min_delta: float
    schedule: object           # a fastnn.schedules.Schedule (lr_schedule or lr_decay's Plateau) or None
    callbacks: list
    checkpoint: object
    params: dict               # what History.params records
    augment: object = None     # the kernels' AugmentParams, or None

    @property
    def validating(self):
        return self.X_val is not None


def _check_weights(model, y, train_idx, sample_weight, class_weight):
    """Per-row weights (model dtype, C-contiguous) or None: ``sample_weight``
    times the weight of each row's class."""
    if sample_weight is None and class_weight is None:
        return None
    n = y.shape[0]
    w = np.ones(n, dtype=np.float64)
    if sample_weight is not None:
        sw = np.asarray(sample_weight)
        if sw.dtype == object or not (np.issubdtype(sw.dtype, np.floating)
                                      or np.issubdtype(sw.dtype, np.integer)
                                      or sw.dtype == bool):
            raise TypeError(f"sample_weight must be an array of real numbers, got dtype {sw.dtype}")
        if sw.shape != (n,):
            raise ValueError(f"sample_weight must have shape ({n},) to match X, got {sw.shape}")
        sw = sw.astype(np.float64)
        if not np.isfinite(sw).all() or (sw < 0).any():
            raise ValueError("sample_weight must be finite and >= 0")
        w *= sw
    if class_weight is not None:
        if not model.is_classifier:
            raise ValueError("class_weight is for classifiers; this model has loss='mse'")
        k = model.n_classes_
        if isinstance(class_weight, str):
            check_choice(class_weight, "class_weight", CLASS_WEIGHTS)
            counts = np.bincount(y[train_idx], minlength=k).astype(np.float64)
            per_class = np.divide(train_idx.size, k * counts, out=np.ones(k), where=counts > 0)
        elif isinstance(class_weight, dict):
            per_class = np.ones(k)
            for key, value in class_weight.items():
                label = check_int(key, "class_weight key", low=0, high=k - 1)
                per_class[label] = check_float(value, f"class_weight[{label}]", low=0.0)
        else:
            raise TypeError(f"class_weight must be 'balanced', a dict {{class: weight}} or None, "
                            f"got {class_weight!r}")
        w *= per_class[y]
    if not w[train_idx].sum() > 0:
        raise ValueError("sample_weight and class_weight give every training row weight 0")
    out = w.astype(model.dtype)
    if not np.isfinite(out).all():
        raise ValueError(f"sample_weight * class_weight overflows {model.dtype.name}")
    return out


def check_policy(epochs, batch_size, validation_split, early_stopping, monitor, min_delta,
                 lr_decay, lr_decay_threshold, min_learning_rate, loss_reduction,
                 lr_schedule=None):
    """fit's policy arguments, checked (errors name the argument), as a dict in this
    order; ``lr_schedule`` as a :class:`fastnn.schedules.Schedule` (or None)."""
    if lr_schedule is not None and lr_decay is not None:
        raise ValueError("give lr_schedule or lr_decay, not both (lr_decay=f is "
                         "lr_schedule=fastnn.schedules.Plateau(factor=f, ...))")
    return {
        "epochs": check_int(epochs, "epochs", low=0),
        "batch_size": check_int(batch_size, "batch_size", low=1, high=2**31 - 1),
        "validation_split": check_float(validation_split, "validation_split", low=0.0,
                                        high=1.0, high_open=True),
        "early_stopping": check_int(early_stopping, "early_stopping", low=1, allow_none=True),
        "monitor": check_choice(monitor, "monitor", MONITORS),
        "min_delta": check_float(min_delta, "min_delta", low=0.0),
        "lr_decay": check_float(lr_decay, "lr_decay", low=0.0, high=1.0, low_open=True,
                                allow_none=True),
        "lr_decay_threshold": check_float(lr_decay_threshold, "lr_decay_threshold"),
        "min_learning_rate": check_float(min_learning_rate, "min_learning_rate", low=0.0),
        "loss_reduction": check_choice(loss_reduction, "loss_reduction", LOSS_REDUCTIONS),
        "lr_schedule": schedules.make(lr_schedule),
    }


def plan_fit(model, X, y, *, epochs, batch_size, validation_split, validation_data,
             early_stopping, monitor, min_delta, lr_decay, lr_decay_threshold,
             min_learning_rate, sample_weight, class_weight, verbose, callbacks,
             checkpoint, loss_reduction, shuffle, optimizer, lr_schedule=None, augment=None):
    """Validate the arguments of ``fit`` (errors name the argument): a :class:`FitPlan`."""
    (epochs, batch_size, validation_split, early_stopping, monitor, min_delta, lr_decay,
     lr_decay_threshold, min_learning_rate, loss_reduction, lr_schedule) = check_policy(
        epochs, batch_size, validation_split, early_stopping, monitor, min_delta, lr_decay,
        lr_decay_threshold, min_learning_rate, loss_reduction, lr_schedule).values()
    if not isinstance(verbose, (bool, int, np.integer)):
        raise TypeError(f"verbose must be a bool, got {verbose!r}")
    if not isinstance(shuffle, (bool, np.bool_)):
        raise TypeError(f"shuffle must be a bool, got {shuffle!r}")
    try:
        callbacks = list(callbacks or [])
    except TypeError:
        raise TypeError(f"callbacks must be a list of fastnn.Callback instances, "
                        f"got {callbacks!r}") from None
    for cb in callbacks:
        if not isinstance(cb, Callback):
            raise TypeError(f"callbacks must be fastnn.Callback instances, got {type(cb).__name__}")
    if checkpoint is not None and not isinstance(checkpoint, (str, os.PathLike)):
        raise TypeError(f"checkpoint must be a path, got {checkpoint!r}")
    if monitor != "val_loss" and monitor != f"val_{model.metric_name}":
        raise ValueError(f"monitor must be 'val_loss' or 'val_{model.metric_name}' for a model "
                         f"with loss={model.loss!r}, got {monitor!r}")
    augment = Augment.coerce(augment)
    aug_params = None
    if augment is not None and not augment.is_identity:
        aug_params = augment.kernel_params(model.layers[0])  # checks image_shape
    X = check_X(X, model.layers[0], model.dtype)
    if aug_params is not None and not isinstance(X, np.ndarray):
        raise ValueError("augment needs dense image rows: X is sparse")
    y = model.check_y(y, X.shape[0])
    if validation_data is not None:
        if validation_split:
            raise ValueError("give validation_split or validation_data, not both")
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise TypeError("validation_data must be a tuple (X_val, y_val)")
        X_val = check_X(validation_data[0], model.layers[0], model.dtype, "validation_data[0]")
        y_val = model.check_y(validation_data[1], X_val.shape[0], "validation_data[1]")
        train_idx = np.arange(X.shape[0], dtype=np.intp)
    elif validation_split:
        if model.is_classifier:
            train_idx, val_idx = stratified_split(y, validation_split, model.seed,
                                                  model.n_classes_)
        else:
            train_idx, val_idx = random_split(y.shape[0], validation_split, model.seed)
        if val_idx.size == 0 or train_idx.size == 0:
            raise ValueError(f"validation_split={validation_split} leaves an empty training or "
                             f"validation set for {X.shape[0]} samples")
        X_val, y_val = X[val_idx], y[val_idx]
    else:
        X_val = y_val = None
        train_idx = np.arange(X.shape[0], dtype=np.intp)
    weights = _check_weights(model, y, train_idx, sample_weight, class_weight)
    validating = X_val is not None
    schedule = lr_schedule
    if lr_decay is not None:
        schedule = schedules.Plateau(lr_decay, lr_decay_threshold, min_learning_rate)
    for name, value in (("early_stopping", early_stopping), ("lr_decay", lr_decay),
                        ("lr_schedule", lr_schedule)):
        if value is not None and not validating and (
                name != "lr_schedule" or value.needs_validation):
            raise ValueError(f"{name} needs validation data: set validation_split or "
                             f"validation_data")
    if lr_schedule is not None and not lr_schedule.needs_validation:
        _check_rates(lr_schedule, optimizer.learning_rate, epochs)
    # a batch never holds more than the training set: size the buffers (and the
    # batches, identically) by that, so a huge batch_size cannot exhaust memory
    run_batch = min(batch_size, int(train_idx.size))
    # The kernels step on the mean loss; the summed loss's step is the optimizer's
    # step on B times the mean gradient, B the batch size (the last, smaller
    # batch of an epoch is scaled by the same nominal B)
    grad_scale = float(run_batch) if loss_reduction == "sum" else 1.0
    params = {"epochs": epochs, "batch_size": batch_size, "samples": int(train_idx.size),
              "validation_samples": 0 if X_val is None else int(X_val.shape[0]),
              "validation_split": validation_split, "early_stopping": early_stopping,
              "loss_reduction": loss_reduction, **optimizer.to_dict(),
              "lr_decay": lr_decay, "lr_decay_threshold": lr_decay_threshold}
    # recorded only when not at their defaults: checkpoints written before these
    # options existed keep their fingerprint
    for key, value, default in (("shuffle", bool(shuffle), True), ("monitor", monitor, "val_loss"),
                                ("min_delta", min_delta, 0.0),
                                ("min_learning_rate", min_learning_rate, 0.0),
                                ("weighted", weights is not None, False),
                                ("lr_schedule", lr_schedule and lr_schedule.to_dict(), None),
                                ("augment", None if augment is None else augment.to_dict(),
                                 None)):
        if value != default:
            params[key] = value
    loss_scale = 1.0 if weights is None else float(weights[train_idx].mean(dtype=np.float64))
    if loss_reduction == "weighted_mean":
        loss_scale = 1.0  # the batch's loss is a weighted mean already
    reference_loss = float(np.log(model.n_classes_)) if model.is_classifier else np.inf
    if model.loss != "cross_entropy":
        params["loss"] = model.loss
    return FitPlan(X, y, train_idx, X_val, y_val, weights, loss_scale, reference_loss,
                   "weighted_mean" if loss_reduction == "weighted_mean" else "mean",
                   epochs, run_batch, grad_scale,
                   bool(shuffle), early_stopping, monitor, min_delta, schedule,
                   callbacks, checkpoint, params, aug_params)

def _check_rates(schedule, learning_rate, epochs):
    """ValueError unless ``schedule`` (one that reads no metrics) gives a finite
    rate > 0 in each of the fit's epochs (a rate of 0 would make no update)."""
    for epoch in range(epochs):
        rate = schedule.rate(epoch, learning_rate, epochs=epochs)
        if not (np.isfinite(rate) and rate > 0):
            raise ValueError(f"lr_schedule {schedule!r} gives the learning rate {rate!r} in "
                             f"epoch {epoch} of {epochs} (base rate {learning_rate!r}); "
                             f"every epoch's rate must be finite and > 0")


def resolve_optimizer(model, optimizer, learning_rate, momentum, l1, l2):
    """The optimizer of a fit: ``optimizer`` (an :class:`fastnn.optim.Optimizer` or a
    name), or an SGD from the shorthand arguments, which continues the momentum of
    the model's previous SGD fit."""
    shorthand = {"learning_rate": learning_rate, "momentum": momentum, "l1": l1, "l2": l2}
    if optimizer is None:
        opt = optim.SGD(**shorthand)
        prev = model.optimizer_
        if isinstance(prev, optim.SGD) and prev.slots is not None:
            opt.load_state_dict(prev.state_dict())
        return opt
    changed = [k for k, v in shorthand.items() if not isinstance(v, ShorthandDefault)]
    if changed:
        raise ValueError(f"give optimizer= or the SGD shorthand ({', '.join(changed)}), not both: "
                         f"pass them to the optimizer, e.g. fastnn.optim.SGD(learning_rate=...)")
    if isinstance(optimizer, str):
        return optim.make(optimizer)
    if not isinstance(optimizer, optim.Optimizer):
        raise TypeError(f"optimizer must be a fastnn.optim.Optimizer or one of "
                        f"{sorted(optim.OPTIMIZERS)}, got {optimizer!r}")
    return optimizer


# -- the state a fit carries from epoch to epoch -------------------------------

class TrainState:
    """Everything a fit carries between epochs: the model's parameters and
    epoch count, the optimizer and its state, the history, the learning rate
    of the schedule, the best epoch's snapshot and the early-stopping counters.

    A checkpoint saves and restores exactly this (:meth:`save`,
    :meth:`resume`), so a resumed fit gives the weights of an uninterrupted one.
    """

    def __init__(self, model, optimizer, history, learning_rate, base_epoch):
        self.model = model
        self.optimizer = optimizer
        self.history = history
        self.learning_rate = learning_rate
        self.base_epoch = base_epoch      # model.epochs_trained when this fit began
        self.best = None                  # snapshot of the best validation epoch
        self.best_score = np.inf          # its monitored value, lower is better
        self.wait = 0                     # epochs since it

    @property
    def epoch(self):
        """Epochs completed in this fit."""
        return len(self.history.epoch)

    @property
    def absolute_epoch(self):
        """The model's epoch number of the next epoch (keys the shuffle and dropout)."""
        return self.base_epoch + self.epoch

    # snapshots: parameters and optimizer state in one flat vector, plus t
    def snapshot(self, buf=None):
        params, slots = self.model.parameters, self.optimizer.slots
        n = params.size
        if buf is None:
            buf = np.empty(n + slots.size, dtype=params.dtype)
        buf[:n] = params
        buf[n:] = slots.ravel()
        return buf, self.optimizer.t

    def restore(self, snap):
        buf, t = snap
        params, slots = self.model.parameters, self.optimizer.slots
        n = params.size
        params[...] = buf[:n]
        slots.ravel()[...] = buf[n:]
        self.optimizer.t = t

    def finite(self):
        return bool(np.isfinite(self.model.parameters).all()
                    and np.isfinite(self.optimizer.slots).all())

    def begin_epoch(self, epoch, plan):
        """Set the learning rate of epoch ``epoch`` (the schedule's, read from the
        optimizer's base rate and the history so far)."""
        base = self.optimizer.learning_rate
        self.learning_rate = base if plan.schedule is None else plan.schedule.rate(
            epoch, base, epochs=plan.epochs, history=self.history.history)

    def end_epoch(self, epoch, logs, plan):
        """Record a finished epoch: history, best snapshot, patience."""
        self.model.epochs_trained += 1
        self.history._append(epoch, logs)
        if not plan.validating:
            return
        score = logs[plan.monitor] if plan.monitor == "val_loss" else -logs[plan.monitor]
        if score < self.best_score - plan.min_delta or self.best is None:
            self.best_score, self.wait, self.history.best_epoch = score, 0, epoch
            self.best = self.snapshot(None if self.best is None else self.best[0])
        else:
            self.wait += 1
            if plan.early_stopping is not None and self.wait >= plan.early_stopping:
                self.history.stopped_epoch = epoch

    # checkpoints
    def save(self, path, fingerprint):
        state = {"history": self.history.to_dict(),
                 "best_score": None if np.isinf(self.best_score) else self.best_score,
                 "best_t": None if self.best is None else self.best[1],
                 "wait": self.wait, "lr": self.learning_rate, "base_epoch": self.base_epoch,
                 "optimizer": self.optimizer.to_dict(), "t": self.optimizer.t,
                 "fingerprint": fingerprint}
        arrays = {"slots": self.optimizer.slots}
        if self.best is not None:
            arrays["best"] = self.best[0]
        serialization.save_checkpoint(path, self.model, state, arrays)

    @classmethod
    def resume(cls, path, model, optimizer, fingerprint):
        """The state saved at ``path`` by a fit of the same model, data and
        arguments, loaded into ``model`` and ``optimizer``; else ValueError."""
        header, arrays = serialization.load_checkpoint(path)
        saved = header["state"]
        if (list(header["layers"]) != list(model.layers) or header["dtype"] != model.dtype.name
                or header["activation"] != model.activation
                or header.get("loss", "cross_entropy") != model.loss
                or saved.get("fingerprint") != fingerprint):
            raise ValueError(f"checkpoint {os.fspath(path)!r} was written by a different model, "
                             f"data or arguments; delete it or choose another path")
        n_state = optimizer.n_slots * model.n_params
        try:
            history = History.from_dict(saved["history"])
            if any(len(v) != len(history.epoch) for v in history.history.values()):
                raise ValueError("history lists of different lengths")
            slots = arrays.get("slots")
            if slots is None or slots.shape != (optimizer.n_slots, model.n_params):
                raise ValueError("optimizer state of the wrong shape")
            state = cls(model, optimizer, history,
                        check_float(saved["lr"], "lr", low=0.0, low_open=True),
                        check_int(saved["base_epoch"], "base_epoch", low=0))
            if saved["best_score"] is not None:
                state.best_score = check_float(saved["best_score"], "best_score")
            state.wait = check_int(saved["wait"], "wait", low=0)
            t = check_int(saved["t"], "t", low=0)
            best = arrays.get("best")
            if (best is None) != (history.best_epoch is None):
                raise ValueError("the best epoch and its snapshot do not match")
            if best is not None:
                if best.shape != (model.n_params + n_state,):
                    raise ValueError("best snapshot of the wrong shape")
                state.best = (best, check_int(saved["best_t"], "best_t", low=0))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"checkpoint {os.fspath(path)!r} has a corrupt training state: "
                             f"{exc}") from None
        model.parameters[...] = arrays["params"]
        optimizer.load_state_dict({"t": t, "slots": slots})
        model.epochs_trained = state.base_epoch + state.epoch
        return state


# -- the loop ------------------------------------------------------------------

_SHORTHAND = shorthand_defaults()


def fit(model: MLP, X: ArrayLike, y: ArrayLike, *, epochs: int, batch_size: int,
        optimizer: optim.Optimizer | str | None = None,
        learning_rate: float = _SHORTHAND["learning_rate"],
        momentum: float = _SHORTHAND["momentum"],
        l2: float = _SHORTHAND["l2"], l1: float = _SHORTHAND["l1"],
        validation_split: float, validation_data: tuple[ArrayLike, ArrayLike] | None,
        early_stopping: int | None, lr_decay: float | None, lr_decay_threshold: float,
        verbose: bool, callbacks: Sequence[Callback] | None, checkpoint: PathLike | None,
        loss_reduction: str = "mean", shuffle: bool = True, monitor: str = "val_loss",
        min_delta: float = 0.0, min_learning_rate: float = 0.0,
        sample_weight: ArrayLike | None = None, class_weight: str | dict[int, float] | None = None,
        lr_schedule: schedules.ScheduleSpec = None, augment: Any = None,
        kernels: Any = None) -> History:
    """Train ``model`` (see :meth:`fastnn.MLP.fit`). ``kernels``: the module whose
    ``train_batches`` runs the epochs (the compiled one by default;
    :mod:`fastnn.reference` gives the pure-NumPy trainer of the same algorithm)."""
    kernels = _compiled if kernels is None else kernels
    opt = resolve_optimizer(model, optimizer, learning_rate, momentum, l1, l2)
    plan = plan_fit(model, X, y, epochs=epochs, batch_size=batch_size,
                    validation_split=validation_split, validation_data=validation_data,
                    early_stopping=early_stopping, monitor=monitor, min_delta=min_delta,
                    lr_decay=lr_decay, lr_decay_threshold=lr_decay_threshold,
                    min_learning_rate=min_learning_rate, sample_weight=sample_weight,
                    class_weight=class_weight, verbose=verbose, callbacks=callbacks,
                    checkpoint=checkpoint, loss_reduction=loss_reduction, shuffle=shuffle,
                    optimizer=opt, lr_schedule=lr_schedule, augment=augment)
    opt.bind(model.n_params, model.dtype)
    model.optimizer_ = opt
    state = TrainState(model, opt, History(plan.params), opt.learning_rate, model.epochs_trained)
    fingerprint = None
    if plan.checkpoint is not None:
        fingerprint = _fingerprint(
            plan.X, plan.y, {"layers": list(model.layers), "seed": model.seed, "init": model.init,
                             "dropout": list(model.dropout_rates),
                             "val": None if plan.X_val is None else plan.X_val.shape[0],
                             **{k: v for k, v in plan.params.items() if k != "epochs"}},
            plan.X_val if validation_data is not None else None,
            plan.y_val if validation_data is not None else None, plan.weights)
        if os.path.exists(plan.checkpoint):
            state = TrainState.resume(plan.checkpoint, model, opt, fingerprint)
            state.history.params = plan.params  # this call's (the epochs may differ)
    history = state.history
    ws = Workspace(as_sizes(model.layers), plan.batch_size, model.dtype)
    last_good = state.snapshot()
    model.stop_training = False
    for cb in plan.callbacks:
        cb.set_model(model)
        cb.on_train_begin()
    bar = tqdm(total=plan.epochs, initial=state.epoch, disable=not verbose, unit="epoch",
               desc=f"fit {list(model.layers)}")
    try:
        with threads.limit():
            for epoch in range(state.epoch, plan.epochs):
                if history.stopped_epoch is not None or model.stop_training:
                    break
                state.begin_epoch(epoch, plan)
                for cb in plan.callbacks:
                    cb.on_epoch_begin(epoch)
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
                                  stacklevel=3)
                    break
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
                    diverged = not np.isfinite(val_loss)
                if diverged:
                    history.diverged = True
                    state.restore(state.best if state.best is not None else last_good)
                    warnings.warn(f"loss or weights became NaN, infinite or runaway in epoch "
                                  f"{epoch} (learning rate {state.learning_rate:g}); training "
                                  "stopped and the last finite weights were restored",
                                  TrainingDivergedWarning, stacklevel=3)
                    break
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
    except KeyboardInterrupt:
        # Ctrl-C outside the compiled batches (validation, callbacks, checkpoint):
        # the weights are those of a whole epoch; the last checkpoint is intact
        history.interrupted = True
        warnings.warn("training interrupted between batches; returning the history so far",
                      RuntimeWarning, stacklevel=3)
    finally:
        bar.close()
    if plan.validating and state.best is not None:
        state.restore(state.best)  # also after Ctrl-C: the model holds the best epoch's weights
    for cb in plan.callbacks:
        cb.on_train_end({"history": history})
    model.history_ = history
    return history


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
    return args


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
    run = EpochRun()
    try:
        while run.rows < order.size and not run.diverged:
            start, stop = run.rows, min(run.rows + chunk, order.size)
            hyper = opt.hyper(state.learning_rate, plan.grad_scale)
            # Count the chunk's steps before the call: Ctrl-C pressed while it runs
            # without the GIL raises only once it has returned, having updated the
            # parameters and slots, and the count must then agree with them
            planned = -(-(stop - start) // plan.batch_size)
            opt.t += planned
            run.rows = stop
            rows, ls, c, run.diverged = kernels.train_batches(
                plan.X, plan.y, order, start, stop, plan.batch_size, sizes, model.activation,
                model.parameters, opt.slots, ws, hyper, sample_weight=plan.weights,
                dropout=dropout, seed=model.seed, epoch=epoch, n_threads=n_threads,
                augment=plan.augment, **_loss_args(model, plan))
            if rows != stop - start:  # diverged: its last batch made no update
                opt.t -= planned - -(-rows // plan.batch_size)
                run.rows = start + rows
            run.loss_sum += ls
            run.correct += c
    except KeyboardInterrupt:
        run.interrupted = True
    return run
