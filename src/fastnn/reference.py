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


def _mul_activation_grad(d, a, activation, work=None):
    """d *= act'(z), with the derivative written in terms of a = act(z).

    ``work``: an optional buffer of ``d.size`` elements of ``d``'s dtype (the
    ReLU mask, or the factor of tanh/sigmoid), so that nothing is allocated.
    """
    if activation == "relu":
        if work is None:
            d[a <= 0] = 0
        else:
            mask = work.view(bool)[:d.size].reshape(d.shape)
            np.less_equal(a, 0, out=mask)
            np.copyto(d, 0, where=mask)
    elif activation in ("tanh", "sigmoid"):
        t = np.empty_like(d) if work is None else work[:d.size].reshape(d.shape)
        if activation == "tanh":  # 1 - a*a
            np.multiply(a, a, out=t)
            np.subtract(1, t, out=t)
        else:  # a * (1 - a)
            np.subtract(1, a, out=t)
            np.multiply(a, t, out=t)
        d *= t
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


def softmax_cross_entropy(logits, labels, grad=None, *, return_correct=False):
    """``(mean loss, (softmax(logits) - onehot(labels)) / batch)``, max-shifted;
    with ``return_correct``, also the count of rows whose argmax is the label."""
    n, k = logits.shape
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= k):
        raise ValueError(f"labels must be in [0, {k})")
    if grad is None:
        grad = np.empty_like(logits)
    correct = int(np.count_nonzero(logits.argmax(axis=1) == labels)) if return_correct else None
    loss, grad = _softmax_xent(logits, labels, grad, _XentBuffers(n, k, logits.dtype))
    return (loss, grad, correct) if return_correct else (loss, grad)


class _XentBuffers:
    """Row-sized buffers of :func:`_softmax_xent` for batches of up to ``n`` rows."""

    def __init__(self, n, n_classes, dtype):
        self.n_classes = n_classes
        self.zmax = np.empty((n, 1), dtype)
        self.sums = np.empty((n, 1), dtype)
        self.logsum = np.empty(n, dtype)
        self.flat_idx = np.empty(n, np.intp)
        self.row_start = np.arange(n, dtype=np.intp) * n_classes
        self.picked = np.empty(n, dtype)
        self.loss64 = np.empty(n, np.float64)
        self.picked64 = np.empty(n, np.float64)


def _softmax_xent(logits, labels, grad, buf):
    """softmax_cross_entropy into ``grad`` with the temporaries in ``buf``."""
    n = logits.shape[0]
    zmax, sums, logsum = buf.zmax[:n], buf.sums[:n], buf.logsum[:n]
    idx, picked = buf.flat_idx[:n], buf.picked[:n]
    loss64, picked64 = buf.loss64[:n], buf.picked64[:n]
    np.max(logits, axis=1, keepdims=True, out=zmax)
    with np.errstate(over="ignore"):  # float32 +-3e38: the shift may overflow to -inf
        np.subtract(logits, zmax, out=grad)
    np.exp(grad, out=grad)
    np.sum(grad, axis=1, keepdims=True, out=sums)
    # the loss's shift in float64, so that finite logits give a finite loss:
    # mean(log(sum) - (logit[label] - max))
    np.log(sums[:, 0], out=logsum)
    np.add(buf.row_start[:n], labels, out=idx)  # flat index of each row's label
    np.take(logits.reshape(-1), idx, out=picked)
    np.copyto(loss64, logsum)
    np.copyto(picked64, picked)
    np.subtract(picked64, zmax[:, 0], out=picked64)
    np.subtract(loss64, picked64, out=loss64)
    loss = float(np.mean(loss64))
    np.multiply(sums, n, out=sums)
    grad /= sums
    flat = grad.reshape(-1)
    np.take(flat, idx, out=picked)
    picked -= 1.0 / n
    np.put(flat, idx, picked)
    return loss, grad


def softmax(logits, out=None):
    """Row-wise softmax, max-shifted."""
    out = np.subtract(logits, logits.max(axis=1, keepdims=True), out=out)
    np.exp(out, out=out)
    out /= out.sum(axis=1, keepdims=True)
    return out


def sgd_update(W, grad, velocity, learning_rate, momentum=0.0, l1=0.0, l2=0.0):
    """``velocity = momentum*velocity - lr*(grad + l2*W + l1*sign(W)); W += velocity``."""
    _sgd_step(W, grad, velocity, learning_rate, momentum, l1, l2, np.empty_like(W),
              np.empty_like(W) if l1 else None)


def _sgd_step(W, grad, velocity, learning_rate, momentum, l1, l2, step, sign=None):
    """:func:`sgd_update` with its temporaries in ``step`` (and ``sign`` for L1)."""
    if l2:
        np.multiply(W, l2, out=step)
        step += grad
    else:
        np.copyto(step, grad)
    if l1:
        np.sign(W, out=sign)
        sign *= l1
        step += sign
    velocity *= momentum
    step *= learning_rate
    velocity -= step
    W += velocity


class _TrainBuffers:
    """Views of one ``train_batches`` call into the caller's buffers (the same
    layout as the compiled kernel: ``acts`` holds A_0..A_L of a batch, ``deltas``
    two ping-pong deltas of the widest layer, ``grads`` the gradients, ``ybuf``
    the batch's labels), plus the few temporaries NumPy needs, allocated once
    per call."""

    def __init__(self, sizes, batch_size, params, grads, acts, deltas, ybuf, l1):
        dtype = params.dtype
        self.W, self.b = unflatten(params, sizes)
        self.gW, self.gb = unflatten(grads, sizes)
        self.A, off = [], 0
        for width in sizes:
            self.A.append(acts[off:off + batch_size * width].reshape(batch_size, width))
            off += batch_size * width
        half = batch_size * max(sizes[1:])
        self.deltas = (deltas[:half], deltas[half:2 * half])
        self.ybuf = ybuf[:batch_size]
        self.work = np.empty(half, dtype)  # activation-derivative factor or ReLU mask
        self.xent = _XentBuffers(batch_size, sizes[-1], dtype)
        self.argmax = np.empty(batch_size, np.intp)
        self.hits = np.empty(batch_size, bool)
        nw = n_weights(sizes)
        self.step = np.empty(params.size, dtype)
        self.sign = np.empty(nw, dtype) if l1 else None


def train_batches(X, y, order, start, stop, batch_size, sizes, activation, params,
                  grads, velocity, acts, deltas, ybuf, learning_rate, momentum=0.0,
                  l1=0.0, l2=0.0, n_threads=1):
    """Mini-batch SGD over ``order[start:stop]``, one Python step per batch.

    Same algorithm, buffers and return value as the compiled kernel:
    ``(rows_done, loss_sum, n_correct, diverged)``. Every array of a batch
    lives in the caller's buffers or in temporaries made once per call, so a
    batch allocates nothing (NumPy's ``out=`` everywhere).
    ``n_threads`` is accepted for the same signature; NumPy's BLAS uses its own threads.
    """
    sizes = [int(s) for s in sizes]
    n_layers = len(sizes) - 1
    nw = n_weights(sizes)
    if start < stop:  # checked once, so that each batch can gather with mode="clip"
        rows = order[start:stop]
        if rows.min() < 0 or rows.max() >= X.shape[0]:
            raise ValueError(f"order must hold row indices in [0, {X.shape[0]})")
        labels = y[rows]
        if labels.min() < 0 or labels.max() >= sizes[-1]:
            raise ValueError(f"y must hold labels in [0, {sizes[-1]})")
    buf = _TrainBuffers(sizes, batch_size, params, grads, acts, deltas, ybuf, l1)
    W, b, gW, gb = buf.W, buf.b, buf.gW, buf.gb
    step_w, step_b = buf.step[:nw], buf.step[nw:]
    loss_sum, correct = 0.0, 0
    for s0 in range(start, stop, batch_size):
        idx = order[s0:min(s0 + batch_size, stop)]
        bs = idx.shape[0]
        # mode="clip": indices checked above; "raise" would copy through a temporary
        a = np.take(X, idx, axis=0, out=buf.A[0][:bs], mode="clip")
        labels = np.take(y, idx, out=buf.ybuf[:bs], mode="clip")
        for layer in range(n_layers):
            act = activation if layer < n_layers - 1 else "identity"
            a = dense_forward(a, W[layer], b[layer], act, out=buf.A[layer + 1][:bs])
        logits = a
        cur = 0  # which of the two delta buffers holds the current delta
        delta = buf.deltas[cur][:bs * sizes[-1]].reshape(bs, sizes[-1])
        loss, delta = _softmax_xent(logits, labels, delta, buf.xent)
        if not np.isfinite(loss):
            return s0 - start, loss_sum, correct, True
        loss_sum += loss * bs
        np.argmax(logits, axis=1, out=buf.argmax[:bs])
        correct += int(np.count_nonzero(np.equal(buf.argmax[:bs], labels, out=buf.hits[:bs])))
        for layer in range(n_layers - 1, -1, -1):
            a_prev = buf.A[layer][:bs]
            if bs == 1:  # an outer product: BLAS gemm with k=1 is several times slower
                np.multiply(a_prev.T, delta, out=gW[layer])
            else:
                np.matmul(a_prev.T, delta, out=gW[layer])
            np.sum(delta, axis=0, out=gb[layer])
            if layer > 0:
                cur = 1 - cur
                nxt = buf.deltas[cur][:bs * sizes[layer]].reshape(bs, sizes[layer])
                np.matmul(delta, W[layer].T, out=nxt)
                delta = _mul_activation_grad(nxt, a_prev, activation, buf.work)
        _sgd_step(params[:nw], grads[:nw], velocity[:nw], learning_rate, momentum, l1, l2,
                  step_w, buf.sign)
        _sgd_step(params[nw:], grads[nw:], velocity[nw:], learning_rate, momentum, 0.0, 0.0,
                  step_b)
    return stop - start, loss_sum, correct, False
