"""The public API's small pieces: ``fastnn --version``, ``MLP.classes_``,
``MLP.predict_log_proba``."""
import numpy as np
import pytest

import fastnn
from fastnn import MLP, cli


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"fastnn {fastnn.__version__}"


def test_classes_are_the_label_indices():
    model = MLP([3, 4, 5], seed=0)
    assert model.classes_.tolist() == [0, 1, 2, 3, 4]
    X = np.random.default_rng(0).normal(size=(20, 3))
    np.testing.assert_array_equal(model.classes_[model.predict_proba(X).argmax(axis=1)],
                                  model.predict(X))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_predict_log_proba(dtype):
    rng = np.random.default_rng(1)
    model = MLP([6, 16, 4], "tanh", dtype=dtype, seed=0)
    X = rng.normal(size=(3000, 6))  # more than one forward block of 2,048 rows
    logp = model.predict_log_proba(X)
    assert logp.dtype == np.dtype(dtype) and logp.shape == (3000, 4)
    tol = 1e-6 if dtype == "float32" else 1e-14
    np.testing.assert_allclose(np.exp(logp), model.predict_proba(X), rtol=tol * 10, atol=tol)
    # the log-softmax of the logits, computed in float64
    z = model.decision_function(X).astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    expected = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(logp, expected, rtol=tol * 10, atol=tol * 10)


def test_predict_log_proba_stays_finite_where_proba_underflows():
    model = MLP([2, 3], dtype="float32", seed=0)
    model.coefs_[0][...] = [[100.0, -100.0, 0.0], [0.0, 0.0, 0.0]]
    logp = model.predict_log_proba(np.array([[2.0, 0.0]]))
    assert model.predict_proba(np.array([[2.0, 0.0]]))[0, 1] == 0.0  # exp(-400) underflows
    np.testing.assert_allclose(logp[0], [0.0, -400.0, -200.0], rtol=1e-6)
    with pytest.raises(ValueError, match="X must have 2 features"):
        model.predict_log_proba(np.zeros((1, 3)))
