"""scikit-learn's ``MLPClassifier`` and ``MLPRegressor`` on fastnn's trainer
(needs ``pip install "fastnn[sklearn]"``).

Replace ``from sklearn.neural_network import MLPClassifier`` (or
``MLPRegressor``) with ``from fastnn.sklearn import MLPClassifier`` (also
``fastnn.MLPClassifier``, ``fastnn.MLPRegressor``): same parameter names and
meanings, same attributes, and they work in ``Pipeline``, ``GridSearchCV``,
``cross_val_score``, ``clone`` and pickle. Importing :mod:`fastnn` does not
import scikit-learn; this module does.

>>> import numpy as np
>>> from fastnn.sklearn import MLPClassifier
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(300, 4)); y = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
>>> clf = MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.05, tol=1e-3,
...                     random_state=0).fit(X, y)
>>> clf.classes_.tolist(), clf.score(X, y) > 0.95, clf.predict_proba(X[:2]).shape
(['no', 'yes'], True, (2, 2))
>>> clf.n_outputs_, clf.coefs_[-1].shape, clf.out_activation_
(1, (16, 1), 'logistic')
>>> from fastnn.sklearn import MLPRegressor
>>> t = X[:, 0] - 2 * X[:, 1]
>>> reg = MLPRegressor(hidden_layer_sizes=(16,), learning_rate_init=0.01, max_iter=300,
...                    random_state=0).fit(X, t)
>>> reg.score(X, t) > 0.95, reg.predict(X[:2]).shape, reg.out_activation_
(True, (2,), 'identity')
"""
from __future__ import annotations

import numbers
import warnings

import numpy as np
from numpy.typing import NDArray
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import _check_sample_weight, check_is_fitted

from . import threads
from .model import MLP
from ._layout import DTYPES
from ._validation import check_float, check_int
from .optim import SGD, Adam
from ._typing import ArrayLike, PathLike
from .training import Callback, History

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # scikit-learn 1.3 - 1.5
    def _validate_data(estimator, *args, **kwargs):
        return estimator._validate_data(*args, **kwargs)

__all__ = ["MLPClassifier", "MLPRegressor"]

#: scikit-learn's activation names -> fastnn's
_ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
_LEARNING_RATES = ("constant", "invscaling", "adaptive")
_SOLVERS = ("sgd", "adam", "lbfgs")
_REGRESSION_LOSSES = ("squared_error", "poisson")
#: sklearn's adaptive schedule stops once the learning rate is at or below this
_MIN_ADAPTIVE_LR = 1e-6


_COMMON_PARAMS_DOC = """
    hidden_layer_sizes : tuple of int, default=(100,)
    activation : {"identity", "logistic", "tanh", "relu"}, default="relu"
    solver : {"adam", "sgd"}, default="adam"
        ``"adam"``: :class:`fastnn.optim.Adam` with ``beta_1``, ``beta_2``,
        ``epsilon``. scikit-learn's Adam divides by ``sqrt(v) + epsilon``
        after folding the bias corrections into the step size; fastnn's (as
        the paper's Algorithm 1 and PyTorch) by ``sqrt(v_hat) + epsilon``: the
        same update except for where the tiny ``epsilon`` enters.
        ``"sgd"``: :class:`fastnn.optim.SGD` with ``momentum`` and
        ``nesterovs_momentum``. ``"lbfgs"`` raises ``NotImplementedError``.
    alpha : float, default=1e-4
        L2 penalty with scikit-learn's convention: scikit-learn adds
        ``alpha/(2*b) * sum ||W||^2`` to the mean loss of each batch of ``b``
        samples (``b``: the batch's weight sum with ``sample_weight``), so its
        gradient is ``grad + (alpha/b) * W``. fastnn's penalty ``l2`` enters as
        ``grad + l2 * W``, so this estimator trains with ``l2 = alpha /
        batch_size`` (biases unpenalised in both), scaled per batch by
        ``batch_size / sum(w)`` with ``sample_weight``. This is exact for every
        full batch; when ``batch_size`` does not divide the number of training
        samples, scikit-learn's last, smaller batch of ``r`` samples per epoch
        gets ``alpha/r``, fastnn's ``alpha/batch_size``.
    batch_size : int or "auto", default="auto"
        ``"auto"``: ``min(200, n_samples)``; larger values are clipped to the
        number of samples, with scikit-learn's warning.
    learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
        As scikit-learn: ``"invscaling"`` sets the rate after each epoch to
        ``learning_rate_init / (t_ + 1) ** power_t`` (``t_``: samples seen);
        ``"adaptive"`` divides it by 5 whenever ``n_iter_no_change``
        consecutive epochs fail to improve the training loss (or the
        validation score, with ``early_stopping``) by ``tol``, and stops once
        it is ``<= 1e-6``.
    learning_rate_init : float, default=0.001
    power_t : float, default=0.5
    max_iter : int, default=200
        Epochs; reaching it without converging warns ``ConvergenceWarning``.
    shuffle : bool, default=True
    random_state : int, RandomState instance or None, default=None
        An int is fastnn's ``seed`` (weights, shuffling, validation split):
        same int, data and parameters give bit-identical weights. A
        RandomState or None (NumPy's global one) draws the seed from it.
    tol : float, default=1e-4
    verbose : bool, default=False
        Prints the loss (and validation score) of each epoch, as scikit-learn.
    warm_start : bool, default=False
        ``fit`` continues from the previous weights (with a fresh optimizer,
        as scikit-learn: momentum and learning rate restart).
    momentum : float, default=0.9
    nesterovs_momentum : bool, default=True
        Nesterov's momentum, in scikit-learn's (and Keras') form:
        ``v = momentum*v - lr*g``, ``W += momentum*v - lr*g``.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data (stratified for the
        classifier), stop when the validation score (accuracy, or R² for the
        regressor; weighted with ``sample_weight``) has not improved by ``tol``
        for ``n_iter_no_change`` epochs, and keep the weights of the best one.
    validation_fraction : float, default=0.1
    beta_1, beta_2, epsilon : Adam's, as scikit-learn's.
    max_fun :
        Accepted for compatibility; used only by ``"lbfgs"``, which fastnn
        does not have.
    n_iter_no_change : int, default=10
    l1 : float, default=0.0
        fastnn's L1 penalty: ``grad + l1 * sign(W)`` (no scikit-learn equivalent).
    dtype : {"float32", "float64"}, default="float32"
        Precision of weights and arithmetic; inputs are converted once.
    n_threads : int or None, default=None
        Threads of fastnn's training loop and of BLAS while fitting and
        predicting, for this estimator only (None: fastnn's setting,
        :func:`fastnn.set_num_threads`, else one training thread per usable
        core within the limits a parent set, and BLAS's default). Under a
        parallel search (``GridSearchCV(n_jobs=...)``) the default already
        follows the limit joblib's workers set (``OMP_NUM_THREADS``): see
        :mod:`fastnn.threads`.
    augment : fastnn.augment.Augment, mapping or None, default=None
        fastnn's random deformations of training rows that are images (see
        :mod:`fastnn.augment`), made afresh every epoch in the compiled loop;
        off by default. Scoring and prediction never augment.
"""

_COMMON_ATTRS_DOC = """
    history_ : fastnn.History
        Every epoch of the last ``fit`` (``partial_fit`` calls append), with
        the validation score when ``early_stopping``.
    model_ : fastnn.MLP
        The trained network (save it with ``model_.save``).

    ``fit(X, y, sample_weight=None)`` and ``partial_fit`` take scikit-learn's
    sample weights (finite, >= 0, not all 0) with its normalisation: a
    batch's loss (and L2 penalty) is divided by the batch's weight sum
    (fastnn's ``loss_reduction="weighted_mean"``).
"""


class _BaseMLP(BaseEstimator):
    """What fastnn's MLPClassifier and MLPRegressor share: scikit-learn's
    hyperparameters, their validation, the epoch loop on fastnn's trainer and
    the attributes. Subclasses say how targets become the network's outputs
    (:meth:`_encode_targets`) and how a validation set is scored."""

    #: the history's loss -> scikit-learn's loss_ (the regressor's is half the
    #: mean squared error)
    _LOSS_FACTOR = 1.0

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 l1=0.0, dtype="float32", n_threads=None, augment=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.l1 = l1
        self.dtype = dtype
        self.n_threads = n_threads
        self.augment = augment

    # -- scikit-learn protocol -------------------------------------------------
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        tags.input_tags.sparse = True
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"non_deterministic": False}

    def __sklearn_is_fitted__(self):
        return hasattr(self, "model_")

    # -- parameters ------------------------------------------------------------
    def _check_params(self):
        """Validate the hyperparameters; returns ``(hidden sizes, fastnn activation name)``."""
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, numbers.Integral):
            sizes = [sizes]
        if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__iter__"):
            raise TypeError(f"hidden_layer_sizes must be an int or a sequence of ints, "
                            f"got {self.hidden_layer_sizes!r}")
        sizes = list(sizes)
        for s in sizes:
            if isinstance(s, (bool, np.bool_)) or not isinstance(s, numbers.Integral):
                raise TypeError(f"hidden_layer_sizes must hold ints, got {s!r}")
            if s <= 0:
                raise ValueError(f"hidden_layer_sizes must be > 0, got {sizes}")
        if self.solver not in _SOLVERS:
            raise ValueError(f"solver must be one of {list(_SOLVERS)}, got {self.solver!r}")
        if self.solver == "lbfgs":
            raise NotImplementedError(
                "solver='lbfgs': fastnn trains with mini-batch optimizers only "
                "(solver='adam' or 'sgd'); L-BFGS is not implemented")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {list(_ACTIVATIONS)}, "
                             f"got {self.activation!r}")
        if self.learning_rate not in _LEARNING_RATES:
            raise ValueError(f"learning_rate must be one of {list(_LEARNING_RATES)}, "
                             f"got {self.learning_rate!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {list(DTYPES)}, got {self.dtype!r}")
        check_float(self.alpha, "alpha", low=0.0)
        check_float(self.l1, "l1", low=0.0)
        check_float(self.learning_rate_init, "learning_rate_init", low=0.0, low_open=True)
        check_float(self.power_t, "power_t", low=0.0)
        check_float(self.tol, "tol", low=0.0)
        check_float(self.momentum, "momentum", low=0.0, high=1.0, high_open=True)
        check_float(self.validation_fraction, "validation_fraction", low=0.0, high=1.0,
                    low_open=True, high_open=True)
        check_float(self.beta_1, "beta_1", low=0.0, high=1.0, high_open=True)
        check_float(self.beta_2, "beta_2", low=0.0, high=1.0, high_open=True)
        check_float(self.epsilon, "epsilon", low=0.0, low_open=True)
        check_int(self.max_iter, "max_iter", low=1)
        check_int(self.n_iter_no_change, "n_iter_no_change", low=1)
        if self.batch_size != "auto":
            check_int(self.batch_size, "batch_size", low=1)
        if self.n_threads is not None:
            check_int(self.n_threads, "n_threads", low=1)
        for name in ("shuffle", "warm_start", "early_stopping", "nesterovs_momentum"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        return sizes, _ACTIVATIONS[self.activation]

    def _new_optimizer(self, batch_size):
        """A fresh fastnn optimizer for ``solver`` (scikit-learn's L2 as ``alpha/batch_size``)."""
        common = dict(learning_rate=float(self.learning_rate_init), l1=float(self.l1),
                      l2=float(self.alpha) / batch_size)
        if self.solver == "adam":
            return Adam(beta1=self.beta_1, beta2=self.beta_2, eps=self.epsilon, **common)
        return SGD(momentum=self.momentum, nesterov=bool(self.nesterovs_momentum), **common)

    # -- fitting ---------------------------------------------------------------
    def _validate_Xy(self, X, y, reset):
        raise NotImplementedError

    def _encode_targets(self, y, incremental, first_pass):
        """``(targets for fastnn.MLP.fit, n_outputs, MLP loss, out_activation_)``."""
        raise NotImplementedError

    def _stratify(self, targets):
        return None

    def _check_weights(self, sample_weight, X):
        """scikit-learn's sample weights as float64 (None stays None): finite,
        >= 0 and not all 0, else a ValueError that says so."""
        if sample_weight is None:
            return None
        sw = _check_sample_weight(sample_weight, X, dtype=np.float64)
        if not np.isfinite(sw).all():
            raise ValueError("sample_weight must be finite")
        if (sw < 0).any():
            raise ValueError("sample_weight must be >= 0 (negative weights are not supported)")
        if not (sw > 0).any():
            raise ValueError("Sample weights must contain at least one non-zero number "
                             "(sample_weight is all zero).")
        return sw

    def _fit(self, X, y, incremental, sample_weight=None):
        sizes, activation = self._check_params()
        first_pass = not hasattr(self, "model_") or (not self.warm_start and not incremental)
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y "
                             f"is None")
        X, y = self._validate_Xy(X, y, reset=first_pass)
        sample_weight = self._check_weights(sample_weight, X)
        targets, n_outputs, loss, out_activation = self._encode_targets(y, incremental,
                                                                        first_pass)
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        seed = self._seed()
        if first_pass:
            self.model_ = MLP([X.shape[1], *sizes, n_outputs], activation, dtype=self.dtype,
                              seed=seed, loss=loss)
            self.n_layers_ = len(sizes) + 2
            self.n_outputs_ = n_outputs
            self.out_activation_ = out_activation
            self.t_ = 0
            self.loss_curve_ = []
            self._no_improvement_count = 0
            self.history_ = History()
            if self.early_stopping:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None
        elif n_outputs != self.n_outputs_:
            raise ValueError(f"y has {n_outputs} outputs; the network fitted before has "
                             f"{self.n_outputs_} (warm_start and partial_fit keep it)")
        new_optimizer = not incremental or not hasattr(self, "_lr")
        if new_optimizer:
            # as scikit-learn: learning rate and optimizer state restart
            self._lr = float(self.learning_rate_init)
            if not incremental:
                self.history_ = History()
        sw_train = sw_val = None
        if self.early_stopping:
            arrays = (X, targets) if sample_weight is None else (X, targets, sample_weight)
            parts = train_test_split(*arrays, random_state=seed % 2**32,
                                     test_size=self.validation_fraction,
                                     stratify=self._stratify(targets))
            X_train, X_val, y_train, y_val = parts[:4]
            if sample_weight is not None:
                sw_train, sw_val = parts[4:]
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase "
                                 "'validation_fraction' or the size of your dataset.")
            if not hasattr(X_train, "tocsr"):
                X_train, X_val = np.ascontiguousarray(X_train), np.ascontiguousarray(X_val)
            if sw_train is not None and not (sw_train > 0).any():
                raise ValueError("The sample weights of the training set (after the "
                                 "validation split) are all zero; use another random_state "
                                 "or validation_fraction")
        else:
            X_train, y_train, X_val, y_val, sw_train = X, targets, None, None, sample_weight
        n = X_train.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n)
        else:
            if self.batch_size > n:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. "
                              "It is going to be clipped")
            batch_size = int(np.clip(self.batch_size, 1, n))
        if new_optimizer:
            self._optimizer = self._new_optimizer(batch_size)
        else:  # partial_fit keeps the optimizer's state; alpha/batch_size follows the chunk
            self._optimizer.l2 = float(self.alpha) / batch_size
        weighting = {}
        if sw_train is not None:  # scikit-learn's normalisation: by the batch's weight sum
            weighting = dict(sample_weight=sw_train, loss_reduction="weighted_mean")
        schedule = _SklearnSchedule(self, X_val, y_val, sw_val, n, batch_size, incremental)
        self.n_iter_ = 0
        with threads.using(self.n_threads):
            while not schedule.done:
                epochs = 1 if incremental else self.max_iter - self.n_iter_
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # divergence: raised below
                    self._optimizer.learning_rate = self._lr
                    history = self.model_.fit(
                        X_train, y_train, epochs=epochs, batch_size=batch_size,
                        optimizer=self._optimizer, verbose=False, callbacks=[schedule],
                        shuffle=bool(self.shuffle), augment=self.augment, **weighting)
                _extend(self.history_, history, schedule.val_scores, self._VAL_KEY)
                if history.diverged:
                    raise ValueError(
                        "Solver produced non-finite parameter weights (the loss diverged at "
                        f"learning rate {self._lr:g}). The input data may contain large values "
                        "and need to be preprocessed, or the learning rate is too large.")
                if history.interrupted:
                    raise KeyboardInterrupt
                if not history.epoch:  # nothing trained (cannot happen with epochs >= 1)
                    break
                if self.n_iter_ >= epochs and incremental:
                    break
                if self.n_iter_ >= self.max_iter:
                    break
        if self.early_stopping and schedule.best is not None:
            for dst, src in zip(self.model_.coefs_ + self.model_.intercepts_, schedule.best):
                dst[...] = src
        return self

    def _seed(self):
        if isinstance(self.random_state, numbers.Integral) and not isinstance(
                self.random_state, (bool, np.bool_)):
            if self.random_state < 0:
                raise ValueError(f"random_state must be >= 0, got {self.random_state}")
            return int(self.random_state)
        rng = check_random_state(self.random_state)
        return int(rng.randint(np.iinfo(np.int32).max))

    # -- inference -------------------------------------------------------------
    def _check_X(self, X):
        check_is_fitted(self)
        return _validate_data(self, X, reset=False, dtype=np.dtype(self.dtype), order="C",
                              accept_sparse="csr")

    # -- scikit-learn's attributes ---------------------------------------------
    @property
    def coefs_(self):
        """Weight matrices ``(fan_in, fan_out)``, views of the network's weights."""
        check_is_fitted(self)
        return self.model_.coefs_

    @property
    def intercepts_(self):
        """Bias vectors, views of the network's biases."""
        check_is_fitted(self)
        return self.model_.intercepts_

    @property
    def loss_(self):
        check_is_fitted(self)
        if not self.loss_curve_:
            raise AttributeError("loss_ is set by the first epoch")
        return self.loss_curve_[-1]


class MLPClassifier(ClassifierMixin, _BaseMLP):
    __doc__ = """Multilayer perceptron classifier: scikit-learn's API, fastnn's compiled trainer.

    Parameters are scikit-learn's ``MLPClassifier``'s, with the same meaning,
    except where noted; fastnn's own are ``l1``, ``dtype``, ``n_threads`` and ``augment``.
    """ + _COMMON_PARAMS_DOC + """
    Attributes
    ----------
    classes_, n_features_in_, feature_names_in_, coefs_, intercepts_, loss_,
    loss_curve_, best_loss_, best_validation_score_, validation_scores_,
    n_iter_, t_, n_layers_, n_outputs_, out_activation_ : as scikit-learn's.
    Two classes make one logistic output, as scikit-learn's (``n_outputs_ ==
    1``, ``coefs_[-1].shape == (h, 1)``, ``out_activation_ == "logistic"``,
    fastnn's ``MLP(loss="binary_cross_entropy")``); more make a softmax over
    ``n_classes`` outputs. ``predict_proba`` has a column per class either way.
    ``loss_`` is the epoch's mean training cross-entropy (before each update,
    as scikit-learn) plus ``alpha/(2*batch_size) * sum ||W||^2`` evaluated with
    the end-of-epoch weights (scikit-learn evaluates it with each batch's).
    """ + _COMMON_ATTRS_DOC + """
    ``X`` may be SciPy sparse (CSR): it trains as the dense ``X`` (bit for bit above
    ``fastnn.kernels.CSR_PRODUCTS_MAX_DENSITY``; below, on the first layer's CSR
    products, up to the order of the sums).
    Not supported: multilabel ``y``.
    """

    _VAL_KEY = "val_accuracy"

    def fit(self, X: ArrayLike, y: ArrayLike,
            sample_weight: ArrayLike | None = None) -> MLPClassifier:
        """Train on (X, y) for up to ``max_iter`` epochs; returns ``self``."""
        return self._fit(X, y, incremental=False, sample_weight=sample_weight)

    def partial_fit(self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None,
                    classes: ArrayLike | None = None) -> MLPClassifier:
        """One epoch over (X, y); ``classes`` (all labels) is required on the first call."""
        if not hasattr(self, "classes_") or not hasattr(self, "model_"):
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
            self._partial_classes = np.unique(np.asarray(classes))
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(f"`classes={classes!r}` is not the same as on the last call to "
                             f"partial_fit, was: {self.classes_!r}")
        return self._fit(X, y, incremental=True, sample_weight=sample_weight)

    def _validate_Xy(self, X, y, reset):
        X, y = _validate_data(self, X, y, reset=reset, dtype=np.dtype(self.dtype),
                              order="C", accept_sparse="csr")
        check_classification_targets(y)
        return X, y

    def _encode_targets(self, y, incremental, first_pass):
        y_idx = self._encode_labels(y, incremental, first_pass)
        if len(self.classes_) == 2:
            return y_idx, 1, "binary_cross_entropy", "logistic"
        return y_idx, len(self.classes_), "cross_entropy", "softmax"

    def _stratify(self, targets):
        return targets

    def _val_score(self, model, X, y, sample_weight):
        """Accuracy on the validation set (weighted with sample_weight)."""
        hits = model.predict(X) == y
        return float(np.average(hits, weights=sample_weight))

    def _encode_labels(self, y, incremental, first_pass):
        """Labels -> indices into ``classes_`` (set here on a first pass)."""
        if incremental and hasattr(self, "_partial_classes"):
            self.classes_ = self._partial_classes
            del self._partial_classes
            first_pass = False
            if len(self.classes_) < 2:
                raise ValueError(f"{type(self).__name__} needs at least 2 classes, got "
                                 f"classes={self.classes_.tolist()}")
        if first_pass:
            classes, y_idx = np.unique(y, return_inverse=True)
            if len(classes) < 2:
                raise ValueError(f"{type(self).__name__} needs samples of at least 2 classes in "
                                 f"y; got 1 class: {classes.tolist()}")
            self.classes_ = classes
            return y_idx.astype(np.intp)
        classes = unique_labels(y)
        if self.warm_start and not incremental and set(classes) != set(self.classes_):
            raise ValueError("warm_start can only be used where `y` has the same classes as in "
                             f"the previous call to fit. Previously got {self.classes_}, `y` has "
                             f"{classes}")
        if len(np.setdiff1d(classes, self.classes_)):
            raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has "
                             f"{self.classes_}. 'y' has {classes}.")
        return np.searchsorted(self.classes_, y).astype(np.intp)

    def predict_proba(self, X: ArrayLike) -> NDArray[np.float64]:
        """Class probabilities, shape ``(n_samples, n_classes)``, columns in ``classes_`` order."""
        X = self._check_X(X)
        with threads.using(self.n_threads):
            return self.model_.predict_proba(X).astype(np.float64)

    def predict_log_proba(self, X: ArrayLike) -> NDArray[np.float64]:
        """``log(predict_proba(X))``, computed as the log-softmax of the logits
        (log-sigmoid for one logistic output: :meth:`fastnn.MLP.predict_log_proba`),
        finite where a probability underflows to 0."""
        X = self._check_X(X)
        with threads.using(self.n_threads):
            return self.model_.predict_log_proba(X).astype(np.float64)

    def predict(self, X: ArrayLike) -> NDArray[np.generic]:
        """Predicted labels (elements of ``classes_``)."""
        X = self._check_X(X)
        with threads.using(self.n_threads):
            return self.classes_[self.model_.predict(X)]

    def to_onnx(self, path: PathLike) -> None:
        """Write the fitted network to ``path`` as ONNX (``pip install
        'fastnn[onnx]'``): input ``"X"`` ``(N, n_features_in_)`` of ``dtype``,
        outputs ``"probabilities"`` (columns in ``classes_`` order) and
        ``"label"`` (elements of ``classes_``: int64, double or string). See
        :mod:`fastnn.export`."""
        check_is_fitted(self)
        self.model_.to_onnx(path, classes=self.classes_)


class MLPRegressor(RegressorMixin, _BaseMLP):
    __doc__ = """Multilayer perceptron regressor: scikit-learn's API, fastnn's compiled trainer.

    Parameters are scikit-learn's ``MLPRegressor``'s, with the same meaning,
    except where noted; fastnn's own are ``l1``, ``dtype``, ``n_threads`` and ``augment``.

    loss : {"squared_error"}, default="squared_error"
        scikit-learn's squared error: identity outputs, the gradient
        ``(output - y) / batch`` (fastnn's ``MLP(loss="mse")``).
        ``"poisson"`` raises ``NotImplementedError``.
    """ + _COMMON_PARAMS_DOC + """
    Attributes
    ----------
    n_features_in_, feature_names_in_, coefs_, intercepts_, loss_,
    loss_curve_, best_loss_, best_validation_score_, validation_scores_,
    n_iter_, t_, n_layers_, n_outputs_, out_activation_ : as scikit-learn's
    (``out_activation_ == "identity"``; ``n_outputs_``: y's columns, 1 for a
    1-D y, whose ``predict`` is then 1-D). ``loss_`` is scikit-learn's: half
    the epoch's mean squared error (per element, before each update) plus
    ``alpha/(2*batch_size) * sum ||W||^2`` with the end-of-epoch weights.
    """ + _COMMON_ATTRS_DOC + """
    ``X`` may be SciPy sparse (CSR): it trains as the dense ``X`` (bit for bit above
    ``fastnn.kernels.CSR_PRODUCTS_MAX_DENSITY``; below, on the first layer's CSR
    products, up to the order of the sums).
    Not supported: ``loss="poisson"``.
    """

    _LOSS_FACTOR = 0.5
    _VAL_KEY = "val_r2"

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {**super()._more_tags(), "multioutput": True}

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, loss="squared_error",
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 l1=0.0, dtype="float32", n_threads=None, augment=None):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change,
            max_fun=max_fun, l1=l1, dtype=dtype, n_threads=n_threads, augment=augment)
        self.loss = loss

    def _check_params(self):
        if self.loss not in _REGRESSION_LOSSES:
            raise ValueError(f"loss must be one of {list(_REGRESSION_LOSSES)}, got {self.loss!r}")
        if self.loss == "poisson":
            raise NotImplementedError("loss='poisson': fastnn's regressor trains on the squared "
                                      "error only (loss='squared_error')")
        return super()._check_params()

    def fit(self, X, y, sample_weight=None):
        """Train on (X, y) for up to ``max_iter`` epochs; returns ``self``."""
        return self._fit(X, y, incremental=False, sample_weight=sample_weight)

    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y)."""
        return self._fit(X, y, incremental=True, sample_weight=sample_weight)

    def _validate_Xy(self, X, y, reset):
        return _validate_data(self, X, y, reset=reset, dtype=np.dtype(self.dtype), order="C",
                              accept_sparse="csr", multi_output=True, y_numeric=True)

    def _encode_targets(self, y, incremental, first_pass):
        y = y.reshape(-1, 1) if y.ndim == 1 else y
        return np.ascontiguousarray(y, dtype=self.dtype), y.shape[1], "mse", "identity"

    def _val_score(self, model, X, y, sample_weight):
        """R² on the validation set (weighted with sample_weight), as scikit-learn's score."""
        return float(r2_score(y, model.predict(X), sample_weight=sample_weight))

    def predict(self, X):
        """Predicted values, ``(n_samples,)`` for one output, else ``(n_samples, n_outputs_)``."""
        X = self._check_X(X)
        with threads.using(self.n_threads):
            return self.model_.predict(X).astype(np.float64)


class _SklearnSchedule(Callback):
    """scikit-learn's end-of-epoch logic as a fastnn callback.

    After each epoch: the loss curve, ``t_``, the validation score, the
    no-improvement count, the invscaling/adaptive learning rate. When the rate
    changes the current ``MLP.fit`` is stopped after the epoch and the
    estimator resumes with the new rate (same weights, momentum and shuffling
    sequence); when training has converged, it is stopped for good.
    """

    def __init__(self, est, X_val, y_val, sw_val, n_train, batch_size, incremental):
        self.est, self.X_val, self.y_val, self.sw_val = est, X_val, y_val, sw_val
        self.n_train, self.batch_size, self.incremental = n_train, batch_size, incremental
        self.done = False
        self.best = None
        self.val_scores = []

    def on_epoch_end(self, epoch, logs=None):
        est, model = self.est, self.model
        est.n_iter_ += 1
        est.t_ += self.n_train
        penalty = sum(float(np.dot(W.ravel(), W.ravel())) for W in model.coefs_)
        loss = (est._LOSS_FACTOR * float(logs["loss"])
                + 0.5 * est.alpha * penalty / self.batch_size)
        est.loss_curve_.append(loss)
        if est.verbose:
            print("Iteration %d, loss = %.8f" % (est.n_iter_, loss))
        if est.early_stopping:
            score = est._val_score(model, self.X_val, self.y_val, self.sw_val)
            self.val_scores.append(score)
            est.validation_scores_.append(score)
            if est.verbose:
                print("Validation score: %f" % score)
            if score < est.best_validation_score_ + est.tol:
                est._no_improvement_count += 1
            else:
                est._no_improvement_count = 0
            if score > est.best_validation_score_:
                est.best_validation_score_ = score
                self.best = [a.copy() for a in model.coefs_ + model.intercepts_]
        else:
            if loss > est.best_loss_ - est.tol:
                est._no_improvement_count += 1
            else:
                est._no_improvement_count = 0
            est.best_loss_ = min(est.best_loss_, loss)
        lr = est._lr
        schedule = est.learning_rate if est.solver == "sgd" else "constant"  # as scikit-learn
        if schedule == "invscaling":
            est._lr = float(est.learning_rate_init) / (est.t_ + 1) ** est.power_t
        if est._no_improvement_count > est.n_iter_no_change:
            what = "Validation score" if est.early_stopping else "Training loss"
            msg = (f"{what} did not improve more than tol={est.tol:f} for "
                   f"{est.n_iter_no_change} consecutive epochs.")
            if schedule != "adaptive" or est._lr <= _MIN_ADAPTIVE_LR:
                if est.verbose:
                    print(msg + " Stopping.")
                self._stop()
                return
            est._lr /= 5.0
            est._no_improvement_count = 0
            if est.verbose:
                print(msg + " Setting learning rate to %f" % est._lr)
        if self.incremental:
            self._stop()
            return
        if est.n_iter_ == est.max_iter:
            warnings.warn("Stochastic Optimizer: Maximum iterations (%d) reached and the "
                          "optimization hasn't converged yet." % est.max_iter, ConvergenceWarning)
            self._stop()
            return
        if est._lr != lr:
            model.stop_training = True  # resume with the new rate

    def _stop(self):
        self.done = True
        self.model.stop_training = True


def _extend(history, part, val_scores, key):
    """Append the epochs of ``part`` (one ``MLP.fit``) to ``history`` (``key``:
    the validation scores' name)."""
    first = len(history.epoch)
    history.epoch.extend(range(first, first + len(part.epoch)))
    for name, values in part.history.items():
        history.history.setdefault(name, []).extend(values)
    if val_scores:
        history.history[key] = list(val_scores)
    history.params = dict(part.params)
    history.diverged = history.diverged or part.diverged
    history.interrupted = history.interrupted or part.interrupted
