"""GridSearchCV with fastnn's and scikit-learn's MLPRegressor on Friedman #1.

The data: scikit-learn's generated ``make_friedman1`` (10 features, 5 of them
used, ``y = 10 sin(pi x0 x1) + 20 (x2 - 0.5)^2 + 10 x3 + 5 x4 + noise``, noise
sd 1; ``random_state=0``), features standardised, float32 (both estimators then
compute in float32). It ships with scikit-learn (generated, no download).

GridSearchCV(cv=3) runs the same grid over the same hyperparameters with both
estimators: ``solver="sgd"``, classical momentum 0.9
(``nesterovs_momentum=False``, the same update rule in both), ``batch_size=128``,
``max_iter`` epochs, ``tol=0`` so that neither stops early, every BLAS on one
thread (``threadpoolctl``), ``n_jobs=1``. Reported: the wall time of each search,
their ratio, and the best mean cross-validated R² of each.

Plain ``pytest`` runs it once on a subset, untimed, as a correctness test. The
real measurement is the script::

    python benchmarks/bench_regressor.py                      # 20,000 samples, 20 epochs
    python benchmarks/bench_regressor.py --samples 5000 --max-iter 5   # quicker
"""
import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

GRID = {"alpha": [1e-4, 1e-2], "learning_rate_init": [0.002, 0.01]}
COMMON = dict(hidden_layer_sizes=(128,), solver="sgd", momentum=0.9, nesterovs_momentum=False,
              batch_size=128, tol=0.0, random_state=0)


def friedman(n_samples, seed=0):
    """``(X, y)``: make_friedman1's 10 features standardised, float32."""
    from sklearn.datasets import make_friedman1
    X, y = make_friedman1(n_samples=n_samples, n_features=10, noise=1.0, random_state=seed)
    X = (X - X.mean(0)) / X.std(0)
    return X.astype(np.float32), y.astype(np.float32)


def compare_regressors(X, y, max_iter):
    """Both regressors over GRID (bench_sklearn's :func:`compare_gridsearch`)."""
    from sklearn.neural_network import MLPRegressor as SkMLPRegressor

    from bench_sklearn import compare_gridsearch
    from fastnn.sklearn import MLPRegressor
    return compare_gridsearch(X, y, max_iter, pair=(MLPRegressor, SkMLPRegressor), grid=GRID,
                              common=COMMON)


# ---------------------------------------------------------------------------
# plain pytest: once, small, untimed
# ---------------------------------------------------------------------------

def test_regressor_gridsearch_fastnn_vs_sklearn_runs():
    X, y = friedman(1500)
    rows = compare_regressors(X, y, max_iter=10)
    for name in ("fastnn", "scikit-learn"):
        assert rows[name]["best_score"] > 0.6, rows
        assert set(rows[name]["best_params"]) == set(GRID)
    assert abs(rows["score_difference"]) < 0.05, rows


# ---------------------------------------------------------------------------
# the real measurement
# ---------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=20000, help="generated samples")
    parser.add_argument("--max-iter", type=int, default=20, help="GridSearchCV epochs per fit")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    from fastnn_bench.machine import machine_info
    X, y = friedman(args.samples)
    report = {"machine": machine_info(), "samples": len(X), "load_average": os.getloadavg(),
              "data": "sklearn.datasets.make_friedman1(n_features=10, noise=1.0, "
                      "random_state=0), standardised, float32"}
    print(f"{report['machine']}\n{len(X)} samples of Friedman #1; load average "
          f"{os.getloadavg()}")
    rows = compare_regressors(X, y, args.max_iter)
    report["gridsearch"] = {"grid": GRID, "max_iter": args.max_iter, **rows}
    n_candidates = len(GRID["alpha"]) * len(GRID["learning_rate_init"])
    print(f"\nGridSearchCV(cv=3), {n_candidates} candidates, max_iter={args.max_iter}, "
          f"one BLAS thread:")
    for name in ("fastnn", "scikit-learn"):
        r = rows[name]
        print(f"  {name:>12}: {r['seconds']:8.2f} s, best CV R² {r['best_score']:.4f} "
              f"{r['best_params']}")
    print(f"  speed-up: {rows['speedup']:.2f}x; R² difference {rows['score_difference']:+.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
