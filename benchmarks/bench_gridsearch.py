"""fastnn's threads inside a parallel search: ``GridSearchCV(n_jobs=2)`` over
``fastnn.sklearn.MLPClassifier`` with the default ``n_threads`` against
``n_threads=1``.

joblib's loky workers set ``OMP_NUM_THREADS`` to their share of the cores;
fastnn's default thread count follows it (see :mod:`fastnn.threads`), so the
default must cost no more than one thread per worker (fastnn 0.1 started one
thread per core in every worker, each spinning at its barriers: 1.5-7x the
time). The measurement is the script (3 interleaved repeats after a warm-up
search that starts the workers)::

    python benchmarks/bench_gridsearch.py [--samples 20000] [--repeats 3]

Plain ``pytest`` runs the comparison once on a small subset, untimed: both
settings find the same best parameters (the weights do not depend on the
thread count).
"""
import argparse
import time
import warnings

import pytest

GRID = {"learning_rate_init": [0.01, 0.05], "alpha": [1e-4, 1e-3, 1e-2]}


def search(X, y, n_threads, max_iter=3, n_jobs=2):
    from sklearn.model_selection import GridSearchCV
    from fastnn.sklearn import MLPClassifier
    est = MLPClassifier(hidden_layer_sizes=(128,), solver="sgd", batch_size=32,
                        max_iter=max_iter, random_state=0, n_threads=n_threads)
    gs = GridSearchCV(est, GRID, cv=2, n_jobs=n_jobs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter
        t0 = time.perf_counter()
        gs.fit(X, y)
    return time.perf_counter() - t0, gs


def test_gridsearch_default_threads_same_result(mnist_train):
    pytest.importorskip("sklearn")
    X, y = mnist_train
    X, y = X[:1000], y[:1000]
    _, a = search(X, y, None, max_iter=1)
    _, b = search(X, y, 1, max_iter=1)
    assert a.best_params_ == b.best_params_
    assert a.best_score_ == b.best_score_


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=20000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--data-dir", default=None)
    args = p.parse_args(argv)
    import platform
    from fastnn import datasets
    (X, y), _ = datasets.load_mnist(args.data_dir)
    X, y = X[:args.samples], y[:args.samples]
    search(X[:1000], y[:1000], None, max_iter=1)  # start the workers
    times = {"default": [], "n_threads=1": []}
    for _ in range(args.repeats):
        times["default"].append(search(X, y, None)[0])
        times["n_threads=1"].append(search(X, y, 1)[0])
    print(f"CPU: {platform.processor() or platform.machine()}; {args.samples} images, "
          f"{len(GRID['learning_rate_init']) * len(GRID['alpha'])} candidates, cv=2, n_jobs=2")
    for k, v in times.items():
        print(f"  {k:12s} " + "  ".join(f"{t:.2f} s" for t in v))
    per_run = [a / b for a, b in zip(times["default"], times["n_threads=1"])]
    print(f"default / n_threads=1: {min(times['default']) / min(times['n_threads=1']):.3f} "
          f"(best of {args.repeats}); per run " + ", ".join(f"{r:.2f}" for r in per_run))


if __name__ == "__main__":
    main()
