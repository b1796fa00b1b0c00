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
import operator

import numpy as np

cimport numpy as cnp

from ._layout import workspace_sizes

from cython cimport floating
from libc.math cimport log, logf, isfinite
from libc.string cimport memcpy
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


# Branch-free exp/tanh/sigmoid that gcc vectorises (see _fastmath.h); the
# exp helpers take x <= 0 only, which is all that softmax and sigmoid need.
cdef extern from "_fastmath.h" nogil:
    float fnn_exp_neg_f(float x)
    double fnn_exp_neg_d(double x)
    void fnn_bias_tanh_f(float* z, const float* b, intp_t rows, intp_t cols)
    void fnn_bias_tanh_d(double* z, const double* b, intp_t rows, intp_t cols)
    void fnn_bias_sigmoid_f(float* z, const float* b, intp_t rows, intp_t cols)
    void fnn_bias_sigmoid_d(double* z, const double* b, intp_t rows, intp_t cols)


# fastnn's own training products (_gemm.h): register-blocked AVX-512 / AVX2 /
# generic micro-kernels with fused bias/activation and SGD epilogues, and the
# mini-batch loop that runs them on fastnn's threads.
cdef extern from "_gemm.h" nogil:
    ctypedef struct fnn_sgd_f:
        float lr, mu, l1, l2
    ctypedef struct fnn_sgd_d:
        double lr, mu, l1, l2
    int fnn_gemm_select(const char* name)
    const char* fnn_gemm_isa()
    int fnn_threaded()
    void fnn_dense_forward_f(const float* x, const float* w, const float* b, float* out,
                             intp_t batch, intp_t n_in, intp_t n_out, int act)
    void fnn_dense_forward_d(const double* x, const double* w, const double* b, double* out,
                             intp_t batch, intp_t n_in, intp_t n_out, int act)
    intp_t fnn_train_f(const float* x, intp_t n_rows, const intp_t* y, const intp_t* order,
                       intp_t start, intp_t stop, intp_t batch_size, const intp_t* sizes,
                       intp_t n_layers, int act, float* params, float* wt, float* vel,
                       float* acts, float* deltas, intp_t* ybuf, const fnn_sgd_f* hp,
                       int n_threads, double* loss_sum, intp_t* n_correct, bint* diverged,
                       bint* corrupt)
    intp_t fnn_train_d(const double* x, intp_t n_rows, const intp_t* y, const intp_t* order,
                       intp_t start, intp_t stop, intp_t batch_size, const intp_t* sizes,
                       intp_t n_layers, int act, double* params, double* wt, double* vel,
                       double* acts, double* deltas, intp_t* ybuf, const fnn_sgd_d* hp,
                       int n_threads, double* loss_sum, intp_t* n_correct, bint* diverged,
                       bint* corrupt)

fnn_gemm_select(NULL)

# Batch rows from which a training step uses BLAS (sgemm/dgemm and a separate
# SGD pass) instead of fastnn's kernels. Measured on 2 vCPUs of an AMD EPYC
# (Zen 5, KVM; SciPy's OpenBLAS 0.3.30 pinned to its Haswell kernels by
# OPENBLAS_CORETYPE), one MNIST epoch of [784, 128, 10], one thread each:
# fastnn's loop / the BLAS loop = 1.30/2.41 s (batch 1), 0.18/0.66 (10),
# 0.19/0.34 (32), 0.19/0.40 (128), 0.14/0.39 (512), 0.24/0.43 (2048); no
# crossover up to 2048, so BLAS is kept only beyond what was measured.
cdef intp_t _BLAS_MIN_BATCH = 1 << 30
# Rows from which the public dense_forward uses BLAS (prediction on many
# rows); below, fastnn's kernel. Same machine, one thread: fastnn's kernel
# took 0.28-0.55x the time of sgemm + the bias/ReLU passes for 784->128,
# 784->800 and 128->10 from 10 to 10,000 rows: no crossover measured.
cdef intp_t _BLAS_MIN_ROWS = 1 << 30


def _kernel_isa(name=None):
    """Private: the instruction set of fastnn's training kernels ("avx512",
    "avx2" or "generic"); with ``name``, select that one first (tests run
    every variant the CPU supports). ValueError if the CPU lacks it."""
    if name is not None:
        if name not in ("avx512", "avx2", "generic", ""):
            raise ValueError(f"name must be 'avx512', 'avx2', 'generic' or '', got {name!r}")
        if fnn_gemm_select(name.encode()) != 0:
            raise ValueError(f"this CPU cannot run the {name!r} kernels")
    return fnn_gemm_isa().decode()


# Whether the training loop can use more than one thread (POSIX threads).
THREADED = bool(fnn_threaded())



cdef inline floating _exp_neg(floating x) noexcept nogil:
    if floating is float:
        return fnn_exp_neg_f(x)
    else:
        return fnn_exp_neg_d(x)




cdef void _bias_activation(floating* z, const floating* b, intp_t rows, intp_t cols,
                           int act) noexcept nogil:
    """z[i, :] = act(z[i, :] + b) in one pass over z."""
    cdef intp_t i, j
    cdef floating v
    cdef floating* row
    # tanh and sigmoid: C loops compiled per instruction set (_fastmath.h)
    if act == TANH:
        if floating is float:
            fnn_bias_tanh_f(z, b, rows, cols)
        else:
            fnn_bias_tanh_d(z, b, rows, cols)
        return
    if act == SIGMOID:
        if floating is float:
            fnn_bias_sigmoid_f(z, b, rows, cols)
        else:
            fnn_bias_sigmoid_d(z, b, rows, cols)
        return
    for i in range(rows):
        row = z + i * cols
        if act == RELU:
            for j in range(cols):
                v = row[j] + b[j]
                # `0 if v < 0 else v` keeps NaN as NaN, like np.maximum.
                row[j] = 0 if v < 0 else v
        else:
            for j in range(cols):
                row[j] = row[j] + b[j]


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
    """out = act(x @ w + b): fastnn's kernel (bias and activation fused) below
    _BLAS_MIN_ROWS rows, else one GEMM, then bias and activation in one pass."""
    if batch < _BLAS_MIN_ROWS:
        if floating is float:
            fnn_dense_forward_f(x, w, b, out, batch, n_in, n_out, act)
        else:
            fnn_dense_forward_d(x, w, b, out, batch, n_in, n_out, act)
        return
    _gemm(False, False, batch, n_out, n_in, <floating> 1, x, n_in, w, n_out,
          <floating> 0, out, n_out)
    _bias_activation(out, b, batch, n_out, act)


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


cdef double _softmax_xent(const floating* z, const intp_t* y, floating* g,
                          intp_t batch, intp_t k, intp_t* n_correct) noexcept nogil:
    """Mean cross-entropy of softmax(z) against y; g = (softmax(z) - onehot(y)) / batch.

    One sweep per row: max (and argmax), exp-sum, scale. Stable for any finite
    logits (row max subtracted; log of a sum >= 1). Returns NaN/inf only if
    the logits themselves are non-finite. Labels are validated by the caller
    and checked again here (another thread could change them in between):
    on a label outside [0, k) it stops and sets ``n_correct`` to -1.
    """
    cdef intp_t i, j, arg, label
    cdef floating zmax, s, scale
    cdef floating inv_batch = (<floating> 1) / batch
    cdef double total = 0
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
            total += <double> logf(s) - (<double> zr[label] - <double> zmax)
        else:
            total += log(s) - (zr[label] - zmax)
        scale = inv_batch / s
        for j in range(k):
            gr[j] = gr[j] * scale
        gr[label] = gr[label] - inv_batch
        if arg == label:
            correct += 1
    n_correct[0] = correct
    return total / batch


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
                      floating lr, floating mu, floating l1, floating l2) noexcept nogil:
    """v = mu*v - lr*(g + l2*w + l1*sign(w)); w += v. One pass, no temporaries."""
    cdef intp_t i
    cdef floating wi, step, vi
    if l1 == 0:
        for i in range(n):
            wi = w[i]
            step = g[i] + l2 * wi
            vi = mu * v[i] - lr * step
            v[i] = vi
            w[i] = wi + vi
    else:
        for i in range(n):
            wi = w[i]
            step = g[i] + l2 * wi
            if wi > 0:
                step = step + l1
            elif wi < 0:
                step = step - l1
            vi = mu * v[i] - lr * step
            v[i] = vi
            w[i] = wi + vi


cdef intp_t _train_batches(const floating* x, intp_t n_rows, const intp_t* y,
                           const intp_t* order, intp_t start, intp_t stop, intp_t batch_size,
                           const intp_t* sizes, intp_t n_layers, int act,
                           floating* params, floating* grads, floating* velocity,
                           floating* acts, floating* deltas, intp_t* ybuf,
                           floating lr, floating mu, floating l1, floating l2,
                           double* loss_sum, intp_t* n_correct,
                           bint* diverged, bint* corrupt) noexcept nogil:
    """Mini-batch SGD over rows order[start:stop], batch by batch.

    Flat layouts (all offsets derived from ``sizes``):
      params/grads/velocity: [W_0, ..., W_{L-1}, b_0, ..., b_{L-1}]
      acts:   A_0 (the gathered batch), A_1, ..., A_L, each batch_size x sizes[l]
      deltas: two batch_size x max(sizes[1:]) ping-pong buffers.
    Stops before updating on a batch whose loss is not finite (sets diverged).
    Row indices and labels, validated by the caller, are checked again as
    they are read (sets corrupt and stops): no input reaches memory out of
    bounds, even one another thread changes during the call.
    Returns the number of rows consumed.
    """
    cdef intp_t d = sizes[0]
    cdef intp_t k = sizes[n_layers]
    cdef intp_t n_w = 0, n_b = 0, max_width = 0, l, i, r, bs, s0
    cdef intp_t woff, boff, aoff, correct
    cdef floating* delta
    cdef floating* delta_prev
    cdef floating* tmp
    cdef floating* a_in
    cdef double loss
    for l in range(n_layers):
        n_w += sizes[l] * sizes[l + 1]
        n_b += sizes[l + 1]
        if sizes[l + 1] > max_width:
            max_width = sizes[l + 1]
    s0 = start
    while s0 < stop:
        bs = batch_size if stop - s0 > batch_size else stop - s0
        # gather the batch
        for i in range(bs):
            r = order[s0 + i]
            if r < 0 or r >= n_rows:
                corrupt[0] = True
                return s0 - start
            memcpy(acts + i * d, x + r * d, d * sizeof(floating))
            ybuf[i] = y[r]
        # forward
        woff = 0
        boff = n_w
        aoff = 0
        for l in range(n_layers):
            a_in = acts + aoff
            aoff += batch_size * sizes[l]
            _dense_forward(a_in, params + woff, params + boff, acts + aoff,
                           <int> bs, <int> sizes[l], <int> sizes[l + 1],
                           act if l < n_layers - 1 else IDENTITY)
            woff += sizes[l] * sizes[l + 1]
            boff += sizes[l + 1]
        delta = deltas
        delta_prev = deltas + batch_size * max_width
        loss = _softmax_xent(acts + aoff, ybuf, delta, bs, k, &correct)
        if correct < 0:
            corrupt[0] = True
            return s0 - start
        if not isfinite(loss):
            diverged[0] = True
            return s0 - start
        loss_sum[0] += loss * bs
        n_correct[0] += correct
        # backward, last layer first
        for l in range(n_layers - 1, -1, -1):
            woff -= sizes[l] * sizes[l + 1]
            boff -= sizes[l + 1]
            aoff -= batch_size * sizes[l]
            _dense_backward(acts + aoff, params + woff, delta,
                            grads + woff, grads + boff,
                            delta_prev if l > 0 else NULL,
                            <int> bs, <int> sizes[l], <int> sizes[l + 1], act)
            tmp = delta
            delta = delta_prev
            delta_prev = tmp
        # update: penalties on weights only
        _sgd_update(params, grads, velocity, n_w, lr, mu, l1, l2)
        _sgd_update(params + n_w, grads + n_w, velocity + n_w, n_b, lr, mu,
                    <floating> 0, <floating> 0)
        s0 += bs
    return stop - start


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
    """``value`` as a Python int; TypeError naming ``name`` if it is not one."""
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
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None
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
    if compute_dZ_prev:
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


def softmax_cross_entropy(logits, labels, grad=None, *, return_correct=False):
    """Mean softmax cross-entropy and its gradient w.r.t. the logits.

    logits: (batch, classes) float; labels: (batch,) intp in [0, classes).
    Returns ``(loss, grad)`` with ``grad = (softmax(logits) - onehot) / batch``;
    with ``return_correct=True``, ``(loss, grad, n_correct)`` where
    ``n_correct`` counts the rows whose first largest logit is at the label
    (the count the same pass makes anyway).
    """
    dtype = _float_dtype(logits, "logits")
    _check_array(logits, "logits", dtype, 2)
    _check_array(labels, "labels", _INTP, 1)
    if logits.shape[0] == 0 or logits.shape[1] == 0:
        raise ValueError(f"logits must be non-empty, got shape {logits.shape}")
    if labels.shape[0] != logits.shape[0]:
        raise ValueError(f"labels must have length {logits.shape[0]}, got {labels.shape[0]}")
    _check_labels(labels, logits.shape[1], "labels")
    grad = _out(grad, "grad", logits.shape, dtype, (logits, labels))
    cdef intp_t correct
    if dtype is _FLOAT_DTYPES[0]:
        loss = _xent_call[float](logits, labels, grad, &correct)
    else:
        loss = _xent_call[double](logits, labels, grad, &correct)
    if correct < 0:
        raise ValueError("labels changed during the call: a label left [0, classes)")
    if return_correct:
        return loss, grad, int(correct)
    return loss, grad


cdef double _xent_call(const floating[:, ::1] logits, const intp_t[::1] labels,
                       floating[:, ::1] grad, intp_t* correct):
    cdef double loss
    with nogil:
        loss = _softmax_xent(&logits[0, 0], &labels[0], &grad[0, 0],
                             logits.shape[0], logits.shape[1], correct)
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


def sgd_update(W, grad, velocity, learning_rate, momentum=0.0, l1=0.0, l2=0.0):
    """In-place SGD with momentum and L1/L2 penalties, one pass, no temporaries.

    ``velocity = momentum*velocity - learning_rate*(grad + l2*W + l1*sign(W))``
    then ``W += velocity``. W, grad and velocity: same shape, same float dtype,
    C-contiguous; W and velocity writeable. Returns None.
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
    if W.size == 0:
        return
    if dtype is _FLOAT_DTYPES[0]:
        _sgd_call[float](W.reshape(-1), grad.reshape(-1), velocity.reshape(-1),
                         lr, mu, cl1, cl2)
    else:
        _sgd_call[double](W.reshape(-1), grad.reshape(-1), velocity.reshape(-1),
                          lr, mu, cl1, cl2)


cdef void _sgd_call(floating[::1] w, const floating[::1] g, floating[::1] v,
                    double lr, double mu, double l1, double l2):
    with nogil:
        _sgd_update(&w[0], &g[0], &v[0], w.shape[0], <floating> lr, <floating> mu,
                    <floating> l1, <floating> l2)


def train_batches(X, y, order, start, stop, batch_size,
                  sizes, activation, params, grads, velocity, acts, deltas, ybuf,
                  learning_rate, momentum=0.0, l1=0.0, l2=0.0, n_threads=1):
    """Run mini-batch SGD over the rows ``X[order[start:stop]]`` without the GIL.

    The whole run of batches stays in compiled code: gather, forward, softmax
    cross-entropy, backward and update per batch, on fastnn's own kernels
    and ``n_threads`` threads (batches of ``_BLAS_MIN_BATCH`` rows or more:
    BLAS products and a separate update pass, BLAS's threads). Buffers are
    caller-owned flat arrays (see ``fastnn.training.Workspace``); ``grads``
    is work space (the gradients on the BLAS path, transposed weight copies
    on fastnn's kernels), its content on return is unspecified. The
    weights do not depend on ``n_threads``. Returns
    ``(rows_done, loss_sum, n_correct, diverged)`` where ``loss_sum`` is the
    sum over batches of mean batch loss times batch size. On a batch with a
    non-finite loss it stops before updating and reports ``diverged``.
    """
    # start/stop/batch_size are checked here rather than typed intp_t in the
    # signature, whose conversion errors name no argument (and overflow).
    start = _check_index(start, "start")
    stop = _check_index(stop, "stop")
    batch_size = _check_index(batch_size, "batch_size")
    dtype = _float_dtype(X, "X")
    _check_array(X, "X", dtype, 2)
    _check_array(y, "y", _INTP, 1)
    _check_array(order, "order", _INTP, 1)
    _check_array(sizes, "sizes", _INTP, 1)
    # a private copy: the nogil loop rereads the widths, which no other
    # argument (or thread) may then change
    sizes = sizes.copy()
    cdef intp_t n = X.shape[0], n_layers = sizes.shape[0] - 1, l
    if n_layers < 1:
        raise ValueError(f"sizes must list at least 2 layer widths, got {sizes.shape[0]}")
    if np.any(sizes <= 0) or np.any(sizes > _INT_MAX):
        raise ValueError(f"sizes must be in [1, 2**31-1], got {sizes}")
    if X.shape[1] != sizes[0]:
        raise ValueError(f"X must have {sizes[0]} columns, got {X.shape[1]}")
    if y.shape[0] != n:
        raise ValueError(f"y must have length {n} to match X, got {y.shape[0]}")
    if not 0 <= start <= stop <= order.shape[0]:
        raise ValueError(f"start and stop must satisfy 0 <= start <= stop <= len(order) = "
                         f"{order.shape[0]}, got {start}, {stop}")
    if batch_size <= 0 or batch_size > _INT_MAX:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    cdef int act = _activation_code(activation)
    n_threads = _check_index(n_threads, "n_threads")
    if not 1 <= n_threads <= 1024:
        raise ValueError(f"n_threads must be in [1, 1024], got {n_threads}")
    n_params, n_acts, n_deltas = workspace_sizes(sizes.tolist(), batch_size)
    for name, buf in (("params", params), ("grads", grads), ("velocity", velocity)):
        _check_array(buf, name, dtype, 1, writeable=True)
        if buf.shape[0] != n_params:
            raise ValueError(f"{name} must have {n_params} elements, got {buf.shape[0]}")
    _check_array(acts, "acts", dtype, 1, writeable=True)
    _check_array(deltas, "deltas", dtype, 1, writeable=True)
    _check_array(ybuf, "ybuf", _INTP, 1, writeable=True)
    if acts.shape[0] < n_acts:
        raise ValueError(f"acts must have at least {n_acts} elements")
    if deltas.shape[0] < n_deltas:
        raise ValueError(f"deltas must have at least {n_deltas} elements")
    if ybuf.shape[0] < batch_size:
        raise ValueError(f"ybuf must have at least {batch_size} elements")
    bufs = (params, grads, velocity, acts, deltas, ybuf)
    names = ("params", "grads", "velocity", "acts", "deltas", "ybuf")
    for i in range(len(bufs)):
        for j in range(len(bufs)):
            if i != j and _overlap(bufs[i], bufs[j]):
                raise ValueError(f"{names[i]} and {names[j]} must not overlap (params, grads, "
                                 f"velocity, acts, deltas and ybuf must be disjoint)")
        for a, a_name in ((X, "X"), (y, "y"), (order, "order")):
            if _overlap(bufs[i], a):
                raise ValueError(f"{names[i]} must not overlap {a_name} (the work buffers "
                                 f"must not overlap X, y or order)")
    if start < stop:
        rows = order[start:stop]
        if rows.min() < 0 or rows.max() >= n:
            raise ValueError(f"order must hold row indices in [0, {n})")
        _check_labels(y[rows], sizes[n_layers], "y")
    lr = _check_scalar(learning_rate, "learning_rate", 0.0, True, np.inf)
    mu = _check_scalar(momentum, "momentum", 0.0, True, 1.0)
    cl1 = _check_scalar(l1, "l1", 0.0, True, np.inf)
    cl2 = _check_scalar(l2, "l2", 0.0, True, np.inf)
    cdef double loss_sum = 0
    cdef intp_t correct = 0
    cdef bint diverged = False, corrupt = False
    if start == stop:
        return 0, 0.0, 0, False
    if dtype is _FLOAT_DTYPES[0]:
        done = _train_call[float](X, y, order, start, stop, batch_size, sizes, act,
                                  params, grads, velocity, acts, deltas, ybuf,
                                  lr, mu, cl1, cl2, n_threads, &loss_sum, &correct, &diverged,
                                  &corrupt)
    else:
        done = _train_call[double](X, y, order, start, stop, batch_size, sizes, act,
                                   params, grads, velocity, acts, deltas, ybuf,
                                   lr, mu, cl1, cl2, n_threads, &loss_sum, &correct,
                                   &diverged, &corrupt)
    if corrupt:
        raise ValueError("order or y changed during the call: a row index or label left "
                         "its valid range (another thread writing to them?)")
    return done, loss_sum, correct, bool(diverged)


cdef intp_t _train_call(const floating[:, ::1] X, const intp_t[::1] y,
                        const intp_t[::1] order, intp_t start, intp_t stop,
                        intp_t batch_size, const intp_t[::1] sizes, int act,
                        floating[::1] params, floating[::1] grads, floating[::1] velocity,
                        floating[::1] acts, floating[::1] deltas, intp_t[::1] ybuf,
                        double lr, double mu, double l1, double l2, int n_threads,
                        double* loss_sum, intp_t* correct, bint* diverged,
                        bint* corrupt):
    cdef intp_t done
    cdef fnn_sgd_f hp_f
    cdef fnn_sgd_d hp_d
    if batch_size < _BLAS_MIN_BATCH:
        # fastnn's kernels; grads holds the transposed weight copies
        with nogil:
            if floating is float:
                hp_f.lr, hp_f.mu, hp_f.l1, hp_f.l2 = lr, mu, l1, l2
                done = fnn_train_f(&X[0, 0], X.shape[0], &y[0], &order[0], start, stop,
                                   batch_size, &sizes[0], sizes.shape[0] - 1, act,
                                   &params[0], &grads[0], &velocity[0], &acts[0],
                                   &deltas[0], &ybuf[0], &hp_f, n_threads, loss_sum,
                                   correct, diverged, corrupt)
            else:
                hp_d.lr, hp_d.mu, hp_d.l1, hp_d.l2 = lr, mu, l1, l2
                done = fnn_train_d(&X[0, 0], X.shape[0], &y[0], &order[0], start, stop,
                                   batch_size, &sizes[0], sizes.shape[0] - 1, act,
                                   &params[0], &grads[0], &velocity[0], &acts[0],
                                   &deltas[0], &ybuf[0], &hp_d, n_threads, loss_sum,
                                   correct, diverged, corrupt)
        return done
    with nogil:
        done = _train_batches(&X[0, 0], X.shape[0], &y[0], &order[0], start, stop,
                              batch_size, &sizes[0], sizes.shape[0] - 1, act,
                              &params[0], &grads[0], &velocity[0], &acts[0], &deltas[0],
                              &ybuf[0], <floating> lr, <floating> mu, <floating> l1,
                              <floating> l2, loss_sum, correct, diverged, corrupt)
    return done
