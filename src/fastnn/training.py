"""The training loop: epochs, validation, early stopping, callbacks, checkpoints.

Python decides policy once per chunk of batches; the batches themselves run
inside one compiled call (:func:`fastnn.kernels.train_batches`), so small
batches pay no Python overhead per step, and all buffers are allocated once
per ``fit``. Between chunks Python can react to Ctrl-C.
"""
import hashlib
import json
import os
import dataclasses
import time
import warnings

import numpy as np
from tqdm.auto import tqdm

from . import kernels as _compiled
from . import serialization, threads
from ._hyper import Hyper
from ._layout import workspace_sizes
from ._validation import check_choice, check_float, check_int, check_X, check_y
from .optim import SGD

#: Rows per compiled call (rounded down to whole batches, at least one batch):
#: bounds the reaction time to Ctrl-C, which Python sees between calls only.
CHUNK_ROWS = 8192
#: An epoch whose mean training loss exceeds this many times ln(classes), the
#: loss of a uniform guess, has diverged (e.g. learning_rate=1e4 gives ~1e18).
DIVERGED_LOSS = 1000.0
#: ``fit(loss_reduction=...)``: the batch's cross-entropy is averaged (fastnn's and
#: PyTorch's default) or summed (as the original reports write it).
LOSS_REDUCTIONS = ("mean", "sum")


class TrainingDivergedWarning(RuntimeWarning):
    """The loss became NaN, infinite or runaway (a mean epoch loss above
    ``DIVERGED_LOSS * ln(classes)``); training stopped and weights were restored."""


class Callback:
    """Base class for Keras-style callbacks passed to ``fit(callbacks=[...])``.

    ``logs`` holds the epoch's metrics (``loss``, ``accuracy``, ``val_loss``,
    ``val_accuracy``, ``lr``, ``time``). Set ``self.model.stop_training = True``
    to stop after the current epoch.
    """

    model = None

    def set_model(self, model):
        self.model = model

    def on_train_begin(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass


class History:
    """What ``fit`` returns: per-epoch metrics, Keras-style.

    ``history`` maps ``loss``, ``accuracy`` (running means over the epoch's
    batches, before each update), ``val_loss``, ``val_accuracy`` (after the
    epoch, when validating), ``lr`` and ``time`` (seconds of training) to
    per-epoch lists. ``best_epoch`` is the index of the epoch whose weights
    the model holds at the end when validating; ``stopped_epoch`` the index
    at which early stopping fired; ``diverged``/``interrupted`` say why
    training ended early.
    """

    def __init__(self, params=None):
        self.history = {}
        self.epoch = []
        self.params = dict(params or {})
        self.best_epoch = None
        self.stopped_epoch = None
        self.diverged = False
        self.interrupted = False

    def _append(self, epoch, logs):
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)

    def to_dict(self):
        return {"history": self.history, "epoch": self.epoch, "params": self.params,
                "best_epoch": self.best_epoch, "stopped_epoch": self.stopped_epoch,
                "diverged": self.diverged, "interrupted": self.interrupted}

    @classmethod
    def from_dict(cls, d):
        h = cls(d.get("params"))
        h.history = {k: list(v) for k, v in d["history"].items()}
        h.epoch = list(d["epoch"])
        for key in ("best_epoch", "stopped_epoch", "diverged", "interrupted"):
            setattr(h, key, d.get(key, getattr(h, key)))
        return h

    def to_json(self, path=None):
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            with open(path, "w") as f:
                f.write(text)
        return text

    def __repr__(self):
        n = len(self.epoch)
        last = {k: round(v[-1], 4) for k, v in self.history.items() if v}
        return f"History({n} epochs, best_epoch={self.best_epoch}, last={last})"


class Workspace:
    """The buffers of one ``fit``: work space of the size of the parameters
    (``grads``: the compiled loop keeps transposed weight copies there, the
    NumPy twin the gradients), activations, deltas, batch labels, batch
    sample weights (``wbuf``) and dropout masks (``masks``, uint8)."""

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


def epoch_order(train_idx, seed, epoch):
    """The row order of one epoch: a permutation that depends on (seed, epoch) only."""
    rng = np.random.default_rng([seed, 1, epoch])
    return train_idx[rng.permutation(train_idx.shape[0])]


def _fingerprint(X, y, config, X_val=None, y_val=None):
    h = hashlib.sha256()
    h.update(json.dumps(config, sort_keys=True).encode())
    for A, labels in ((X, y), (X_val, y_val)):
        if A is None:
            continue
        h.update(repr(A.shape).encode())
        h.update(np.ascontiguousarray(A[:: max(1, A.shape[0] // 257)]).tobytes())
        h.update(labels.tobytes())
    return h.hexdigest()


def _validate_fit_args(model, X, y, epochs, batch_size, validation_split, validation_data,
                       early_stopping, verbose, callbacks, checkpoint):
    epochs = check_int(epochs, "epochs", low=0)
    batch_size = check_int(batch_size, "batch_size", low=1, high=2**31 - 1)
    validation_split = check_float(validation_split, "validation_split", low=0.0, high=1.0,
                                   high_open=True)
    early_stopping = check_int(early_stopping, "early_stopping", low=1, allow_none=True)
    if not isinstance(verbose, (bool, int, np.integer)):
        raise TypeError(f"verbose must be a bool, got {verbose!r}")
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
    X = check_X(X, model.layers[0], model.dtype)
    y = check_y(y, X.shape[0], model.layers[-1])
    if validation_data is not None:
        if validation_split:
            raise ValueError("give validation_split or validation_data, not both")
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise TypeError("validation_data must be a tuple (X_val, y_val)")
        X_val = check_X(validation_data[0], model.layers[0], model.dtype, "validation_data[0]")
        y_val = check_y(validation_data[1], X_val.shape[0], model.layers[-1], "validation_data[1]")
        train_idx = np.arange(X.shape[0], dtype=np.intp)
    elif validation_split:
        train_idx, val_idx = stratified_split(y, validation_split, model.seed, model.layers[-1])
        if val_idx.size == 0 or train_idx.size == 0:
            raise ValueError(f"validation_split={validation_split} leaves an empty training or "
                             f"validation set for {X.shape[0]} samples")
        X_val, y_val = X[val_idx], y[val_idx]
    else:
        X_val = y_val = None
        train_idx = np.arange(X.shape[0], dtype=np.intp)
    return (X, y, train_idx, X_val, y_val, epochs, batch_size, validation_split,
            early_stopping, callbacks, checkpoint)


def fit(model, X, y, *, epochs, batch_size, learning_rate, momentum, l2, l1,
        validation_split, validation_data, early_stopping, lr_decay, lr_decay_threshold,
        verbose, callbacks, checkpoint, loss_reduction="mean", shuffle=True,
        kernels=None):
    """Train ``model`` (see :meth:`fastnn.MLP.fit`). ``kernels``: the module whose
    ``train_batches`` runs the epochs (the compiled one by default;
    :mod:`fastnn.reference` gives the pure-NumPy trainer of the same algorithm)."""
    kernels = _compiled if kernels is None else kernels
    opt = SGD(learning_rate, momentum, l1, l2, lr_decay, lr_decay_threshold)
    loss_reduction = check_choice(loss_reduction, "loss_reduction", LOSS_REDUCTIONS)
    (X, y, train_idx, X_val, y_val, epochs, batch_size, validation_split, early_stopping,
     callbacks, checkpoint) = _validate_fit_args(
        model, X, y, epochs, batch_size, validation_split, validation_data, early_stopping,
        verbose, callbacks, checkpoint)
    validating = X_val is not None
    if early_stopping is not None and not validating:
        raise ValueError("early_stopping needs validation data: set validation_split or "
                         "validation_data")
    if lr_decay is not None and not validating:
        raise ValueError("lr_decay needs validation data: set validation_split or validation_data")

    params = {"epochs": epochs, "batch_size": batch_size, "samples": int(train_idx.size),
              "validation_samples": 0 if X_val is None else int(X_val.shape[0]),
              "validation_split": validation_split, "early_stopping": early_stopping,
              "loss_reduction": loss_reduction, **opt.to_dict()}
    if not isinstance(shuffle, (bool, np.bool_)):
        raise TypeError(f"shuffle must be a bool, got {shuffle!r}")
    if not shuffle:  # recorded only when off: checkpoints of shuffled runs keep their fingerprint
        params["shuffle"] = False
    history = History(params)
    # a batch never holds more than the training set: size the buffers (and the
    # batches, identically) by that, so a huge batch_size cannot exhaust memory
    run_batch = min(batch_size, int(train_idx.size))
    ws = Workspace(model._sizes, run_batch, model.dtype)
    # The kernels step on the mean loss. The summed loss's step with learning rate
    # eta and penalties l1, l2 (each added to the summed gradient) is the same step
    # on the mean loss with eta*B and l1/B, l2/B, B the batch size; the last batch
    # of an epoch, when smaller (b < B rows), is scaled by the same nominal B.
    scale = float(run_batch) if loss_reduction == "sum" else 1.0
    step = opt if scale == 1.0 else dataclasses.replace(opt, l1=opt.l1 / scale, l2=opt.l2 / scale)
    state = np.concatenate([model._params, model._velocity])  # last finite params+velocity
    best = state.copy()
    best_loss, wait, lr, prev_val_acc = np.inf, 0, opt.learning_rate, None
    base_epoch = model._epochs_trained
    start = 0

    fingerprint = None
    if checkpoint is not None:
        fingerprint = _fingerprint(X, y, {"layers": list(model.layers), "seed": model.seed,
                                          "init": model.init,
                                          "val": None if X_val is None else X_val.shape[0],
                                          **{k: v for k, v in params.items() if k != "epochs"}},
                                   X_val if validation_data is not None else None,
                                   y_val if validation_data is not None else None)
        if os.path.exists(checkpoint):
            history, best, best_loss, wait, lr, prev_val_acc, base_epoch = _resume(
                checkpoint, model, fingerprint)
            history.params = params  # this call's (the epochs may differ)
            start = len(history.epoch)
            model._epochs_trained = base_epoch + start

    model.stop_training = False
    for cb in callbacks:
        cb.set_model(model)
        cb.on_train_begin()
    chunk = chunk_rows(run_batch)
    bar = tqdm(total=epochs, initial=start, disable=not verbose, unit="epoch",
               desc=f"fit {list(model.layers)}")
    try:
        with threads.limit():
            for epoch in range(start, epochs):
                if history.stopped_epoch is not None or model.stop_training:
                    break
                for cb in callbacks:
                    cb.on_epoch_begin(epoch)
                _snapshot(model, state)
                order = (epoch_order(train_idx, model.seed, base_epoch + epoch) if shuffle
                         else train_idx)
                t0 = time.perf_counter()
                done, loss_sum, correct, diverged, interrupted = _run_epoch(
                    kernels, model, ws, X, y, order, run_batch, chunk, lr * scale, step)
                if interrupted:
                    history.interrupted = True
                    if not _finite(model):
                        _restore(model, state)
                    warnings.warn(f"training interrupted in epoch {epoch} after {done} samples; "
                                  "returning the history so far", RuntimeWarning, stacklevel=3)
                    break
                elapsed = time.perf_counter() - t0
                # a finite loss on the last batch can still leave overflowed weights,
                # or weights whose outputs overflow (a non-finite validation loss);
                # and as the loss is computed stably, a runaway step size shows as a
                # huge but finite loss rather than NaN
                diverged = (diverged or not _finite(model)
                            or loss_sum > DIVERGED_LOSS * np.log(model.layers[-1]) * done)
                if validating and not diverged:
                    val_loss, val_acc = model._evaluate_checked(X_val, y_val)
                    diverged = not np.isfinite(val_loss)
                if diverged:
                    history.diverged = True
                    _restore(model, best if validating and history.best_epoch is not None
                             else state)
                    warnings.warn(f"loss or weights became NaN, infinite or runaway in epoch {epoch} "
                                  f"(learning rate {lr:g}); training stopped and the last "
                                  "finite weights were "
                                  "restored", TrainingDivergedWarning, stacklevel=3)
                    break
                model._epochs_trained += 1
                logs = {"loss": loss_sum / done, "accuracy": correct / done}
                if validating:
                    logs.update(val_loss=val_loss, val_accuracy=val_acc)
                logs.update(lr=lr, time=elapsed)
                history._append(epoch, logs)
                if validating:
                    if val_loss < best_loss:
                        best_loss, wait, history.best_epoch = val_loss, 0, epoch
                        _snapshot(model, best)
                    else:
                        wait += 1
                        if early_stopping is not None and wait >= early_stopping:
                            history.stopped_epoch = epoch
                    gain = val_acc - prev_val_acc if prev_val_acc is not None else np.inf
                    lr = opt.next_learning_rate(lr, gain)
                    prev_val_acc = val_acc
                for cb in callbacks:
                    cb.on_epoch_end(epoch, dict(logs))
                bar.update(1)
                bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items() if k not in ("lr", "time")})
                if checkpoint is not None:
                    _save_checkpoint(checkpoint, model, history, best, best_loss, wait, lr,
                                     prev_val_acc, base_epoch, fingerprint)
    except KeyboardInterrupt:
        # Ctrl-C outside the compiled batches (validation, callbacks, checkpoint):
        # the weights are those of a whole epoch; the last checkpoint is intact
        history.interrupted = True
        warnings.warn("training interrupted between batches; returning the history so far",
                      RuntimeWarning, stacklevel=3)
    finally:
        bar.close()
    if validating and history.best_epoch is not None:
        _restore(model, best)  # also after Ctrl-C: the model holds the best epoch's weights
    for cb in callbacks:
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


def _snapshot(model, buf):
    """Copy the model's params and velocity into ``buf`` (one flat vector)."""
    n = model._params.size
    buf[:n] = model._params
    buf[n:] = model._velocity


def _restore(model, buf):
    """Inverse of :func:`_snapshot`."""
    n = model._params.size
    model._params[...] = buf[:n]
    model._velocity[...] = buf[n:]


def _run_epoch(kernels, model, ws, X, y, order, batch_size, chunk, lr, opt):
    """One epoch over ``order``, a compiled chunk of batches at a time.

    Returns ``(rows_done, loss_sum, n_correct, diverged, interrupted)``; Ctrl-C
    is caught between chunks, where the model is consistent.
    """
    done, loss_sum, correct, diverged = 0, 0.0, 0, False
    n_threads = threads.training_threads()
    hyper = Hyper("sgd", lr, momentum=opt.momentum, l1=opt.l1, l2=opt.l2)
    try:
        while done < order.size and not diverged:
            stop = min(done + chunk, order.size)
            rows, ls, c, diverged = kernels.train_batches(
                X, y, order, done, stop, batch_size, model._sizes, model.activation,
                model._params, model._velocity[None, :], ws, hyper, n_threads=n_threads)
            done += rows
            loss_sum += ls
            correct += c
    except KeyboardInterrupt:
        return done, loss_sum, correct, diverged, True
    return done, loss_sum, correct, diverged, False


def _finite(model):
    return bool(np.isfinite(model._params).all() and np.isfinite(model._velocity).all())


def _resume(path, model, fingerprint):
    """Load a checkpoint into ``model``; the training state it holds, checked.

    Returns ``(history, best, best_loss, wait, lr, prev_val_acc, base_epoch)``.
    A checkpoint of another model, data or arguments, or a tampered one,
    raises ValueError.
    """
    header, arrays = serialization.load_checkpoint(path)
    saved = header["state"]
    if (list(header["layers"]) != list(model.layers) or header["dtype"] != model.dtype.name
            or header["activation"] != model.activation
            or saved.get("fingerprint") != fingerprint):
        raise ValueError(f"checkpoint {os.fspath(path)!r} was written by a different model, "
                         f"data or arguments; delete it or choose another path")
    try:
        history = History.from_dict(saved["history"])
        best_loss = np.inf if saved["best_loss"] is None else check_float(saved["best_loss"], "best_loss")
        wait = check_int(saved["wait"], "wait", low=0)
        lr = check_float(saved["lr"], "lr", low=0.0, low_open=True)
        prev_val_acc = check_float(saved["prev_val_acc"], "prev_val_acc", allow_none=True)
        base_epoch = check_int(saved["base_epoch"], "base_epoch", low=0)
        if any(len(v) != len(history.epoch) for v in history.history.values()):
            raise ValueError("history lists of different lengths")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"checkpoint {os.fspath(path)!r} has a corrupt training state: "
                         f"{exc}") from None
    model._params[...] = arrays["params"]
    model._velocity[...] = arrays["velocity"]
    return history, arrays["best"], best_loss, wait, lr, prev_val_acc, base_epoch


def _save_checkpoint(path, model, history, best, best_loss, wait, lr, prev_val_acc,
                     base_epoch, fingerprint):
    state = {"history": history.to_dict(), "best_loss": None if np.isinf(best_loss) else best_loss,
             "wait": wait, "lr": lr, "prev_val_acc": prev_val_acc, "base_epoch": base_epoch,
             "fingerprint": fingerprint}
    serialization.save_checkpoint(path, model, state, {"best": best})
