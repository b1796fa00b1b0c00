"""What a fit reports as it goes: the :class:`History` it returns and the
:class:`Callback` hooks it calls."""
from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from .._atomic import atomic_write_text
from .._typing import PathLike

if TYPE_CHECKING:  # pragma: no cover
    from ..model import MLP


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
        """The history ``to_dict`` (or the JSON of ``to_json``) describes; a
        metric's ``null`` (how JSON holds a NaN) is NaN again."""
        h = cls(d.get("params"))
        h.history = {k: [math.nan if x is None else x for x in v]
                     for k, v in d["history"].items()}
        h.epoch = list(d["epoch"])
        for key in ("best_epoch", "stopped_epoch", "diverged", "interrupted"):
            setattr(h, key, d.get(key, getattr(h, key)))
        return h

    def to_json(self, path: PathLike | None = None) -> str:
        """``to_dict()`` as JSON text, written to ``path`` when given (atomically).
        A non-finite metric (a callback's NaN, say) is ``null``, so that the
        file stays standard JSON (which has no NaN or Infinity)."""
        d = self.to_dict()
        d["history"] = {k: [x if not isinstance(x, float) or math.isfinite(x) else None
                            for x in v] for k, v in self.history.items()}
        text = json.dumps(d, indent=2)
        if path is not None:
            atomic_write_text(path, text)
        return text

    def __repr__(self) -> str:
        n = len(self.epoch)
        last = {k: round(v[-1], 4) for k, v in self.history.items() if v}
        return f"History({n} epochs, best_epoch={self.best_epoch}, last={last})"
