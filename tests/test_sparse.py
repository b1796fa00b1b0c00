"""The first layer's products on the CSR rows of a sparse X (``csr_products``)
against their NumPy twins (SciPy's sparse products), and the density policy."""
import types

import numpy as np
import pytest

sp = pytest.importorskip("scipy.sparse")

from fastnn import _kernels  # noqa: E402
from fastnn import kernels as K  # noqa: E402
from fastnn import reference as R  # noqa: E402
from fastnn._layout import as_sizes, n_params, unflatten, workspace_sizes  # noqa: E402

DTYPES = [np.float32, np.float64]
# compiled vs twin: same maths, different summation order (as test_kernels)
TOL = {np.float32: dict(rtol=1e-3, atol=1e-5), np.float64: dict(rtol=1e-9, atol=1e-11)}
WS_FIELDS = ("grads", "acts", "deltas", "ybuf", "wbuf", "masks")


def _setup(sizes, batch_size, dtype, seed=4):
    rng = np.random.default_rng(seed)
    sizes = as_sizes(sizes)
    p = n_params(list(sizes))
    params = np.zeros(p, dtype)
    for W in unflatten(params, list(sizes))[0]:
        W[...] = rng.standard_normal(W.shape) / np.sqrt(W.shape[0])
    for b in unflatten(params, list(sizes))[1]:
        b[...] = rng.standard_normal(b.shape) * 0.1
    slots = (rng.standard_normal((2, p)) * 0.01).astype(dtype)
    slots[1] = np.abs(slots[1]) * 0.01
    need = workspace_sizes(list(sizes), batch_size)
    ws = types.SimpleNamespace(
        grads=np.zeros(p, dtype), acts=np.zeros(need.acts, dtype),
        deltas=np.zeros(need.deltas, dtype), ybuf=np.zeros(batch_size, np.intp),
        wbuf=np.zeros(need.wbuf, dtype), masks=np.zeros(need.masks, np.uint8))
    return sizes, params, slots, ws


def _csr(X, dtype):
    A = sp.csr_matrix(X.astype(dtype))
    A.indices, A.indptr = A.indices.astype(np.intp), A.indptr.astype(np.intp)
    return A


def sparse_rows(rng, n, d, density, dtype):
    """A CSR X (n x d) of about ``density``, with an empty row, a row with every
    column set, and rows whose indices are unsorted (the kernels read them in
    any order)."""
    X = rng.standard_normal((n, d)) * (rng.random((n, d)) < density)
    X[1] = 0
    X[2] = rng.standard_normal(d)
    A = _csr(X, dtype)
    for r in (3, 5):  # reverse two rows' entries (a valid, unsorted CSR)
        lo, hi = A.indptr[r], A.indptr[r + 1]
        A.indices[lo:hi] = A.indices[lo:hi][::-1].copy()
        A.data[lo:hi] = A.data[lo:hi][::-1].copy()
    A.has_sorted_indices = False
    return X, A


def _train(fn, A, y, sizes, params, slots, ws, hyper, batch_size=8, **kw):
    order = np.random.default_rng(1).permutation(A.shape[0]).astype(np.intp)
    p, s = params.copy(), slots.copy()
    out = fn(A, y, order, 0, A.shape[0], batch_size, sizes, kw.pop("activation", "tanh"), p, s,
             ws, hyper, **kw)
    return out, p, s


HYPERS = [
    K.Hyper("sgd", learning_rate=0.1, momentum=0.9, l2=1e-3),
    K.Hyper("sgd", learning_rate=0.05, momentum=0.9, nesterov=True, l1=1e-4),
    K.Hyper("adam", learning_rate=0.01, weight_decay=0.01),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("hyper", HYPERS, ids=["sgd", "nesterov", "adamw"])
def test_csr_products_match_twin_and_dense_path(dtype, n_threads, hyper):
    rng = np.random.default_rng(0)
    X, A = sparse_rows(rng, 61, 300, 0.02, dtype)
    y = rng.integers(0, 3, 61).astype(np.intp)
    sizes, params, slots, ws = _setup([300, 40, 3], 8, dtype)
    got = _train(K.train_batches, A, y, sizes, params, slots, ws, hyper, csr_products=True,
                 n_threads=n_threads)
    twin = _train(R.train_batches, A, y, sizes, params, slots, ws, hyper)
    dense = _train(K.train_batches, A, y, sizes, params, slots, ws, hyper, csr_products=False,
                   n_threads=n_threads)
    assert got[0][0] == twin[0][0] == 61 and not got[0][3]
    assert got[0][2] == twin[0][2]  # n_correct
    np.testing.assert_allclose(got[0][1], twin[0][1], rtol=1e-4 if dtype == np.float32 else 1e-10)
    for a in (twin, dense):
        np.testing.assert_allclose(got[1], a[1], **TOL[dtype])  # params
        np.testing.assert_allclose(got[2], a[2], **TOL[dtype])  # slots
    # the weights moved (the update reached every row of W_0: momentum or decay)
    W0 = unflatten(got[1], list(sizes))[0][0]
    assert np.all(W0 != unflatten(params, list(sizes))[0][0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", ["binary_cross_entropy", "mse"])
def test_csr_products_other_losses_one_layer_and_weights(dtype, loss):
    """No hidden layer (the CSR layer is the output), the other losses, sample
    weights with their normalisation, relu."""
    rng = np.random.default_rng(2)
    X, A = sparse_rows(rng, 40, 120, 0.05, dtype)
    out = 1 if loss == "binary_cross_entropy" else 2
    y = (rng.integers(0, 2, 40).astype(np.intp) if out == 1
         else rng.standard_normal((40, 2)).astype(dtype))
    w = rng.random(40).astype(dtype) * 2
    for layers in ([120, out], [120, 16, out]):
        sizes, params, slots, ws = _setup(layers, 8, dtype)
        hyper = K.Hyper("sgd", learning_rate=0.05, momentum=0.5)
        kw = dict(loss=loss, sample_weight=w, loss_reduction="weighted_mean", activation="relu")
        got = _train(K.train_batches, A, y, sizes, params, slots, ws, hyper, csr_products=True,
                     n_threads=2, **kw)
        twin = _train(R.train_batches, A, y, sizes, params, slots, ws, hyper, **kw)
        np.testing.assert_allclose(got[1], twin[1], **TOL[dtype])
        np.testing.assert_allclose(got[0][1], twin[0][1], rtol=1e-4)


@pytest.mark.parametrize("dtype", DTYPES)
def test_csr_products_bit_for_bit_across_thread_counts(dtype):
    rng = np.random.default_rng(3)
    X, A = sparse_rows(rng, 200, 500, 0.01, dtype)
    y = rng.integers(0, 4, 200).astype(np.intp)
    sizes, params, slots, ws = _setup([500, 64, 32, 4], 16, dtype)
    hyper = K.Hyper("adam", learning_rate=0.01)
    old = _kernels._split_threshold()
    _kernels._split_threshold(0)  # split every phase, however small
    try:
        runs = [_train(K.train_batches, A, y, sizes, params, slots, ws, hyper, batch_size=16,
                       csr_products=True, n_threads=t, dropout=np.array([0.0, 0.2, 0.1]))
                for t in (1, 2, 3)]
    finally:
        _kernels._split_threshold(old)
    for r in runs[1:]:
        assert r[0] == runs[0][0]
        np.testing.assert_array_equal(r[1], runs[0][1])
        np.testing.assert_array_equal(r[2], runs[0][2])
    twin = _train(R.train_batches, A, y, sizes, params, slots, ws, hyper, batch_size=16,
                  dropout=np.array([0.0, 0.2, 0.1]))
    np.testing.assert_allclose(runs[0][1], twin[1], **TOL[dtype])


def test_csr_products_duplicates_summed_as_scipy():
    """Duplicate column indices within a row add up, as in SciPy's products."""
    rng = np.random.default_rng(5)
    X, A = sparse_rows(rng, 24, 50, 0.1, np.float64)
    data = np.concatenate([A.data, [1.5, -2.0]])
    # two extra entries appended to the last row, on columns it already has or not
    last = A.indptr[-2]
    cols = np.concatenate([A.indices, [A.indices[last] if A.indptr[-1] > last else 0, 7]])
    indptr = A.indptr.copy()
    indptr[-1] += 2
    D = sp.csr_matrix((data, cols, indptr), shape=A.shape)
    D.indices, D.indptr = D.indices.astype(np.intp), D.indptr.astype(np.intp)
    y = rng.integers(0, 2, 24).astype(np.intp)
    sizes, params, slots, ws = _setup([50, 8, 2], 8, np.float64)
    hyper = K.Hyper("sgd", learning_rate=0.1, momentum=0.9)
    got = _train(K.train_batches, D, y, sizes, params, slots, ws, hyper, csr_products=True)
    summed = _csr(D.toarray(), np.float64)
    ref = _train(K.train_batches, summed, y, sizes, params, slots, ws, hyper, csr_products=False)
    np.testing.assert_allclose(got[1], ref[1], **TOL[np.float64])


def test_csr_kernel_twins():
    rng = np.random.default_rng(6)
    X, A = sparse_rows(rng, 10, 30, 0.2, np.float64)
    W = rng.standard_normal((30, 5))
    b = rng.standard_normal(5)
    np.testing.assert_allclose(R.csr_forward(A, W, b, "tanh"),
                               R.dense_forward(X, W, b, "tanh"), rtol=1e-12)
    dZ = rng.standard_normal((10, 5))
    np.testing.assert_allclose(R.csr_weight_grad(A, dZ), X.T @ dZ, rtol=1e-12)


def test_csr_products_policy():
    rng = np.random.default_rng(7)
    dtype = np.float64
    X, A = sparse_rows(rng, 16, 40, 0.5, dtype)
    y = rng.integers(0, 2, 16).astype(np.intp)
    sizes, params, slots, ws = _setup([40, 8, 2], 8, dtype)
    hyper = K.Hyper("sgd", learning_rate=0.1)
    call = lambda data, **kw: _train(K.train_batches, data, y, sizes, params, slots, ws,  # noqa
                                     hyper, **kw)
    with pytest.raises(TypeError, match="csr_products"):
        call(A, csr_products="yes")
    with pytest.raises(ValueError, match="csr_products"):
        call(X, csr_products=True)
    with pytest.raises(ValueError, match="input dropout"):
        call(A, csr_products=True, dropout=np.array([0.1, 0.0]))
    # dense enough: the default is the dense path, bit for bit
    dense = call(X)
    np.testing.assert_array_equal(call(A)[1], dense[1])
    np.testing.assert_array_equal(call(A, csr_products=False)[1], dense[1])
    assert 0 < _kernels.CSR_PRODUCTS_MAX_DENSITY < 1
    # sparse enough: the default is the CSR products
    X, A = sparse_rows(rng, 200, 400, _kernels.CSR_PRODUCTS_MAX_DENSITY / 4, dtype)
    assert A.nnz < _kernels.CSR_PRODUCTS_MAX_DENSITY * 200 * 400
    y = rng.integers(0, 2, 200).astype(np.intp)
    sizes, params, slots, ws = _setup([400, 8, 2], 8, dtype)
    call = lambda data, **kw: _train(K.train_batches, data, y, sizes, params, slots, ws,  # noqa
                                     hyper, **kw)
    np.testing.assert_array_equal(call(A)[1], call(A, csr_products=True)[1])
    bad = A.copy()
    bad.indices, bad.indptr = A.indices.copy(), A.indptr.copy()  # intp, as A's
    bad.indices[A.indptr[7]] = 400  # a column index out of range: refused before the call
    with pytest.raises(ValueError, match="X.indices"):
        call(bad, csr_products=True)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_mlp_fits_a_low_density_sparse_X_as_the_dense_X(dtype):
    """MLP.fit on a CSR X below the crossover (the CSR products, chosen by default)
    trains as on the dense X, up to the sums' order; unsorted indices, a CSC input."""
    from fastnn import MLP
    rng = np.random.default_rng(8)
    X, A = sparse_rows(rng, 400, 500, 0.01, np.float64)
    assert A.nnz < _kernels.CSR_PRODUCTS_MAX_DENSITY * X.size
    y = (X[:, :250].sum(1) > X[:, 250:].sum(1)).astype(int)
    tol = TOL[np.dtype(dtype).type]
    dense = MLP([500, 16, 2], seed=0, dtype=dtype)
    dense.fit(X, y, epochs=3, batch_size=32, verbose=False, validation_split=0.2)
    for data in (A, sp.csc_matrix(X), sp.csr_array(X)):
        sparse = MLP([500, 16, 2], seed=0, dtype=dtype)
        sparse.fit(data, y, epochs=3, batch_size=32, verbose=False, validation_split=0.2)
        np.testing.assert_allclose(sparse.parameters, dense.parameters, **tol)
        np.testing.assert_allclose(sparse.history_.history["loss"],
                                   dense.history_.history["loss"], rtol=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_exact_sums_train_a_sparse_X_on_its_dense_rows(dtype):
    """fit(exact_sums=True) on a CSR X below the crossover: not the CSR products (which
    cannot make the exact sums) but the rows scattered into A_0, so the same bits as
    the dense X with exact_sums, sample weights included; and not the bits without."""
    from fastnn import MLP
    rng = np.random.default_rng(8)
    X, A = sparse_rows(rng, 300, 400, 0.01, np.float64)
    y = (X[:, :200].sum(1) > X[:, 200:].sum(1)).astype(int)
    w = rng.integers(0, 4, 300).astype(np.float64)
    fitted = []
    for data, exact in ((X, True), (A, True), (X, False)):
        model = MLP([400, 16, 2], seed=0, dtype=dtype)
        model.fit(data, y, sample_weight=w, epochs=2, batch_size=32, verbose=False,
                  exact_sums=exact, loss_reduction="weighted_mean")
        fitted.append(model.parameters.copy())
    np.testing.assert_array_equal(fitted[1], fitted[0])
    assert not np.array_equal(fitted[2], fitted[0])


def _corruptions():
    """(description, function making a corrupted copy of a 4-column CSR matrix)"""
    def indptr_past_nnz(A):
        A.indptr[3] = 10**6
    def indptr_decreasing(A):
        A.indptr[2], A.indptr[3] = A.indptr[3], A.indptr[2] - 1
    def index_too_big(A):
        A.indices[0] = 9
    def index_negative(A):
        A.indices[0] = -3
    def indptr_ends_past_nnz(A):
        A.indptr[-1] += 5
    def indptr_starts_below_0(A):
        A.indptr[0] = -1
    return [("indptr past nnz", indptr_past_nnz, "indptr"),
            ("indptr decreasing", indptr_decreasing, "indptr must be non-decreasing"),
            ("indptr ends past nnz", indptr_ends_past_nnz, r"indptr must end within nnz \(160"),
            ("indptr starts below 0", indptr_starts_below_0, "indptr must start at 0"),
            ("column index too big", index_too_big, "indices"),
            ("negative column index", index_negative, "indices")]


@pytest.mark.parametrize("what, corrupt, field", _corruptions(), ids=lambda v: v
                         if isinstance(v, str) else None)
def test_corrupted_index_arrays_are_refused_before_anything_reads_them(what, corrupt, field):
    # SciPy's own conversions (toarray, tocsr, sort_indices) trust the index
    # arrays: predict on such a matrix crashed the interpreter, or read another
    # row's values; every entry point now checks them first
    from fastnn import MLP
    X = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    model = MLP([4, 8, 2], seed=0)
    A = sp.csr_matrix(X)
    corrupt(A)
    for call in (lambda: model.predict(A), lambda: model.predict_proba(A),
                 lambda: model.evaluate(A, y), lambda: model.fit(A, y, epochs=1)):
        with pytest.raises(ValueError, match=f"X.{field}"):
            call()
    # a CSC matrix is checked along its columns, a COO matrix by its coordinates
    C = sp.csc_matrix(X)
    C.indices[0] = 40
    with pytest.raises(ValueError, match="X.indices must be in"):
        model.predict(C)
    Q = sp.coo_matrix(X)
    Q.row[0] = 40
    with pytest.raises(ValueError, match="row indices must be in"):
        model.predict(Q)


def test_corrupted_index_arrays_are_refused_by_the_estimator():
    pytest.importorskip("sklearn")
    from fastnn.sklearn import MLPClassifier
    X = np.random.default_rng(0).normal(size=(40, 4))
    y = (X[:, 0] > 0).astype(int)
    A = sp.csr_matrix(X)
    A.indptr[3] = 10**6
    with pytest.raises(ValueError, match="X.indptr"):
        MLPClassifier(hidden_layer_sizes=(8,), max_iter=2).fit(A, y)
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=2, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="X.indptr"):
        clf.predict(A)


# -- kernels.csr_forward and prediction on a sparse X ------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["identity", "relu", "tanh", "sigmoid"])
@pytest.mark.parametrize("rows", [None, (0, 1), (2, 9), (5, 40)])
def test_csr_forward_matches_its_twin(dtype, activation, rows):
    """kernels.csr_forward against reference.csr_forward on CSR rows with an empty
    row, a full row and unsorted indices; rows=(start, stop) reads only those."""
    rng = np.random.default_rng(3)
    _, A = sparse_rows(rng, 40, 37, 0.1, dtype)
    W = rng.standard_normal((37, 19)).astype(dtype)
    b = rng.standard_normal(19).astype(dtype)
    got = K.csr_forward(A, W, b, activation, rows=rows)
    np.testing.assert_allclose(got, R.csr_forward(A, W, b, activation, rows=rows), **TOL[dtype])
    out = np.full_like(got, np.nan)
    assert K.csr_forward(A, W, b, activation, out=out, rows=rows) is out
    np.testing.assert_array_equal(out, got)


@pytest.mark.parametrize("call, exc, match", [
    (lambda A, W, b: K.csr_forward(A.toarray(), W, b), TypeError, "X must be a scipy.sparse"),
    (lambda A, W, b: K.csr_forward(A, W.astype(np.float64), b.astype(np.float64)), TypeError,
     "X.data must be float64"),
    (lambda A, W, b: K.csr_forward(A, W[:5], b), ValueError, "W must have shape"),
    (lambda A, W, b: K.csr_forward(A, W, b[:3]), ValueError, "b must have shape"),
    (lambda A, W, b: K.csr_forward(A, W, b, "swish"), ValueError, "activation"),
    (lambda A, W, b: K.csr_forward(A, W, b, rows=(5, 5)), ValueError, "rows 5:5"),
    (lambda A, W, b: K.csr_forward(A, W, b, rows=(0, 41)), ValueError, "rows 0:41"),
    (lambda A, W, b: K.csr_forward(A, W, b, rows=(-1, 3)), ValueError, "start"),
    (lambda A, W, b: K.csr_forward(A, W, b, rows=[0, 3]), TypeError, "rows must be"),
    (lambda A, W, b: K.csr_forward(A, W, b, out=np.zeros((40, 19), np.float64)), TypeError,
     "out"),
    (lambda A, W, b: K.csr_forward(A, W, b, out=np.zeros((39, 19), np.float32)), ValueError,
     "out must have shape"),
])
def test_csr_forward_checks_its_arguments(call, exc, match):
    rng = np.random.default_rng(3)
    _, A = sparse_rows(rng, 40, 37, 0.1, np.float32)
    W = rng.standard_normal((37, 19)).astype(np.float32)
    with pytest.raises(exc, match=match):
        call(A, W, np.zeros(19, np.float32))


def test_csr_forward_refuses_corrupted_rows_before_reading_them():
    rng = np.random.default_rng(3)
    _, A = sparse_rows(rng, 40, 37, 0.1, np.float32)
    A.indices[A.indptr[7]] = 37
    W = np.ones((37, 4), np.float32)
    with pytest.raises(ValueError, match=r"X.indices must be in \[0, 37\)"):
        K.csr_forward(A, W, np.zeros(4, np.float32))
    K.csr_forward(A, W, np.zeros(4, np.float32), rows=(0, 7))  # rows before it are fine


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_prediction_on_a_very_sparse_X_runs_on_its_rows(dtype):
    """At most CSR_PRODUCTS_MAX_DENSITY, predict, predict_proba and evaluate run the
    first layer on X's CSR rows (as training does): the dense X's results up to
    the order of the sums, on any thread count; denser, the dense X's bits."""
    from fastnn import MLP, threads
    rng = np.random.default_rng(5)
    X = rng.standard_normal((3000, 400)) * (rng.random((3000, 400)) < 0.01)
    y = rng.integers(0, 3, 3000)
    model = MLP([400, 24, 3], seed=0, dtype=dtype)
    dense = model.predict_proba(X)
    with threads.using(1):
        one = model.predict_proba(sp.csr_matrix(X))
    with threads.using(2):
        two = model.predict_proba(sp.csr_array(X))
    np.testing.assert_array_equal(one, two)  # rows are independent
    np.testing.assert_allclose(one, dense, **TOL[np.dtype(dtype).type])
    assert np.array_equal(model.predict(sp.csr_matrix(X)), dense.argmax(axis=1)) or \
        np.abs(np.sort(dense, axis=1)[:, -1] - np.sort(dense, axis=1)[:, -2]).min() < 1e-5
    loss, acc = model.evaluate(sp.csr_matrix(X), y)
    assert loss == pytest.approx(model.evaluate(X, y)[0], rel=1e-5)
    X[:, :40] = rng.standard_normal((3000, 40))  # 11 % dense: densified, the dense bits
    np.testing.assert_array_equal(model.predict_proba(sp.csr_matrix(X)), model.predict_proba(X))


def test_prediction_on_a_wide_sparse_X_allocates_nothing_of_its_width():
    """A hashed-features X (2**20 columns, 50 entries a row): predict's memory
    was 2048 x n_features (8.5 GB here), its time that of the dense product."""
    import tracemalloc
    from fastnn import MLP
    rng = np.random.default_rng(0)
    n, d, k = 2048, 2**20, 50
    X = sp.csr_matrix((rng.random(n * k).astype(np.float32), rng.integers(0, d, n * k),
                       np.arange(n + 1) * k), shape=(n, d))
    model = MLP([d, 16, 2], seed=0)
    tracemalloc.start()
    try:
        proba = model.predict_proba(X)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20, peak  # X's own CSR copy (intp indices) and the outputs
    np.testing.assert_allclose(proba[:50], model.predict_proba(X[:50].toarray()),
                               rtol=1e-4, atol=1e-6)
