"""The flat parameter layout shared by the model, the trainer and the kernels.

All parameters of a network live in one contiguous vector, weights first:
``[W_0, ..., W_{L-1}, b_0, ..., b_{L-1}]`` with ``W_l`` of shape
``(sizes[l], sizes[l+1])`` in row-major order. The weights being one prefix
lets a single SGD pass apply L1/L2 to all weights and none to the biases.
"""
from typing import NamedTuple

import numpy as np

#: The dtypes a model's parameters (and the compiled kernels) take.
DTYPES = ("float32", "float64")
#: How a model's weights may be initialised (:class:`fastnn.MLP`'s ``init``).
INITS = ("auto", "uniform", "he", "glorot")


def aligned_zeros(shape, dtype, align=64):
    """Zeros whose data starts on an ``align``-byte boundary (a cache line):
    the training threads split a layer by whole cache lines of its rows, which
    they can only do when the arrays start on one.

    >>> aligned_zeros((3, 5), np.float32).ctypes.data % 64
    0
    """
    dtype = np.dtype(dtype)
    n = int(np.prod(shape, dtype=np.int64))
    raw = np.zeros(n * dtype.itemsize + align, dtype=np.uint8)
    start = -raw.ctypes.data % align
    return raw[start:start + n * dtype.itemsize].view(dtype).reshape(shape)


def n_weights(sizes):
    return int(sum(a * b for a, b in zip(sizes[:-1], sizes[1:])))


def n_params(sizes):
    return n_weights(sizes) + int(sum(sizes[1:]))


class WorkspaceSizes(NamedTuple):
    """Elements of the buffers of ``train_batches`` (Python ints, so no overflow)."""

    params: int  #: params, each row of slots, and ws.grads: all parameters
    acts: int    #: ws.acts: the activations A_0..A_L of a batch
    deltas: int  #: ws.deltas: two ping-pong delta buffers of the widest layer
    wbuf: int    #: ws.wbuf: a batch's sample weights
    masks: int   #: ws.masks (uint8): a batch's dropout masks of A_0..A_{L-1}


def workspace_sizes(sizes, batch_size):
    """The :class:`WorkspaceSizes` of ``train_batches`` for ``sizes`` and ``batch_size``.

    >>> workspace_sizes([784, 128, 10], 32)
    WorkspaceSizes(params=101770, acts=29504, deltas=8192, wbuf=32, masks=29184)
    """
    sizes = [int(s) for s in sizes]
    batch_size = int(batch_size)
    return WorkspaceSizes(n_params(sizes), batch_size * sum(sizes),
                          2 * batch_size * max(sizes[1:]), batch_size,
                          batch_size * sum(sizes[:-1]))


def drop_threshold(rate):
    """Dropout's 16-bit threshold ``round(rate * 65536)`` (Python's round: half to
    even; exact, as ``rate * 65536`` is): an element is kept iff its u16 >= it."""
    return int(round(float(rate) * 65536.0))


def unflatten(flat, sizes):
    """Views ``(weights, biases)`` into ``flat``: lists of arrays, one per layer."""
    weights, biases = [], []
    off = 0
    for a, b in zip(sizes[:-1], sizes[1:]):
        weights.append(flat[off:off + a * b].reshape(a, b))
        off += a * b
    for b in sizes[1:]:
        biases.append(flat[off:off + b])
        off += b
    return weights, biases


def as_sizes(sizes):
    return np.ascontiguousarray(sizes, dtype=np.intp)
