"""What a model's outputs mean and how they are computed: the forward pass in
blocks of rows, and ``predict``, ``predict_proba``, ``predict_log_proba``,
``decision_function``, ``evaluate`` and ``score`` on it. :class:`fastnn.MLP`
inherits these from :class:`Inference`, which reads only the model's public
attributes (``layers``, ``dtype``, ``activation``, ``loss``, ``parameters``)."""
from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from . import kernels, threads
from ._layout import unflatten
from ._typing import ArrayLike, FloatArray, IntArray
from ._validation import check_targets, check_X, check_y, is_sparse
from .metrics import r2_score

_BLOCK = 2048  # rows per forward block in predict/evaluate
#: The most memory a block of a sparse X densified for the dense products takes
#: (a CSR X denser than CSR_PRODUCTS_MAX_DENSITY; fewer rows per block when wide).
_SPARSE_DENSE_BYTES = 256 << 20
# A block of W multiply-adds is split into p parts, one a thread, at a cost
# of about p * _THREAD_START_MACS + W / p: a helper thread's start and join
# (about 0.2 ms, paid in sequence by the caller) count as that many
# multiply-adds of one core. So p <= sqrt(W / _THREAD_START_MACS), least cost:
# two parts from 4x that (16.8M multiply-adds a thread; two threads won from
# 12M on [784, 128, 10], Zen 4), and many cores get fewer, larger parts.
_THREAD_START_MACS = 1 << 23


def _sigmoid(z: FloatArray, out: FloatArray) -> FloatArray:
    """out = 1 / (1 + exp(-z)) (scipy's expit: no overflow warning)."""
    from scipy.special import expit
    return cast(FloatArray, expit(z, out=out))


class Inference:
    """The methods of :class:`fastnn.MLP` that run the network forward (see there)."""

    if TYPE_CHECKING:  # pragma: no cover -- set by fastnn.MLP
        layers: tuple[int, ...]
        dtype: np.dtype[Any]
        activation: str
        loss: str

        @property
        def parameters(self) -> FloatArray: ...

    @property
    def is_classifier(self) -> bool:
        """False for ``loss="mse"`` (a regressor)."""
        return bool(self.loss != "mse")

    @property
    def n_classes_(self) -> int:
        """The classes (2 for one logistic output); AttributeError for a regressor."""
        if not self.is_classifier:
            raise AttributeError("n_classes_: a regressor (loss='mse') has no classes; "
                                 "its outputs are n_outputs_")
        return 2 if self.loss == "binary_cross_entropy" else self.layers[-1]

    @property
    def classes_(self) -> IntArray:
        """The class labels, ``0 .. n_classes_-1`` (int64): ``predict`` returns
        these, and column ``j`` of ``predict_proba`` is class ``classes_[j]``
        (classifiers only)."""
        return np.arange(self.n_classes_, dtype=np.int64)

    @property
    def n_outputs_(self) -> int:
        """Units of the output layer (scikit-learn's name)."""
        return self.layers[-1]

    @property
    def metric_name(self) -> str:
        """What ``evaluate`` returns second and the history logs: ``"accuracy"``
        for a classifier, ``"r2"`` for a regressor."""
        return "accuracy" if self.is_classifier else "r2"
    # -- inference -----------------------------------------------------------
    def _check_X(self, X: ArrayLike, name: str = "X") -> FloatArray:
        return check_X(X, self.layers[0], self.dtype, name)

    def _logits_blocks(self, X: FloatArray,
                       check: bool = False) -> Iterator[tuple[int, FloatArray]]:
        """Yield ``(start, logits)`` over blocks of rows of a validated X.

        ``check``: raise ValueError where a row's largest logit is not finite (NaN,
        +inf, or all -inf: finite inputs can still overflow the dtype), as softmax
        and argmax are then undefined."""
        weights, biases = unflatten(self.parameters, self.layers)
        n, n_in = X.shape
        last = len(weights) - 1
        acts = [self.activation] * last + ["identity"]
        row_macs = sum(w.size for w in weights)
        # A CSR X: the first layer on its rows themselves (nnz x width
        # multiply-adds, as training's) up to the density where training's
        # products switch; denser, each block densified (the dense X's bits),
        # in blocks of at most _SPARSE_DENSE_BYTES
        sparse = is_sparse(X)
        nnz = cast(Any, X).nnz if sparse else 0
        csr_first = sparse and nnz <= kernels.CSR_PRODUCTS_MAX_DENSITY * n * n_in
        block = min(_BLOCK, n)
        if sparse and not csr_first:
            block = max(1, min(block, _SPARSE_DENSE_BYTES // (n_in * self.dtype.itemsize)))
        if csr_first:  # the first layer costs a row's entries times its width
            row_macs += max(1, nnz // n) * self.layers[1] - weights[0].size
        dense: Any = (np.empty((block, n_in), dtype=self.dtype) if sparse and not csr_first
                      else None)
        bufs = [np.empty((block, w), dtype=self.dtype) for w in self.layers[1:]]
        n_threads = threads.training_threads()

        def forward(x: Any, start: int, lo: int, hi: int) -> bool:
            # rows lo:hi of the block x (rows start: of X) through every layer,
            # into the same rows of bufs (rows are independent: the same bits
            # whatever the split)
            first = 0
            if csr_first:
                a = kernels.csr_forward(X, weights[0], biases[0], acts[0],
                                        out=bufs[0][lo:hi], rows=(start + lo, start + hi))
                first = 1
            else:
                a = x[lo:hi]
            for i in range(first, len(weights)):
                a = kernels.dense_forward(a, weights[i], biases[i], acts[i],
                                          out=bufs[i][lo:hi])
            return True

        with threads.limit():
            for start in range(0, n, block):
                rows = min(block, n - start)
                x: Any = None
                if not csr_first:
                    x = X[start:start + block]
                    if sparse:
                        x = x.toarray(out=dense[:rows])
                most = math.isqrt(rows * row_macs // _THREAD_START_MACS)
                parts = max(1, min(n_threads, rows, most))
                threads.split_work(rows, parts, functools.partial(forward, x, start))
                a = bufs[last][:rows]
                if check and not np.isfinite(a.max(axis=1)).all():
                    raise ValueError(f"X: the network's outputs overflow {self.dtype.name} "
                                     f"(NaN or inf logits) for some rows: the inputs are too "
                                     f"large for this model, or its weights are")
                yield start, a

    def _require(self, classifier: bool, what: str) -> None:
        if self.is_classifier != classifier:
            kind = "classifiers" if classifier else "regressors (loss='mse')"
            raise AttributeError(f"{what} is for {kind}; this model has loss={self.loss!r}")

    def predict_proba(self, X: ArrayLike) -> FloatArray:
        """Class probabilities, shape (n_samples, n_classes); rows sum to 1
        (one logistic output: the columns ``1 - p`` and ``p``). Classifiers only."""
        self._require(True, "predict_proba")
        X = self._check_X(X)
        proba = np.empty((X.shape[0], self.n_classes_), dtype=self.dtype)
        for start, logits in self._logits_blocks(X, check=True):
            out = proba[start:start + logits.shape[0]]
            if self.loss == "binary_cross_entropy":
                _sigmoid(logits[:, 0], out[:, 1])
                np.subtract(1, out[:, 1], out=out[:, 0])
            else:
                kernels.softmax(logits, out=out)
        return proba

    def predict_log_proba(self, X: ArrayLike) -> FloatArray:
        """Log class probabilities, shape (n_samples, n_classes): the log-softmax
        of the logits, ``z - max(z) - log(sum(exp(z - max(z))))`` per row,
        finite (and accurate) where ``predict_proba`` underflows to 0.

        >>> import numpy as np
        >>> from fastnn import MLP
        >>> model = MLP([3, 2], seed=0)
        >>> model.coefs_[0][...] = [[60.0, -60.0], [0, 0], [0, 0]]
        >>> model.predict_log_proba(np.array([[1.0, 0, 0]])).round(3).tolist()
        [[0.0, -120.0]]
        """
        self._require(True, "predict_log_proba")
        X = self._check_X(X)
        if self.loss == "binary_cross_entropy":  # log(sigmoid(+-z)) = -logaddexp(0, -+z)
            out = np.empty((X.shape[0], 2), dtype=self.dtype)
            for start, logits in self._logits_blocks(X, check=True):
                z = logits[:, 0]
                np.negative(np.logaddexp(0, z), out=out[start:start + z.shape[0], 0])
                np.negative(np.logaddexp(0, -z), out=out[start:start + z.shape[0], 1])
            return out
        out = np.empty((X.shape[0], self.layers[-1]), dtype=self.dtype)
        for start, logits in self._logits_blocks(X, check=True):
            z = out[start:start + logits.shape[0]]
            np.subtract(logits, logits.max(axis=1, keepdims=True), out=z)
            z -= np.log(np.exp(z).sum(axis=1, keepdims=True))
        return out

    def predict(self, X: ArrayLike) -> FloatArray | IntArray:
        """Predicted class labels, shape (n_samples,); for a regressor the
        outputs, (n_samples, n_outputs), or (n_samples,) for one output."""
        X = self._check_X(X)
        if not self.is_classifier:
            out = np.empty((X.shape[0], self.layers[-1]), dtype=self.dtype)
            for start, z in self._logits_blocks(X, check=True):
                out[start:start + z.shape[0]] = z
            return out[:, 0].copy() if self.layers[-1] == 1 else out
        pred = np.empty(X.shape[0], dtype=np.intp)
        for start, logits in self._logits_blocks(X, check=True):
            rows = slice(start, start + logits.shape[0])
            if self.loss == "binary_cross_entropy":
                np.greater(logits[:, 0], 0, out=pred[rows], casting="unsafe")
            else:
                pred[rows] = logits.argmax(axis=1)
        return pred

    def decision_function(self, X: ArrayLike) -> FloatArray:
        """The output layer's values before the softmax/logistic function (the
        outputs of a regressor), shape (n_samples, layers[-1])."""
        X = self._check_X(X)
        out = np.empty((X.shape[0], self.layers[-1]), dtype=self.dtype)
        for start, logits in self._logits_blocks(X):
            out[start:start + logits.shape[0]] = logits
        return out

    def check_y(self, y: ArrayLike, n_samples: int, name: str = "y") -> IntArray | FloatArray:
        """``y`` validated for this model: intp labels in [0, n_classes_), or a
        regressor's targets (n_samples, n_outputs) in the model's dtype."""
        if self.is_classifier:
            return check_y(y, n_samples, self.n_classes_, name)
        return check_targets(y, n_samples, self.layers[-1], self.dtype, name)

    def evaluate(self, X: ArrayLike, y: ArrayLike, *,
                 check_overflow: bool = True) -> tuple[float, float]:
        """``(mean cross-entropy loss, accuracy)`` on (X, y) for a classifier
        (binary cross-entropy for one logistic output); ``(mean squared error,
        R²)`` for a regressor (the error averaged over samples and outputs,
        R² averaged over the outputs, as scikit-learn's ``r2_score``).

        ``check_overflow``: raise ValueError where the network's outputs
        overflow (NaN or inf logits); ``False`` returns a non-finite loss
        instead (training uses that to detect divergence)."""
        X = self._check_X(X)
        y = self.check_y(y, X.shape[0])
        return self._evaluate_checked(X, y, check=check_overflow)

    def _evaluate_checked(self, X: FloatArray, y: Any,
                          check: bool = False) -> tuple[float, float]:
        if not self.is_classifier:
            return self._evaluate_regression(X, y, check)
        loss_sum, correct = 0.0, 0
        grad = None
        loss_fn = (kernels.sigmoid_cross_entropy if self.loss == "binary_cross_entropy"
                   else kernels.softmax_cross_entropy)
        for start, logits in self._logits_blocks(X, check):
            rows = logits.shape[0]
            labels = y[start:start + rows]
            if grad is None or grad.shape[0] != rows:
                grad = np.empty_like(logits)
            loss, _, hits = loss_fn(logits, labels, grad=grad, return_correct=True)
            loss_sum += loss * rows
            correct += hits
        n = X.shape[0]
        return loss_sum / n, correct / n

    def _evaluate_regression(self, X: FloatArray, y: FloatArray,
                             check: bool) -> tuple[float, float]:
        pred = np.empty(y.shape, dtype=self.dtype)
        for start, z in self._logits_blocks(X, check):
            pred[start:start + z.shape[0]] = z
        with np.errstate(all="ignore"):
            err = pred.astype(np.float64) - y
            mse = float(np.mean(err * err))
        if not np.isfinite(mse):
            return mse, float("nan")
        return mse, r2_score(y, pred)

    def score(self, X: ArrayLike, y: ArrayLike) -> float:
        """Accuracy on (X, y), as scikit-learn's ``score``; R² for a regressor."""
        return self.evaluate(X, y)[1]
