"""The twin of the dropout masks: splitmix64, counter-based, keyed by (seed,
epoch, step, layer), so that a mask is the same bits whatever the threads."""
import numpy as np

from .._layout import drop_threshold

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


def _drop_forward(A, keep, dropped, scale):
    """Inverted dropout in place: kept elements times scale, dropped ones 0."""
    np.logical_not(keep, out=dropped)
    np.multiply(A, scale, out=A)
    np.copyto(A, 0, where=dropped)
