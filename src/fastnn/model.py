"""The model: a multilayer perceptron, a classifier (softmax or one logistic
output) or a regressor (identity outputs, squared error)."""
from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from . import kernels, serialization, training
from ._checks import defaults_of
from ._layout import DTYPES, INITS, aligned_zeros, n_params, unflatten
from ._typing import ArrayLike, FloatArray, PathLike
from ._validation import assign_arrays, check_choice, check_float, check_int
from .inference import Inference
from .training import FitConfig

if TYPE_CHECKING:  # pragma: no cover
    from .optim import Optimizer
    from .training import History

#: ``MLP(loss=...)``: the output layer and its loss (see the class docstring)
LOSSES = tuple(kernels.LOSSES)


def _check_rate(value: Any, name: str) -> float:
    return check_float(value, name, low=0.0, high=1.0, high_open=True)



class _Views(list):
    """A list of views into a model's parameters (``coefs_``, ``intercepts_``)
    whose item assignment copies into the view, checked, as scikit-learn's idiom
    ``clf.coefs_[0] = W`` expects (a plain list would take W and drop it)."""

    def __init__(self, views: list[FloatArray], name: str) -> None:
        super().__init__(views)
        self._name = name

    def __setitem__(self, index: Any, value: Any) -> None:
        if isinstance(index, slice):  # as many arrays as the slice has layers
            assign_arrays(list.__getitem__(self, index), value, self._name,
                          range(len(self))[index])
            return
        view = list.__getitem__(self, index)  # IndexError as a list's
        assign_arrays([view], [value], self._name, [index])

    def __delitem__(self, index: Any) -> None:
        raise TypeError(f"{self._name} holds one array per layer: none can be removed")

class MLP(Inference):
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
        if isinstance(layers, np.ndarray) and layers.ndim != 1:
            raise TypeError(f"layers must be a sequence of ints, got an array of shape "
                            f"{layers.shape}")
        if isinstance(layers, (str, bytes, set, frozenset, Mapping)) or not (
                isinstance(layers, (Sequence, np.ndarray))):  # ordered: no set, no dict
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
        #: whether ``seed=None`` drew the seed (a fit that resumes a checkpoint then
        #: takes the checkpoint's, as a fresh process draws another)
        self.seed_drawn = seed is None
        if seed is None:
            seed = int(cast(int, np.random.SeedSequence().entropy) % (2**63))
        self.seed = check_int(seed, "seed", low=0, high=2**64 - 1)  # the kernels' uint64 key
        self.init = check_choice(init, "init", INITS)
        n_hidden = len(self.layers) - 2
        if isinstance(dropout, np.ndarray) and dropout.ndim == 0:
            dropout = dropout.item()  # a 0-d array is its number
        if isinstance(dropout, (str, bytes, set, frozenset, Mapping)):
            raise TypeError(f"dropout must be a number or a sequence of numbers, got {dropout!r}")
        if hasattr(dropout, "__len__"):
            rates = cast("Sequence[float]", dropout)
            if len(rates) != n_hidden:
                raise ValueError(f"dropout must give one rate per hidden layer ({n_hidden}), "
                                 f"got {len(rates)}")
            self.dropout = tuple(_check_rate(r, f"dropout[{i}]") for i, r in enumerate(rates))
        else:
            rate = _check_rate(dropout, "dropout")
            if rate and not n_hidden:  # it would have nothing to act on
                raise ValueError(f"dropout={rate!r} acts on hidden layers, and layers "
                                 f"{list(self.layers)} has none (input_dropout acts on the "
                                 f"inputs)")
            self.dropout = (rate,) * n_hidden
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
        """Weight matrices, one ``(fan_in, fan_out)`` view per layer (scikit-learn's
        name). Assigning a list of arrays of those shapes copies them in, and so
        does assigning one (``model.coefs_[0] = W``)."""
        return _Views(unflatten(self._params, self.layers)[0], "coefs_")

    @coefs_.setter
    def coefs_(self, values: Sequence[ArrayLike]) -> None:
        assign_arrays(self.coefs_, values, "coefs_")

    @property
    def intercepts_(self) -> list[FloatArray]:
        """Bias vectors, one view per layer (scikit-learn's name). Assigning a
        list of vectors of those lengths copies them in, and so does assigning
        one (``model.intercepts_[0] = b``)."""
        return _Views(unflatten(self._params, self.layers)[1], "intercepts_")

    @intercepts_.setter
    def intercepts_(self, values: Sequence[ArrayLike]) -> None:
        assign_arrays(self.intercepts_, values, "intercepts_")

    @property
    def n_features_in_(self) -> int:
        return self.layers[0]

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
    def fit(self, X: ArrayLike, y: ArrayLike, *, config: FitConfig | None = None,
            sample_weight: ArrayLike | None = None,
            validation_data: tuple[ArrayLike, ArrayLike] | None = None,
            **options: Any) -> History:
        """Train; returns a :class:`fastnn.History`.

        X : array-like (n_samples, layers[0]), any real dtype (converted once), or a
            SciPy sparse matrix (made CSR once, never densified whole: the first
            layer's products run on the batch's CSR rows up to
            ``fastnn.kernels.CSR_PRODUCTS_MAX_DENSITY``, else each batch's rows are
            densified in the compiled loop as they are gathered).
        y : integer labels in [0, n_classes_); for ``loss="mse"`` the real
            targets (n_samples, layers[-1]), 1-D for one output.
        sample_weight : per-sample weights (>= 0) of the training loss (times
            ``class_weight``'s; see :class:`fastnn.training.FitConfig`).
        validation_data : ``(X_val, y_val)``, instead of ``validation_split``.
        config : a :class:`fastnn.training.FitConfig`: how to train.
        **options : its fields by keyword (``epochs=10``, ``batch_size=128``,
            ``optimizer``, ``learning_rate``, ``momentum``, ``l2``, ``l1``,
            ``class_weight``, ``validation_split``, ``early_stopping``,
            ``monitor``, ``min_delta``, ``lr_decay``, ``lr_decay_threshold``,
            ``min_learning_rate``, ``verbose``, ``callbacks``, ``checkpoint``,
            ``loss_reduction``, ``shuffle``, ``lr_schedule``, ``augment``;
            the signature lists them with their defaults), replacing
            ``config``'s: their meaning is documented there.

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
        kernels = options.pop("kernels", None)  # training.fit's (fastnn.reference: the twin)
        config = FitConfig.of(config, options)
        before = None
        if config.checkpoint is not None and self.seed_drawn and self.epochs_trained == 0:
            # "the same call after a crash" drew another seed: resume the checkpoint's
            # (a model of that seed; resuming then loads the checkpoint's weights,
            # or says why it cannot, and this model is left as it was)
            seed = serialization.checkpoint_seed(config.checkpoint)
            if seed is not None and seed != self.seed:
                before = (self.seed, self._params.copy())
                self.seed, self.seed_drawn = seed, False
                self._params[...] = 0
                self._initialize()
        try:
            return training.fit(self, X, y, config, sample_weight=sample_weight,
                                validation_data=validation_data, kernels=kernels)
        except BaseException:
            if before is not None and self.epochs_trained == 0:  # nothing resumed
                self.seed, self.seed_drawn = before[0], True
                self._params[...] = before[1]
            raise

    @classmethod
    def fit_defaults(cls) -> dict[str, Any]:
        """The defaults of :meth:`fit`'s keyword arguments: the fields of
        :class:`fastnn.training.FitConfig` (configs use them)."""
        return FitConfig.defaults()

    @classmethod
    def init_defaults(cls) -> dict[str, Any]:
        """The defaults of the constructor's keyword arguments."""
        return defaults_of(cls.__init__)

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


def _fit_signature() -> inspect.Signature:
    """MLP.fit's signature, its keywords generated from :class:`FitConfig`'s
    fields (their defaults written there only), for ``help`` and ``inspect``."""
    own = inspect.signature(MLP.fit)
    params = [p for p in own.parameters.values() if p.kind is not p.VAR_KEYWORD]
    params += [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default,
                                 annotation=f.type) for f in dataclasses.fields(FitConfig)]
    return own.replace(parameters=params)


MLP.fit.__signature__ = _fit_signature()  # type: ignore[attr-defined]
