"""fastnn.sklearn.MLPClassifier and MLPRegressor: scikit-learn's estimator checks, exact
agreement with scikit-learn's own estimators where the algorithms coincide, and the workflow
(clone, pickle, Pipeline, GridSearchCV, cross_val_score)."""
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")  # in the test extra: present in CI

from sklearn.base import clone  # noqa: E402
from sklearn.datasets import make_blobs  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkMLP  # noqa: E402
from sklearn.neural_network import MLPRegressor as SkMLPRegressor  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import fastnn  # noqa: E402
from fastnn import MLP, threads  # noqa: E402
from fastnn.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_blas_thread")

#: Every scikit-learn estimator check expected to fail, with the reason: none. The
#: float32 instances pass check_sample_weight_equivalence too, by the exact sums
#: (exact_sums="auto", on for dense X): integer weights train as repeated rows to
#: the bit (test_sample_weight_is_repetition).
EXPECTED_FAILED_CHECKS = {}


#: The instances under scikit-learn's checks: the default float32 and float64.
#: A small network and max_iter keep the checks at a few seconds; lr 0.01 with
#: momentum 0.9 trains their blobs to > 0.83 accuracy and does not diverge on
#: their unscaled (loc=100) inputs.
CHECKED = [MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.01, max_iter=100,
                         random_state=0, dtype=dtype) for dtype in ("float32", "float64")]
#: The regressor under the same checks: as the classifier's, with scikit-learn's own
#: MLPRegressor's check settings otherwise (max_iter=100)
CHECKED += [MLPRegressor(hidden_layer_sizes=(16,), learning_rate_init=0.01, max_iter=100,
                         random_state=0, dtype=dtype) for dtype in ("float32", "float64")]


def _with_checks(estimators):
    """parametrize_with_checks, with the expected failures where scikit-learn takes them (>= 1.6)."""
    try:
        return parametrize_with_checks(estimators,
                                       expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS)
    except TypeError:  # scikit-learn < 1.6: no expected_failed_checks (nor that check)
        assert not EXPECTED_FAILED_CHECKS
        return parametrize_with_checks(estimators)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@_with_checks(CHECKED)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(n_samples=240, centers=3, n_features=5, random_state=0)
    return StandardScaler().fit_transform(X), y


# ---------------------------------------------------------------------------
# import and naming
# ---------------------------------------------------------------------------

def test_import_fastnn_does_not_import_sklearn():
    code = ("import sys, fastnn; assert 'sklearn' not in sys.modules, 'sklearn imported'; "
            "C = fastnn.MLPClassifier; assert 'sklearn' in sys.modules; "
            "import fastnn.sklearn; assert C is fastnn.sklearn.MLPClassifier; print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
    assert fastnn.MLPClassifier is MLPClassifier
    assert "MLPClassifier" in dir(fastnn)
    with pytest.raises(AttributeError, match="nope"):
        fastnn.nope  # noqa: B018


@pytest.mark.parametrize("ours, theirs", [(MLPClassifier, SkMLP),
                                          (MLPRegressor, SkMLPRegressor)])
def test_parameters_are_sklearns_plus_fastnns_own(ours, theirs):
    mine = set(ours().get_params())
    sk = set(theirs().get_params())
    assert mine - sk == {"l1", "dtype", "n_threads", "augment", "exact_sums"}
    assert sk <= mine
    defaults = ours().get_params()
    differ = {k for k, v in theirs().get_params().items() if defaults[k] != v}
    assert differ == set()  # scikit-learn's defaults, Adam and Nesterov included


# ---------------------------------------------------------------------------
# exact agreement with scikit-learn's MLPClassifier (float64, same initial weights)
# ---------------------------------------------------------------------------

def _pair(X, y, **params):
    """(ours, scikit-learn's) fitted with the same hyperparameters from the same
    initial weights: those of ``fastnn.MLP(seed=0)``, copied into scikit-learn's
    estimator after a throw-away fit that allocates them."""
    common = dict(hidden_layer_sizes=(7,), solver="sgd", shuffle=False, momentum=0.9, alpha=0.0,
                  nesterovs_momentum=False, tol=1e-4, n_iter_no_change=10)
    common.update(params)
    ours = MLPClassifier(random_state=0, dtype="float64", **common)
    theirs = SkMLP(random_state=0, warm_start=True, **{**common, "max_iter": 1})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        theirs.fit(X, y)
        init = MLP([X.shape[1], 7, 3], "relu", dtype="float64", seed=0)
        theirs.coefs_ = [W.copy() for W in init.coefs_]
        theirs.intercepts_ = [b.copy() for b in init.intercepts_]
        # forget the throw-away epoch: a first fit's state
        theirs.loss_curve_, theirs.best_loss_, theirs.t_ = [], np.inf, 0
        theirs._no_improvement_count = 0
        theirs.set_params(max_iter=common["max_iter"])
        theirs.fit(X, y)
        ours.fit(X, y)
    return ours, theirs


@pytest.mark.parametrize("nesterov", [False, True])
def test_nesterov_matches_sklearn(blobs, nesterov):
    X, y = blobs
    ours, theirs = _pair(X, y, nesterovs_momentum=nesterov, alpha=0.01, batch_size=40,
                         learning_rate_init=0.05, max_iter=4)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_adam_tracks_sklearns_adam(blobs):
    """Same rule up to where epsilon enters (see the solver docs): with a large
    gradient scale the weights agree closely."""
    X, y = blobs
    ours, theirs = _pair(X, y, solver="adam", alpha=0.01, batch_size=40,
                         learning_rate_init=0.01, max_iter=5)
    assert ours.n_iter_ == theirs.n_iter_ == 5
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-3)


@pytest.mark.parametrize("alpha", [0.0, 0.05])
def test_alpha_is_sklearns_l2_convention(blobs, alpha):
    """l2 = alpha / batch_size reproduces scikit-learn's weights when the batch
    size divides the training set (240 = 6 x 40)."""
    X, y = blobs
    ours, theirs = _pair(X, y, alpha=alpha, batch_size=40, learning_rate_init=0.05, max_iter=6)
    assert ours.n_iter_ == theirs.n_iter_ == 6
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    if alpha == 0.0:
        np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    else:  # the penalty in loss_: scikit-learn's with each batch's weights, ours the epoch's last
        np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=0.05)
    assert ours.history_.params["l2"] == alpha / 40


def test_invscaling_matches_sklearn(blobs):
    X, y = blobs
    ours, theirs = _pair(X, y, learning_rate="invscaling", learning_rate_init=0.5, power_t=0.25,
                         batch_size=40, max_iter=5)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    for a, b in zip(ours.coefs_, theirs.coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    # the rate of epoch k (from 0) is eta0 / (k * n + 1) ** power_t
    expected = [0.5 / (k * 240 + 1) ** 0.25 for k in range(5)]
    np.testing.assert_allclose(ours.history_.history["lr"], expected, rtol=1e-12)


def test_adaptive_divides_by_five_like_sklearn(blobs):
    """tol=10: no epoch improves by tol, so after the first epoch (which sets best_loss_)
    the rate drops 5x after every n_iter_no_change + 1 epochs."""
    X, y = blobs
    ours, theirs = _pair(X, y, learning_rate="adaptive", learning_rate_init=0.1, tol=10.0,
                         n_iter_no_change=2, batch_size=40, max_iter=8)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    for a, b in zip(ours.coefs_, theirs.coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    assert ours.history_.history["lr"] == pytest.approx([0.1] * 4 + [0.02] * 3 + [0.004])
    assert ours._lr == pytest.approx(theirs._optimizer.learning_rate)


def test_constant_rate_stops_on_tol_like_sklearn(blobs):
    X, y = blobs
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # converged: no warning
        ours, theirs = _pair(X, y, learning_rate_init=0.1, tol=0.5, n_iter_no_change=3,
                             batch_size=40, max_iter=50)
    # losses 1.04, 0.24 (improves by > tol), then 4 (> n_iter_no_change) that do not
    assert ours.n_iter_ == theirs.n_iter_ == 6
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    assert ours.best_loss_ == min(ours.loss_curve_)


# ---------------------------------------------------------------------------
# behaviour
# ---------------------------------------------------------------------------

def test_convergence_warning_at_max_iter(blobs):
    X, y = blobs
    with pytest.warns(ConvergenceWarning, match="Maximum iterations \\(3\\)"):
        clf = MLPClassifier(max_iter=3, random_state=0).fit(X, y)
    assert clf.n_iter_ == 3 and len(clf.loss_curve_) == 3 and clf.t_ == 3 * len(X)
    assert clf.loss_ == clf.loss_curve_[-1]
    assert clf.history_.epoch == [0, 1, 2]


def test_early_stopping_keeps_the_best_validation_epoch(blobs):
    X, y = blobs
    clf = MLPClassifier(hidden_layer_sizes=(8,), early_stopping=True, validation_fraction=0.25,
                        n_iter_no_change=3, learning_rate_init=0.05, max_iter=200,
                        random_state=1).fit(X, y)
    assert clf.n_iter_ < 200 and clf.best_loss_ is None
    assert len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert clf.history_.history["val_accuracy"] == clf.validation_scores_
    with pytest.raises(ValueError, match="early_stopping"):
        clf.partial_fit(X, y)


def test_deterministic_for_an_int_random_state(blobs):
    X, y = blobs
    kw = dict(hidden_layer_sizes=(9,), max_iter=5, learning_rate_init=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = MLPClassifier(random_state=3, **kw).fit(X, y)
        b = MLPClassifier(random_state=3, **kw).fit(X, y)
        c = MLPClassifier(random_state=np.random.RandomState(3), **kw).fit(X, y)
        d = MLPClassifier(random_state=np.random.RandomState(3), **kw).fit(X, y)
    for p, q in zip(a.coefs_, b.coefs_):
        assert np.array_equal(p, q)
    for p, q in zip(c.coefs_, d.coefs_):  # RandomState -> a seed drawn from it
        assert np.array_equal(p, q)
    assert not np.array_equal(a.coefs_[0], c.coefs_[0])


def test_string_labels_binary_and_partial_fit(blobs):
    X, y = blobs
    labels = np.array(["cat", "dog", "emu"])[y]
    clf = MLPClassifier(hidden_layer_sizes=(8,), learning_rate_init=0.05, random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X, labels)
    for i in range(4):
        clf.partial_fit(X[i::4], labels[i::4], classes=["emu", "cat", "dog"] if i == 0 else None)
    assert clf.classes_.tolist() == ["cat", "dog", "emu"]
    assert clf.n_iter_ == 1 and len(clf.loss_curve_) == 4 and clf.t_ == len(X)
    assert len(clf.history_.epoch) == 4
    assert set(clf.predict(X)) <= set(clf.classes_)
    with pytest.raises(ValueError, match="not in `self.classes_`"):
        clf.partial_fit(X[:3], ["cow", "cat", "cat"])
    binary = MLPClassifier(max_iter=30, random_state=0, learning_rate_init=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        binary.fit(X, labels == "cat")
    proba = binary.predict_proba(X)
    assert proba.shape == (len(X), 2) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    logp = binary.predict_log_proba(X)  # log-sigmoid: finite where float32 saturates
    assert logp.shape == proba.shape and logp.dtype == np.float64 and np.isfinite(logp).all()
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(np.exp(logp), proba, rtol=1e-5, atol=1e-7)
    assert binary.classes_.tolist() == [False, True]
    assert binary.score(X, labels == "cat") > 0.95


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_predict_log_proba_finite_where_proba_underflows(blobs):
    """The log-softmax (log-sigmoid for one logistic output) of the logits, not
    log(predict_proba): finite and exact where a probability is 0 in float32."""
    X, y = blobs
    for target in (y, y == 0):
        clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, random_state=0).fit(X, target)
        clf.coefs_[-1][...] *= 1e4  # logits far apart: probabilities 0 and 1
        proba, logp = clf.predict_proba(X), clf.predict_log_proba(X)
        assert (proba == 0).any() and np.isfinite(logp).all() and logp.dtype == np.float64
        logits = (np.maximum(X @ clf.coefs_[0] + clf.intercepts_[0], 0) @ clf.coefs_[1]
                  + clf.intercepts_[1]).astype(np.float64)
        if logits.shape[1] == 1:
            logits = np.hstack([np.zeros_like(logits), logits])
        expected = logits - logits.max(1, keepdims=True)
        expected -= np.log(np.exp(expected).sum(1, keepdims=True))
        np.testing.assert_allclose(logp, expected, rtol=1e-4, atol=0.05)


def test_warm_start_continues_from_the_weights(blobs):
    X, y = blobs
    kw = dict(hidden_layer_sizes=(8,), max_iter=3, learning_rate_init=0.02, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(warm_start=True, **kw).fit(X, y)
        first = clf.loss_curve_[-1]
        clf.fit(X, y)
        cold = MLPClassifier(**kw).fit(X, y).fit(X, y)
    assert len(clf.loss_curve_) == 6 and clf.n_iter_ == 3
    assert clf.loss_curve_[3] < first
    assert len(cold.loss_curve_) == 3
    with pytest.raises(ValueError, match="warm_start"):
        clf.fit(X[y < 2], y[y < 2])


@pytest.mark.parametrize("change", [dict(hidden_layer_sizes=(3, 3)), dict(activation="tanh"),
                                    dict(dtype="float64")], ids=lambda c: next(iter(c)))
@pytest.mark.parametrize("incremental", [False, True], ids=["warm_start", "partial_fit"])
def test_kept_network_refuses_changed_shape_parameters(blobs, change, incremental):
    # warm_start and partial_fit keep the fitted network: a changed size,
    # activation or dtype would be reported by get_params and silently unused
    X, y = blobs
    kw = dict(hidden_layer_sizes=(8,), max_iter=2, random_state=0, warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(**kw).fit(X, y)
        before = clf.model_.parameters.copy()
        clf.set_params(**change)
        with pytest.raises(ValueError, match=f"{next(iter(change))}=.*does not match"):
            clf.partial_fit(X, y) if incremental else clf.fit(X, y)
        np.testing.assert_array_equal(clf.model_.parameters, before)
        clf.set_params(warm_start=False).fit(X, y)  # a new network takes them
    assert clf.model_.dtype == np.dtype(clf.dtype)
    assert list(clf.model_.layers[1:-1]) == list(clf.hidden_layer_sizes)


def test_shuffle_false_visits_rows_in_order(blobs):
    X, y = blobs
    kw = dict(hidden_layer_sizes=(8,), max_iter=2, batch_size=40, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = MLPClassifier(shuffle=False, **kw).fit(X, y)
        b = MLPClassifier(shuffle=False, **kw).fit(X, y)
        c = MLPClassifier(shuffle=True, **kw).fit(X, y)
    assert np.array_equal(a.coefs_[0], b.coefs_[0])
    assert not np.array_equal(a.coefs_[0], c.coefs_[0])


@pytest.mark.parametrize("params, error, match", [
    ({"solver": "lbfgs"}, NotImplementedError, "L-BFGS"),
    ({"solver": "newton"}, ValueError, "solver"),
    ({"beta_1": 1.0}, ValueError, "beta_1"),
    ({"epsilon": 0.0}, ValueError, "epsilon"),
    ({"nesterovs_momentum": 1}, TypeError, "nesterovs_momentum"),
    ({"activation": "softplus"}, ValueError, "activation"),
    ({"learning_rate": "cyclic"}, ValueError, "learning_rate"),
    ({"alpha": -1.0}, ValueError, "alpha"),
    ({"learning_rate_init": 0.0}, ValueError, "learning_rate_init"),
    ({"momentum": 1.0}, ValueError, "momentum"),
    ({"hidden_layer_sizes": (4, 0)}, ValueError, "hidden_layer_sizes"),
    ({"hidden_layer_sizes": "4"}, TypeError, "hidden_layer_sizes"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"max_iter": 1.5}, TypeError, "max_iter"),
    ({"dtype": "float16"}, ValueError, "dtype"),
    ({"validation_fraction": 1.0}, ValueError, "validation_fraction"),
    ({"validation_fraction": 0.0, "early_stopping": True}, ValueError, "validation_fraction"),
    ({"epsilon": 1e-300}, ValueError, "^epsilon must be at least"),
    ({"n_threads": 5000}, ValueError, "n_threads"),
    ({"random_state": -1}, ValueError, "random_state"),
])
def test_bad_parameters_raise_clear_errors(blobs, params, error, match):
    X, y = blobs
    with pytest.raises(error, match=match):
        MLPClassifier(**params).fit(X, y)


def test_unsupported_inputs(blobs):
    X, y = blobs
    clf = MLPClassifier(max_iter=1)
    with pytest.raises(NotImplementedError, match="poisson"):
        MLPRegressor(loss="poisson").fit(X, y.astype(float))
    with pytest.raises(ValueError, match="loss"):
        MLPRegressor(loss="huber").fit(X, y.astype(float))
    with pytest.raises(ValueError, match="zero"):
        clf.fit(X, y, sample_weight=np.zeros(len(y)))
    with pytest.raises(ValueError, match=">= 0"):
        clf.fit(X, y, sample_weight=-np.ones(len(y)))
    with pytest.raises(ValueError):
        clf.fit(X, np.stack([y, y], axis=1))  # multilabel
    with pytest.raises(ValueError, match="2 classes"):
        clf.fit(X, np.zeros(len(y)))


def test_divergence_is_a_value_error(blobs):
    X, y = blobs
    with pytest.raises(ValueError, match="non-finite"):
        MLPClassifier(learning_rate_init=1e4, max_iter=5, random_state=0).fit(X * 1e3, y)


def test_n_threads_applies_while_fitting_and_is_restored(blobs):
    X, y = blobs
    seen = []

    class Spy(fastnn.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(threads.get_num_threads())

    before = threads.get_num_threads()
    clf = MLPClassifier(max_iter=1, n_threads=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
        clf.model_.fit(X, y, epochs=1, verbose=False, callbacks=[Spy()])
    assert threads.get_num_threads() == before
    with pytest.raises(ValueError, match="n_threads"):
        MLPClassifier(n_threads=0).fit(X, y)


def test_feature_names_with_pandas(blobs):
    pd = pytest.importorskip("pandas")
    X, y = blobs
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(max_iter=2, random_state=0).fit(frame, y)
    assert clf.feature_names_in_.tolist() == list(frame.columns)
    assert clf.n_features_in_ == X.shape[1]
    with pytest.warns(UserWarning, match="feature names"):
        clf.predict(X)


# ---------------------------------------------------------------------------
# workflow
# ---------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_clone_pickle_pipeline_gridsearch_cross_val(blobs):
    X, y = blobs
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=20, learning_rate_init=0.05,
                        random_state=0)
    pipe = make_pipeline(StandardScaler(), clf).fit(X, y)
    restored = pickle.loads(pickle.dumps(pipe))
    np.testing.assert_array_equal(restored.predict_proba(X), pipe.predict_proba(X))
    fitted = pipe[-1]
    twin = clone(fitted)
    assert twin.get_params() == fitted.get_params() and not hasattr(twin, "model_")
    scores = cross_val_score(clf, X, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.9
    search = GridSearchCV(clf, {"alpha": [1e-4, 1e-2], "hidden_layer_sizes": [(4,), (8,)]},
                          cv=3).fit(X, y)
    assert search.best_score_ > 0.9
    assert isinstance(search.best_estimator_, MLPClassifier)
    assert search.best_estimator_.history_.epoch


def test_verbose_prints_like_sklearn(blobs, capsys):
    X, y = blobs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        MLPClassifier(max_iter=2, verbose=True, random_state=0).fit(X, y)
    out = capsys.readouterr().out
    assert "Iteration 1, loss = " in out and "Iteration 2, loss = " in out


def test_partial_fit_keeps_the_optimizer_across_chunk_sizes(blobs):
    X, y = blobs
    clf = MLPClassifier(hidden_layer_sizes=(8,), random_state=0)
    steps = []
    for rows in (240, 100, 240):
        clf.partial_fit(X[:rows], y[:rows], classes=np.unique(y))
        steps.append(clf._optimizer.t)
    assert steps == [2, 3, 5]  # one optimizer throughout (batches of min(200, rows))


# ---------------------------------------------------------------------------
# the regressor, binary problems and sample weights against scikit-learn
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def friedman():
    from sklearn.datasets import make_friedman1
    X, y = make_friedman1(n_samples=240, n_features=6, noise=0.1, random_state=0)
    return StandardScaler().fit_transform(X), y


def _pair_like(ours_cls, theirs_cls, X, y, n_out, loss, sample_weight=None, **params):
    """As :func:`_pair`, for either estimator and any output layer: both start from the
    weights of ``fastnn.MLP([d, 7, n_out], loss=loss, seed=0)``."""
    common = dict(hidden_layer_sizes=(7,), solver="sgd", shuffle=False, momentum=0.9, alpha=0.0,
                  nesterovs_momentum=False, tol=1e-4, n_iter_no_change=10)
    common.update(params)
    ours = ours_cls(random_state=0, dtype="float64", **common)
    theirs = theirs_cls(random_state=0, warm_start=True, **{**common, "max_iter": 1})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        theirs.fit(X, y)
        init = MLP([X.shape[1], 7, n_out], "relu", dtype="float64", seed=0, loss=loss)
        theirs.coefs_ = [W.copy() for W in init.coefs_]
        theirs.intercepts_ = [b.copy() for b in init.intercepts_]
        theirs.loss_curve_, theirs.best_loss_, theirs.t_ = [], np.inf, 0
        theirs._no_improvement_count = 0
        theirs.set_params(max_iter=common["max_iter"])
        theirs.fit(X, y, sample_weight=sample_weight)
        ours.fit(X, y, sample_weight=sample_weight)
    return ours, theirs


def _assert_same_weights(ours, theirs, rtol=1e-9, atol=1e-12):
    assert len(ours.coefs_) == len(theirs.coefs_)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("alpha", [0.0, 0.05])
def test_regressor_matches_sklearn(friedman, nesterov, alpha):
    X, y = friedman
    ours, theirs = _pair_like(MLPRegressor, SkMLPRegressor, X, y, 1, "mse", alpha=alpha,
                              nesterovs_momentum=nesterov, batch_size=40,
                              learning_rate_init=0.01, max_iter=5)
    assert ours.n_iter_ == theirs.n_iter_ == 5
    _assert_same_weights(ours, theirs)
    if alpha == 0.0:  # scikit-learn's loss_: half the mean squared error
        np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    assert ours.n_outputs_ == theirs.n_outputs_ == 1
    assert ours.out_activation_ == theirs.out_activation_ == "identity"
    pred = ours.predict(X)
    assert pred.shape == (len(X),) and pred.dtype == np.float64
    np.testing.assert_allclose(pred, theirs.predict(X), rtol=1e-9, atol=1e-12)
    assert ours.score(X, y) == pytest.approx(theirs.score(X, y), rel=1e-9)


def test_multi_output_regressor_matches_sklearn(friedman):
    X, y = friedman
    Y = np.column_stack([y, X[:, 0] - X[:, 1], -y / 3])
    ours, theirs = _pair_like(MLPRegressor, SkMLPRegressor, X, Y, 3, "mse", batch_size=40,
                              learning_rate_init=0.01, max_iter=4)
    _assert_same_weights(ours, theirs)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    assert ours.n_outputs_ == 3 and ours.coefs_[-1].shape == (7, 3)
    assert ours.predict(X).shape == (len(X), 3)


@pytest.mark.parametrize("alpha", [0.0, 0.05])
def test_binary_classifier_is_one_logistic_output_as_sklearn(blobs, alpha):
    X, y = blobs
    yb = np.where(y == 1, "pos", "neg")
    ours, theirs = _pair_like(MLPClassifier, SkMLP, X, yb, 1, "binary_cross_entropy",
                              alpha=alpha, batch_size=40, learning_rate_init=0.05, max_iter=5)
    assert ours.n_outputs_ == theirs.n_outputs_ == 1
    assert ours.coefs_[-1].shape == theirs.coefs_[-1].shape == (7, 1)
    assert ours.out_activation_ == theirs.out_activation_ == "logistic"
    _assert_same_weights(ours, theirs)
    if alpha == 0.0:
        np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    proba = ours.predict_proba(X)
    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba, theirs.predict_proba(X), rtol=1e-9, atol=1e-12)
    assert np.array_equal(ours.predict(X), theirs.predict(X))
    assert ours.model_.loss == "binary_cross_entropy"


@pytest.mark.parametrize("kind", ["classifier", "binary", "regressor"])
@pytest.mark.parametrize("alpha", [0.0, 0.05])
def test_sample_weight_matches_sklearn(blobs, friedman, kind, alpha):
    """scikit-learn's normalisation: a batch's weighted gradient and L2 penalty divided by
    the batch's weight sum (fastnn's loss_reduction="weighted_mean")."""
    if kind == "regressor":
        X, y = friedman
        args = (MLPRegressor, SkMLPRegressor, X, y, 1, "mse")
    elif kind == "binary":
        X, y = blobs
        y = y == 2
        args = (MLPClassifier, SkMLP, X, y, 1, "binary_cross_entropy")
    else:
        X, y = blobs
        args = (MLPClassifier, SkMLP, X, y, 3, "cross_entropy")
    sw = np.random.default_rng(0).uniform(0.0, 3.0, len(y))
    sw[::7] = 0.0
    ours, theirs = _pair_like(*args, sample_weight=sw, alpha=alpha, batch_size=40,
                              learning_rate_init=0.02, max_iter=4)
    _assert_same_weights(ours, theirs)
    if alpha == 0.0:
        np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    assert ours.history_.params["loss_reduction"] == "weighted_mean"


@pytest.mark.parametrize("est", [MLPClassifier, MLPRegressor])
def test_sample_weight_is_repetition(est):
    """Integer weights train as repeated rows (one full batch; scikit-learn's check's
    data): with the exact sums (exact_sums="auto" on dense X) to the bit in float32 and
    to 1e-12 in float64 (whose products round); without them, to float32's rounding."""
    rng = np.random.RandomState(42)
    X = rng.rand(15, 30)
    y = rng.randint(0, 3, size=15)
    sw = rng.randint(0, 5, size=15)
    method = "predict_proba" if est is MLPClassifier else "predict"
    fitted = {}
    for dtype in ("float32", "float64"):
        for exact in ("auto", False):
            kw = dict(hidden_layer_sizes=(16,), learning_rate_init=0.01, max_iter=100,
                      random_state=0, dtype=dtype, exact_sums=exact)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                fitted[dtype, exact] = (est(**kw).fit(X, y, sample_weight=sw),
                                        est(**kw).fit(X.repeat(sw, axis=0), y.repeat(sw)))
    weighted, repeated = fitted["float32", "auto"]
    for a, b in zip(weighted.coefs_ + weighted.intercepts_,
                    repeated.coefs_ + repeated.intercepts_):
        np.testing.assert_array_equal(a, b)
    assert weighted.n_iter_ == repeated.n_iter_
    weighted, repeated = fitted["float64", "auto"]
    np.testing.assert_allclose(getattr(weighted, method)(X), getattr(repeated, method)(X),
                               rtol=1e-12, atol=1e-14)
    weighted, repeated = fitted["float32", False]
    got, want = getattr(weighted, method)(X), getattr(repeated, method)(X)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    assert not np.array_equal(got, want)  # the float32 sums' order shows without them


def test_l1_is_scaled_as_alpha_so_weights_stay_repetition():
    """l1 is per batch row as alpha is (l1 / batch_size): a weight w trains as w
    repeated rows with it too (the same epochs: loss_curve_ carries its term, over
    the batch's weight sum), and loss_curve_ matches the repeated rows'."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 5))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    kw = dict(hidden_layer_sizes=(8,), max_iter=20, shuffle=False,  # one batch: min(200, n)
              random_state=0, dtype="float64", alpha=0.0, l1=1e-2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        repeated = MLPClassifier(**kw).fit(np.repeat(X, 3, axis=0), np.repeat(y, 3))
        weighted = MLPClassifier(**kw).fit(X, y, sample_weight=np.full(60, 3.0))
        plain = MLPClassifier(**{**kw, "l1": 0.0}).fit(X, y, sample_weight=np.full(60, 3.0))
    for a, b in zip(weighted.coefs_ + weighted.intercepts_,
                    repeated.coefs_ + repeated.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    assert weighted.n_iter_ == repeated.n_iter_
    np.testing.assert_allclose(weighted.loss_curve_, repeated.loss_curve_, rtol=1e-12)
    assert not np.allclose(weighted.coefs_[0], plain.coefs_[0])  # l1 acted
    rows = 60 * 3.0  # the batch's weight sum, as scikit-learn divides its L2 term
    l1_term = 1e-2 * sum(np.abs(W).sum() for W in weighted.coefs_) / rows
    assert weighted.loss_curve_[-1] == pytest.approx(
        weighted.history_.history["loss"][-1] + l1_term, rel=1e-9)


def test_early_stopping_splits_at_random_where_strata_cannot(blobs):
    """A class with one row, or a validation part smaller than the number of
    classes, cannot be stratified: the split is then a plain random one (where
    scikit-learn's stratified split raises); otherwise it stays stratified."""
    from sklearn.datasets import load_iris
    X, y = load_iris(return_X_y=True)
    kw = dict(early_stopping=True, max_iter=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(**kw).fit(X[::8], y[::8])  # 19 rows, 3 classes: 2 for validation
        assert len(clf.validation_scores_) == clf.n_iter_
        y1 = y.copy()
        y1[0] = 9  # a class of one row
        clf = MLPClassifier(**kw).fit(X, y1)
        assert list(clf.classes_) == [0, 1, 2, 9]
    strata = clf._stratify(np.searchsorted(clf.classes_, y))
    assert strata is not None  # iris as it is: stratified


def test_early_stopping_split_is_stratified_where_it_can_be(blobs, monkeypatch):
    from fastnn.sklearn import _base
    seen = []
    real = _base.train_test_split

    def spy(*arrays, **kwargs):
        seen.append(kwargs["stratify"] is not None)
        return real(*arrays, **kwargs)
    monkeypatch.setattr(_base, "train_test_split", spy)
    X, y = blobs
    kw = dict(early_stopping=True, max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        MLPClassifier(**kw).fit(X, y)
        y1 = y.copy()
        y1[0] = y.max() + 1  # a class of one row: no strata
        MLPClassifier(**kw).fit(X, y1)
    assert seen == [True, False]


def test_ctrl_c_leaves_the_estimator_fitted_with_a_warning(blobs, monkeypatch):
    """As scikit-learn: Ctrl-C during fit warns and returns the fitted estimator."""
    from fastnn.sklearn import _schedule
    X, y = blobs
    original = _schedule._SklearnSchedule.on_epoch_end

    def interrupted(self, epoch, logs=None):
        original(self, epoch, logs)
        if self.est.n_iter_ == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(_schedule._SklearnSchedule, "on_epoch_end", interrupted)
    clf = MLPClassifier(max_iter=10, random_state=0)
    with pytest.warns(UserWarning, match="Training interrupted by user"):
        assert clf.fit(X, y) is clf
    assert clf.n_iter_ == 2 and len(clf.loss_curve_) == 2
    assert clf.predict(X).shape == y.shape


def test_both_estimators_export_to_onnx(blobs, monkeypatch):
    """MLPRegressor has to_onnx as MLPClassifier does (here: without onnx, the
    error says what to install; tests/test_export.py runs the graphs)."""
    import sys
    X, y = blobs
    monkeypatch.setitem(sys.modules, "onnx", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for est, target in ((MLPClassifier(max_iter=2), y), (MLPRegressor(max_iter=2), X[:, 0])):
            est.fit(X, target)
            with pytest.raises(ImportError, match=r"fastnn\[onnx\]"):
                est.to_onnx("never-written.onnx")


def test_validation_fraction_zero_without_early_stopping(blobs):
    X, y = blobs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        MLPClassifier(validation_fraction=0.0, max_iter=2).fit(X, y)


def test_exact_sums_parameter(blobs):
    """exact_sums: a bool or "auto" (on for dense X; off for a sparse X sparse enough
    for the CSR products, which cannot make them); anything else a ValueError."""
    sp = pytest.importorskip("scipy.sparse")
    X, y = blobs
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=2)
    assert clf.exact_sums == "auto"
    assert clf._exact_sums(X) is True
    dense_csr = sp.csr_matrix(X)
    assert clf._exact_sums(dense_csr) is True
    sparse = sp.random(200, 1000, density=0.01, format="csr", random_state=0)
    assert clf._exact_sums(sparse) is False
    assert clf.set_params(exact_sums=True)._exact_sums(sparse) is True
    assert clf.set_params(exact_sums=False)._exact_sums(X) is False
    for bad in ("yes", 1, None):
        with pytest.raises(ValueError, match="exact_sums"):
            MLPClassifier(exact_sums=bad).fit(X, y)


def test_sample_weight_partial_fit_and_early_stopping(friedman):
    X, y = friedman
    sw = np.random.default_rng(1).uniform(0.5, 2.0, len(y))
    reg = MLPRegressor(hidden_layer_sizes=(8,), learning_rate_init=0.01, random_state=0)
    reg.partial_fit(X, y, sample_weight=sw)
    reg.partial_fit(X, y)
    assert reg.n_iter_ == 1 and len(reg.loss_curve_) == 2
    es = MLPRegressor(hidden_layer_sizes=(8,), learning_rate_init=0.01, early_stopping=True,
                      n_iter_no_change=3, max_iter=300, random_state=0).fit(X, y, sample_weight=sw)
    assert es.history_.history["val_r2"] == es.validation_scores_
    assert es.best_validation_score_ == max(es.validation_scores_) > 0.5
    with pytest.raises(ValueError, match="outputs"):
        reg.partial_fit(X, np.column_stack([y, y]))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_regressor_workflow(friedman):
    X, y = friedman
    reg = MLPRegressor(hidden_layer_sizes=(16,), learning_rate_init=0.01, max_iter=200,
                       random_state=0)
    pipe = make_pipeline(StandardScaler(), reg).fit(X, y)
    restored = pickle.loads(pickle.dumps(pipe))
    np.testing.assert_array_equal(restored.predict(X), pipe.predict(X))
    assert pipe.score(X, y) > 0.8
    search = GridSearchCV(reg, {"alpha": [1e-4, 1e-2]}, cv=3).fit(X, y)
    assert search.best_score_ > 0.6
    assert fastnn.MLPRegressor is MLPRegressor


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("est", [MLPClassifier, MLPRegressor])
def test_sparse_X_trains_as_dense(blobs, est):
    """CSR (or any SciPy sparse) X: the compiled loop densifies each batch's rows as it
    gathers them, so the weights are those of the dense X, bit for bit."""
    import scipy.sparse as sp
    X, y = blobs
    X = np.where(np.abs(X) < 0.8, 0.0, X)
    target = y if est is MLPClassifier else X[:, 0] - y
    kw = dict(hidden_layer_sizes=(8,), max_iter=5, learning_rate_init=0.02, random_state=0)
    dense = est(**kw).fit(X, target)
    for container in (sp.csr_matrix, sp.csr_array, sp.csc_matrix):
        sparse = est(**kw).fit(container(X), target)
        for a, b in zip(sparse.coefs_ + sparse.intercepts_, dense.coefs_ + dense.intercepts_):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(sparse.predict(container(X)), dense.predict(X))
    es = est(early_stopping=True, **kw).fit(sp.csr_matrix(X), target)
    assert len(es.validation_scores_) == es.n_iter_


@pytest.mark.parametrize("Est", [MLPClassifier, MLPRegressor])
def test_coefs_and_intercepts_can_be_assigned_as_in_scikit_learn(blobs, Est):
    """``est.coefs_ = [...]`` (scikit-learn's MLPs allow it) copies the arrays into
    the network; an unfitted estimator has none to assign."""
    from sklearn.exceptions import NotFittedError
    X, y = blobs
    with pytest.raises(NotFittedError):
        Est(hidden_layer_sizes=(5,)).coefs_ = []
    a = Est(hidden_layer_sizes=(5,), max_iter=2, random_state=0).fit(X, y)
    b = Est(hidden_layer_sizes=(5,), max_iter=2, random_state=1).fit(X, y)
    a.coefs_ = [W.copy() for W in b.coefs_]
    a.intercepts_ = [v.copy() for v in b.intercepts_]
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    c = Est(hidden_layer_sizes=(5,), max_iter=2, random_state=2).fit(X, y)
    for i in range(2):  # one layer at a time, as scikit-learn users write it
        c.coefs_[i] = b.coefs_[i]
        c.intercepts_[i] = b.intercepts_[i]
    np.testing.assert_array_equal(c.predict(X), b.predict(X))
    with pytest.raises(ValueError, match=r"coefs_\[1\] must have shape \(5, "):
        a.coefs_ = [W.T for W in b.coefs_]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("Est", [MLPClassifier, MLPRegressor])
def test_early_stopping_when_the_validation_rows_weigh_nothing(blobs, monkeypatch, Est):
    """Validation rows whose sample weights are all 0 (a weighted score is 0/0):
    the score is the unweighted one, not a ZeroDivisionError after an epoch."""
    X, y = blobs
    real = Est._split

    def zero_validation_weights(self, *args):
        parts = list(real(self, *args))
        parts[5] = np.zeros_like(parts[5])
        return tuple(parts)

    monkeypatch.setattr(Est, "_split", zero_validation_weights)
    est = Est(hidden_layer_sizes=(8,), early_stopping=True, max_iter=5, random_state=0)
    est.fit(X, y, sample_weight=np.ones(len(y)))
    assert len(est.validation_scores_) == 5 and np.isfinite(est.validation_scores_).all()


def test_a_failed_first_partial_fit_leaves_no_classes_behind(blobs):
    """partial_fit(classes=...) that fails (here on NaN) must not hand its classes
    to a later call: a fit then partial_fit without classes keeps fit's classes."""
    X, y = blobs
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0)
    with pytest.raises(ValueError):
        clf.partial_fit(X[:2] * np.nan, [0, 1], classes=[0, 1, 5])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, y)
    clf.partial_fit(X[y < 2], y[y < 2])
    assert clf.classes_.tolist() == [0, 1, 2]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_n_iter_no_change_inf_never_stops(blobs):
    """scikit-learn takes n_iter_no_change=np.inf: every max_iter epoch runs."""
    X, y = blobs
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=30, tol=1.0, n_iter_no_change=np.inf,
                        random_state=0).fit(X, y)
    assert clf.n_iter_ == 30
    with pytest.raises((TypeError, ValueError), match="n_iter_no_change"):
        MLPClassifier(n_iter_no_change=2.5).fit(X, y)
