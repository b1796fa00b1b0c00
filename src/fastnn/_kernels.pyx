"""Compiled kernels of fastnn (private; use :mod:`fastnn.kernels`).

Layout of this module, after scikit-learn's ``_cython_blas.pyx``/``_loss.pyx``:

* ``cdef ... noexcept nogil`` kernels on raw pointers, fused over float/double,
  that do arithmetic only: they never raise, never allocate and never touch
  Python objects;
* ``def`` wrappers that validate every argument (type, dtype, ndim, shape,
  C-contiguity, writeability, aliasing, label range) *before* releasing the
  GIL, allocate ``out`` buffers when none is given, and then run the kernel
  without the GIL.

Compiler directives (boundscheck, wraparound, cdivision, ...) are set by
``setup.py``; ``FASTNN_DEBUG=1`` at build time turns the checks back on.

All matrices are row-major. BLAS is column-major, so the row-major product
``C = op(A) @ op(B)`` is computed as the column-major ``C^T = op(B)^T @ op(A)^T``
by swapping the operands.
"""
import numbers
import operator
import os
import warnings

import numpy as np

cimport numpy as cnp

from ._checks import check_float
from ._hyper import Hyper, T_MAX, check_hyper
from ._hyper import _nonneg as _hyper_nonneg, _positive as _hyper_positive
from ._hyper import _unit as _hyper_unit
from ._layout import drop_threshold, workspace_sizes

from cython cimport floating
from libc.math cimport log, logf, isfinite
from libc.stdlib cimport free, malloc
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from scipy.linalg.cython_blas cimport sgemm, dgemm, sgemv, dgemv

ctypedef Py_ssize_t intp_t

cdef extern from *:
    """
    #ifndef FASTNN_DEBUG
    #define FASTNN_DEBUG 0
    #endif
    """
    int FASTNN_DEBUG

# True when built with FASTNN_DEBUG=1 (bounds checks and wraparound on).
DEBUG_BUILD = bool(FASTNN_DEBUG)

# Activation codes shared with the Python layer (fastnn.kernels.ACTIVATIONS).
cdef enum:
    IDENTITY = 0
    RELU = 1
    TANH = 2
    SIGMOID = 3

ACTIVATIONS = {"identity": IDENTITY, "relu": RELU, "tanh": TANH, "sigmoid": SIGMOID}

# The output layer's losses (the codes of _gemm_train.h's FNN_LOSS_*):
# softmax cross-entropy over >= 2 outputs (integer labels), binary
# cross-entropy of one logistic output (labels 0/1), squared error of
# identity outputs (float targets).
LOSSES = {"cross_entropy": 0, "binary_cross_entropy": 1, "mse": 2}
# How a batch's loss is normalised: by its number of rows, or (with sample
# weights) by the sum of its weights, as scikit-learn.
LOSS_REDUCTIONS = ("mean", "weighted_mean")

# BLAS takes 32-bit ints; larger dimensions are refused at the boundary.
cdef intp_t _INT_MAX = 2147483647


# ---------------------------------------------------------------------------
# nogil kernels (arithmetic only)
# ---------------------------------------------------------------------------

cdef inline void _gemm(bint trans_a, bint trans_b, int m, int n, int k,
                       floating alpha, const floating* a, int lda,
                       const floating* b, int ldb, floating beta,
                       floating* c, int ldc) noexcept nogil:
    """Row-major C(m, n) = alpha * op(A)(m, k) @ op(B)(k, n) + beta * C.

    A single row (m == 1, A not transposed) goes to gemv, as NumPy's matmul
    does: GEMM would pack all of B for one output row.
    """
    cdef char ta = b'T' if trans_b else b'N'
    cdef char tb = b'T' if trans_a else b'N'
    cdef int one = 1
    if m == 1 and not trans_a:
        # C^T = op(B)^T a^T; B's row-major storage is B^T in column-major.
        if floating is float:
            if trans_b:
                sgemv(&ta, &k, &n, &alpha, <float*> b, &ldb, <float*> a, &one, &beta, c, &one)
            else:
                sgemv(&ta, &n, &k, &alpha, <float*> b, &ldb, <float*> a, &one, &beta, c, &one)
        else:
            if trans_b:
                dgemv(&ta, &k, &n, &alpha, <double*> b, &ldb, <double*> a, &one, &beta, c, &one)
            else:
                dgemv(&ta, &n, &k, &alpha, <double*> b, &ldb, <double*> a, &one, &beta, c, &one)
        return
    if floating is float:
        sgemm(&ta, &tb, &n, &m, &k, &alpha, <float*> b, &ldb, <float*> a, &lda,
              &beta, c, &ldc)
    else:
        dgemm(&ta, &tb, &n, &m, &k, &alpha, <double*> b, &ldb, <double*> a, &lda,
              &beta, c, &ldc)


# fastnn's own training products (_gemm.h): register-blocked AVX-512 / AVX2 /
# generic micro-kernels with fused bias/activation and optimizer epilogues
# (SGD, Nesterov, Adam/AdamW), dropout, and the mini-batch loop that runs
# them on fastnn's threads.
cdef extern from "_gemm.h" nogil:
    ctypedef struct fnn_aug_t:
        int h, w, c
        double lo[5]
        double hi[5]
        int flip, elastic
        float alpha
        int radius
        const float* gauss
        const float* grid
    intp_t fnn_aug_work(const fnn_aug_t* a)
    uint64_t fnn_aug_key(uint64_t seed, uint64_t epoch, uint64_t row)
    ctypedef struct fnn_opt_t:
        int kind, nesterov
        double lr, mu, l1, l2, beta1, beta2, eps, wd
        int64_t t

# The declarations written once per dtype (float: _f, double: _d): generated
# into _kernels_dtypes.pxi from _kernels_dtypes.pxi.tp by setup.py (Cython's
# Tempita), as scikit-learn generates its .pyx.tp files.
include "_kernels_dtypes.pxi"

cdef extern from "_gemm.h" nogil:
    int FNN_OPT_SGD, FNN_OPT_ADAM
    int FNN_LOSS_XENT, FNN_LOSS_BXENT, FNN_LOSS_SQERR
    ctypedef struct fnn_ukernel_entry_t:
        const fnn_kern_t_f* f
        const fnn_kern_t_d* d
    const fnn_ukernel_entry_t* fnn_ukernel_at(int i, int* usable)
    int fnn_gemm_select(const char* name)
    const char* fnn_gemm_isa()
    int fnn_threaded()
    const char* fnn_compiler()
    int fnn_clones_active()
    int fnn_simd_built()
    uint64_t fnn_drop_key(uint64_t seed, uint64_t epoch, uint64_t step, uint64_t layer)
    int fnn_test_delay_tid, fnn_test_delay_point, fnn_test_delay_us
    int fnn_pack_mode
    intp_t fnn_fuse_rows
    int fnn_free_splits
    intp_t fnn_cache[2]
    int fnn_cache_src[2]
    const intp_t* fnn_caches()
    void fnn_detect_caches(const char* dir)
    double fnn_par_min_macs(int is_double)
    double fnn_calib[3]
    double fnn_force_min_macs
    ctypedef struct fnn_split_rule_t:
        double min_macs
        int state_big
    fnn_split_rule_t fnn_split_rule(int n_threads, int fixed, double macs, double n_w,
                                    double state, int is_double)
    int fnn_split_fwd(const intp_t* sizes, intp_t n_layers, intp_t l, intp_t bs, int nt,
                      const fnn_split_rule_t* r)
    int fnn_split_bwd(const intp_t* sizes, intp_t n_layers, intp_t l, intp_t bs, int nt,
                      const fnn_split_rule_t* r)
    long fnn_spin_limit
    void fnn_dropout_mask(uint8_t* mask, intp_t n, uint64_t key, uint32_t thr)

fnn_gemm_select(NULL)

# Training runs on fastnn's kernels only. An earlier BLAS training path
# (sgemm/dgemm products and a separate SGD pass, selected from a batch-size
# threshold) was removed as unreachable: measured on 2 vCPUs of an AMD EPYC
# (Zen 5, KVM; SciPy's OpenBLAS 0.3.30 pinned to its Haswell kernels by
# OPENBLAS_CORETYPE), one MNIST epoch of [784, 128, 10], one thread each:
# fastnn's loop / the BLAS loop = 1.30/2.41 s (batch 1), 0.18/0.66 (10),
# 0.19/0.34 (32), 0.19/0.40 (128), 0.14/0.39 (512), 0.24/0.43 (2048); no
# crossover up to batch 2048, so the threshold sat at 2**30 rows (never).
# Prediction (dense_forward) too: a BLAS path for many rows (sgemm, then the
# bias/activation pass) was removed as unreachable (its threshold was 2**30
# rows). Same machine, one thread: fastnn's kernel took 0.28-0.55x the time
# of sgemm + the bias/ReLU passes for 784->128, 784->800 and 128->10 from 10
# to 10,000 rows: no crossover measured.


#: The instruction sets a build may register kernels for (_ukernels_<isa>.h), widest first.
KERNEL_ISAS = ("avx512", "avx2", "neon", "generic")


def _ukernels():
    """Private: the micro-kernel registry of this build (``fnn_ukernels`` in
    _gemm.h), best first: for each instruction set it holds, ``{"isa",
    "usable"`` (whether this CPU runs it), ``"float32"`` and ``"float64"``:
    ``{"mr", "nrv", "vl"}`` (the register tile: mr rows x nrv vectors of vl
    lanes)``}``. The selector takes the first usable entry.

    >>> entries = _ukernels()
    >>> entries[-1]["isa"], entries[-1]["usable"], entries[-1]["float32"]
    ('generic', True, {'mr': 6, 'nrv': 2, 'vl': 1})
    """
    cdef int i = 0, usable = 0
    cdef const fnn_ukernel_entry_t* e = fnn_ukernel_at(0, &usable)
    out = []
    while e != NULL:
        out.append({"isa": e.f.isa.decode(), "usable": bool(usable),
                    "float32": {"mr": e.f.mr, "nrv": e.f.nrv, "vl": e.f.vl},
                    "float64": {"mr": e.d.mr, "nrv": e.d.nrv, "vl": e.d.vl}})
        i += 1
        e = fnn_ukernel_at(i, &usable)
    return out


def _kernel_isa(name=None):
    """Private: the instruction set of fastnn's training kernels ("avx512",
    "avx2", "neon" or "generic", :data:`KERNEL_ISAS`); with ``name``, select
    that one first (tests run every variant the CPU supports: ``_ukernels``).
    ValueError if the build or the CPU lacks it."""
    if name is not None:
        if name not in KERNEL_ISAS + ("",):
            raise ValueError(f"name must be one of {KERNEL_ISAS} or '', got {name!r}")
        if fnn_gemm_select(name.encode()) != 0:
            raise ValueError(f"this CPU cannot run the {name!r} kernels")
    return fnn_gemm_isa().decode()


def _isa_from_environment(value):
    """Private: select the kernels that ``FASTNN_ISA`` names (``value``, its
    text; None or blank: the CPU's best, the default). Called once, at import.
    A name this build or CPU lacks is not an error (the import must work
    everywhere the same environment is shared): a RuntimeWarning says so and
    the best kernels stay. Returns the instruction set in use."""
    name = (value or "").strip().lower()
    if name:
        try:
            _kernel_isa(name)
        except ValueError as e:
            usable = [u["isa"] for u in _ukernels() if u["usable"]]
            warnings.warn(f"FASTNN_ISA={value!r} ignored ({e}); this CPU runs {usable}; "
                          f"using {fnn_gemm_isa().decode()!r}", RuntimeWarning, stacklevel=2)
    return fnn_gemm_isa().decode()


_isa_from_environment(os.environ.get("FASTNN_ISA"))


def _build_info():
    """Private: how the C core was built: ``{"compiler": "gcc 12.2.0" (or
    "clang ..."), "simd": whether the SIMD kernels of this architecture are
    built (False: the portable C core, setup.py's fallback), "clones": whether
    the elementwise passes are cloned per x86 instruction set (GCC or clang >=
    14 on x86-64 Linux), "threads": whether training can use more than one
    thread}``."""
    return {"compiler": fnn_compiler().decode().strip(), "simd": bool(fnn_simd_built()),
            "clones": bool(fnn_clones_active()), "threads": bool(fnn_threaded())}


def _test_delay(tid=-1, point=0, us=0):
    """Private, for tests only: training thread ``tid`` sleeps ``us``
    microseconds at ``point`` of every step (1: after the gather barrier, 2:
    before the loss barrier, 3: before the step's last barrier), so a test
    can provoke a race between the threads deterministically. ``tid=-1``
    turns it off. Not thread-safe against a running training call."""
    tid = _check_index(tid, "tid")
    point = _check_index(point, "point")
    us = _check_index(us, "us")
    if not (-1 <= tid <= 1024 and 0 <= point <= 3 and 0 <= us <= 10_000_000):
        raise ValueError(f"tid must be in [-1, 1024], point in [0, 3], us in [0, 1e7], "
                         f"got {tid}, {point}, {us}")
    global fnn_test_delay_tid, fnn_test_delay_point, fnn_test_delay_us
    fnn_test_delay_tid = -1
    fnn_test_delay_point = point
    fnn_test_delay_us = us
    fnn_test_delay_tid = tid


def _thread_calibration():
    """Private: the training loop's thread calibration (measured at the
    process's first threaded call, here if not yet): ``(t1_ns, t2_ns,
    min_macs)``, a probe step's time on one thread and on two at the batch
    where the measurement stopped, and the multiply-adds from which a layer
    phase is split over the threads (float; half for double)."""
    cdef double m
    with nogil:
        m = fnn_par_min_macs(0)
    return fnn_calib[0], fnn_calib[1], m


def _split_phases(sizes, batch_size, dtype=np.float32, n_slots=1, n_threads=2):
    """Private, for tests and measurements: which phases of a step of
    ``batch_size`` rows through a network of widths ``sizes`` the training
    loop splits over ``n_threads`` threads under its default rule (the
    measured threshold, measured here if not yet, and the state rule:
    ``fnn_split_rule`` in ``_gemm.h``), for weights of ``dtype`` with
    ``n_slots`` optimizer slots each (1: SGD's velocity, 2: Adam's moments):
    ``(forward, backward)``, a list of bools per layer each.

    >>> fwd, bwd = _split_phases([784, 128, 10], 512)
    >>> len(fwd), len(bwd)
    (2, 2)
    """
    widths = [int(v) for v in sizes]
    if (len(widths) < 2 or min(widths) < 1 or batch_size < 1 or n_threads < 1
            or n_slots not in (0, 1, 2)):
        raise ValueError("sizes must hold at least two positive widths, batch_size and "
                         "n_threads must be positive and n_slots 0, 1 or 2")
    cdef intp_t[::1] s = np.asarray(widths, dtype=np.intp)
    cdef intp_t nl = len(widths) - 1, l, bs = batch_size
    cdef int nt = n_threads, is_double = np.dtype(dtype) == np.float64
    cdef double n_w = sum(float(a) * float(b) for a, b in zip(widths, widths[1:]))
    cdef double state = (8.0 if is_double else 4.0) * (1 + n_slots)
    cdef fnn_split_rule_t r
    with nogil:
        r = fnn_split_rule(nt, 0, 0.0, n_w, state, is_double)
    fwd = [bool(fnn_split_fwd(&s[0], nl, l, bs, nt, &r)) for l in range(nl)]
    bwd = [bool(fnn_split_bwd(&s[0], nl, l, bs, nt, &r)) for l in range(nl)]
    return fwd, bwd


def _split_threshold(macs=None):
    """Private, for tests: the multiply-adds from which this thread's training
    calls split a phase over their threads (-1: the measured threshold, the
    default); with ``macs``, set it first (0: split every phase)."""
    global fnn_force_min_macs
    if macs is not None:
        fnn_force_min_macs = float(macs)
    return fnn_force_min_macs


def _free_splits(on=None):
    """Private: whether training calls also split the small phases whose split
    adds no barrier (True, the default; ``fnn_split_fwd`` in ``_gemm.h``) or
    only the phases of at least the threshold's multiply-adds, for
    measurements and tests (the results are the same bits); with ``on``, set
    it first."""
    global fnn_free_splits
    if on is not None:
        if not isinstance(on, (bool, np.bool_)):
            raise TypeError(f"on must be a bool, got {type(on).__name__}")
        fnn_free_splits = 1 if on else 0
    return bool(fnn_free_splits)


def _spin_limit(n=None):
    """Private: the spins (x86 ``pause``) a waiting training thread makes
    before it sleeps; with ``n``, set it first (for measurements)."""
    global fnn_spin_limit
    if n is not None:
        n = _check_index(n, "n")
        if not 0 <= n <= 10**9:
            raise ValueError(f"n must be in [0, 1e9], got {n}")
        fnn_spin_limit = n
    return fnn_spin_limit


def _pack_panels(on=None):
    """Private: what ``train_batches`` may pack (bits: 1 B panels, 2 dW's
    operands, 4 W^T panels, 8 A's columns kept for all of dW's chunks, 16 B
    panels copied by their first tile, 32 dZ_prev as W dZ^T where that
    transposes less; 63 by default), for measurements and tests (the results
    are the same bits); with ``on`` (a bool: all or nothing, or the bits), set
    it first."""
    global fnn_pack_mode
    if on is not None:
        fnn_pack_mode = (63 if on else 0) if isinstance(on, bool) else _check_index(on, "on") & 63
    return fnn_pack_mode


def _fuse_rows(n=None):
    """Private: the rows of W per panel of the backward's one pass over a
    layer (-1: sized from the L2, the default; 0: one panel per thread, no
    pass split; n: n rows, at least one panel of the products), for
    measurements and tests (the results are the same bits); with ``n``, set
    it first."""
    global fnn_fuse_rows
    if n is not None:
        n = _check_index(n, "n")
        if not -1 <= n <= 10**9:
            raise ValueError(f"n must be in [-1, 1e9], got {n}")
        fnn_fuse_rows = n
    return fnn_fuse_rows


def _cache_sizes(l1=None, l2=None):
    """Private: the L1d and L2 sizes per core, in bytes, that the products'
    blocking assumes (read from the OS at first use, else 32 KiB and 1 MiB):
    ``(l1, l2)``. With ``l1``/``l2`` (1 KiB to 1 GiB), set them first: tests
    force the blocked and packed paths on small shapes with small values;
    the results are the same bits either way."""
    fnn_caches()
    for i, (value, name) in enumerate(((l1, "l1"), (l2, "l2"))):
        if value is not None:
            value = _check_index(value, name)
            if not 1024 <= value <= 1 << 30:
                raise ValueError(f"{name} must be between 1024 and 2**30 bytes, got {value}")
            fnn_cache[i] = value
            fnn_cache_src[i] = 3  # "set"
    return (fnn_cache[0], fnn_cache[1])


#: fnn_cache_src's values, by name
_CACHE_SOURCES = ("default", "sysfs", "sysconf", "set")


def _cache_sources():
    """Private: where each of the sizes :func:`_cache_sizes` returns came from:
    ``(source_l1, source_l2)``, each "sysfs", "sysconf", "default" or "set"
    (by ``_cache_sizes``)."""
    fnn_caches()
    return (_CACHE_SOURCES[fnn_cache_src[0]], _CACHE_SOURCES[fnn_cache_src[1]])


def _detect_caches(sysfs_dir=None):
    """Private: detect the L1d and L2 sizes again, as at first use: from
    ``sysfs_dir`` (a folder laid out as sysfs's ``cpu0/cache``: ``index<i>/``
    ``level``, ``type``, ``size``; default the real one), else sysconf (glibc),
    else 32 KiB and 1 MiB; an implausible size counts as none. Sets the sizes
    the blocking assumes and returns ``(_cache_sizes(), _cache_sources())``.
    Tests point it at made-up folders; the results of training are the same
    bits whatever the sizes."""
    cdef bytes folder
    if sysfs_dir is None:
        fnn_detect_caches(NULL)
    else:
        folder = os.fsencode(os.fspath(sysfs_dir))
        if len(folder) >= 1000 or b"\0" in folder:
            raise ValueError(f"sysfs_dir must be a path below 1000 bytes, got {sysfs_dir!r}")
        fnn_detect_caches(folder)
    return _cache_sizes(), _cache_sources()


# Whether the training loop can use more than one thread (POSIX threads).
THREADED = bool(fnn_threaded())



cdef inline floating _exp_neg(floating x) noexcept nogil:
    if floating is float:
        return fnn_exp_neg_f(x)
    else:
        return fnn_exp_neg_d(x)




cdef void _mul_activation_grad(floating* d, const floating* a, intp_t n,
                               int act) noexcept nogil:
    """d *= act'(z), with the derivative written in terms of a = act(z)."""
    cdef intp_t i
    cdef floating ai
    if act == RELU:
        for i in range(n):
            d[i] = d[i] if a[i] > 0 else 0
    elif act == TANH:
        for i in range(n):
            ai = a[i]
            d[i] = d[i] * (1 - ai * ai)
    elif act == SIGMOID:
        for i in range(n):
            ai = a[i]
            d[i] = d[i] * (ai * (1 - ai))


cdef void _dense_forward(const floating* x, const floating* w, const floating* b,
                         floating* out, int batch, int n_in, int n_out,
                         int act) noexcept nogil:
    """out = act(x @ w + b): fastnn's kernel, bias and activation fused."""
    if floating is float:
        fnn_dense_forward_f(x, w, b, out, batch, n_in, n_out, act)
    else:
        fnn_dense_forward_d(x, w, b, out, batch, n_in, n_out, act)


cdef void _dense_backward(const floating* a_prev, const floating* w, const floating* dz,
                          floating* dw, floating* db, floating* dz_prev,
                          int batch, int n_in, int n_out, int act_prev) noexcept nogil:
    """dW = a_prev^T @ dz; db = colsum(dz); dz_prev = (dz @ W^T) * act_prev'(.).

    ``dz_prev`` may be NULL (first layer: no gradient w.r.t. the input).
    """
    cdef intp_t i, j
    cdef const floating* row
    _gemm(True, False, n_in, n_out, batch, <floating> 1, a_prev, n_in, dz, n_out,
          <floating> 0, dw, n_out)
    for j in range(n_out):
        db[j] = 0
    for i in range(batch):
        row = dz + i * n_out
        for j in range(n_out):
            db[j] += row[j]
    if dz_prev != NULL:
        _gemm(False, True, batch, n_in, n_out, <floating> 1, dz, n_out, w, n_out,
              <floating> 0, dz_prev, n_in)
        _mul_activation_grad(dz_prev, a_prev, <intp_t> batch * n_in, act_prev)


cdef inline floating _exp_shifted_row(const floating* z, floating* e, intp_t k,
                                     intp_t* arg, floating* zmax) noexcept nogil:
    """e = exp(z - max(z)) over one row of k (``e`` may be ``z``); returns the
    sum of e, and the row's argmax and max through ``arg`` and ``zmax``."""
    cdef intp_t j
    cdef floating m = z[0], s = 0
    arg[0] = 0
    for j in range(1, k):
        if z[j] > m:
            m = z[j]
            arg[0] = j
    for j in range(k):
        e[j] = _exp_neg(z[j] - m)  # vectorised
    for j in range(k):
        s = s + e[j]
    zmax[0] = m
    return s


cdef double _softmax_xent(const floating* z, const intp_t* y, const floating* w,
                          floating* g, intp_t batch, intp_t k,
                          intp_t* n_correct, bint wnorm=False) noexcept nogil:
    """Mean weighted cross-entropy of softmax(z) against y and its gradient:
    ``sum_i w_i CE_i / batch`` and ``g_i = w_i (softmax(z_i) - onehot(y_i)) / batch``
    (``w`` NULL: every w_i = 1, computed without the weights at all; ``wnorm``
    and weights: divided by ``sum_i w_i`` instead of batch, nothing where it is 0).

    One sweep per row: max (and argmax), exp-sum, scale. Stable for any finite
    logits (row max subtracted; log of a sum >= 1). Returns NaN/inf only if
    the logits themselves are non-finite. Labels are validated by the caller
    and checked again here (another thread could change them in between):
    on a label outside [0, k) it stops and sets ``n_correct`` to -1.
    ``n_correct`` counts rows (unweighted) whose first largest logit is the label.
    """
    cdef intp_t i, j, arg, label
    cdef floating zmax, s, scale, wi
    cdef floating inv_batch = (<floating> 1) / batch
    cdef double total = 0, ce, denom = batch, wsum = 0
    if wnorm and w != NULL:
        for i in range(batch):
            wsum += w[i]
        denom = wsum if wsum > 0 else 1.0
        inv_batch = <floating> (1.0 / wsum) if wsum > 0 else 0
    cdef const floating* zr
    cdef floating* gr
    cdef intp_t correct = 0
    for i in range(batch):
        zr = z + i * k
        gr = g + i * k
        s = _exp_shifted_row(zr, gr, k, &arg, &zmax)
        label = y[i]
        if label < 0 or label >= k:
            n_correct[0] = -1
            return 0
        # The shift is taken in double: in float32, logits of +-3e38 would
        # overflow zr[label] - zmax to -inf although the loss is finite.
        if floating is float:
            ce = <double> logf(s) - (<double> zr[label] - <double> zmax)
        else:
            ce = log(s) - (zr[label] - zmax)
        wi = inv_batch
        if w != NULL:
            wi = w[i] * inv_batch
            ce = <double> w[i] * ce
        total += ce
        scale = wi / s
        for j in range(k):
            gr[j] = gr[j] * scale
        gr[label] = gr[label] - wi
        if arg == label:
            correct += 1
    n_correct[0] = correct
    return total / denom


cdef void _softmax(floating* z, intp_t batch, intp_t k) noexcept nogil:
    """Row-wise softmax in place, max-shifted."""
    cdef intp_t i, j, arg
    cdef floating zmax, s, inv
    cdef floating* zr
    for i in range(batch):
        zr = z + i * k
        s = _exp_shifted_row(zr, zr, k, &arg, &zmax)
        inv = 1 / s
        for j in range(k):
            zr[j] = zr[j] * inv


cdef void _sgd_update(floating* w, const floating* g, floating* v, intp_t n,
                      floating lr, floating mu, floating l1, floating l2,
                      bint nesterov) noexcept nogil:
    """v = mu*v - lr*(g + l2*w + l1*sign(w)); w += v, or with Nesterov momentum
    w += mu*v - lr*(g + l2*w + l1*sign(w)) (v the new velocity). One pass, no
    temporaries."""
    cdef intp_t i
    cdef floating wi, step, vi
    for i in range(n):
        wi = w[i]
        step = g[i] + l2 * wi
        if l1 != 0:
            if wi > 0:
                step = step + l1
            elif wi < 0:
                step = step - l1
        step = lr * step
        vi = mu * v[i] - step
        v[i] = vi
        if nesterov:
            w[i] = wi + (mu * vi - step)
        else:
            w[i] = wi + vi


# ---------------------------------------------------------------------------
# Validation helpers (run with the GIL, before any nogil code)
# ---------------------------------------------------------------------------

cnp.import_array()

cdef object _FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
cdef object _INTP = np.dtype(np.intp)

# The checks below read the array struct through NumPy's C API: a kernel on a
# single row costs a few microseconds, and Python-level attribute lookups
# (a.flags, a.dtype, np.may_share_memory) would double that.


cdef object _check_array(object a, str name, object dtype, int ndim,
                         bint writeable=False):
    """Return ``a`` if it is a C-contiguous ndarray of ``dtype`` and ``ndim``."""
    if not cnp.PyArray_Check(a):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    cdef cnp.ndarray arr = <cnp.ndarray> a
    if not cnp.PyArray_EquivTypes(arr.descr, <cnp.dtype> dtype):
        raise TypeError(f"{name} must have dtype {dtype}, got {a.dtype}")
    if cnp.PyArray_NDIM(arr) != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    if not cnp.PyArray_IS_C_CONTIGUOUS(arr):
        raise ValueError(f"{name} must be C-contiguous")
    if writeable and not cnp.PyArray_ISWRITEABLE(arr):
        raise ValueError(f"{name} must be writeable")
    cdef int i
    for i in range(ndim):
        if cnp.PyArray_DIM(arr, i) > _INT_MAX:
            raise ValueError(f"{name} has a dimension of {cnp.PyArray_DIM(arr, i)}, "
                             "above the BLAS limit 2**31-1")
    return a


cdef object _float_dtype(object a, str name):
    """The kernel dtype, taken from the leading float array."""
    if not cnp.PyArray_Check(a):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    cdef cnp.dtype descr = (<cnp.ndarray> a).descr
    if cnp.PyArray_EquivTypes(descr, <cnp.dtype> _FLOAT_DTYPES[0]):
        return _FLOAT_DTYPES[0]
    if cnp.PyArray_EquivTypes(descr, <cnp.dtype> _FLOAT_DTYPES[1]):
        return _FLOAT_DTYPES[1]
    raise TypeError(f"{name} must have dtype float32 or float64, got {a.dtype}")


cdef bint _overlap(object a, object b):
    """Whether two C-contiguous arrays share bytes (exact for contiguous arrays)."""
    cdef cnp.ndarray x = <cnp.ndarray> a
    cdef cnp.ndarray y = <cnp.ndarray> b
    cdef char* xs = <char*> cnp.PyArray_DATA(x)
    cdef char* ys = <char*> cnp.PyArray_DATA(y)
    cdef intp_t xn = cnp.PyArray_NBYTES(x)
    cdef intp_t yn = cnp.PyArray_NBYTES(y)
    return xn > 0 and yn > 0 and xs < ys + yn and ys < xs + xn


cdef int _activation_code(object activation, str name="activation") except -1:
    if isinstance(activation, str):
        code = ACTIVATIONS.get(activation)
        if code is not None:
            return code
    raise ValueError(f"{name} must be one of {sorted(ACTIVATIONS)}, got {activation!r}")


cdef object _check_index(object value, str name):
    """``value`` as a Python int; TypeError naming ``name`` if it is not one (a
    bool is not: ``operator.index(True)`` would be 1)."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r}") from None


cdef object _out(object out, str name, tuple shape, object dtype, tuple inputs):
    """Validate a caller-supplied output buffer, or allocate one."""
    if out is None:
        return np.empty(shape, dtype=dtype)
    _check_array(out, name, dtype, len(shape), writeable=True)
    if out.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {out.shape}")
    for a in inputs:
        if _overlap(out, a):
            raise ValueError(f"{name} must not overlap the inputs")
    return out


cdef double _check_scalar(object value, str name, double low, bint low_inclusive,
                          double high) except? -1:
    # a number, not a string float() would parse, nor a bool
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if not isfinite(v) or v < low or (not low_inclusive and v == low) or v >= high:
        bracket = "[" if low_inclusive else "("
        raise ValueError(f"{name} must be finite and in {bracket}{low}, {high}), got {value!r}")
    return v


cdef void _check_labels(const intp_t[::1] labels, intp_t n_classes, str name) except *:
    cdef intp_t i, bad = -1
    with nogil:
        for i in range(labels.shape[0]):
            if labels[i] < 0 or labels[i] >= n_classes:
                bad = i
                break
    if bad >= 0:
        raise ValueError(f"{name} must be in [0, {n_classes}), got {labels[bad]} at index {bad}")

cdef object _check_u64(object value, str name):
    """``value`` as a Python int in [0, 2**64)."""
    v = _check_index(value, name)
    if not 0 <= v < 2**64:
        raise ValueError(f"{name} must be in [0, 2**64), got {v}")
    return v


cdef bint _check_bool(object value, str name) except -1:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name} must be a bool, got {value!r}")


cdef object _csr_parts(object X):
    """``(data, indices, indptr, n_rows, n_cols)`` of a SciPy CSR matrix or array
    (None for anything else), the arrays checked: 1-D, C-contiguous, intp
    indices and indptr, ``len(indptr) == n_rows + 1``, ``indptr[0] == 0``,
    ``indptr[-1] == len(indices) == len(data)``. The rows' own ranges and
    column indices are checked by :func:`_check_csr_rows` for the rows used."""
    if cnp.PyArray_Check(X) or getattr(X, "format", None) != "csr":
        return None
    try:
        data, indices, indptr = X.data, X.indices, X.indptr
        n_rows, n_cols = X.shape
    except (AttributeError, TypeError, ValueError):
        raise TypeError(f"X must be a numpy.ndarray or a scipy.sparse CSR matrix, "
                        f"got {type(X).__name__}") from None
    dtype = _float_dtype(data, "X.data")
    _check_array(data, "X.data", dtype, 1)
    _check_array(indices, "X.indices", _INTP, 1)
    _check_array(indptr, "X.indptr", _INTP, 1)
    n_rows, n_cols = _check_index(n_rows, "X.shape[0]"), _check_index(n_cols, "X.shape[1]")
    if indptr.shape[0] != n_rows + 1:
        raise ValueError(f"X.indptr must have {n_rows + 1} elements, got {indptr.shape[0]}")
    nnz = data.shape[0]
    if indices.shape[0] != nnz or indptr[0] != 0 or indptr[n_rows] != nnz:
        raise ValueError(f"X is not a valid CSR matrix: indptr[0] = {indptr[0]}, "
                         f"indptr[-1] = {indptr[n_rows]}, {indices.shape[0]} indices and "
                         f"{nnz} values")
    return data, indices, indptr, n_rows, n_cols


cdef void _check_csr_rows(const intp_t[::1] indptr, const intp_t[::1] indices,
                          const intp_t[::1] order, intp_t start, intp_t stop,
                          intp_t n_cols) except *:
    """Each row ``order[start:stop]`` of a CSR X spans ``indptr[r] <= indptr[r + 1]``
    within the values and holds column indices in ``[0, n_cols)``."""
    cdef intp_t i, k, r, bad_row = -1, bad_k = -1
    cdef intp_t nnz = indices.shape[0]
    with nogil:
        for i in range(start, stop):
            r = order[i]
            if not (0 <= indptr[r] <= indptr[r + 1] <= nnz):
                bad_row = r
                break
            for k in range(indptr[r], indptr[r + 1]):
                if indices[k] < 0 or indices[k] >= n_cols:
                    bad_k = k
                    break
            if bad_k >= 0:
                break
    if bad_row >= 0:
        raise ValueError(f"X.indptr must be non-decreasing within [0, nnz], got "
                         f"{indptr[bad_row]}, {indptr[bad_row + 1]} for row {bad_row}")
    if bad_k >= 0:
        raise ValueError(f"X.indices must be in [0, {n_cols}), got {indices[bad_k]} at {bad_k}")


#: The density of a CSR ``X`` up to which :func:`train_batches` runs the first
#: layer's products on the CSR rows by default (``csr_products=None``): the
#: measured crossover (benchmarks/bench_sparse.py; README, "Sparse input").
CSR_PRODUCTS_MAX_DENSITY = 0.03


cdef bint _use_csr_products(object choice, object csr, intp_t n_cols, object drop) except -1:
    """Whether a call runs the first layer's products on X's CSR rows."""
    if choice is not None and not isinstance(choice, (bool, np.bool_)):
        raise TypeError(f"csr_products must be None, True or False, got {choice!r}")
    if csr is None:
        if choice:
            raise ValueError("csr_products=True needs a SciPy CSR X, got a dense X")
        return False
    if drop is not None and drop[0] > 0:
        if choice:
            raise ValueError("csr_products=True cannot apply input dropout (dropout[0] > 0): "
                             "it needs the dense rows")
        return False
    if choice is not None:
        return bool(choice)
    n_rows = csr[3]
    return n_rows > 0 and csr[0].shape[0] <= CSR_PRODUCTS_MAX_DENSITY * n_rows * n_cols


cdef void _check_weights(object weights, object order, intp_t start, intp_t stop) except *:
    """Sample weights finite and >= 0: all of them (order None) or those of the
    rows order[start:stop] (a row's weight is weights[row])."""
    if weights.dtype == _FLOAT_DTYPES[0]:
        _check_weights_typed[float](weights, order, start, stop)
    else:
        _check_weights_typed[double](weights, order, start, stop)


cdef void _check_weights_typed(const floating[::1] w, const intp_t[::1] order, intp_t start,
                               intp_t stop) except *:
    cdef intp_t i, r, bad = -1
    cdef bint all_rows = order is None
    if all_rows:
        start, stop = 0, w.shape[0]
    with nogil:
        for i in range(start, stop):
            r = i if all_rows else order[i]
            if not (isfinite(w[r]) and w[r] >= 0):
                bad = r
                break
    if bad >= 0:
        raise ValueError(f"sample_weight must be finite and >= 0, got {w[bad]} at index {bad}")



# ---------------------------------------------------------------------------
# Public wrappers
# ---------------------------------------------------------------------------

def dense_forward(X, W, b, activation="identity", out=None):
    """Fused dense layer: ``out = activation(X @ W + b)``.

    X: (batch, n_in), W: (n_in, n_out), b: (n_out,), all float32 or all
    float64, C-contiguous. ``out`` (batch, n_out) is written when given and
    must not overlap the inputs. Returns ``out``.
    """
    dtype = _float_dtype(X, "X")
    _check_array(X, "X", dtype, 2)
    _check_array(W, "W", dtype, 2)
    _check_array(b, "b", dtype, 1)
    cdef int act = _activation_code(activation)
    if X.shape[0] == 0 or X.shape[1] == 0 or W.shape[1] == 0:
        raise ValueError(f"X and W must be non-empty, got X {X.shape}, W {W.shape}")
    if W.shape[0] != X.shape[1]:
        raise ValueError(f"W must have shape ({X.shape[1]}, n_out) to match X {X.shape}, got {W.shape}")
    if b.shape[0] != W.shape[1]:
        raise ValueError(f"b must have shape ({W.shape[1]},), got {b.shape}")
    out = _out(out, "out", (X.shape[0], W.shape[1]), dtype, (X, W, b))
    if dtype is _FLOAT_DTYPES[0]:
        _dense_forward_call[float](X, W, b, out, act)
    else:
        _dense_forward_call[double](X, W, b, out, act)
    return out


cdef void _dense_forward_call(const floating[:, ::1] X, const floating[:, ::1] W,
                              const floating[::1] b, floating[:, ::1] out, int act):
    with nogil:
        _dense_forward(&X[0, 0], &W[0, 0], &b[0], &out[0, 0], <int> X.shape[0],
                       <int> X.shape[1], <int> W.shape[1], act)


def csr_forward(X, W, b, activation="identity", out=None, *, rows=None):
    """Fused first layer on a sparse X: ``out = activation(X @ W + b)`` for a
    SciPy CSR ``X`` (values of W's dtype, intp ``indices`` and ``indptr``, as
    ``fit`` and ``predict`` make it): each row a sum of W's rows scaled by the
    row's values, in CSR order (duplicates add up), then the bias and
    activation; the compiled loop's first layer on a sparse X. It costs
    ``nnz x n_out`` multiply-adds, where densifying X costs ``n_rows x n_in x
    n_out``. The NumPy twin is :func:`fastnn.reference.csr_forward`.

    W: (n_in, n_out), b: (n_out,), C-contiguous; ``out`` (rows, n_out) is
    written when given and must not overlap the inputs. ``rows=(start, stop)``:
    only X's rows ``start:stop`` (without slicing X: SciPy's slices copy, and
    may narrow the indices to int32). Returns ``out``.
    """
    if rows is None:
        start, stop = 0, None
    elif isinstance(rows, tuple) and len(rows) == 2:
        start, stop = rows
    else:
        raise TypeError(f"rows must be None or a pair (start, stop), got {rows!r}")
    parts = _csr_parts(X)
    if parts is None:
        raise TypeError(f"X must be a scipy.sparse CSR matrix or array, got {type(X).__name__}")
    data, indices, indptr, n_rows, n_cols = parts
    dtype = _float_dtype(W, "W")
    if data.dtype != dtype:
        raise TypeError(f"X.data must be {dtype.name}, as W, got {data.dtype}")
    _check_array(W, "W", dtype, 2)
    _check_array(b, "b", dtype, 1)
    cdef int act = _activation_code(activation)
    stop = n_rows if stop is None else stop
    start, stop = _check_index(start, "start"), _check_index(stop, "stop")
    if start < 0:
        raise ValueError(f"rows: start must be >= 0, got {start}")
    if not start < stop <= n_rows or W.shape[1] == 0:
        raise ValueError(f"X's rows {start}:{stop} (of {n_rows}) and W's columns must be "
                         f"non-empty, got W {W.shape}")
    if W.shape[0] != n_cols:
        raise ValueError(f"W must have shape ({n_cols}, n_out) to match X {X.shape}, "
                         f"got {W.shape}")
    if b.shape[0] != W.shape[1]:
        raise ValueError(f"b must have shape ({W.shape[1]},), got {b.shape}")
    out = _out(out, "out", (stop - start, W.shape[1]), dtype, (W, b, data))
    rows = np.arange(start, stop, dtype=_INTP)
    _check_csr_rows(indptr, indices, rows, 0, rows.shape[0], n_cols)
    cdef int ok
    if dtype is _FLOAT_DTYPES[0]:
        ok = _csr_forward_call[float](rows, indptr, indices, data, W, b, out, act)
    else:
        ok = _csr_forward_call[double](rows, indptr, indices, data, W, b, out, act)
    if not ok:  # only where another thread changed X's index arrays meanwhile
        raise ValueError("X's index arrays changed while they were read")
    return out


cdef int _csr_forward_call(const intp_t[::1] rows, const intp_t[::1] indptr,
                           const intp_t[::1] indices, const floating[::1] data,
                           const floating[:, ::1] W, const floating[::1] b,
                           floating[:, ::1] out, int act) except -1:
    cdef intp_t nnz = data.shape[0]
    cdef const floating* x = &data[0] if nnz > 0 else NULL
    cdef int ok
    with nogil:
        if floating is float:
            ok = fnn_csr_forward_f(rows.shape[0], &rows[0], indptr.shape[0] - 1, &indptr[0],
                                   &indices[0] if nnz > 0 else NULL, x, nnz, W.shape[0],
                                   &W[0, 0], W.shape[1], &b[0], &out[0, 0], out.shape[1], 0,
                                   W.shape[1], act)
        else:
            ok = fnn_csr_forward_d(rows.shape[0], &rows[0], indptr.shape[0] - 1, &indptr[0],
                                   &indices[0] if nnz > 0 else NULL, x, nnz, W.shape[0],
                                   &W[0, 0], W.shape[1], &b[0], &out[0, 0], out.shape[1], 0,
                                   W.shape[1], act)
    return ok


def dense_backward(A_prev, W, dZ, activation_prev="identity", dW=None, db=None,
                   dZ_prev=None, compute_dZ_prev=True):
    """Backward pass of a dense layer.

    ``dW = A_prev.T @ dZ``, ``db = dZ.sum(axis=0)`` and, when
    ``compute_dZ_prev``, ``dZ_prev = (dZ @ W.T) * act'(A_prev)`` where
    ``A_prev = activation_prev(Z_prev)`` is the layer's input and the
    derivative is evaluated from it. Returns ``(dW, db, dZ_prev)`` (``dZ_prev``
    is None when not computed).
    """
    dtype = _float_dtype(A_prev, "A_prev")
    _check_array(A_prev, "A_prev", dtype, 2)
    _check_array(W, "W", dtype, 2)
    _check_array(dZ, "dZ", dtype, 2)
    cdef int act = _activation_code(activation_prev, "activation_prev")
    batch, n_in = A_prev.shape
    if batch == 0 or n_in == 0 or W.shape[1] == 0:
        raise ValueError(f"A_prev and W must be non-empty, got A_prev {A_prev.shape}, W {W.shape}")
    if W.shape[0] != n_in:
        raise ValueError(f"W must have shape ({n_in}, n_out) to match A_prev {A_prev.shape}, got {W.shape}")
    n_out = W.shape[1]
    if dZ.shape != (batch, n_out):
        raise ValueError(f"dZ must have shape {(batch, n_out)}, got {dZ.shape}")
    inputs = (A_prev, W, dZ)
    dW = _out(dW, "dW", (n_in, n_out), dtype, inputs)
    db = _out(db, "db", (n_out,), dtype, inputs + (dW,))
    if _check_bool(compute_dZ_prev, "compute_dZ_prev"):
        dZ_prev = _out(dZ_prev, "dZ_prev", (batch, n_in), dtype, inputs + (dW, db))
    elif dZ_prev is not None:
        raise ValueError("dZ_prev must be None when compute_dZ_prev is False")
    if dtype is _FLOAT_DTYPES[0]:
        _dense_backward_call[float](A_prev, W, dZ, dW, db, dZ_prev, act)
    else:
        _dense_backward_call[double](A_prev, W, dZ, dW, db, dZ_prev, act)
    return dW, db, dZ_prev


cdef void _dense_backward_call(const floating[:, ::1] A_prev, const floating[:, ::1] W,
                               const floating[:, ::1] dZ, floating[:, ::1] dW,
                               floating[::1] db, floating[:, ::1] dZ_prev, int act):
    cdef floating* dz_prev = NULL if dZ_prev is None else &dZ_prev[0, 0]
    with nogil:
        _dense_backward(&A_prev[0, 0], &W[0, 0], &dZ[0, 0], &dW[0, 0], &db[0], dz_prev,
                        <int> A_prev.shape[0], <int> A_prev.shape[1], <int> W.shape[1], act)


def softmax_cross_entropy(logits, labels, grad=None, *, sample_weight=None,
                          return_correct=False, loss_reduction="mean"):
    """Mean softmax cross-entropy and its gradient w.r.t. the logits.

    logits: (batch, classes) float; labels: (batch,) intp in [0, classes);
    sample_weight: None or (batch,) of the logits' dtype, finite and >= 0.
    Returns ``(loss, grad)`` with ``loss = sum_i w_i CE_i / batch`` and
    ``grad_i = w_i (softmax(logits_i) - onehot_i) / batch`` (``w_i = 1``
    without weights); with ``return_correct=True``, ``(loss, grad,
    n_correct)`` where ``n_correct`` counts the rows (unweighted) whose first
    largest logit is at the label (the count the same pass makes anyway).
    ``loss_reduction="weighted_mean"``: divided by ``sum_i w_i`` instead of
    batch (a zero gradient and loss where the weights are all 0).
    """
    return _logit_loss(logits, labels, grad, sample_weight, return_correct, loss_reduction,
                       False)


cdef object _logit_loss(object logits, object labels, object grad, object sample_weight,
                        bint return_correct, object loss_reduction, bint binary):
    """softmax_cross_entropy (``binary`` False) or sigmoid_cross_entropy (True):
    the arguments checked, the loss called, its results returned."""
    cdef bint wnorm = _check_reduction(loss_reduction)
    dtype = _float_dtype(logits, "logits")
    _check_array(logits, "logits", dtype, 2)
    _check_array(labels, "labels", _INTP, 1)
    if binary:
        if logits.shape[0] == 0 or logits.shape[1] != 1:
            raise ValueError(f"logits must have shape (batch >= 1, 1), got {logits.shape}")
    elif logits.shape[0] == 0 or logits.shape[1] == 0:
        raise ValueError(f"logits must be non-empty, got shape {logits.shape}")
    if labels.shape[0] != logits.shape[0]:
        raise ValueError(f"labels must have length {logits.shape[0]}, got {labels.shape[0]}")
    _check_labels(labels, 2 if binary else logits.shape[1], "labels")
    inputs = _check_loss_weights(sample_weight, logits.shape[0], dtype, (logits, labels))
    grad = _out(grad, "grad", logits.shape, dtype, inputs)
    cdef intp_t correct
    if dtype is _FLOAT_DTYPES[0]:
        loss = _logit_loss_call[float](logits, labels, sample_weight, grad, &correct, wnorm,
                                       binary)
    else:
        loss = _logit_loss_call[double](logits, labels, sample_weight, grad, &correct, wnorm,
                                        binary)
    if correct < 0:
        raise ValueError("labels changed during the call: a label left "
                         + ("{0, 1}" if binary else "[0, classes)"))
    if return_correct:
        return loss, grad, int(correct)
    return loss, grad


cdef double _logit_loss_call(const floating[:, ::1] logits, const intp_t[::1] labels,
                             const floating[::1] weights, floating[:, ::1] grad,
                             intp_t* correct, bint wnorm, bint binary):
    cdef double loss
    cdef const floating* w = NULL
    if weights is not None:
        w = &weights[0]
    with nogil:
        if not binary:
            loss = _softmax_xent(&logits[0, 0], &labels[0], w, &grad[0, 0],
                                 logits.shape[0], logits.shape[1], correct, wnorm)
        elif floating is float:
            loss = fnn_bxent_f(&logits[0, 0], &labels[0], w, &grad[0, 0], logits.shape[0],
                               wnorm, correct)
        else:
            loss = fnn_bxent_d(&logits[0, 0], &labels[0], w, &grad[0, 0], logits.shape[0],
                               wnorm, correct)
    return loss


cdef bint _check_reduction(object loss_reduction) except -1:
    if not isinstance(loss_reduction, str) or loss_reduction not in LOSS_REDUCTIONS:
        raise ValueError(f"loss_reduction must be one of {list(LOSS_REDUCTIONS)}, "
                         f"got {loss_reduction!r}")
    return loss_reduction == "weighted_mean"


cdef object _check_loss_weights(object sample_weight, intp_t n, object dtype, tuple inputs):
    """The inputs with ``sample_weight`` (None, or (n,) of dtype, finite, >= 0) added."""
    if sample_weight is None:
        return inputs
    _check_array(sample_weight, "sample_weight", dtype, 1)
    if sample_weight.shape[0] != n:
        raise ValueError(f"sample_weight must have length {n}, got {sample_weight.shape[0]}")
    _check_weights(sample_weight, None, 0, 0)
    return inputs + (sample_weight,)


def sigmoid_cross_entropy(logits, labels, grad=None, *, sample_weight=None,
                          return_correct=False, loss_reduction="mean"):
    """Mean binary cross-entropy of one logistic output and its gradient.

    logits: (batch, 1) float; labels: (batch,) intp in {0, 1}; sample_weight:
    None or (batch,) of the logits' dtype, finite and >= 0. Returns ``(loss,
    grad)`` with ``loss = sum_i w_i BCE_i / batch``, ``BCE_i = log(1 +
    exp(-|z_i|)) + max(z_i, 0) - y_i z_i`` (= ``-log sigmoid(z_i)`` for label
    1, ``-log(1 - sigmoid(z_i))`` for 0; finite for finite logits) and
    ``grad_i = w_i (sigmoid(z_i) - y_i) / batch`` (``w_i = 1`` without
    weights; ``loss_reduction="weighted_mean"``: divided by ``sum_i w_i``
    instead of batch); with ``return_correct=True`` also the count of rows
    (unweighted) where ``z_i > 0`` is ``y_i == 1``. The loss of
    ``train_batches(loss="binary_cross_entropy")``.

    >>> import numpy as np
    >>> from fastnn import kernels
    >>> loss, g = kernels.sigmoid_cross_entropy(np.zeros((2, 1)), np.array([0, 1]))
    >>> round(loss, 6), g.ravel().tolist()
    (0.693147, [0.25, -0.25])
    """
    return _logit_loss(logits, labels, grad, sample_weight, return_correct, loss_reduction,
                       True)


def squared_error(outputs, targets, grad=None, *, sample_weight=None, loss_reduction="mean"):
    """Half the squared error per row, averaged, and its gradient.

    outputs, targets: (batch, k) float, the same dtype; sample_weight: None or
    (batch,) of that dtype, finite and >= 0. Returns ``(loss, grad)`` with
    ``loss = sum_i w_i (1/2) sum_j (outputs_ij - targets_ij)^2 / batch`` and
    ``grad_i = w_i (outputs_i - targets_i) / batch`` (``w_i = 1`` without
    weights; ``loss_reduction="weighted_mean"``: divided by ``sum_i w_i``
    instead of batch): scikit-learn's squared-error gradient, the loss of
    ``train_batches(loss="mse")``. The mean squared error per element is
    ``2 * loss / k``.

    >>> import numpy as np
    >>> from fastnn import kernels
    >>> loss, g = kernels.squared_error(np.array([[1.0], [2.0]]), np.array([[0.0], [0.0]]))
    >>> loss, g.ravel().tolist()
    (1.25, [0.5, 1.0])
    """
    cdef bint wnorm = _check_reduction(loss_reduction)
    dtype = _float_dtype(outputs, "outputs")
    _check_array(outputs, "outputs", dtype, 2)
    _check_array(targets, "targets", dtype, 2)
    if outputs.shape[0] == 0 or outputs.shape[1] == 0:
        raise ValueError(f"outputs must be non-empty, got shape {outputs.shape}")
    if targets.shape != outputs.shape:
        raise ValueError(f"targets must have shape {outputs.shape}, got {targets.shape}")
    inputs = _check_loss_weights(sample_weight, outputs.shape[0], dtype, (outputs, targets))
    grad = _out(grad, "grad", outputs.shape, dtype, inputs)
    if dtype is _FLOAT_DTYPES[0]:
        return _sqerr_call[float](outputs, targets, sample_weight, grad, wnorm), grad
    return _sqerr_call[double](outputs, targets, sample_weight, grad, wnorm), grad


cdef double _sqerr_call(const floating[:, ::1] z, const floating[:, ::1] t,
                        const floating[::1] weights, floating[:, ::1] grad, bint wnorm):
    cdef double loss
    cdef const floating* w = NULL
    if weights is not None:
        w = &weights[0]
    with nogil:
        if floating is float:
            loss = fnn_sqerr_f(&z[0, 0], &t[0, 0], NULL, w, &grad[0, 0], z.shape[0],
                               z.shape[1], wnorm)
        else:
            loss = fnn_sqerr_d(&z[0, 0], &t[0, 0], NULL, w, &grad[0, 0], z.shape[0],
                               z.shape[1], wnorm)
    return loss


def softmax(logits, out=None):
    """Row-wise softmax (max-shifted). ``out`` may be ``logits`` itself."""
    dtype = _float_dtype(logits, "logits")
    _check_array(logits, "logits", dtype, 2)
    if logits.shape[0] == 0 or logits.shape[1] == 0:
        raise ValueError(f"logits must be non-empty, got shape {logits.shape}")
    if out is None:
        out = logits.copy()
    elif out is not logits:
        out = _out(out, "out", logits.shape, dtype, (logits,))
        np.copyto(out, logits)
    else:
        _check_array(out, "out", dtype, 2, writeable=True)
    if dtype is _FLOAT_DTYPES[0]:
        _softmax_call[float](out)
    else:
        _softmax_call[double](out)
    return out


cdef void _softmax_call(floating[:, ::1] z):
    with nogil:
        _softmax(&z[0, 0], z.shape[0], z.shape[1])


def sgd_update(W, grad, velocity, learning_rate, momentum=0.0, l1=0.0, l2=0.0,
               nesterov=False):
    """In-place SGD with momentum and L1/L2 penalties, one pass, no temporaries.

    ``velocity = momentum*velocity - learning_rate*(grad + l2*W + l1*sign(W))``
    then ``W += velocity``; with ``nesterov=True``,
    ``W += momentum*velocity - learning_rate*(grad + l2*W + l1*sign(W))``
    (``velocity`` the new one). W, grad and velocity: same shape, same float
    dtype, C-contiguous; W and velocity writeable. Returns None.
    """
    dtype = _float_dtype(W, "W")
    _check_array(W, "W", dtype, W.ndim, writeable=True)
    _check_array(grad, "grad", dtype, W.ndim)
    _check_array(velocity, "velocity", dtype, W.ndim, writeable=True)
    if grad.shape != W.shape:
        raise ValueError(f"grad must have shape {W.shape}, got {grad.shape}")
    if velocity.shape != W.shape:
        raise ValueError(f"velocity must have shape {W.shape}, got {velocity.shape}")
    if _overlap(W, grad) or _overlap(W, velocity) or _overlap(grad, velocity):
        raise ValueError("W, grad and velocity must not overlap")
    lr = _check_scalar(learning_rate, "learning_rate", 0.0, True, np.inf)
    mu = _check_scalar(momentum, "momentum", 0.0, True, 1.0)
    cl1 = _check_scalar(l1, "l1", 0.0, True, np.inf)
    cl2 = _check_scalar(l2, "l2", 0.0, True, np.inf)
    cdef bint nest = _check_bool(nesterov, "nesterov")
    if W.size == 0:
        return
    if dtype is _FLOAT_DTYPES[0]:
        _sgd_call[float](W.reshape(-1), grad.reshape(-1), velocity.reshape(-1),
                         lr, mu, cl1, cl2, nest)
    else:
        _sgd_call[double](W.reshape(-1), grad.reshape(-1), velocity.reshape(-1),
                          lr, mu, cl1, cl2, nest)


cdef void _sgd_call(floating[::1] w, const floating[::1] g, floating[::1] v,
                    double lr, double mu, double l1, double l2, bint nesterov):
    with nogil:
        _sgd_update(&w[0], &g[0], &v[0], w.shape[0], <floating> lr, <floating> mu,
                    <floating> l1, <floating> l2, nesterov)


def _check_eps(eps, dtype, name):
    """``eps`` unless it is below the smallest normal number of ``dtype``: the
    training threads flush subnormals to 0, and Adam's denominator
    ``sqrt(v)*s_t + eps`` would then be 0 for a weight whose gradient is 0."""
    tiny = float(np.finfo(dtype).tiny)
    if eps < tiny:
        raise ValueError(f"{name} must be at least {tiny:.6g} (the smallest normal "
                         f"{np.dtype(dtype).name}; a smaller one is flushed to 0), got {eps!r}")
    return eps


def adam_update(W, grad, m, v, learning_rate, t, beta1=0.9, beta2=0.999, eps=1e-8,
                weight_decay=0.0, l1=0.0, l2=0.0):
    """In-place Adam/AdamW step number ``t`` (1 for the first), one pass.

    ``g = grad + l2*W + l1*sign(W)``; ``m = beta1*m + (1-beta1)*g``;
    ``v = beta2*v + (1-beta2)*g*g``; ``W = W*(1 - learning_rate*weight_decay)
    - a_t*m / (sqrt(v)*s_t + eps)`` with ``a_t = learning_rate/(1-beta1**t)``,
    ``s_t = 1/sqrt(1-beta2**t)`` (both in double, then rounded to the dtype).
    The penalties and the decay act on every element of W. W, grad, m, v:
    same shape, same float dtype, C-contiguous, disjoint; W, m and v
    writeable. Returns None.
    """
    dtype = _float_dtype(W, "W")
    _check_array(W, "W", dtype, W.ndim, writeable=True)
    _check_array(grad, "grad", dtype, W.ndim)
    _check_array(m, "m", dtype, W.ndim, writeable=True)
    _check_array(v, "v", dtype, W.ndim, writeable=True)
    arrays = (("W", W), ("grad", grad), ("m", m), ("v", v))
    for name, a in arrays[1:]:
        if a.shape != W.shape:
            raise ValueError(f"{name} must have shape {W.shape}, got {a.shape}")
    for i in range(4):
        for j in range(i + 1, 4):
            if _overlap(arrays[i][1], arrays[j][1]):
                raise ValueError(f"{arrays[j][0]} must not overlap {arrays[i][0]} "
                                 "(W, grad, m and v must be disjoint)")
    t = _check_index(t, "t")
    if not 1 <= t < T_MAX:
        raise ValueError(f"t must be in [1, 2**62) (the step number of this update), got {t}")
    cdef fnn_opt_t opt
    opt.kind = FNN_OPT_ADAM
    opt.nesterov = 0
    opt.mu = 0
    opt.lr = _hyper_positive(learning_rate, "learning_rate")
    opt.beta1 = _hyper_unit(beta1, "beta1")
    opt.beta2 = _hyper_unit(beta2, "beta2")
    opt.eps = _check_eps(_hyper_positive(eps, "eps"), dtype, "eps")
    opt.wd = _hyper_nonneg(weight_decay, "weight_decay")
    opt.l1 = _hyper_nonneg(l1, "l1")
    opt.l2 = _hyper_nonneg(l2, "l2")
    opt.t = 0
    if W.size == 0:
        return
    if dtype is _FLOAT_DTYPES[0]:
        _adam_call[float](W.reshape(-1), grad.reshape(-1), m.reshape(-1), v.reshape(-1),
                          &opt, t)
    else:
        _adam_call[double](W.reshape(-1), grad.reshape(-1), m.reshape(-1), v.reshape(-1),
                           &opt, t)


cdef void _adam_call(floating[::1] w, const floating[::1] g, floating[::1] m,
                     floating[::1] v, const fnn_opt_t* opt, int64_t t):
    cdef fnn_step_f sf
    cdef fnn_step_d sd
    with nogil:
        if floating is float:
            fnn_step_make_f(&sf, opt, t)
            fnn_adam_f(&w[0], &g[0], &m[0], &v[0], w.shape[0], &sf)
        else:
            fnn_step_make_d(&sd, opt, t)
            fnn_adam_d(&w[0], &g[0], &m[0], &v[0], w.shape[0], &sd)


def dropout_mask(rows, width, rate, seed, epoch, step, layer):
    """The dropout mask of layer ``layer`` in the batch at ``step`` of ``epoch``.

    A bool array (rows, width): element (i, j), e = i*width + j, is kept
    (True) iff ``u16(e) >= round(rate * 65536)`` (Python's round), where
    ``u16(e) = (mix(key + (e >> 2)) >> (16 * (e & 3))) & 0xFFFF``,
    ``key = mix(mix(mix(mix(seed) ^ epoch) ^ step) ^ layer)`` and ``mix`` is
    splitmix64's finaliser (uint64, wrapping):
    ``z += 0x9E3779B97F4A7C15; z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EB; z ^ (z >> 31)``.
    The masks of ``train_batches`` (``step``: the batch's start position in
    the epoch's order // batch_size; ``layer`` 0 for the input, l for hidden
    layer l's output). rate in [0, 1); seed, epoch, step, layer in [0, 2**64).
    """
    rows = _check_index(rows, "rows")
    width = _check_index(width, "width")
    if rows < 0 or width < 0:
        raise ValueError(f"rows and width must be >= 0, got {rows}, {width}")
    if rows * width > 2**62:
        raise ValueError(f"rows * width must be at most 2**62, got {rows * width}")
    r = _hyper_unit(rate, "rate")
    cdef uint64_t key = fnn_drop_key(_check_u64(seed, "seed"), _check_u64(epoch, "epoch"),
                                     _check_u64(step, "step"), _check_u64(layer, "layer"))
    cdef uint32_t thr = drop_threshold(r)
    out = np.empty((rows, width), np.uint8)
    if out.size:
        _mask_call(out.reshape(-1), key, thr)
    return out.view(np.bool_)


cdef void _mask_call(uint8_t[::1] mask, uint64_t key, uint32_t thr):
    with nogil:
        fnn_dropout_mask(&mask[0], mask.shape[0], key, thr)


cdef object _F32 = np.dtype(np.float32)


cdef object _check_augment(object params, intp_t n_features, fnn_aug_t* a):
    """Fill ``a`` from ``params`` (a :class:`fastnn.augment.AugmentParams`),
    checked; returns the arrays that ``a`` points into (the caller keeps them
    alive while ``a`` is used)."""
    try:
        shape, lo, hi = params.image_shape, params.lo, params.hi
        flip, alpha, gauss = params.flip, params.alpha, params.gauss
    except AttributeError:
        raise TypeError(f"augment must be a fastnn.augment.AugmentParams (see "
                        f"Augment.kernel_params), got {type(params).__name__}") from None
    try:
        h, w, c = (_check_index(v, "augment.image_shape") for v in shape)
    except (TypeError, ValueError):
        raise TypeError(f"augment.image_shape must be (h, w, c) ints, got {shape!r}") from None
    if h < 2 or w < 2 or c < 1 or h > _INT_MAX or w > _INT_MAX or c > _INT_MAX:
        raise ValueError(f"augment.image_shape must have h, w >= 2 and c >= 1, got {shape!r}")
    if h * w * c != n_features:
        raise ValueError(f"augment.image_shape {tuple(shape)} does not match rows of "
                         f"{n_features} values")
    lo = np.array(lo, dtype=np.float64)   # private copies, checked
    hi = np.array(hi, dtype=np.float64)
    if lo.shape != (5,) or hi.shape != (5,):
        raise ValueError(f"augment.lo and augment.hi must have 5 values, got {lo.shape}, "
                         f"{hi.shape}")
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(lo <= hi)):
        raise ValueError("augment.lo and augment.hi must be finite with lo <= hi")
    if lo[0] < -0.7853981634 or hi[0] > 0.7853981634:
        raise ValueError(f"augment's angle must lie in [-pi/4, pi/4], got ({lo[0]}, {hi[0]})")
    if lo[1] <= 0:
        raise ValueError(f"augment's zoom factor must be > 0, got ({lo[1]}, {hi[1]})")
    if lo[2] < -1 or hi[2] > 1:
        raise ValueError(f"augment's shear must lie in [-1, 1], got ({lo[2]}, {hi[2]})")
    if np.any(np.abs(lo[3:]) > 1e6) or np.any(np.abs(hi[3:]) > 1e6):
        raise ValueError("augment's translation must lie in [-1e6, 1e6] pixels")
    cdef double al = _check_scalar(alpha, "augment.alpha", 0.0, True, 1e6)
    if not cnp.PyArray_Check(gauss) or gauss.dtype != _F32 or gauss.ndim != 1:
        raise TypeError("augment.gauss must be a 1-D float32 numpy.ndarray")
    g = np.ascontiguousarray(gauss).copy()
    if g.shape[0] % 2 != 1 or g.shape[0] > 2 * max(h, w) - 1:
        raise ValueError(f"augment.gauss must have an odd length of at most "
                         f"{2 * max(h, w) - 1}, got {g.shape[0]}")
    if not np.all(np.isfinite(g)):
        raise ValueError("augment.gauss must be finite")
    a.h, a.w, a.c = h, w, c
    for j in range(5):
        a.lo[j] = lo[j]
        a.hi[j] = hi[j]
    a.flip = _check_bool(flip, "augment.flip")
    a.elastic = al != 0
    a.alpha = <float> al
    a.radius = (g.shape[0] - 1) // 2
    cdef const float[::1] gv = g
    a.gauss = &gv[0]
    # the output pixels' centred coordinates (exact in float32)
    grid = np.empty((2, h, w), np.float32)
    grid[0] = np.arange(w, dtype=np.float32) - np.float32((w - 1) * 0.5)
    grid[1] = (np.arange(h, dtype=np.float32) - np.float32((h - 1) * 0.5))[:, None]
    cdef const float[:, :, ::1] gr = grid
    a.grid = &gr[0, 0, 0]
    return g, grid


def augment_rows(X, rows, seed, epoch, augment, out=None):
    """``out[i]`` = the deformation of row ``X[rows[i]]`` that ``train_batches``
    gathers in epoch ``epoch`` of a model seeded ``seed`` (its key: seed,
    epoch and the row index ``rows[i]``; see ``_augment.h`` and
    :func:`fastnn.reference.augment_rows`). ``augment``: a
    :class:`fastnn.augment.AugmentParams`."""
    dtype = _float_dtype(X, "X")
    _check_array(X, "X", dtype, 2)
    rows = np.asarray(rows)
    if rows.ndim != 1 or not (rows.dtype.kind in "iu" or rows.size == 0):
        raise TypeError(f"rows must be a 1-D array of row indices, got {rows.dtype} "
                        f"with shape {rows.shape}")
    rows = rows.astype(np.intp)
    if rows.size and (rows.min() < 0 or rows.max() >= X.shape[0]):
        raise ValueError(f"rows must hold row indices in [0, {X.shape[0]})")
    cdef uint64_t c_seed = _check_u64(seed, "seed")
    cdef uint64_t c_epoch = _check_u64(epoch, "epoch")
    cdef fnn_aug_t a
    keep = _check_augment(augment, X.shape[1], &a)
    out = _out(out, "out", (rows.shape[0], X.shape[1]), dtype, (X,))
    if rows.shape[0] and X.shape[1]:
        if dtype is _FLOAT_DTYPES[0]:
            _augment_call[float](X, rows, out, &a, c_seed, c_epoch)
        else:
            _augment_call[double](X, rows, out, &a, c_seed, c_epoch)
    return out


cdef void _augment_call(const floating[:, ::1] X, const intp_t[::1] rows, floating[:, ::1] out,
                        const fnn_aug_t* a, uint64_t seed, uint64_t epoch) except *:
    cdef intp_t i, d = X.shape[1]
    cdef intp_t nw = fnn_aug_work(a)
    cdef float* work = NULL
    if nw > 0:
        work = <float*> malloc(<size_t> nw * sizeof(float))
        if work == NULL:
            raise MemoryError()
    with nogil:
        for i in range(rows.shape[0]):
            if floating is float:
                fnn_aug_row_f(a, &X[rows[i], 0], &out[i, 0],
                              fnn_aug_key(seed, epoch, <uint64_t> rows[i]), work)
            else:
                fnn_aug_row_d(a, &X[rows[i], 0], &out[i, 0],
                              fnn_aug_key(seed, epoch, <uint64_t> rows[i]), work)
    free(work)


cdef object _UINT8 = np.dtype(np.uint8)
cdef object _F64 = np.dtype(np.float64)
_WS_FIELDS = ("grads", "acts", "deltas", "ybuf", "wbuf", "masks")


ctypedef struct _call_t:
    # the scalars of one train_batches call, and what it returns through pointers
    intp_t n_rows, start, stop, batch_size
    int loss, act, n_threads
    bint wnorm, x_csr, exact, split_fixed
    double split_macs
    uint64_t seed, epoch
    const fnn_opt_t* opt
    const fnn_aug_t* aug
    double loss_sum
    intp_t correct
    int diverged, corrupt


def train_batches(X, y, order, start, stop, batch_size, sizes, activation,
                  params, slots, ws, hyper, *, sample_weight=None, dropout=None,
                  seed=0, epoch=0, n_threads=1, loss="cross_entropy",
                  loss_reduction="mean", augment=None, csr_products=None,
                  exact_sums=False, split_threshold=None, loss_start=0.0):
    """Train on the rows ``X[order[start:stop]]``, batch by batch, without the GIL.

    ``X``: (n_rows, sizes[0]) float32 or float64, C-contiguous; or a SciPy CSR
    matrix/array of that dtype with intp ``indices`` and ``indptr`` (its
    structure is checked for the rows used; duplicates are summed). A CSR X
    trains in one of two ways, of the same meaning (the sums' order differs):
    the rows of a batch scattered into a dense A_0 and the dense products, or
    (``csr_products``) the first layer's products on the CSR rows themselves,
    ``Z_1 = X_b W_0 + b_0`` and ``dW_0 = X_b^T dZ_1`` (then every row of
    ``W_0`` updated, as on the dense path; their twins:
    :func:`fastnn.reference.csr_forward`, :func:`fastnn.reference.csr_weight_grad`).
    ``csr_products=None`` chooses by density: the CSR products when X's density
    ``nnz / (n_rows * sizes[0])`` is at most :data:`CSR_PRODUCTS_MAX_DENSITY`;
    never with input dropout (``dropout[0] > 0``, which needs the dense rows).

    The whole run of batches stays in compiled code: gather, forward (with
    dropout), softmax cross-entropy (with sample weights), backward and the
    fused optimizer update per batch, on fastnn's own kernels and
    ``n_threads`` threads. The weights do not depend on ``n_threads``, nor
    on how an epoch is split into calls (whole batches).

    * ``params``: the flat parameters ``[W_0, ..., W_{L-1}, b_0, ..., b_{L-1}]``;
    * ``slots`` (n_slots, n_params): the optimizer's state, ``slots[0]`` the
      velocity (``hyper.kind == "sgd"``), or ``slots[0]``, ``slots[1]`` Adam's
      m and v;
    * ``ws``: work space with attributes ``grads`` (n_params,), ``acts``,
      ``deltas``, ``ybuf``, ``wbuf`` and ``masks`` (uint8), of at least the
      sizes of :func:`fastnn._layout.workspace_sizes`
      (:class:`fastnn.training.Workspace`); their content on return is
      unspecified;
    * ``hyper``: a :class:`fastnn.kernels.Hyper` (the update rules there;
      Adam's k-th batch of the call is step ``hyper.t + k``);
    * ``loss`` (:data:`LOSSES`): ``"cross_entropy"`` (softmax over the
      ``sizes[-1] >= 2`` outputs; ``y`` intp labels), ``"binary_cross_entropy"``
      (one logistic output, ``sizes[-1] == 1``; ``y`` intp labels 0/1, see
      :func:`sigmoid_cross_entropy`) or ``"mse"`` (identity outputs; ``y`` the
      targets, (n_rows, sizes[-1]) of X's dtype, finite; the loss
      ``(1/2) sum_j (z_j - t_j)^2`` per row, see :func:`squared_error`);
      ``n_correct`` is 0 for ``"mse"``;
    * ``sample_weight``: None, or (n_rows,) of X's dtype, finite and >= 0,
      indexed by X's row: a batch's loss is ``sum_i w_i L_i / bs``, or with
      ``loss_reduction="weighted_mean"`` ``sum_i w_i L_i / sum_i w_i`` (a batch
      whose weights are all 0 then makes a zero gradient);
    * ``dropout``: None, or (n_layers,) float64 rates in [0, 1):
      ``dropout[0]`` for the input, ``dropout[l]`` for hidden layer l's output
      (the output layer is never dropped); inverted dropout with the masks
      of :func:`dropout_mask` (seed, epoch, step = the batch's start position
      in ``order`` // batch_size, layer); kept elements times ``1/(1-rate)``.
      The backward multiplies by the mask and the scale, with the
      activation's derivative at the undropped activation (fastnn's kernels
      recover it as the dropped one times ``1 - rate``, within 2 ulp; ReLU
      exactly).
    * ``augment``: None, or a :class:`fastnn.augment.AugmentParams`: each
      gathered row is the deformation of :func:`augment_rows` (keyed by seed,
      epoch and the row's index in X), made by the thread that gathers it.
    * ``exact_sums``: the batch sums of the weight and bias gradients made in
      float64 from float64 products (exact for float32 operands), the sample
      weights applied there rather than in the loss's gradient, then rounded
      to X's dtype for the update (twin: :func:`fastnn.reference.train_batches`
      with ``exact_sums=True``). A row of integer weight ``w`` then trains as
      ``w`` copies of it, whatever the rows' order, to the last bit unless a
      double sum's own rounding (at most about ``bs * 2**-53`` relative)
      flips its rounding to float32, for about ``bs * 2**-29`` of a step's
      gradients (rare, not impossible, over a long run); slower (double products
      for the weight gradients); not with ``csr_products=True``.
    * ``split_threshold``: the step plan on ``n_threads > 1`` threads. None:
      a layer phase (its forward, or its backward) is split over the threads
      from the threshold the process measured at its first threaded call
      (multiply-adds per batch; half for float64), and a call with no phase
      that big runs on one thread; a number: that threshold instead, as is
      (0 splits every phase). The weights are the same bits whatever the plan;
      only the time differs (``fit`` times the plans on the first batches of
      a network and keeps the fastest).

    * ``loss_start``: the value ``loss_sum`` starts from (an epoch's running
      sum, so that the epoch's loss is the same additions in the same order
      however its batches are divided among calls).

    Returns ``(rows_done, loss_sum, n_correct, diverged)``: ``loss_sum`` is
    ``loss_start`` plus, batch by batch in order, the (weighted) mean batch
    loss times the batch size; ``n_correct`` an unweighted count. On a batch
    with a non-finite loss it stops before updating and reports ``diverged``.
    """
    # start/stop/batch_size are checked here rather than typed intp_t in the
    # signature, whose conversion errors name no argument (and overflow).
    start = _check_index(start, "start")
    stop = _check_index(stop, "stop")
    batch_size = _check_index(batch_size, "batch_size")
    csr = _csr_parts(X)
    if csr is not None:
        xdata, xindices, xindptr, n_rows_x, n_cols_x = csr
        dtype = _float_dtype(xdata, "X.data")
    else:
        dtype = _float_dtype(X, "X")
        _check_array(X, "X", dtype, 2)
        n_rows_x, n_cols_x = X.shape[0], X.shape[1]
        xdata = X.reshape(-1)
        xindices = xindptr = None
    if not isinstance(loss, str) or loss not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
    cdef bint wnorm = _check_reduction(loss_reduction)
    cdef int loss_code = LOSSES[loss]
    if loss_code == FNN_LOSS_SQERR:
        _check_array(y, "y", dtype, 2)
    else:
        _check_array(y, "y", _INTP, 1)
    _check_array(order, "order", _INTP, 1)
    _check_array(sizes, "sizes", _INTP, 1)
    # a private copy: the nogil loop rereads the widths, which no other
    # argument (or thread) may then change
    sizes = sizes.copy()
    cdef intp_t n = n_rows_x, n_layers = sizes.shape[0] - 1
    if n_layers < 1:
        raise ValueError(f"sizes must list at least 2 layer widths, got {sizes.shape[0]}")
    if np.any(sizes <= 0) or np.any(sizes > _INT_MAX):
        raise ValueError(f"sizes must be in [1, 2**31-1], got {sizes}")
    if n_cols_x != sizes[0]:
        raise ValueError(f"X must have {sizes[0]} columns, got {n_cols_x}")
    if y.shape[0] != n:
        raise ValueError(f"y must have length {n} to match X, got {y.shape[0]}")
    if loss_code == FNN_LOSS_SQERR and y.shape[1] != sizes[n_layers]:
        raise ValueError(f"y must have {sizes[n_layers]} columns (the outputs) for loss "
                         f"'mse', got {y.shape[1]}")
    if loss_code == FNN_LOSS_BXENT and sizes[n_layers] != 1:
        raise ValueError(f"sizes[-1] must be 1 (one logistic output) for loss "
                         f"'binary_cross_entropy', got {sizes[n_layers]}")
    if loss_code == FNN_LOSS_XENT and sizes[n_layers] < 2:
        raise ValueError(f"sizes[-1] must be >= 2 (the classes) for loss 'cross_entropy', "
                         f"got {sizes[n_layers]}")
    if not 0 <= start <= stop <= order.shape[0]:
        raise ValueError(f"start and stop must satisfy 0 <= start <= stop <= len(order) = "
                         f"{order.shape[0]}, got {start}, {stop}")
    if batch_size <= 0 or batch_size > _INT_MAX:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    cdef int act = _activation_code(activation)
    n_threads = _check_index(n_threads, "n_threads")
    if not 1 <= n_threads <= 1024:
        raise ValueError(f"n_threads must be in [1, 1024], got {n_threads}")
    h = check_hyper(hyper)
    cdef uint64_t c_seed = _check_u64(seed, "seed")
    cdef uint64_t c_epoch = _check_u64(epoch, "epoch")
    need = workspace_sizes(sizes.tolist(), batch_size)
    _check_array(params, "params", dtype, 1, writeable=True)
    if params.shape[0] != need.params:
        raise ValueError(f"params must have {need.params} elements, got {params.shape[0]}")
    _check_array(slots, "slots", dtype, 2, writeable=True)
    n_slots = 2 if h.kind == "adam" else 1
    if slots.shape[1] != need.params:
        raise ValueError(f"slots must have shape (n_slots, {need.params}), got {slots.shape}")
    if slots.shape[0] < n_slots:
        raise ValueError(f"slots must have at least {n_slots} rows for hyper.kind "
                         f"{h.kind!r} ({'m and v' if n_slots == 2 else 'the velocity'}), "
                         f"got {slots.shape[0]}")
    bufs = {}
    for field in _WS_FIELDS:
        try:
            bufs[field] = getattr(ws, field)
        except AttributeError:
            raise TypeError(f"ws must have the attribute {field!r} (see "
                            f"fastnn.training.Workspace), got {type(ws).__name__}") from None
    for field, kind, size in (("grads", dtype, need.params), ("acts", dtype, need.acts),
                              ("deltas", dtype, need.deltas), ("ybuf", _INTP, batch_size),
                              ("wbuf", dtype, need.wbuf), ("masks", _UINT8, need.masks)):
        _check_array(bufs[field], "ws." + field, kind, 1, writeable=True)
        got = bufs[field].shape[0]
        if field == "grads" and got != size:
            raise ValueError(f"ws.grads must have {size} elements, got {got}")
        if got < size:
            raise ValueError(f"ws.{field} must have at least {size} elements, got {got}")
    if csr is None:
        inputs = [("X", X), ("y", y), ("order", order)]
    else:
        inputs = [("X.data", xdata), ("X.indices", xindices), ("X.indptr", xindptr),
                  ("y", y), ("order", order)]
    if sample_weight is not None:
        _check_array(sample_weight, "sample_weight", dtype, 1)
        if sample_weight.shape[0] != n:
            raise ValueError(f"sample_weight must have length {n} to match X, "
                             f"got {sample_weight.shape[0]}")
        inputs.append(("sample_weight", sample_weight))
    drop = thr = None
    if dropout is not None:
        if not cnp.PyArray_Check(dropout):
            raise TypeError(f"dropout must be None or a numpy.ndarray of float64, "
                            f"got {type(dropout).__name__}")
        if not cnp.PyArray_EquivTypes((<cnp.ndarray> dropout).descr, <cnp.dtype> _F64):
            raise TypeError(f"dropout must have dtype float64, got {dropout.dtype}")
        if dropout.ndim != 1 or dropout.shape[0] != n_layers:
            raise ValueError(f"dropout must have shape ({n_layers},) (a rate for the input "
                             f"and one per hidden layer), got {dropout.shape}")
        drop = np.array(dropout, dtype=np.float64)  # a private copy, as sizes
        for l in range(n_layers):
            if not 0.0 <= drop[l] < 1.0:
                raise ValueError(f"dropout[{l}] must be in [0, 1), got {drop[l]!r}")
        thr = np.array([drop_threshold(r) for r in drop], dtype=np.uint32)
        if not np.any(drop[:n_layers] > 0):
            drop = thr = None  # rate 0 everywhere: no masks, no cost
    cdef fnn_aug_t aug
    aug_keep = None
    if augment is not None:
        aug_keep = _check_augment(augment, sizes[0], &aug)
    work = [("params", params), ("slots", slots)] + [("ws." + f, bufs[f]) for f in _WS_FIELDS]
    for i in range(len(work)):
        for j in range(i + 1, len(work)):
            if _overlap(work[i][1], work[j][1]):
                raise ValueError(f"{work[i][0]} and {work[j][0]} must not overlap (params, slots "
                                 f"and the work space buffers must be disjoint)")
        for a_name, a in inputs:
            if _overlap(work[i][1], a):
                raise ValueError(f"{work[i][0]} must not overlap {a_name} (the buffers written "
                                 f"must not overlap X, y, order or sample_weight)")
    if start < stop:
        rows = order[start:stop]
        if rows.min() < 0 or rows.max() >= n:
            raise ValueError(f"order must hold row indices in [0, {n})")
        if loss_code == FNN_LOSS_SQERR:
            if not np.isfinite(y[rows]).all():
                raise ValueError("y (the targets) must be finite")
        else:
            _check_labels(y[rows], 2 if loss_code == FNN_LOSS_BXENT else sizes[n_layers], "y")
        if sample_weight is not None:
            _check_weights(sample_weight, order, start, stop)
        if csr is not None:
            _check_csr_rows(xindptr, xindices, order, start, stop, n_cols_x)
    if not isinstance(exact_sums, (bool, np.bool_)):
        raise TypeError(f"exact_sums must be True or False, got {exact_sums!r}")
    if exact_sums and csr_products:
        raise ValueError("csr_products=True cannot make the exact sums (exact_sums=True): "
                         "they need the dense rows")
    cdef bint x_csr = (not exact_sums) and _use_csr_products(csr_products, csr, n_cols_x, drop)
    split_threshold = check_float(split_threshold, "split_threshold", low=0.0, allow_none=True)
    cdef double split_macs = 0 if split_threshold is None else split_threshold
    cdef double c_loss_start = check_float(loss_start, "loss_start")
    if start == stop:
        return 0, c_loss_start, 0, False
    cdef fnn_opt_t opt
    opt.kind = FNN_OPT_ADAM if h.kind == "adam" else FNN_OPT_SGD
    opt.nesterov = h.nesterov
    opt.lr, opt.mu, opt.l1, opt.l2 = h.learning_rate, h.momentum, h.l1, h.l2
    opt.beta1, opt.beta2, opt.eps, opt.wd = h.beta1, h.beta2, h.eps, h.weight_decay
    if opt.kind == FNN_OPT_ADAM:
        _check_eps(h.eps, dtype, "hyper.eps")
    opt.t = h.t
    cdef _call_t c
    c.n_rows, c.start, c.stop, c.batch_size = n_rows_x, start, stop, batch_size
    c.loss, c.wnorm, c.act, c.seed, c.epoch = loss_code, wnorm, act, c_seed, c_epoch
    c.opt, c.n_threads, c.aug, c.x_csr = &opt, n_threads, &aug if aug_keep is not None else NULL, x_csr
    c.exact = bool(exact_sums)
    c.split_fixed, c.split_macs = split_threshold is not None, split_macs
    c.loss_sum, c.correct, c.diverged, c.corrupt = c_loss_start, 0, 0, 0
    labels, targets = (None, y) if loss_code == FNN_LOSS_SQERR else (y, None)
    if dtype is _FLOAT_DTYPES[0]:
        done = _train_call[float](xdata, xindices, xindptr, labels, targets, sample_weight, order,
                                  sizes, params, slots, drop, thr, bufs, &c)
    else:
        done = _train_call[double](xdata, xindices, xindptr, labels, targets, sample_weight, order,
                                   sizes, params, slots, drop, thr, bufs, &c)
    loss_sum, correct, diverged, corrupt = c.loss_sum, c.correct, c.diverged, c.corrupt
    if corrupt == 2:
        raise MemoryError("train_batches: no memory for the augmentation's work space")
    if corrupt:
        raise ValueError("order, y or X's CSR structure changed during the call: a row "
                         "index, label or column index left its valid range (another thread "
                         "writing to them?)")
    return done, loss_sum, correct, bool(diverged)


ctypedef fused fnn_bufs_t:
    fnn_bufs_t_f
    fnn_bufs_t_d


cdef void _fill_bufs(fnn_bufs_t* b, const floating[::1] X, const intp_t[::1] xindices,
                     const intp_t[::1] xindptr, const intp_t[::1] y, const floating[:, ::1] T,
                     const floating[::1] sw, const intp_t[::1] order, const intp_t[::1] sizes,
                     floating[::1] params, floating[:, ::1] slots, const double[::1] drop,
                     const uint32_t[::1] thr, dict bufs, const _call_t* c):
    """The buffers of one fnn_train_f/_d call: ``b`` (the struct of X's dtype)
    pointed at the arrays (the work space's from ``bufs``, which keeps them
    alive through the call) and ``c``'s scalars. Only the specialisations
    whose struct matches the dtype have a body (the two others are never
    called)."""
    cdef floating[::1] grads, acts, deltas, wbuf
    cdef intp_t[::1] ybuf
    cdef uint8_t[::1] masks
    if (fnn_bufs_t is fnn_bufs_t_f and floating is float) or (
            fnn_bufs_t is fnn_bufs_t_d and floating is double):
        grads, acts, deltas, wbuf = bufs["grads"], bufs["acts"], bufs["deltas"], bufs["wbuf"]
        ybuf, masks = bufs["ybuf"], bufs["masks"]
        b.x = &X[0] if X.shape[0] > 0 else NULL
        b.order = &order[0]
        b.x_indptr = NULL
        b.x_indices = NULL
        b.x_nnz = X.shape[0]
        b.x_csr = c.x_csr
        b.exact = c.exact
        b.split_fixed, b.split_macs = c.split_fixed, c.split_macs
        if xindptr is not None:
            b.x_indptr = &xindptr[0]
            b.x_indices = &xindices[0] if xindices.shape[0] > 0 else NULL
        b.y = &y[0] if y is not None else NULL
        b.t = &T[0, 0] if T is not None else NULL
        b.loss, b.wnorm = c.loss, c.wnorm
        b.sw = &sw[0] if sw is not None else NULL
        b.n_rows, b.start, b.stop, b.batch_size = c.n_rows, c.start, c.stop, c.batch_size
        b.sizes, b.n_layers, b.act = &sizes[0], sizes.shape[0] - 1, c.act
        b.params, b.wt, b.acts, b.deltas = &params[0], &grads[0], &acts[0], &deltas[0]
        b.slot0 = &slots[0, 0]
        b.slot1 = &slots[1, 0] if c.opt.kind == FNN_OPT_ADAM else NULL
        b.wbuf, b.ybuf, b.masks = &wbuf[0], &ybuf[0], &masks[0]
        b.drop = &drop[0] if drop is not None else NULL
        b.drop_thr = &thr[0] if drop is not None else NULL
        b.seed, b.epoch = c.seed, c.epoch
        b.aug = c.aug


cdef intp_t _run_train(const fnn_bufs_t* b, _call_t* c) noexcept nogil:
    """fnn_train_f or _d on the filled buffers, without the GIL."""
    if fnn_bufs_t is fnn_bufs_t_f:
        return fnn_train_f(b, c.opt, c.n_threads, &c.loss_sum, &c.correct, &c.diverged,
                           &c.corrupt)
    else:
        return fnn_train_d(b, c.opt, c.n_threads, &c.loss_sum, &c.correct, &c.diverged,
                           &c.corrupt)


cdef intp_t _train_call(const floating[::1] X, const intp_t[::1] xindices,
                        const intp_t[::1] xindptr, const intp_t[::1] y,
                        const floating[:, ::1] T, const floating[::1] sw,
                        const intp_t[::1] order, const intp_t[::1] sizes,
                        floating[::1] params, floating[:, ::1] slots, const double[::1] drop,
                        const uint32_t[::1] thr, dict bufs, _call_t* c):
    cdef intp_t done
    cdef fnn_bufs_t_f bf
    cdef fnn_bufs_t_d bd
    if floating is float:
        _fill_bufs(&bf, X, xindices, xindptr, y, T, sw, order, sizes, params, slots, drop, thr,
                   bufs, c)
        with nogil:
            done = _run_train(&bf, c)
    else:
        _fill_bufs(&bd, X, xindices, xindptr, y, T, sw, order, sizes, params, slots, drop, thr,
                   bufs, c)
        with nogil:
            done = _run_train(&bd, c)
    return done
