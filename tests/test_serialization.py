"""MLP.save / MLP.load: exact round trips, the file format, atomic writes, and
rejection of every kind of broken, foreign or hostile file without unpickling."""
import io
import json
import os
import pickle
import tracemalloc
import zipfile

import numpy as np
import pytest

from fastnn import MLP, serialization


pytestmark = pytest.mark.usefixtures("one_blas_thread")


@pytest.fixture(scope="module")
def trained(mnist_small):
    (X, y), (Xt, yt) = mnist_small
    model = MLP([784, 24, 10], "tanh", seed=9, init="uniform")
    model.fit(X[:800], y[:800], epochs=2, batch_size=32, learning_rate=0.05, momentum=0.9,
              verbose=False)
    return model, Xt[:300], yt[:300]


def _header(path):
    with np.load(path, allow_pickle=False) as data:
        return json.loads(data["header"].tobytes().decode("utf-8")), dict(data)


def _write(path, header, **arrays):
    """An .npz like fastnn's, with any header (a dict, or raw bytes) and arrays."""
    if isinstance(header, dict):
        header = json.dumps(header).encode()
    if header is not None:
        arrays["header"] = np.frombuffer(header, dtype=np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_is_exact(trained, tmp_path, dtype):
    model, Xt, yt = trained
    if dtype == "float64":
        model = MLP([784, 24, 10], "sigmoid", seed=2, dtype="float64")
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = MLP.load(path)
    assert isinstance(loaded, MLP)
    np.testing.assert_array_equal(loaded.parameters, model.parameters)
    assert loaded.parameters.dtype == model.parameters.dtype
    assert (loaded.layers, loaded.activation, loaded.dtype, loaded.seed, loaded.init) == \
        (model.layers, model.activation, model.dtype, model.seed, model.init)
    assert loaded.epochs_trained == model.epochs_trained
    assert repr(loaded) == repr(model)
    np.testing.assert_array_equal(loaded.predict_proba(Xt), model.predict_proba(Xt))
    np.testing.assert_array_equal(loaded.predict(Xt), model.predict(Xt))
    assert loaded.evaluate(Xt, yt) == model.evaluate(Xt, yt)
    # the loaded model owns its parameters and can keep training
    assert loaded.parameters.flags.c_contiguous and loaded.parameters.flags.writeable
    loaded.fit(Xt, yt, epochs=1, verbose=False)
    assert not np.array_equal(loaded.parameters, model.parameters)


def test_path_types(trained, tmp_path):
    model, Xt, _ = trained
    model.save(str(tmp_path / "a.npz"))
    model.save(tmp_path / "b.npz")
    for name in ("a.npz", "b.npz"):
        for path in (tmp_path / name, str(tmp_path / name)):
            np.testing.assert_array_equal(MLP.load(path).predict(Xt), model.predict(Xt))


def test_file_format_is_plain_npz_with_json_header(trained, tmp_path):
    model, _, _ = trained
    path = tmp_path / "model.npz"
    model.save(path)
    assert zipfile.is_zipfile(path)
    header, arrays = _header(path)  # readable without pickle
    assert set(arrays) == {"header", "params"}
    assert arrays["header"].dtype == np.uint8 and arrays["header"].ndim == 1
    assert header["format"] == "fastnn-mlp" and header["version"] == 1
    assert header["layers"] == [784, 24, 10] and header["activation"] == "tanh"
    assert header["dtype"] == "float32" and header["seed"] == 9 and header["init"] == "uniform"
    assert header["epochs_trained"] == 2
    assert arrays["params"].dtype == np.float32 and arrays["params"].shape == (model.n_params,)
    assert all(arrays[k].dtype != object for k in arrays)


def test_save_overwrites(trained, tmp_path):
    model, Xt, _ = trained
    path = tmp_path / "model.npz"
    MLP([784, 10], seed=0).save(path)
    model.save(path)
    np.testing.assert_array_equal(MLP.load(path).parameters, model.parameters)
    assert os.listdir(tmp_path) == ["model.npz"]


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        MLP.load(tmp_path / "nope.npz")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_parameters_are_refused_at_save_not_load(tmp_path, bad):
    model = MLP([4, 3, 2], seed=0)
    path = tmp_path / "model.npz"
    model.save(path)
    before = path.read_bytes()
    model.parameters[5] = bad
    with pytest.raises(ValueError, match="hold NaN or inf .* nothing written"):
        model.save(path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["model.npz"]
    with pytest.raises(ValueError, match="hold NaN or inf"):
        model.save(tmp_path / "new.npz")
    assert not (tmp_path / "new.npz").exists()


def test_a_folder_is_refused_alike_by_save_and_load(trained, tmp_path):
    with pytest.raises(IsADirectoryError, match="it is a folder"):
        trained[0].save(tmp_path)
    with pytest.raises(IsADirectoryError, match="it is a folder"):
        MLP.load(tmp_path)


def test_save_into_missing_folder(trained, tmp_path):
    with pytest.raises(FileNotFoundError):
        trained[0].save(tmp_path / "no" / "such" / "model.npz")


@pytest.mark.parametrize("path", [None, 3, 1.5, ["a.npz"], b"model.npz"])
def test_bad_path_types(trained, path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TypeError, match="path must be"):
        trained[0].save(path)
    with pytest.raises(TypeError, match="path must be"):
        MLP.load(path)
    assert list(tmp_path.iterdir()) == []


# -- atomic save ---------------------------------------------------------------

@pytest.mark.parametrize("where", ["savez", "replace"])
def test_failed_save_keeps_previous_file_and_leaves_no_temp(trained, tmp_path, monkeypatch,
                                                            where):
    model, Xt, _ = trained
    path = tmp_path / "model.npz"
    old = MLP([784, 24, 10], seed=1)
    old.save(path)
    before = path.read_bytes()

    if where == "savez":
        real = np.savez

        def broken(file, **arrays):
            real(file, **arrays)
            file.truncate(50)  # half written...
            raise OSError("disk full")  # ...then the crash
        monkeypatch.setattr(serialization.np, "savez", broken)
    else:
        def broken(src, dst):
            raise OSError("rename failed")
        monkeypatch.setattr(serialization.os, "replace", broken)

    with pytest.raises(OSError):
        model.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.npz"]
    np.testing.assert_array_equal(MLP.load(path).parameters, old.parameters)


def test_keyboard_interrupt_during_save_leaves_no_temp(trained, tmp_path, monkeypatch):
    def interrupted(file, **arrays):
        raise KeyboardInterrupt
    monkeypatch.setattr(serialization.np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        trained[0].save(tmp_path / "model.npz")
    assert os.listdir(tmp_path) == []


def test_save_writes_to_a_temp_file_then_renames(trained, tmp_path, monkeypatch):
    seen = []
    real = os.replace

    def spy(src, dst):
        seen.append((os.fspath(src), os.fspath(dst), os.path.exists(dst)))
        return real(src, dst)
    monkeypatch.setattr(serialization.os, "replace", spy)
    path = tmp_path / "model.npz"
    trained[0].save(path)
    (src, dst, existed), = seen
    assert dst == str(path) and not existed
    assert os.path.dirname(src) == str(tmp_path) and src != dst  # same folder: atomic rename
    assert not os.path.exists(src)


# -- rejected files ----------------------------------------------------------------

def _good_header(model):
    return serialization.model_header(model)


def test_truncated_files(trained, tmp_path):
    model, _, _ = trained
    path = tmp_path / "model.npz"
    model.save(path)
    data = path.read_bytes()
    for cut in (1, 10, 100, len(data) // 2, len(data) - 10, len(data) - 1):
        bad = tmp_path / f"cut{cut}.npz"
        bad.write_bytes(data[:cut])
        with pytest.raises(ValueError, match=f"cut{cut}.npz"):
            MLP.load(bad)


@pytest.mark.parametrize("content", [b"", b"\x00", b"hello world" * 100,
                                     bytes(range(256)) * 8, b"PK\x03\x04" + b"\x00" * 60,
                                     b"\x93NUMPY garbage", b"\x80\x04K\x01."],
                         ids=["empty", "nul", "text", "bytes", "zip-magic", "npy-magic",
                              "pickle"])
def test_garbage_files(tmp_path, content):
    path = tmp_path / "model.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="model.npz"):
        MLP.load(path)


def test_random_bytes(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(20):
        path = tmp_path / f"r{i}.npz"
        path.write_bytes(rng.bytes(int(rng.integers(1, 5000))))
        with pytest.raises(ValueError):
            MLP.load(path)


def test_corrupted_bytes_inside_a_valid_file(trained, tmp_path):
    """Flipping bytes of a real file: ValueError, or (where only padding was hit)
    the exact same model -- never another exception, never different weights."""
    model, _, _ = trained
    path = tmp_path / "model.npz"
    model.save(path)
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(1)
    for i in range(40):
        bad = bytearray(data)
        pos = int(rng.integers(0, len(bad)))
        bad[pos] ^= 0xFF
        p = tmp_path / f"flip{i}.npz"
        p.write_bytes(bytes(bad))
        try:
            loaded = MLP.load(p)
        except ValueError:
            continue
        # the zip has CRCs on every member, so a loaded file must be the same model
        np.testing.assert_array_equal(loaded.parameters, model.parameters)


def test_npy_instead_of_npz(tmp_path):
    path = tmp_path / "model.npz"
    np.save(path.with_suffix(".npy"), np.zeros(10))
    os.replace(path.with_suffix(".npy"), path)
    with pytest.raises(ValueError, match="not an .npz"):
        MLP.load(path)


def test_zip_with_non_npy_members(trained, tmp_path):
    path = tmp_path / "model.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("header.npy", b"not an npy")
        z.writestr("params.npy", b"not an npy either")
    with pytest.raises(ValueError, match="model.npz"):
        MLP.load(path)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("header", json.dumps(_good_header(trained[0])))
        z.writestr("params", b"\x00" * 16)
    with pytest.raises(ValueError, match="model.npz"):
        MLP.load(path)


def test_valid_npz_without_header(trained, tmp_path):
    path = _write(tmp_path / "m.npz", None, params=trained[0].parameters)
    with pytest.raises(ValueError, match="no valid header"):
        MLP.load(path)


@pytest.mark.parametrize("header", [
    np.array([1, 2, 3], dtype=np.int64),
    np.zeros((2, 3), dtype=np.uint8),
    np.frombuffer(b"\xff\xfe not utf-8", dtype=np.uint8),
    np.frombuffer(b"{not json", dtype=np.uint8),
    np.frombuffer(b"[1, 2, 3]", dtype=np.uint8),
    np.frombuffer(b"null", dtype=np.uint8),
])
def test_malformed_header_array(trained, tmp_path, header):
    path = tmp_path / "m.npz"
    with open(path, "wb") as f:
        np.savez(f, header=header, params=trained[0].parameters)
    with pytest.raises(ValueError, match="m.npz"):
        MLP.load(path)


def _tampered_cases(model):
    good = _good_header(model)
    n = model.n_params
    p = model.parameters
    cases = {
        "wrong-format": ({**good, "format": "keras"}, p),
        "checkpoint-format": ({**good, "format": "fastnn-checkpoint"}, p),
        "no-format": ({k: v for k, v in good.items() if k != "format"}, p),
        "version-2": ({**good, "version": 2}, p),
        "version-0": ({**good, "version": 0}, p),
        "version-str": ({**good, "version": "1"}, p),
        "no-version": ({k: v for k, v in good.items() if k != "version"}, p),
        "layers-other": ({**good, "layers": [784, 25, 10]}, p),
        "layers-short": ({**good, "layers": [784]}, p),
        "layers-str": ({**good, "layers": "784,24,10"}, p),
        "layers-float": ({**good, "layers": [784.0, 24, 10]}, p),
        "layers-bool": ({**good, "layers": [784, True, 10]}, p),
        "layers-zero": ({**good, "layers": [784, 0, 10]}, p),
        "layers-negative": ({**good, "layers": [784, -24, 10]}, p),
        "layers-one-class": ({**good, "layers": [784, 24, 1]}, p),
        "layers-huge": ({**good, "layers": [2**40, 2**40, 10]}, p),
        "no-layers": ({k: v for k, v in good.items() if k != "layers"}, p),
        "activation": ({**good, "activation": "softplus"}, p),
        "activation-none": ({**good, "activation": None}, p),
        "dtype-other": ({**good, "dtype": "float64"}, p),
        "dtype-bad": ({**good, "dtype": "float16"}, p),
        "dtype-object": ({**good, "dtype": "object"}, p),
        "seed-negative": ({**good, "seed": -1}, p),
        "seed-str": ({**good, "seed": "9"}, p),
        "seed-none": ({**good, "seed": None}, p),
        "epochs-negative": ({**good, "epochs_trained": -1}, p),
        "epochs-float": ({**good, "epochs_trained": 1.5}, p),
        "init-unknown": ({**good, "init": "zeros"}, p),
        "init-not-str": ({**good, "init": 3}, p),
        "epochs-bool": ({**good, "epochs_trained": True}, p),
        "params-short": (good, p[:-1]),
        "params-long": (good, np.append(p, p[:1])),
        "params-2d": (good, p.reshape(1, -1)),
        "params-float64": (good, p.astype(np.float64)),
        "params-int": (good, p.astype(np.int32)),
        "params-nan": (good, np.where(np.arange(n) == 5, np.nan, p).astype(p.dtype)),
        "params-inf": (good, np.where(np.arange(n) == n - 1, -np.inf, p).astype(p.dtype)),
        "params-missing": (good, None),
    }
    return cases


TAMPERED = list(_tampered_cases(MLP([784, 24, 10], "tanh", seed=9, init="uniform")))


@pytest.mark.parametrize("case", TAMPERED)
def test_tampered_files(trained, tmp_path, case):
    header, params = _tampered_cases(trained[0])[case]
    arrays = {} if params is None else {"params": params}
    path = _write(tmp_path / f"{case}.npz", header, **arrays)
    with pytest.raises(ValueError, match=f"{case}.npz"):
        MLP.load(path)


def test_untampered_writer_is_accepted(trained, tmp_path):
    """The hand-written files above differ from a good one only in what was tampered."""
    model = trained[0]
    path = _write(tmp_path / "ok.npz", _good_header(model), params=model.parameters)
    np.testing.assert_array_equal(MLP.load(path).parameters, model.parameters)


class _Payload:
    """Unpickling this runs code: it creates the file named ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


@pytest.mark.parametrize("which", ["params", "header", "extra"])
def test_pickled_object_arrays_are_never_unpickled(trained, tmp_path, which):
    model = trained[0]
    marker = tmp_path / "PWNED"
    evil = np.array([_Payload(marker), 1], dtype=object)
    arrays = {"header": np.frombuffer(json.dumps(_good_header(model)).encode(), np.uint8),
              "params": model.parameters}
    arrays[which] = evil
    path = tmp_path / "evil.npz"
    with open(path, "wb") as f:
        np.savez(f, **arrays)  # object arrays are pickled inside the .npy member
    with pytest.raises(ValueError, match="evil.npz"):
        MLP.load(path)
    assert not marker.exists()
    # the payload is live: loading it with pickle allowed would run it
    with np.load(path, allow_pickle=True) as data:
        data[which]
    assert marker.exists()


def test_pickle_file_is_never_unpickled(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.npz"
    path.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(ValueError, match="evil.npz"):
        MLP.load(path)
    assert not marker.exists()


def test_extra_arrays_are_refused(trained, tmp_path):
    """Only the members the format names are read: any other is an error, not ignored."""
    model = trained[0]
    path = _write(tmp_path / "m.npz", _good_header(model), params=model.parameters,
                  notes=np.arange(3))
    with pytest.raises(ValueError, match=r"m\.npz.*unexpected member 'notes\.npy'"):
        MLP.load(path)
    # a checkpoint's arrays are unknown to a model file too
    path = _write(tmp_path / "s.npz", _good_header(model), params=model.parameters,
                  slots=model.parameters[None])
    with pytest.raises(ValueError, match=r"s\.npz.*unexpected member 'slots\.npy'"):
        MLP.load(path)


def test_directory_is_not_a_model(tmp_path):
    with pytest.raises((ValueError, IsADirectoryError)):
        MLP.load(tmp_path)


def test_saved_files_get_ordinary_permissions(tmp_path):
    """Atomic saves go through mkstemp (mode 0600): the file must end with the
    mode a plain open() gives (0666 less the umask), or keep the old file's."""
    import os
    import stat
    old = os.umask(0o022)
    try:
        path = tmp_path / "m.npz"
        MLP([4, 2], seed=0).save(path)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
        os.chmod(path, 0o640)
        MLP([4, 2], seed=1).save(path)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    finally:
        os.umask(old)


# -- hostile archives: bounded memory, checked before any array is read ----------------

def _npy_bytes(arr):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asanyarray(arr), allow_pickle=False)
    return buf.getvalue()


def _npy_header(shape, dtype):
    """The .npy header (format 1.0) of an array of ``shape`` and ``dtype``."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(
        np.dtype(dtype)), "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _peak_load(path):
    """``(exception or None, peak bytes traced)`` of ``MLP.load(path)``."""
    tracemalloc.start()
    try:
        MLP.load(path)
        error = None
    except Exception as exc:  # noqa: BLE001 -- returned to the test
        error = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return error, peak


def test_compression_bomb_member_is_refused_without_expanding(trained, tmp_path):
    """A good model plus a deflated member of 64 MB of zeros (~64 KB in the file)."""
    model = trained[0]
    path = tmp_path / "bomb.npz"
    model.save(path)
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as z:
        with z.open("params2.npy", "w", force_zip64=True) as f:
            f.write(_npy_header((16 << 20,), np.float32))
            zeros = bytes(1 << 20)
            for _ in range(64):
                f.write(zeros)
    assert path.stat().st_size < 1 << 20
    error, peak = _peak_load(path)
    assert isinstance(error, ValueError) and "bomb.npz" in str(error)
    assert "params2.npy" in str(error)
    assert peak < 4 << 20, peak  # nothing was decompressed


def test_compressed_known_member_is_refused(trained, tmp_path):
    """fastnn writes stored members: a deflated params.npy (np.savez_compressed) is refused
    before it is inflated, even though it holds the right array."""
    model = trained[0]
    path = tmp_path / "deflated.npz"
    with open(path, "wb") as f:
        np.savez_compressed(f, header=serialization._header_array(_good_header(model)),
                            params=model.parameters)
    with pytest.raises(ValueError, match=r"deflated\.npz.*compressed"):
        MLP.load(path)
    # and a deflated member of zeros standing for params: 40 MB from a ~40 KB file
    big = MLP([1000, 10000, 10], seed=0)
    header = serialization._header_array(serialization.model_header(big))
    path = tmp_path / "zeros.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr(zipfile.ZipInfo("header.npy"), _npy_bytes(header))
        z.writestr("params.npy", _npy_bytes(np.zeros(big.n_params, np.float32)))
    del big
    assert path.stat().st_size < 1 << 20
    error, peak = _peak_load(path)
    assert isinstance(error, ValueError) and "compressed" in str(error), error
    assert peak < 4 << 20, peak


def test_header_declaring_giant_layers_allocates_nothing(trained, tmp_path):
    """Layers of 10^10 parameters, the params member's .npy header agreeing, in a file
    of a few hundred bytes: refused before any array (or the model) is allocated."""
    layers = [100000, 100000, 10]
    header = {**_good_header(trained[0]), "layers": layers}
    n = 100000 * 100000 + 100000 * 10 + 100000 + 10
    path = tmp_path / "giant.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("header.npy", _npy_bytes(serialization._header_array(header)))
        # the .npy header says 40 GB of float32 follow
        z.writestr("params.npy", _npy_header((n,), np.float32) + bytes(64))
    assert path.stat().st_size < 4096
    error, peak = _peak_load(path)
    assert isinstance(error, ValueError) and "giant.npz" in str(error), error
    assert "params" in str(error)
    assert peak < 4 << 20, peak


def test_member_sizes_beyond_the_file_are_refused(trained, tmp_path, monkeypatch):
    """A central directory declaring a stored member bigger than the whole file (as
    overlapping or lying entries do) is refused from the directory alone."""
    model = trained[0]
    path = tmp_path / "liar.npz"
    model.save(path)
    real = zipfile.ZipFile.infolist
    size = path.stat().st_size

    def lying(self):
        infos = real(self)
        for info in infos:
            if info.filename == "params.npy":
                info.file_size = info.compress_size = 10 * size
        return infos
    monkeypatch.setattr(zipfile.ZipFile, "infolist", lying)
    with pytest.raises(ValueError, match=r"liar\.npz.*params\.npy.*more bytes than the file"):
        MLP.load(path)
    monkeypatch.undo()
    np.testing.assert_array_equal(MLP.load(path).parameters, model.parameters)


def test_oversized_header_is_refused(trained, tmp_path, monkeypatch):
    model = trained[0]
    path = tmp_path / "m.npz"
    model.save(path)
    monkeypatch.setattr(serialization, "MAX_HEADER_BYTES", 64)
    with pytest.raises(ValueError, match=r"m\.npz.*header is \d+ bytes"):
        MLP.load(path)


def test_checkpoint_members_are_checked_before_reading(trained, tmp_path):
    """Checkpoints go through the same reader: unknown, compressed or mis-shaped
    members are refused, the good file loads."""
    model = trained[0]
    path = tmp_path / "ck.npz"
    slots = np.zeros((1, model.n_params), np.float32)
    serialization.save_checkpoint(path, model, {"x": 1}, {"slots": slots})
    header, arrays = serialization.load_checkpoint(path)
    assert set(arrays) == {"params", "slots"} and header["state"] == {"x": 1}
    ckh = {**_good_header(model), "format": "fastnn-checkpoint", "state": {}}
    cases = {"extra": dict(params=model.parameters, slots=slots, notes=np.zeros(2)),
             "slots-1d": dict(params=model.parameters, slots=slots[0]),
             "best-short": dict(params=model.parameters, slots=slots,
                                best=np.zeros(model.n_params, np.float32))}
    for case, arrays in cases.items():
        bad = _write(tmp_path / f"{case}.npz", ckh, **arrays)
        with pytest.raises(ValueError, match=f"{case}.npz"):
            serialization.load_checkpoint(bad)
    bad = tmp_path / "deflated.npz"
    with open(bad, "wb") as f:
        np.savez_compressed(f, header=serialization._header_array(ckh),
                            params=model.parameters, slots=slots)
    with pytest.raises(ValueError, match=r"deflated\.npz.*compressed"):
        serialization.load_checkpoint(bad)


@pytest.mark.parametrize("loss, out", [("mse", 3), ("binary_cross_entropy", 1),
                                       ("cross_entropy", 4)])
def test_loss_round_trips_and_old_files_are_softmax(tmp_path, loss, out):
    model = MLP([5, 7, out], "tanh", seed=3, loss=loss)
    path = tmp_path / "m.npz"
    model.save(path)
    header, arrays = _header(path)
    assert header["loss"] == loss
    loaded = MLP.load(path)
    assert loaded.loss == loss
    X = np.random.default_rng(0).normal(size=(6, 5))
    np.testing.assert_array_equal(loaded.decision_function(X), model.decision_function(X))
    # a file written before the loss was recorded: a softmax classifier
    del header["loss"]
    old = tmp_path / "old.npz"
    _write(old, header, params=arrays["params"])
    if loss == "cross_entropy":
        assert MLP.load(old).loss == "cross_entropy"
    else:  # one output, or a header saying mse that lost its loss: not a softmax
        if out < 2:
            with pytest.raises(ValueError, match="2 classes"):
                MLP.load(old)
        else:
            assert MLP.load(old).loss == "cross_entropy"
    bad = tmp_path / "bad.npz"
    _write(bad, {**header, "loss": "hinge"}, params=arrays["params"])
    with pytest.raises(ValueError, match="invalid loss"):
        MLP.load(bad)
    if out == 3:
        _write(bad, {**header, "loss": "binary_cross_entropy"}, params=arrays["params"])
        with pytest.raises(ValueError, match="one output"):
            MLP.load(bad)
