"""Atomic writes of every file fastnn writes: the shared helper (fastnn._atomic) and
its users (run folders' JSON files, History.to_json, study.json, sweep.json)."""
import json
import os
import stat

import numpy as np
import pytest

from fastnn import _atomic, experiment, study
from fastnn import config as cfg
from fastnn.training import History

pytestmark = pytest.mark.usefixtures("one_blas_thread")

CONFIG = {"layers": [12, 8, 3], "epochs": 1, "batch_size": 32, "learning_rate": 0.05,
          "validation_split": 0.2, "seed": 0}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(400, 12)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.intp) + (X[:, 1] > 0.5)
    return (X[:300], y[:300]), (X[300:], y[300:])


def hidden(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def broken_dump(obj, f, **kw):
    """json.dump that writes half a document, then fails (a full disk)."""
    f.write('{"half": ')
    raise OSError("disk full")


@pytest.fixture
def replaced(monkeypatch):
    """Every ``os.replace`` made: ``[(src, dst)]``."""
    seen = []
    real = os.replace

    def spy(src, dst):
        seen.append((os.fspath(src), os.fspath(dst)))
        return real(src, dst)
    monkeypatch.setattr(os, "replace", spy)
    return seen


def assert_replaced_from_temp(seen, path):
    """``path`` was written by renaming a temporary file of its own folder over it."""
    srcs = [src for src, dst in seen if dst == os.fspath(path)]
    assert srcs, f"{path} was not written atomically (no os.replace onto it)"
    for src in srcs:
        assert os.path.dirname(src) == os.path.dirname(os.fspath(path)) and src != os.fspath(path)
        assert not os.path.exists(src)


# -- the helper ------------------------------------------------------------------------

def test_helpers_write_text_bytes_and_json(tmp_path):
    _atomic.atomic_write_text(tmp_path / "a.txt", "héllo\n")
    _atomic.atomic_write_bytes(str(tmp_path / "b.bin"), b"\x00\x01")
    _atomic.atomic_write_json(tmp_path / "c.json", {"x": [1, 2]}, indent=2)
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo\n"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert json.loads((tmp_path / "c.json").read_text()) == {"x": [1, 2]}
    _atomic.atomic_write_text(tmp_path / "a.txt", "again")  # replaces
    assert (tmp_path / "a.txt").read_text() == "again"
    assert hidden(tmp_path) == []
    with pytest.raises(TypeError, match="path must be"):
        _atomic.atomic_write_text(3, "x")
    with pytest.raises(ValueError, match="mode"):
        with _atomic.atomic_open(tmp_path / "d", "a"):
            pass


@pytest.mark.parametrize("error", [OSError, KeyboardInterrupt])
def test_failed_write_keeps_the_previous_file_and_no_temp(tmp_path, monkeypatch, error):
    path = tmp_path / "m.json"
    _atomic.atomic_write_json(path, {"old": True})

    def failing(obj, f, **kw):
        f.write('{"new": ')
        raise error("mid-write")
    monkeypatch.setattr(json, "dump", failing)
    with pytest.raises(error):
        _atomic.atomic_write_json(path, {"new": True})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"old": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]


def test_errors_name_the_target_not_the_temporary_file(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    cases = [(tmp_path / "none" / "x.json", FileNotFoundError, "its folder does not exist"),
             (afile / "x.json", NotADirectoryError, "is not a folder"),
             (tmp_path, IsADirectoryError, "it is a folder")]
    for path, error, why in cases:
        with pytest.raises(error, match=why) as info:
            _atomic.atomic_write_text(path, "y")
        assert str(path) in str(info.value) and ".fastnn-" not in str(info.value)
    with pytest.raises(ValueError, match="must not be empty"):
        _atomic.atomic_write_text("", "y")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_written_files_get_ordinary_permissions(tmp_path):
    old = os.umask(0o027)
    try:
        path = tmp_path / "x.json"
        _atomic.atomic_write_json(path, [])
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
        os.chmod(path, 0o604)
        _atomic.atomic_write_text(path, "[1]")
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o604
    finally:
        os.umask(old)


# -- its users -------------------------------------------------------------------------

def test_history_to_json_is_atomic(tmp_path, replaced, monkeypatch):
    h = History({"epochs": 1})
    h._append(0, {"loss": 0.5})
    path = tmp_path / "history.json"
    text = h.to_json(path)
    assert json.loads(path.read_text()) == json.loads(text)
    assert_replaced_from_temp(replaced, path)

    def failing_fsync(fd):
        raise OSError("disk full")
    monkeypatch.setattr(os, "fsync", failing_fsync)
    h._append(1, {"loss": 0.25})
    with pytest.raises(OSError, match="disk full"):
        h.to_json(path)
    assert path.read_text() == text and hidden(tmp_path) == []


def test_run_experiment_writes_its_json_files_atomically(tmp_path, data, replaced, monkeypatch):
    out = tmp_path / "run"
    config = cfg.resolve(CONFIG)
    experiment.run_experiment(config, data, out, "tiny", verbose=False)
    for name in ("config.json", "history.json", "metrics.json", "model.npz"):
        assert_replaced_from_temp(replaced, out / name)
    before = {name: (out / name).read_bytes()
              for name in ("config.json", "history.json", "metrics.json")}
    # a second run into the folder fails while writing its JSON: the first run's files
    # stay whole (a plain open() would have truncated them), no temporary file is left
    monkeypatch.setattr(json, "dump", broken_dump)
    with pytest.raises(OSError, match="disk full"):
        experiment.run_experiment({**config, "epochs": 2}, data, out, "tiny", verbose=False)
    monkeypatch.undo()
    for name, blob in before.items():
        assert (out / name).read_bytes() == blob, name
        json.loads(blob)
    assert hidden(out) == []


def test_study_writes_its_table_atomically(tmp_path, replaced, monkeypatch):
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "a.yaml").write_text("layers: [784, 10]\nepochs: 1\n"
                                   "report:\n  test_accuracy: 0.9\n")
    metrics = {"test_accuracy": 0.91, "epochs": 1, "train_seconds": 0.1, "diverged": False}
    monkeypatch.setattr(experiment, "run_experiment", lambda *a, **k: (metrics, None))
    monkeypatch.setattr(experiment, "load_data", lambda *a, **k: None)
    out = tmp_path / "out"
    study.run_study(folder, out)
    assert_replaced_from_temp(replaced, out / "study.json")
    assert_replaced_from_temp(replaced, out / "study.md")
    before = (out / "study.json").read_text()
    monkeypatch.setattr(json, "dump", broken_dump)
    with pytest.raises(OSError, match="disk full"):
        study.run_study(folder, out)
    assert (out / "study.json").read_text() == before and hidden(out) == []


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="renameat2")
def test_exchange_swaps_two_folders_in_one_step(tmp_path):
    from fastnn._atomic import exchange
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("new")
    (b / "x").write_text("old")
    if not exchange(a, b):
        pytest.skip("this file system cannot swap folders")
    assert (b / "x").read_text() == "new" and (a / "x").read_text() == "old"


def test_run_folder_replaced_without_a_gap(tmp_path, monkeypatch):
    """Where folders can be swapped, replacing a run folder never renames the
    old one away first (out/label is never absent)."""
    from fastnn import _atomic, sweep
    out = tmp_path
    sweep.store.write_run(out, "run", {"a.json": b"1"})
    calls = []
    real = sweep.store.os.replace
    monkeypatch.setattr(sweep.store.os, "replace", lambda s, d: (calls.append((s, d)), real(s, d)))
    swapped = _atomic.exchange(out / "run", out / "run")  # probe the file system
    sweep.store.write_run(out, "run", {"a.json": b"2"})
    assert (out / "run" / "a.json").read_bytes() == b"2"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    if swapped:
        assert calls == []
