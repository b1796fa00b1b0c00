"""Plain-NumPy twins of the compiled kernels: same names, same signatures.

They are the oracle of the tests and the baseline of the benchmarks, so
they are written as good NumPy: vectorised, in place where NumPy allows it
(``out=``), with the caller's buffers reused. A twin does not re-validate
what NumPy itself rejects; the compiled wrappers in :mod:`fastnn.kernels` do.

The twins by concern: :mod:`~fastnn.reference.layers` (activations, dense
layers, softmax, losses), :mod:`~fastnn.reference.updates` (SGD, Adam),
:mod:`~fastnn.reference.dropout` (the masks), :mod:`~fastnn.reference.augment`
(the image deformations) and :mod:`~fastnn.reference.train` (``train_batches``,
the whole training step); every name is re-exported here, so that
``kernels=fastnn.reference`` stands for :mod:`fastnn.kernels`.
"""
from .._hyper import Hyper
from .augment import augment_rows
from .dropout import dropout_mask
from .layers import (ACTIVATIONS, LOSS_REDUCTIONS, LOSSES, _activate, csr_forward,
                     csr_weight_grad, dense_backward, dense_forward, sigmoid_cross_entropy,
                     softmax, softmax_cross_entropy, squared_error)
from .train import train_batches
from .updates import adam_update, sgd_update

__all__ = ["Hyper", "ACTIVATIONS", "LOSSES", "LOSS_REDUCTIONS", "dense_forward",
           "dense_backward", "csr_forward", "csr_weight_grad", "softmax", "softmax_cross_entropy", "sigmoid_cross_entropy",
           "squared_error", "sgd_update", "adam_update", "dropout_mask", "augment_rows",
           "train_batches", "_activate"]
