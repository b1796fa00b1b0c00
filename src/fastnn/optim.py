"""Optimizers: each owns its hyperparameters and its state, and exposes ``step``.

In training, an optimizer's update is not a separate pass: the compiled loop
(:func:`fastnn.kernels.train_batches`) applies it inside the kernel that makes
each block of the weight gradient, reading the optimizer's hyperparameters from
:meth:`Optimizer.hyper` and its state from :attr:`Optimizer.slots`. ``step``
runs the same rule as one standalone pass, for a gradient computed elsewhere.

Penalties (``l1``, ``l2``, ``weight_decay``) apply to the weights only, never to
the biases, in training; ``step`` applies them to every element it is given.

>>> import numpy as np
>>> from fastnn.optim import Adam
>>> opt = Adam(learning_rate=0.1)
>>> w = np.array([1.0, -1.0], np.float32)
>>> opt.step(w, np.array([0.5, -2.0], np.float32))
>>> w.tolist(), opt.t      # Adam's first step is learning_rate * sign(grad)
([0.8999999761581421, -0.8999999761581421], 1)

To add an optimizer: a subclass here that names its update rule (``kind``), its
number of state arrays (``n_slots``) and its fields of :class:`fastnn.kernels.Hyper`,
plus the rule in the compiled kernels and their NumPy twins.
"""
from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from . import kernels
from ._checks import defaults_of
from ._hyper import Hyper
from ._layout import aligned_zeros
from ._typing import ArrayLike, FloatArray
from ._validation import check_float

_ADAM_DEFAULTS = Hyper._field_defaults


class Optimizer:
    """Base class. Subclasses set ``kind``, ``n_slots`` and ``_hyper_fields``.

    State: ``slots``, an array ``(n_slots, n_params)`` bound on first use to
    one parameter vector (zeros), and ``t``, the number of steps taken. A
    ``fit`` keeps using the state of the optimizer it is given, so passing
    the same optimizer to a second ``fit`` continues where the first ended;
    :meth:`reset` forgets it.
    """

    kind: str = ""
    n_slots: int = 0
    _hyper_fields: tuple[str, ...] = ()

    def __init__(self, learning_rate: float, l1: float = 0.0, l2: float = 0.0) -> None:
        self.learning_rate = check_float(learning_rate, "learning_rate", low=0.0, low_open=True)
        self.l1 = check_float(l1, "l1", low=0.0)
        self.l2 = check_float(l2, "l2", low=0.0)
        self.slots: FloatArray | None = None
        self.t: int = 0

    # -- configuration --------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """The constructor arguments: ``type(opt)(**opt.get_config())`` is a fresh copy."""
        return {name: getattr(self, name) for name in self._config_names()}

    @classmethod
    def _config_names(cls) -> list[str]:
        return list(defaults_of(cls.__init__))

    def to_dict(self) -> dict[str, Any]:
        """``{"optimizer": kind, **get_config()}`` (what a History's params record)."""
        return {"optimizer": self.kind, **self.get_config()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def hyper(self, learning_rate: float | None = None, grad_scale: float = 1.0) -> Hyper:
        """The :class:`fastnn.kernels.Hyper` of the next compiled call.

        ``learning_rate``: the scheduled rate (default: ``self.learning_rate``).
        ``grad_scale``: train on ``grad_scale`` times the mean-loss gradient
        (``loss_reduction="sum"`` passes the batch size); see :meth:`_scaled`.
        """
        lr = self.learning_rate if learning_rate is None else learning_rate
        fields = {name: getattr(self, name) for name in self._hyper_fields}
        fields.update(learning_rate=lr, l1=self.l1, l2=self.l2)
        if grad_scale != 1.0:
            fields = self._scaled(fields, float(grad_scale))
        return Hyper(self.kind, t=self.t, **fields)

    def _scaled(self, fields: dict[str, Any], s: float) -> dict[str, Any]:
        raise NotImplementedError

    # -- state ----------------------------------------------------------------
    def bind(self, n_params: int, dtype: Any) -> FloatArray:
        """Make ``slots`` an ``(n_slots, n_params)`` array of ``dtype`` (zeros
        when the optimizer has no state yet) and return it. State of another
        size or dtype is an error. The state is not tied to one model: passed
        to a second model of the same shape, an optimizer continues with the
        first one's moments (call :meth:`reset`, or pass a fresh optimizer)."""
        dtype = np.dtype(dtype)
        shape = (self.n_slots, int(n_params))
        if self.slots is None:
            self.slots = aligned_zeros(shape, dtype)
        elif self.slots.shape != shape or self.slots.dtype != dtype:
            raise ValueError(f"this {type(self).__name__} holds the state of another model "
                             f"({self.slots.dtype} {self.slots.shape}, this one needs {dtype} "
                             f"{shape}); pass a fresh optimizer or call reset()")
        return self.slots

    def reset(self) -> None:
        """Forget the state (the next use starts from zeros, at step 0)."""
        self.slots = None
        self.t = 0

    def state_dict(self) -> dict[str, Any]:
        """``{"t": int, "slots": array or None}`` (copies)."""
        return {"t": self.t, "slots": None if self.slots is None else self.slots.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        slots = state["slots"]
        t = state["t"]
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 0:
            raise ValueError(f"optimizer state: t must be a non-negative int, got {t!r}")
        if slots is not None:
            slots = np.array(slots, copy=True)
            if slots.ndim != 2 or slots.shape[0] != self.n_slots or not np.isfinite(slots).all():
                raise ValueError(f"optimizer state: slots must be a finite ({self.n_slots}, "
                                 f"n_params) array, got shape {slots.shape}")
        self.slots, self.t = slots, int(t)

    # -- a standalone step ----------------------------------------------------
    def step(self, params: FloatArray, grad: ArrayLike,
             learning_rate: float | None = None) -> None:
        """Update ``params`` (a writeable 1-D float array) in place with ``grad``
        (array-like, converted to its dtype) by one step of this rule, on the
        compiled kernel; ``t`` advances by one."""
        if not isinstance(params, np.ndarray) or params.ndim != 1 \
                or params.dtype not in (np.float32, np.float64):
            raise TypeError(f"params must be a 1-D float32 or float64 numpy array (flatten "
                            f"a weight matrix with .reshape(-1)), got "
                            f"{getattr(params, 'dtype', type(params).__name__)} of shape "
                            f"{getattr(params, 'shape', None)}")
        grad = np.ascontiguousarray(grad, dtype=params.dtype)
        if grad.shape != params.shape:
            raise ValueError(f"grad must have the shape of params {params.shape}, "
                             f"got {grad.shape}")
        slots = self.bind(params.size, params.dtype)
        self._step(params, grad, slots, self.hyper(learning_rate)._replace(t=self.t + 1))
        self.t += 1

    def _step(self, params: FloatArray, grad: Any, slots: FloatArray, hyper: Hyper) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """Mini-batch SGD with (optionally Nesterov) momentum and L1/L2.

    ``g = grad + l2*w + l1*sign(w)``, ``v = momentum*v - learning_rate*g``, then
    ``w += v``, or with ``nesterov=True`` ``w += momentum*v - learning_rate*g``
    (the form of Keras and scikit-learn).

    >>> SGD(0.1, momentum=0.9, nesterov=True)
    SGD(learning_rate=0.1, momentum=0.9, nesterov=True, l1=0.0, l2=0.0)
    """

    kind = "sgd"
    n_slots = 1
    _hyper_fields = ("momentum", "nesterov")

    def __init__(self, learning_rate: float = 0.01, momentum: float = 0.0,
                 nesterov: bool = False, l1: float = 0.0, l2: float = 0.0) -> None:
        super().__init__(learning_rate, l1, l2)
        self.momentum = check_float(momentum, "momentum", low=0.0, high=1.0, high_open=True)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov must be a bool, got {nesterov!r}")
        self.nesterov = bool(nesterov)

    def _scaled(self, fields: dict[str, Any], s: float) -> dict[str, Any]:
        # the step on s*(mean gradient) + penalties = the mean-loss step with
        # learning rate lr*s and penalties l1/s, l2/s
        return {**fields, "learning_rate": fields["learning_rate"] * s,
                "l1": fields["l1"] / s, "l2": fields["l2"] / s}

    def _step(self, params: FloatArray, grad: Any, slots: FloatArray, hyper: Hyper) -> None:
        kernels.sgd_update(params, grad, slots[0], hyper.learning_rate, hyper.momentum,
                           hyper.l1, hyper.l2, nesterov=hyper.nesterov)


class Adam(Optimizer):
    """Adam (Kingma & Ba, Algorithm 1), with decoupled weight decay (AdamW).

    ``g = grad + l2*w + l1*sign(w)``; ``m = beta1*m + (1-beta1)*g``;
    ``v = beta2*v + (1-beta2)*g*g``; ``w *= 1 - learning_rate*weight_decay``;
    ``w -= learning_rate/(1-beta1**t) * m / (sqrt(v/(1-beta2**t)) + eps)``
    at step ``t = 1, 2, ...`` (PyTorch's ``Adam``/``AdamW``).

    >>> Adam(weight_decay=0.01)
    Adam(learning_rate=0.001, beta1=0.9, beta2=0.999, eps=1e-08, weight_decay=0.01, l1=0.0, l2=0.0)
    """

    kind = "adam"
    n_slots = 2
    _hyper_fields = ("beta1", "beta2", "eps", "weight_decay")

    def __init__(self, learning_rate: float = 0.001, beta1: float = _ADAM_DEFAULTS["beta1"],
                 beta2: float = _ADAM_DEFAULTS["beta2"], eps: float = _ADAM_DEFAULTS["eps"],
                 weight_decay: float = 0.0, l1: float = 0.0, l2: float = 0.0) -> None:
        super().__init__(learning_rate, l1, l2)
        self.beta1 = check_float(beta1, "beta1", low=0.0, high=1.0, high_open=True)
        self.beta2 = check_float(beta2, "beta2", low=0.0, high=1.0, high_open=True)
        self.eps = check_float(eps, "eps", low=0.0, low_open=True)
        self.weight_decay = check_float(weight_decay, "weight_decay", low=0.0)

    def _scaled(self, fields: dict[str, Any], s: float) -> dict[str, Any]:
        # Adam on s*g + penalties equals Adam on g + penalties/s with eps/s:
        # m and sqrt(v) both scale by s
        return {**fields, "eps": fields["eps"] / s, "l1": fields["l1"] / s,
                "l2": fields["l2"] / s}

    def _step(self, params: FloatArray, grad: Any, slots: FloatArray, hyper: Hyper) -> None:
        kernels.adam_update(params, grad, slots[0], slots[1], hyper.learning_rate, hyper.t,
                            hyper.beta1, hyper.beta2, hyper.eps, hyper.weight_decay,
                            hyper.l1, hyper.l2)


#: Optimizers by name, for configs and the command line.
OPTIMIZERS: dict[str, type[Optimizer]] = {cls.kind: cls for cls in (SGD, Adam)}


def params_of(name: str) -> dict[str, Any]:
    """The constructor parameters of the optimizer named ``name``, with their defaults."""
    return defaults_of(OPTIMIZERS[name].__init__)


def make(name: str, **params: Any) -> Optimizer:
    """The optimizer ``name`` (a key of :data:`OPTIMIZERS`) built from ``params``;
    a parameter it does not take is a ValueError naming it.

    >>> make("adam", learning_rate=0.01)
    Adam(learning_rate=0.01, beta1=0.9, beta2=0.999, eps=1e-08, weight_decay=0.0, l1=0.0, l2=0.0)
    """
    if not isinstance(name, str) or name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {name!r}")
    allowed = params_of(name)
    for key in params:
        if key not in allowed:
            raise ValueError(f"optimizer {name!r} takes no parameter {key!r} "
                             f"(it takes {', '.join(allowed)})")
    return OPTIMIZERS[name](**params)
