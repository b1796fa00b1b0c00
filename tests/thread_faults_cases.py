"""The divergence paths of the compiled training loop on several threads, as a
script that a test runs in a subprocess with a timeout (a hang is then a
failed test, not a hung suite), or by hand as the stress run:

    python tests/thread_faults_cases.py --reps 200 --busy 4

Each case trains a few batches whose last (partial) batch makes the loss
non-finite (NaN rows) or whose update makes a weight infinite (the loss
stays finite), on 1-4 threads, and checks the result: the rows consumed and
the diverged flag, the same on every thread count. ``--delay`` makes
training thread 1 sleep at each of the loop's decision points in turn (the
test-only hook ``fastnn._kernels._test_delay``), which provokes
deterministically the race that hung fastnn 0.1; ``--busy N`` starts N
processes spinning on the CPU for the duration (an oversubscribed machine).
"""
import argparse
import multiprocessing as mp
import os
import sys
import time

import numpy as np

from fastnn import _kernels
from fastnn import kernels as K
from fastnn._layout import n_params
from fastnn.training import Workspace


def nan_partial_case(batch, n_rows, n_bad, dtype=np.float32, sizes=(784, 128, 10)):
    """[784, 128, 10] on n_rows rows whose last n_bad are NaN, in batches of
    ``batch``: a full batch splits the first layer over the threads (batch 10:
    1.0M multiply-adds), the partial last one may not. Returns the arguments
    and the expected (rows, diverged)."""
    rng = np.random.default_rng(0)
    sizes = np.array(sizes, np.intp)
    X = rng.standard_normal((n_rows, sizes[0])).astype(dtype)
    X[n_rows - n_bad:] = np.nan
    y = rng.integers(0, sizes[-1], n_rows).astype(np.intp)
    params = np.zeros(n_params(list(sizes)), dtype)
    params[:sizes[0] * sizes[1]] = rng.standard_normal(sizes[0] * sizes[1]) * 0.03
    first_bad_batch = (n_rows - n_bad) // batch * batch
    return dict(X=X, y=y, sizes=sizes, params=params, activation="relu", batch=batch,
                slots=np.zeros((1, params.size), dtype)), (first_bad_batch, True)


def inf_weight_case(batch, n_batches=3, dtype=np.float32):
    """[2, 2, 3], tanh, first-layer weights and velocity at 0.9x the dtype's max: the hidden
    units saturate (the loss stays finite), the momentum step overflows the
    weights; the call stops after that first batch and says it diverged (with
    one batch in the call, nothing after it would notice)."""
    rng = np.random.default_rng(1)
    sizes = np.array([2, 2, 3], np.intp)
    params = np.zeros(n_params([2, 2, 3]), dtype)
    big = float(np.finfo(dtype).max) * 0.9  # 3.06e38 in float32
    params[:4] = np.array([big, -big, -big, big], dtype)
    params[4:10] = 0.1
    slots = np.zeros((1, params.size), dtype)
    slots[0, :4] = params[:4]
    n_rows = n_batches * batch
    X = rng.standard_normal((n_rows, 2)).astype(dtype)
    y = (np.arange(n_rows) % 3).astype(np.intp)
    return dict(X=X, y=y, sizes=sizes, params=params, activation="tanh", batch=batch,
                slots=slots), (batch, True)


def run_case(case, n_threads):
    args, expected = case
    params, slots = args["params"].copy(), args["slots"].copy()
    ws = Workspace(args["sizes"], args["batch"], params.dtype)
    order = np.arange(args["X"].shape[0], dtype=np.intp)
    rows, _, _, diverged = K.train_batches(
        args["X"], args["y"], order, 0, order.size, args["batch"], args["sizes"],
        args["activation"], params, slots, ws, K.Hyper("sgd", learning_rate=0.5, momentum=0.9),
        n_threads=n_threads)
    return (rows, diverged), expected


def cases():
    yield "nan-partial-b10", nan_partial_case(10, 13, 3)
    yield "nan-partial-b64", nan_partial_case(64, 64 * 2 + 5, 5)
    yield "nan-full-b32", nan_partial_case(32, 96, 32)
    yield "nan-wide-b7", nan_partial_case(7, 7 * 3 + 2, 2, sizes=(300, 256, 256, 10))
    yield "inf-weight-b4", inf_weight_case(4)
    yield "inf-weight-b1", inf_weight_case(1)
    yield "inf-weight-one-batch", inf_weight_case(5, n_batches=1)


def _spin(stop):
    while not stop.is_set():
        pass


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--threads", default="1,2,3,4")
    p.add_argument("--busy", type=int, default=0, help="spinning processes to start")
    p.add_argument("--delay", action="store_true", help="delay thread 1 at each point")
    a = p.parse_args(argv)
    ctx = mp.get_context("fork" if hasattr(os, "fork") else "spawn")
    stop = ctx.Event()
    busy = [ctx.Process(target=_spin, args=(stop,), daemon=True) for _ in range(a.busy)]
    for b in busy:
        b.start()
    t0 = time.perf_counter()
    runs = 0
    try:
        all_cases = list(cases())
        points = [(1, 1, 2000), (1, 2, 2000), (1, 3, 2000)] if a.delay else [(-1, 0, 0)]
        for rep in range(a.reps):
            for tid, point, us in points:
                _kernels._test_delay(tid, point, us)
                for name, case in all_cases:
                    for nt in (int(t) for t in a.threads.split(",")):
                        got, expected = run_case(case, nt)
                        runs += 1
                        if got != expected:
                            print(f"FAIL {name} threads={nt} delay={point}: got {got}, "
                                  f"expected {expected}", flush=True)
                            return 1
    finally:
        _kernels._test_delay(-1, 0, 0)
        stop.set()
        for b in busy:
            b.join(timeout=5)
    print(f"ok: {runs} runs in {time.perf_counter() - t0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
