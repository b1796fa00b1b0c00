"""The public MLP API: construction, training on real MNIST, inference, the
attributes, initialisation, reproducibility and input handling."""
import json

import numpy as np
import pytest

from fastnn import MLP

FIT = dict(epochs=2, batch_size=32, learning_rate=0.05, momentum=0.9, verbose=False)


pytestmark = pytest.mark.usefixtures("one_blas_thread")


def _subset(mnist_small, n_train=2000, n_test=1000):
    (X, y), (Xt, yt) = mnist_small
    return (X[:n_train], y[:n_train]), (Xt[:n_test], yt[:n_test])


# -- learning on real MNIST --------------------------------------------------

@pytest.mark.parametrize("layers", [[784, 10], [784, 64, 10], [784, 64, 32, 10],
                                   [784, 64, 32, 32, 10]],
                         ids=["softmax-regression", "1-hidden", "2-hidden", "3-hidden"])
def test_learns_mnist_subset(mnist_small, layers):
    (X, y), (Xt, yt) = mnist_small
    model = MLP(layers, seed=0)
    assert model.score(Xt, yt) < 0.3  # untrained: about chance
    history = model.fit(X, y, epochs=3, batch_size=32, learning_rate=0.05, momentum=0.9,
                        verbose=False)
    acc = model.score(Xt, yt)
    assert acc > 0.85, (layers, acc)
    assert len(history.history["loss"]) == 3
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert model.epochs_trained == 3


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "identity"])
def test_other_activations_learn(mnist_small, activation):
    (X, y), (Xt, yt) = _subset(mnist_small, 3000)
    lr = 0.5 if activation == "sigmoid" else 0.05
    model = MLP([784, 32, 10], activation, seed=1)
    model.fit(X, y, epochs=2, batch_size=32, learning_rate=lr, momentum=0.9, verbose=False)
    assert model.score(Xt, yt) > 0.8


def test_float64_model_trains(mnist_small):
    (X, y), (Xt, yt) = _subset(mnist_small)
    model = MLP([784, 32, 10], dtype="float64", seed=0)
    assert model.dtype == np.float64
    model.fit(X, y, **FIT)
    assert all(W.dtype == np.float64 for W in model.coefs_)
    proba = model.predict_proba(Xt)
    assert proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert model.score(Xt, yt) > 0.8
    # float32 and float64 learn the same thing up to rounding
    m32 = MLP([784, 32, 10], seed=0)
    m32.fit(X, y, **FIT)
    assert abs(m32.score(Xt, yt) - model.score(Xt, yt)) < 0.03


def test_dtype_spellings():
    assert MLP([4, 2], dtype=np.float64).dtype == np.float64
    assert MLP([4, 2], dtype=np.dtype("float32")).dtype == np.float32
    assert MLP([4, 2], dtype=float).dtype == np.float64


# -- inference outputs ---------------------------------------------------------

@pytest.fixture(scope="module")
def trained(mnist_small):
    (X, y), (Xt, yt) = _subset(mnist_small)
    model = MLP([784, 32, 10], seed=3)
    model.fit(X, y, **FIT)
    return model, Xt, yt


def test_predict_shapes_and_types(trained):
    model, Xt, yt = trained
    pred = model.predict(Xt)
    assert pred.shape == (Xt.shape[0],)
    assert pred.dtype.kind == "i"
    assert pred.min() >= 0 and pred.max() < 10
    proba = model.predict_proba(Xt)
    assert proba.shape == (Xt.shape[0], 10)
    assert proba.dtype == np.float32
    assert np.isfinite(proba).all() and (proba >= 0).all() and (proba <= 1).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(pred, proba.argmax(axis=1))
    # one row works too, and gives the same answer as inside a batch (up to the
    # rounding of BLAS, whose kernels differ by matrix shape)
    np.testing.assert_allclose(model.predict_proba(Xt[5:6]), proba[5:6], rtol=1e-5, atol=1e-7)
    assert model.predict(Xt[5:6]).tolist() == [pred[5]]


def test_more_rows_than_one_block(trained):
    model, Xt, _ = trained
    X = np.tile(Xt, (3, 1))  # 3000 rows > the 2048-row forward block
    proba = model.predict_proba(X)
    single = model.predict_proba(Xt)
    np.testing.assert_allclose(proba[2000:], single, rtol=1e-5, atol=1e-6)
    # the same labels, except where the two top classes are within rounding of each
    # other (blocks of other sizes may reach BLAS kernels that sum in another order)
    top2 = np.sort(single, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-5
    assert clear.mean() > 0.99
    np.testing.assert_array_equal(model.predict(X)[2000:][clear], model.predict(Xt)[clear])


def test_score_and_evaluate(trained):
    model, Xt, yt = trained
    result = model.evaluate(Xt, yt)
    assert isinstance(result, tuple) and len(result) == 2
    loss, acc = result
    assert isinstance(loss, float) and isinstance(acc, float)
    assert model.score(Xt, yt) == acc
    assert acc == np.mean(model.predict(Xt) == yt)
    proba = model.predict_proba(Xt).astype(np.float64)
    expected = -np.mean(np.log(proba[np.arange(len(yt)), yt]))
    assert loss == pytest.approx(expected, rel=1e-4)
    # a model that has not learnt anything is worse
    assert MLP([784, 32, 10], seed=3).evaluate(Xt, yt)[0] > loss + 0.5


def test_repr_is_informative(mnist_small):
    model = MLP([784, 32, 10], "tanh", seed=7, init="glorot", dtype="float64")
    text = repr(model)
    for part in ("MLP(", "[784, 32, 10]", "'tanh'", "'float64'", "seed=7", "'glorot'",
                 f"{model.n_params} parameters", "0 epochs"):
        assert part in text, (part, text)
    (X, y), _ = _subset(mnist_small, 500)
    model.fit(X, y, epochs=2, verbose=False)
    assert "2 epochs trained" in repr(model)


def test_attributes_and_shapes():
    layers = [784, 32, 16, 10]
    model = MLP(layers, seed=0)
    assert [W.shape for W in model.coefs_] == [(784, 32), (32, 16), (16, 10)]
    assert [b.shape for b in model.intercepts_] == [(32,), (16,), (10,)]
    assert model.n_params == 784 * 32 + 32 * 16 + 16 * 10 + 32 + 16 + 10
    assert model.n_features_in_ == 784 and model.n_classes_ == 10
    assert model.layers == tuple(layers)
    assert all(W.dtype == np.float32 for W in model.coefs_ + model.intercepts_)
    assert all((b == 0).all() for b in model.intercepts_)
    assert all(W.std() > 0 for W in model.coefs_)
    assert model.history_ is None and model.epochs_trained == 0


def test_coefs_are_live_views():
    X = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    model = MLP([4, 3], seed=0)
    before = model.predict_proba(X)
    model.coefs_[0][...] = 0
    model.intercepts_[0][...] = [0.0, 0.0, 5.0]
    after = model.predict_proba(X)
    assert not np.array_equal(before, after)
    assert (model.predict(X) == 2).all()
    np.testing.assert_allclose(after[0], np.exp([0, 0, 5]) / np.exp([0, 0, 5]).sum(), rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_coefs_and_intercepts_can_be_assigned(dtype):
    """As scikit-learn's MLP: a list of arrays of the layers' shapes is copied in
    (any real dtype, lists too); the views stay the model's."""
    model = MLP([4, 3, 2], seed=0, dtype=dtype)
    other = MLP([4, 3, 2], seed=1, dtype=dtype)
    model.coefs_ = [W.astype(np.float64) for W in other.coefs_]
    model.intercepts_ = [b.tolist() for b in (np.ones(3), np.arange(2))]
    np.testing.assert_array_equal(model.coefs_[1], other.coefs_[1])
    np.testing.assert_array_equal(model.intercepts_[1], [0, 1])
    assert model.coefs_[0].dtype == np.dtype(dtype)
    assert np.shares_memory(model.coefs_[0], model.parameters)


def test_item_assignment_copies_into_the_layer():
    """scikit-learn's idiom ``clf.coefs_[0] = W``: the layer takes W (a plain list
    of views would take W and drop it)."""
    X = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    model = MLP([4, 3, 2], seed=0)
    model.coefs_[0] = np.zeros((4, 3))
    model.intercepts_[-1] = [0.0, 5.0]
    assert not model.coefs_[0].any() and (model.predict(X) == 1).all()
    model.coefs_[0:2] = [np.ones((4, 3)), np.ones((3, 2))]
    assert (model.coefs_[1] == 1).all()
    with pytest.raises(ValueError, match=r"coefs_\[1\] must have shape \(3, 2\)"):
        model.coefs_[1] = np.zeros((2, 3))
    with pytest.raises(IndexError):
        model.coefs_[2] = np.zeros((3, 2))
    with pytest.raises(TypeError, match="one array per layer"):
        del model.intercepts_[0]


@pytest.mark.parametrize("name, values, exc, match", [
    ("coefs_", [np.zeros((4, 3))], ValueError, r"coefs_ must be a list of 2 arrays .* got 1"),
    ("coefs_", np.zeros((4, 3)), TypeError, "coefs_ must be a list of 2 arrays"),
    ("coefs_", [np.zeros((4, 3)), np.zeros((2, 3))], ValueError,
     r"coefs_\[1\] must have shape \(3, 2\), got \(2, 3\)"),
    ("coefs_", [np.zeros((4, 3)), [[0, 1]] * 2 + [[np.nan, 0]]], ValueError,
     r"coefs_\[1\] must be finite"),
    ("coefs_", [np.zeros((4, 3)), np.full((3, 2), 1e300)], ValueError,
     r"coefs_\[1\] must be finite in float32"),
    ("intercepts_", [np.zeros(3), ["a", "b"]], TypeError, r"intercepts_\[1\] must hold real"),
    ("intercepts_", 5, TypeError, "intercepts_ must be a list"),
])
def test_bad_assignments_name_the_attribute_and_change_nothing(name, values, exc, match):
    model = MLP([4, 3, 2], seed=0)
    before = model.parameters.copy()
    with pytest.raises(exc, match=match):
        setattr(model, name, values)
    np.testing.assert_array_equal(model.parameters, before)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_init_uniform_bounds(dtype):
    model = MLP([784, 300, 10], seed=0, init="uniform", dtype=dtype)
    for W in model.coefs_:
        bound = 1.0 / np.sqrt(W.shape[0])
        assert np.abs(W).max() <= bound
        assert np.abs(W).max() > 0.98 * bound  # fills the interval
        assert abs(W.mean()) < 0.05 * bound
        # U(-a, a) has std a/sqrt(3)
        assert W.std() == pytest.approx(bound / np.sqrt(3), rel=0.05)


def test_init_he():
    model = MLP([784, 300, 100, 10], seed=0, init="he")
    for W in model.coefs_:
        expected = np.sqrt(2.0 / W.shape[0])
        assert W.std() == pytest.approx(expected, rel=0.05)
        assert abs(W.mean()) < 0.05 * expected
        assert np.abs(W).max() > 2.5 * expected  # Gaussian tails, not uniform


def test_init_glorot():
    model = MLP([784, 300, 100, 10], "tanh", seed=0, init="glorot")
    for W in model.coefs_:
        bound = np.sqrt(6.0 / (W.shape[0] + W.shape[1]))
        assert np.abs(W).max() <= bound * (1 + 1e-6)
        assert np.abs(W).max() > 0.98 * bound
        assert W.std() == pytest.approx(bound / np.sqrt(3), rel=0.05)


def test_init_auto():
    relu = MLP([50, 20, 3], "relu", seed=4)
    he = MLP([50, 20, 3], "relu", seed=4, init="he")
    for a, b in zip(relu.coefs_, he.coefs_):
        np.testing.assert_array_equal(a, b)
    tanh = MLP([50, 20, 3], "tanh", seed=4)
    glorot = MLP([50, 20, 3], "tanh", seed=4, init="glorot")
    for a, b in zip(tanh.coefs_, glorot.coefs_):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(relu.coefs_[0], tanh.coefs_[0])


# -- reproducibility ---------------------------------------------------------

def _history_wo_time(history):
    return {k: v for k, v in history.history.items() if k != "time"}


def _run(X, y, seed=0, **kwargs):
    args = dict(FIT, validation_split=0.1, epochs=2)
    args.update(kwargs)
    model = MLP([784, 32, 10], seed=seed)
    history = model.fit(X, y, **args)
    return model, history


def test_same_seed_is_bitwise_reproducible(mnist_small):
    (X, y), (Xt, _) = _subset(mnist_small, 1500)
    m1, h1 = _run(X, y, seed=11)
    m2, h2 = _run(X, y, seed=11)
    np.testing.assert_array_equal(m1.parameters, m2.parameters)
    assert _history_wo_time(h1) == _history_wo_time(h2)
    assert h1.best_epoch == h2.best_epoch
    np.testing.assert_array_equal(m1.predict_proba(Xt), m2.predict_proba(Xt))
    m3, h3 = _run(X, y, seed=12)
    assert not np.array_equal(m1.parameters, m3.parameters)
    assert _history_wo_time(h1) != _history_wo_time(h3)


def test_seed_none_is_recorded_and_repeatable(mnist_small):
    (X, y), _ = _subset(mnist_small, 500)
    a = MLP([784, 16, 10])
    b = MLP([784, 16, 10])
    assert isinstance(a.seed, int) and a.seed >= 0
    assert a.seed != b.seed
    c = MLP([784, 16, 10], seed=a.seed)
    np.testing.assert_array_equal(a.parameters, c.parameters)
    a.fit(X, y, epochs=1, verbose=False)
    c.fit(X, y, epochs=1, verbose=False)
    np.testing.assert_array_equal(a.parameters, c.parameters)


def _variants(X, y):
    """Equivalent spellings of the same float32 data (exactly representable)."""
    Xf = np.asfortranarray(X)
    big = np.zeros((X.shape[0] * 2, X.shape[1] * 2), np.float32)
    big[::2, ::2] = X
    strided = big[::2, ::2]
    ro = X.copy()
    ro.flags.writeable = False
    yro = y.copy()
    yro.flags.writeable = False
    return {
        "fortran": (Xf, y),
        "strided": (strided, y[::1]),
        "readonly": (ro, yro),
        "lists": (X.tolist(), y.tolist()),
        "float64": (X.astype(np.float64), y.astype(np.int64)),
        "int8-labels": (X, y.astype(np.int8)),
        "float-labels": (X, y.astype(np.float64)),
        "strided-labels": (X, np.repeat(y, 2)[::2]),
    }


@pytest.mark.parametrize("variant", ["fortran", "strided", "readonly", "lists", "float64",
                                     "int8-labels", "float-labels", "strided-labels"])
def test_input_layouts_give_bitwise_identical_results(mnist_small, variant):
    (X, y), (Xt, yt) = _subset(mnist_small, 600, 200)
    X = np.ascontiguousarray(X, dtype=np.float32)
    ref, href = _run(X, y, seed=5)
    Xv, yv = _variants(X, y)[variant]
    assert not (isinstance(Xv, np.ndarray) and Xv.flags.c_contiguous and Xv.flags.writeable
                and Xv.dtype == np.float32 and yv is y)
    model, history = _run(Xv, yv, seed=5)
    np.testing.assert_array_equal(model.parameters, ref.parameters)
    assert _history_wo_time(history) == _history_wo_time(href)
    Xtv, ytv = _variants(np.ascontiguousarray(Xt), yt)[variant]
    np.testing.assert_array_equal(model.predict_proba(Xtv), ref.predict_proba(Xt))
    np.testing.assert_array_equal(model.predict(Xtv), ref.predict(Xt))
    assert model.evaluate(Xtv, ytv) == ref.evaluate(Xt, yt)


def test_uint8_images_equal_float32_images(mnist_path):
    from fastnn.datasets import load_mnist
    (Xr, y), (Xtr, yt) = load_mnist(mnist_path, normalize="none")
    Xu8 = Xr[:500].astype(np.uint8)
    assert np.array_equal(Xu8, Xr[:500])
    X32 = Xu8.astype(np.float32)
    args = dict(epochs=1, batch_size=50, learning_rate=1e-4, verbose=False)
    a, b = MLP([784, 16, 10], seed=2), MLP([784, 16, 10], seed=2)
    ha, hb = a.fit(Xu8, y[:500], **args), b.fit(X32, y[:500], **args)
    np.testing.assert_array_equal(a.parameters, b.parameters)
    assert _history_wo_time(ha) == _history_wo_time(hb)
    np.testing.assert_array_equal(a.predict_proba(Xtr[:100].astype(np.uint8)),
                                  a.predict_proba(Xtr[:100]))


def test_bool_and_int_inputs():
    rng = np.random.default_rng(0)
    Xb = rng.random((40, 6)) > 0.5
    y = rng.integers(0, 3, 40)
    a, b = MLP([6, 5, 3], seed=0), MLP([6, 5, 3], seed=0)
    a.fit(Xb, y, epochs=2, batch_size=8, verbose=False)
    b.fit(Xb.astype(np.float32), y.astype(np.uint16), epochs=2, batch_size=8, verbose=False)
    np.testing.assert_array_equal(a.parameters, b.parameters)
    np.testing.assert_array_equal(a.predict_proba(Xb.astype(np.int64)), b.predict_proba(Xb))


def test_does_not_modify_inputs(mnist_small):
    (X, y), _ = _subset(mnist_small, 300)
    X2, y2 = X.copy(), y.copy()
    model = MLP([784, 8, 10], seed=0)
    model.fit(X, y, epochs=1, validation_split=0.2, verbose=False)
    model.predict_proba(X)
    model.evaluate(X, y)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)


# -- bad arguments to MLP() --------------------------------------------------

@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(layers=[784]), ValueError, "layers"),
    (dict(layers=[]), ValueError, "layers"),
    (dict(layers=784), TypeError, "layers"),
    (dict(layers="784,10"), TypeError, "layers"),
    (dict(layers=None), TypeError, "layers"),
    (dict(layers=[784, 0, 10]), ValueError, r"layers\[1\]"),
    (dict(layers=[784, -5, 10]), ValueError, r"layers\[1\]"),
    (dict(layers=[784.0, 10]), TypeError, r"layers\[0\]"),
    (dict(layers=[784, "10"]), TypeError, r"layers\[1\]"),
    (dict(layers=[784, True]), TypeError, r"layers\[1\]"),
    (dict(layers=[784, 1]), ValueError, r"layers\[-1\]"),
    (dict(layers={784, 10}), TypeError, "layers must be a sequence"),  # unordered
    (dict(layers={784: 1, 10: 1}), TypeError, "layers must be a sequence"),
    (dict(layers=np.array([[784, 10]])), TypeError, "layers must be a sequence"),
    (dict(layers=[784, 8, 10], dropout={0.5}), TypeError, "dropout must be"),
    (dict(layers=[784, 10], activation="softmax"), ValueError, "activation"),
    (dict(layers=[784, 10], activation=None), ValueError, "activation"),
    (dict(layers=[784, 10], activation=np.tanh), ValueError, "activation"),
    (dict(layers=[784, 10], dtype="float16"), ValueError, "dtype"),
    (dict(layers=[784, 10], dtype="int32"), ValueError, "dtype"),
    (dict(layers=[784, 10], dtype=np.complex128), ValueError, "dtype"),
    (dict(layers=[784, 10], dtype=None), ValueError, "dtype"),
    (dict(layers=[784, 10], seed=-1), ValueError, "seed"),
    (dict(layers=[784, 10], seed=2**64), ValueError, "seed"),  # the kernels' key is uint64
    (dict(layers=[784, 10], seed=1.5), TypeError, "seed"),
    (dict(layers=[784, 10], seed="0"), TypeError, "seed"),
    (dict(layers=[784, 10], init="xavier"), ValueError, "init"),
    (dict(layers=[784, 10], init=None), ValueError, "init"),
    (dict(layers=[784, 10], hidden=3), TypeError, "hidden"),
    (dict(layers=[784, 10], learning_rate=0.1), TypeError, "learning_rate"),
])
def test_constructor_rejects_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        MLP(**kwargs)


def test_constructor_accepts_numpy_ints():
    model = MLP(np.array([5, 4, 3]), seed=np.uint32(3), dropout=np.array(0.25))
    assert model.layers == (5, 4, 3) and model.seed == 3 and model.dropout == (0.25,)
    assert MLP(range(5, 2, -1)).layers == (5, 4, 3)
    assert all(type(s) is int for s in model.layers)
    json.dumps(list(model.layers))


# -- bad data at predict / predict_proba / evaluate / score --------------------

@pytest.fixture(scope="module")
def small_model():
    return MLP([4, 5, 3], seed=0)


GOOD_X = np.ones((6, 4), np.float32)
GOOD_Y = np.array([0, 1, 2, 0, 1, 2])

BAD_X = [
    (np.ones(4), ValueError, "X must be 2-D"),
    (np.ones((2, 3, 4)), ValueError, "X must be 2-D"),
    (np.float32(1.0), ValueError, "X must be 2-D"),
    (np.ones((6, 5)), ValueError, "X must have 4 features"),
    (np.ones((6, 0)), ValueError, "X must have 4 features"),
    (np.ones((0, 4)), ValueError, "X must have at least one sample"),
    ([], ValueError, "X"),
    (np.array([[1, 2, 3, np.nan]] * 6), ValueError, "X must be finite"),
    (np.array([[1, 2, 3, np.inf]] * 6), ValueError, "X must be finite"),
    (np.array([[1, 2, 3, -np.inf]] * 6, dtype=np.float16), ValueError, "X must be finite"),
    (np.full((6, 4), 1e300), ValueError, "X must be finite in float32"),
    (np.ones((6, 4), dtype=object), TypeError, "X must hold real numbers"),
    (np.ones((6, 4), dtype=complex), TypeError, "X must hold real numbers"),
    (np.full((6, 4), "1"), TypeError, "X must hold real numbers"),
    ([[1, 2, 3, 4], [1, 2, 3]], ValueError, "X must be a rectangular array"),
    ([[1, 2, None, 4]], TypeError, "X must hold real numbers"),
    (None, TypeError, "X must hold real numbers"),
    ("abcd", TypeError, "X must hold real numbers"),
    ({"a": 1}, TypeError, "X must hold real numbers"),
]


@pytest.mark.parametrize("method", ["predict", "predict_proba", "evaluate", "score"])
@pytest.mark.parametrize("X, exc, match", BAD_X,
                         ids=[f"X{i}" for i in range(len(BAD_X))])
def test_inference_rejects_bad_X(small_model, method, X, exc, match):
    args = (X, GOOD_Y) if method in ("evaluate", "score") else (X,)
    with pytest.raises(exc, match=match):
        getattr(small_model, method)(*args)


BAD_Y = [
    (GOOD_Y[:5], ValueError, "y must have 6 labels"),
    (np.append(GOOD_Y, 0), ValueError, "y must have 6 labels"),
    (GOOD_Y.reshape(2, 3), ValueError, "y must be 1-D"),
    (np.array([0, 1, 2, 0, 1, 3]), ValueError, r"y must be in \[0, 3\)"),
    (np.array([0, 1, 2, 0, 1, -1]), ValueError, r"y must be in \[0, 3\)"),
    (np.array([0, 1, 2, 0, 1, 1.5]), ValueError, "fractional"),
    (np.array([0, 1, 2, 0, 1, np.nan]), ValueError, "NaN or inf"),
    (np.array([0, 1, 2, 0, 1, np.inf]), ValueError, "NaN or inf"),
    (np.array([0, 1, 2, 0, 1, 1e30]), ValueError, r"y must be in \[0, 3\)"),
    (np.array([True, False] * 3), TypeError, "y must hold integer"),
    (np.array(["0", "1", "2"] * 2), TypeError, "y must hold real numbers"),
    (np.array([0, 1, 2, 0, 1, 2], dtype=object), TypeError, "y must hold real numbers"),
    (np.array([0, 1, 2, 0, 1, 2], dtype=complex), TypeError, "y must hold real numbers"),
    (None, TypeError, "y must hold real numbers"),
    (3, ValueError, "y must be 1-D"),
]


@pytest.mark.parametrize("method", ["evaluate", "score"])
@pytest.mark.parametrize("y, exc, match", BAD_Y, ids=[f"y{i}" for i in range(len(BAD_Y))])
def test_evaluate_rejects_bad_y(small_model, method, y, exc, match):
    with pytest.raises(exc, match=match):
        getattr(small_model, method)(GOOD_X, y)


def test_inference_rejects_unknown_keyword(small_model):
    with pytest.raises(TypeError, match="batch_size"):
        small_model.predict(GOOD_X, batch_size=2)
    with pytest.raises(TypeError, match="normalize"):
        small_model.predict_proba(GOOD_X, normalize=True)
    with pytest.raises(TypeError, match="sample_weight"):
        small_model.score(GOOD_X, GOOD_Y, sample_weight=np.ones(6))


def test_overflowing_outputs_raise_instead_of_nan():
    """Finite inputs that overflow the network's outputs: a ValueError naming X,
    never NaN probabilities or an arbitrary label."""
    model = MLP([50, 2], dtype="float64", seed=0)
    # Every weight +1 (class 0) or -1 (class 1): each product is +-1e308 with the
    # same sign, so any two of them overflow, whatever order (or vector width)
    # BLAS sums them in. (Random weights left overflow to the summation order.)
    model.coefs_[0][:, 0] = 1.0
    model.coefs_[0][:, 1] = -1.0
    X = np.full((3, 50), 1e308)
    X[0] = 1.0
    for call in (model.predict_proba, model.predict, lambda X: model.evaluate(X, [0, 1, 0])):
        with pytest.raises(ValueError, match="X: the network's outputs overflow"):
            call(X)
    # the same rows one by one: the finite one works
    proba = model.predict_proba(X[:1])
    assert np.isfinite(proba).all() and proba.sum() == pytest.approx(1.0)


# ---------------------------------------------------------------------------
# regression (loss="mse") and one logistic output (loss="binary_cross_entropy")
# ---------------------------------------------------------------------------

def _regression_data(n=400, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    Y = np.column_stack([X[:, 0] - 2 * X[:, 1], np.sin(X[:, 2]) + X[:, 3] * X[:, 4]])
    return X, Y


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_regression_fits_and_reports_mse_and_r2(dtype):
    X, Y = _regression_data()
    model = MLP([5, 32, 2], "tanh", loss="mse", seed=0, dtype=dtype)
    history = model.fit(X, Y, epochs=60, batch_size=32, learning_rate=0.05, verbose=False,
                        validation_split=0.2)
    assert set(history.history) == {"loss", "val_loss", "val_r2", "lr", "time"}
    assert history.history["loss"][-1] < history.history["loss"][0] / 5
    pred = model.predict(X)
    assert pred.shape == (400, 2) and pred.dtype == np.dtype(dtype)
    mse, r2 = model.evaluate(X, Y)
    np.testing.assert_allclose(mse, np.mean((pred.astype(np.float64) - Y) ** 2), rtol=1e-5)
    ss = ((Y - Y.mean(0)) ** 2).sum(0)
    np.testing.assert_allclose(r2, np.mean(1 - ((Y - pred) ** 2).sum(0) / ss), rtol=1e-5)
    assert model.score(X, Y) == r2 > 0.8
    assert model.n_outputs_ == 2 and not model.is_classifier
    with pytest.raises(AttributeError, match="classifiers"):
        model.predict_proba(X)
    with pytest.raises(AttributeError, match="no classes"):
        model.n_classes_  # noqa: B018


def test_regression_one_output_takes_1d_targets_and_predicts_1d():
    X, Y = _regression_data()
    model = MLP([5, 16, 1], "relu", loss="mse", seed=1)
    model.fit(X, Y[:, 0], epochs=5, batch_size=32, verbose=False)
    assert model.predict(X).shape == (400,)
    a = MLP([5, 16, 1], "relu", loss="mse", seed=1)
    a.fit(X, Y[:, :1], epochs=5, batch_size=32, verbose=False)
    np.testing.assert_array_equal(a.parameters, model.parameters)  # (n,) is (n, 1)


def test_regression_matches_the_numpy_trainer():
    from fastnn import reference, training
    X, Y = _regression_data(120)
    models = [MLP([5, 9, 2], "tanh", loss="mse", seed=2, dtype="float64") for _ in range(2)]
    for model, kernels in zip(models, (None, reference)):
        training.fit(model, X, Y, epochs=3, batch_size=16, validation_split=0.0,
                     validation_data=None, early_stopping=None, lr_decay=None,
                     lr_decay_threshold=0.001, verbose=False, callbacks=None, checkpoint=None,
                     learning_rate=0.05, momentum=0.9, kernels=kernels)
    np.testing.assert_allclose(models[0].parameters, models[1].parameters, rtol=1e-9,
                               atol=1e-12)
    np.testing.assert_allclose(models[0].history_.history["loss"],
                               models[1].history_.history["loss"], rtol=1e-9)


@pytest.mark.parametrize("bad, error, match", [
    (np.full((400, 2), np.nan), ValueError, "finite"),
    (np.zeros((400, 3)), ValueError, "columns"),
    (np.zeros(400), ValueError, "2-D"),
    (np.array(["a"] * 400), TypeError, "real numbers"),
])
def test_regression_refuses_bad_targets(bad, error, match):
    X, _ = _regression_data()
    model = MLP([5, 4, 2], loss="mse", seed=0)
    with pytest.raises(error, match=match):
        model.fit(X, bad, epochs=1, verbose=False)


def test_regression_refuses_classifier_options():
    X, Y = _regression_data()
    model = MLP([5, 4, 2], loss="mse", seed=0)
    with pytest.raises(ValueError, match="class_weight"):
        model.fit(X, Y, epochs=1, class_weight="balanced", verbose=False)
    with pytest.raises(ValueError, match="monitor"):
        model.fit(X, Y, epochs=1, validation_split=0.2, monitor="val_accuracy", verbose=False)
    h = model.fit(X, Y, epochs=3, validation_split=0.2, monitor="val_r2", early_stopping=1,
                  lr_decay=0.5, verbose=False)
    assert h.best_epoch is not None


def test_binary_cross_entropy_model():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    model = MLP([4, 16, 1], loss="binary_cross_entropy", seed=0)
    h = model.fit(X, y, epochs=20, batch_size=16, learning_rate=0.1, verbose=False,
                  validation_split=0.2, class_weight="balanced")
    assert set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "time"}
    proba = model.predict_proba(X)
    assert proba.shape == (300, 2) and model.n_classes_ == 2 and model.n_outputs_ == 1
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-6)
    z = model.decision_function(X)[:, 0]
    np.testing.assert_array_equal(model.predict(X), (z > 0).astype(np.intp))
    np.testing.assert_allclose(proba[:, 1], 1 / (1 + np.exp(-z.astype(np.float64))), rtol=1e-5)
    loss, acc = model.evaluate(X, y)
    assert acc == model.score(X, y) > 0.9
    p = np.clip(proba[:, 1].astype(np.float64), 1e-12, 1)
    np.testing.assert_allclose(loss, -np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)), rtol=1e-4)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        model.fit(X, y + 1, epochs=1, verbose=False)


@pytest.mark.parametrize("layers, loss, match", [
    ([4, 1], "cross_entropy", "binary_cross_entropy"),
    ([4, 2], "binary_cross_entropy", "one logistic output"),
    ([4, 2], "hinge", "loss"),
])
def test_loss_and_output_width_must_agree(layers, loss, match):
    with pytest.raises(ValueError, match=match):
        MLP(layers, loss=loss)


def test_sparse_X_fits_and_predicts_as_dense():
    sp = pytest.importorskip("scipy.sparse")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 20))
    X[rng.random(X.shape) < 0.8] = 0
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    dense, sparse = MLP([20, 8, 2], seed=0), MLP([20, 8, 2], seed=0)
    dense.fit(X, y, epochs=3, batch_size=16, verbose=False, validation_split=0.2)
    Xs = sp.csr_array(X)
    Xs.indices = Xs.indices.astype(np.int32)  # scipy's usual index dtype: converted once
    sparse.fit(Xs, y, epochs=3, batch_size=16, verbose=False, validation_split=0.2)
    np.testing.assert_array_equal(sparse.parameters, dense.parameters)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert sparse.history_.history[key] == dense.history_.history[key]
    np.testing.assert_array_equal(sparse.predict_proba(sp.coo_matrix(X)), dense.predict_proba(X))
    assert sparse.evaluate(Xs, y) == dense.evaluate(X, y)
    assert Xs.indices.dtype == np.int32  # the caller's matrix untouched
    bad = sp.csr_matrix(X)
    bad.data[3] = np.nan
    with pytest.raises(ValueError, match="finite"):
        sparse.fit(bad, y, epochs=1, verbose=False)
    with pytest.raises(ValueError, match="features"):
        sparse.predict(sp.csr_matrix(X[:, :5]))


def test_a_regressor_exports_no_classes(tmp_path):
    """classes names a classifier's labels: given for a regressor it is an error
    (it was silently ignored), raised before onnx is even needed."""
    model = MLP([3, 4, 2], seed=0, loss="mse")
    with pytest.raises(ValueError, match="classes is for classifiers"):
        model.to_onnx(tmp_path / "r.onnx", classes=[1, 2])
    assert not (tmp_path / "r.onnx").exists()
