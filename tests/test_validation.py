"""The data checks of the public API: exact, allocation-free and copy-free where possible.

``check_X`` is what ``fit``, ``predict_proba``, ``predict`` and ``evaluate``
run on X before any compiled code. It must refuse every NaN and inf wherever
it sits (first or last element, a block boundary, the part of another
thread), convert every other layout and dtype to the same values
``np.ascontiguousarray`` gives, never copy an array that is already
C-contiguous in the model's dtype, and never materialise ``X.size`` booleans.
"""
import tracemalloc
import types

import numpy as np
import pytest

from fastnn import MLP, threads
from fastnn._validation import CHECK_BLOCK, all_finite, check_X
from fastnn.threads import split_work

DTYPES = ["float32", "float64"]
BAD = [np.nan, np.inf, -np.inf]
# rows x 64 columns: 1 block, several blocks and a tail, enough for several threads
SHAPES = [(7, 64), (3 * CHECK_BLOCK // 64 + 5, 64), (20 * CHECK_BLOCK // 64 + 3, 64)]


def _positions(n):
    """Flat indices worth poisoning: the ends, both sides of each of the first
    block boundaries, the middle (where a second thread starts) and its neighbours."""
    cands = {0, n - 1, n // 2, n // 2 - 1, n // 2 + 1, n // 3, (2 * n) // 3}
    for k in (1, 2):
        cands |= {k * CHECK_BLOCK - 1, k * CHECK_BLOCK}
    return sorted(i for i in cands if 0 <= i < n)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_all_finite_finds_every_nan_and_inf(dtype, shape, n_threads):
    X = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    assert all_finite(X, n_threads)
    flat = X.reshape(-1)
    for i in _positions(flat.size):
        for bad in BAD:
            old = flat[i]
            flat[i] = bad
            assert not all_finite(X, n_threads), f"missed {bad} at flat index {i}"
            flat[i] = old
    assert all_finite(X, n_threads)


@pytest.mark.parametrize("dtype", DTYPES)
def test_all_finite_accepts_the_extremes(dtype):
    info = np.finfo(dtype)
    X = np.array([[info.max, -info.max, info.tiny, info.smallest_subnormal, -0.0]], dtype=dtype)
    assert all_finite(X)


@pytest.mark.parametrize("model_dtype", DTYPES)
def test_c_contiguous_input_of_the_model_dtype_is_not_copied(model_dtype):
    X = np.random.default_rng(1).random((300, 12)).astype(model_dtype)
    assert check_X(X, 12, model_dtype) is X
    ro = X.copy()
    ro.flags.writeable = False  # fastnn never writes to X: read-only is used as is too
    assert check_X(ro, 12, model_dtype) is ro


def _layouts(X):
    """Makers of X in other layouts and dtypes (lazily: NaN does not cast to int)."""
    def strided(X):
        big = np.zeros((X.shape[0] * 2, X.shape[1] + 3), dtype=X.dtype)
        big[::2, 1:-2] = X
        return big[::2, 1:-2]
    return {
        "fortran": np.asfortranarray,
        "strided": strided,
        "reversed": lambda X: X[::-1].copy()[::-1],
        "float64": lambda X: X.astype(np.float64),
        "float32": lambda X: X.astype(np.float32),
        "float16": lambda X: X.astype(np.float16),
        "big-endian": lambda X: X.astype(X.dtype.newbyteorder(">")),
        "uint8": lambda X: (X * 255).astype(np.uint8),
        "int64": lambda X: (X * 1000).astype(np.int64),
        "bool": lambda X: X > 0.5,
        "list": lambda X: X[:50].tolist(),
    }


LAYOUTS = list(_layouts(None))


@pytest.mark.parametrize("model_dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("rows", [9, 2 * CHECK_BLOCK // 40 + 11], ids=["small", "multi-block"])
def test_conversion_gives_the_values_of_ascontiguousarray(model_dtype, layout, rows):
    X = np.random.default_rng(2).random((rows, 40)).astype(model_dtype)
    Xv = _layouts(X)[layout](X)
    out = check_X(Xv, 40, model_dtype)
    expected = np.ascontiguousarray(Xv, dtype=model_dtype)
    assert out.dtype == np.dtype(model_dtype) and out.flags.c_contiguous
    as_is = (isinstance(Xv, np.ndarray) and Xv.dtype == np.dtype(model_dtype)
             and Xv.flags.c_contiguous)
    assert (out is Xv) == as_is
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("model_dtype", DTYPES)
@pytest.mark.parametrize("layout", ["fortran", "strided", "float64", "float16"])
@pytest.mark.parametrize("bad", BAD)
def test_conversion_refuses_nan_and_inf_anywhere(model_dtype, layout, bad):
    rows = 4 * CHECK_BLOCK // 40 + 7  # several blocks, and two threads where there are two
    X = np.random.default_rng(3).random((rows, 40)).astype(model_dtype)
    for r, c in [(0, 0), (rows - 1, 39), (rows // 2, 17), (CHECK_BLOCK // 40, 0)]:
        X2 = X.copy()
        X2[r, c] = bad
        with pytest.raises(ValueError, match=f"X must be finite in {model_dtype}"):
            check_X(_layouts(X2)[layout](X2), 40, model_dtype)


def test_float64_beyond_float32_range_is_refused_in_a_large_array():
    X = np.ones((3 * CHECK_BLOCK // 32, 32))
    X[-1, -1] = 1e39  # finite in float64, inf in float32
    with pytest.raises(ValueError, match="X must be finite in float32"):
        check_X(X, 32, "float32")
    assert check_X(X, 32, "float64") is X


def _traced_peak(fn, *args):
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        result = fn(*args)
        return result, tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("n_threads", [1, 2])
def test_finiteness_check_allocates_no_boolean_array_of_X(n_threads):
    """np.isfinite(X).all() would allocate X.size bytes (8 MiB here); the check
    holds one block of flags per thread."""
    X = np.ones((CHECK_BLOCK // 8, 256), dtype=np.float32)  # 8 Mi elements, 32 MiB
    previous = threads._num_threads
    threads.set_num_threads(n_threads)
    try:
        ok, peak = _traced_peak(check_X, X, 256, np.float32)
    finally:
        threads._num_threads = previous
    assert ok is X
    bound = n_threads * CHECK_BLOCK + (64 << 10)
    assert bound < X.size // 4  # a boolean array of X would not fit under it
    assert peak <= bound, f"the finiteness check allocated {peak} bytes (bound {bound})"


def test_conversion_allocates_only_its_output():
    X = np.ones((CHECK_BLOCK // 8, 256), dtype=np.float64)
    out, peak = _traced_peak(check_X, X, 256, np.float32)
    assert out.dtype == np.float32
    assert peak <= out.nbytes + 4 * CHECK_BLOCK + (64 << 10)


def test_an_error_in_a_helper_thread_is_raised_in_the_caller():
    def work(lo, hi):
        if lo > 0:
            raise MemoryError("helper")
        return True
    with pytest.raises(MemoryError, match="helper"):
        split_work(100, 3, work)
    assert split_work(100, 3, lambda lo, hi: True)
    assert not split_work(100, 3, lambda lo, hi: lo == 0)


def test_fit_trains_on_the_callers_array_without_a_copy():
    """A C-contiguous X of the model's dtype reaches the trainer as is."""
    from fastnn import reference, training
    seen = []

    def train_batches(X, *args, **kwargs):
        seen.append(X)
        return reference.train_batches(X, *args, **kwargs)

    rng = np.random.default_rng(4)
    X = rng.random((64, 5)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    model = MLP([5, 4, 3], seed=0)
    training.fit(model, X, y, epochs=1, batch_size=16, learning_rate=0.1, momentum=0.0, l2=0.0,
                 l1=0.0, validation_split=0.0, validation_data=None, early_stopping=None,
                 lr_decay=None, lr_decay_threshold=0.001, verbose=False, callbacks=None,
                 checkpoint=None, kernels=types.SimpleNamespace(train_batches=train_batches))
    assert seen and all(s is X for s in seen)


# -- pandas' nullable columns ------------------------------------------------------

@pytest.mark.parametrize("column_dtype", ["Float64", "Float32", "Int64", "boolean", "mixed"])
def test_pandas_nullable_columns_train_as_their_numbers(column_dtype):
    """``MLP.fit`` and ``predict`` take pandas' nullable dtypes (``np.asarray`` makes
    them object arrays), as NumPy arrays of the same values; a missing value is
    refused as a NaN, naming the argument."""
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    X = rng.integers(0, 2, size=(60, 3)).astype(np.float32)
    y = np.arange(60) % 3
    if column_dtype == "mixed":
        frame = pd.DataFrame({"a": pd.array(X[:, 0], dtype="Float64"),
                              "b": pd.array(X[:, 1].astype(int), dtype="Int64"),
                              "c": X[:, 2]})
    elif column_dtype == "boolean":
        frame = pd.DataFrame(X.astype(bool)).astype("boolean")
    else:
        frame = pd.DataFrame(X).astype(column_dtype)
    kw = dict(epochs=2, batch_size=8, verbose=False)
    ours = MLP([3, 4, 3], seed=0)
    ours.fit(frame, pd.Series(y, dtype="Int64"), **kw)
    ref = MLP([3, 4, 3], seed=0)
    ref.fit(X, y, **kw)
    np.testing.assert_array_equal(ours.parameters, ref.parameters)
    np.testing.assert_array_equal(ours.predict_proba(frame), ref.predict_proba(X))
    missing = frame.astype(object)
    missing.iloc[5, 1] = pd.NA
    with pytest.raises(ValueError, match="X must be finite"):
        ours.predict(missing.astype(frame.dtypes.to_dict()))
    with pytest.raises(ValueError, match="y must be integer labels, got NaN"):
        ours.fit(frame, pd.Series(y, dtype="Int64").astype(object).where(y != 2, pd.NA)
                 .astype("Int64"), **kw)


def test_pandas_text_and_categories_are_refused_naming_the_argument():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"a": pd.Categorical(["x", "y"] * 5), "b": 1.0, "c": 2.0})
    with pytest.raises(TypeError, match="X must hold real numbers"):
        MLP([3, 4, 2], seed=0).fit(frame, np.arange(10) % 2, epochs=1, verbose=False)
    with pytest.raises(TypeError, match="X must hold real numbers"):
        MLP([3, 4, 2], seed=0).predict(frame.astype({"a": "string"}))
