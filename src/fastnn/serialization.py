"""Saving and loading models and training checkpoints, safely.

A file is a NumPy ``.npz`` archive, stored (not compressed), of plain numeric
arrays, one of which, ``header``, is UTF-8 JSON bytes (format name, version,
layers, activation, dtype, ...). Loading never unpickles (object arrays are
refused) and never runs code, reads only the members the format names, and
checks every member's declared size and the arrays' .npy headers against the
JSON header and the file's size before reading any array, so a file cannot
make fastnn allocate more than its own size (no compression bombs, no giant
declared layers). A truncated, tampered, foreign or hostile file raises
``ValueError`` naming it. Files are written atomically
(:mod:`fastnn._atomic`): to a temporary file in the same folder, flushed to
disk, then ``os.replace``-d over the target, so a crash mid-save leaves the
previous file intact.
"""
import json
import os
import struct
import zipfile
import zlib

import numpy as np

from ._atomic import _check_path, atomic_open
from ._layout import DTYPES, INITS, n_params
from ._kernels import ACTIVATIONS, LOSSES

MODEL_FORMAT = "fastnn-mlp"
CHECKPOINT_FORMAT = "fastnn-checkpoint"
FORMAT_VERSION = 1
#: The members (arrays) each format holds: (required, optional). Nothing else is read.
_MEMBERS = {MODEL_FORMAT: (("header", "params"), ()),
            CHECKPOINT_FORMAT: (("header", "params", "slots"), ("best",))}
_KNOWN = {name for req, opt in _MEMBERS.values() for name in (*req, *opt)}
#: The JSON header's largest size (a checkpoint's holds the history: ~100 bytes an epoch).
MAX_HEADER_BYTES = 8 << 20
_READ_CHUNK = 1 << 20


class _Invalid(ValueError):
    """A file refused by a check of this module (its message names the file)."""


def atomic_savez(path, arrays):
    """Write ``arrays`` (name -> ndarray) to ``path`` as .npz (uncompressed), atomically."""
    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)


def _header_array(header):
    return np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)


#: What reading a damaged or foreign archive can raise (zipfile, zlib, struct, numpy).
_READ_ERRORS = (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error,
                NotImplementedError, RuntimeError, struct.error, OverflowError)


def _is_seed(value):
    """Whether a header's ``seed`` is one: an int (not a bool) in [0, 2**64)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**64


def read_npz(path, expected_format):
    """Read a fastnn .npz into ``(header, arrays)``; ValueError if it is not one.

    Only the members the format names are read, and only after every check
    that needs no array data: the zip's members are stored (uncompressed, so a
    member can never expand beyond the bytes it takes in the file), known, and
    their sizes add up to at most the file's; the JSON header (read first, at
    most :data:`MAX_HEADER_BYTES`) names the format, version, layers and dtype;
    each array's .npy header declares the dtype and shape those imply, and as
    many bytes as the member holds. Memory use is bounded by the file's size.
    """
    path = _check_path(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path!r}")
    if os.path.isdir(path):  # as saving there says
        raise IsADirectoryError(f"cannot read {path!r}: it is a folder")
    try:
        if not zipfile.is_zipfile(path):  # e.g. a bare .npy array
            raise _Invalid(f"{path!r} is not a readable fastnn file: not an .npz archive")
        with zipfile.ZipFile(path) as zf:
            members = _check_members(zf, path, os.path.getsize(path))
            header = _read_header(zf, members, path, expected_format)
            required, optional = _MEMBERS[expected_format]
            unexpected = sorted(set(members) - set(required) - set(optional))
            if unexpected:
                raise _Invalid(f"{path!r}: unexpected member {unexpected[0] + '.npy'!r} in a "
                               f"{expected_format} file")
            missing = [name for name in required if name not in members]
            if missing:
                raise _Invalid(f"{path!r}: no member {missing[0] + '.npy'!r}")
            try:
                layers, _, dtype = check_model_header(header, path)
            except ValueError as exc:
                raise _Invalid(str(exc)) from None
            shapes = _expected_shapes(expected_format, layers, members, zf, dtype, path)
            arrays = {name: _read_data(zf, members[name], shape, dtype, offset, path, name)
                      for name, (shape, offset) in shapes.items()}
    except _Invalid as exc:
        raise ValueError(str(exc)) from None
    except _READ_ERRORS as exc:
        raise ValueError(f"{path!r} is not a readable fastnn file: {exc}") from None
    return header, arrays


def _check_members(zf, path, file_size):
    """``{name: ZipInfo}`` of the archive's members, each a stored .npy of a known
    name, whose declared sizes fit in the file; nothing is read."""
    members, total = {}, 0
    for info in zf.infolist():
        name = info.filename
        stem = name[:-4] if name.endswith(".npy") else None
        if stem not in _KNOWN:
            raise _Invalid(f"{path!r} is not a fastnn file: unexpected member {name!r}")
        if stem in members:
            raise _Invalid(f"{path!r}: member {name!r} appears twice")
        if info.flag_bits & 0x1:
            raise _Invalid(f"{path!r}: member {name!r} is encrypted")
        if info.compress_type != zipfile.ZIP_STORED or info.file_size != info.compress_size:
            raise _Invalid(f"{path!r}: member {name!r} is compressed (fastnn writes its "
                           f"files uncompressed; a compressed member could expand without "
                           f"bound)")
        total += info.file_size
        if total > file_size:
            raise _Invalid(f"{path!r}: member {name!r} declares {info.file_size} bytes; the "
                           f"members declare more bytes than the file's {file_size}")
        members[stem] = info
    return members


def _npy_header(zf, info, path, name):
    """``(shape, dtype, offset)`` of a member's .npy header, checked against the
    member's size; reads the header only."""
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise _Invalid(f"{path!r}: member {name!r} has .npy version {version}")
        offset = f.tell()
    if any(d < 0 for d in shape):
        raise _Invalid(f"{path!r}: member {name!r} has a negative dimension {shape}")
    if fortran and len(shape) > 1:
        raise _Invalid(f"{path!r}: member {name!r} is in Fortran order")
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise _Invalid(f"{path!r}: member {name!r} is not a plain numeric array ({dtype})")
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if offset + nbytes != info.file_size:
        raise _Invalid(f"{path!r}: member {name!r} declares {dtype} {shape} ({nbytes} bytes) "
                       f"but holds {info.file_size - offset} bytes of data")
    return shape, dtype, offset


def _read_data(zf, info, shape, dtype, offset, path, name):
    """The array of a member whose .npy header was checked (``offset``: its length)."""
    arr = np.empty(shape, dtype=dtype)
    buf = arr.reshape(-1).view(np.uint8)
    with zf.open(info) as f:
        f.read(offset)
        pos = 0
        while pos < buf.size:
            chunk = f.read(min(_READ_CHUNK, buf.size - pos))
            if not chunk:
                raise _Invalid(f"{path!r}: member {name!r} is truncated")
            buf[pos:pos + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
            pos += len(chunk)
        if f.read(1):  # also checks the member's CRC
            raise _Invalid(f"{path!r}: member {name!r} is longer than its header says")
    return arr


def _read_header(zf, members, path, expected_format):
    """The JSON header (the ``header`` member), with its format and version checked."""
    info = members.get("header")
    if info is None:
        raise _Invalid(f"{path!r} is not a fastnn file: no valid header")
    shape, dtype, offset = _npy_header(zf, info, path, "header.npy")
    if dtype != np.uint8 or len(shape) != 1:
        raise _Invalid(f"{path!r} is not a fastnn file: no valid header")
    if shape[0] > MAX_HEADER_BYTES:
        raise _Invalid(f"{path!r}: the header is {shape[0]} bytes, more than "
                       f"{MAX_HEADER_BYTES}")
    raw = _read_data(zf, info, shape, dtype, offset, path, "header.npy")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise _Invalid(f"{path!r} has a corrupt header: {exc}") from None
    if not isinstance(header, dict) or header.get("format") != expected_format:
        raise _Invalid(f"{path!r} is not a {expected_format} file "
                       f"(format {header.get('format') if isinstance(header, dict) else None!r})")
    if header.get("version") != FORMAT_VERSION:
        raise _Invalid(f"{path!r} has format version {header.get('version')!r}; "
                       f"this fastnn reads version {FORMAT_VERSION}")
    return header


def _expected_shapes(fmt, layers, members, zf, dtype, path):
    """``{name: (shape, offset)}`` of the format's arrays, each .npy header checked
    against the shape and dtype the header's layers and dtype imply."""
    n = n_params(layers)
    out = {}
    for name in ("params", "slots", "best"):  # best's length depends on slots'
        if name not in members:
            continue
        shape, got, offset = _npy_header(zf, members[name], path, name + ".npy")
        if name == "params":
            want = (n,)
        elif name == "slots":
            want = (shape[0], n) if len(shape) == 2 and shape[0] >= 1 else "(k >= 1, n_params)"
        else:
            want = ((1 + out["slots"][0][0]) * n,)
        if got != dtype or shape != want:
            raise _Invalid(f"{path!r}: {name} must be {dtype} of shape {want}, "
                           f"got {got} {shape}")
        out[name] = (shape, offset)
    return out


def model_header(model):
    return {"format": MODEL_FORMAT, "version": FORMAT_VERSION, "layers": list(model.layers),
            "activation": model.activation, "dtype": model.dtype.name, "seed": model.seed,
            "init": model.init, "epochs_trained": model.epochs_trained,
            "dropout": list(model.dropout), "input_dropout": model.input_dropout,
            "loss": model.loss}


def check_model_header(header, path):
    """Validate the model fields of a header; returns (layers, activation, dtype).
    A header without ``loss`` (files written before it existed) is a softmax
    classifier (``"cross_entropy"``)."""
    layers = header.get("layers")
    if (not isinstance(layers, list) or len(layers) < 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in layers)):
        raise ValueError(f"{path!r}: invalid layers {layers!r}")
    loss = header.get("loss", "cross_entropy")
    if not isinstance(loss, str) or loss not in LOSSES:
        raise ValueError(f"{path!r}: invalid loss {loss!r}")
    if loss == "cross_entropy" and layers[-1] < 2:
        raise ValueError(f"{path!r}: the output layer must have at least 2 classes")
    if loss == "binary_cross_entropy" and layers[-1] != 1:
        raise ValueError(f"{path!r}: loss 'binary_cross_entropy' needs one output, "
                         f"got {layers[-1]}")
    activation = header.get("activation")
    if activation not in ACTIVATIONS:
        raise ValueError(f"{path!r}: invalid activation {activation!r}")
    dtype = header.get("dtype")
    if dtype not in DTYPES:
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


def _check_saveable(model, path):
    """ValueError unless the parameters are finite: load refuses a file that holds
    NaN or inf, so such a file is never written (nothing is)."""
    if not np.isfinite(model.parameters).all():
        raise ValueError(f"cannot save {str(path)!r}: the model's parameters hold NaN or inf "
                         f"(a file that loading would refuse); nothing written")


def save_model(model, path):
    _check_saveable(model, path)
    atomic_savez(path, {"header": _header_array(model_header(model)), "params": model.parameters})


def load_model(path, cls):
    header, arrays = read_npz(path, MODEL_FORMAT)
    layers, activation, dtype = check_model_header(header, path)
    params = check_param_array(arrays.get("params"), layers, dtype, "params", path)
    seed = header.get("seed")
    if not _is_seed(seed):
        raise ValueError(f"{path!r}: invalid seed {seed!r}")
    epochs = header.get("epochs_trained", 0)
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 0:
        raise ValueError(f"{path!r}: invalid epochs_trained {epochs!r}")
    init = header.get("init", "auto")
    if init not in INITS:
        raise ValueError(f"{path!r}: invalid init {init!r}")
    try:
        model = cls(layers, activation=activation, dtype=dtype.name, seed=seed, init=init,
                    dropout=header.get("dropout", 0.0),
                    input_dropout=header.get("input_dropout", 0.0),
                    loss=header.get("loss", "cross_entropy"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path!r}: invalid model header: {exc}") from None
    model.parameters[...] = params
    model.epochs_trained = epochs
    return model


def save_checkpoint(path, model, state, arrays):
    """A model plus training state (JSON-able ``state``, named ``arrays``)."""
    _check_saveable(model, path)
    header = model_header(model)
    header.update(format=CHECKPOINT_FORMAT, state=state)
    atomic_savez(path, {"header": _header_array(header), "params": model.parameters,
                        **arrays})


def checkpoint_seed(path):
    """The model seed recorded in the checkpoint at ``path`` (its header only
    read), or None where there is no readable checkpoint there (resuming from it
    then says why)."""
    try:
        path = _check_path(path)
        if not os.path.isfile(path) or not zipfile.is_zipfile(path):
            return None
        with zipfile.ZipFile(path) as zf:
            members = _check_members(zf, path, os.path.getsize(path))
            seed = _read_header(zf, members, path, CHECKPOINT_FORMAT).get("seed")
    except (TypeError, *_READ_ERRORS):  # (_Invalid is a ValueError)
        return None
    return seed if _is_seed(seed) else None


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
