"""Plain-NumPy twins of the compiled kernels: same names, same signatures.

They are the oracle of the tests and the baseline of the benchmarks, so
they are written as good NumPy: vectorised, in place where NumPy allows it
(``out=``), with the caller's buffers reused. A twin does not re-validate
what NumPy itself rejects; the compiled wrappers in :mod:`fastnn.kernels` do.
"""
import numpy as np
from scipy.special import expit

from ._hyper import Hyper, adam_constants, check_hyper  # noqa: F401 (Hyper: re-exported)
from ._layout import drop_threshold, n_weights, unflatten

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


def csr_forward(X, W, b, activation="identity", out=None):
    """``out = activation(X @ W + b)`` for a SciPy CSR ``X``: the first layer's
    forward on the CSR rows (the compiled loop's ``fnn_csr_forward``)."""
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


def _sigmoid_xent(logits, labels, grad, weights=None, loss_reduction="mean"):
    """sigmoid_cross_entropy into ``grad``: ``(loss, n_correct)``."""
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


def _squared_error(outputs, targets, grad, weights=None, loss_reduction="mean"):
    """squared_error into ``grad``; returns the loss."""
    n = outputs.shape[0]
    denom, inv = _loss_denominator(n, weights, loss_reduction)
    np.subtract(outputs, targets, out=grad)
    d64 = grad.astype(np.float64)
    per_row = 0.5 * np.einsum("ij,ij->i", d64, d64)
    if weights is not None:
        per_row *= weights
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


def _softmax_xent(logits, labels, grad, buf, weights=None, loss_reduction="mean"):
    """softmax_cross_entropy into ``grad`` with the temporaries in ``buf``
    (``weights``: None or the rows' sample weights)."""
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
    if weights is not None:
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


def sgd_update(W, grad, velocity, learning_rate, momentum=0.0, l1=0.0, l2=0.0,
               nesterov=False):
    """``velocity = momentum*velocity - lr*(grad + l2*W + l1*sign(W)); W += velocity``
    (Nesterov: ``W += momentum*velocity - lr*(grad + l2*W + l1*sign(W))``)."""
    _sgd_step(W, grad, velocity, learning_rate, momentum, l1, l2, np.empty_like(W),
              np.empty_like(W) if (l1 or nesterov) else None, nesterov)


def _sgd_step(W, grad, velocity, learning_rate, momentum, l1, l2, step, sign=None,
              nesterov=False):
    """:func:`sgd_update` with its temporaries in ``step`` (and ``sign`` for L1
    or Nesterov)."""
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
    if nesterov:  # W += momentum*velocity - lr*g
        np.multiply(velocity, momentum, out=sign)
        sign -= step
        W += sign
    else:
        W += velocity


def adam_update(W, grad, m, v, learning_rate, t, beta1=0.9, beta2=0.999, eps=1e-8,
                weight_decay=0.0, l1=0.0, l2=0.0):
    """Adam step ``t`` (1 for the first): ``g = grad + l2*W + l1*sign(W)``,
    ``m = beta1*m + (1-beta1)*g``, ``v = beta2*v + (1-beta2)*g*g``,
    ``W = W*(1 - lr*weight_decay) - a_t*m / (sqrt(v)*s_t + eps)``,
    ``a_t = lr/(1-beta1**t)``, ``s_t = 1/sqrt(1-beta2**t)``."""
    hyper = Hyper("adam", learning_rate, beta1=beta1, beta2=beta2, eps=eps,
                  weight_decay=weight_decay, l1=l1, l2=l2)
    _adam_step(W, grad, m, v, hyper, adam_constants(hyper, t), True, np.empty_like(W),
               np.empty_like(W), np.empty_like(W))


def _adam_step(W, grad, m, v, hyper, constants, penalise, g, t1, t2):
    """:func:`adam_update` with the step's ``constants`` ``(a_t, s_t, decay)`` and its
    temporaries in ``g``, ``t1``, ``t2``; ``penalise``: L1, L2 and the decay
    (weights) or none of them (biases). The dtype's constants are rounded as
    the compiled epilogue's."""
    dt = W.dtype.type
    a_t, s_t, decay = constants
    if penalise and hyper.l2:
        np.multiply(W, dt(hyper.l2), out=g)
        g += grad
    else:
        np.copyto(g, grad)
    if penalise and hyper.l1:
        np.sign(W, out=t1)
        t1 *= dt(hyper.l1)
        g += t1
    m *= dt(hyper.beta1)  # m = b1*m + c1*g
    np.multiply(g, dt(1.0 - hyper.beta1), out=t1)
    m += t1
    np.multiply(g, g, out=t1)  # v = b2*v + c2*(g*g)
    t1 *= dt(1.0 - hyper.beta2)
    v *= dt(hyper.beta2)
    v += t1
    np.sqrt(v, out=t1)  # W = W*decay - (a_t*m) / (sqrt(v)*s_t + eps)
    t1 *= dt(s_t)
    t1 += dt(hyper.eps)
    np.multiply(m, dt(a_t), out=t2)
    t2 /= t1
    if penalise and dt(decay) != 1:
        W *= dt(decay)
    W -= t2


# --- dropout masks: splitmix64, counter-based --------------------------------------

_M64 = (1 << 64) - 1
_GOLDEN, _MIX1, _MIX2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def _mix(z):
    """splitmix64's finaliser on a Python int (uint64, wrapping)."""
    z = (z + _GOLDEN) & _M64
    z = ((z ^ (z >> 30)) * _MIX1) & _M64
    z = ((z ^ (z >> 27)) * _MIX2) & _M64
    return z ^ (z >> 31)


def _drop_key(seed, epoch, step, layer):
    """``mix(mix(mix(mix(seed) ^ epoch) ^ step) ^ layer)``."""
    return _mix(_mix(_mix(_mix(int(seed)) ^ int(epoch)) ^ int(step)) ^ int(layer))


class _MaskBuffers:
    """The uint64 counters and work of :func:`_mask_into` for up to ``n`` elements."""

    def __init__(self, n):
        ng = (n + 3) // 4
        self.counter = np.arange(ng, dtype=np.uint64)
        self.h = np.empty(ng, np.uint64)
        self.tmp = np.empty(ng, np.uint64)


def _mask_into(keep, key, thr, buf):
    """keep[e] = u16(e) >= thr for the flat bool array ``keep``, where u16(e) is
    16-bit lane e & 3 (little-endian) of mix(key + (e >> 2))."""
    n = keep.size
    ng = (n + 3) // 4
    h, tmp = buf.h[:ng], buf.tmp[:ng]
    np.add(buf.counter[:ng], np.uint64(key), out=h)  # wraps modulo 2**64
    h += np.uint64(_GOLDEN)
    for shift, mult in ((30, _MIX1), (27, _MIX2)):
        np.right_shift(h, np.uint64(shift), out=tmp)
        h ^= tmp
        h *= np.uint64(mult)
    np.right_shift(h, np.uint64(31), out=tmp)
    h ^= tmp
    if thr > 0xFFFF:
        keep[...] = False
        return keep
    lanes = h.astype("<u8", copy=False).view("<u2")[:n]
    np.greater_equal(lanes, np.uint16(thr), out=keep.reshape(-1))
    return keep


def dropout_mask(rows, width, rate, seed, epoch, step, layer):
    """The bool mask (rows, width) of dropout with ``rate``: element e = i*width + j
    is kept iff ``u16(e) >= round(rate * 65536)``, u16(e) =
    ``(mix(key + (e >> 2)) >> (16 * (e & 3))) & 0xFFFF``,
    ``key = mix(mix(mix(mix(seed) ^ epoch) ^ step) ^ layer)``, ``mix`` splitmix64's
    finaliser (see :func:`fastnn.kernels.dropout_mask`)."""
    keep = np.empty((rows, width), np.bool_)
    return _mask_into(keep, _drop_key(seed, epoch, step, layer), drop_threshold(rate),
                      _MaskBuffers(rows * width))


# -- augmentation (the twin of _augment.h) ---------------------------------------

_AUG_TAG = 0x61756731  # "aug1"
_U64 = np.uint64


def _mix_u64(z):
    """splitmix64's finaliser on a uint64 array (wrapping), in place."""
    z += _U64(_GOLDEN)
    z ^= z >> _U64(30)
    z *= _U64(_MIX1)
    z ^= z >> _U64(27)
    z *= _U64(_MIX2)
    z ^= z >> _U64(31)
    return z


def _lowbias32(x):
    """Chris Wellons's lowbias32 integer hash on a uint32 array (wrapping), in place."""
    x ^= x >> np.uint32(16)
    x *= np.uint32(0x7FEB352D)
    x ^= x >> np.uint32(15)
    x *= np.uint32(0x846CA68B)
    x ^= x >> np.uint32(16)
    return x


def _aug_sincos(t):
    """The kernels' sine and cosine polynomials (|t| <= pi/4), float64."""
    x2 = t * t
    s = t * (1.0 + x2 * (-1.0 / 6.0 + x2 * (1.0 / 120.0 + x2 * (-1.0 / 5040.0 + x2 * (
        1.0 / 362880.0 + x2 * (-1.0 / 39916800.0 + x2 * (1.0 / 6227020800.0)))))))
    c = 1.0 + x2 * (-1.0 / 2.0 + x2 * (1.0 / 24.0 + x2 * (-1.0 / 720.0 + x2 * (1.0 / 40320.0 + x2 * (
        -1.0 / 3628800.0 + x2 * (1.0 / 479001600.0 + x2 * (-1.0 / 87178291200.0)))))))
    return s, c


def augment_rows(X, rows, seed, epoch, augment, out=None):
    """``out[i]``: row ``X[rows[i]]`` deformed as the training loop deforms it
    in epoch ``epoch`` of a model seeded ``seed`` (see
    :func:`fastnn.kernels.augment_rows` and ``_augment.h``, whose every
    operation this repeats in the same order and precision, for all rows at
    once: the same bits)."""
    rows = np.asarray(rows, dtype=np.intp)
    h, w, nc = (int(v) for v in augment.image_shape)
    n, dt = rows.shape[0], X.dtype
    if out is None:
        out = np.empty((n, X.shape[1]), dt)
    if n == 0:
        return out
    key = _mix_u64(_mix_u64(_mix_u64(_mix_u64(np.full(n, int(seed), _U64))
                                     ^ _U64(_AUG_TAG)) ^ _U64(int(epoch)))
                   ^ rows.astype(_U64))
    # the affine draws: mix(key + j), j = 0..5, as doubles in [0, 1)
    z = _mix_u64(key[:, None] + np.arange(6, dtype=_U64)[None, :])
    d = (z >> _U64(11)).astype(np.float64) * 2.0 ** -53
    lo, hi = np.asarray(augment.lo, np.float64), np.asarray(augment.hi, np.float64)
    v = lo + (hi - lo) * d[:, :5]
    s, c = _aug_sincos(v[:, 0])
    zoom, k = v[:, 1], v[:, 2]
    m = np.empty((n, 4), np.float64)
    m[:, 0], m[:, 1], m[:, 2], m[:, 3] = c / zoom, (c * k - s) / zoom, s / zoom, (s * k + c) / zoom
    if augment.flip:
        flip = d[:, 5] < 0.5
        m[flip, 0] = -m[flip, 0]
        m[flip, 2] = -m[flip, 2]
    m = m.astype(np.float32)[:, :, None, None]
    tx = v[:, 3].astype(np.float32)[:, None, None]
    ty = v[:, 4].astype(np.float32)[:, None, None]
    f32 = np.float32
    cx, cy = f32(w - 1) * f32(0.5), f32(h - 1) * f32(0.5)
    u = (np.arange(w, dtype=f32) - cx)[None, None, :]
    vv = (np.arange(h, dtype=f32) - cy)[None, :, None]
    sx = ((m[:, 0] * u + m[:, 1] * vv) + cx) + tx
    sy = ((m[:, 2] * u + m[:, 3] * vv) + cy) + ty
    if augment.alpha != 0:
        ex, ey = _aug_field(key, h, w, augment.gauss, f32(augment.alpha))
        sx = sx + ex
        sy = sy + ey
    np.clip(sx, 0, f32(w - 1), out=sx)
    np.clip(sy, 0, f32(h - 1), out=sy)
    x0 = np.minimum(sx.astype(np.intp), w - 2)
    y0 = np.minimum(sy.astype(np.intp), h - 2)
    fx = (sx - x0.astype(f32)).astype(dt)[..., None]
    fy = (sy - y0.astype(f32)).astype(dt)[..., None]
    gx, gy = dt.type(1) - fx, dt.type(1) - fy
    img = X[rows].reshape(n, h * w, nc)
    base = y0 * w + x0
    pick = lambda off: np.take_along_axis(img, (base + off).reshape(n, -1, 1), axis=1  # noqa: E731
                                          ).reshape(n, h, w, nc)
    top = gx * pick(0) + fx * pick(1)
    bot = gx * pick(w) + fx * pick(w + 1)
    out.reshape(n, h, w, nc)[...] = gy * top + fy * bot
    return out


def _aug_field(key, h, w, gauss, alpha):
    """The elastic fields (ex, ey) of the images keyed ``key``, float32 (n, h, w):
    the noise made transposed (element i = f*h*w + x*h + y), the Gaussian
    along x, then along y (zero outside the image; taps in order)."""
    n, gauss = key.shape[0], np.asarray(gauss, np.float32)
    r = (gauss.shape[0] - 1) // 2
    k0 = (key & _U64(0xFFFFFFFF)).astype(np.uint32)[:, None]
    k1 = (key >> _U64(32)).astype(np.uint32)[:, None]
    i = np.arange(2 * h * w, dtype=np.uint32)[None, :]
    x = _lowbias32(i ^ k0)
    x += k1
    x = _lowbias32(x)
    noise = (x >> np.uint32(8)).astype(np.float32) * np.float32(2.0 ** -23) - np.float32(1)
    padded = np.zeros((n, 2, w + 2 * r, h), np.float32)   # (field, x, y), padded along x
    padded[:, :, r:r + w] = noise.reshape(n, 2, w, h)
    along_x = np.zeros((n, 2, w, h), np.float32)
    for t in range(2 * r + 1):
        along_x += gauss[t] * padded[:, :, t:t + w]
    padded = np.zeros((n, 2, h + 2 * r, w), np.float32)   # (field, y, x), padded along y
    padded[:, :, r:r + h] = along_x.transpose(0, 1, 3, 2)
    field = np.zeros((n, 2, h, w), np.float32)
    for t in range(2 * r + 1):
        field += gauss[t] * padded[:, :, t:t + h]
    field *= alpha
    return field[:, 0], field[:, 1]


def _drop_forward(A, keep, dropped, scale):
    """Inverted dropout in place: kept elements times scale, dropped ones 0."""
    np.logical_not(keep, out=dropped)
    np.multiply(A, scale, out=A)
    np.copyto(A, 0, where=dropped)


class _TrainBuffers:
    """Views of one ``train_batches`` call into the caller's buffers (the same
    layout as the compiled kernel: ``acts`` holds A_0..A_L of a batch, ``deltas``
    two ping-pong deltas of the widest layer, ``grads`` the gradients, ``ybuf``
    and ``wbuf`` the batch's labels and sample weights, ``masks`` the dropout
    masks), plus the few temporaries NumPy needs, allocated once per call."""

    def __init__(self, sizes, batch_size, params, ws, hyper, rates):
        dtype = params.dtype
        self.W, self.b = unflatten(params, sizes)
        self.gW, self.gb = unflatten(ws.grads, sizes)
        self.A, off = [], 0
        for width in sizes:
            self.A.append(ws.acts[off:off + batch_size * width].reshape(batch_size, width))
            off += batch_size * width
        self.keep, off = [], 0  # masks of A_0..A_{L-1}, at A_l's offset as in acts
        masks = ws.masks.view(np.bool_)
        for width in sizes[:-1]:
            self.keep.append(masks[off:off + batch_size * width].reshape(batch_size, width))
            off += batch_size * width
        half = batch_size * max(sizes[1:])
        self.deltas = (ws.deltas[:half], ws.deltas[half:2 * half])
        self.ybuf = ws.ybuf[:batch_size]
        self.wbuf = ws.wbuf[:batch_size]
        self.work = np.empty(half, dtype)  # activation-derivative factor or ReLU mask
        self.xent = _XentBuffers(batch_size, sizes[-1], dtype)
        self.targets = np.empty((batch_size, sizes[-1]), dtype)  # loss "mse"
        self.argmax = np.empty(batch_size, np.intp)
        self.hits = np.empty(batch_size, bool)
        n = params.size
        self.finite = np.empty(n, bool)  # the check of the updated parameters
        self.step = np.empty(n, dtype)
        self.t1 = np.empty(n, dtype) if (hyper.l1 or hyper.nesterov
                                         or hyper.kind == "adam") else None
        self.t2 = np.empty(n, dtype) if hyper.kind == "adam" else None
        # dropout: the undropped activations of the dropped hidden layers (the
        # derivative is taken there), the dropped elements, the mask generator
        widest = max(sizes[:-1])
        self.undropped = [np.empty((batch_size, w), dtype) if (rates is not None and 0 < l
                                                               and rates[l] > 0) else None
                          for l, w in enumerate(sizes[:-1])]
        self.dropped = np.empty(batch_size * widest, bool) if rates is not None else None
        self.gen = _MaskBuffers(batch_size * widest) if rates is not None else None


def train_batches(X, y, order, start, stop, batch_size, sizes, activation, params, slots,
                  ws, hyper, *, sample_weight=None, dropout=None, seed=0, epoch=0,
                  n_threads=1, loss="cross_entropy", loss_reduction="mean", augment=None,
                  csr_products=None):
    """Mini-batch training over ``order[start:stop]``, one Python step per batch.

    Same algorithm, arguments, buffers and return value as the compiled kernel
    (see :func:`fastnn.kernels.train_batches`, its ``loss`` and
    ``loss_reduction`` included): ``(rows_done, loss_sum,
    n_correct, diverged)``; this is its specification in NumPy (the
    derivative under dropout at the undropped activation, which it keeps).
    Every array of a batch lives in the caller's buffers or in temporaries
    made once per call, so a batch allocates nothing (NumPy's ``out=``
    everywhere). ``n_threads`` is accepted for the same signature; NumPy's BLAS
    uses its own threads. A SciPy CSR ``X`` runs the first layer's products
    on the batch's CSR rows (:func:`csr_forward`, :func:`csr_weight_grad`),
    or with input dropout on its dense rows; ``csr_products``, the compiled
    loop's choice between the two (same meaning), is accepted and not needed.
    """
    hyper = check_hyper(hyper)
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
    _loss_denominator(1, None, loss_reduction)  # checks it
    sizes = [int(s) for s in sizes]
    n_layers = len(sizes) - 1
    nw = n_weights(sizes)
    rates = None
    if dropout is not None:
        rates = [float(r) for r in dropout]
        if len(rates) != n_layers or not all(0.0 <= r < 1.0 for r in rates):
            raise ValueError(f"dropout must hold {n_layers} rates in [0, 1), got {dropout!r}")
        if not any(rates):
            rates = None
    if start < stop:  # checked once, so that each batch can gather with mode="clip"
        rows = order[start:stop]
        if rows.min() < 0 or rows.max() >= X.shape[0]:
            raise ValueError(f"order must hold row indices in [0, {X.shape[0]})")
        labels = y[rows]
        if loss == "mse":
            if not np.isfinite(labels).all():
                raise ValueError("y (the targets) must be finite")
        elif labels.min() < 0 or labels.max() >= max(sizes[-1], 2):
            raise ValueError(f"y must hold labels in [0, {max(sizes[-1], 2)})")
        if sample_weight is not None:
            w = sample_weight[rows]
            if not (np.all(np.isfinite(w)) and w.min() >= 0):
                raise ValueError("sample_weight must be finite and >= 0")
    adam = hyper.kind == "adam"
    if slots.shape[0] < (2 if adam else 1):
        raise ValueError(f"slots must have at least {2 if adam else 1} rows for hyper.kind "
                         f"{hyper.kind!r}")
    buf = _TrainBuffers(sizes, batch_size, params, ws, hyper, rates)
    W, b, gW, gb = buf.W, buf.b, buf.gW, buf.gb
    dt = params.dtype.type
    scales = None if rates is None else [dt(1.0 / (1.0 - r)) for r in rates]
    loss_sum, correct = 0.0, 0
    for s0 in range(start, stop, batch_size):
        idx = order[s0:min(s0 + batch_size, stop)]
        bs = idx.shape[0]
        step = s0 // batch_size
        x_csr = None
        if hasattr(X, "indptr") and rates is not None and rates[0] > 0:
            a = X[idx].toarray(out=buf.A[0][:bs])  # CSR, input dropout: the dense rows
        elif hasattr(X, "indptr"):  # CSR: the first layer's products on its rows
            a = x_csr = X[idx]
        elif augment is not None:  # the deformed rows, as the compiled loop makes them
            a = augment_rows(X, idx, seed, epoch, augment, out=buf.A[0][:bs])
        else:  # mode="clip": indices checked above; "raise" would copy through a temporary
            a = np.take(X, idx, axis=0, out=buf.A[0][:bs], mode="clip")
        if loss == "mse":  # the targets' rows (the compiled loop reads them in place)
            labels = np.take(y, idx, axis=0, out=buf.targets[:bs], mode="clip")
        else:
            labels = np.take(y, idx, out=buf.ybuf[:bs], mode="clip")
        weights = None
        if sample_weight is not None:
            weights = np.take(sample_weight, idx, out=buf.wbuf[:bs], mode="clip")
        if rates is not None and rates[0] > 0:  # input dropout, on the gathered copy
            keep = _mask_into(buf.keep[0][:bs], _drop_key(seed, epoch, step, 0),
                              drop_threshold(rates[0]), buf.gen)
            _drop_forward(a, keep, buf.dropped[:keep.size].reshape(keep.shape), scales[0])
        for layer in range(n_layers):
            act = activation if layer < n_layers - 1 else "identity"
            if layer == 0 and x_csr is not None:
                a = csr_forward(x_csr, W[0], b[0], act, out=buf.A[1][:bs])
            else:
                a = dense_forward(a, W[layer], b[layer], act, out=buf.A[layer + 1][:bs])
            if layer + 1 < n_layers and buf.undropped[layer + 1] is not None:
                np.copyto(buf.undropped[layer + 1][:bs], a)
                keep = _mask_into(buf.keep[layer + 1][:bs],
                                  _drop_key(seed, epoch, step, layer + 1),
                                  drop_threshold(rates[layer + 1]), buf.gen)
                _drop_forward(a, keep, buf.dropped[:keep.size].reshape(keep.shape),
                              scales[layer + 1])
        logits = a
        cur = 0  # which of the two delta buffers holds the current delta
        delta = buf.deltas[cur][:bs * sizes[-1]].reshape(bs, sizes[-1])
        if loss == "mse":
            batch_loss, hits = _squared_error(logits, labels, delta, weights, loss_reduction), 0
        elif loss == "binary_cross_entropy":
            batch_loss, hits = _sigmoid_xent(logits, labels, delta, weights, loss_reduction)
        else:
            batch_loss, delta = _softmax_xent(logits, labels, delta, buf.xent, weights,
                                              loss_reduction)
            np.argmax(logits, axis=1, out=buf.argmax[:bs])
            hits = int(np.count_nonzero(np.equal(buf.argmax[:bs], labels, out=buf.hits[:bs])))
        if not np.isfinite(batch_loss):
            return s0 - start, loss_sum, correct, True
        loss_sum += batch_loss * bs
        correct += hits
        step_hyper = hyper
        if loss_reduction == "weighted_mean" and weights is not None:
            # the penalties per unit of weight, as the loss: times bs / sum(w)
            total = float(np.sum(weights, dtype=np.float64))
            scale = bs / total if total > 0 else 0.0
            step_hyper = hyper._replace(l1=hyper.l1 * scale, l2=hyper.l2 * scale)
        for layer in range(n_layers - 1, -1, -1):
            a_prev = buf.A[layer][:bs]
            if layer == 0 and x_csr is not None:
                csr_weight_grad(x_csr, delta, out=gW[0])
            elif bs == 1:  # an outer product: BLAS gemm with k=1 is several times slower
                np.multiply(a_prev.T, delta, out=gW[layer])
            else:
                np.matmul(a_prev.T, delta, out=gW[layer])
            np.sum(delta, axis=0, out=gb[layer])
            if layer > 0:
                cur = 1 - cur
                nxt = buf.deltas[cur][:bs * sizes[layer]].reshape(bs, sizes[layer])
                np.matmul(delta, W[layer].T, out=nxt)
                undropped = buf.undropped[layer]
                if undropped is None:
                    delta = _mul_activation_grad(nxt, a_prev, activation, buf.work)
                else:  # act' at the undropped activation, then the mask and scale
                    delta = _mul_activation_grad(nxt, undropped[:bs], activation, buf.work)
                    keep = buf.keep[layer][:bs]
                    _drop_forward(delta, keep, buf.dropped[:keep.size].reshape(keep.shape),
                                  scales[layer])
        if adam:
            k = (s0 - start) // batch_size + 1
            constants = adam_constants(hyper, hyper.t + k)
            for lo, hi, penalise in ((0, nw, True), (nw, params.size, False)):
                _adam_step(params[lo:hi], ws.grads[lo:hi], slots[0, lo:hi], slots[1, lo:hi],
                           step_hyper, constants, penalise, buf.step[lo:hi], buf.t1[lo:hi],
                           buf.t2[lo:hi])
        else:
            t1 = buf.t1
            _sgd_step(params[:nw], ws.grads[:nw], slots[0, :nw], hyper.learning_rate,
                      hyper.momentum, step_hyper.l1, step_hyper.l2, buf.step[:nw],
                      None if t1 is None else t1[:nw], hyper.nesterov)
            _sgd_step(params[nw:], ws.grads[nw:], slots[0, nw:], hyper.learning_rate,
                      hyper.momentum, 0.0, 0.0, buf.step[nw:],
                      None if t1 is None else t1[nw:], hyper.nesterov)
        # an update that made a weight or bias infinite or NaN (the loss can stay
        # finite: saturated tanh, say) ends the call after this batch
        if not np.isfinite(params, out=buf.finite).all():
            return s0 + bs - start, loss_sum, correct, True
    return stop - start, loss_sum, correct, False
