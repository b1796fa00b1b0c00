"""Learning-rate schedules: small objects that give the rate of each epoch.

``fit(lr_schedule=...)`` takes one of these (or its name, or a mapping
``{"name": ..., **parameters}`` as configs write it). Before every epoch the
training loop asks the schedule for that epoch's rate; the optimizer's own
``learning_rate`` is the base rate the schedule scales. The rate is constant
within an epoch (the compiled loop takes one rate per call); ``History``
records each epoch's rate under ``"lr"``.

* :class:`Constant` — the base rate;
* :class:`Step` — times ``gamma`` every ``step_size`` epochs (PyTorch's ``StepLR``);
* :class:`Exponential` — times ``gamma`` every epoch (``ExponentialLR``);
* :class:`Cosine` — half a cosine from the base rate to ``min_learning_rate``
  over ``epochs`` (``CosineAnnealingLR``);
* :class:`Plateau` — the rule of ``fit(lr_decay=...)``: times ``factor`` after
  an epoch whose validation accuracy rose by less than ``threshold``.

Every schedule but :class:`Plateau` takes ``warmup_epochs``: the first ``W``
epochs ramp linearly, ``base*(e+1)/(W+1)`` in epoch ``e < W``, and the schedule
itself starts at epoch ``W`` (its epoch 0).

>>> from fastnn.schedules import Cosine, Step, make
>>> [round(Step(step_size=2, gamma=0.5).rate(e, 0.1), 4) for e in range(5)]
[0.1, 0.1, 0.05, 0.05, 0.025]
>>> s = Cosine(epochs=5, warmup_epochs=2)
>>> [round(s.rate(e, 0.1), 4) for e in range(7)]
[0.0333, 0.0667, 0.1, 0.075, 0.025, 0.0, 0.0]
>>> make({"name": "exponential", "gamma": 0.9})
Exponential(gamma=0.9, min_learning_rate=0.0, warmup_epochs=0)

To add a schedule: a subclass with a ``name``, its parameters validated in
``__init__`` (each stored under its own name, for :meth:`Schedule.get_config`),
and :meth:`Schedule._rate`; then it is known to :func:`make` and to configs.
"""
from __future__ import annotations

import inspect
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Union

from ._validation import check_float, check_int

#: What a History holds: metric name -> per-epoch values.
Logs = Mapping[str, Sequence[float]]

#: Schedules by name, for configs and the command line: every subclass with a
#: ``name`` is entered as it is defined (fastnn's five below, and a user's own).
SCHEDULES: dict[str, type[Schedule]] = {}


class Schedule:
    """Base class: the learning rate of each epoch of a fit.

    :meth:`rate` is called before each epoch ``e`` (0, 1, ... counted within
    the fit, a resumed fit continuing the count) with the optimizer's base
    rate, the fit's number of epochs and the metrics of the epochs before
    ``e``. A schedule holds no state: the same arguments give the same rate,
    so checkpoints resume it exactly.
    """

    name: ClassVar[str] = ""
    #: Reads validation metrics (``fit`` then requires validation data).
    needs_validation: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.name:
            return
        taken = SCHEDULES.get(cls.name)
        if taken is not None and taken.__qualname__ != cls.__qualname__:
            raise ValueError(f"a schedule named {cls.name!r} exists already "
                             f"({taken.__module__}.{taken.__qualname__})")
        SCHEDULES[cls.name] = cls  # (the same class defined again: the new one)

    def __init__(self, warmup_epochs: int = 0) -> None:
        self.warmup_epochs: int = check_int(warmup_epochs, "warmup_epochs", low=0)

    def rate(self, epoch: int, learning_rate: float, *, epochs: int | None = None,
             history: Logs | None = None) -> float:
        """The learning rate of epoch ``epoch`` for base rate ``learning_rate``."""
        w = self.warmup_epochs
        if epoch < w:
            return learning_rate * (epoch + 1) / (w + 1)
        return self._rate(epoch - w, learning_rate,
                          None if epochs is None else max(epochs - w, 0), history or {})

    def _rate(self, epoch: int, learning_rate: float, epochs: int | None, history: Logs) -> float:
        raise NotImplementedError

    def check_epochs(self, epochs: int) -> None:
        """ValueError unless a fit of ``epochs`` epochs can follow this schedule
        (``fit`` asks before training; any length can, but for :class:`Cosine`)."""

    @property
    def reads_fit_epochs(self) -> bool:
        """Whether the rates depend on the fit's ``epochs`` (a checkpoint then
        resumes only a fit of as many)."""
        return False

    # -- configuration --------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """The constructor arguments: ``type(s)(**s.get_config())`` is an equal schedule."""
        return {p: getattr(self, p) for p in _params(type(self))}

    def to_dict(self) -> dict[str, Any]:
        """``{"name": name, **get_config()}``: what configs write and :func:`make` reads."""
        return {"name": self.name, **self.get_config()}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schedule) and type(other) is type(self) \
            and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(self.get_config().items())))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class Constant(Schedule):
    """The base rate every epoch (after the warm-up).

    >>> [round(Constant(warmup_epochs=3).rate(e, 1.0), 2) for e in range(5)]
    [0.25, 0.5, 0.75, 1.0, 1.0]
    """

    name = "constant"

    def __init__(self, warmup_epochs: int = 0) -> None:
        super().__init__(warmup_epochs)

    def _rate(self, epoch: int, learning_rate: float, epochs: int | None, history: Logs) -> float:
        return learning_rate


class Step(Schedule):
    """``learning_rate * gamma ** (epoch // step_size)``.

    >>> Step(step_size=10).rate(25, 1.0)
    0.010000000000000002
    """

    name = "step"

    def __init__(self, step_size: int, gamma: float = 0.1, warmup_epochs: int = 0) -> None:
        super().__init__(warmup_epochs)
        self.step_size: int = check_int(step_size, "step_size", low=1)
        self.gamma: float = check_float(gamma, "gamma", low=0.0, high=1.0, low_open=True)

    def _rate(self, epoch: int, learning_rate: float, epochs: int | None, history: Logs) -> float:
        return learning_rate * self.gamma ** (epoch // self.step_size)


class Exponential(Schedule):
    """``learning_rate * gamma ** epoch``, never below ``min_learning_rate``
    (a floor above the base rate leaves the base rate).

    >>> round(Exponential(gamma=0.5).rate(3, 1.0), 3)
    0.125
    >>> Exponential(gamma=0.5, min_learning_rate=0.2).rate(3, 1.0)
    0.2
    """

    name = "exponential"

    def __init__(self, gamma: float, min_learning_rate: float = 0.0,
                 warmup_epochs: int = 0) -> None:
        super().__init__(warmup_epochs)
        self.gamma: float = check_float(gamma, "gamma", low=0.0, high=1.0, low_open=True)
        self.min_learning_rate: float = check_float(min_learning_rate, "min_learning_rate",
                                                    low=0.0)

    def _rate(self, epoch: int, learning_rate: float, epochs: int | None, history: Logs) -> float:
        return min(learning_rate, max(learning_rate * self.gamma ** epoch,
                                      self.min_learning_rate))


class Cosine(Schedule):
    """Cosine annealing: ``m + (lr - m) * (1 + cos(pi * e / T)) / 2`` in epoch
    ``e`` of ``T = epochs`` (``m = min_learning_rate``; after the warm-up,
    which takes ``warmup_epochs`` of the ``T``), and ``m`` from epoch ``T`` on.

    ``epochs``: the length of the annealing, warm-up included; ``None`` (the
    default) takes the fit's ``epochs``. A ``min_learning_rate`` above the base
    rate leaves the base rate (as :class:`Exponential`'s), never a rising one. A rate of 0 is refused by ``fit``
    (``min_learning_rate`` must then be > 0 for epochs past ``T``).

    >>> [round(Cosine(epochs=4).rate(e, 1.0), 3) for e in range(4)]
    [1.0, 0.854, 0.5, 0.146]
    """

    name = "cosine"

    def __init__(self, epochs: int | None = None, min_learning_rate: float = 0.0,
                 warmup_epochs: int = 0) -> None:
        super().__init__(warmup_epochs)
        self.epochs: int | None = check_int(epochs, "epochs", low=1, allow_none=True)
        self.min_learning_rate: float = check_float(min_learning_rate, "min_learning_rate",
                                                    low=0.0)
        if self.epochs is not None and self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) must be less than epochs "
                             f"({self.epochs})")

    def rate(self, epoch: int, learning_rate: float, *, epochs: int | None = None,
             history: Logs | None = None) -> float:
        return super().rate(epoch, learning_rate,
                            epochs=self.epochs if self.epochs is not None else epochs,
                            history=history)

    @property
    def reads_fit_epochs(self) -> bool:
        return self.epochs is None

    def check_epochs(self, epochs: int) -> None:
        """Annealing over the fit's epochs (``epochs=None``), the warm-up must leave
        some: the same rule as ``Cosine(epochs=...)``'s."""
        if self.epochs is None and 0 < epochs <= self.warmup_epochs:  # (0 epochs: no rate)
            raise ValueError(f"lr_schedule {self!r} anneals over the fit's {epochs} epochs: "
                             f"its warmup_epochs ({self.warmup_epochs}) must be less")

    def _rate(self, epoch: int, learning_rate: float, epochs: int | None, history: Logs) -> float:
        if epochs is None:
            raise ValueError("Cosine needs the number of epochs: Cosine(epochs=...), or a fit's")
        m = min(self.min_learning_rate, learning_rate)  # a floor above the base: the base
        if epoch >= epochs:
            return m
        return m + (learning_rate - m) * (1.0 + math.cos(math.pi * epoch / epochs)) / 2.0


class Plateau(Schedule):
    """The plateau rule of ``fit(lr_decay=factor, lr_decay_threshold=threshold,
    min_learning_rate=...)`` (a decay that would underflow to 0 leaves the rate as
    it is): after an epoch whose validation accuracy rose by
    less than ``threshold`` over the epoch before (the first epoch of a fit
    always counts as a rise), the rate is multiplied by ``factor``, but never
    brought below ``min_learning_rate`` (a floor above the rate leaves it).
    ``threshold=1.0`` decays after every epoch but the first: an exponential.
    Needs validation data.

    >>> s = Plateau(factor=0.5, threshold=0.01)
    >>> s.rate(2, 0.1, history={"lr": [0.1, 0.1], "val_accuracy": [0.90, 0.905]})
    0.05
    """

    name = "plateau"
    needs_validation = True

    def __init__(self, factor: float = 0.1, threshold: float = 0.001,
                 min_learning_rate: float = 0.0) -> None:
        super().__init__(0)
        self.factor: float = check_float(factor, "factor", low=0.0, high=1.0, low_open=True)
        self.threshold: float = check_float(threshold, "threshold")
        self.min_learning_rate: float = check_float(min_learning_rate, "min_learning_rate",
                                                    low=0.0)

    def _rate(self, epoch: int, learning_rate: float, epochs: int | None, history: Logs) -> float:
        if epoch == 0:
            return learning_rate
        lr = float(history["lr"][epoch - 1])
        # the validation accuracy (R² for a regressor)
        acc = history["val_accuracy"] if "val_accuracy" in history else history["val_r2"]
        gain = acc[epoch - 1] - acc[epoch - 2] if epoch >= 2 else math.inf
        if gain < self.threshold:
            decayed = lr * self.factor
            if decayed > 0:  # a rate that underflows to 0 stays where it was (no update at 0)
                lr = min(lr, max(decayed, self.min_learning_rate))
        return lr



#: What :func:`make` accepts.
ScheduleSpec = Union[Schedule, str, Mapping[str, Any], None]


def _params(cls: type[Schedule]) -> list[str]:
    return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]


def make(spec: ScheduleSpec, name: str = "lr_schedule") -> Schedule | None:
    """The schedule ``spec`` stands for: a :class:`Schedule` as is, a name of
    :data:`SCHEDULES` (with its defaults), a mapping ``{"name": ..., **params}``,
    or ``None``. Errors name ``name`` and the parameter.

    >>> make("cosine")
    Cosine(epochs=None, min_learning_rate=0.0, warmup_epochs=0)
    >>> make({"name": "step", "step_size": 0})
    Traceback (most recent call last):
    ...
    ValueError: lr_schedule: step_size must be >= 1, got 0
    """
    if spec is None or isinstance(spec, Schedule):
        return spec
    if isinstance(spec, str):
        params: dict[str, Any] = {}
        kind = spec
    elif isinstance(spec, Mapping):
        params = dict(spec)
        kind = params.pop("name", None)
        if kind is None:
            raise ValueError(f"{name} must name its schedule: {{name: ..., ...}} with a name "
                             f"of {sorted(SCHEDULES)}")
    else:
        raise TypeError(f"{name} must be a fastnn.schedules.Schedule, a name of "
                        f"{sorted(SCHEDULES)} or a mapping {{name: ..., ...}}, got {spec!r}")
    if not isinstance(kind, str) or kind not in SCHEDULES:
        raise ValueError(f"{name} must be one of {sorted(SCHEDULES)}, got {kind!r}")
    cls = SCHEDULES[kind]
    allowed = _params(cls)
    for key in params:
        if key not in allowed:
            raise ValueError(f"{name}: schedule {kind!r} takes no parameter {key!r} "
                             f"(it takes {', '.join(allowed)})")
    try:
        return cls(**params)
    except TypeError as exc:
        missing = re.findall(r"'(\w+)'", str(exc)) if "missing" in str(exc) else []
        if missing:  # required parameters left out
            raise ValueError(f"{name}: schedule {kind!r} needs {', '.join(missing)} "
                             f"(it takes {', '.join(allowed)})") from None
        raise TypeError(f"{name}: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
