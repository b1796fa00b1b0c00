"""Argument checks for the public API: arrays here, numbers in :mod:`fastnn._checks`.

Every check raises ``TypeError`` (wrong kind of thing) or ``ValueError``
(right kind, wrong value) with a message that names the argument and says
what was expected. Data is converted once, to the model's dtype and
C-contiguous, so that the compiled kernels can trust it.
"""

import numpy as np

from . import threads
from ._checks import check_choice, check_float, check_int  # noqa: F401  (the scalar checks)

_REAL_KINDS = "biuf"  # bool, signed, unsigned, float


def _from_pandas(value):
    """A pandas Series or DataFrame with nullable numeric columns (``Float64``,
    ``Int64``, ``boolean``, Arrow numbers) as a NumPy array of their common
    dtype, a missing value as NaN (float64 where the columns are integers or
    bool); None for anything else, which ``np.asarray`` converts (NumPy-backed
    columns) or the caller refuses (text, categories)."""
    if not hasattr(value, "to_numpy") or getattr(value, "ndim", 0) not in (1, 2):
        return None
    dtypes = [value.dtype] if value.ndim == 1 else list(getattr(value, "dtypes", ()))
    if not dtypes or all(isinstance(d, np.dtype) for d in dtypes):
        return None
    kinds = [d if isinstance(d, np.dtype) else getattr(d, "numpy_dtype", None) for d in dtypes]
    if not all(isinstance(k, np.dtype) and k.kind in _REAL_KINDS for k in kinds):
        return None
    target = np.result_type(*kinds)
    if not bool(np.asarray(value.isna()).any()):
        return value.to_numpy(dtype=target)
    return value.to_numpy(dtype=np.result_type(target, np.float32) if target.kind == "f"
                          else np.float64, na_value=np.nan)


def _as_array(value, name):
    try:
        arr = _from_pandas(value)
        with np.errstate(all="ignore"):
            arr = np.asarray(value) if arr is None else arr
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name} must be a rectangular array of numbers: {exc}") from None
    if arr.dtype.kind not in _REAL_KINDS:
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    return arr


def assign_arrays(views, values, name, indices=None):
    """Copy ``values`` (one array-like per view) into ``views`` (a model's weight
    or bias views), all checked first: their count, each one's shape, real and
    finite in the views' dtype. Nothing is written unless every one passes.
    Errors name ``name[i]``, ``i`` from ``indices`` (default 0, 1, ...)."""
    indices = range(len(views)) if indices is None else indices
    if isinstance(values, (str, bytes, np.ndarray)) or not hasattr(values, "__len__"):
        raise TypeError(f"{name} must be a list of {len(views)} arrays (one per layer), "
                        f"got {type(values).__name__}")
    if len(values) != len(views):
        raise ValueError(f"{name} must be a list of {len(views)} arrays (one per layer), "
                         f"got {len(values)}")
    arrays = []
    for i, value, view in zip(indices, values, views):
        arr = _as_array(value, f"{name}[{i}]")
        if arr.shape != view.shape:
            raise ValueError(f"{name}[{i}] must have shape {view.shape}, got {arr.shape}")
        with np.errstate(all="ignore"):
            arr = arr.astype(view.dtype)
        if not np.isfinite(arr).all():
            raise ValueError(f"{name}[{i}] must be finite in {view.dtype.name}: it holds "
                             f"NaN or inf")
        arrays.append(arr)
    for view, arr in zip(views, arrays):
        view[...] = arr


#: Elements per block of the finiteness check and of the dtype conversion:
#: 256 Ki elements (1 MiB of float32) stay in a core's L2 cache while they are
#: converted and checked, and bound the temporaries to one block per thread.
CHECK_BLOCK = 1 << 18
#: Arrays of fewer blocks than this per thread are checked by one thread
#: (starting a thread costs about as much as checking a few blocks).
_MIN_BLOCKS_PER_THREAD = 8


def is_sparse(X):
    """Whether ``X`` is a SciPy sparse matrix or array (without importing SciPy's
    sparse module for anything else)."""
    return hasattr(X, "tocsr") and hasattr(X, "nnz") and not isinstance(X, np.ndarray)


def _check_X_shape(shape, n_features, name):
    """ValueError unless ``shape`` is ``(n_samples >= 1, n_features)``."""
    if len(shape) != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, {n_features}), got shape {shape}")
    if shape[0] == 0:
        raise ValueError(f"{name} must have at least one sample, got shape {shape}")
    if shape[1] != n_features:
        raise ValueError(f"{name} must have {n_features} features (columns), got {shape[1]}")


def check_sparse_structure(X, name="X"):
    """ValueError unless a SciPy sparse ``X``'s index arrays describe its shape:
    for CSR and CSC, ``indptr`` has one entry per row (column) plus one and is
    non-decreasing within ``[0, nnz]`` and the stored indices are in range; for
    COO, the coordinates are. Checked before any conversion or product reads
    them (SciPy's own conversions trust them, and write out of bounds on a
    corrupted matrix); other formats are SciPy's to keep consistent. The
    caller's object is not changed."""
    fmt = getattr(X, "format", None)
    n_rows, n_cols = X.shape
    if fmt in ("csr", "csc"):
        major, minor = (n_rows, n_cols) if fmt == "csr" else (n_cols, n_rows)
        indptr, indices, data = np.asarray(X.indptr), np.asarray(X.indices), np.asarray(X.data)
        if indptr.ndim != 1 or indptr.shape[0] != major + 1:
            raise ValueError(f"{name}.indptr must have {major + 1} entries, got "
                             f"{indptr.shape}")
        if indices.ndim != 1 or data.shape != indices.shape:
            raise ValueError(f"{name}.data and {name}.indices must be 1-D and of one length, "
                             f"got {data.shape} and {indices.shape}")
        if indptr.dtype.kind not in "iu" or indices.dtype.kind not in "iu":
            raise TypeError(f"{name}.indptr and {name}.indices must hold integers, got "
                            f"{indptr.dtype} and {indices.dtype}")
        nnz = indices.shape[0]
        steps = np.diff(indptr)
        if indptr[0] < 0:
            raise ValueError(f"{name}.indptr must start at 0 or above, got {indptr[0]}")
        if indptr[-1] > nnz:
            raise ValueError(f"{name}.indptr must end within nnz ({nnz}, the stored "
                             f"entries), got {indptr[-1]}")
        if steps.size and steps.min() < 0:
            bad = int(np.flatnonzero(steps < 0)[0])
            raise ValueError(f"{name}.indptr must be non-decreasing, got {indptr[bad]}, "
                             f"{indptr[bad + 1]} at {bad}")
        used = indices[indptr[0]:indptr[-1]]
        if used.size and (used.min() < 0 or used.max() >= minor):
            bad = int(np.flatnonzero((used < 0) | (used >= minor))[0]) + int(indptr[0])
            raise ValueError(f"{name}.indices must be in [0, {minor}), got {indices[bad]} "
                             f"at {bad}")
    elif fmt == "coo":
        coords = getattr(X, "coords", None) or (X.row, X.col)
        for axis, (c, dim) in enumerate(zip(coords, (n_rows, n_cols))):
            c = np.asarray(c)
            if c.size and (c.min() < 0 or c.max() >= dim):
                raise ValueError(f"{name}'s {('row', 'column')[axis]} indices must be in "
                                 f"[0, {dim})")


def check_sparse_X(X, n_features, dtype, name="X"):
    """A SciPy sparse ``X`` as a CSR matrix of ``dtype`` (finite values) with intp
    ``indices`` and ``indptr``, as the compiled trainer takes it: converted (a
    new object; the caller's is never changed) unless it is one already."""
    import scipy.sparse as sp
    _check_X_shape(X.shape, n_features, name)
    if X.dtype.kind not in _REAL_KINDS:
        raise TypeError(f"{name} must hold real numbers, got dtype {X.dtype}")
    dtype = np.dtype(dtype)
    check_sparse_structure(X, name)
    csr = X.tocsr() if X.format != "csr" else X
    with np.errstate(all="ignore"):
        data = np.ascontiguousarray(csr.data, dtype=dtype)
    if data.size and not all_finite(data, _n_threads(data.size)):
        raise ValueError(f"{name} must be finite in {dtype.name}: it holds NaN or inf")
    indices = np.ascontiguousarray(csr.indices, dtype=np.intp)
    indptr = np.ascontiguousarray(csr.indptr, dtype=np.intp)
    if (csr is X and data is csr.data and indices is csr.indices and indptr is csr.indptr
            and isinstance(X, sp.csr_matrix)):
        return X
    out = sp.csr_matrix((data, indices, indptr), shape=csr.shape, copy=False)
    # scipy may narrow the index arrays on construction: keep them intp
    out.indices, out.indptr = indices, indptr
    return out


def check_X(X, n_features, dtype, name="X"):
    """A 2-D, finite, C-contiguous array of ``dtype`` with ``n_features`` columns;
    a SciPy sparse X becomes a CSR matrix (:func:`check_sparse_X`).

    A C-contiguous array of ``dtype`` is returned as is (never copied); any
    other is converted once, block by block, each block checked while it is in
    cache. Finiteness is checked without an array of ``X.size`` booleans, and
    not at all where the source dtype cannot hold NaN or inf (integers, bool).
    Large arrays are checked and converted on fastnn's threads (one pass over
    memory is the whole cost, and one core does not saturate its bandwidth).
    """
    if is_sparse(X):
        return check_sparse_X(X, n_features, dtype, name)
    arr = _as_array(X, name)
    _check_X_shape(arr.shape, n_features, name)
    dtype = np.dtype(dtype)
    check = arr.dtype.kind == "f"  # bool and integer values are finite in any float dtype
    if arr.dtype == dtype and arr.flags.c_contiguous:
        out = arr
        if check and not all_finite(arr, _n_threads(arr.size)):
            raise ValueError(f"{name} must be finite in {dtype.name}: it holds NaN or inf")
        return out
    if not arr.flags.c_contiguous:
        # another layout (Fortran order, strided views): NumPy's own copy walks
        # it best (measured: 40 ms against 70 for the row blocks below, on
        # MNIST in Fortran order); then the blocked check
        with np.errstate(all="ignore"):
            out = np.ascontiguousarray(arr, dtype=dtype)
        if check and not all_finite(out, _n_threads(out.size)):
            raise ValueError(f"{name} must be finite in {dtype.name}: it holds NaN or inf")
        return out
    # a C-contiguous array of another dtype: convert and check a block at a
    # time, so that each block is checked while it is still in cache
    out = np.empty(arr.shape, dtype=dtype)
    n_rows, n_cols = arr.shape
    block_rows = max(1, CHECK_BLOCK // n_cols)

    def convert(lo, hi):
        """Rows [lo, hi) of arr into out, a block at a time; False at a non-finite value."""
        flags = np.empty(block_rows * n_cols, dtype=bool) if check else None
        with np.errstate(all="ignore"):  # float64 beyond float32's range becomes inf: refused
            for start in range(lo, hi, block_rows):
                block = out[start:min(start + block_rows, hi)]
                np.copyto(block, arr[start:start + block.shape[0]], casting="unsafe")
                if check and not _block_finite(block.reshape(-1), flags):
                    return False
        return True

    if not threads.split_work(n_rows, _n_threads(arr.size), convert):
        raise ValueError(f"{name} must be finite in {dtype.name}: it holds NaN or inf")
    return out


def all_finite(arr, n_threads=1):
    """Whether a C-contiguous float array holds no NaN or inf.

    ``np.isfinite(arr).all()`` would first write ``arr.size`` booleans (47 MB
    for MNIST's training images) and read them back; this checks blocks of
    :data:`CHECK_BLOCK` elements into one small reused buffer per thread: one
    pass over ``arr``, split over ``n_threads`` threads.

    >>> all_finite(np.ones((3, 4))), all_finite(np.array([[1.0, np.inf]]))
    (True, False)
    """
    flat = arr.reshape(-1)

    def part(lo, hi):
        flags = np.empty(min(hi - lo, CHECK_BLOCK), dtype=bool)
        for start in range(lo, hi, CHECK_BLOCK):
            if not _block_finite(flat[start:min(start + CHECK_BLOCK, hi)], flags):
                return False
        return True

    return threads.split_work(flat.size, n_threads, part)


def _block_finite(block, flags):
    ok = flags[:block.size]
    np.isfinite(block, out=ok)  # releases the GIL: threads run in parallel
    return bool(ok.all())


def _n_threads(size):
    """Threads for a pass over ``size`` elements: fastnn's training thread count
    (fastnn.threads.training_threads), fewer for small arrays."""
    n = threads.training_threads()
    return max(1, min(n, size // (CHECK_BLOCK * _MIN_BLOCKS_PER_THREAD)))


def check_y(y, n_samples, n_classes, name="y"):
    """Integer labels in [0, n_classes) as a C-contiguous intp vector of n_samples."""
    arr = _as_array(y, name)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (n_samples,), got shape {arr.shape}")
    if arr.shape[0] != n_samples:
        raise ValueError(f"{name} must have {n_samples} labels to match X, got {arr.shape[0]}")
    if arr.dtype.kind == "b":
        raise TypeError(f"{name} must hold integer class labels, got dtype bool")
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} must be integer labels, got NaN or inf")
        if not np.array_equal(arr, np.floor(arr)):
            raise ValueError(f"{name} must be integer labels, got fractional values")
    if arr.size:
        lo, hi = arr.min(), arr.max()
        if lo < 0 or hi >= n_classes:
            raise ValueError(f"{name} must be in [0, {n_classes}) (the model has "
                             f"{n_classes} classes), got values in [{lo}, {hi}]")
    return np.ascontiguousarray(arr, dtype=np.intp)


def check_targets(y, n_samples, n_outputs, dtype, name="y"):
    """Regression targets as a C-contiguous ``(n_samples, n_outputs)`` array of
    ``dtype``, finite in it; a 1-D ``y`` is one output (``n_outputs == 1``)."""
    arr = _as_array(y, name)
    if arr.ndim == 1 and n_outputs == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, {n_outputs})"
                         f"{' or 1-D' if n_outputs == 1 else ''}, got shape {arr.shape}")
    if arr.shape[0] != n_samples:
        raise ValueError(f"{name} must have {n_samples} rows to match X, got {arr.shape[0]}")
    if arr.shape[1] != n_outputs:
        raise ValueError(f"{name} must have {n_outputs} columns (the model's outputs), "
                         f"got {arr.shape[1]}")
    with np.errstate(all="ignore"):
        out = np.ascontiguousarray(arr, dtype=dtype)
    if not np.isfinite(out).all():
        raise ValueError(f"{name} must be finite in {np.dtype(dtype).name}: it holds NaN or inf")
    return out

