"""The twins of the layers' kernels: activations, dense forward and backward,
softmax, and the output layer's losses (softmax and sigmoid cross-entropy,
squared error) with their gradients."""
import numpy as np
from scipy.special import expit

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


def csr_forward(X, W, b, activation="identity", out=None, *, rows=None):
    """``out = activation(X @ W + b)`` for a SciPy CSR ``X`` (its rows
    ``start:stop`` for ``rows=(start, stop)``): the first layer's forward on
    the CSR rows (the compiled loop's ``fnn_csr_forward``)."""
    if rows is not None:
        X = X[rows[0]:rows[1]]
    z = X @ W  # SciPy's sparse x dense product (duplicates summed)
    if out is None:
        out = np.asarray(z, dtype=W.dtype)
    else:
        np.copyto(out, z)
    out += b
    return _activate(out, activation)


def csr_weight_grad(X, dZ, out=None):
    """``out = X.T @ dZ`` for a SciPy CSR ``X``: the first layer's weight
    gradient on the CSR rows (the compiled loop's ``fnn_csr_wgrad``; the
    rows of ``W`` that no entry touches get 0)."""
    g = X.T @ dZ
    if out is None:
        return np.asarray(g, dtype=dZ.dtype)
    np.copyto(out, g)
    return out


LOSSES = {"cross_entropy": 0, "binary_cross_entropy": 1, "mse": 2}
LOSS_REDUCTIONS = ("mean", "weighted_mean")


def _loss_denominator(n, weights, loss_reduction):
    """``(denom, inv)`` of a batch of ``n`` rows: the loss's divisor (float64) and
    the gradient's factor (the weights' dtype): ``n`` and ``1/n``, or with
    ``"weighted_mean"`` the weights' sum and its inverse (``1`` and ``0`` where
    the sum is 0)."""
    if loss_reduction not in LOSS_REDUCTIONS:
        raise ValueError(f"loss_reduction must be one of {list(LOSS_REDUCTIONS)}, "
                         f"got {loss_reduction!r}")
    if loss_reduction == "mean" or weights is None:
        return float(n), None
    total = float(np.sum(weights, dtype=np.float64))
    return (total, 1.0 / total) if total > 0 else (1.0, 0.0)


def softmax_cross_entropy(logits, labels, grad=None, *, sample_weight=None,
                          return_correct=False, loss_reduction="mean"):
    """``(sum_i w_i CE_i / batch, w_i (softmax(logits_i) - onehot(labels_i)) / batch)``,
    max-shifted (``w_i = 1`` without ``sample_weight``; ``"weighted_mean"``:
    divided by ``sum_i w_i``); with ``return_correct``, also the (unweighted)
    count of rows whose argmax is the label."""
    n, k = logits.shape
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= k):
        raise ValueError(f"labels must be in [0, {k})")
    if grad is None:
        grad = np.empty_like(logits)
    correct = int(np.count_nonzero(logits.argmax(axis=1) == labels)) if return_correct else None
    loss, grad = _softmax_xent(logits, labels, grad, _XentBuffers(n, k, logits.dtype),
                               sample_weight, loss_reduction)
    return (loss, grad, correct) if return_correct else (loss, grad)


def sigmoid_cross_entropy(logits, labels, grad=None, *, sample_weight=None,
                          return_correct=False, loss_reduction="mean"):
    """``(sum_i w_i BCE_i / batch, w_i (sigmoid(z_i) - y_i) / batch)`` for logits
    (batch, 1) and labels in {0, 1}, ``BCE = log1p(exp(-|z|)) + max(z, 0) - y z``
    in float64 (``"weighted_mean"``: divided by ``sum_i w_i``); with
    ``return_correct``, also the count of rows where ``z > 0`` is ``y == 1``."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() > 1):
        raise ValueError("labels must be in {0, 1}")
    if grad is None:
        grad = np.empty_like(logits)
    loss, correct = _sigmoid_xent(logits, labels, grad, sample_weight, loss_reduction)
    return (loss, grad, correct) if return_correct else (loss, grad)


def _sigmoid_xent(logits, labels, grad, weights=None, loss_reduction="mean", grad_weights=True):
    """sigmoid_cross_entropy into ``grad``: ``(loss, n_correct)`` (``grad_weights``
    False: the weights weigh the loss, not ``grad``, as for the exact sums)."""
    n = logits.shape[0]
    denom, inv = _loss_denominator(n, weights, loss_reduction)
    z = logits[:, 0]
    expit(z, out=grad[:, 0])
    grad[:, 0] -= labels
    z64 = z.astype(np.float64)
    e = np.exp(-np.abs(z)).astype(np.float64)  # in the dtype, as the kernel's
    per_row = np.log1p(e) + np.maximum(z64, 0) - labels * z64
    if weights is not None:
        per_row *= weights
        if grad_weights:
            grad[:, 0] *= weights
    grad *= logits.dtype.type(1.0 / n) if inv is None else logits.dtype.type(inv)
    correct = int(np.count_nonzero((z > 0) == (labels == 1)))
    return float(per_row.sum() / denom), correct


def squared_error(outputs, targets, grad=None, *, sample_weight=None, loss_reduction="mean"):
    """``(sum_i w_i (1/2) sum_j (outputs_ij - targets_ij)^2 / batch,
    w_i (outputs_i - targets_i) / batch)`` (``"weighted_mean"``: divided by
    ``sum_i w_i``)."""
    if grad is None:
        grad = np.empty_like(outputs)
    return _squared_error(outputs, targets, grad, sample_weight, loss_reduction), grad


def _squared_error(outputs, targets, grad, weights=None, loss_reduction="mean",
                   grad_weights=True):
    """squared_error into ``grad``; returns the loss (``grad_weights``: as
    :func:`_sigmoid_xent`'s)."""
    n = outputs.shape[0]
    denom, inv = _loss_denominator(n, weights, loss_reduction)
    np.subtract(outputs, targets, out=grad)
    d64 = grad.astype(np.float64)
    per_row = 0.5 * np.einsum("ij,ij->i", d64, d64)
    if weights is not None:
        per_row *= weights
        if grad_weights:
            grad *= weights[:, None]
    grad *= outputs.dtype.type(1.0 / n) if inv is None else outputs.dtype.type(inv)
    return float(per_row.sum() / denom)


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


def _softmax_xent(logits, labels, grad, buf, weights=None, loss_reduction="mean",
                  grad_weights=True):
    """softmax_cross_entropy into ``grad`` with the temporaries in ``buf``
    (``weights``: None or the rows' sample weights; ``grad_weights``: as
    :func:`_sigmoid_xent`'s)."""
    n = logits.shape[0]
    denom, inv = _loss_denominator(n, weights, loss_reduction)
    zmax, sums, logsum = buf.zmax[:n], buf.sums[:n], buf.logsum[:n]
    idx, picked = buf.flat_idx[:n], buf.picked[:n]
    loss64, picked64 = buf.loss64[:n], buf.picked64[:n]
    np.max(logits, axis=1, keepdims=True, out=zmax)
    with np.errstate(over="ignore"):  # float32 +-3e38: the shift may overflow to -inf
        np.subtract(logits, zmax, out=grad)
    np.exp(grad, out=grad)
    np.sum(grad, axis=1, keepdims=True, out=sums)
    # the loss's shift in float64, so that finite logits give a finite loss:
    # mean(w * (log(sum) - (logit[label] - max)))
    np.log(sums[:, 0], out=logsum)
    np.add(buf.row_start[:n], labels, out=idx)  # flat index of each row's label
    np.take(logits.reshape(-1), idx, out=picked)
    np.copyto(loss64, logsum)
    np.copyto(picked64, picked)
    np.subtract(picked64, zmax[:, 0], out=picked64)
    np.subtract(loss64, picked64, out=loss64)
    if weights is not None:
        np.copyto(picked64, weights)
        loss64 *= picked64
    loss = float(np.mean(loss64)) if inv is None else float(np.sum(loss64) / denom)
    np.multiply(sums, n, out=sums)
    grad /= sums
    flat = grad.reshape(-1)
    np.take(flat, idx, out=picked)
    picked -= 1.0 / n
    np.put(flat, idx, picked)
    if weights is not None and grad_weights:
        grad *= weights[:, None]
    if inv is not None:  # the weights' sum instead of n
        grad *= logits.dtype.type(n * inv)
    return loss, grad


def softmax(logits, out=None):
    """Row-wise softmax, max-shifted."""
    out = np.subtract(logits, logits.max(axis=1, keepdims=True), out=out)
    np.exp(out, out=out)
    out /= out.sum(axis=1, keepdims=True)
    return out
