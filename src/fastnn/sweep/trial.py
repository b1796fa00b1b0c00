"""One trial of a sweep, as a worker runs it: train into a temporary run
folder, return its record and files (the client writes them, see
:mod:`fastnn.sweep.store`)."""
import tempfile
import time
import warnings
from pathlib import Path

from .. import threads
from ..experiment import run_experiment
from ..training import TrainingDivergedWarning


def run_trial(config, params, label, data, one_thread=True):
    """Train ``config`` on ``data`` into a temporary run folder; returns
    ``(record, files)``: the sweep.json entry and the folder's files
    (name -> bytes). Never raises for a failing trial: the record says
    ``"failed"`` with the error (KeyboardInterrupt propagates)."""
    record = new_record(config, params, label)
    files = {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fastnn-trial-") as tmp:
        try:
            with threads.using(1 if one_thread else None), warnings.catch_warnings():
                warnings.simplefilter("ignore", TrainingDivergedWarning)  # recorded below
                metrics, history = run_experiment(config, data, tmp, label, verbose=False)
            if metrics["interrupted"]:
                # fit caught a Ctrl-C and returned early: not a finished trial (the
                # sweep stops; a rerun trains this one again)
                raise KeyboardInterrupt
            record.update(test_accuracy=metrics["test_accuracy"], epochs=metrics["epochs"],
                          train_seconds=metrics["train_seconds"])
            val = history.history.get("val_accuracy")
            if val:
                best = history.best_epoch if history.best_epoch is not None else len(val) - 1
                record["val_accuracy"] = val[best]
            if metrics["diverged"]:
                record.update(status="failed", error=(
                    f"training diverged after {metrics['epochs']} epochs (loss NaN, infinite or "
                    f"runaway at learning rate {config['learning_rate']}); the last finite "
                    f"weights were kept"))
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # recorded; the sweep goes on
            record.update(status="failed", error=_describe(exc))
        for path in sorted(Path(tmp).iterdir()):
            if path.is_file():
                files[path.name] = path.read_bytes()
    record["seconds"] = time.perf_counter() - t0
    return record, files


def new_record(config, params, label, status="ok", error=None):
    """A trial's sweep.json entry before (or without) any result."""
    return {"params": params, "run": label, "config": config, "status": status,
            "test_accuracy": None, "val_accuracy": None, "epochs": None, "seconds": None,
            "train_seconds": None, "error": error}


def _describe(exc):
    return exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"


def failure(config, params, label, exc):
    """``(record, files)`` of a trial that did not run to its end: ``exc`` (an
    exception, or the reason as text) is its error; no files."""
    return new_record(config, params, label, "failed", _describe(exc)), {}
