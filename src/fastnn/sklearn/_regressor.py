"""fastnn's ``MLPRegressor``: scikit-learn's regressor on fastnn's trainer."""
from __future__ import annotations

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.metrics import r2_score
from sklearn.utils.validation import check_is_fitted

from .. import threads
from ._base import _BaseMLP, _validate_data
from ._docs import COMMON_ATTRS_DOC, COMMON_PARAMS_DOC

_REGRESSION_LOSSES = ("squared_error", "poisson")


class MLPRegressor(RegressorMixin, _BaseMLP):
    __doc__ = """Multilayer perceptron regressor: scikit-learn's API, fastnn's compiled trainer.

    Parameters are scikit-learn's ``MLPRegressor``'s, with the same meaning,
    except where noted; fastnn's own are ``l1``, ``dtype``, ``n_threads``, ``augment`` and
    ``exact_sums``.

    loss : {"squared_error"}, default="squared_error"
        scikit-learn's squared error: identity outputs, the gradient
        ``(output - y) / batch`` (fastnn's ``MLP(loss="mse")``).
        ``"poisson"`` raises ``NotImplementedError``.
    """ + COMMON_PARAMS_DOC + """
    Attributes
    ----------
    n_features_in_, feature_names_in_, coefs_, intercepts_, loss_,
    loss_curve_, best_loss_, best_validation_score_, validation_scores_,
    n_iter_, t_, n_layers_, n_outputs_, out_activation_ : as scikit-learn's
    (``out_activation_ == "identity"``; ``n_outputs_``: y's columns, 1 for a
    1-D y, whose ``predict`` is then 1-D). ``loss_`` is scikit-learn's: half
    the epoch's mean squared error (per element, before each update) plus
    ``alpha/(2*batch_size) * sum ||W||^2`` (and ``l1/batch_size * sum |W|``) with
    the end-of-epoch weights (``batch_size`` times the mean weight with
    ``sample_weight``).
    """ + COMMON_ATTRS_DOC + """
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
                 l1=0.0, dtype="float32", n_threads=None, augment=None, exact_sums="auto"):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change,
            max_fun=max_fun, l1=l1, dtype=dtype, n_threads=n_threads, augment=augment,
            exact_sums=exact_sums)
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

    def to_onnx(self, path):
        """Write the fitted network to ``path`` as ONNX (``pip install
        'fastnn[onnx]'``): input ``"X"`` ``(N, n_features_in_)`` of ``dtype``,
        output ``"predictions"`` ``(N, n_outputs_)``. See :mod:`fastnn.export`."""
        check_is_fitted(self)
        self.model_.to_onnx(path)
