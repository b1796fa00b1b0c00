"""Evaluation metrics beyond accuracy."""
import numpy as np


def confusion_matrix(y_true, y_pred, n_classes):
    """``cm[i, j]``: number of samples of true class i predicted as class j.

    >>> confusion_matrix([0, 1, 1], [0, 1, 0], 2).tolist()
    [[1, 0], [1, 1]]
    """
    if isinstance(n_classes, (bool, np.bool_)) or not isinstance(n_classes, (int, np.integer)) \
            or n_classes < 1:
        raise ValueError(f"n_classes must be a positive integer, got {n_classes!r}")
    y_true, y_pred = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D of the same length, got "
                         f"{y_true.shape} and {y_pred.shape}")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.size and (y.min() < 0 or y.max() >= n_classes):
            raise ValueError(f"{name} must be in [0, {n_classes})")
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes) \
        .reshape(n_classes, n_classes)


def _labels(y, name):
    """Integer labels as intp; fractional, NaN or non-numeric values are a ValueError
    (a plain ``astype(intp)`` would truncate 1.7 to 1 silently)."""
    arr = np.asarray(y)
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must hold integer class labels, got dtype {arr.dtype}")
    if arr.dtype.kind == "f":
        if not (np.isfinite(arr).all() and np.array_equal(arr, np.floor(arr))):
            raise ValueError(f"{name} must hold integer class labels, got non-integer values")
    return arr.astype(np.intp)


def per_class_error(cm):
    """Error rate of each true class: 1 - diag / row sum (0 for an empty class)."""
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"cm must be a square confusion matrix, got shape {cm.shape}")
    totals = cm.sum(axis=1)
    return np.where(totals > 0, 1 - np.diag(cm) / np.maximum(totals, 1), 0.0)


def r2_score(y_true, y_pred):
    """The coefficient of determination, averaged over the outputs, as
    scikit-learn's ``r2_score`` (``multioutput="uniform_average"``): per output
    ``1 - sum (t - p)^2 / sum (t - mean t)^2``, in float64; an output whose
    targets are constant scores 1.0 when predicted exactly, else 0.0.

    >>> r2_score([1.0, 2.0, 3.0], [1.0, 2.0, 4.0])
    0.5
    """
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.ndim == 1:
        t = t[:, None]
    if p.ndim == 1:
        p = p[:, None]
    if t.shape != p.shape or t.ndim != 2 or t.shape[0] < 1:
        raise ValueError(f"y_true and y_pred must have the same shape (n_samples[, n_outputs]), "
                         f"got {np.shape(y_true)} and {np.shape(y_pred)}")
    for name, a in (("y_true", t), ("y_pred", p)):
        if not np.isfinite(a).all():
            raise ValueError(f"{name} must be finite: it holds NaN or inf")
    ss_res = ((t - p) ** 2).sum(axis=0)
    ss_tot = ((t - t.mean(axis=0)) ** 2).sum(axis=0)
    safe = ss_tot > 0
    scores = np.where(safe, 1.0 - ss_res / np.where(safe, ss_tot, 1.0),
                      np.where(ss_res == 0, 1.0, 0.0))
    return float(scores.mean())
