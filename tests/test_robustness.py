"""Property-based robustness of the public API: whatever shapes, dtypes and
values come in, every call either returns a valid result or raises
TypeError/ValueError -- never another exception, a crash, NaN probabilities
or out-of-range labels."""
import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from fastnn import MLP, TrainingDivergedWarning

OK_ERRORS = (TypeError, ValueError)

SPECIAL = [0.0, -0.0, 1.0, -1.0, 0.5, 255.0, 1e-30, 1e6, -1e6, 1e30, -1e30, 3e38, 1e300,
           -1e300, np.nan, np.inf, -np.inf]
GOOD_DTYPES = ["float16", "float32", "float64", "longdouble", "int8", "uint8", "int32", "int64",
               "uint64", "bool", "list"]
BAD_DTYPES = ["complex64", "complex128", "object", "str", "datetime64"]


pytestmark = pytest.mark.usefixtures("one_blas_thread")


@st.composite
def arrays(draw, n_rows, n_cols, kind):
    """An array-like of shape (n_rows, n_cols) (or a ragged/odd one) of ``kind``."""
    shape = (n_rows, n_cols)
    if draw(st.integers(0, 9)) == 7:
        shape = draw(st.sampled_from([(n_rows,), (n_rows, n_cols, 1), (0, n_cols), (n_rows, 0),
                                      ()]))
    size = int(np.prod(shape))
    mostly = draw(st.sampled_from(["normal", "special", "normal", "huge", "normal"]))
    if mostly == "normal":
        values = draw(st.lists(st.floats(-5, 5), min_size=size, max_size=size))
    elif mostly == "huge":
        values = draw(st.lists(st.sampled_from([1e30, -1e30, 3e38, 1e300, 1e308, -1e308]),
                               min_size=size, max_size=size))
    else:
        values = draw(st.lists(st.sampled_from(SPECIAL) | st.floats(allow_nan=True,
                                                                     allow_infinity=True),
                               min_size=size, max_size=size))
    base = np.array(values, dtype=np.float64).reshape(shape)
    with np.errstate(all="ignore"):
        if kind == "list":
            return base.tolist()
        if kind == "object":
            return base.astype(object)
        if kind == "str":
            return base.astype(str)
        if kind == "datetime64":
            return np.zeros(shape, dtype="datetime64[s]")
        if kind == "bool":
            return base > 0
        if np.dtype(kind).kind in "iu":
            info = np.iinfo(kind)
            clean = np.nan_to_num(base, nan=0.0, posinf=info.max, neginf=info.min)
            return np.clip(clean, info.min, info.max).astype(kind)
        arr = base.astype(kind)
    layout = draw(st.sampled_from(["c", "f", "strided", "readonly"]))
    if layout == "f":
        arr = np.asfortranarray(arr)
    elif layout == "strided" and arr.ndim >= 1:
        arr = np.repeat(arr, 2, axis=0)[::2]
    elif layout == "readonly":
        arr = arr.copy()
        arr.flags.writeable = False
    return arr


@st.composite
def labels(draw, n_rows, n_classes):
    kind = draw(st.sampled_from(["good", "float", "list", "uint8", "int8"]))
    if draw(st.integers(0, 9)) in (3, 7):
        kind = draw(st.sampled_from(["bad-range", "negative", "fraction", "nan", "bool", "str",
                                     "object", "2d", "short", "complex"]))
    good = np.array(draw(st.lists(st.integers(0, n_classes - 1), min_size=n_rows,
                                  max_size=n_rows)), dtype=np.int64)
    if kind in ("good", "list"):
        return good if kind == "good" else good.tolist()
    if kind == "uint8":
        return good.astype(np.uint8)
    if kind == "int8":
        return good.astype(np.int8)
    if kind == "float":
        return good.astype(np.float32)
    if n_rows == 0:
        return good
    bad = good.copy()
    if kind == "bad-range":
        bad[0] = n_classes + draw(st.integers(0, 10**6))
        return bad
    if kind == "negative":
        bad[-1] = -1
        return bad
    if kind == "fraction":
        return good + 0.5
    if kind == "nan":
        out = good.astype(float)
        out[0] = np.nan
        return out
    if kind == "bool":
        return good > 0
    if kind == "str":
        return good.astype(str)
    if kind == "object":
        return good.astype(object)
    if kind == "2d":
        return good.reshape(-1, 1)
    if kind == "complex":
        return good.astype(complex)
    return good[:-1]  # short


def _check_proba(proba, n_rows, n_classes, dtype):
    assert isinstance(proba, np.ndarray)
    assert proba.shape == (n_rows, n_classes)
    assert proba.dtype == dtype
    assert np.isfinite(proba).all()
    assert (proba >= 0).all() and (proba <= 1).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-4 if dtype == np.float32 else 1e-9)


def _call(fn, *args, **kwargs):
    """(True, result) or (False, error) for an accepted error type; anything else fails."""
    try:
        return True, fn(*args, **kwargs)
    except OK_ERRORS as exc:
        assert str(exc), "error without a message"
        return False, exc


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_public_api_never_misbehaves(data):
    draw = data.draw
    n_in = draw(st.integers(1, 6))
    hidden = draw(st.lists(st.integers(1, 6), max_size=3))
    n_classes = draw(st.integers(2, 5))
    ctor = dict(layers=[n_in, *hidden, n_classes],
                activation=draw(st.sampled_from(["relu", "tanh", "sigmoid", "identity"])),
                dtype=draw(st.sampled_from(["float32", "float64", np.float32, np.float64])),
                init=draw(st.sampled_from(["auto", "uniform", "he", "glorot"])),
                seed=draw(st.sampled_from([0, 1, 2**63, None, np.int64(5)])))
    if draw(st.integers(0, 9)) in (3, 7):  # now and then one bad argument
        key, value = draw(st.sampled_from([
            ("layers", [n_in]), ("layers", [n_in, 1]), ("layers", [n_in, 0, 3]),
            ("layers", [n_in, -2]), ("layers", [n_in, 2.0]), ("layers", [n_in, "3"]),
            ("layers", []), ("layers", "4,3"), ("layers", None), ("layers", [n_in, True]),
            ("activation", "softmax"), ("activation", None), ("dtype", "float16"),
            ("dtype", "int32"), ("dtype", complex), ("init", "zeros"), ("seed", -1),
            ("seed", 1.5), ("seed", "7"), ("hidden_layers", 3)]))
        ctor[key] = value

    ok, model = _call(MLP, **ctor)
    event(f"MLP: {'ok' if ok else type(model).__name__}")
    if not ok:
        return
    assert model.layers == tuple(ctor["layers"])
    n_in, n_classes = model.n_features_in_, model.n_classes_
    out_dtype = model.dtype

    n_rows = draw(st.integers(1, 12)) if draw(st.integers(0, 9)) != 7 else 0
    kind = draw(st.sampled_from(GOOD_DTYPES))
    if draw(st.integers(0, 9)) == 7:
        kind = draw(st.sampled_from(BAD_DTYPES))
    X = draw(arrays(n_rows, n_in + 1 if draw(st.integers(0, 9)) == 7 else n_in, kind))
    y = draw(labels(n_rows, n_classes))

    fit_kwargs = dict(
        epochs=draw(st.sampled_from([1, 2, 0])),
        batch_size=draw(st.sampled_from([1, 3, 32, 2**31 - 1])),
        learning_rate=draw(st.sampled_from([1e-3, 0.1, 10.0, 1e6, 1e38])),
        momentum=draw(st.sampled_from([0.0, 0.5, 0.99])),
        l2=draw(st.sampled_from([0.0, 1e-4, 10.0])),
        l1=draw(st.sampled_from([0.0, 1e-4])),
        validation_split=draw(st.sampled_from([0.0, 0.0, 0.3, 0.5])),
        verbose=False,
    )
    if fit_kwargs["validation_split"] and draw(st.booleans()):
        fit_kwargs["early_stopping"] = draw(st.sampled_from([1, 2]))
    if draw(st.integers(0, 9)) in (3, 7):  # now and then one bad argument
        key, value = draw(st.sampled_from([
            ("epochs", -1), ("epochs", 1.5), ("epochs", True), ("batch_size", 0),
            ("batch_size", -4), ("batch_size", 2.0), ("batch_size", 2**40),
            ("learning_rate", 0.0), ("learning_rate", -0.1), ("learning_rate", np.nan),
            ("learning_rate", np.inf), ("learning_rate", "0.1"), ("momentum", 1.0),
            ("momentum", -0.1), ("momentum", np.nan), ("l2", -1.0), ("l2", np.inf),
            ("l1", -1.0), ("l1", np.nan), ("validation_split", 1.0),
            ("validation_split", -0.2), ("validation_split", np.nan),
            ("early_stopping", 0), ("lr_decay", 2.0), ("verbose", "no"),
            ("callbacks", [object()]), ("not_an_argument", 1)]))
        fit_kwargs[key] = value
    before = model.parameters.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrainingDivergedWarning)
        ok, history = _call(model.fit, X, y, **fit_kwargs)
    event(f"fit: {'ok' if ok else type(history).__name__}")
    if ok:
        n_epochs = len(history.epoch)
        assert n_epochs <= fit_kwargs["epochs"]
        assert model.epochs_trained == n_epochs
        assert all(len(v) == n_epochs for v in history.history.values())
        for key in ("loss", "val_loss"):
            assert all(not math.isnan(v) and v >= 0 for v in history.history.get(key, []))
        for key in ("accuracy", "val_accuracy"):
            assert all(0 <= v <= 1 for v in history.history.get(key, []))
        assert history.diverged or n_epochs == fit_kwargs["epochs"] or \
            history.stopped_epoch is not None
    else:
        np.testing.assert_array_equal(model.parameters, before)  # a rejected fit changes nothing
    # whatever happened, the weights stay finite
    assert np.isfinite(model.parameters).all()
    assert model.optimizer_ is None or np.isfinite(model.optimizer_.slots).all()

    ok, proba = _call(model.predict_proba, X)
    event(f"predict_proba: {'ok' if ok else type(proba).__name__}")
    if ok:
        _check_proba(proba, np.asarray(X).shape[0], n_classes, out_dtype)
    ok2, pred = _call(model.predict, X)
    assert ok2 == ok  # the same inputs are accepted by both
    if ok2:
        assert pred.shape == (np.asarray(X).shape[0],) and pred.dtype.kind == "i"
        assert ((pred >= 0) & (pred < n_classes)).all()
        np.testing.assert_array_equal(pred[proba.max(axis=1) > 0.99],
                                      proba.argmax(axis=1)[proba.max(axis=1) > 0.99])
    ok3, result = _call(model.evaluate, X, y)
    event(f"evaluate: {'ok' if ok3 else type(result).__name__}")
    if ok3:
        assert ok
        loss, acc = result
        assert isinstance(loss, float) and not math.isnan(loss) and loss >= 0
        assert 0 <= acc <= 1
        assert model.score(X, y) == acc


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 40), d=st.integers(1, 8), k=st.integers(2, 6),
       scale=st.sampled_from([1e-3, 1.0, 1e3, 1e10, 1e20, 1e30, 1e37]),
       dtype=st.sampled_from(["float32", "float64"]), seed=st.integers(0, 2**32))
def test_large_finite_inputs_give_valid_probabilities_or_value_error(n, d, k, scale, dtype, seed):
    """Finite inputs large enough to overflow the logits: ValueError naming X,
    otherwise proper probabilities."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * scale
    model = MLP([d, 5, k], seed=seed % 1000, dtype=dtype)
    try:
        proba = model.predict_proba(X)
    except ValueError as exc:
        assert "X" in str(exc)
        return
    _check_proba(proba, n, k, model.dtype)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 30), d=st.integers(1, 5), k=st.integers(2, 4),
       lr=st.sampled_from([1e-2, 1.0, 1e3, 1e8, 1e20, 1e38]),
       momentum=st.sampled_from([0.0, 0.9, 0.999]),
       scale=st.sampled_from([1.0, 1e3, 1e10, 1e30]),
       batch_size=st.integers(1, 40), seed=st.integers(0, 1000),
       activation=st.sampled_from(["relu", "tanh", "sigmoid", "identity"]))
def test_training_never_leaves_non_finite_weights(n, d, k, lr, momentum, scale, batch_size,
                                                  seed, activation):
    rng = np.random.default_rng(seed)
    X = (rng.normal(size=(n, d)) * scale).astype(np.float32)
    y = rng.integers(0, k, n)
    model = MLP([d, 4, k], activation, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrainingDivergedWarning)
        history = model.fit(X, y, epochs=3, batch_size=batch_size, learning_rate=lr,
                            momentum=momentum, verbose=False)
    assert np.isfinite(model.parameters).all() and np.isfinite(model.optimizer_.slots[0]).all()
    assert all(np.isfinite(v) for v in history.history.get("loss", []))
    assert history.diverged or len(history.epoch) == 3
