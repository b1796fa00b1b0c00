"""Datasets: the real MNIST files, IDX parsing, where files are looked for,
verified downloads (through local file:// URLs) and the offline errors."""
import gzip
import hashlib
import os
import shutil
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from fastnn import datasets
from fastnn.datasets import (DatasetNotFoundError, download, load_dataset, load_fashion_mnist,
                             load_mnist, parse_idx, read_idx)

FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
TRAIN_LABELS_SHA256 = "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"


def idx_bytes(arr, code=None):
    """The IDX encoding of ``arr`` (big-endian payload)."""
    arr = np.asarray(arr)
    codes = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}
    if code is None:
        code = codes[arr.dtype.str[1:]]
    head = bytes([0, 0, code, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return head + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def make_dataset(folder, n_train=30, n_test=10, gz=True, seed=0):
    """A tiny MNIST-format dataset in ``folder``; returns the raw arrays."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, arr in arrays.items():
        data = idx_bytes(arr)
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return arrays


@pytest.fixture
def no_env(monkeypatch, tmp_path):
    """No FASTNN_DATA, and a private, empty user cache."""
    monkeypatch.delenv("FASTNN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "fastnn" / "mnist"


# -- the real MNIST files --------------------------------------------------------

def test_real_mnist_minmax(mnist):
    (X, y), (Xt, yt) = mnist
    assert X.shape == (60000, 784) and Xt.shape == (10000, 784)
    assert X.dtype == np.float32 and Xt.dtype == np.float32
    assert y.shape == (60000,) and yt.shape == (10000,)
    assert y.dtype == np.uint8 and yt.dtype == np.uint8
    assert X.flags.c_contiguous
    for A in (X, Xt):
        assert A.min() == 0.0 and A.max() == 1.0
    for labels in (y, yt):
        assert labels.min() == 0 and labels.max() == 9
        assert (np.bincount(labels, minlength=10) > 0.08 * len(labels)).all()
    assert y[:8].tolist() == [5, 0, 4, 1, 9, 2, 1, 3]
    assert yt[:8].tolist() == [7, 2, 1, 0, 4, 1, 4, 9]
    # digits have ink in the middle, not at the corners
    images = X.reshape(-1, 28, 28)
    assert images[:, 10:18, 10:18].mean() > 5 * images[:, :3, :3].mean()


def test_real_mnist_other_normalizations(mnist, mnist_path):
    (X, y), (Xt, yt) = mnist
    (Xn, yn), (Xtn, ytn) = load_mnist(mnist_path, normalize="none")
    assert Xn.dtype == np.float32
    assert Xn.min() == 0 and Xn.max() == 255
    np.testing.assert_array_equal(Xn, np.round(Xn))
    np.testing.assert_array_equal(Xn / np.float32(255), X)
    np.testing.assert_array_equal(yn, y)
    (Xs, ys), (Xts, _) = load_mnist(mnist_path, normalize="standard")
    assert Xs.dtype == np.float32
    for A in (Xs[::50], Xts[::50]):
        np.testing.assert_allclose(A.mean(axis=1), 0, atol=1e-5)
        np.testing.assert_allclose(A.std(axis=1), 1, atol=1e-4)
    # per image: a positive affine map of the raw pixels
    i = 123
    slope = Xs[i].std() / Xn[i].std()
    np.testing.assert_allclose(Xs[i], (Xn[i] - Xn[i].mean()) * slope, atol=1e-4)


def test_train_labels_checksum(mnist_path):
    path = mnist_path / "train-labels-idx1-ubyte.gz"
    raw = gzip.decompress(path.read_bytes()) if path.exists() else \
        (mnist_path / "train-labels-idx1-ubyte").read_bytes()
    assert hashlib.sha256(raw).hexdigest() == TRAIN_LABELS_SHA256
    labels = read_idx(path if path.exists() else mnist_path / "train-labels-idx1-ubyte")
    assert labels.shape == (60000,) and labels.dtype == np.uint8


def test_data_dir_argument_and_env(mnist, mnist_path, monkeypatch, no_env):
    (X, y), (Xt, yt) = mnist
    (X2, y2), _ = load_mnist(str(mnist_path))
    np.testing.assert_array_equal(y2, y)
    monkeypatch.setenv("FASTNN_DATA", str(mnist_path))
    (X3, y3), (Xt3, yt3) = load_mnist()
    np.testing.assert_array_equal(X3, X)
    np.testing.assert_array_equal(yt3, yt)
    # the argument wins over the environment
    monkeypatch.setenv("FASTNN_DATA", str(mnist_path / "nowhere"))
    (_, y4), _ = load_mnist(mnist_path)
    np.testing.assert_array_equal(y4, y)
    with pytest.raises(DatasetNotFoundError, match="nowhere"):
        load_mnist()


def test_uncompressed_files(mnist, mnist_path, tmp_path):
    """Each file may be .gz or not; uncompressed ones are found and read the same."""
    (X, y), (Xt, yt) = mnist
    for name in FILES:
        gz = mnist_path / (name + ".gz")
        if name.startswith("t10k"):
            (tmp_path / name).write_bytes(gzip.decompress(gz.read_bytes()))
        else:
            os.symlink(gz, tmp_path / (name + ".gz"))
    (X2, y2), (Xt2, yt2) = load_mnist(tmp_path)
    np.testing.assert_array_equal(Xt2, Xt)
    np.testing.assert_array_equal(yt2, yt)
    np.testing.assert_array_equal(y2, y)
    np.testing.assert_array_equal(read_idx(tmp_path / "t10k-labels-idx1-ubyte"), yt)


def test_another_datasets_files_are_refused_not_swapped(mnist_path, tmp_path, no_env,
                                                         monkeypatch):
    """MNIST's files (known by their MD5) given for Fashion-MNIST, through
    FASTNN_DATA as a user with MNIST there would: an error naming both, not a
    model trained on digits under clothes' names."""
    for name in FILES:
        os.symlink(mnist_path / (name + ".gz"), tmp_path / (name + ".gz"))
    monkeypatch.setenv("FASTNN_DATA", str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match=r"mnist's file \(by its checksum\), not "
                                                  r"fashion-mnist's"):
        load_fashion_mnist()
    (_, y), _ = load_mnist()  # the same folder serves MNIST
    assert y.shape == (60000,)


def test_a_folder_of_datasets(mnist, mnist_path, tmp_path, no_env):
    """data_dir (or FASTNN_DATA) may hold one subfolder per dataset."""
    (tmp_path / "mnist").mkdir()
    for name in FILES:
        os.symlink(mnist_path / (name + ".gz"), tmp_path / "mnist" / (name + ".gz"))
    (_, y), (_, yt) = load_mnist(tmp_path)
    np.testing.assert_array_equal(yt, mnist[1][1])
    with pytest.raises(DatasetNotFoundError, match="missing"):
        load_fashion_mnist(tmp_path)  # no fashion-mnist there: not MNIST's instead


def test_files_at_the_top_win_over_a_stray_subfolder(mnist, mnist_path, tmp_path, no_env):
    for name in FILES:
        os.symlink(mnist_path / (name + ".gz"), tmp_path / (name + ".gz"))
    (tmp_path / "mnist").mkdir()  # empty
    (_, y), _ = load_mnist(tmp_path)
    np.testing.assert_array_equal(y, mnist[0][1])


@pytest.mark.parametrize("split, shape", [("t10k", (20, 20)), ("train", (14, 56)),
                                          ("t10k", (28, 27))])
def test_images_of_another_size_are_refused_naming_the_file(tmp_path, split, shape):
    """MNIST's images are 28 x 28: a file of another size (or a test set unlike
    the training set) fails at load, naming it, not at evaluation after training."""
    make_dataset(tmp_path)
    name = f"{split}-images-idx3-ubyte"
    n = 30 if split == "train" else 10
    (tmp_path / (name + ".gz")).write_bytes(
        gzip.compress(idx_bytes(np.zeros((n, *shape), np.uint8))))
    with pytest.raises(ValueError, match=rf"{name}.gz: mnist's images are 28x28, this "
                                         rf"file's {shape[0]}x{shape[1]}"):
        load_mnist(tmp_path)


@pytest.mark.parametrize("gz", [True, False])
def test_training_and_test_files_swapped_are_refused(mnist_path, tmp_path, no_env, gz):
    """Both pairs swapped (each images file still matches its labels): known by
    the labels' checksums, not loaded as 10,000 training and 60,000 test rows."""
    for name in FILES:
        other = name.replace("train", "X").replace("t10k", "train").replace("X", "t10k")
        data = (mnist_path / (other + ".gz")).read_bytes()
        (tmp_path / (name + (".gz" if gz else ""))).write_bytes(
            data if gz else gzip.decompress(data))
    with pytest.raises(DatasetNotFoundError, match=r"holds mnist's t10k-labels-idx1-ubyte \(by "
                                                  r"its checksum\), not its train-labels"):
        load_mnist(tmp_path)


def test_mnist_at_the_top_and_fashion_in_its_subfolder(mnist_path, tmp_path, no_env):
    """The README's offline layout: $FASTNN_DATA holds MNIST's files and a
    fashion-mnist/ subfolder. Fashion-MNIST is read from the subfolder (the files
    at the top are known to be MNIST's), MNIST from the top."""
    for name in FILES:
        os.symlink(mnist_path / (name + ".gz"), tmp_path / (name + ".gz"))
    arrays = make_dataset(tmp_path / "fashion-mnist", gz=True)
    (_, yf), _ = load_fashion_mnist(tmp_path)
    np.testing.assert_array_equal(yf, arrays["train-labels-idx1-ubyte"])
    (_, y), _ = load_mnist(tmp_path)
    assert y.shape == (60000,)


def test_uncompressed_mnist_labels_are_known_for_what_they_are(mnist_path, tmp_path, no_env):
    """By the labels' SHA-256: a copy that is not the published .gz is still MNIST's."""
    for name in FILES:
        (tmp_path / name).write_bytes(gzip.decompress((mnist_path / (name + ".gz")).read_bytes()))
    with pytest.raises(DatasetNotFoundError, match="not fashion-mnist's"):
        load_fashion_mnist(tmp_path)
    assert datasets._identify(tmp_path / "t10k-labels-idx1-ubyte") == {"mnist"}
    (tmp_path / "other").write_bytes(b"")
    assert datasets._identify(tmp_path / "other") == set()


# -- local folders -----------------------------------------------------------------

@pytest.mark.parametrize("gz", [True, False])
def test_synthetic_dataset_round_trip(tmp_path, gz):
    arrays = make_dataset(tmp_path, gz=gz)
    for normalize, scale in (("none", 1.0), ("minmax", 255.0)):
        (X, y), (Xt, yt) = load_mnist(tmp_path, normalize=normalize)
        np.testing.assert_array_equal(X * np.float32(scale) if scale != 1 else X,
                                      arrays["train-images-idx3-ubyte"].reshape(30, 784))
        np.testing.assert_array_equal(y, arrays["train-labels-idx1-ubyte"])
        np.testing.assert_array_equal(yt, arrays["t10k-labels-idx1-ubyte"])
        assert Xt.shape == (10, 784)
    (Xf, yf), _ = load_fashion_mnist(tmp_path)  # the same format
    np.testing.assert_array_equal(yf, arrays["train-labels-idx1-ubyte"])


def test_missing_files_are_named(tmp_path, no_env):
    make_dataset(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist(tmp_path)
    msg = str(info.value)
    assert "train-labels-idx1-ubyte" in msg and "t10k-images-idx3-ubyte" in msg
    assert "train-images-idx3-ubyte" not in msg
    assert str(tmp_path) in msg and "FASTNN_DATA" in msg
    assert isinstance(info.value, FileNotFoundError)


def test_missing_folder(tmp_path, no_env, monkeypatch):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_mnist(tmp_path / "absent")
    monkeypatch.setenv("FASTNN_DATA", str(tmp_path / "absent"))
    with pytest.raises(DatasetNotFoundError, match="absent"):
        load_mnist()


def test_empty_folder_from_env(tmp_path, no_env, monkeypatch):
    monkeypatch.setenv("FASTNN_DATA", str(tmp_path))
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist()
    assert all(name in str(info.value) for name in FILES)


@pytest.mark.parametrize("kwargs, match", [
    (dict(dataset="cifar10"), "dataset"),
    (dict(dataset=None), "dataset"),
    (dict(normalize="zscore"), "normalize"),
    (dict(normalize=None), "normalize"),
])
def test_bad_arguments(tmp_path, kwargs, match):
    make_dataset(tmp_path)
    with pytest.raises(ValueError, match=match):
        load_dataset(data_dir=tmp_path, **kwargs)


@pytest.mark.parametrize("data_dir", [3, 1.5, ["a"], b"folder"])
def test_bad_data_dir_type(data_dir):
    with pytest.raises(TypeError, match="data_dir"):
        load_mnist(data_dir)


def test_unknown_keyword(tmp_path):
    with pytest.raises(TypeError, match="normalise"):
        load_mnist(tmp_path, normalise="minmax")


def _replace(folder, name, data):
    (folder / (name + ".gz")).unlink()
    (folder / name).write_bytes(data)


def test_inconsistent_files_are_rejected(tmp_path):
    make_dataset(tmp_path)
    _replace(tmp_path, "train-labels-idx1-ubyte", idx_bytes(np.zeros(29, np.uint8)))
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte"):
        load_mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.full(30, 10, np.uint8)))
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(b"")  # the plain file wins
    with pytest.raises(ValueError, match="labels must be 0..9"):
        load_mnist(tmp_path)
    make_dataset(tmp_path / "b")
    _replace(tmp_path / "b", "t10k-images-idx3-ubyte", idx_bytes(np.zeros((10, 28, 28), ">i2")))
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte"):
        load_mnist(tmp_path / "b")
    make_dataset(tmp_path / "c")
    _replace(tmp_path / "c", "t10k-images-idx3-ubyte", idx_bytes(np.zeros((10, 784), np.uint8)))
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte"):
        load_mnist(tmp_path / "c")


def test_corrupt_file_in_folder(tmp_path):
    make_dataset(tmp_path)
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte"):
        load_mnist(tmp_path)


# -- IDX parsing -------------------------------------------------------------------

@pytest.mark.parametrize("arr", [
    np.arange(7, dtype=np.uint8),
    np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
    np.array([-128, -1, 0, 127], dtype=np.int8),
    np.array([[-30000, 2], [3, 30000]], dtype=np.int16),
    np.array([-(2**31), 2**31 - 1, 5], dtype=np.int32),
    np.array([1.5, -2.25, np.pi], dtype=np.float32),
    np.array([[1e300, -1e-300]], dtype=np.float64),
    np.zeros((0, 28, 28), dtype=np.uint8),
])
def test_parse_idx_round_trip(arr):
    out = parse_idx(idx_bytes(arr))
    assert out.shape == arr.shape
    assert out.dtype == arr.dtype and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)


def test_parse_idx_reads_big_endian():
    data = bytes([0, 0, 0x0B, 1, 0, 0, 0, 2]) + b"\x01\x02\xff\xfe"
    np.testing.assert_array_equal(parse_idx(data), [0x0102, -2])


GOOD_IDX = idx_bytes(np.arange(12, dtype=np.uint8).reshape(3, 4))


@pytest.mark.parametrize("data, match", [
    (b"", "too short"),
    (b"\x00\x00\x08", "too short"),
    (b"\x01\x00\x08\x02" + GOOD_IDX[4:], "magic"),
    (b"\x00\x01\x08\x02" + GOOD_IDX[4:], "magic"),
    (b"\x00\x00\x07\x02" + GOOD_IDX[4:], "magic"),
    (b"\x00\x00\x0A\x02" + GOOD_IDX[4:], "magic"),
    (b"\x00\x00\x08\x00" + GOOD_IDX[4:], "magic"),
    (b"\x00\x00\x08\x03" + GOOD_IDX[4:8], "truncated IDX header"),
    (GOOD_IDX[:9], "truncated IDX header"),
    (GOOD_IDX[:-1], "length"),
    (GOOD_IDX + b"\x00", "length"),
    (GOOD_IDX[:12], "length"),
    (b"\x00\x00\x08\x02\xff\xff\xff\xff\xff\xff\xff\xff", "length"),
    (b"\x00\x00\x08\x03" + b"\x00\x00\x00\x03" * 2 + b"\x00\x00\x00\x04" + bytes(35), "length"),
    # dimensions whose product overflows int64 (2**21 * 2**21 * 2**22 = 2**64)
    (b"\x00\x00\x08\x03\x00\x20\x00\x00\x00\x20\x00\x00\x00\x40\x00\x00", "length"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_parse_idx_rejects(data, match):
    with pytest.raises(ValueError, match=match):
        parse_idx(data, "thing.idx")
    with pytest.raises(ValueError, match="thing.idx"):
        parse_idx(data, "thing.idx")


def test_parse_idx_huge_dimensions_do_not_allocate():
    data = bytes([0, 0, 0x0E, 4]) + b"\xff\xff\xff\xff" * 4 + bytes(64)
    with pytest.raises(ValueError, match="length"):
        parse_idx(data)


def test_read_idx_files(tmp_path):
    arr = np.arange(60, dtype=np.int16).reshape(3, 4, 5)
    plain = tmp_path / "plain"
    plain.write_bytes(idx_bytes(arr))
    packed = tmp_path / "packed.bin"  # gzip recognised by content, not by name
    packed.write_bytes(gzip.compress(idx_bytes(arr)))
    for path in (plain, str(plain), packed):
        np.testing.assert_array_equal(read_idx(path), arr)


@pytest.mark.parametrize("kind", ["empty", "truncated-gzip", "corrupt-gzip", "bad-crc",
                                  "gzip-magic-only", "gzip-of-garbage", "trailing-garbage",
                                  "wrong-magic", "wrong-length"])
def test_read_idx_rejects(tmp_path, kind):
    good = idx_bytes(np.arange(2000, dtype=np.int32))
    packed = gzip.compress(good)
    if kind == "empty":
        data = b""
    elif kind == "truncated-gzip":
        data = packed[: len(packed) // 2]
    elif kind == "corrupt-gzip":
        body = bytearray(packed)
        for i in range(20, len(body) - 8):
            body[i] ^= 0x5A
        data = bytes(body)
    elif kind == "bad-crc":
        data = packed[:-8] + bytes(4) + packed[-4:]
    elif kind == "gzip-magic-only":
        data = b"\x1f\x8b"
    elif kind == "gzip-of-garbage":
        data = gzip.compress(b"definitely not idx")
    elif kind == "trailing-garbage":
        data = packed + b"\x00junk"
    elif kind == "wrong-magic":
        data = gzip.compress(b"\x00\x00\xff\x01" + good[4:])
    else:
        data = gzip.compress(good[:-3])
    path = tmp_path / "file.gz"
    path.write_bytes(data)
    with pytest.raises(ValueError, match="file.gz"):
        read_idx(path)


def test_a_file_given_as_the_data_folder_says_so(tmp_path, no_env):
    (tmp_path / "mnist.npz").write_bytes(b"x")
    with pytest.raises(DatasetNotFoundError, match="is a file, not a folder"):
        load_mnist(tmp_path / "mnist.npz")


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope")


# -- download ------------------------------------------------------------------------

def _md5(data):
    return hashlib.md5(data).hexdigest()


def test_download_good_file(tmp_path):
    src = tmp_path / "src" / "file.gz"
    src.parent.mkdir()
    src.write_bytes(b"payload" * 1000)
    dest = tmp_path / "cache" / "sub" / "file.gz"  # folders are created
    out = download(src.as_uri(), dest, _md5(src.read_bytes()))
    assert Path(out) == dest and dest.read_bytes() == src.read_bytes()
    assert os.listdir(dest.parent) == ["file.gz"]


def test_download_checksum_mismatch_lands_nothing(tmp_path):
    src = tmp_path / "file.gz"
    src.write_bytes(b"tampered payload")
    dest = tmp_path / "cache" / "file.gz"
    with pytest.raises(ValueError, match="checksum mismatch") as info:
        download(src.as_uri(), dest, _md5(b"the real payload"))
    assert _md5(b"tampered payload") in str(info.value)
    assert not dest.exists()
    assert os.listdir(dest.parent) == []  # no temp file either


def test_download_failure_keeps_existing_file(tmp_path):
    src = tmp_path / "file.gz"
    src.write_bytes(b"new")
    dest = tmp_path / "cache" / "file.gz"
    dest.parent.mkdir()
    dest.write_bytes(b"old")
    with pytest.raises(ValueError):
        download(src.as_uri(), dest, _md5(b"other"))
    assert dest.read_bytes() == b"old"
    with pytest.raises(urllib.error.URLError):
        download((tmp_path / "missing.gz").as_uri(), dest, _md5(b"new"))
    assert dest.read_bytes() == b"old"
    assert os.listdir(dest.parent) == ["file.gz"]


# -- the user cache and the mirrors -------------------------------------------------

def _serve(monkeypatch, tmp_path, arrays=None):
    """Put a tiny gzip dataset behind a file:// "mirror" with matching MD5s."""
    mirror = tmp_path / "mirror"
    make_dataset(mirror, gz=True)
    md5 = {name + ".gz": _md5((mirror / (name + ".gz")).read_bytes()) for name in FILES}
    monkeypatch.setitem(datasets.DATASETS["mnist"], "mirrors",
                        [(tmp_path / "dead").as_uri() + "/", mirror.as_uri() + "/"])
    monkeypatch.setitem(datasets.DATASETS["mnist"], "md5", md5)
    return mirror


def test_offline_cache_error_says_what_is_missing_and_where(tmp_path, monkeypatch, no_env):
    monkeypatch.setitem(datasets.DATASETS["mnist"], "mirrors",
                        [(tmp_path / "unreachable").as_uri() + "/"])
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist()
    msg = str(info.value)
    assert all(name in msg for name in FILES), msg
    assert str(no_env) in msg  # where to put them
    assert "FASTNN_DATA" in msg
    assert not no_env.exists() or os.listdir(no_env) == []  # nothing half-downloaded


def test_offline_with_some_files_cached(tmp_path, monkeypatch, no_env):
    make_dataset(no_env)
    (no_env / "t10k-labels-idx1-ubyte.gz").unlink()
    monkeypatch.setitem(datasets.DATASETS["mnist"], "mirrors",
                        [(tmp_path / "unreachable").as_uri() + "/"])
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist()
    msg = str(info.value)
    assert "t10k-labels-idx1-ubyte" in msg and "train-images-idx3-ubyte" not in msg
    assert str(no_env) in msg


def test_download_false_never_downloads(tmp_path, monkeypatch, no_env):
    _serve(monkeypatch, tmp_path)

    def fail(*args, **kwargs):
        raise AssertionError("download attempted")
    monkeypatch.setattr(datasets, "download", fail)
    with pytest.raises(DatasetNotFoundError, match=str(no_env).replace("\\", "\\\\")):
        load_mnist(download=False)


def test_downloads_into_the_cache_then_uses_it(tmp_path, monkeypatch, no_env):
    mirror = _serve(monkeypatch, tmp_path)
    (X, y), (Xt, yt) = load_mnist()
    assert sorted(os.listdir(no_env)) == sorted(name + ".gz" for name in FILES)
    for name in FILES:
        assert (no_env / (name + ".gz")).read_bytes() == (mirror / (name + ".gz")).read_bytes()
    expected = read_idx(mirror / "train-labels-idx1-ubyte.gz")
    np.testing.assert_array_equal(y, expected)
    # the second time, no network
    shutil.rmtree(mirror)
    monkeypatch.setattr(datasets, "download", lambda *a, **k: pytest.fail("downloaded again"))
    (_, y2), _ = load_mnist()
    np.testing.assert_array_equal(y2, y)


def test_bad_mirror_checksum_is_never_cached(tmp_path, monkeypatch, no_env):
    _serve(monkeypatch, tmp_path)
    md5 = dict(datasets.DATASETS["mnist"]["md5"])
    md5["t10k-images-idx3-ubyte.gz"] = "0" * 32
    monkeypatch.setitem(datasets.DATASETS["mnist"], "md5", md5)
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist()
    assert "t10k-images-idx3-ubyte" in str(info.value)
    assert "checksum mismatch" in str(info.value)
    assert sorted(os.listdir(no_env)) == sorted(n + ".gz" for n in FILES if "t10k-images" not in n)



def test_friedman1_is_generated_and_reproducible():
    from fastnn import datasets
    (X, y), (Xt, yt) = datasets.load_dataset("friedman1", normalize="none")
    assert X.shape == (20000, 10) and Xt.shape == (5000, 10) and y.shape == (20000,)
    assert X.dtype == y.dtype == np.float32
    again = datasets.load_dataset("friedman1", normalize="none")
    assert np.array_equal(again[0][0], X) and np.array_equal(again[1][1], yt)
    f = (10 * np.sin(np.pi * X[:, 0] * X[:, 1]) + 20 * (X[:, 2] - 0.5) ** 2 + 10 * X[:, 3]
         + 5 * X[:, 4])
    noise = y - f
    assert abs(noise.mean()) < 0.05 and abs(noise.std() - 1) < 0.05
    (Xs, _), (Xst, _) = datasets.load_dataset("friedman1", normalize="standard")
    np.testing.assert_allclose(Xs.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(Xs.std(0), 1, rtol=1e-3)
    assert datasets.is_regression("friedman1") and not datasets.is_regression("mnist")
    assert datasets.class_names("friedman1") == []
