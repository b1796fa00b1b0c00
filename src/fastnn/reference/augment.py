"""The twin of the augmentation (``_augment.h``): the affine and elastic
deformations of training images, the same bits as the compiled loop."""
import numpy as np

from .dropout import _GOLDEN, _MIX1, _MIX2

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
