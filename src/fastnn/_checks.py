"""Scalar arguments: their checks (integers, reals, choices) and the one reader
of defaults off a signature (:func:`defaults_of`). At the bottom of the
package: :mod:`fastnn.threads` uses them, and :mod:`fastnn._validation` (the
array checks, which split their work over fastnn's threads) re-exports the checks.

Each raises ``TypeError`` (wrong kind of thing) or ``ValueError`` (right
kind, wrong value) with a message that names the argument.

>>> check_int(3, "epochs", low=1)
3
>>> check_float(0, "l2", low=0)
0.0
>>> check_choice("relu", "activation", {"relu", "tanh"})
'relu'
"""
import inspect
import math
import numbers
import operator

import numpy as np


def check_int(value, name, low=None, high=None, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)):  # operator.index would take True for 1
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if not isinstance(value, (numbers.Integral, np.integer)):
        try:
            value = operator.index(value)
        except TypeError:
            raise TypeError(f"{name} must be an integer, got {value!r}") from None
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be {_bounds(low, high, False, False)}, got {value}")
    return value


def _bounds(low, high, low_open, high_open):
    """The allowed range in words: ``in [0, 1)``, ``>= 1``, ``<= 9``, ``finite``."""
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high}"
    return "finite"


def check_float(value, name, low=None, high=None, low_open=False, high_open=False,
                allow_none=False):
    """A finite real number within the given bounds."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    bad = not math.isfinite(value)
    if low is not None:
        bad |= value <= low if low_open else value < low
    if high is not None:
        bad |= value >= high if high_open else value > high
    if bad:
        where = _bounds(low, high, low_open, high_open)
        raise ValueError(f"{name} must be {'' if where == 'finite' else 'finite and '}{where}, "
                         f"got {value}")
    return value


def check_choice(value, name, choices):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


def defaults_of(fn):
    """``{name: default}`` of ``fn``'s parameters that have a default, in order:
    what :meth:`fastnn.MLP.init_defaults` and :func:`fastnn.optim.params_of` read
    (configs take their defaults from them; fit's are the fields of
    :class:`fastnn.training.FitConfig`).

    >>> defaults_of(lambda x, y=1, *, z=None: None)
    {'y': 1, 'z': None}
    """
    return {p.name: p.default for p in inspect.signature(fn).parameters.values()
            if p.default is not p.empty}
