"""Saving and loading models and training checkpoints, safely.

A file is a NumPy ``.npz`` archive of plain numeric arrays, one of which,
``header``, is UTF-8 JSON bytes (format name, version, layers, activation,
dtype, ...). Files are read with ``allow_pickle=False``, so loading can never
run code, and every field is checked before use: a truncated, tampered or
foreign file raises ``ValueError``. Files are written atomically: to a
temporary file in the same folder, flushed to disk, then ``os.replace``-d
over the target, so a crash mid-save leaves the previous file intact.
"""
import json
import os
import tempfile
import threading
import zipfile
import zlib

import numpy as np

from ._layout import n_params
from ._kernels import ACTIVATIONS

MODEL_FORMAT = "fastnn-mlp"
CHECKPOINT_FORMAT = "fastnn-checkpoint"
FORMAT_VERSION = 1
_UMASK_LOCK = threading.Lock()
_DTYPES = ("float32", "float64")
_INITS = ("auto", "uniform", "he", "glorot")


def _check_path(path):
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {path!r}")
    return os.fspath(path)


def atomic_savez(path, arrays):
    """Write ``arrays`` (name -> ndarray) to ``path`` as .npz, atomically."""
    path = _check_path(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".fastnn-", suffix=".tmp")
    try:
        # mkstemp makes the file 0600; give it the mode a plain open() would
        os.chmod(tmp, _file_mode(path))
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _file_mode(path):
    """The target's current permissions, or 0o666 less the umask for a new file."""
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        with _UMASK_LOCK:  # os.umask can only be read by setting it
            umask = os.umask(0o022)
            os.umask(umask)
        return 0o666 & ~umask


def _header_array(header):
    return np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)


def read_npz(path, expected_format):
    """Read a fastnn .npz into ``(header, arrays)``; ValueError if it is not one."""
    path = _check_path(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path!r}")
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):  # a bare .npy array
            raise ValueError("not an .npz archive")
        with data:
            arrays = {name: data[name] for name in data.files}
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error,
            NotImplementedError) as exc:
        raise ValueError(f"{path!r} is not a readable fastnn file: {exc}") from None
    for name, value in arrays.items():
        if not isinstance(value, np.ndarray):  # a zip member that is not a .npy
            raise ValueError(f"{path!r} is not a fastnn file: member {name!r} is not an array")
    raw = arrays.pop("header", None)
    if raw is None or raw.dtype != np.uint8 or raw.ndim != 1:
        raise ValueError(f"{path!r} is not a fastnn file: no valid header")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path!r} has a corrupt header: {exc}") from None
    if not isinstance(header, dict) or header.get("format") != expected_format:
        raise ValueError(f"{path!r} is not a {expected_format} file "
                         f"(format {header.get('format') if isinstance(header, dict) else None!r})")
    if header.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path!r} has format version {header.get('version')!r}; "
                         f"this fastnn reads version {FORMAT_VERSION}")
    return header, arrays


def model_header(model):
    return {"format": MODEL_FORMAT, "version": FORMAT_VERSION, "layers": list(model.layers),
            "activation": model.activation, "dtype": model.dtype.name, "seed": model.seed,
            "init": model.init, "epochs_trained": model.epochs_trained,
            "dropout": list(model.dropout), "input_dropout": model.input_dropout}


def check_model_header(header, path):
    """Validate the model fields of a header; returns (layers, activation, dtype)."""
    layers = header.get("layers")
    if (not isinstance(layers, list) or len(layers) < 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in layers)):
        raise ValueError(f"{path!r}: invalid layers {layers!r}")
    if layers[-1] < 2:
        raise ValueError(f"{path!r}: the output layer must have at least 2 classes")
    activation = header.get("activation")
    if activation not in ACTIVATIONS:
        raise ValueError(f"{path!r}: invalid activation {activation!r}")
    dtype = header.get("dtype")
    if dtype not in _DTYPES:
        raise ValueError(f"{path!r}: invalid dtype {dtype!r}")
    return layers, activation, np.dtype(dtype)


def check_param_array(arr, layers, dtype, name, path, copies=1):
    """``arr`` if it is a finite ``dtype`` vector of ``copies`` parameter vectors."""
    expected = (copies * n_params(layers),)
    if arr is None or arr.dtype != dtype or arr.shape != expected:
        got = None if arr is None else f"{arr.dtype} {arr.shape}"
        raise ValueError(f"{path!r}: {name} must be {dtype} of shape {expected}, got {got}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{path!r}: {name} holds NaN or inf")
    return np.ascontiguousarray(arr)


def save_model(model, path):
    atomic_savez(path, {"header": _header_array(model_header(model)), "params": model.parameters})


def load_model(path, cls):
    header, arrays = read_npz(path, MODEL_FORMAT)
    layers, activation, dtype = check_model_header(header, path)
    params = check_param_array(arrays.get("params"), layers, dtype, "params", path)
    seed = header.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"{path!r}: invalid seed {seed!r}")
    epochs = header.get("epochs_trained", 0)
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 0:
        raise ValueError(f"{path!r}: invalid epochs_trained {epochs!r}")
    init = header.get("init", "auto")
    if init not in _INITS:
        raise ValueError(f"{path!r}: invalid init {init!r}")
    try:
        model = cls(layers, activation=activation, dtype=dtype.name, seed=seed, init=init,
                    dropout=header.get("dropout", 0.0),
                    input_dropout=header.get("input_dropout", 0.0))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path!r}: invalid model header: {exc}") from None
    model.parameters[...] = params
    model.epochs_trained = epochs
    return model


def save_checkpoint(path, model, state, arrays):
    """A model plus training state (JSON-able ``state``, named ``arrays``)."""
    header = model_header(model)
    header.update(format=CHECKPOINT_FORMAT, state=state)
    atomic_savez(path, {"header": _header_array(header), "params": model.parameters,
                        **arrays})


def load_checkpoint(path):
    """``(header, arrays)`` of a checkpoint, with the model fields validated."""
    header, arrays = read_npz(path, CHECKPOINT_FORMAT)
    layers, _, dtype = check_model_header(header, path)
    arrays["params"] = check_param_array(arrays.get("params"), layers, dtype, "params", path)
    slots = arrays.get("slots")
    if slots is None or slots.ndim != 2 or slots.shape[0] < 1:
        raise ValueError(f"{path!r}: checkpoint has no optimizer state (slots)")
    arrays["slots"] = check_param_array(slots.ravel(), layers, dtype, "slots", path,
                                        copies=slots.shape[0]).reshape(slots.shape)
    if "best" in arrays:
        arrays["best"] = check_param_array(arrays["best"], layers, dtype, "best", path,
                                           copies=1 + slots.shape[0])
    if not isinstance(header.get("state"), dict):
        raise ValueError(f"{path!r}: checkpoint has no training state")
    return header, arrays
