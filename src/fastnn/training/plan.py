"""The arguments of one fit, checked against the model and the data (errors
name the argument): the validation split, sample and class weights, the
optimizer, and the :class:`FitPlan` the loop runs. The arguments that depend
on neither were checked once, by :class:`~fastnn.training.FitConfig`."""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from .. import optim, schedules
from .._validation import check_choice, check_float, check_int, check_X
from .options import CLASS_WEIGHTS, ShorthandDefault


def stratified_split(y, fraction, seed, n_classes):
    """Indices ``(train, val)``: a shuffled split keeping class proportions,
    ``round(len(y) * fraction)`` rows held out in all (each class gives the floor
    of its share, and the classes with the largest remainders one row more)."""
    rng = np.random.default_rng([seed, 2])
    perm = rng.permutation(len(y))
    grouped = perm[np.argsort(y[perm], kind="stable")]
    counts = np.bincount(y, minlength=n_classes)
    share = counts * fraction
    take = np.floor(share).astype(np.intp)
    extra = min(int(np.floor(len(y) * fraction + 0.5)) - int(take.sum()),
                int(np.count_nonzero(share > take)))
    if extra > 0:  # largest remainders first, ties to the lower class
        take[np.argsort(take - share, kind="stable")[:extra]] += 1
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
    exact_sums: bool = False   # the gradients' batch sums in float64 (FitConfig.exact_sums)

    @property
    def validating(self):
        return self.X_val is not None


def _check_weights(model, y, train_idx, sample_weight, class_weight, scale_free=False):
    """Per-row weights (model dtype, C-contiguous) or None: ``sample_weight``
    times the weight of each row's class. ``scale_free`` (``loss_reduction=
    "weighted_mean"``, whose batches divide by their weight sum): weights so
    large that a batch's sum could pass 2**64 are scaled down by a power of two,
    which changes no ratio (the kernels' 1 / sum would be flushed to 0 beyond
    about 1e38 in float32, and the sum overflow in float64)."""
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
            present = int((counts > 0).sum())  # scikit-learn's compute_class_weight: classes in y
            per_class = np.divide(train_idx.size, present * counts, out=np.ones(k),
                                  where=counts > 0)
        elif isinstance(class_weight, dict):
            per_class = np.ones(k)
            for key, value in class_weight.items():
                label = check_int(key, "class_weight key", low=0, high=k - 1)
                per_class[label] = check_float(value, f"class_weight[{label}]", low=0.0)
        else:
            raise TypeError(f"class_weight must be 'balanced', a dict {{class: weight}} or None, "
                            f"got {class_weight!r}")
        w *= per_class[y]
    if not (w[train_idx] > 0).any():  # (weights >= 0; a sum could overflow)
        raise ValueError("sample_weight and class_weight give every training row weight 0")
    if scale_free:
        bits = math.frexp(float(w[train_idx].max()))[1] + math.frexp(float(train_idx.size))[1]
        if bits > 64:  # n * max(w) >= 2**64
            w = np.ldexp(w, 64 - bits)
    out = w.astype(model.dtype)
    if not np.isfinite(out).all():
        raise ValueError(f"sample_weight * class_weight overflows {model.dtype.name}")
    tiny = np.finfo(model.dtype).tiny
    small = (w > 0) & (np.abs(out) < tiny)
    if small.any():  # the training threads flush subnormals to 0: such a row would not train
        raise ValueError(f"sample_weight * class_weight has {int(small.sum())} weights above 0 "
                         f"but below {tiny:.6g}, the smallest normal {model.dtype.name} (e.g. "
                         f"{w[small][0]!r}), which training would take as 0: rescale the "
                         f"weights (with loss_reduction='weighted_mean' their scale does not "
                         f"matter)")
    return out


def _validation_rows(model, X, y, validation_split, validation_data):
    """``(train_idx, X_val, y_val)``: the training rows and the validation set, from
    ``validation_data`` or split off (X, y) by ``validation_split`` (or none)."""
    if validation_data is not None:
        if validation_split:
            raise ValueError("give validation_split or validation_data, not both")
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise TypeError("validation_data must be a tuple (X_val, y_val)")
        X_val = check_X(validation_data[0], model.layers[0], model.dtype, "validation_data[0]")
        y_val = model.check_y(validation_data[1], X_val.shape[0], "validation_data[1]")
        return np.arange(X.shape[0], dtype=np.intp), X_val, y_val
    if validation_split:
        if model.is_classifier:
            train_idx, val_idx = stratified_split(y, validation_split, model.seed,
                                                  model.n_classes_)
        else:
            train_idx, val_idx = random_split(y.shape[0], validation_split, model.seed)
        if val_idx.size == 0 or train_idx.size == 0:
            raise ValueError(f"validation_split={validation_split} leaves an empty training or "
                             f"validation set for {X.shape[0]} samples")
        return train_idx, X[val_idx], y[val_idx]
    return np.arange(X.shape[0], dtype=np.intp), None, None


def _schedule(config, validating, optimizer, dtype):
    """The learning-rate schedule of a fit (``lr_schedule``, or ``lr_decay``'s
    Plateau, or None), checked against the validation data it needs; the base
    rate and a schedule's rates checked to be normal numbers of ``dtype``."""
    tiny = float(np.finfo(dtype).tiny)
    if not optimizer.learning_rate >= tiny:  # the training threads flush it to 0
        raise ValueError(f"learning_rate must be at least {tiny:g} (the smallest normal "
                         f"{np.dtype(dtype).name}) for a {np.dtype(dtype).name} model, got "
                         f"{optimizer.learning_rate!r}")
    schedule = config.lr_schedule
    if config.lr_decay is not None:
        schedule = schedules.Plateau(config.lr_decay, config.lr_decay_threshold,
                                     config.min_learning_rate)
    for name in ("early_stopping", "lr_decay", "lr_schedule"):
        value = getattr(config, name)
        if value is not None and not validating and (
                name != "lr_schedule" or value.needs_validation):
            raise ValueError(f"{name} needs validation data: set validation_split or "
                             f"validation_data")
    if config.lr_schedule is not None:
        config.lr_schedule.check_epochs(config.epochs)
    if config.lr_schedule is not None and not config.lr_schedule.needs_validation:
        _check_rates(config.lr_schedule, optimizer.learning_rate, config.epochs, dtype)
    return schedule


def _history_params(model, config, optimizer, n_train, n_val, weighted):
    """What History.params records of a fit (and its checkpoint's fingerprint reads)."""
    params = {"epochs": config.epochs, "batch_size": config.batch_size, "samples": n_train,
              "validation_samples": n_val, "validation_split": config.validation_split,
              "early_stopping": config.early_stopping, "loss_reduction": config.loss_reduction,
              **optimizer.to_dict(),
              "lr_decay": config.lr_decay, "lr_decay_threshold": config.lr_decay_threshold}
    # recorded only when not at their defaults: checkpoints written before these
    # options existed keep their fingerprint
    augment, lr_schedule = config.augment, config.lr_schedule
    for key, value, default in (("shuffle", bool(config.shuffle), True),
                                ("monitor", config.monitor, "val_loss"),
                                ("min_delta", config.min_delta, 0.0),
                                ("min_learning_rate", config.min_learning_rate, 0.0),
                                ("weighted", weighted, False),
                                ("lr_schedule", lr_schedule and lr_schedule.to_dict(), None),
                                ("augment", None if augment is None else augment.to_dict(),
                                 None),
                                ("exact_sums", bool(config.exact_sums), False)):
        if value != default:
            params[key] = value
    if model.loss != "cross_entropy":
        params["loss"] = model.loss
    return params


def _check_monitor(model, monitor):
    if monitor != "val_loss" and monitor != f"val_{model.metric_name}":
        raise ValueError(f"monitor must be 'val_loss' or 'val_{model.metric_name}' for a model "
                         f"with loss={model.loss!r}, got {monitor!r}")


def _check_augment(model, augment):
    """The kernels' parameters of ``augment`` (None when it deforms nothing),
    its image shape checked against the rows (an identity's too, where given)."""
    if augment is None or (augment.is_identity and augment.image_shape is None):
        return None
    params = augment.kernel_params(model.layers[0])  # checks image_shape
    return None if augment.is_identity else params


def check_without_data(model, config, validating):
    """The checks of :func:`plan_fit` that need no data, for a config file's run
    (before its data loads, or a sweep's trials train): ``monitor`` for the model,
    ``augment``'s image shape, ``class_weight`` (on one row of each class: its
    classes and weights), and the schedule and early stopping against
    ``validating`` (whether the fit will have validation data)."""
    _check_monitor(model, config.monitor)
    _check_augment(model, config.augment)
    if config.class_weight is not None:  # (a regressor's refused there too)
        every = np.arange(model.n_classes_, dtype=np.intp)
        _check_weights(model, every, every, None, config.class_weight)
    _schedule(config, validating, resolve_optimizer(model, config), model.dtype)


def plan_fit(model, X, y, config, *, sample_weight, validation_data, optimizer):
    """The :class:`FitPlan` of ``fit(X, y, sample_weight=..., validation_data=...)``
    with the validated ``config`` (a :class:`FitConfig`) and ``optimizer`` (the
    resolved one): what depends on the model and the data, checked (errors name
    the argument)."""
    monitor, loss_reduction = config.monitor, config.loss_reduction
    _check_monitor(model, monitor)
    aug_params = _check_augment(model, config.augment)
    X = check_X(X, model.layers[0], model.dtype)
    if aug_params is not None and not isinstance(X, np.ndarray):
        raise ValueError("augment needs dense image rows: X is sparse")
    y = model.check_y(y, X.shape[0])
    train_idx, X_val, y_val = _validation_rows(model, X, y, config.validation_split,
                                               validation_data)
    weights = _check_weights(model, y, train_idx, sample_weight, config.class_weight,
                             scale_free=loss_reduction == "weighted_mean")
    schedule = _schedule(config, X_val is not None, optimizer, model.dtype)
    # a batch never holds more than the training set: size the buffers (and the
    # batches, identically) by that, so a huge batch_size cannot exhaust memory
    run_batch = min(config.batch_size, int(train_idx.size))
    # The kernels step on the mean loss; the summed loss's step is the optimizer's
    # step on B times the mean gradient, B the batch size (the last, smaller
    # batch of an epoch is scaled by the same nominal B)
    grad_scale = float(run_batch) if loss_reduction == "sum" else 1.0
    _check_eps(getattr(optimizer, "eps", None), model.dtype, grad_scale)
    params = _history_params(model, config, optimizer, int(train_idx.size),
                             0 if X_val is None else int(X_val.shape[0]), weights is not None)
    loss_scale = 1.0 if weights is None else float(weights[train_idx].mean(dtype=np.float64))
    if loss_reduction == "weighted_mean":
        loss_scale = 1.0  # the batch's loss is a weighted mean already
    reference_loss = float(np.log(model.n_classes_)) if model.is_classifier else np.inf
    return FitPlan(X, y, train_idx, X_val, y_val, weights, loss_scale, reference_loss,
                   "weighted_mean" if loss_reduction == "weighted_mean" else "mean",
                   config.epochs, run_batch, grad_scale,
                   bool(config.shuffle), config.early_stopping, monitor, config.min_delta,
                   schedule, list(config.callbacks), config.checkpoint, params, aug_params,
                   bool(config.exact_sums))


def _check_eps(eps, dtype, grad_scale):
    """ValueError unless Adam's ``eps`` (None: an optimizer without one), as the
    kernels get it (divided by ``grad_scale``), is a normal number of the
    model's dtype: the training threads flush smaller ones to 0, and a weight
    whose gradient is 0 would then be divided by 0."""
    if eps is None:
        return
    tiny = float(np.finfo(dtype).tiny)
    if eps / grad_scale < tiny:
        how = " with loss_reduction='sum'" if grad_scale != 1.0 else ""
        raise ValueError(f"optimizer.eps must be at least {tiny * grad_scale:.6g} for a "
                         f"{np.dtype(dtype).name} model{how} (a smaller one is flushed to 0 in "
                         f"training), got {eps!r}")


def _check_rates(schedule, learning_rate, epochs, dtype):
    """ValueError unless ``schedule`` (one that reads no metrics) gives a finite
    rate of at least the smallest normal ``dtype`` in each of the fit's epochs
    (a rate of 0 makes no update, and the training threads flush a subnormal
    one to 0)."""
    tiny = float(np.finfo(dtype).tiny)
    for epoch in range(epochs):
        rate = schedule.rate(epoch, learning_rate, epochs=epochs)
        if not (np.isfinite(rate) and rate >= tiny):
            raise ValueError(f"lr_schedule {schedule!r} gives the learning rate {rate!r} in "
                             f"epoch {epoch} of {epochs} (base rate {learning_rate!r}); "
                             f"every epoch's rate must be finite and at least {tiny:g} (the "
                             f"smallest normal {np.dtype(dtype).name})")


def resolve_optimizer(model, config):
    """The optimizer of a fit: ``config.optimizer`` (an :class:`fastnn.optim.Optimizer`,
    or a name, which continues the state of the model's previous optimizer of that
    name), or an SGD from the shorthand fields, which continues the momentum of the
    model's previous SGD fit."""
    optimizer = config.optimizer
    shorthand = {k: getattr(config, k) for k in ("learning_rate", "momentum", "l1", "l2")}
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
        opt = optim.make(optimizer)
        prev = model.optimizer_
        if type(prev) is type(opt) and prev.slots is not None:  # as the shorthand's SGD
            opt.load_state_dict(prev.state_dict())
        return opt
    if not isinstance(optimizer, optim.Optimizer):
        raise TypeError(f"optimizer must be a fastnn.optim.Optimizer or one of "
                        f"{sorted(optim.OPTIMIZERS)}, got {optimizer!r}")
    return optimizer
