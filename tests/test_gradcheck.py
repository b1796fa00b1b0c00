"""Finite-difference checks of backpropagation through whole networks.

``fastnn.gradcheck.gradient_check`` compares the kernels' backprop gradient
with fourth-order central differences of the loss, on real MNIST images and
on small synthetic data, in float64.

Noise floor: each loss value carries a few ulps of rounding (~1e-15 for a
loss near 2.3), so a difference quotient has an absolute error of roughly
1e-16 / eps. With eps = 1e-3 (close to the optimum for a fourth-order
stencil, whose truncation error is O(eps**4)) that is ~1e-13, far below
1e-6 relative for gradient entries of the usual 1e-5..1e-2 size. An entry
whose true gradient is smaller than ~1e-7 could exceed 1e-6 by rounding
alone; exact zeros (weights of always-blank pixels) give exactly 0.
"""
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from fastnn import MLP, kernels
from fastnn import reference as R
from fastnn._layout import unflatten
from fastnn.gradcheck import _central_difference, format_table, gradient_check, loss_and_gradient

SMOOTH_TOL = 1e-6  # tanh, sigmoid, identity
RELU_TOL = 1e-4    # see test_gradient_check_mnist_relu


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    # The checks are hundreds of small GEMMs; on a shared 2-core machine a
    # second BLAS thread only spins. Results do not depend on it.
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def mnist64(mnist):
    """64 real MNIST training images, min-max normalised to [0, 1], float64."""
    (X, y), _ = mnist
    X64 = np.ascontiguousarray(X[:64], dtype=np.float64)
    y64 = np.asarray(y[:64], dtype=np.intp)
    assert X64.shape == (64, 784) and 0 <= X64.min() and X64.max() <= 1 and X64.max() > 0.9
    assert len(np.unique(y64)) == 10
    return X64, y64


def assert_rows(rows, layers, tol, n_checks):
    """Every (layer, param) row is present, checked something, and is below tol."""
    n_layers = len(layers) - 1
    assert [(r["layer"], r["param"]) for r in rows] == \
        [(l, p) for l in range(n_layers) for p in ("W", "b")]
    for r in rows:
        size = layers[r["layer"]] * layers[r["layer"] + 1] if r["param"] == "W" \
            else layers[r["layer"] + 1]
        assert r["checked"] == min(n_checks, size), r
        assert np.isfinite(r["max_abs_error"]) and np.isfinite(r["max_rel_error"]), r
        assert r["max_rel_error"] < tol, format_table(rows)


# ---------------------------------------------------------------------------
# Real MNIST, two hidden layers, float64
# ---------------------------------------------------------------------------

MNIST_LAYERS = [784, 32, 16, 10]


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
def test_gradient_check_mnist_smooth(mnist64, activation):
    X, y = mnist64
    model = MLP(MNIST_LAYERS, activation, dtype="float64", seed=0)
    rows = gradient_check(model, X, y, n_checks=10, eps=1e-3, seed=0)
    assert_rows(rows, MNIST_LAYERS, SMOOTH_TOL, 10)


def test_gradient_check_mnist_relu(mnist64):
    # ReLU is not differentiable at 0. When a parameter moves by up to
    # +-2*eps, any of the 64 pre-activations it feeds that lies within about
    # 2*eps*|input| of zero switches on or off inside the stencil; the
    # difference quotient then mixes two different slopes and the fourth-order
    # formula (which assumes a smooth loss) is off by O(1) relative error.
    # With eps = 1e-3 or 1e-4 that happens for a sizeable fraction of sampled
    # weights on MNIST. A small eps (1e-6) makes a crossing unlikely, but the
    # rounding noise of the quotient grows as 1/eps (to ~1e-10 absolute, i.e.
    # ~1e-6 relative on typical entries), so the bound is 1e-4, not 1e-6.
    X, y = mnist64
    model = MLP(MNIST_LAYERS, "relu", dtype="float64", seed=0)
    rows = gradient_check(model, X, y, n_checks=10, eps=1e-6, seed=0)
    assert_rows(rows, MNIST_LAYERS, RELU_TOL, 10)


def test_zero_gradient_gives_zero_difference(mnist64):
    """A weight from a pixel that is blank in every image has gradient exactly 0,
    and the difference quotient must be exactly 0 too (not rounding noise that
    the relative error would turn into 1.0)."""
    X, y = mnist64
    model = MLP(MNIST_LAYERS, "tanh", dtype="float64", seed=3)
    _, grad = loss_and_gradient(model, X, y)
    blank = np.flatnonzero(X.max(axis=0) == 0)
    assert blank.size > 50
    j_flat = blank[:5] * MNIST_LAYERS[1] + 3  # W_0[pixel, 3] in the flat layout
    for j in j_flat:
        assert grad[j] == 0.0
        assert _central_difference(model, X, y, j, 1e-4) == 0.0


def test_gradient_check_detects_a_wrong_gradient(mnist64, monkeypatch):
    """The check can fail: a backward pass that is 1% off in dW is caught."""
    X, y = mnist64
    real = kernels.dense_backward

    def off_by_one_percent(*args, **kwargs):
        dW, db, dZ_prev = real(*args, **kwargs)
        dW *= 1.01
        return dW, db, dZ_prev

    monkeypatch.setattr(kernels, "dense_backward", off_by_one_percent)
    model = MLP(MNIST_LAYERS, "tanh", dtype="float64", seed=0)
    rows = gradient_check(model, X, y, n_checks=5, eps=1e-3)
    w_rows = [r for r in rows if r["param"] == "W"]
    b_rows = [r for r in rows if r["param"] == "b"]
    assert all(r["max_rel_error"] > 5e-3 for r in w_rows), format_table(rows)
    assert all(r["max_rel_error"] < SMOOTH_TOL for r in b_rows), format_table(rows)


# ---------------------------------------------------------------------------
# Small synthetic nets
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("activation", ["identity", "tanh", "sigmoid", "relu"])
def test_gradient_check_synthetic(activation):
    rng = np.random.default_rng(7)
    layers = [5, 13, 7, 3]
    X = rng.normal(size=(16, 5))
    y = rng.integers(0, 3, 16)
    model = MLP(layers, activation, dtype="float64", seed=1)
    # n_checks above every layer's size: every parameter is checked
    n_checks = 1000
    eps, tol = (1e-6, RELU_TOL) if activation == "relu" else (1e-3, SMOOTH_TOL)
    rows = gradient_check(model, X, y, n_checks=n_checks, eps=eps)
    assert_rows(rows, layers, tol, n_checks)
    assert sum(r["checked"] for r in rows) == model.n_params


def test_gradient_check_single_layer_softmax_regression():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(7, 33))
    y = rng.integers(0, 13, 7)
    model = MLP([33, 13], "relu", dtype="float64", seed=2)  # no hidden layer: no kink
    rows = gradient_check(model, X, y, n_checks=50, eps=1e-3)
    assert_rows(rows, [33, 13], SMOOTH_TOL, 50)


# ---------------------------------------------------------------------------
# Side effects, agreement with the twins, table
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_gradient_check_leaves_model_unchanged(mnist64, dtype):
    X, y = mnist64
    model = MLP(MNIST_LAYERS, "sigmoid", dtype=dtype, seed=4)
    params = model.parameters.copy()
    proba = model.predict_proba(X[:8])
    gradient_check(model, X[:16], y[:16], n_checks=3)
    loss_and_gradient(model, X, y)
    np.testing.assert_array_equal(model.parameters, params)  # bit for bit
    assert model.optimizer_ is None
    np.testing.assert_array_equal(model.predict_proba(X[:8]), proba)
    assert model.epochs_trained == 0


@pytest.mark.parametrize("exc", [KeyboardInterrupt, ValueError])
def test_gradient_check_restores_weight_when_loss_raises(mnist64, monkeypatch, exc):
    # Ctrl-C (or any error) while a weight is perturbed must not leave it perturbed
    import fastnn.gradcheck as gc
    X, y = mnist64
    model = MLP([784, 8, 10], "tanh", dtype="float64", seed=2)
    params = model.parameters.copy()
    real_loss, calls = gc._loss, []

    def failing_loss(m, X_, y_):
        calls.append(1)
        if len(calls) == 2:  # the second stencil point: params[j] is old + eps
            raise exc("interrupted")
        return real_loss(m, X_, y_)

    monkeypatch.setattr(gc, "_loss", failing_loss)
    with pytest.raises(exc):
        _central_difference(model, X[:8], y[:8], 3, 1e-3)
    assert len(calls) == 2
    np.testing.assert_array_equal(model.parameters, params)  # bit for bit


def reference_loss_and_gradient(model, X, y):
    """Forward and backward with the plain-NumPy twins."""
    weights, biases = unflatten(model.parameters, list(model.layers))
    acts = [np.asarray(X, model.dtype)]
    last = len(weights) - 1
    for i, (W, b) in enumerate(zip(weights, biases)):
        acts.append(R.dense_forward(acts[-1], W, b, model.activation if i < last else "identity"))
    loss, delta = R.softmax_cross_entropy(acts[-1], np.asarray(y, np.intp))
    gW, gb = [None] * len(weights), [None] * len(weights)
    for i in range(last, -1, -1):
        gW[i], gb[i], delta = R.dense_backward(acts[i], weights[i], delta, model.activation,
                                               compute_dZ_prev=i > 0)
    return loss, np.concatenate([g.ravel() for g in gW] + list(gb))


@pytest.mark.parametrize("activation", ["identity", "relu", "tanh", "sigmoid"])
@pytest.mark.parametrize("dtype,rtol,atol", [("float64", 1e-10, 1e-13), ("float32", 1e-4, 1e-6)])
def test_loss_and_gradient_matches_reference(mnist64, activation, dtype, rtol, atol):
    X, y = mnist64
    model = MLP([784, 33, 13, 10], activation, dtype=dtype, seed=5)
    loss, grad = loss_and_gradient(model, X, y)
    rloss, rgrad = reference_loss_and_gradient(model, X, y)
    assert grad.dtype == model.dtype and grad.shape == model.parameters.shape
    assert np.isfinite(loss) and loss > 0
    np.testing.assert_allclose(loss, rloss, rtol=rtol)
    np.testing.assert_allclose(grad, rgrad, rtol=rtol, atol=atol)
    assert np.abs(grad).max() > 1e-3  # not trivially zero
    # the loss is the model's own evaluate() loss
    np.testing.assert_allclose(loss, model.evaluate(X, y)[0], rtol=rtol)


def test_format_table(mnist64):
    X, y = mnist64
    model = MLP([784, 13, 10], "tanh", dtype="float64", seed=0)
    rows = gradient_check(model, X[:8], y[:8], n_checks=2, eps=1e-3)
    table = format_table(rows).splitlines()
    assert len(table) == 1 + len(rows) == 5
    assert table[0].split() == ["layer", "param", "checked", "max", "abs", "error",
                                "max", "rel", "error"]
    assert table[1].split()[:3] == ["0", "W", "2"]
    assert table[4].split()[:3] == ["1", "b", "2"]
    assert float(table[4].split()[4]) == pytest.approx(rows[3]["max_rel_error"], rel=1e-3, abs=1e-300)


@pytest.mark.parametrize("kwargs,match", [(dict(n_checks=0), "n_checks"),
                                          (dict(n_checks=1.5), "n_checks"),
                                          (dict(eps=0.0), "eps"),
                                          (dict(eps=float("nan")), "eps"),
                                          (dict(floor=0.0), "floor"),
                                          (dict(floor=-1e-8), "floor")])
def test_gradient_check_rejects_bad_arguments(kwargs, match):
    model = MLP([3, 4, 2], "tanh", dtype="float64", seed=0)
    X = np.ones((2, 3))
    with pytest.raises((TypeError, ValueError), match=match):
        gradient_check(model, X, [0, 1], **kwargs)


def test_relative_error_has_an_absolute_floor(monkeypatch):
    """Every entry checked on a network whose gradients span many decades: a
    tiny gradient's rounding noise is judged against ``floor``, not against
    itself, so a correct backward passes; one 1 % off still fails."""
    import fastnn.gradcheck as G
    rng = np.random.default_rng(5)
    X = rng.normal(size=(6, 4)) * np.array([1.0, 1e-12, 1e-3, 1.0])  # a feature near 0
    y = rng.integers(0, 3, 6)
    model = MLP([4, 6, 3], "tanh", dtype="float64", seed=0)
    # eps 3e-3: rounding noise and truncation about 1e-11 at most (6e-8 measured)
    rows = gradient_check(model, X, y, n_checks=1000, eps=3e-3)
    assert max(r["max_rel_error"] for r in rows) < SMOOTH_TOL, format_table(rows)
    # the noise the floor absorbs: with a negligible floor the tiny entries fail
    noisy = gradient_check(model, X, y, n_checks=1000, eps=3e-3, floor=1e-300)
    assert max(r["max_rel_error"] for r in noisy) > SMOOTH_TOL, format_table(noisy)
    real = G.loss_and_gradient
    monkeypatch.setattr(G, "loss_and_gradient",
                        lambda *a: (lambda lg: (lg[0], lg[1] * 1.01))(real(*a)))
    wrong = gradient_check(model, X, y, n_checks=1000, eps=3e-3)
    assert min(r["max_rel_error"] for r in wrong) > 5e-3, format_table(wrong)
