"""ONNX export: the graph run by onnxruntime agrees with fastnn."""
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from fastnn import MLP, cli
from fastnn import export

pytestmark = pytest.mark.usefixtures("one_blas_thread")

onnx = pytest.importorskip("onnx", reason="ONNX export needs onnx: pip install 'fastnn[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="running the exported graph needs onnxruntime")


def _session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _run(path, X):
    sess = _session(path)
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, {"X": X})))


@pytest.fixture(scope="module")
def trained(mnist):
    """One epoch of [784, 64, 10] ReLU on all 60,000 MNIST training images."""
    (X, y), _ = mnist
    model = MLP([784, 64, 10], seed=0)
    model.fit(X, y, epochs=1, batch_size=64, learning_rate=0.1, momentum=0.9, verbose=False)
    return model


def test_mnist_test_images_agree_with_onnxruntime(trained, mnist, tmp_path):
    """The issue's target: every MNIST test image, probabilities within 1e-5, same class."""
    _, (Xt, yt) = mnist
    path = tmp_path / "model.onnx"
    trained.to_onnx(path)
    out = _run(path, Xt)
    assert list(out) == ["probabilities", "label"]
    proba = trained.predict_proba(Xt)
    assert out["probabilities"].dtype == np.float32 and out["probabilities"].shape == (10000, 10)
    np.testing.assert_allclose(out["probabilities"], proba, rtol=0, atol=1e-5)
    assert out["label"].dtype == np.int64
    np.testing.assert_array_equal(out["label"], trained.predict(Xt))
    assert trained.score(Xt, yt) > 0.9  # a trained model, not a degenerate one


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "identity"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_activations_and_dtypes(activation, dtype, mnist, tmp_path):
    (X, y), (Xt, _) = mnist
    model = MLP([784, 32, 16, 10], activation, dtype=dtype, seed=1)
    model.fit(X[:5000], y[:5000], epochs=1, batch_size=32, learning_rate=0.05, verbose=False)
    path = tmp_path / "m.onnx"
    model.to_onnx(path)
    Xd = Xt.astype(dtype)
    out = _run(path, Xd)
    assert out["probabilities"].dtype == np.dtype(dtype)
    np.testing.assert_allclose(out["probabilities"], model.predict_proba(Xd), rtol=0,
                               atol=1e-5 if dtype == "float32" else 1e-12)
    np.testing.assert_array_equal(out["label"], model.predict(Xd))


def test_graph_names_opset_and_classes(trained, mnist, tmp_path):
    _, (Xt, _) = mnist
    path = tmp_path / "named.onnx"
    names = [f"digit {d}" for d in range(10)]
    trained.to_onnx(path, classes=names)
    proto = onnx.load(str(path))
    assert [o.version for o in proto.opset_import if o.domain == ""] == [export.OPSET]
    assert [i.name for i in proto.graph.input] == ["X"]
    assert [o.name for o in proto.graph.output] == ["probabilities", "label"]
    shape = proto.graph.input[0].type.tensor_type.shape.dim
    assert shape[0].dim_param == "N" and shape[1].dim_value == 784
    out = _run(path, Xt[:500])
    assert out["label"].tolist() == [names[i] for i in trained.predict(Xt[:500])]
    with pytest.raises(ValueError, match="classes must list the model's 10 classes"):
        trained.to_onnx(tmp_path / "bad.onnx", classes=[0, 1])
    assert not (tmp_path / "bad.onnx").exists()


def _forward(layers, activation, X):
    act = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh,
           "sigmoid": lambda z: 1 / (1 + np.exp(-z)), "identity": lambda z: z}[activation]
    a = X
    for i, (W, b) in enumerate(layers):
        a = a @ W + b
        if i < len(layers) - 1:
            a = act(a)
    return a


@pytest.mark.parametrize("loss", ["mse", "binary_cross_entropy"])
def test_regression_and_logistic_outputs(loss, tmp_path):
    """The outputs of models with a ``loss`` attribute (regression: identity;
    two classes on one logistic unit), on a stand-in with MLP's attributes."""
    rng = np.random.default_rng(0)
    n_out = 3 if loss == "mse" else 1
    shapes = [(5, 7), (7, n_out)]
    Ws = [rng.normal(size=s).astype(np.float32) for s in shapes]
    bs = [rng.normal(size=s[1]).astype(np.float32) for s in shapes]
    model = SimpleNamespace(layers=(5, 7, n_out), activation="tanh", dtype=np.dtype(np.float32),
                            coefs_=Ws, intercepts_=bs, loss=loss)
    X = rng.normal(size=(50, 5)).astype(np.float32)
    path = tmp_path / f"{loss}.onnx"
    export.to_onnx(model, path, classes=None if loss == "mse" else ["no", "yes"])
    out = _run(path, X)
    z = _forward(list(zip(Ws, bs)), "tanh", X.astype(np.float64))
    if loss == "mse":
        assert list(out) == ["predictions"]
        np.testing.assert_allclose(out["predictions"], z, rtol=1e-5, atol=1e-5)
    else:
        p = 1 / (1 + np.exp(-z[:, 0]))
        np.testing.assert_allclose(out["probabilities"], np.column_stack([1 - p, p]),
                                   atol=1e-6)
        assert out["label"].tolist() == [["no", "yes"][int(v > 0)] for v in z[:, 0]]
    model.loss = "hinge"
    with pytest.raises(ValueError, match="cannot export a model with loss='hinge'"):
        export.to_onnx(model, path)


@pytest.mark.parametrize("loss", ["mse", "binary_cross_entropy"])
def test_real_regressor_and_logistic_models_export(loss, tmp_path):
    """fastnn's own regression and one-logistic-output models, trained, then
    run by onnxruntime: the same outputs as predict / predict_proba."""
    from fastnn import MLP
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 6)).astype(np.float32)
    if loss == "mse":
        model, y = MLP([6, 12, 2], "tanh", seed=0, loss=loss), X[:, :2] * 2 - X[:, 2:4]
    else:
        model, y = MLP([6, 12, 1], "tanh", seed=0, loss=loss), (X[:, 0] > 0).astype(int)
    model.fit(X, y, epochs=3, batch_size=16, learning_rate=0.05, verbose=False)
    path = tmp_path / "m.onnx"
    model.to_onnx(path)
    out = _run(path, X)
    if loss == "mse":
        np.testing.assert_allclose(out["predictions"], model.predict(X), rtol=1e-5, atol=1e-5)
    else:
        np.testing.assert_allclose(out["probabilities"], model.predict_proba(X), atol=1e-5)
        assert out["label"].ravel().tolist() == model.predict(X).tolist()


def test_cli_export(trained, mnist, tmp_path, capsys):
    _, (Xt, _) = mnist
    saved = tmp_path / "model.npz"
    trained.save(saved)
    out = tmp_path / "cli.onnx"
    assert cli.main(["export", str(saved), "--onnx", str(out)]) == 0
    assert "opset 13" in capsys.readouterr().out
    np.testing.assert_array_equal(_run(out, Xt[:200])["label"], trained.predict(Xt[:200]))
    assert cli.main(["export", str(tmp_path / "missing.npz"), "--onnx", str(out)]) == 2


@pytest.mark.filterwarnings("ignore:Stochastic Optimizer")
def test_sklearn_classifier_exports_its_classes(tmp_path):
    pytest.importorskip("sklearn")
    from fastnn.sklearn import MLPClassifier
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 6))
    y = np.array(["cat", "dog", "eel"])[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)]
    clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=30, random_state=0).fit(X, y)
    path = tmp_path / "clf.onnx"
    clf.to_onnx(path)
    out = _run(path, X.astype(np.float32))
    assert out["label"].tolist() == clf.predict(X).tolist()
    np.testing.assert_allclose(out["probabilities"], clf.predict_proba(X), atol=1e-5)


@pytest.mark.filterwarnings("ignore:Stochastic Optimizer")
@pytest.mark.parametrize("labels", [np.array([False, True]),
                                    np.array([2**63 + 5, 2**64 - 1], dtype=np.uint64),
                                    np.array([-3, 7], dtype=np.int8),
                                    np.array([1.0, 3.0])],
                         ids=["bool", "uint64-past-int64", "int8", "float"])
def test_sklearn_classifier_labels_keep_their_values(tmp_path, labels):
    """The ONNX "label" output holds the estimator's own classes: bools stay bools,
    uint64 values past int64's range do not wrap."""
    pytest.importorskip("sklearn")
    from fastnn.sklearn import MLPClassifier
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    y = labels[(X[:, 0] > 0).astype(int)]
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=20, random_state=0).fit(X, y)
    clf.to_onnx(tmp_path / "clf.onnx")
    out = _run(tmp_path / "clf.onnx", X.astype(np.float32))["label"]
    expected = clf.predict(X)
    assert out.tolist() == expected.tolist()
    assert out.dtype.kind == expected.dtype.kind or out.dtype == np.int64


def test_mixed_string_and_number_classes_are_refused(trained, tmp_path):
    with pytest.raises(TypeError, match="all strings or all numbers"):
        trained.to_onnx(tmp_path / "x.onnx", classes=["zero", *range(1, 10)])
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_sklearn_regressor_exports_too(tmp_path):
    pytest.importorskip("sklearn")
    from fastnn.sklearn import MLPRegressor
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5))
    y = X @ rng.normal(size=5)
    reg = MLPRegressor(hidden_layer_sizes=(8,), max_iter=20, random_state=0).fit(X, y)
    reg.to_onnx(tmp_path / "reg.onnx")
    out = _run(tmp_path / "reg.onnx", X.astype(np.float32))
    np.testing.assert_allclose(out["predictions"][:, 0], reg.predict(X), rtol=1e-5, atol=1e-5)


def test_without_onnx_the_error_says_what_to_install(trained, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"pip install 'fastnn\[onnx\]'"):
        trained.to_onnx(tmp_path / "x.onnx")


def test_import_fastnn_does_not_import_onnx():
    code = "import sys, fastnn, fastnn.cli; assert 'onnx' not in sys.modules, 'onnx imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
