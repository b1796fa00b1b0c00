"""Plain-NumPy twins of the compiled kernels: same names, same signatures.

They are the oracle of the tests and the baseline of the benchmarks, so
they are written as good NumPy: vectorised, in place where NumPy allows it
(``out=``), with the caller's buffers reused. A twin does not re-validate
what NumPy itself rejects; the compiled wrappers in :mod:`fastnn.kernels` do.
"""
import numpy as np
from scipy.special import expit

from ._layout import n_weights, unflatten

ACTIVATIONS = {"identity": 0, "relu": 1, "tanh": 2, "sigmoid": 3}


def _activate(z, activation):
    if activation == "relu":
        np.maximum(z, 0, out=z)
    elif activation == "tanh":
        np.tanh(z, out=z)
    elif activation == "sigmoid":
        expit(z, out=z)
    elif activation != "identity":
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    return z


def _mul_activation_grad(d, a, activation):
    """d *= act'(z), with the derivative written in terms of a = act(z)."""
    if activation == "relu":
        d[a <= 0] = 0
    elif activation == "tanh":
        d *= 1 - a * a
    elif activation == "sigmoid":
        d *= a * (1 - a)
    return d


def dense_forward(X, W, b, activation="identity", out=None):
    """``out = activation(X @ W + b)``."""
    out = np.matmul(X, W, out=out)
    out += b
    return _activate(out, activation)


def dense_backward(A_prev, W, dZ, activation_prev="identity", dW=None, db=None,
                   dZ_prev=None, compute_dZ_prev=True):
    """``(A_prev.T @ dZ, dZ.sum(0), (dZ @ W.T) * act'(A_prev))``."""
    dW = np.matmul(A_prev.T, dZ, out=dW)
    db = np.sum(dZ, axis=0, out=db)
    if compute_dZ_prev:
        dZ_prev = np.matmul(dZ, W.T, out=dZ_prev)
        _mul_activation_grad(dZ_prev, A_prev, activation_prev)
    return dW, db, dZ_prev


def softmax_cross_entropy(logits, labels, grad=None):
    """``(mean loss, (softmax(logits) - onehot(labels)) / batch)``, max-shifted."""
    n = logits.shape[0]
    rows = np.arange(n)
    zmax = logits.max(axis=1, keepdims=True)
    with np.errstate(over="ignore"):  # float32 +-3e38: the shift may overflow to -inf
        shifted = logits - zmax
    grad = np.exp(shifted, out=grad)
    sums = grad.sum(axis=1, keepdims=True)
    # the loss's shift in float64, so that finite logits give a finite loss
    loss = float(np.mean(np.log(sums[:, 0]).astype(np.float64)
                         - (logits[rows, labels].astype(np.float64) - zmax[:, 0])))
    grad /= sums * n
    grad[rows, labels] -= 1.0 / n
    return loss, grad


def softmax(logits, out=None):
    """Row-wise softmax, max-shifted."""
    out = np.subtract(logits, logits.max(axis=1, keepdims=True), out=out)
    np.exp(out, out=out)
    out /= out.sum(axis=1, keepdims=True)
    return out


def sgd_update(W, grad, velocity, learning_rate, momentum=0.0, l1=0.0, l2=0.0):
    """``velocity = momentum*velocity - lr*(grad + l2*W + l1*sign(W)); W += velocity``."""
    step = grad + l2 * W if l2 else grad.copy()
    if l1:
        step += l1 * np.sign(W)
    velocity *= momentum
    velocity -= learning_rate * step
    W += velocity


def train_batches(X, y, order, start, stop, batch_size, sizes, activation, params,
                  grads, velocity, acts, deltas, ybuf, learning_rate, momentum=0.0,
                  l1=0.0, l2=0.0, n_threads=1):
    """Mini-batch SGD over ``order[start:stop]``, one Python step per batch.

    Same algorithm, buffers and return value as the compiled kernel:
    ``(rows_done, loss_sum, n_correct, diverged)``. ``n_threads`` is accepted
    for the same signature; NumPy's BLAS uses its own threads.
    """
    sizes = [int(s) for s in sizes]
    n_layers = len(sizes) - 1
    W, b = unflatten(params, sizes)
    gW, gb = unflatten(grads, sizes)
    nw = n_weights(sizes)
    loss_sum, correct = 0.0, 0
    for s0 in range(start, stop, batch_size):
        idx = order[s0:min(s0 + batch_size, stop)]
        bs = len(idx)
        A = [np.take(X, idx, axis=0)]
        for layer in range(n_layers):
            act = activation if layer < n_layers - 1 else "identity"
            A.append(dense_forward(A[-1], W[layer], b[layer], act))
        logits = A[-1]
        labels = y[idx]
        loss, delta = softmax_cross_entropy(logits, labels)
        if not np.isfinite(loss):
            return s0 - start, loss_sum, correct, True
        loss_sum += loss * bs
        correct += int(np.count_nonzero(logits.argmax(axis=1) == labels))
        for layer in range(n_layers - 1, -1, -1):
            _, _, delta = dense_backward(A[layer], W[layer], delta, activation,
                                         dW=gW[layer], db=gb[layer],
                                         compute_dZ_prev=layer > 0)
        sgd_update(params[:nw], grads[:nw], velocity[:nw], learning_rate, momentum, l1, l2)
        sgd_update(params[nw:], grads[nw:], velocity[nw:], learning_rate, momentum)
    return stop - start, loss_sum, correct, False
