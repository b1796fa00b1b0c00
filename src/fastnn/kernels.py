"""Public face of the compiled kernels (``fastnn._kernels``).

Each function validates its arguments (dtype, ndim, shape, C-contiguity,
writeability, overlap, label range) and raises ``TypeError``/``ValueError``
naming the argument before any code runs without the GIL. Each has a
plain-NumPy twin of the same name and signature in :mod:`fastnn.reference`.

:class:`Hyper` holds the optimizer of a ``train_batches`` call (SGD with
momentum or Nesterov momentum, Adam/AdamW; L1/L2 on weights) and its update
rules; ``train_batches`` also takes sample weights, dropout rates and an
augmentation (:func:`augment_rows` makes the same deformed rows).

Kernels propagate NaN/inf like BLAS does; the model API
(:class:`fastnn.MLP`) rejects non-finite data before it gets here.

>>> import numpy as np
>>> from fastnn import kernels
>>> X = np.ones((2, 3), np.float32); W = np.ones((3, 4), np.float32)
>>> kernels.dense_forward(X, W, np.zeros(4, np.float32), "relu")
array([[3., 3., 3., 3.],
       [3., 3., 3., 3.]], dtype=float32)
"""
from ._hyper import Hyper  # noqa: F401
from ._kernels import (  # noqa: F401
    ACTIVATIONS,
    CSR_PRODUCTS_MAX_DENSITY,
    LOSSES,
    adam_update,
    augment_rows,
    csr_forward,
    dense_backward,
    dense_forward,
    dropout_mask,
    sgd_update,
    sigmoid_cross_entropy,
    softmax,
    softmax_cross_entropy,
    squared_error,
    train_batches,
)

__all__ = [
    "ACTIVATIONS",
    "dense_forward",
    "csr_forward",
    "dense_backward",
    "LOSSES",
    "softmax_cross_entropy",
    "sigmoid_cross_entropy",
    "squared_error",
    "softmax",
    "sgd_update",
    "adam_update",
    "dropout_mask",
    "augment_rows",
    "train_batches",
    "CSR_PRODUCTS_MAX_DENSITY",
    "Hyper",
]
