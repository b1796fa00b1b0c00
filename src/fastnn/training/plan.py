"""The arguments of one fit, validated once (errors name the argument): the
policy checks, sample and class weights, the validation split, the optimizer,
and the :class:`FitPlan` the loop runs."""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from .. import optim, schedules
from ..augment import Augment
from .._validation import check_choice, check_float, check_int, check_X
from .history import Callback

#: ``fit(loss_reduction=...)``: the batch's loss is averaged over its rows (fastnn's
#: and PyTorch's default), over its weights (scikit-learn's normalisation with
#: sample weights), or summed (as the original reports write it).
LOSS_REDUCTIONS = ("mean", "weighted_mean", "sum")
#: ``fit(monitor=...)``: what early stopping and the best-epoch restore watch
#: (``val_accuracy`` for classifiers, ``val_r2`` for regressors).
MONITORS = ("val_loss", "val_accuracy", "val_r2")
#: ``fit(class_weight=...)`` by name.
CLASS_WEIGHTS = ("balanced",)


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
