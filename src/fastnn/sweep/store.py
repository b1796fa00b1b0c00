"""A sweep on disk: ``sweep.json`` (rewritten atomically as trials finish),
the trials of an earlier run to skip, and the run folders the client writes
from what a worker returned (plain file names only)."""
import json
import os
import shutil
import tempfile
from pathlib import Path

from .._atomic import atomic_write_json, exchange, folder_mode
from .grid import trial_key
from .trial import failure


def plain_name(name):
    """True for a file name that stays inside its folder: no separator, not
    ``.``/``..``, not absolute, no NUL, at most 255 bytes."""
    if not isinstance(name, str) or name in ("", ".", "..") or "\0" in name:
        return False
    if "/" in name or "\\" in name or os.sep in name or (os.altsep and os.altsep in name):
        return False
    try:
        return len(os.fsencode(name)) <= 255 and not os.path.isabs(name)
    except UnicodeError:
        return False


def accept(task, record, files):
    """A worker's ``(record, files)`` as the client writes them: the record's
    ``run``, ``params`` and ``config`` are the client's own, and only files with
    plain names (see :func:`plain_name`) and bytes contents are kept; any other
    makes the trial ``failed``, naming them."""
    config, params, label = task
    if not isinstance(record, dict) or not isinstance(files, dict):
        return failure(config, params, label, f"the worker returned {type(record).__name__} "
                                              f"and {type(files).__name__}, not a record "
                                              f"and files")
    record = {**record, "run": label, "params": params, "config": config}
    bad = sorted(repr(n) for n, blob in files.items()
                 if not plain_name(n) or not isinstance(blob, (bytes, bytearray)))
    if bad:
        files = {n: blob for n, blob in files.items()
                 if plain_name(n) and isinstance(blob, (bytes, bytearray))}
        error = (f"the worker returned files that are not plain file names (or not bytes), "
                 f"not written: {', '.join(bad)[:500]}")
        record["status"] = "failed"
        record["error"] = error if not record.get("error") else f"{record['error']}; {error}"
    return record, files


def load_previous(path):
    """Trials of an earlier run of the sweep, by :func:`trial_key`."""
    try:
        old = json.loads(path.read_text())
        return {trial_key(t["config"]): t for t in old.get("trials", [])
                if isinstance(t, dict) and isinstance(t.get("config"), dict)}
    except (OSError, ValueError, TypeError, AttributeError, KeyError):
        return {}


def finished_run(out, old, label, config):
    """The run folder of ``config``'s earlier ``ok`` trial ``old`` (a record of
    sweep.json) if it is there, else None. A folder named before run folder names
    had a hash (``activation=relu``) counts if its config.json is this config's."""
    if not isinstance(old, dict) or old.get("status") != "ok":
        return None
    run = old.get("run")
    if run == label:
        return label if (out / label).is_dir() else None
    if not plain_name(run) or not (out / run).is_dir():
        return None
    try:
        saved = json.loads((out / run / "config.json").read_text())
    except (OSError, ValueError):
        return None
    want = json.loads(trial_key(config))  # as JSON has it (tuples are lists, ...)
    # config.json holds the seed drawn for ``seed: null``
    same = saved == want or (want.get("seed") is None and isinstance(saved, dict)
                             and {**saved, "seed": None} == want)
    return run if same else None


def write_run(out, label, files):
    """The trial's files into ``out/label``, replacing an earlier attempt's folder.

    The files are written (and flushed to disk) into a new folder beside it, which
    then takes the old one's place in one step where the system can swap two
    folders (Linux: ``out/label`` is never absent), else the old folder is renamed
    away, the new one renamed in (the old one renamed back if that fails); the old
    one is then deleted: ``out/label`` holds one attempt's files, never a mix, and
    no half-written folder is left behind on an error.
    """
    if not files:
        return
    tmp = Path(tempfile.mkdtemp(prefix=".run-", dir=out))
    trash = None
    try:
        os.chmod(tmp, folder_mode())  # mkdtemp's 0700 -> what a plain mkdir gives
        for name, blob in files.items():
            with open(tmp / name, "wb") as f:
                f.write(blob)
                f.flush()
                os.fsync(f.fileno())
        final = out / label
        if final.exists() and exchange(tmp, final):
            shutil.rmtree(tmp, ignore_errors=True)  # now the old attempt's folder
            return
        if final.exists():
            trash = Path(tempfile.mkdtemp(prefix=".old-", dir=out))
            os.replace(final, trash / "run")
        try:
            os.replace(tmp, final)
        except BaseException:
            if trash is not None:
                os.replace(trash / "run", final)
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)


def write_summary(out, summary):
    """``sweep.json``, atomically (:func:`fastnn._atomic.atomic_write_json`)."""
    atomic_write_json(out / "sweep.json", summary, indent=2)
