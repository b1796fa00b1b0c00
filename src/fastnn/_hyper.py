"""The optimizer of one ``train_batches`` call: :class:`Hyper` and its validation.

Re-exported by :mod:`fastnn.kernels` and :mod:`fastnn.reference`; both
``train_batches`` read it by attribute and validate it with
:func:`check_hyper` before any work (the compiled one before releasing the GIL).
"""
import math
import numbers
import operator
from typing import NamedTuple

#: The optimizers of the training loop.
KINDS = ("sgd", "adam")
#: Adam steps must stay far from int64's end (the loop counts t + k in C).
T_MAX = 2**62


class Hyper(NamedTuple):
    """Hyperparameters of one ``train_batches`` call.

    Per batch, with ``g`` the gradient of the batch's mean loss; the
    penalties and the decay act on weights only, never on biases:

    * ``g_w = g + l2*w + l1*sign(w)`` (weights), ``g_b = g`` (biases);
    * ``kind="sgd"``: ``v = momentum*v - learning_rate*g; w = w + v``; with
      ``nesterov=True``: ``w = w + momentum*v - learning_rate*g`` (``v`` the
      new velocity);
    * ``kind="adam"``, step ``t`` (the call's k-th batch is step ``self.t + k``):
      ``m = beta1*m + (1-beta1)*g; v = beta2*v + (1-beta2)*g*g;
      w = w*(1 - learning_rate*weight_decay)`` (weights: decoupled decay, AdamW)
      ``w = w - a_t*m / (sqrt(v)*s_t + eps)`` with
      ``a_t = learning_rate/(1-beta1**t)`` and ``s_t = 1/sqrt(1-beta2**t)``,
      computed in double once per step and then rounded to the model dtype.

    Fields that the kind does not use (``momentum``/``nesterov`` for Adam,
    ``beta1``/``beta2``/``eps``/``weight_decay``/``t`` for SGD) are validated
    like the others and otherwise ignored.

    >>> Hyper("adam", 1e-3, weight_decay=0.01)
    Hyper(kind='adam', learning_rate=0.001, momentum=0.0, nesterov=False, beta1=0.9, beta2=0.999, eps=1e-08, weight_decay=0.01, l1=0.0, l2=0.0, t=0)
    """

    kind: str
    learning_rate: float
    momentum: float = 0.0
    nesterov: bool = False
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    l1: float = 0.0
    l2: float = 0.0
    t: int = 0


def _real(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    return float(value)


def _unit(value, name):
    """A float in [0, 1)."""
    v = _real(value, name)
    if not 0.0 <= v < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return v


def _positive(value, name):
    v = _real(value, name)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    return v


def _nonneg(value, name):
    v = _real(value, name)
    if not (math.isfinite(v) and v >= 0):
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    return v


def check_hyper(hyper, name="hyper"):
    """``hyper`` checked field by field, as a :class:`Hyper` of plain Python values.

    ``hyper`` is any object with :class:`Hyper`'s attributes. TypeError for a
    missing attribute or a value of the wrong type, ValueError for one out of
    range; the message names the field (``hyper.beta1 must be in [0, 1), got 1.5``).
    """
    values = {}
    for field in Hyper._fields:
        try:
            values[field] = getattr(hyper, field)
        except AttributeError:
            raise TypeError(f"{name} must have the attribute {field!r} (a fastnn.kernels.Hyper), "
                            f"got {type(hyper).__name__}") from None
    kind = values["kind"]
    if not isinstance(kind, str):
        raise TypeError(f"{name}.kind must be a str, got {kind!r}")
    if kind not in KINDS:
        raise ValueError(f"{name}.kind must be one of {KINDS}, got {kind!r}")
    nesterov = values["nesterov"]
    if not isinstance(nesterov, bool) and type(nesterov).__name__ != "bool_":
        raise TypeError(f"{name}.nesterov must be a bool, got {nesterov!r}")
    t = values["t"]
    if isinstance(t, bool):
        raise TypeError(f"{name}.t must be an integer, got {t!r}")
    try:
        t = operator.index(t)
    except TypeError:
        raise TypeError(f"{name}.t must be an integer, got {t!r}") from None
    if not 0 <= t < T_MAX:
        raise ValueError(f"{name}.t must be in [0, 2**62), got {t!r}")
    return Hyper(
        kind=kind,
        learning_rate=_positive(values["learning_rate"], f"{name}.learning_rate"),
        momentum=_unit(values["momentum"], f"{name}.momentum"),
        nesterov=bool(nesterov),
        beta1=_unit(values["beta1"], f"{name}.beta1"),
        beta2=_unit(values["beta2"], f"{name}.beta2"),
        eps=_positive(values["eps"], f"{name}.eps"),
        weight_decay=_nonneg(values["weight_decay"], f"{name}.weight_decay"),
        l1=_nonneg(values["l1"], f"{name}.l1"),
        l2=_nonneg(values["l2"], f"{name}.l2"),
        t=t,
    )


def adam_constants(hyper, step):
    """``(a_t, s_t, decay)`` of Adam's step ``step`` in double: ``lr/(1-beta1**step)``,
    ``1/sqrt(1-beta2**step)``, ``1 - lr*weight_decay`` (libm's pow, as the C loop)."""
    lr = float(hyper.learning_rate)
    a_t = lr / (1.0 - float(hyper.beta1) ** float(step))
    s_t = 1.0 / math.sqrt(1.0 - float(hyper.beta2) ** float(step))
    return a_t, s_t, 1.0 - lr * float(hyper.weight_decay)
