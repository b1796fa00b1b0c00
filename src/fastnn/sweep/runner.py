""":func:`run_sweep`: a sweep from grid to ``sweep.json``, in the client."""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from pathlib import Path

from tqdm.auto import tqdm

from .. import config as cfg
from .. import datasets, threads
from .._validation import check_int
from . import executors, report, store
from .grid import (check_config, data_key, expand_grid, plain_config, sample_trials, trial_key,
                   trial_label)
from .trial import run_trial

#: The version of sweep.json's layout.
SCHEMA_VERSION = 1


def _a_list(values):
    """Whether a grid entry is a collection of values (a list, tuple, range,
    NumPy array, generator...), not one value (a string, a mapping)."""
    return isinstance(values, Iterable) and not isinstance(values, (str, bytes, Mapping))


def _distinct_trials(base, grid):
    """The grid's trials (their params), a value given twice once: the same
    resolved config is the same trial (merged before --random draws)."""
    trials, keys = [], set()
    for params in expand_grid(grid):
        try:
            key = trial_key(cfg.resolve({**base, **params}))
        except TypeError as exc:  # json.dumps: a value that is not one of a config's
            raise ValueError(f"sweep configs hold JSON values (numbers, strings, lists, "
                             f"mappings; schedule and augmentation objects): {exc}") from None
        if key not in keys:
            keys.add(key)
            trials.append(params)
    return trials


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
    base = plain_config(dict(base_config))
    jobs = threads.usable_cores() if jobs is None else check_int(jobs, "jobs", low=1)
    if not isinstance(grid, Mapping):
        raise ValueError(f"the grid must map config keys to lists of values, got {grid!r}")
    grid = {k: plain_config(list(v)) if _a_list(v) else v
            for k, v in grid.items()}  # any iterable of values: a list of plain values
    trials = _distinct_trials(base, grid)
    if random is not None:
        trials = sample_trials(trials, random, seed)
    configs = []
    for params in trials:
        config = cfg.resolve({**base, **params})
        check_config(config)
        configs.append((config, params, trial_label(params, config)))
    data = _prepare_data(data, data_dir, loader, {data_key(c) for c, _, _ in configs})

    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"version": SCHEMA_VERSION, "name": name or out.name, "base_config": base,
               "grid": {k: list(v) for k, v in grid.items()}, "random": random, "seed": seed,
               "trials": [], "best": None}
    previous = store.load_previous(out / "sweep.json")
    done, todo = [], []
    for config, params, label in configs:
        run = store.finished_run(out, previous.get(trial_key(config)), label, config)
        if run is not None:
            done.append({**previous[trial_key(config)], "run": run})
        else:
            todo.append((config, params, label))
    summary["trials"] = list(done)
    summary["skipped"] = len(done)
    store.write_summary(out, summary)

    t0 = time.perf_counter()
    bar = tqdm(total=len(configs), initial=len(done), unit="trial", disable=not progress,
               desc=f"sweep {summary['name']}")

    def finished(task, record, files):
        record, files = store.accept(task, record, files)
        store.write_run(out, record["run"], files)
        summary["trials"].append(record)
        store.write_summary(out, summary)
        bar.update(1)
        bar.set_postfix(last=f"{record['run']}: {record['status']}")

    try:
        if not todo:
            pass
        elif scheduler is not None:
            executors.run_dask(scheduler, todo, data, finished)
        elif jobs > 1 and len(todo) > 1:
            executors.run_processes(min(jobs, len(todo)), todo, data, finished)
        else:
            for task in todo:
                config, params, label = task
                finished(task, *run_trial(config, params, label, data[data_key(config)],
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
        summary["best"] = report.best(summary["trials"])
        store.write_summary(out, summary)
        if summary["trials"]:
            report.plot(out, summary)
    return summary


def _prepare_data(data, data_dir, loader, needed):
    """``{(dataset, normalize): data}`` covering every trial."""
    if data is None:
        if loader is None:
            loader = lambda dataset, normalize: datasets.load_dataset(  # noqa: E731
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


