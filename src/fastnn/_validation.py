"""Argument checks for the public API.

Every check raises ``TypeError`` (wrong kind of thing) or ``ValueError``
(right kind, wrong value) with a message that names the argument and says
what was expected. Data is converted once, to the model's dtype and
C-contiguous, so that the compiled kernels can trust it.
"""
import math
import numbers
import operator

import numpy as np

_REAL_KINDS = "biuf"  # bool, signed, unsigned, float


def _as_array(value, name):
    try:
        with np.errstate(all="ignore"):
            arr = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name} must be a rectangular array of numbers: {exc}") from None
    if arr.dtype.kind not in _REAL_KINDS:
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    return arr


def check_X(X, n_features, dtype, name="X"):
    """A 2-D, finite, C-contiguous array of ``dtype`` with ``n_features`` columns."""
    arr = _as_array(X, name)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, {n_features}), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} must have at least one sample, got shape {arr.shape}")
    if arr.shape[1] != n_features:
        raise ValueError(f"{name} must have {n_features} features (columns), got {arr.shape[1]}")
    with np.errstate(all="ignore"):
        arr = np.ascontiguousarray(arr, dtype=dtype)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite in {np.dtype(dtype).name}: it holds NaN or inf")
    return arr


def check_y(y, n_samples, n_classes, name="y"):
    """Integer labels in [0, n_classes) as a C-contiguous intp vector of n_samples."""
    arr = _as_array(y, name)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (n_samples,), got shape {arr.shape}")
    if arr.shape[0] != n_samples:
        raise ValueError(f"{name} must have {n_samples} labels to match X, got {arr.shape[0]}")
    if arr.dtype.kind == "b":
        raise TypeError(f"{name} must hold integer class labels, got dtype bool")
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} must be integer labels, got NaN or inf")
        if not np.array_equal(arr, np.floor(arr)):
            raise ValueError(f"{name} must be integer labels, got fractional values")
    if arr.size:
        lo, hi = arr.min(), arr.max()
        if lo < 0 or hi >= n_classes:
            raise ValueError(f"{name} must be in [0, {n_classes}) (the model has "
                             f"{n_classes} outputs), got values in [{lo}, {hi}]")
    return np.ascontiguousarray(arr, dtype=np.intp)


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
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}")
    return value


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
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        lb, hb = ("(" if low_open else "["), (")" if high_open else "]")
        raise ValueError(f"{name} must be finite and in {lb}{lo}, {hi}{hb}, got {value}")
    return value


def check_choice(value, name, choices):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value
