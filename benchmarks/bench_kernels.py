"""Every kernel, compiled (fastnn.kernels) against its NumPy twin (fastnn.reference).

Shapes are MNIST's layers: 784->128, 128->10 and 784->512; dtypes float32
and float64; batches 1, 10, 128 and 1024. One pytest-benchmark group per
kernel/shape/dtype/batch holds the compiled and the NumPy benchmark side by
side (``extra_info["impl"]``); ``benchmarks/conftest.py`` prints their ratio.

* ``dense_forward``: ``relu(X @ W + b)`` into a preallocated ``out``.
* ``csr_forward``: ``relu(X @ W + b)`` for a CSR X of 2**16 hashed columns at
  0.5 % (a sparse X's first layer), against SciPy's sparse product.
* ``dense_backward``: the full backward of a hidden layer (``dW``, ``db`` and
  ``dZ_prev`` with the ReLU derivative) into preallocated outputs.
* ``softmax_cross_entropy`` and ``softmax``: on ``(batch, 10)`` logits.
* ``sgd_update``: in place on the weight shapes (momentum 0.9, L2 1e-3), plain
  and with Nesterov momentum; the batch size plays no part. Timed with
  ``benchmark.pedantic`` and a setup that hands each round fresh copies of the
  weights and velocity.
* ``adam_update``: in place on the weight shapes (AdamW: learning rate 1e-3,
  weight decay 1e-2, L2 1e-3, step 10), fresh copies of the weights and
  moments per round likewise.

Each benchmark then checks its result against the other implementation on
the same inputs, so a fast wrong kernel fails here too.
"""
import numpy as np
import pytest

from fastnn import kernels, reference

IMPLS = {"fastnn": kernels, "numpy": reference}
SHAPES = [(784, 128), (128, 10), (784, 512)]
DTYPES = ["float32", "float64"]
BATCHES = [1, 10, 128, 1024]
N_CLASSES = 10
LR, MOMENTUM, L2 = 0.01, 0.9, 1e-3


def _cases(shapes, batches):
    """(shape, dtype, batch, impl) with the two impls of a group next to each other."""
    out = []
    for shape in shapes:
        for dtype in DTYPES:
            for batch in batches:
                for impl in IMPLS:
                    sid = "" if shape is None else f"{shape[0]}x{shape[1]}-"
                    bid = "" if batch is None else f"-b{batch}"
                    out.append(pytest.param(shape, dtype, batch, impl,
                                            id=f"{impl}-{sid}{dtype}{bid}"))
    return out


def _tol(dtype):
    return 2e-4 if np.dtype(dtype) == np.float32 else 1e-10


def _close(actual, expected, dtype, what):
    expected = np.asarray(expected)
    tol = _tol(dtype)
    scale = float(np.max(np.abs(expected))) if expected.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * max(scale, 1.0),
                               err_msg=f"{what}: compiled and NumPy disagree")


def _other(impl):
    return IMPLS["numpy" if impl == "fastnn" else "fastnn"]


def _label(benchmark, group, impl, **info):
    benchmark.group = group
    benchmark.extra_info.update(impl=impl, **info)


# ---------------------------------------------------------------------------
# dense_forward
# ---------------------------------------------------------------------------

def forward_inputs(n_in, n_out, dtype, batch):
    rng = np.random.default_rng([n_in, n_out, batch, 1])
    X = rng.random((batch, n_in)).astype(dtype)
    W = (rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)).astype(dtype)
    b = (rng.standard_normal(n_out) * 0.1).astype(dtype)
    return X, W, b


@pytest.mark.parametrize("shape, dtype, batch, impl", _cases(SHAPES, BATCHES))
def test_dense_forward(benchmark, shape, dtype, batch, impl):
    n_in, n_out = shape
    X, W, b = forward_inputs(n_in, n_out, dtype, batch)
    out = np.empty((batch, n_out), dtype=dtype)
    _label(benchmark, f"dense_forward relu {n_in}->{n_out} {dtype} batch {batch}", impl,
           kernel="dense_forward", shape=f"{n_in}x{n_out}", dtype=dtype, batch=batch)
    result = benchmark(IMPLS[impl].dense_forward, X, W, b, "relu", out=out)
    assert result is out
    expected = _other(impl).dense_forward(X, W, b, "relu")
    _close(result, expected, dtype, "dense_forward")


# ---------------------------------------------------------------------------
# csr_forward: a sparse X's first layer (hashed text features: 2**16 columns,
# about 330 entries a row, 0.5 %), against SciPy's CSR x dense product
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("shape, dtype, batch, impl", _cases([(1 << 16, 128)], [1024]))
def test_csr_forward(benchmark, shape, dtype, batch, impl):
    import scipy.sparse as sp
    n_in, n_out = shape
    rng = np.random.default_rng([n_in, n_out, batch, 5])
    X = sp.random(batch, n_in, density=0.005, format="csr", dtype=dtype, random_state=rng)
    X.indices, X.indptr = X.indices.astype(np.intp), X.indptr.astype(np.intp)
    W = (rng.standard_normal((n_in, n_out)) * 0.01).astype(dtype)
    b = (rng.standard_normal(n_out) * 0.1).astype(dtype)
    out = np.empty((batch, n_out), dtype=dtype)
    _label(benchmark, f"csr_forward relu {n_in}->{n_out} 0.5 % {dtype} batch {batch}", impl,
           kernel="csr_forward", shape=f"{n_in}x{n_out}", dtype=dtype, batch=batch)
    result = benchmark(IMPLS[impl].csr_forward, X, W, b, "relu", out=out)
    assert result is out
    _close(result, _other(impl).csr_forward(X, W, b, "relu"), dtype, "csr_forward")


# ---------------------------------------------------------------------------
# dense_backward
# ---------------------------------------------------------------------------

def backward_inputs(n_in, n_out, dtype, batch):
    rng = np.random.default_rng([n_in, n_out, batch, 2])
    A_prev = np.maximum(rng.standard_normal((batch, n_in)), 0).astype(dtype)  # ReLU outputs
    W = (rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)).astype(dtype)
    dZ = (rng.standard_normal((batch, n_out)) / batch).astype(dtype)
    return A_prev, W, dZ


@pytest.mark.parametrize("shape, dtype, batch, impl", _cases(SHAPES, BATCHES))
def test_dense_backward(benchmark, shape, dtype, batch, impl):
    n_in, n_out = shape
    A_prev, W, dZ = backward_inputs(n_in, n_out, dtype, batch)
    dW = np.empty((n_in, n_out), dtype=dtype)
    db = np.empty(n_out, dtype=dtype)
    dZ_prev = np.empty((batch, n_in), dtype=dtype)
    _label(benchmark, f"dense_backward relu {n_in}->{n_out} {dtype} batch {batch}", impl,
           kernel="dense_backward", shape=f"{n_in}x{n_out}", dtype=dtype, batch=batch)
    rdW, rdb, rdZ = benchmark(IMPLS[impl].dense_backward, A_prev, W, dZ, "relu",
                              dW=dW, db=db, dZ_prev=dZ_prev)
    assert rdW is dW and rdb is db and rdZ is dZ_prev
    edW, edb, edZ = _other(impl).dense_backward(A_prev, W, dZ, "relu")
    _close(rdW, edW, dtype, "dense_backward dW")
    _close(rdb, edb, dtype, "dense_backward db")
    _close(rdZ, edZ, dtype, "dense_backward dZ_prev")


# ---------------------------------------------------------------------------
# softmax_cross_entropy and softmax on (batch, 10) logits
# ---------------------------------------------------------------------------

def logits_inputs(dtype, batch):
    rng = np.random.default_rng([batch, 3])
    logits = (rng.standard_normal((batch, N_CLASSES)) * 3).astype(dtype)
    labels = rng.integers(0, N_CLASSES, size=batch).astype(np.intp)
    return logits, labels


@pytest.mark.parametrize("shape, dtype, batch, impl", _cases([None], BATCHES))
def test_softmax_cross_entropy(benchmark, shape, dtype, batch, impl):
    logits, labels = logits_inputs(dtype, batch)
    grad = np.empty_like(logits)
    _label(benchmark, f"softmax_cross_entropy {N_CLASSES} classes {dtype} batch {batch}", impl,
           kernel="softmax_cross_entropy", dtype=dtype, batch=batch)
    loss, rgrad = benchmark(IMPLS[impl].softmax_cross_entropy, logits, labels, grad=grad)
    assert rgrad is grad
    eloss, egrad = _other(impl).softmax_cross_entropy(logits, labels)
    assert np.isfinite(loss)
    assert loss == pytest.approx(eloss, rel=_tol(dtype) * 5, abs=_tol(dtype))
    _close(rgrad, egrad, dtype, "softmax_cross_entropy grad")


@pytest.mark.parametrize("shape, dtype, batch, impl", _cases([None], BATCHES))
def test_softmax(benchmark, shape, dtype, batch, impl):
    logits, _ = logits_inputs(dtype, batch)
    out = np.empty_like(logits)
    _label(benchmark, f"softmax {N_CLASSES} classes {dtype} batch {batch}", impl,
           kernel="softmax", dtype=dtype, batch=batch)
    result = benchmark(IMPLS[impl].softmax, logits, out=out)
    assert result is out
    _close(result, _other(impl).softmax(logits), dtype, "softmax")
    np.testing.assert_allclose(result.sum(axis=1), 1.0, rtol=_tol(dtype) * 5)


# ---------------------------------------------------------------------------
# sgd_update, in place: pedantic with a setup that restores the state
# ---------------------------------------------------------------------------

def sgd_inputs(n_in, n_out, dtype):
    rng = np.random.default_rng([n_in, n_out, 4])
    W = (rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)).astype(dtype)
    g = (rng.standard_normal((n_in, n_out)) * 1e-2).astype(dtype)
    v = (rng.standard_normal((n_in, n_out)) * 1e-3).astype(dtype)
    return W, g, v


def sgd_rounds(size):
    """Enough rounds for a stable min without minutes on the big shapes."""
    return int(np.clip(3e7 // max(size, 1), 50, 2000))


@pytest.mark.parametrize("rule", ["momentum", "nesterov"])
@pytest.mark.parametrize("shape, dtype, batch, impl", _cases(SHAPES, [None]))
def test_sgd_update(benchmark, shape, dtype, batch, impl, rule):
    n_in, n_out = shape
    W0, g, v0 = sgd_inputs(n_in, n_out, dtype)
    kw = {"momentum": MOMENTUM, "l2": L2, **({"nesterov": True} if rule == "nesterov" else {})}
    name = "sgd_update" if rule == "momentum" else "sgd_update nesterov"
    last = {}

    def setup():
        W, v = W0.copy(), v0.copy()
        last["W"], last["v"] = W, v
        return (W, g, v, LR), dict(kw)

    _label(benchmark, f"sgd_update {rule} l2 {n_in}x{n_out} {dtype}", impl,
           kernel=name.replace(" ", "_"), shape=f"{n_in}x{n_out}", dtype=dtype)
    result = benchmark.pedantic(IMPLS[impl].sgd_update, setup=setup,
                                rounds=sgd_rounds(W0.size), warmup_rounds=2)
    assert result is None
    W, v = W0.copy(), v0.copy()
    _other(impl).sgd_update(W, g, v, LR, **kw)
    _close(last["W"], W, dtype, f"{name} W")
    _close(last["v"], v, dtype, f"{name} velocity")
    assert not np.array_equal(last["W"], W0), f"{name} did not update W in place"


# ---------------------------------------------------------------------------
# adam_update, in place: pedantic with a setup that restores the state
# ---------------------------------------------------------------------------

ADAM = dict(beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-2, l2=1e-3)
ADAM_LR, ADAM_T = 1e-3, 10


def adam_inputs(n_in, n_out, dtype):
    rng = np.random.default_rng([n_in, n_out, 5])
    W = (rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)).astype(dtype)
    g = (rng.standard_normal((n_in, n_out)) * 1e-2).astype(dtype)
    m = (rng.standard_normal((n_in, n_out)) * 1e-3).astype(dtype)
    v = (rng.random((n_in, n_out)) * 1e-4).astype(dtype)
    return W, g, m, v


@pytest.mark.parametrize("shape, dtype, batch, impl", _cases(SHAPES, [None]))
def test_adam_update(benchmark, shape, dtype, batch, impl):
    n_in, n_out = shape
    W0, g, m0, v0 = adam_inputs(n_in, n_out, dtype)
    last = {}

    def setup():
        W, m, v = W0.copy(), m0.copy(), v0.copy()
        last.update(W=W, m=m, v=v)
        return (W, g, m, v, ADAM_LR, ADAM_T), dict(ADAM)

    _label(benchmark, f"adam_update weight_decay l2 {n_in}x{n_out} {dtype}", impl,
           kernel="adam_update", shape=f"{n_in}x{n_out}", dtype=dtype)
    result = benchmark.pedantic(IMPLS[impl].adam_update, setup=setup,
                                rounds=sgd_rounds(W0.size), warmup_rounds=2)
    assert result is None
    W, m, v = W0.copy(), m0.copy(), v0.copy()
    _other(impl).adam_update(W, g, m, v, ADAM_LR, ADAM_T, **ADAM)
    _close(last["W"], W, dtype, "adam_update W")
    _close(last["m"], m, dtype, "adam_update m")
    _close(last["v"], v, dtype, "adam_update v")
    assert not np.array_equal(last["W"], W0), "adam_update did not update W in place"
