"""Hyperparameter sweeps: many training runs, on this machine's cores or a Dask cluster.

A sweep is a base config and a grid (config key -> values); its trials are
the product of the grid (or ``random`` of them). Each trial trains one config
with :func:`fastnn.experiment.run_experiment` into its own run folder under ``out``.
Trials run one after another (``jobs=1``), in worker processes on this
machine (``jobs=N``), or on a running Dask cluster (``scheduler=ADDRESS``).
Workers need fastnn, not the data files: the client loads the data once and
sends it once (to each worker process when it starts; to a Dask cluster with
one broadcast ``scatter``). Every trial trains on one thread (fastnn's and
BLAS's) in a worker, and returns its run folder's files to the client, which writes them
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

The package, one module per concern: :mod:`~fastnn.sweep.grid` (the grid,
the trials' identity and folder names), :mod:`~fastnn.sweep.trial` (one trial,
as a worker runs it), :mod:`~fastnn.sweep.executors` (worker processes, a
Dask cluster), :mod:`~fastnn.sweep.store` (sweep.json and the run folders on
disk), :mod:`~fastnn.sweep.report` (the table and the plot) and
:mod:`~fastnn.sweep.runner` (:func:`run_sweep`, which ties them together).
"""
from .grid import MAX_LABEL, expand_grid, parse_grid, sample_trials, trial_key, trial_label
from .report import format_table
from .runner import SCHEMA_VERSION, run_sweep
from .trial import run_trial

__all__ = ["expand_grid", "sample_trials", "trial_key", "trial_label", "run_sweep", "run_trial",
           "format_table", "parse_grid", "MAX_LABEL", "SCHEMA_VERSION"]
