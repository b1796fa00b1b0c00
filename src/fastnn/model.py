"""The model: a multilayer perceptron classifier with a softmax output."""
import numpy as np

from . import kernels, serialization, threads, training
from ._checks import defaults_of
from ._layout import DTYPES, INITS, aligned_zeros, n_params, unflatten
from ._validation import check_choice, check_float, check_int, check_X, check_y

_BLOCK = 2048  # rows per forward block in predict/evaluate
# fit's SGD shorthand takes its defaults from fastnn.optim.SGD: written once
_SGD = training.shorthand_defaults()


def _check_rate(value, name):
    return check_float(value, name, low=0.0, high=1.0, high_open=True)


class MLP:
    """Multilayer perceptron for classification, trained by mini-batch SGD or Adam.

    Parameters
    ----------
    layers : sequence of int
        Widths from input to output, e.g. ``[784, 128, 10]``. ``[784, 10]`` is
        softmax regression; any number of hidden layers works. The output
        layer is a softmax over ``layers[-1] >= 2`` classes.
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
    """

    def __init__(self, layers, activation="relu", *, dtype="float32", seed=None, init="auto",
                 dropout=0.0, input_dropout=0.0):
        if isinstance(layers, (str, bytes)) or not hasattr(layers, "__len__"):
            raise TypeError(f"layers must be a sequence of ints, got {layers!r}")
        if len(layers) < 2:
            raise ValueError(f"layers must list at least an input and an output width, got {list(layers)}")
        self.layers = tuple(check_int(s, f"layers[{i}]", low=1, high=2**31 - 1)
                            for i, s in enumerate(layers))
        if self.layers[-1] < 2:
            raise ValueError(f"layers[-1] (the number of classes) must be >= 2, got {self.layers[-1]}")
        self.activation = check_choice(activation, "activation", kernels.ACTIVATIONS)
        if isinstance(dtype, type) or isinstance(dtype, np.dtype):
            dtype = np.dtype(dtype).name
        self.dtype = np.dtype(check_choice(dtype, "dtype", DTYPES))
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % (2**63))
        self.seed = check_int(seed, "seed", low=0)
        self.init = check_choice(init, "init", INITS)
        n_hidden = len(self.layers) - 2
        if isinstance(dropout, (str, bytes)):
            raise TypeError(f"dropout must be a number or a sequence of numbers, got {dropout!r}")
        if hasattr(dropout, "__len__"):
            if len(dropout) != n_hidden:
                raise ValueError(f"dropout must give one rate per hidden layer ({n_hidden}), "
                                 f"got {len(dropout)}")
            self.dropout = tuple(_check_rate(r, f"dropout[{i}]") for i, r in enumerate(dropout))
        else:
            self.dropout = (_check_rate(dropout, "dropout"),) * n_hidden
        self.input_dropout = _check_rate(input_dropout, "input_dropout")
        self._params = aligned_zeros(n_params(self.layers), self.dtype)
        self._epochs_trained = 0
        self.optimizer_ = None
        self.history_ = None
        self.stop_training = False
        self._initialize()

    # -- parameters ----------------------------------------------------------
    def _initialize(self):
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
    def coefs_(self):
        """Weight matrices, one ``(fan_in, fan_out)`` view per layer (scikit-learn's name)."""
        return unflatten(self._params, self.layers)[0]

    @property
    def intercepts_(self):
        """Bias vectors, one view per layer (scikit-learn's name)."""
        return unflatten(self._params, self.layers)[1]

    @property
    def n_features_in_(self):
        return self.layers[0]

    @property
    def n_classes_(self):
        return self.layers[-1]

    @property
    def n_params(self):
        return self._params.size

    @property
    def parameters(self):
        """All parameters as one flat, writeable vector (a view): the weights
        ``W_0 .. W_{L-1}`` row-major, then the biases; ``coefs_`` and
        ``intercepts_`` are views into it."""
        return self._params

    @property
    def dropout_rates(self):
        """``(input_dropout, *dropout)``: the rate of each layer's input, as the
        kernels take it."""
        return (self.input_dropout, *self.dropout)

    @property
    def epochs_trained(self):
        """Epochs of training this model has had (kept by ``save``/``load``)."""
        return self._epochs_trained

    @epochs_trained.setter
    def epochs_trained(self, value):
        self._epochs_trained = check_int(value, "epochs_trained", low=0)

    def __repr__(self):
        extra = ""
        if any(self.dropout):
            rates = set(self.dropout)
            extra += f", dropout={self.dropout[0] if len(rates) == 1 else list(self.dropout)!r}"
        if self.input_dropout:
            extra += f", input_dropout={self.input_dropout!r}"
        return (f"MLP(layers={list(self.layers)}, activation={self.activation!r}, "
                f"dtype={self.dtype.name!r}, seed={self.seed}, init={self.init!r}{extra}) "
                f"# {self.n_params} parameters, {self._epochs_trained} epochs trained")

    # -- training ------------------------------------------------------------
    def fit(self, X, y, *, epochs=10, batch_size=128, optimizer=None,
            learning_rate=_SGD["learning_rate"], momentum=_SGD["momentum"], l2=_SGD["l2"],
            l1=_SGD["l1"], sample_weight=None, class_weight=None, validation_split=0.0,
            validation_data=None, early_stopping=None, monitor="val_loss", min_delta=0.0,
            lr_decay=None, lr_decay_threshold=0.001, min_learning_rate=0.0, verbose=True,
            callbacks=None, checkpoint=None, loss_reduction="mean", shuffle=True):
        """Train; returns a :class:`fastnn.History`.

        X : array-like (n_samples, layers[0]), any real dtype (converted once).
        y : integer labels in [0, layers[-1]).
        optimizer : a :mod:`fastnn.optim` optimizer (``SGD``, ``Adam``) or its
            name; it owns its state, so the same object passed to another
            ``fit`` continues from it. Without it, ``learning_rate``,
            ``momentum``, ``l2`` and ``l1`` are the shorthand for
            ``fastnn.optim.SGD(...)``, which continues the momentum of the
            model's previous SGD fit. ``self.optimizer_`` is the last one used.
        sample_weight : per-sample weights (>= 0) of the training loss;
            class_weight : ``"balanced"`` (n_samples / (n_classes * count),
            counted on the training rows) or ``{class: weight}``. Both
            multiply: each row's cross-entropy is weighted, the batch's loss
            is the sum over its rows divided by its number of rows. The
            history's ``loss`` is that weighted mean; ``val_loss`` is unweighted.
        validation_split : fraction of (X, y) held out, stratified and shuffled
            with the model's seed; or ``validation_data=(X_val, y_val)``.
        early_stopping : patience in epochs on ``monitor`` (``"val_loss"`` or
            ``"val_accuracy"``), where an epoch improves only when it beats the
            best by more than ``min_delta`` (None: off). The weights of the
            best epoch are restored at the end of every validated fit.
        lr_decay : multiply the learning rate by this after an epoch whose
            validation accuracy improved by less than ``lr_decay_threshold``,
            but never below ``min_learning_rate``.
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
            cross-entropy; ``"sum"`` on its sum, as the original reports'
            ``E = -sum_n sum_k t_k ln y_k``, so their learning rates and
            penalties apply as written: the step with ``learning_rate`` eta
            and penalties l1, l2 (added to the summed gradient) equals the
            mean-loss step with eta*B, l1/B, l2/B for batch size B (for Adam:
            eps/B, l1/B, l2/B). A smaller last batch of an epoch (b < B
            rows) is scaled by the nominal B too, i.e. weighs B/b times its
            sum. The history's ``loss`` is the mean per sample either way.

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
            checkpoint=checkpoint, loss_reduction=loss_reduction, shuffle=shuffle)

    @classmethod
    def fit_defaults(cls):
        """The defaults of :meth:`fit`'s keyword arguments (configs use them)."""
        return defaults_of(cls.fit)

    @classmethod
    def init_defaults(cls):
        """The defaults of the constructor's keyword arguments."""
        return defaults_of(cls.__init__)

    # -- inference -----------------------------------------------------------
    def _check_X(self, X, name="X"):
        return check_X(X, self.layers[0], self.dtype, name)

    def _logits_blocks(self, X, check=False):
        """Yield ``(start, logits)`` over blocks of rows of a validated X.

        ``check``: raise ValueError where a row's largest logit is not finite (NaN,
        +inf, or all -inf: finite inputs can still overflow the dtype), as softmax
        and argmax are then undefined."""
        weights, biases = unflatten(self._params, self.layers)
        n = X.shape[0]
        block = min(_BLOCK, n)
        bufs = [np.empty((block, w), dtype=self.dtype) for w in self.layers[1:]]
        last = len(weights) - 1
        with threads.limit():
            for start in range(0, n, block):
                a = X[start:start + block]
                rows = a.shape[0]
                for i, (W, b) in enumerate(zip(weights, biases)):
                    out = bufs[i][:rows]
                    a = kernels.dense_forward(a, W, b, self.activation if i < last else "identity",
                                              out=out)
                if check and not np.isfinite(a.max(axis=1)).all():
                    raise ValueError(f"X: the network's outputs overflow {self.dtype.name} "
                                     f"(NaN or inf logits) for some rows: the inputs are too "
                                     f"large for this model, or its weights are")
                yield start, a

    def predict_proba(self, X):
        """Class probabilities, shape (n_samples, n_classes); rows sum to 1."""
        X = self._check_X(X)
        proba = np.empty((X.shape[0], self.layers[-1]), dtype=self.dtype)
        for start, logits in self._logits_blocks(X, check=True):
            kernels.softmax(logits, out=proba[start:start + logits.shape[0]])
        return proba

    def predict(self, X):
        """Predicted class labels, shape (n_samples,)."""
        X = self._check_X(X)
        pred = np.empty(X.shape[0], dtype=np.intp)
        for start, logits in self._logits_blocks(X, check=True):
            pred[start:start + logits.shape[0]] = logits.argmax(axis=1)
        return pred

    def decision_function(self, X):
        """The logits (the output layer before the softmax), shape (n_samples, n_classes)."""
        X = self._check_X(X)
        out = np.empty((X.shape[0], self.layers[-1]), dtype=self.dtype)
        for start, logits in self._logits_blocks(X):
            out[start:start + logits.shape[0]] = logits
        return out

    def evaluate(self, X, y, *, check_overflow=True):
        """``(mean cross-entropy loss, accuracy)`` on (X, y).

        ``check_overflow``: raise ValueError where the network's outputs
        overflow (NaN or inf logits); ``False`` returns a non-finite loss
        instead (training uses that to detect divergence)."""
        X = self._check_X(X)
        y = check_y(y, X.shape[0], self.layers[-1])
        return self._evaluate_checked(X, y, check=check_overflow)

    def _evaluate_checked(self, X, y, check=False):
        loss_sum, correct = 0.0, 0
        grad = None
        for start, logits in self._logits_blocks(X, check):
            rows = logits.shape[0]
            labels = y[start:start + rows]
            if grad is None or grad.shape[0] != rows:
                grad = np.empty_like(logits)
            loss, _, hits = kernels.softmax_cross_entropy(logits, labels, grad=grad,
                                                          return_correct=True)
            loss_sum += loss * rows
            correct += hits
        n = X.shape[0]
        return loss_sum / n, correct / n

    def score(self, X, y):
        """Accuracy on (X, y), as scikit-learn's ``score``."""
        return self.evaluate(X, y)[1]

    # -- persistence ---------------------------------------------------------
    def save(self, path):
        """Save to ``path`` (.npz with a JSON header), atomically.

        The file holds the architecture and weights, for inference or a fresh
        ``fit``; to resume training exactly (momentum, best weights, history),
        use ``fit(..., checkpoint=path)``.
        """
        serialization.save_model(self, path)

    @classmethod
    def load(cls, path):
        """Load a model saved by :meth:`save`; never executes code from the file."""
        return serialization.load_model(path, cls)
