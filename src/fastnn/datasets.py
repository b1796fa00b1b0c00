"""MNIST and Fashion-MNIST: IDX parsing, local folders, verified downloads;
and a generated regression set, Friedman #1 (``"friedman1"``: no files).

Where the files are looked for, in order: the ``data_dir`` argument, the
``FASTNN_DATA`` environment variable, the user cache
(``$XDG_CACHE_HOME/fastnn/<dataset>``, default ``~/.cache/fastnn/<dataset>``).
A given folder holds the dataset's files, or a subfolder named after the
dataset holds them (one folder for several datasets); label files known (by
checksum) to be another dataset's are an error, not a silent swap.
Each of the four standard files may be gzip-compressed (``.gz``) or not.
Files missing from the cache are downloaded from the public mirrors, their
published MD5 checked, and only then renamed into the cache; offline, the
error lists the missing files and where to put them. IDX files are checked
(magic number, dimensions, length) before use.

>>> from fastnn.datasets import load_mnist
>>> (X_train, y_train), (X_test, y_test) = load_mnist("../shared/data/mnist")  # doctest: +SKIP
>>> X_train.shape, X_train.dtype, y_train[:5]                                 # doctest: +SKIP
((60000, 784), dtype('float32'), array([5, 0, 4, 1, 9], dtype=uint8))
"""
from __future__ import annotations

import gzip
import hashlib
import math
import os
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._typing import PathLike
from ._validation import check_choice

NORMALIZATIONS = ("minmax", "standard", "none")

_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

DATASETS: dict[str, dict[str, Any]] = {
    "mnist": {
        "mirrors": ["https://ossci-datasets.s3.amazonaws.com/mnist/",
                    "https://storage.googleapis.com/cvdf-datasets/mnist/",
                    "http://yann.lecun.com/exdb/mnist/"],
        "classes": [str(d) for d in range(10)],
        "image_shape": (28, 28),
        "md5": {"train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
                "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
                "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"},
        # the decompressed labels, which recompressed copies keep
        "labels_sha256": {
            "train-labels-idx1-ubyte":
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "t10k-labels-idx1-ubyte":
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"},
    },
    "fashion-mnist": {
        "mirrors": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
        "image_shape": (28, 28),
        "classes": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                    "Sneaker", "Bag", "Ankle boot"],
        "md5": {"train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
                "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
                "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"},
    },
}

#: Generated regression sets (no files, no download): name -> (train rows, test rows,
#: features). ``"friedman1"``: Friedman (1991)'s first function, as scikit-learn's
#: ``make_friedman1``: x uniform in [0, 1]^10, y = 10 sin(pi x0 x1) + 20 (x2 - 0.5)^2
#: + 10 x3 + 5 x4 + N(0, 1) (x5..x9 unused), drawn with NumPy's PCG64 seeded 0.
GENERATED = {"friedman1": (20000, 5000, 10)}
#: Every name ``load_dataset`` takes.
DATASET_NAMES = (*DATASETS, *GENERATED)

# IDX type codes -> big-endian dtypes
#: What the loaders return: ``((X_train, y_train), (X_test, y_test))``.
Dataset = tuple[tuple[NDArray[np.float32], NDArray[np.uint8]],
                tuple[NDArray[np.float32], NDArray[np.uint8]]]

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class DatasetNotFoundError(FileNotFoundError):
    """The dataset's files are neither on disk nor downloadable."""


def parse_idx(data: bytes, name: str = "IDX data") -> np.ndarray:
    """Parse the bytes of an IDX file into an ndarray (native byte order).

    Checks the magic number (two zero bytes, a known type code, ndim >= 1),
    that the header fits, and that the payload length equals the product of
    the dimensions; raises ``ValueError`` naming ``name`` otherwise.
    """
    if len(data) < 4:
        raise ValueError(f"{name}: too short for an IDX header ({len(data)} bytes)")
    if data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES or data[3] < 1:
        raise ValueError(f"{name}: bad IDX magic number {data[:4].hex()}")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{name}: truncated IDX header")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = header + math.prod(shape) * dtype.itemsize  # Python ints: no overflow
    if len(data) != expected:
        raise ValueError(f"{name}: length {len(data)} bytes does not match its dimensions "
                         f"{shape} ({expected} bytes expected)")
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=False)


def read_idx(path: PathLike) -> np.ndarray:
    """Read an IDX file, gzip-compressed or not (by content, not by name)."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"{path}: corrupt or truncated gzip data: {exc}") from None
    return parse_idx(raw, str(path))


def default_cache_dir(dataset: str = "mnist") -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fastnn" / dataset


def _find(folder, stem):
    for candidate in (folder / stem, folder / (stem + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def _md5(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download(url, dest, md5, timeout=30):
    """Fetch ``url`` to ``dest``: into a temporary file beside it, MD5-verified,
    then renamed; a failed or mismatched download never lands at ``dest``."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".download-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=timeout) as r:
            for block in iter(lambda: r.read(1 << 20), b""):
                f.write(block)
        got = _md5(tmp)
        if got != md5:
            raise ValueError(f"checksum mismatch for {url}: MD5 {got}, expected {md5}")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def _known_as(path):
    """``{(dataset, file stem)}`` that the label file ``path`` is, whatever its
    name, by the published MD5 of the .gz file, or by the SHA-256 of the labels
    where fastnn knows it (MNIST's: so recompressed or uncompressed copies of
    MNIST are named too); empty when unknown."""
    raw = path.read_bytes()
    md5 = hashlib.md5(raw).hexdigest() if path.suffix == ".gz" else None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error):
            return set()  # read_idx names the corruption
    sha = hashlib.sha256(raw).hexdigest()
    out = {(name, stem.removesuffix(".gz")) for name, info in DATASETS.items()
           for stem, digest in info["md5"].items() if md5 is not None and md5 == digest}
    out |= {(name, stem) for name, info in DATASETS.items()
            for stem, digest in info.get("labels_sha256", {}).items() if sha == digest}
    return out


def _identify(path):
    """The datasets whose label file of this name ``path`` is (see :func:`_known_as`)."""
    stem = path.name.removesuffix(".gz")
    return {name for name, known in _known_as(path) if known == stem}


def _check_identity(dataset, found):
    """DatasetNotFoundError when a label file found for ``dataset`` is known to be
    another dataset's (the same file names: a folder of MNIST given for
    Fashion-MNIST would otherwise train on digits, labelled as clothes), or
    this dataset's other split (train and test files swapped or renamed). Files
    fastnn cannot identify pass."""
    for key in ("train_labels", "test_labels"):
        path = found[key]
        if path is None:
            continue
        known = _known_as(path)
        stem = path.name.removesuffix(".gz")
        if not known or (dataset, stem) in known:
            continue
        other = sorted(known)[0]
        if not any(name == dataset for name, _ in known):
            raise DatasetNotFoundError(
                f"{path} is {other[0]}'s file (by its checksum), not {dataset}'s: put "
                f"{dataset}'s four files in a folder of their own (or in a subfolder "
                f"{dataset!r} of {str(path.parent)!r}) and pass data_dir= / set "
                f"FASTNN_DATA to it, or unset FASTNN_DATA to download them into the "
                f"user cache")
        theirs = next(s for name, s in sorted(known) if name == dataset)
        raise DatasetNotFoundError(
            f"{path} holds {dataset}'s {theirs} (by its checksum), not its {stem}: the "
            f"training and test files are swapped or renamed")


def _locate(dataset, data_dir, download_missing):
    """Paths of the four files, downloading into the cache when allowed."""
    if data_dir is not None and not isinstance(data_dir, (str, os.PathLike)):
        raise TypeError(f"data_dir must be a folder path (str or os.PathLike), got {data_dir!r}")
    if data_dir is None:
        data_dir = os.environ.get("FASTNN_DATA") or None
    explicit = data_dir is not None
    folder = Path(data_dir) if explicit else default_cache_dir(dataset)
    if explicit and not folder.is_dir():
        raise DatasetNotFoundError(f"data folder {str(folder)!r} "
                                   f"{'is a file, not a folder' if folder.exists() else 'does not exist'}")
    found = {key: _find(folder, stem) for key, stem in _FILES.items()}
    if explicit and (folder / dataset).is_dir():
        # a folder of datasets, one subfolder each (MNIST's files may sit at the
        # top): the subfolder unless the top holds this dataset's four files
        try:
            _check_identity(dataset, found)
            top = None not in found.values()
        except DatasetNotFoundError:  # the top's files are another dataset's
            top = False
        if not top:
            folder = folder / dataset
            found = {key: _find(folder, stem) for key, stem in _FILES.items()}
    if explicit:
        _check_identity(dataset, found)
    missing = [_FILES[k] for k, p in found.items() if p is None]
    if missing and not explicit and download_missing:
        info = DATASETS[dataset]
        errors = []
        for key, stem in _FILES.items():
            if found[key] is not None:
                continue
            name = stem + ".gz"
            for mirror in info["mirrors"]:
                try:
                    found[key] = download(mirror + name, folder / name, info["md5"][name])
                    break
                except (OSError, urllib.error.URLError, ValueError) as exc:
                    errors.append(f"{mirror}{name}: {exc}")
        missing = [_FILES[k] for k, p in found.items() if p is None]
        if missing:
            raise DatasetNotFoundError(
                f"{dataset}: could not download {', '.join(missing)} "
                f"({'; '.join(errors[-3:])}). Put the files (optionally .gz) in {folder} "
                f"or pass data_dir= / set FASTNN_DATA")
    if missing:
        raise DatasetNotFoundError(
            f"{dataset}: missing {', '.join(m + '[.gz]' for m in missing)} in {folder}; "
            f"put the files there, or pass data_dir= / set FASTNN_DATA to their folder")
    return found


def class_names(dataset: str = "mnist") -> list[str]:
    """The names of ``dataset``'s ten classes, by label (none for a regression set).

    >>> class_names("fashion-mnist")[:3]
    ['T-shirt/top', 'Trouser', 'Pullover']
    >>> class_names("mnist")[7]
    '7'
    >>> class_names("friedman1")
    []
    """
    check_choice(dataset, "dataset", DATASET_NAMES)
    if dataset in GENERATED:
        return []
    return list(DATASETS[dataset]["classes"])


def image_shape(dataset="mnist"):
    """The (height, width) of ``dataset``'s images (its rows are these, flattened);
    None for a set whose rows are not images.

    >>> image_shape("mnist")
    (28, 28)
    """
    check_choice(dataset, "dataset", DATASET_NAMES)
    return tuple(DATASETS[dataset]["image_shape"]) if dataset in DATASETS else None


def is_regression(dataset):
    """Whether ``dataset`` has real targets (a generated regression set)."""
    check_choice(dataset, "dataset", DATASET_NAMES)
    return dataset in GENERATED


def friedman1(n_samples, seed=0, noise=1.0):
    """``(X, y)``: Friedman #1 with 10 features, float32 (see :data:`GENERATED`).

    >>> X, y = friedman1(4)
    >>> X.shape, y.shape, X.dtype, bool((X >= 0).all() and (X <= 1).all())
    ((4, 10), (4,), dtype('float32'), True)
    """
    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(n_samples, 10))
    y = (10 * np.sin(np.pi * X[:, 0] * X[:, 1]) + 20 * (X[:, 2] - 0.5) ** 2 + 10 * X[:, 3]
         + 5 * X[:, 4] + noise * rng.standard_normal(n_samples))
    return X.astype(np.float32), y.astype(np.float32)


def _load_generated(dataset, normalize):
    """A generated set's ``((X_train, y_train), (X_test, y_test))``; ``normalize``:
    ``minmax`` and ``none`` leave the features in [0, 1], ``standard`` z-scores each
    column with the training rows' mean and deviation."""
    n_train, n_test, _ = GENERATED[dataset]
    X, y = friedman1(n_train + n_test)
    if normalize == "standard":
        mean, std = X[:n_train].mean(0), X[:n_train].std(0)
        X = (X - mean) / np.maximum(std, 1e-8)
    return (X[:n_train], y[:n_train]), (X[n_train:], y[n_train:])


def find_dataset(dataset: str = "mnist", data_dir: PathLike | None = None,
                 download: bool = True) -> Path:
    """The folder that holds ``dataset``'s four IDX files, looked up exactly as
    :func:`load_dataset` does: ``data_dir``, else ``$FASTNN_DATA``, else the
    user cache (``$XDG_CACHE_HOME/fastnn/<dataset>``, default
    ``~/.cache/fastnn/<dataset>``), where missing files are downloaded and
    MD5-verified when ``download`` is true. Raises
    :class:`DatasetNotFoundError` (naming the folder and the missing files)
    when they cannot be found or fetched. The test suite's ``mnist_path``
    fixture uses it, so tests find the data wherever fastnn itself does.

    >>> find_dataset("mnist", "../shared/data/mnist")  # doctest: +SKIP
    PosixPath('../shared/data/mnist')
    """
    check_choice(dataset, "dataset", DATASETS)
    return _locate(dataset, data_dir, download)["train_images"].parent


def normalize_images(X: np.ndarray, normalize: str) -> NDArray[np.float32]:
    """uint8 images (n, 784) -> float32 features: ``minmax`` scales to [0, 1];
    ``standard`` z-scores each image (as the original study); ``none`` casts."""
    check_choice(normalize, "normalize", NORMALIZATIONS)
    X = X.astype(np.float32)
    if normalize == "minmax":
        X /= 255.0
    elif normalize == "standard":
        X -= X.mean(axis=1, keepdims=True)
        std = X.std(axis=1, keepdims=True)
        X /= np.maximum(std, 1e-8)
    return X


def load_dataset(dataset: str = "mnist", data_dir: PathLike | None = None,
                 normalize: str = "minmax", download: bool = True) -> Dataset:
    """``((X_train, y_train), (X_test, y_test))``; X float32 (n, 784), y uint8; for a
    generated regression set (:data:`GENERATED`) X float32 (n, 10), y float32."""
    check_choice(dataset, "dataset", DATASET_NAMES)
    check_choice(normalize, "normalize", NORMALIZATIONS)
    if dataset in GENERATED:
        return _load_generated(dataset, normalize)
    paths = _locate(dataset, data_dir, download)
    arrays = {key: read_idx(path) for key, path in paths.items()}
    out = []
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or images.dtype != np.uint8:
            raise ValueError(f"{paths[split + '_images']}: expected uint8 images of shape "
                             f"(n, rows, cols), got {images.dtype} {images.shape}")
        shape = tuple(DATASETS[dataset]["image_shape"])
        if images.shape[1:] != shape:  # (and so train and test agree)
            raise ValueError(f"{paths[split + '_images']}: {dataset}'s images are "
                             f"{shape[0]}x{shape[1]}, this file's {images.shape[1]}x"
                             f"{images.shape[2]}")
        if labels.ndim != 1 or labels.dtype != np.uint8 or labels.shape[0] != images.shape[0]:
            raise ValueError(f"{paths[split + '_labels']}: expected {images.shape[0]} uint8 labels, "
                             f"got {labels.dtype} {labels.shape}")
        if labels.size and labels.max() > 9:
            raise ValueError(f"{paths[split + '_labels']}: labels must be 0..9, got {labels.max()}")
        X = normalize_images(images.reshape(images.shape[0], -1), normalize)
        out.append((X, labels))
    return (out[0], out[1])


def load_mnist(data_dir: PathLike | None = None, normalize: str = "minmax",
               download: bool = True) -> Dataset:
    """MNIST digits: ``((X_train, y_train), (X_test, y_test))``, 60,000 + 10,000 images."""
    return load_dataset("mnist", data_dir, normalize, download)


def load_fashion_mnist(data_dir: PathLike | None = None, normalize: str = "minmax",
                       download: bool = True) -> Dataset:
    """Fashion-MNIST (same format as MNIST): ``((X_train, y_train), (X_test, y_test))``."""
    return load_dataset("fashion-mnist", data_dir, normalize, download)
