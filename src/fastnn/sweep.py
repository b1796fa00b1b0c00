"""Hyperparameter sweeps: many training runs, on this machine's cores or a Dask cluster.

A sweep is a base config and a grid (config key -> values); its trials are
the product of the grid (or ``random`` of them). Each trial trains one config
with :func:`fastnn.cli.run_experiment` into its own run folder under ``out``.
Trials run one after another (``jobs=1``), in worker processes on this
machine (``jobs=N``), or on a running Dask cluster (``scheduler=ADDRESS``).
Workers need fastnn, not the data files: the client loads the data once and
sends it once (to each worker process when it starts; to a Dask cluster with
one broadcast ``scatter``). Every trial trains with one BLAS thread in a
worker, and returns its run folder's files to the client, which writes them
(plain file names only), so a remote worker needs no shared disk. A run
folder is named by the trial's swept values, cut to fit, and a hash of its
full config (:func:`trial_label`: ``activation=relu,l2=0.001@1a2b3c4d``).

``out/sweep.json`` is rewritten atomically as each trial finishes::

    {"trials": [{"params": {...}, "status": "ok" | "failed", "test_accuracy": ...,
                 "val_accuracy": ..., "epochs": ..., "seconds": ..., "error": ...,
                 "run": "<folder>", "config": {...}}, ...],
     "best": "<folder>", "base_config": {...}, "grid": {...}, ...}

A rerun with the same base config and grid skips the trials already ``ok``
(trials are identified by the canonical JSON of their full config) and retries
the failed ones. A trial that raises or diverges is recorded as ``failed``
with its error; the others go on. Ctrl-C cancels the pending trials, stops
the workers, and keeps ``sweep.json`` with what finished.

>>> from fastnn.sweep import expand_grid
>>> expand_grid({"activation": ["relu", "tanh"], "l2": [0, 0.001]})
[{'activation': 'relu', 'l2': 0}, {'activation': 'relu', 'l2': 0.001}, {'activation': 'tanh', 'l2': 0}, {'activation': 'tanh', 'l2': 0.001}]
"""
import contextlib
import hashlib
import io
import itertools
import json
import multiprocessing
import os
import shutil
import signal
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from . import config as cfg
from . import threads
from ._atomic import atomic_write_json, exchange, folder_mode
from ._validation import check_int
from .training import TrainingDivergedWarning

__all__ = ["expand_grid", "sample_trials", "trial_key", "run_sweep", "format_table",
           "parse_grid"]

SCHEMA_VERSION = 1
DATA_KEYS = tuple(cfg.DATA_KEYS)  # ("dataset", "normalize"): which data a trial needs


# ---------------------------------------------------------------------------
# the grid
# ---------------------------------------------------------------------------

def parse_grid(text: str) -> tuple[str, list[Any]]:
    """``"KEY=V1,V2"`` -> ``(key, [values])``, the values typed as YAML scalars.

    ``layers`` (whose values are lists) takes semicolons between the values,
    ``layers=784,10;784,128,10``; any key takes a YAML list,
    ``layers=[[784,10],[784,128,10]]``.
    """
    if not isinstance(text, str) or "=" not in text:
        raise ValueError(f"--grid wants KEY=V1,V2,..., got {text!r}")
    key, _, values = text.partition("=")
    key = key.strip().replace("-", "_")
    values = values.strip()
    if not values:
        raise ValueError(f"--grid {key}: no values")
    if values.startswith("["):
        import yaml
        try:
            parsed = cfg.parse_yaml(values)
        except yaml.YAMLError as exc:
            raise ValueError(f"--grid {key}: {values!r} is not a YAML list: {exc}") from None
        if not isinstance(parsed, list):
            raise ValueError(f"--grid {key}: {values!r} is not a list")
        return key, parsed
    if key == "layers" or ";" in values:
        return key, [_scalar_or_list(v) for v in values.split(";") if v.strip()]
    return key, [_scalar(v) for v in values.split(",")]


def _scalar(text):
    import yaml
    try:
        return cfg.parse_yaml(text.strip())
    except yaml.YAMLError:
        return text.strip()


def _scalar_or_list(text):
    text = text.strip()
    return [_scalar(v) for v in text.split(",")] if "," in text else _scalar(text)


def expand_grid(grid: Mapping[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, in key order then value order."""
    if not isinstance(grid, dict) or not grid:
        raise ValueError("the grid must map at least one config key to a list of values")
    for key, values in grid.items():
        if key not in cfg.DEFAULTS:
            raise ValueError(f"grid key {key!r} is not a config key; known keys: "
                             f"{', '.join(sorted(cfg.DEFAULTS))}")
        if not isinstance(values, (list, tuple)) or not values:
            raise ValueError(f"grid key {key!r} needs a non-empty list of values, got {values!r}")
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def sample_trials(trials: list[dict[str, Any]], n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` of ``trials`` drawn without replacement with ``seed`` (in grid order);
    all of them when ``n`` is at least their number."""
    n = check_int(n, "random", low=1)
    seed = check_int(seed, "seed", low=0)
    if n >= len(trials):
        return list(trials)
    picked = np.sort(np.random.default_rng(seed).choice(len(trials), size=n, replace=False))
    return [trials[i] for i in picked]


def trial_key(config: Mapping[str, Any]) -> str:
    """The identity of a trial: the canonical JSON of its full, resolved config."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"))


#: The longest run folder name, in ASCII characters (file systems allow 255 bytes).
MAX_LABEL = 100
_HASH_CHARS = 8


def _slug(value):
    if isinstance(value, (list, tuple)):
        return "-".join(_slug(v) for v in value)
    if isinstance(value, Mapping):  # e.g. an lr_schedule: step-step_size_2
        return "-".join(_slug(v) if k == "name" else f"{_slug(k)}_{_slug(v)}"
                        for k, v in value.items())
    text = "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    return "".join(c if (c.isascii() and c.isalnum()) or c in ".-_+" else "_" for c in text)


def trial_label(params: Mapping[str, Any], config: Mapping[str, Any]) -> str:
    """The run folder's name: the swept values, readable and cut to fit, then ``@``
    and a hash of the full config (:func:`trial_key`), e.g.
    ``activation=relu,l2=0.001@1a2b3c4d``: unique per config (``dropout=0.5`` and
    ``dropout=[0.5]`` are two trials, two folders) and at most :data:`MAX_LABEL`
    ASCII characters, however long the values."""
    readable = ",".join(f"{k}={_slug(v)}" for k, v in params.items())
    digest = hashlib.sha256(trial_key(config).encode("utf-8")).hexdigest()[:_HASH_CHARS]
    return f"{readable[:MAX_LABEL - 1 - _HASH_CHARS]}@{digest}"


def _plain_name(name):
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


def _check_config(config):
    """Fail before any training on values the model or optimizer reject."""
    from .model import MLP
    from .training import check_policy
    model_kw, _, fit_kw = cfg.split(config)  # builds (validates) the optimizer
    MLP(**{**model_kw, "seed": model_kw["seed"] if model_kw["seed"] is not None else 0})
    check_policy(**{k: fit_kw[k] for k in ("epochs", "batch_size", "validation_split",
                                           "early_stopping", "monitor", "min_delta", "lr_decay",
                                           "lr_decay_threshold", "min_learning_rate",
                                           "loss_reduction", "lr_schedule")})


# ---------------------------------------------------------------------------
# one trial (runs in a worker)
# ---------------------------------------------------------------------------

def run_trial(config, params, label, data, one_thread=True):
    """Train ``config`` on ``data`` into a temporary run folder; returns
    ``(record, files)``: the sweep.json entry and the folder's files
    (name -> bytes). Never raises for a failing trial: the record says
    ``"failed"`` with the error (KeyboardInterrupt propagates)."""
    from .cli import run_experiment
    record = {"params": params, "run": label, "config": config, "status": "ok",
              "test_accuracy": None, "val_accuracy": None, "epochs": None, "seconds": None,
              "train_seconds": None, "error": None}
    files = {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fastnn-trial-") as tmp:
        try:
            with threads.using(1 if one_thread else None), warnings.catch_warnings():
                warnings.simplefilter("ignore", TrainingDivergedWarning)  # recorded below
                metrics, history = run_experiment(config, data, tmp, label, verbose=False)
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
            record.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        for path in sorted(Path(tmp).iterdir()):
            if path.is_file():
                files[path.name] = path.read_bytes()
    record["seconds"] = time.perf_counter() - t0
    return record, files


# worker processes (jobs > 1): the data arrives once, when a worker starts; then
# the client sends it one trial at a time over its own pipe
_WORKER_DATA = None


def _init_worker(data):
    global _WORKER_DATA
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the client's to handle
    _WORKER_DATA = data


def _process_task(config, params, label):
    return run_trial(config, params, label, _WORKER_DATA[_data_key(config)])


def _worker_main(conn, data, task):
    """A worker process: runs ``task(config, params, label)`` for each trial that
    arrives on ``conn`` and sends back its ``(record, files)``; stops on None or
    when the client is gone."""
    _init_worker(data)
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        try:
            result = task(*job)
        except Exception as exc:  # run_trial records its failures; a safety net
            result = _failure(*job, exc)
        try:
            conn.send(result)
        except Exception as exc:  # e.g. a result that cannot be pickled
            conn.send(_failure(*job, exc))


class _Worker:
    """A worker process of :func:`_run_processes`, its pipe, and the trial it runs."""

    def __init__(self, ctx, data, task):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, data, task),
                                   name="fastnn-sweep-worker", daemon=True)
        self.process.start()
        child.close()
        self.task = None

    def send(self, task):
        self.task = task
        try:
            self.conn.send(task)
        except OSError:  # the process is dead: its sentinel says so, see result()
            pass

    def result(self):
        """The trial's ``(record, files)``, or None if the process died first."""
        try:
            if self.conn.poll():
                return self.conn.recv()
        except (EOFError, OSError):
            pass
        return None

    def death(self):
        """Why the process died, for the record of the trial it was running."""
        self.process.join()
        code = self.process.exitcode
        try:
            how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        except (ValueError, TypeError):
            how = f"exit code {code}"
        return (f"worker process died ({how}) while running this trial: killed from outside "
                f"(e.g. by the out-of-memory killer) or crashed; the other trials went on, "
                f"and a rerun retries it")

    def stop(self, wait):
        """Ask the process to end (``wait``) or terminate it; then reap it."""
        if wait and self.process.is_alive():
            with contextlib.suppress(OSError):
                self.conn.send(None)
            self.process.join()
        if self.process.is_alive():
            self.process.terminate()
        self.process.join()
        self.conn.close()


def _dask_task(config, params, label, data):
    return run_trial(config, params, label, data[_data_key(config)])


def _data_key(config):
    return tuple(config[k] for k in DATA_KEYS)


# ---------------------------------------------------------------------------
# the sweep (runs in the client)
# ---------------------------------------------------------------------------

def run_sweep(base_config: Mapping[str, Any], grid: Mapping[str, list[Any]],
              out: str | os.PathLike[str], *, data: Any = None,
              data_dir: str | os.PathLike[str] | None = None,
              loader: Callable[[str, str], Any] | None = None, random: int | None = None,
              seed: int = 0, jobs: int | None = 1, scheduler: Any = None,
              progress: bool = True, name: str | None = None) -> dict[str, Any]:
    """Run a sweep; returns the summary written to ``out/sweep.json``.

    base_config : mapping of config keys (a config file's contents)
    grid : mapping key -> list of values (any config key, ``layers`` included)
    out : folder for ``sweep.json``, ``sweep.png`` and one run folder per trial
    data : ``((X, y), (X_test, y_test))`` for every trial, or a mapping
        ``{(dataset, normalize): data}``; None: loaded once per (dataset,
        normalize) the trials need, from ``data_dir`` (see :mod:`fastnn.datasets`)
        or by ``loader(dataset, normalize)``
    random : train only this many trials, drawn from the grid with ``seed``
    jobs : trials at once in worker processes on this machine (``None``: one
        per core); 1 runs them in this process, with fastnn's thread setting
    scheduler : a Dask scheduler address (``"tcp://host:8786"``), a
        ``distributed.Client`` or a cluster object; overrides ``jobs``
    """
    out = Path(out)
    base = dict(base_config)
    if jobs is None:
        jobs = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    jobs = check_int(jobs, "jobs", low=1)
    trials = expand_grid({k: list(v) for k, v in grid.items()})
    if random is not None:
        trials = sample_trials(trials, random, seed)
    configs, keys = [], set()
    for params in trials:
        config = cfg.resolve({**base, **params})
        _check_config(config)
        if trial_key(config) in keys:  # a value given twice: the same trial
            continue
        keys.add(trial_key(config))
        configs.append((config, params, trial_label(params, config)))
    data = _prepare_data(data, data_dir, loader, {_data_key(c) for c, _, _ in configs})

    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"version": SCHEMA_VERSION, "name": name or out.name,
                               "base_config": base,
               "grid": {k: list(v) for k, v in grid.items()}, "random": random, "seed": seed,
               "trials": [], "best": None}
    previous = _load_previous(out / "sweep.json")
    done, todo = [], []
    for config, params, label in configs:
        run = _finished_run(out, previous.get(trial_key(config)), label, config)
        if run is not None:
            done.append({**previous[trial_key(config)], "run": run})
        else:
            todo.append((config, params, label))
    summary["trials"] = list(done)
    summary["skipped"] = len(done)
    _write_summary(out, summary)

    t0 = time.perf_counter()
    bar = tqdm(total=len(configs), initial=len(done), unit="trial", disable=not progress,
               desc=f"sweep {summary['name']}")

    def finished(task, record, files):
        record, files = _accept(task, record, files)
        _write_run(out, record["run"], files)
        summary["trials"].append(record)
        _write_summary(out, summary)
        bar.update(1)
        bar.set_postfix(last=f"{record['run']}: {record['status']}")

    try:
        if not todo:
            pass
        elif scheduler is not None:
            _run_dask(scheduler, todo, data, finished)
        elif jobs > 1 and len(todo) > 1:
            _run_processes(min(jobs, len(todo)), todo, data, finished)
        else:
            for task in todo:
                config, params, label = task
                finished(task, *run_trial(config, params, label, data[_data_key(config)],
                                          one_thread=False))
    except KeyboardInterrupt:
        summary["interrupted"] = True
        raise
    finally:
        bar.close()
        wall = time.perf_counter() - t0
        ran = len(summary["trials"]) - len(done)
        summary["wall_seconds"] = wall
        summary["trials_per_minute"] = 60.0 * ran / wall if ran and wall > 0 else None
        summary["backend"] = ("dask" if scheduler is not None else
                              f"processes({min(jobs, len(todo))})" if jobs > 1 and len(todo) > 1
                              else "sequential")
        order = {trial_key(c): i for i, (c, _, _) in enumerate(configs)}
        summary["trials"].sort(key=lambda r: order.get(trial_key(r["config"]), len(configs)))
        summary["best"] = _best(summary["trials"])
        _write_summary(out, summary)
        if summary["trials"]:
            _plot(out, summary)
    return summary


def _prepare_data(data, data_dir, loader, needed):
    """``{(dataset, normalize): data}`` covering every trial."""
    if data is None:
        if loader is None:
            from .datasets import load_dataset
            loader = lambda dataset, normalize: load_dataset(  # noqa: E731
                dataset, data_dir=data_dir, normalize=normalize)
        return {key: loader(*key) for key in sorted(needed)}
    if isinstance(data, dict):
        missing = needed - set(data)
        if missing:
            raise ValueError(f"data has no arrays for (dataset, normalize) = {sorted(missing)}")
        return {key: data[key] for key in needed}
    if len(needed) > 1:
        raise ValueError("the trials need several datasets or normalizations: pass data as a "
                         "mapping {(dataset, normalize): ((X, y), (X_test, y_test))} or None")
    return {next(iter(needed)): data}


def _run_processes(jobs, todo, data, finished):
    """``jobs`` worker processes, each sent the data once, when it starts, then one
    trial at a time over its own pipe, so the client knows which trial each runs.
    A worker that dies (SIGKILL, the out-of-memory killer, a crash) fails the trial
    it was running, with the reason; a new worker takes its place for the others."""
    from multiprocessing.connection import wait
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    ctx = multiprocessing.get_context(method)
    if method == "forkserver":  # the workers fork from a server that has imported fastnn once
        ctx.set_forkserver_preload(["fastnn.sweep", "fastnn.cli", "fastnn.plots"])
    task_fn = _process_task  # looked up per sweep (a test may replace it)
    pending = list(reversed(todo))
    idle, busy = [], []
    try:
        idle = [_Worker(ctx, data, task_fn) for _ in range(min(jobs, len(todo)))]
        while pending or busy:
            while pending and idle:
                worker = idle.pop()
                worker.send(pending.pop())
                busy.append(worker)
            # returns on a result or a death; the timeout keeps Ctrl-C responsive
            ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy],
                             timeout=1.0))
            for worker in [w for w in busy if w.conn in ready or w.process.sentinel in ready]:
                busy.remove(worker)
                task, item = worker.task, worker.result()
                worker.task = None
                if item is None:
                    item = _failure(*task, worker.death())
                if worker.process.is_alive():
                    idle.append(worker)
                else:  # died (with or after its trial): replaced while trials remain
                    worker.stop(wait=False)
                    if pending:
                        idle.append(_Worker(ctx, data, task_fn))
                finished(task, *item)
        for worker in idle:
            worker.stop(wait=True)
        idle = []
    finally:  # on Ctrl-C or an error: stop the workers
        for worker in idle + busy:
            worker.stop(wait=False)


def _run_dask(scheduler, todo, data, finished):
    """The trials on a Dask cluster: the data scattered once (broadcast), one task per trial."""
    from distributed import Client, as_completed
    own = not isinstance(scheduler, Client)
    if own:
        address = getattr(scheduler, "scheduler_address", scheduler)
        client = Client(address)  # the default client while the sweep runs (as_completed)
    else:
        client = scheduler
    futures = {}
    try:
        [data_future] = client.scatter([data], broadcast=True)
        for config, params, label in todo:
            fut = client.submit(_dask_task, config, params, label, data_future, pure=False,
                                key=f"fastnn-trial-{label}-{os.urandom(4).hex()}")
            futures[fut] = (config, params, label)
        for fut in as_completed(list(futures)):
            try:
                item = fut.result()
            except Exception as exc:  # a worker died, or the task could not run
                item = _failure(*futures[fut], exc)
            finished(futures[fut], *item)
    except KeyboardInterrupt:
        client.cancel(list(futures))
        raise
    finally:
        if own:
            client.close()


def _failure(config, params, label, exc):
    error = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    return ({"params": params, "run": label, "config": config, "status": "failed",
             "test_accuracy": None, "val_accuracy": None, "epochs": None, "seconds": None,
             "train_seconds": None, "error": error}, {})


def _accept(task, record, files):
    """A worker's ``(record, files)`` as the client writes them: the record's
    ``run``, ``params`` and ``config`` are the client's own, and only files with
    plain names (see :func:`_plain_name`) and bytes contents are kept; any other
    makes the trial ``failed``, naming them."""
    config, params, label = task
    if not isinstance(record, dict) or not isinstance(files, dict):
        return _failure(config, params, label, f"the worker returned {type(record).__name__} "
                                               f"and {type(files).__name__}, not a record "
                                               f"and files")
    record = {**record, "run": label, "params": params, "config": config}
    bad = sorted(repr(n) for n, blob in files.items()
                 if not _plain_name(n) or not isinstance(blob, (bytes, bytearray)))
    if bad:
        files = {n: blob for n, blob in files.items()
                 if _plain_name(n) and isinstance(blob, (bytes, bytearray))}
        error = (f"the worker returned files that are not plain file names (or not bytes), "
                 f"not written: {', '.join(bad)[:500]}")
        record["status"] = "failed"
        record["error"] = error if not record.get("error") else f"{record['error']}; {error}"
    return record, files


def _load_previous(path):
    """Trials of an earlier run of the sweep, by :func:`trial_key`."""
    try:
        old = json.loads(path.read_text())
        return {trial_key(t["config"]): t for t in old.get("trials", [])
                if isinstance(t, dict) and isinstance(t.get("config"), dict)}
    except (OSError, ValueError, TypeError, AttributeError, KeyError):
        return {}


def _finished_run(out, old, label, config):
    """The run folder of ``config``'s earlier ``ok`` trial ``old`` (a record of
    sweep.json) if it is there, else None. A folder named before run folder names
    had a hash (``activation=relu``) counts if its config.json is this config's."""
    if not isinstance(old, dict) or old.get("status") != "ok":
        return None
    run = old.get("run")
    if run == label:
        return label if (out / label).is_dir() else None
    if not _plain_name(run) or not (out / run).is_dir():
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


def _write_run(out, label, files):
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


def _write_summary(out, summary):
    """``sweep.json``, atomically (:func:`fastnn._atomic.atomic_write_json`)."""
    atomic_write_json(out / "sweep.json", summary, indent=2)


def _rank_value(trial):
    """Validation accuracy, else test accuracy (trials without validation)."""
    value = trial.get("val_accuracy")
    return trial.get("test_accuracy") if value is None else value


def _best(trials):
    ok = [t for t in trials if t["status"] == "ok" and _rank_value(t) is not None]
    return max(ok, key=_rank_value)["run"] if ok else None


def _plot(out, summary):
    from .plots import plot_sweep_results
    histories = {}
    for t in summary["trials"]:
        path = out / t["run"] / "history.json"
        with contextlib.suppress(OSError, ValueError, KeyError):
            histories[t["run"]] = json.loads(path.read_text())["history"]
    plot_sweep_results(histories, summary["trials"], list(summary["grid"]), out / "sweep.png",
                       title=summary["name"])


def format_table(summary: Mapping[str, Any]) -> str:
    """The trials as a text table sorted by validation accuracy, the best marked ``*``."""
    keys = list(summary["grid"])
    trials = sorted(summary["trials"], key=lambda t: (t["status"] != "ok",
                                                      -(_rank_value(t) or 0.0)))
    head = ["", *keys, "val acc", "test acc", "epochs", "seconds", "status"]
    rows = []
    for t in trials:
        pct = lambda v: "" if v is None else f"{v * 100:.2f} %"  # noqa: E731
        status = t["status"] if t["error"] is None else f"{t['status']}: {t['error']}"
        rows.append(["*" if t["run"] == summary["best"] else "",
                     *(json.dumps(t["params"].get(k)) if not isinstance(t["params"].get(k), str)
                       else t["params"][k] for k in keys),
                     pct(t["val_accuracy"]), pct(t["test_accuracy"]),
                     "" if t["epochs"] is None else str(t["epochs"]),
                     "" if t["seconds"] is None else f"{t['seconds']:.1f}", status])
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head) - 1)]
    buf = io.StringIO()
    for r in [head, *rows]:
        buf.write("  ".join(str(c).ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] + "\n")
    return buf.getvalue().rstrip("\n")
