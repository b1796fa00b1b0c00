"""Random deformations of training images: affine and elastic, made in the compiled loop.

An :class:`Augment` describes how each training image is deformed, afresh in
every epoch: a random affine map (rotation, zoom, shear, translation, drawn
uniformly from the given ranges), an optional horizontal flip, and an elastic
distortion (Simard, Steinkraus & Platt 2003: a random displacement field,
uniform noise in [-1, 1) per pixel smoothed by a Gaussian of width
``elastic_sigma`` pixels and scaled by ``elastic_alpha`` pixels), resampled
bilinearly, the border pixels repeated outside the image. Pass it to
``MLP.fit(augment=...)`` (or a config's ``augment:`` mapping, or the
estimator's ``augment`` parameter): the compiled training loop deforms each
row as it gathers the batch, by the threads that train, without the GIL.
Evaluation and prediction never augment.

Randomness is counter-based: an image's deformation depends only on (the
model's seed, the epoch, the row's index in the training data), so a run is
bit-reproducible, independent of the thread count and of the batch size, and
resumable from a checkpoint exactly. :func:`fastnn.reference.augment_rows` is
the NumPy twin (the same images, bit for bit).

Transforms compose with ``+`` (each parameter set by at most one side):

>>> from fastnn.augment import Affine, Elastic
>>> aug = Affine(rotation=15, scale=0.15, translation=2) + Elastic(alpha=34, sigma=4)
>>> aug.rotation, aug.elastic_alpha
((-15.0, 15.0), 34.0)
>>> import numpy as np
>>> X = np.zeros((2, 784), np.float32); X[:, 14 * 28 + 10] = 1
>>> Affine(translation=(2, 2)).apply(X, image_shape=(28, 28)).reshape(2, 28, 28)[:, 16, 12]
array([1., 1.], dtype=float32)
"""
import dataclasses
import math
import numbers
from typing import Any, Mapping, NamedTuple, Optional, Tuple, Union

import numpy as np

from . import _kernels
from ._validation import check_X

Range = Union[float, Tuple[float, float]]

#: The largest rotation, in degrees (the kernels' sine and cosine are
#: polynomials exact to 1e-15 up to pi/4).
MAX_ROTATION = 45.0
#: The Gaussian of the elastic field is cut at this many sigmas.
GAUSS_TRUNCATE = 3.0
#: The largest elastic displacement scale (pixels; the kernels' bound, excluded).
MAX_ELASTIC_ALPHA = 1e6


class AugmentParams(NamedTuple):
    """What the kernels take (:func:`fastnn.kernels.augment_rows`,
    ``train_batches(augment=...)``): an image's shape ``(h, w, c)``, the
    uniform ranges ``lo``, ``hi`` (float64, 5) of the angle in radians, the
    zoom factor, the shear, the x and y translation in pixels; ``flip``;
    ``alpha`` and the normalised Gaussian ``gauss`` (float32, odd length) of
    the elastic field (``alpha == 0``: none)."""
    image_shape: Tuple[int, int, int]
    lo: np.ndarray
    hi: np.ndarray
    flip: bool
    alpha: float
    gauss: np.ndarray


def _items(value):
    """The items of ``value``, or () when it cannot be iterated (the caller's
    unpacking then names the error)."""
    try:
        return tuple(value)
    except TypeError:
        return ()


def _range(value, name, low, high):
    """A symmetric range for a number r >= 0 ((-r, r)), or a (lo, hi) pair."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a number or a (low, high) pair, got {value!r}")
    if isinstance(value, (int, float, np.integer, np.floating)):
        r = float(value)
        if not math.isfinite(r) or r < 0:
            raise ValueError(f"{name} must be a finite number >= 0 (the range (-{name}, {name})) "
                             f"or a (low, high) pair, got {value!r}")
        lo, hi = -r, r
    else:
        # numbers only: float() would read "1" and "2" of the string "12", and True as 1
        if isinstance(value, (str, bytes)) or not all(
                isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))
                for v in _items(value)):
            raise TypeError(f"{name} must be a number or a (low, high) pair of numbers, "
                            f"got {value!r}")
        try:
            lo, hi = (float(v) for v in value)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be a number or a (low, high) pair of numbers, "
                            f"got {value!r}") from None
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
            raise ValueError(f"{name} must be a finite (low, high) pair with low <= high, "
                             f"got {value!r}")
    if lo < low or hi > high:
        raise ValueError(f"{name} must lie in [{low}, {high}], got ({lo}, {hi})")
    return (lo, hi)


def _shape(value):
    if value is None:
        return None
    try:
        shape = tuple(int(v) for v in value)
        if any(int(v) != v for v in value):
            raise ValueError
    except (TypeError, ValueError):
        raise TypeError(f"image_shape must be (height, width) or (height, width, channels) of "
                        f"ints, got {value!r}") from None
    if len(shape) not in (2, 3) or shape[0] < 2 or shape[1] < 2 or (len(shape) == 3
                                                                     and shape[2] < 1):
        raise ValueError(f"image_shape must be (height, width) or (height, width, channels), "
                         f"height and width >= 2, got {value!r}")
    return shape if len(shape) == 3 else shape + (1,)


@dataclasses.dataclass(frozen=True)
class Augment:
    """Per-image random deformations of rows that are images (see the module).

    rotation : degrees, ``r`` for U(-r, r) or a ``(low, high)`` pair, within ±45;
        a positive angle turns the content counterclockwise as displayed (rows
        down).
    scale : relative zoom, ``s`` for a zoom factor 1 + U(-s, s), or a pair;
        the zoom factor stays above 0.
    shear : horizontal shear factor, ``k`` or a pair, within ±1: a pixel ``y`` rows
        below the centre moves ``-k·y`` columns (the source is read at
        ``x + k·y``), so a positive ``k`` leans the content's top to the right.
    translation : pixels, ``t`` or a pair, drawn for x and y independently; a
        positive value moves the content right (x) and down (y).
    elastic_alpha, elastic_sigma : the elastic field's scale and smoothing,
        in pixels (Simard et al.: 34 and 4); ``elastic_alpha=0``: none.
    flip : mirror left-right with probability 1/2 (only for data where that
        keeps the label: never on by default, and wrong for digits).
    image_shape : ``(height, width)`` or ``(height, width, channels)`` (channels
        last); ``None``: the dataset's when fastnn loaded it, else a square
        single-channel image.
    """
    rotation: Range = 0.0
    scale: Range = 0.0
    shear: Range = 0.0
    translation: Range = 0.0
    elastic_alpha: float = 0.0
    elastic_sigma: float = 0.0
    flip: bool = False
    image_shape: Optional[Tuple[int, ...]] = None

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "rotation", _range(self.rotation, "rotation", -MAX_ROTATION, MAX_ROTATION))
        set_(self, "scale", _range(self.scale, "scale", -0.99, 10.0))
        set_(self, "shear", _range(self.shear, "shear", -1.0, 1.0))
        set_(self, "translation", _range(self.translation, "translation", -1e6, 1e6))
        for name in ("elastic_alpha", "elastic_sigma"):
            v = getattr(self, name)
            if isinstance(v, (bool, np.bool_)) or not isinstance(
                    v, (int, float, np.integer, np.floating)):
                raise TypeError(f"{name} must be a number, got {v!r}")
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
            if name == "elastic_alpha" and v >= MAX_ELASTIC_ALPHA:
                raise ValueError(f"elastic_alpha must be below {MAX_ELASTIC_ALPHA:g} pixels, "
                                 f"got {v!r}")
            set_(self, name, float(v))
        if self.elastic_alpha > 0 and not self.elastic_sigma > 0:
            raise ValueError(f"elastic_sigma must be > 0 when elastic_alpha is set, "
                             f"got {self.elastic_sigma!r}")
        if not isinstance(self.flip, (bool, np.bool_)):
            raise TypeError(f"flip must be a bool, got {self.flip!r}")
        set_(self, "flip", bool(self.flip))
        shape = _shape(self.image_shape)
        set_(self, "image_shape", None if shape is None else
             (shape if shape[2] > 1 else shape[:2]))

    # -- composition and conversions --------------------------------------------
    def __add__(self, other):
        """The composition: each parameter from the side that sets it."""
        if not isinstance(other, Augment):
            return NotImplemented
        plain = Augment()
        merged = {}
        for f in dataclasses.fields(self):
            a, b, none = getattr(self, f.name), getattr(other, f.name), getattr(plain, f.name)
            if a != none and b != none and a != b:
                raise ValueError(f"both augmentations set {f.name} ({a!r} and {b!r})")
            merged[f.name] = a if a != none else b
        return Augment(**merged)

    @classmethod
    def coerce(cls, value, name="augment"):
        """``value`` as an :class:`Augment`: one, a mapping of its parameters
        (a config's ``augment:``), or None (no augmentation)."""
        if value is None or isinstance(value, Augment):
            return value
        if isinstance(value, Mapping):
            known = {f.name for f in dataclasses.fields(cls)}
            unknown = sorted(set(value) - known)
            if unknown:
                raise ValueError(f"{name} has unknown key(s) {unknown}; known keys: "
                                 f"{', '.join(sorted(known))}")
            return cls(**value)
        raise TypeError(f"{name} must be a fastnn.augment.Augment, a mapping of its "
                        f"parameters or None, got {type(value).__name__}")

    def to_dict(self):
        """The parameters as plain values (JSON, configs); ranges as lists."""
        return {f.name: (list(v) if isinstance(v, tuple) else v)
                for f in dataclasses.fields(self) for v in [getattr(self, f.name)]}

    @property
    def is_identity(self):
        """True when no image would change (every range 0, no flip, no field)."""
        return (self.rotation == (0.0, 0.0) and self.scale == (0.0, 0.0)
                and self.shear == (0.0, 0.0) and self.translation == (0.0, 0.0)
                and self.elastic_alpha == 0 and not self.flip)

    def with_image_shape(self, image_shape):
        """This augmentation with ``image_shape`` filled in where it is unset."""
        if self.image_shape is not None or image_shape is None:
            return self
        return dataclasses.replace(self, image_shape=tuple(image_shape))

    def resolve_shape(self, n_features):
        """``(h, w, c)`` for rows of ``n_features`` values; ValueError naming
        image_shape when they do not match."""
        shape = _shape(self.image_shape)
        if shape is None:
            side = math.isqrt(n_features)
            if side * side != n_features or side < 2:
                raise ValueError(f"image_shape must be given to augment rows of {n_features} "
                                 f"values (not a square image), e.g. "
                                 f"Augment(..., image_shape=(height, width))")
            shape = (side, side, 1)
        if shape[0] * shape[1] * shape[2] != n_features:
            raise ValueError(f"image_shape {self.image_shape} does not match rows of "
                             f"{n_features} values")
        return shape

    def kernel_params(self, n_features):
        """The :class:`AugmentParams` of rows of ``n_features`` values."""
        h, w, c = self.resolve_shape(n_features)
        deg = math.pi / 180.0
        # the kernels sample the source at (output position + their shift):
        # an image translated by t is sampled at -t
        lo = np.array([self.rotation[0] * deg, 1.0 + self.scale[0], self.shear[0],
                       -self.translation[1], -self.translation[1]], np.float64)
        hi = np.array([self.rotation[1] * deg, 1.0 + self.scale[1], self.shear[1],
                       -self.translation[0], -self.translation[0]], np.float64)
        alpha = self.elastic_alpha
        if alpha > 0:
            radius = max(1, min(math.ceil(GAUSS_TRUNCATE * self.elastic_sigma), max(h, w) - 1))
            t = np.arange(-radius, radius + 1, dtype=np.float64)
            g = np.exp(-0.5 * (t / self.elastic_sigma) ** 2)
            gauss = (g / g.sum()).astype(np.float32)
        else:
            gauss = np.ones(1, np.float32)
        return AugmentParams((h, w, c), lo, hi, self.flip, alpha, gauss)

    # -- applying it ------------------------------------------------------------
    def apply(self, X, *, seed=0, epoch=0, rows=None, image_shape=None):
        """Deformed copies of ``X[rows]`` (all rows by default) as epoch
        ``epoch`` of a model seeded ``seed`` trains on them (compiled; the
        same images as training makes). ``X``: 2-D float32 or float64."""
        aug = self.with_image_shape(image_shape)
        X = np.asarray(X)
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D (rows of images), got shape {X.shape}")
        dtype = X.dtype if X.dtype in (np.float32, np.float64) else np.dtype(np.float32)
        X = check_X(X, X.shape[1], dtype)
        rows = np.arange(X.shape[0], dtype=np.intp) if rows is None else np.asarray(rows)
        return _kernels.augment_rows(X, rows, seed, epoch, aug.kernel_params(X.shape[1]))


def Affine(rotation: Range = 0.0, scale: Range = 0.0, shear: Range = 0.0,
           translation: Range = 0.0) -> Augment:
    """A random affine map per image (see :class:`Augment`)."""
    return Augment(rotation=rotation, scale=scale, shear=shear, translation=translation)


def Elastic(alpha: float, sigma: float) -> Augment:
    """Simard's elastic distortion: alpha (pixels) times uniform noise smoothed
    by a Gaussian of width sigma (pixels)."""
    return Augment(elastic_alpha=alpha, elastic_sigma=sigma)


def Flip() -> Augment:
    """A left-right mirror with probability 1/2 (for data where it keeps the label)."""
    return Augment(flip=True)


#: The keys of a config's ``augment:`` mapping and their defaults.
KEYS: Mapping[str, Any] = {f.name: f.default for f in dataclasses.fields(Augment)}
