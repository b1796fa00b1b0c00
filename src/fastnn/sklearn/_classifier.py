"""fastnn's ``MLPClassifier``: scikit-learn's classifier on fastnn's trainer."""
from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from sklearn.base import ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import check_is_fitted

from .. import threads
from .._typing import ArrayLike, PathLike
from ._base import _BaseMLP, _validate_data
from ._docs import COMMON_ATTRS_DOC, COMMON_PARAMS_DOC


class MLPClassifier(ClassifierMixin, _BaseMLP):
    __doc__ = """Multilayer perceptron classifier: scikit-learn's API, fastnn's compiled trainer.

    Parameters are scikit-learn's ``MLPClassifier``'s, with the same meaning,
    except where noted; fastnn's own are ``l1``, ``dtype``, ``n_threads``, ``augment`` and
    ``exact_sums``.
    """ + COMMON_PARAMS_DOC + """
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
    as scikit-learn) plus ``alpha/(2*batch_size) * sum ||W||^2`` (and ``l1/batch_size
    * sum |W|``) evaluated with the end-of-epoch weights (scikit-learn evaluates it
    with each batch's); with ``sample_weight``, ``batch_size`` times the training
    rows' mean weight stands for scikit-learn's weight sum of a batch.
    """ + COMMON_ATTRS_DOC + """
    ``X`` may be SciPy sparse (CSR): it trains as the dense ``X`` (bit for bit above
    ``fastnn.kernels.CSR_PRODUCTS_MAX_DENSITY``; below, on the first layer's CSR
    products, up to the order of the sums).
    Not supported: multilabel ``y``, and a ``y`` of one class (scikit-learn's
    MLPClassifier fits one; this one raises ``ValueError``).
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
        try:
            return self._fit(X, y, incremental=True, sample_weight=sample_weight)
        finally:  # taken by a call that got as far as the labels; never left for a later one
            self.__dict__.pop("_partial_classes", None)

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
        """The early-stopping split's strata: the classes, where every class
        present has two rows or more and both parts can hold a row of each;
        else None (a plain random split, where scikit-learn's stratified split
        would fail)."""
        n = len(targets)
        counts = np.bincount(np.asarray(targets))
        k = int((counts > 0).sum())
        n_val = int(np.ceil(self.validation_fraction * n))
        if counts[counts > 0].min() < 2 or n_val < k or n - n_val < k:
            return None
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
