"""What a fit carries from epoch to epoch (:class:`TrainState`), and its
checkpoint: saved whole after every epoch, resumed only by a fit of the same
model, data and arguments (their fingerprint)."""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from .. import serialization
from .._validation import check_float, check_int
from .history import History


def _fingerprint(X, y, config, X_val=None, y_val=None, weights=None):
    h = hashlib.sha256()
    h.update(json.dumps(config, sort_keys=True).encode())
    for A, labels in ((X, y), (X_val, y_val)):
        if A is None:
            continue
        h.update(repr(A.shape).encode())
        # every value (a sample of rows let a changed row resume; SHA-256 reads
        # MNIST's 188 MB in about 0.1 s, once a fit)
        parts = (A.indptr, A.indices, A.data) if hasattr(A, "indptr") else (A,)  # CSR: its arrays
        for part in parts:
            h.update(memoryview(np.ascontiguousarray(part)).cast("B"))
        h.update(np.ascontiguousarray(labels).tobytes())
    if weights is not None:
        h.update(weights.tobytes())
    return h.hexdigest()


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
