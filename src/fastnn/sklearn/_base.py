"""What fastnn's MLPClassifier and MLPRegressor share: scikit-learn's
hyperparameters, their validation and documentation, and the fit on
fastnn's trainer."""
from __future__ import annotations

import numbers
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.validation import _check_sample_weight, check_is_fitted

from .. import threads
from ..kernels import CSR_PRODUCTS_MAX_DENSITY
from ..model import MLP
from .._layout import DTYPES
from .._validation import check_float, check_int, check_sparse_structure, is_sparse
from ..optim import SGD, Adam
from ..training import DIVERGED_LOSS, History
from ._schedule import _extend, _SklearnSchedule

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # scikit-learn 1.3 - 1.5
    def _validate_data(estimator, *args, **kwargs):
        return estimator._validate_data(*args, **kwargs)

#: scikit-learn's activation names -> fastnn's
_ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
_LEARNING_RATES = ("constant", "invscaling", "adaptive")
_SOLVERS = ("sgd", "adam", "lbfgs")


def _network_attribute(name, doc):
    """A fitted estimator's ``model_.<name>`` (coefs_, intercepts_), read and assigned."""
    def get(self):
        check_is_fitted(self)
        return getattr(self.model_, name)

    def put(self, values):
        check_is_fitted(self)
        setattr(self.model_, name, values)
    return property(get, put, doc=doc)

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
                 l1=0.0, dtype="float32", n_threads=None, augment=None, exact_sums="auto"):
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
        self.exact_sums = exact_sums

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
                    high_open=True)
        if self.early_stopping and self.validation_fraction == 0:
            raise ValueError("validation_fraction must be above 0 with early_stopping=True, "
                             "got 0.0")
        check_float(self.beta_1, "beta_1", low=0.0, high=1.0, high_open=True)
        check_float(self.beta_2, "beta_2", low=0.0, high=1.0, high_open=True)
        check_float(self.epsilon, "epsilon", low=0.0, low_open=True)
        tiny = float(np.finfo(np.dtype(self.dtype)).tiny)
        if self.solver == "adam" and self.epsilon < tiny:
            raise ValueError(f"epsilon must be at least {tiny:g} (the smallest normal "
                             f"{np.dtype(self.dtype).name}) with dtype={self.dtype!r}, "
                             f"got {self.epsilon!r}")
        check_int(self.max_iter, "max_iter", low=1)
        if not (isinstance(self.n_iter_no_change, (float, np.floating))
                and self.n_iter_no_change == np.inf):  # inf, as scikit-learn: never stop
            check_int(self.n_iter_no_change, "n_iter_no_change", low=1)
        if self.batch_size != "auto":
            check_int(self.batch_size, "batch_size", low=1)
        if self.n_threads is not None:
            check_int(self.n_threads, "n_threads", low=1, high=threads.MAX_THREADS)
        if not (isinstance(self.exact_sums, (bool, np.bool_)) or (
                isinstance(self.exact_sums, str) and self.exact_sums == "auto")):
            raise ValueError(f"exact_sums must be True, False or 'auto', "
                             f"got {self.exact_sums!r}")
        for name in ("shuffle", "warm_start", "early_stopping", "nesterovs_momentum"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        return sizes, _ACTIVATIONS[self.activation]

    def _new_optimizer(self, batch_size):
        """A fresh fastnn optimizer for ``solver`` (scikit-learn's L2 as ``alpha/batch_size``)."""
        common = dict(learning_rate=float(self.learning_rate_init),
                      l1=float(self.l1) / batch_size, l2=float(self.alpha) / batch_size)
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

    def _check_kept_network(self, sizes, activation):
        """ValueError unless the parameters that shape the network still describe
        the one fitted before, which warm_start and partial_fit keep (a changed
        one would otherwise be reported by get_params and silently not used)."""
        model = self.model_
        kept = (("hidden_layer_sizes", list(model.layers[1:-1]), list(sizes)),
                ("activation", model.activation, activation),
                ("dtype", np.dtype(model.dtype).name, np.dtype(self.dtype).name))
        for name, fitted, now in kept:
            if fitted != now:
                raise ValueError(f"{name}={getattr(self, name)!r} does not match the network "
                                 f"fitted before ({name} {fitted!r} in fastnn's terms), which "
                                 f"warm_start and partial_fit keep: set warm_start=False (or "
                                 f"fit a new estimator) to train a new network")

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
        if is_sparse(X):
            # before scikit-learn's validation, whose conversions trust the
            # index arrays (a corrupted indptr crashed the interpreter there)
            check_sparse_structure(X)
        X, y = self._validate_Xy(X, y, reset=first_pass)
        sample_weight = self._check_weights(sample_weight, X)
        targets, n_outputs, loss, out_activation = self._encode_targets(y, incremental,
                                                                        first_pass)
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        seed = self._seed()
        if first_pass:
            self._start(MLP([X.shape[1], *sizes, n_outputs], activation, dtype=self.dtype,
                            seed=seed, loss=loss), out_activation)
        elif n_outputs != self.n_outputs_:
            raise ValueError(f"y has {n_outputs} outputs; the network fitted before has "
                             f"{self.n_outputs_} (warm_start and partial_fit keep it)")
        else:
            self._check_kept_network(sizes, activation)
        new_optimizer = not incremental or not hasattr(self, "_lr")
        if new_optimizer:
            # as scikit-learn: learning rate and optimizer state restart
            self._lr = float(self.learning_rate_init)
            if not incremental:
                self.history_ = History()
        X_train, y_train, sw_train, X_val, y_val, sw_val = self._split(X, targets,
                                                                        sample_weight, seed)
        n = X_train.shape[0]
        batch_size = self._batch_size(n)
        if new_optimizer:
            self._optimizer = self._new_optimizer(batch_size)
        else:  # partial_fit keeps the optimizer's state; the penalties follow the chunk
            self._optimizer.l2 = float(self.alpha) / batch_size
            self._optimizer.l1 = float(self.l1) / batch_size
        weighting = {}
        if sw_train is not None:  # scikit-learn's normalisation: by the batch's weight sum
            weighting = dict(sample_weight=sw_train, loss_reduction="weighted_mean")
        schedule = _SklearnSchedule(self, X_val, y_val, sw_val, n, batch_size, incremental,
                                    1.0 if sw_train is None else float(np.mean(sw_train)))
        exact = self._exact_sums(X_train)
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
                        shuffle=bool(self.shuffle), augment=self.augment, exact_sums=exact,
                        **weighting)
                _extend(self.history_, history, schedule.val_scores, self._VAL_KEY)
                if history.diverged:
                    raise ValueError(
                        f"Solver diverged at learning rate {self._lr:g}: the loss or the "
                        f"weights became non-finite, or the mean training loss ran away "
                        f"(above {DIVERGED_LOSS:g} x that of a uniform guess for a "
                        f"classifier). The input data may contain large values and need to be "
                        f"preprocessed, or the learning rate is too large.")
                if history.interrupted:  # Ctrl-C: as scikit-learn, a warning, then fitted
                    warnings.warn("Training interrupted by user.")
                    break
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

    def _exact_sums(self, X):
        """fit's ``exact_sums`` for the training rows ``X``: the parameter, with
        ``"auto"`` resolved (off where the CSR products would run)."""
        if isinstance(self.exact_sums, (bool, np.bool_)):
            return bool(self.exact_sums)
        if not sp.issparse(X):
            return True
        n_rows, n_cols = X.shape
        return not (n_rows > 0 and X.nnz <= CSR_PRODUCTS_MAX_DENSITY * n_rows * n_cols)

    def _start(self, model, out_activation):
        """A first fit's state: the new network and the curves, as scikit-learn's."""
        self.model_ = model
        self.n_layers_ = len(model.layers)
        self.n_outputs_ = model.layers[-1]
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

    def _split(self, X, targets, sample_weight, seed):
        """(X, y, sample_weight) of training and of validation: the early-stopping
        split (stratified for a classifier, as scikit-learn), else all for training."""
        if not self.early_stopping:
            return X, targets, sample_weight, None, None, None
        sw_train = sw_val = None
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
        return X_train, y_train, sw_train, X_val, y_val, sw_val

    def _batch_size(self, n):
        """scikit-learn's batch size for n training rows ("auto": min(200, n))."""
        if self.batch_size == "auto":
            return min(200, n)
        if self.batch_size > n:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. "
                          "It is going to be clipped")
        return int(np.clip(self.batch_size, 1, n))

    def _seed(self):
        if isinstance(self.random_state, numbers.Integral) and not isinstance(
                self.random_state, (bool, np.bool_)):
            if not 0 <= self.random_state < 2**64:
                raise ValueError(f"random_state must be in [0, 2**64), got {self.random_state}")
            return int(self.random_state)
        rng = check_random_state(self.random_state)
        return int(rng.randint(np.iinfo(np.int32).max))

    # -- inference -------------------------------------------------------------
    def _check_X(self, X):
        check_is_fitted(self)
        if is_sparse(X):
            check_sparse_structure(X)
        return _validate_data(self, X, reset=False, dtype=np.dtype(self.dtype), order="C",
                              accept_sparse="csr")

    # -- scikit-learn's attributes ---------------------------------------------
    coefs_ = _network_attribute("coefs_", "Weight matrices ``(fan_in, fan_out)``, views of the "
                                "network's weights; assigning arrays of those shapes copies "
                                "them in (the whole list, or one: ``coefs_[i] = W``).")
    intercepts_ = _network_attribute("intercepts_", "Bias vectors, views of the network's "
                                     "biases; assigning vectors of those lengths copies them in.")

    @property
    def loss_(self):
        check_is_fitted(self)
        if not self.loss_curve_:
            raise AttributeError("loss_ is set by the first epoch")
        return self.loss_curve_[-1]
