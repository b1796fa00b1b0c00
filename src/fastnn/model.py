"""The model: a multilayer perceptron, a classifier (softmax or one logistic
output) or a regressor (identity outputs, squared error)."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np

from . import kernels, serialization, threads, training
from ._checks import defaults_of
from ._layout import DTYPES, INITS, aligned_zeros, n_params, unflatten
from ._typing import ArrayLike, FloatArray, IntArray, PathLike
from ._validation import (check_choice, check_float, check_int, check_targets, check_X,
                          check_y, is_sparse)
from .metrics import r2_score

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Mapping

    from .augment import Augment
    from .optim import Optimizer
    from .schedules import ScheduleSpec
    from .training import Callback, History

#: ``MLP(loss=...)``: the output layer and its loss (see the class docstring)
LOSSES = tuple(kernels.LOSSES)
_BLOCK = 2048  # rows per forward block in predict/evaluate
# fit's SGD shorthand takes its defaults from fastnn.optim.SGD: written once
_SGD = training.shorthand_defaults()


def _sigmoid(z: FloatArray, out: FloatArray) -> FloatArray:
    """out = 1 / (1 + exp(-z)) (scipy's expit: no overflow warning)."""
    from scipy.special import expit
    return cast(FloatArray, expit(z, out=out))


def _check_rate(value: Any, name: str) -> float:
    return check_float(value, name, low=0.0, high=1.0, high_open=True)


class MLP:
    """Multilayer perceptron for classification or regression, trained by
    mini-batch SGD or Adam.

    Parameters
    ----------
    layers : sequence of int
        Widths from input to output, e.g. ``[784, 128, 10]``. ``[784, 10]`` is
        softmax regression; any number of hidden layers works. The output
        layer is a softmax over ``layers[-1] >= 2`` classes (``loss``
        ``"cross_entropy"``), one logistic unit (``"binary_cross_entropy"``,
        ``layers[-1] == 1``) or ``layers[-1]`` identity outputs (``"mse"``).
    activation : {"relu", "tanh", "sigmoid", "identity"}
        Activation of every hidden layer.
    dtype : {"float32", "float64"}
        Precision of the weights and of all arithmetic.
    seed : int or None
        Seeds the initial weights, the validation split and the shuffling.
        ``None`` draws fresh entropy, recorded in ``self.seed``, so any run
        can be repeated. Same seed, data and arguments give bit-identical
        weights and history.
    init : {"auto", "uniform", "he", "glorot"}
        Weight initialisation; biases start at zero. ``"uniform"``:
        U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as the original NumPy study;
        ``"he"``: N(0, 2/fan_in); ``"glorot"``: U(-a, a) with
        a = sqrt(6/(fan_in+fan_out)); ``"auto"``: He for ReLU, Glorot otherwise.
    dropout : float or sequence of float
        Inverted dropout on the output of every hidden layer (one rate for
        all, or one per hidden layer), in training only: each unit is zeroed
        with this probability and the kept ones scaled by 1/(1-rate). The
        masks come from a counter-based generator keyed by the seed, the
        epoch and the batch, so runs stay bit-reproducible and resumable.
    input_dropout : float
        The same on the input features.
    loss : {"cross_entropy", "binary_cross_entropy", "mse"}
        ``"cross_entropy"`` (default): softmax over the classes, integer labels
        in ``[0, layers[-1])``. ``"binary_cross_entropy"``: two classes through
        one logistic output (``layers[-1] == 1``, scikit-learn's binary
        network), labels 0/1; ``predict_proba`` still has two columns. Never
        chosen automatically: a ``[.., 2]`` network stays a softmax. ``"mse"``:
        regression, ``layers[-1]`` identity outputs trained on the squared
        error ``(1/2) sum_j (output_j - y_j)^2`` per sample, averaged over the
        batch (scikit-learn's squared_error gradient); ``y`` float targets
        ``(n_samples, layers[-1])`` (1-D for one output); ``predict`` returns
        the outputs, ``score`` R² and ``evaluate`` ``(mse, r2)``; the history's
        ``loss``/``val_loss`` are the mean squared error per element and
        ``val_r2`` replaces ``val_accuracy``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import MLP
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 4)); y = (X[:, 0] > 0).astype(int)
    >>> model = MLP([4, 16, 2], seed=0)
    >>> history = model.fit(X, y, epochs=20, batch_size=16, learning_rate=0.1, verbose=False)
    >>> model.score(X, y) > 0.9
    True
    >>> model.predict_proba(X[:3]).sum(axis=1).round(6).tolist()
    [1.0, 1.0, 1.0]
    >>> reg = MLP([4, 16, 1], "tanh", loss="mse", seed=0)
    >>> t = X[:, 0] - 2 * X[:, 1]
    >>> h = reg.fit(X, t, epochs=50, batch_size=16, learning_rate=0.05, verbose=False)
    >>> reg.score(X, t) > 0.95, reg.predict(X[:2]).shape
    (True, (2,))
    """

    def __init__(self, layers: Sequence[int], activation: str = "relu", *,
                 dtype: str | type | np.dtype[Any] = "float32", seed: int | None = None,
                 init: str = "auto", dropout: float | Sequence[float] = 0.0,
                 input_dropout: float = 0.0, loss: str = "cross_entropy") -> None:
        if isinstance(layers, (str, bytes)) or not hasattr(layers, "__len__"):
            raise TypeError(f"layers must be a sequence of ints, got {layers!r}")
        if len(layers) < 2:
            raise ValueError(f"layers must list at least an input and an output width, got {list(layers)}")
        self.layers = tuple(check_int(s, f"layers[{i}]", low=1, high=2**31 - 1)
                            for i, s in enumerate(layers))
        self.loss = check_choice(loss, "loss", LOSSES)
        if self.loss == "cross_entropy" and self.layers[-1] < 2:
            raise ValueError(f"layers[-1] (the number of classes) must be >= 2, got "
                             f"{self.layers[-1]} (one output: loss='binary_cross_entropy' "
                             f"or 'mse')")
        if self.loss == "binary_cross_entropy" and self.layers[-1] != 1:
            raise ValueError(f"layers[-1] must be 1 (one logistic output) for "
                             f"loss='binary_cross_entropy', got {self.layers[-1]}")
        self.activation = check_choice(activation, "activation", kernels.ACTIVATIONS)
        if isinstance(dtype, type) or isinstance(dtype, np.dtype):
            dtype = np.dtype(dtype).name
        self.dtype = np.dtype(check_choice(dtype, "dtype", DTYPES))
        if seed is None:
            seed = int(cast(int, np.random.SeedSequence().entropy) % (2**63))
        self.seed = check_int(seed, "seed", low=0)
        self.init = check_choice(init, "init", INITS)
        n_hidden = len(self.layers) - 2
        if isinstance(dropout, (str, bytes)):
            raise TypeError(f"dropout must be a number or a sequence of numbers, got {dropout!r}")
        if hasattr(dropout, "__len__"):
            rates = cast("Sequence[float]", dropout)
            if len(rates) != n_hidden:
                raise ValueError(f"dropout must give one rate per hidden layer ({n_hidden}), "
                                 f"got {len(rates)}")
            self.dropout = tuple(_check_rate(r, f"dropout[{i}]") for i, r in enumerate(rates))
        else:
            self.dropout = (_check_rate(dropout, "dropout"),) * n_hidden
        self.input_dropout = _check_rate(input_dropout, "input_dropout")
        self._params = aligned_zeros(n_params(self.layers), self.dtype)
        self._epochs_trained = 0
        self.optimizer_: Optimizer | None = None
        self.history_: History | None = None
        self.stop_training = False
        self._initialize()

    # -- parameters ----------------------------------------------------------
    def _initialize(self) -> None:
        rng = np.random.default_rng([self.seed, 0])
        weights, _ = unflatten(self._params, self.layers)
        scheme = self.init
        if scheme == "auto":
            scheme = "he" if self.activation == "relu" else "glorot"
        for W in weights:
            fan_in, fan_out = W.shape
            if scheme == "uniform":
                a = 1.0 / np.sqrt(fan_in)
                W[...] = rng.uniform(-a, a, size=W.shape)
            elif scheme == "he":
                W[...] = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=W.shape)
            else:
                a = np.sqrt(6.0 / (fan_in + fan_out))
                W[...] = rng.uniform(-a, a, size=W.shape)

    @property
    def coefs_(self) -> list[FloatArray]:
        """Weight matrices, one ``(fan_in, fan_out)`` view per layer (scikit-learn's name)."""
        return unflatten(self._params, self.layers)[0]

    @property
    def intercepts_(self) -> list[FloatArray]:
        """Bias vectors, one view per layer (scikit-learn's name)."""
        return unflatten(self._params, self.layers)[1]

    @property
    def n_features_in_(self) -> int:
        return self.layers[0]

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

    @property
    def n_params(self) -> int:
        return self._params.size

    @property
    def parameters(self) -> FloatArray:
        """All parameters as one flat, writeable vector (a view): the weights
        ``W_0 .. W_{L-1}`` row-major, then the biases; ``coefs_`` and
        ``intercepts_`` are views into it."""
        return self._params

    @property
    def dropout_rates(self) -> tuple[float, ...]:
        """``(input_dropout, *dropout)``: the rate of each layer's input, as the
        kernels take it."""
        return (self.input_dropout, *self.dropout)

    @property
    def epochs_trained(self) -> int:
        """Epochs of training this model has had (kept by ``save``/``load``)."""
        return self._epochs_trained

    @epochs_trained.setter
    def epochs_trained(self, value: int) -> None:
        self._epochs_trained = check_int(value, "epochs_trained", low=0)

    def __repr__(self) -> str:
        extra = ""
        if any(self.dropout):
            rates = set(self.dropout)
            extra += f", dropout={self.dropout[0] if len(rates) == 1 else list(self.dropout)!r}"
        if self.input_dropout:
            extra += f", input_dropout={self.input_dropout!r}"
        if self.loss != "cross_entropy":
            extra += f", loss={self.loss!r}"
        return (f"MLP(layers={list(self.layers)}, activation={self.activation!r}, "
                f"dtype={self.dtype.name!r}, seed={self.seed}, init={self.init!r}{extra}) "
                f"# {self.n_params} parameters, {self._epochs_trained} epochs trained")

    # -- training ------------------------------------------------------------
    def fit(self, X: ArrayLike, y: ArrayLike, *, epochs: int = 10, batch_size: int = 128,
            optimizer: Optimizer | str | None = None,
            learning_rate: float = _SGD["learning_rate"], momentum: float = _SGD["momentum"],
            l2: float = _SGD["l2"], l1: float = _SGD["l1"],
            sample_weight: ArrayLike | None = None,
            class_weight: Literal["balanced"] | dict[int, float] | None = None,
            validation_split: float = 0.0,
            validation_data: tuple[ArrayLike, ArrayLike] | None = None,
            early_stopping: int | None = None, monitor: str = "val_loss",
            min_delta: float = 0.0, lr_decay: float | None = None,
            lr_decay_threshold: float = 0.001, min_learning_rate: float = 0.0,
            verbose: bool = True, callbacks: Sequence[Callback] | None = None,
            checkpoint: PathLike | None = None, loss_reduction: str = "mean",
            shuffle: bool = True, lr_schedule: ScheduleSpec = None,
            augment: Augment | Mapping[str, Any] | None = None) -> History:
        """Train; returns a :class:`fastnn.History`.

        X : array-like (n_samples, layers[0]), any real dtype (converted once), or a
            SciPy sparse matrix (made CSR once, never densified whole: the first
            layer's products run on the batch's CSR rows up to
            ``fastnn.kernels.CSR_PRODUCTS_MAX_DENSITY``, else each batch's rows are
            densified in the compiled loop as they are gathered).
        y : integer labels in [0, n_classes_); for ``loss="mse"`` the real
            targets (n_samples, layers[-1]), 1-D for one output.
        optimizer : a :mod:`fastnn.optim` optimizer (``SGD``, ``Adam``) or its
            name; it owns its state, so the same object passed to another
            ``fit`` continues from it. Without it, ``learning_rate``,
            ``momentum``, ``l2`` and ``l1`` are the shorthand for
            ``fastnn.optim.SGD(...)``, which continues the momentum of the
            model's previous SGD fit. ``self.optimizer_`` is the last one used.
        sample_weight : per-sample weights (>= 0) of the training loss;
            class_weight : ``"balanced"`` (n_samples / (n_classes * count),
            counted on the training rows) or ``{class: weight}`` (classifiers
            only). Both multiply: each row's loss is weighted, the batch's loss
            is the sum over its rows divided by its number of rows
            (``loss_reduction="mean"``) or by the sum of its rows' weights
            (``"weighted_mean"``, scikit-learn's normalisation). The history's
            ``loss`` is that weighted mean; ``val_loss`` is unweighted.
        validation_split : fraction of (X, y) held out, stratified and shuffled
            with the model's seed; or ``validation_data=(X_val, y_val)``.
        early_stopping : patience in epochs on ``monitor`` (``"val_loss"`` or
            ``"val_accuracy"``), where an epoch improves only when it beats the
            best by more than ``min_delta`` (None: off). The weights of the
            best epoch are restored at the end of every validated fit.
        lr_decay : multiply the learning rate by this after an epoch whose
            validation accuracy improved by less than ``lr_decay_threshold``,
            but never below ``min_learning_rate`` (the shorthand for
            ``lr_schedule=fastnn.schedules.Plateau(lr_decay, lr_decay_threshold,
            min_learning_rate)``).
        lr_schedule : a :mod:`fastnn.schedules` schedule (``Step``,
            ``Exponential``, ``Cosine``, ``Plateau``, ...), its name, or a
            mapping ``{"name": "cosine", "warmup_epochs": 2, ...}``: the rate
            of each epoch, scaling the optimizer's ``learning_rate`` (None:
            that rate throughout). Applied per epoch; epochs count from 0 in
            each ``fit`` (a fit resumed from a checkpoint continues the count).
        verbose : show a progress bar (tqdm).
        callbacks : objects with Keras-style ``on_*`` hooks (:class:`fastnn.Callback`).
        checkpoint : path; the full training state (weights, optimizer state,
            history, schedule, best weights) is saved there atomically after
            every epoch, and a later ``fit`` with the same path, data and
            arguments resumes from it, giving the weights of an uninterrupted run.
        shuffle : visit the training rows in a fresh random order each epoch
            (seeded by the model's seed and the epoch number); ``False``: in
            their given order.
        loss_reduction : ``"mean"`` (default) steps on the batch's mean
            loss; ``"weighted_mean"`` on its weighted sum divided by the
            batch's weight sum (as ``"mean"`` without weights); ``"sum"`` on
            its sum, as the original reports'
            ``E = -sum_n sum_k t_k ln y_k``, so their learning rates and
            penalties apply as written: the step with ``learning_rate`` eta
            and penalties l1, l2 (added to the summed gradient) equals the
            mean-loss step with eta*B, l1/B, l2/B for batch size B (for Adam:
            eps/B, l1/B, l2/B). A smaller last batch of an epoch (b < B
            rows) is scaled by the nominal B too, i.e. weighs B/b times its
            sum. The history's ``loss`` is the mean per sample either way.
        augment : a :class:`fastnn.augment.Augment` (or a mapping of its
            parameters): every training image is deformed afresh in every
            epoch, in the compiled loop, reproducibly (keyed by the seed, the
            epoch and the row). Rows must be images: ``image_shape`` given, or
            square. Validation, evaluation and prediction never augment.

        All arguments after ``y`` are keyword-only. A call continues from the
        current weights and optimizer state (which live in memory only: a
        model saved and loaded starts with none). Ctrl-C stops within one
        compiled chunk (8,192 samples, or one batch when ``batch_size`` is
        larger: a batch runs without the GIL, uninterruptible) and returns
        the history so far (with the best validation epoch's weights when
        validating). A non-finite loss stops training with a warning and
        restores the last finite (best) weights.

        >>> import numpy as np
        >>> from fastnn import MLP
        >>> from fastnn.optim import Adam
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(300, 5)); y = (X[:, 0] + X[:, 1] > 0).astype(int)
        >>> model = MLP([5, 32, 2], dropout=0.1, seed=0)
        >>> h = model.fit(X, y, epochs=30, batch_size=32, optimizer=Adam(0.01),
        ...               class_weight="balanced", verbose=False)
        >>> model.score(X, y) > 0.9, model.optimizer_.t
        (True, 300)
        """
        return training.fit(
            self, X, y, epochs=epochs, batch_size=batch_size, optimizer=optimizer,
            learning_rate=learning_rate, momentum=momentum, l2=l2, l1=l1,
            sample_weight=sample_weight, class_weight=class_weight,
            validation_split=validation_split, validation_data=validation_data,
            early_stopping=early_stopping, monitor=monitor, min_delta=min_delta,
            lr_decay=lr_decay, lr_decay_threshold=lr_decay_threshold,
            min_learning_rate=min_learning_rate, verbose=verbose, callbacks=callbacks,
            checkpoint=checkpoint, loss_reduction=loss_reduction, shuffle=shuffle,
            lr_schedule=lr_schedule, augment=augment)

    @classmethod
    def fit_defaults(cls) -> dict[str, Any]:
        """The defaults of :meth:`fit`'s keyword arguments (configs use them)."""
        return defaults_of(cls.fit)

    @classmethod
    def init_defaults(cls) -> dict[str, Any]:
        """The defaults of the constructor's keyword arguments."""
        return defaults_of(cls.__init__)

    # -- inference -----------------------------------------------------------
    def _check_X(self, X: ArrayLike, name: str = "X") -> FloatArray:
        return check_X(X, self.layers[0], self.dtype, name)

    def _logits_blocks(self, X: FloatArray,
                       check: bool = False) -> Iterator[tuple[int, FloatArray]]:
        """Yield ``(start, logits)`` over blocks of rows of a validated X.

        ``check``: raise ValueError where a row's largest logit is not finite (NaN,
        +inf, or all -inf: finite inputs can still overflow the dtype), as softmax
        and argmax are then undefined."""
        weights, biases = unflatten(self._params, self.layers)
        n = X.shape[0]
        block = min(_BLOCK, n)
        bufs = [np.empty((block, w), dtype=self.dtype) for w in self.layers[1:]]
        last = len(weights) - 1
        sparse = is_sparse(X)  # CSR: a block of rows at a time, densified
        dense: Any = np.empty((block, self.layers[0]), dtype=self.dtype) if sparse else None
        with threads.limit():
            for start in range(0, n, block):
                a: Any = X[start:start + block]
                rows = a.shape[0]
                if sparse:
                    a = a.toarray(out=dense[:rows])
                for i, (W, b) in enumerate(zip(weights, biases)):
                    out = bufs[i][:rows]
                    a = kernels.dense_forward(a, W, b, self.activation if i < last else "identity",
                                              out=out)
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

    # -- persistence ---------------------------------------------------------
    def save(self, path: PathLike) -> None:
        """Save to ``path`` (.npz with a JSON header), atomically.

        The file holds the architecture and weights, for inference or a fresh
        ``fit``; to resume training exactly (momentum, best weights, history),
        use ``fit(..., checkpoint=path)``.
        """
        serialization.save_model(self, path)

    def to_onnx(self, path: PathLike, classes: ArrayLike | None = None) -> None:
        """Write the model to ``path`` as an ONNX graph, to serve it without
        fastnn (needs ``pip install 'fastnn[onnx]'``).

        Input ``"X"``: ``(N, n_features)`` of the model's dtype; outputs
        ``"probabilities"`` ``(N, n_classes)`` and ``"label"`` ``(N,)``: int64
        class indices, or ``classes[index]`` when ``classes`` (one label per
        class: integers, floats or strings) is given. Opset 13; see
        :mod:`fastnn.export`.
        """
        from .export import to_onnx
        to_onnx(self, path, classes)

    @classmethod
    def load(cls, path: PathLike) -> MLP:
        """Load a model saved by :meth:`save`; never executes code from the file."""
        return serialization.load_model(path, cls)
