"""The flat parameter layout shared by the model, the trainer and the kernels.

All parameters of a network live in one contiguous vector, weights first:
``[W_0, ..., W_{L-1}, b_0, ..., b_{L-1}]`` with ``W_l`` of shape
``(sizes[l], sizes[l+1])`` in row-major order. The weights being one prefix
lets a single SGD pass apply L1/L2 to all weights and none to the biases.
"""
import numpy as np


def n_weights(sizes):
    return int(sum(a * b for a, b in zip(sizes[:-1], sizes[1:])))


def n_params(sizes):
    return n_weights(sizes) + int(sum(sizes[1:]))


def workspace_sizes(sizes, batch_size):
    """Elements of the ``(params, acts, deltas)`` buffers of ``train_batches``:
    all parameters; the activations A_0..A_L of a batch; two ping-pong delta
    buffers of the widest layer. Python ints, so no overflow."""
    sizes = [int(s) for s in sizes]
    return (n_params(sizes), batch_size * sum(sizes), 2 * batch_size * max(sizes[1:]))


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
