"""A sparse X: the first layer's products on the CSR rows vs the dense path.

The data: a generated CSR matrix (``n`` rows, ``d`` features, each entry set
with probability ``density``, standard normal values; labels from a random
linear map of the rows), float32. Both paths run the same compiled call
(:func:`fastnn.kernels.train_batches`, one epoch, layers ``[d, 128, 10]``,
batch 128, SGD with momentum 0.9) from the same start, side by side in one
process: ``csr_products=False`` scatters each batch's rows into a dense A_0
and runs the dense products; ``csr_products=True`` runs the first layer's
forward and weight gradient on the CSR rows (both then update every weight).
Reported per (d, density): the seconds of each (best of ``--repeat``) and
their ratio; the crossover where the ratio reaches 1 sets
``fastnn._kernels.CSR_PRODUCTS_MAX_DENSITY``.

Plain ``pytest`` runs it once, small and untimed, as a correctness test. The
measurement is the script::

    python benchmarks/bench_sparse.py                        # d 10k and 100k
    python benchmarks/bench_sparse.py --features 20000 --rows 2048
"""
import argparse
import json
import platform
import time
import types

import numpy as np


def sparse_problem(n, d, density, k=10, seed=0):
    """``(X, y)``: a CSR X (float32, intp indices) and k-class labels."""
    import scipy.sparse as sp
    rng = np.random.default_rng(seed)
    X = sp.random(n, d, density=density, format="csr", dtype=np.float32, random_state=rng,
                  data_rvs=rng.standard_normal)
    X.indices, X.indptr = X.indices.astype(np.intp), X.indptr.astype(np.intp)
    y = np.asarray(X @ rng.standard_normal((d, k)).astype(np.float32)).argmax(1)
    return X, y.astype(np.intp)


def one_epoch(X, y, csr_products, hidden=128, batch_size=128, n_threads=1, seed=0):
    """``(seconds, params)`` of one epoch of the compiled loop on X."""
    from fastnn import kernels
    from fastnn._layout import as_sizes, n_params, unflatten, workspace_sizes
    d, k = X.shape[1], int(y.max()) + 1
    sizes = as_sizes([d, hidden, k])
    p = n_params(list(sizes))
    rng = np.random.default_rng(seed)
    params = np.zeros(p, np.float32)
    for W in unflatten(params, list(sizes))[0]:
        W[...] = rng.standard_normal(W.shape) / np.sqrt(W.shape[0])
    slots = np.zeros((1, p), np.float32)
    need = workspace_sizes(list(sizes), batch_size)
    ws = types.SimpleNamespace(
        grads=np.zeros(p, np.float32), acts=np.zeros(need.acts, np.float32),
        deltas=np.zeros(need.deltas, np.float32), ybuf=np.zeros(batch_size, np.intp),
        wbuf=np.zeros(need.wbuf, np.float32), masks=np.zeros(need.masks, np.uint8))
    order = np.arange(X.shape[0], dtype=np.intp)
    hyper = kernels.Hyper("sgd", learning_rate=0.01, momentum=0.9)
    t0 = time.perf_counter()
    kernels.train_batches(X, y, order, 0, X.shape[0], batch_size, sizes, "relu", params, slots,
                          ws, hyper, n_threads=n_threads, csr_products=csr_products)
    return time.perf_counter() - t0, params


def compare(n, d, density, repeat=1, n_threads=1):
    X, y = sparse_problem(n, d, density)
    row = {"rows": n, "features": d, "density": density, "nnz": int(X.nnz)}
    for name, flag in (("dense", False), ("csr", True)):
        times = []
        for _ in range(repeat):
            seconds, params = one_epoch(X, y, flag, n_threads=n_threads)
            times.append(seconds)
        row[name + "_s"] = min(times)
        row[name + "_params"] = params
    row["speedup"] = row["dense_s"] / row["csr_s"]
    a, b = row.pop("dense_params"), row.pop("csr_params")
    row["max_param_difference"] = float(np.abs(a - b).max())
    return row


def test_sparse_bench_runs():
    row = compare(256, 2000, 0.01)
    assert row["max_param_difference"] < 1e-4  # the same training, other summation order
    assert row["dense_s"] > 0 and row["csr_s"] > 0


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=2048)
    ap.add_argument("--features", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--densities", type=float, nargs="+",
                    default=[0.001, 0.003, 0.01, 0.03, 0.1])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    print(f"# CPU: {cpu_name()}; {args.rows} rows, layers [d, 128, 10], batch 128, float32, "
          f"{args.threads} thread(s)")
    print(f"{'features':>9} {'density':>8} {'dense s':>9} {'csr s':>9} {'speed-up':>9}")
    rows = []
    for d in args.features:
        for density in args.densities:
            row = compare(args.rows, d, density, args.repeat, args.threads)
            rows.append(row)
            print(f"{d:9d} {density:8.3%} {row['dense_s']:9.3f} {row['csr_s']:9.3f} "
                  f"{row['speedup']:8.2f}x", flush=True)
    print(json.dumps({"cpu": cpu_name(), "results": rows}))


if __name__ == "__main__":
    main()
