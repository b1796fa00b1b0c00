"""Evaluation metrics beyond accuracy."""
import numpy as np


def confusion_matrix(y_true, y_pred, n_classes):
    """``cm[i, j]``: number of samples of true class i predicted as class j.

    >>> confusion_matrix([0, 1, 1], [0, 1, 0], 2).tolist()
    [[1, 0], [1, 1]]
    """
    y_true = np.asarray(y_true, dtype=np.intp)
    y_pred = np.asarray(y_pred, dtype=np.intp)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D of the same length, got "
                         f"{y_true.shape} and {y_pred.shape}")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.size and (y.min() < 0 or y.max() >= n_classes):
            raise ValueError(f"{name} must be in [0, {n_classes})")
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes) \
        .reshape(n_classes, n_classes)


def per_class_error(cm):
    """Error rate of each true class: 1 - diag / row sum (0 for an empty class)."""
    cm = np.asarray(cm)
    totals = cm.sum(axis=1)
    return np.where(totals > 0, 1 - np.diag(cm) / np.maximum(totals, 1), 0.0)
