"""scikit-learn workflows: GridSearchCV with fastnn's and scikit-learn's MLPClassifier,
and sweep throughput sequential vs ``--jobs 2`` vs a two-worker Dask LocalCluster.

GridSearchCV(cv=3) runs the same grid over the same hyperparameters with
both estimators: ``solver="sgd"``, classical momentum 0.9
(``nesterovs_momentum=False``, the same update rule in both),
``batch_size=128``, ``max_iter`` epochs, ``tol=0`` so that neither stops
early, float32 inputs (both then compute in float32), every BLAS on one
thread (``threadpoolctl``), ``n_jobs=1``. Reported: the wall time of each
search and its best mean cross-validated accuracy.

The sweep trains 8 MNIST configs (learning rate x L2) of ``[784, 128, 10]``
four ways: one after another with one BLAS thread, one after another with
BLAS's default threads, ``jobs=2`` worker processes, and a two-worker
``distributed.LocalCluster`` (one thread per worker). Reported: trials per
minute (wall time of the sweep, including the one-off start of the workers
and the sending of the data).

Plain ``pytest`` runs both once on a subset, untimed, as correctness tests.
The real measurement is the script::

    python benchmarks/bench_sklearn.py                # full MNIST
    python benchmarks/bench_sklearn.py --samples 6000 --max-iter 3 --epochs 1   # quicker
"""
import argparse
import gc
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

GRID = {"alpha": [1e-4, 1e-3], "learning_rate_init": [0.01, 0.05]}
COMMON = dict(hidden_layer_sizes=(128,), solver="sgd", momentum=0.9, nesterovs_momentum=False,
              batch_size=128, tol=0.0, random_state=0)
SWEEP_GRID = {"learning_rate": [0.01, 0.02, 0.05, 0.1], "l2": [0.0, 1e-3]}  # 8 trials
SWEEP_BASE = {"layers": [784, 128, 10], "activation": "relu", "batch_size": 128,
              "momentum": 0.9, "validation_split": 0.1, "seed": 0}


def gridsearch(estimator, X, y, grid=GRID, cv=3):
    """``(seconds, best mean CV score, best params)`` of GridSearchCV over ``grid``
    (the estimator's own score: accuracy for a classifier, R² for a regressor),
    one BLAS thread, ``n_jobs=1``."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import GridSearchCV
    from threadpoolctl import threadpool_limits
    search = GridSearchCV(estimator, grid, cv=cv, n_jobs=1)
    with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t0 = time.perf_counter()
        search.fit(X, y)
        seconds = time.perf_counter() - t0
    return seconds, float(search.best_score_), search.best_params_


def compare_gridsearch(X, y, max_iter, pair=None, grid=GRID, common=COMMON):
    """The same GridSearchCV with fastnn's and scikit-learn's estimator of ``pair``
    (``(fastnn class, scikit-learn class)``; default the two ``MLPClassifier``),
    each built with ``max_iter`` and ``common``: a dict per estimator, the
    speed-up (scikit-learn's seconds / fastnn's) and the difference of the best
    scores (fastnn's - scikit-learn's). bench_regressor.py uses it for the
    regressors."""
    if pair is None:
        from sklearn.neural_network import MLPClassifier as SkMLP

        from fastnn.sklearn import MLPClassifier
        pair = (MLPClassifier, SkMLP)
    rows = {}
    for name, cls in zip(("fastnn", "scikit-learn"), pair):
        seconds, score, params = gridsearch(cls(max_iter=max_iter, **common), X, y, grid)
        rows[name] = {"seconds": seconds, "best_score": score, "best_params": params}
    rows["speedup"] = rows["scikit-learn"]["seconds"] / rows["fastnn"]["seconds"]
    rows["score_difference"] = rows["fastnn"]["best_score"] - rows["scikit-learn"]["best_score"]
    return rows


def sweep_throughput(data, epochs, out, modes=("sequential-1-thread", "sequential-default",
                                               "jobs-2", "localcluster-2"), grid=None):
    """Trials per minute of the sweep over ``grid`` (SWEEP_GRID: 8 trials) in each mode."""
    from fastnn import sweep, threads
    base = {**SWEEP_BASE, "epochs": epochs}
    rows = {}
    for mode in modes:
        kwargs = {"jobs": 1}
        previous = threads.get_num_threads()
        cluster = None
        try:
            if mode == "sequential-1-thread":
                threads.set_num_threads(1)
            elif mode == "jobs-2":
                kwargs = {"jobs": 2}
            elif mode == "localcluster-2":
                from distributed import LocalCluster
                cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
                kwargs = {"scheduler": cluster.scheduler_address}
            t0 = time.perf_counter()
            summary = sweep.run_sweep(base, grid or SWEEP_GRID, Path(out) / mode, data=data,
                                      progress=False, **kwargs)
            seconds = time.perf_counter() - t0
        finally:
            threads.set_num_threads(previous)
            if cluster is not None:
                cluster.close()
                gc.collect()  # the cluster's finalizers now, not inside a later test
        ok = [t for t in summary["trials"] if t["status"] == "ok"]
        rows[mode] = {"seconds": seconds, "trials": len(summary["trials"]), "ok": len(ok),
                      "trials_per_minute": 60.0 * len(summary["trials"]) / seconds,
                      "best": summary["best"],
                      "test_accuracy": {t["run"]: t["test_accuracy"] for t in ok}}
    return rows


def _subset(mnist_train, n):
    X, y = mnist_train
    return X[:n], y[:n]


# ---------------------------------------------------------------------------
# plain pytest: once, small, untimed
# ---------------------------------------------------------------------------

def test_gridsearch_fastnn_vs_sklearn_runs(mnist_train):
    X, y = _subset(mnist_train, 1500)
    rows = compare_gridsearch(X, y, max_iter=2)
    for name in ("fastnn", "scikit-learn"):
        assert rows[name]["best_score"] > 0.75, rows
        assert set(rows[name]["best_params"]) == set(GRID)


def test_sweep_throughput_modes_agree(mnist_train, tmp_path):
    X, y = _subset(mnist_train, 3000)
    data = ((X[:2000], y[:2000]), (X[2000:], y[2000:]))
    rows = sweep_throughput(data, epochs=1, out=tmp_path, grid={"learning_rate": [0.05, 0.1]},
                            modes=("sequential-1-thread", "jobs-2", "localcluster-2"))
    for row in rows.values():
        assert row["ok"] == row["trials"] == 2
    # one BLAS thread everywhere: the same accuracies whichever runs the trials
    assert rows["jobs-2"]["test_accuracy"] == rows["sequential-1-thread"]["test_accuracy"]
    assert rows["localcluster-2"]["test_accuracy"] == rows["sequential-1-thread"]["test_accuracy"]


# ---------------------------------------------------------------------------
# the real measurement
# ---------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=None, help="MNIST folder (default: $FASTNN_DATA)")
    parser.add_argument("--samples", type=int, default=None, help="training images (all: 60,000)")
    parser.add_argument("--max-iter", type=int, default=10, help="GridSearchCV epochs per fit")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per sweep trial")
    parser.add_argument("--skip", choices=["gridsearch", "sweep"], action="append", default=[])
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    from fastnn_bench.machine import machine_info
    from fastnn.datasets import load_mnist
    (X, y), (Xt, yt) = load_mnist(args.data_dir)
    if args.samples:
        X, y = X[:args.samples], y[:args.samples]
    y, yt = y.astype(np.intp), yt.astype(np.intp)
    report = {"machine": machine_info(), "samples": len(X), "load_average": os.getloadavg()}
    print(f"{report['machine']}\n{len(X)} training images; load average {os.getloadavg()}")
    if "gridsearch" not in args.skip:
        rows = compare_gridsearch(X, y, args.max_iter)
        report["gridsearch"] = {"grid": GRID, "max_iter": args.max_iter, **rows}
        print(f"\nGridSearchCV(cv=3), {len(GRID['alpha']) * len(GRID['learning_rate_init'])} "
              f"candidates, max_iter={args.max_iter}, one BLAS thread:")
        for name in ("fastnn", "scikit-learn"):
            r = rows[name]
            print(f"  {name:>12}: {r['seconds']:8.1f} s, best CV accuracy {r['best_score']:.4f} "
                  f"{r['best_params']}")
        print(f"  speed-up: {rows['speedup']:.2f}x")
    if "sweep" not in args.skip:
        with tempfile.TemporaryDirectory() as tmp:
            rows = sweep_throughput(((X, y), (Xt, yt)), args.epochs, tmp)
        report["sweep"] = {"grid": SWEEP_GRID, "epochs": args.epochs, **rows}
        seq = rows["sequential-1-thread"]["trials_per_minute"]
        print(f"\nsweep of 8 trials, {args.epochs} epochs each:")
        for mode, r in rows.items():
            print(f"  {mode:>20}: {r['seconds']:7.1f} s, {r['trials_per_minute']:6.2f} trials/min "
                  f"({r['trials_per_minute'] / seq:.2f}x sequential 1-thread)")
        ratio = rows["localcluster-2"]["trials_per_minute"] / rows["jobs-2"]["trials_per_minute"]
        print(f"  LocalCluster / jobs-2: {ratio:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
