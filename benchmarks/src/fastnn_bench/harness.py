"""Time one epoch of MNIST training: fastnn against the alternatives and the machine's limits.

:func:`run` (behind ``fastnn bench``) trains ReLU networks (by default
``[784, 128, 10]``; ``layers`` / ``--layers`` takes several) with SGD
(learning rate 0.01, momentum 0.9, L2 1e-3, float32) for one epoch of the
60,000 MNIST training images, per batch size (by default 1, 10, 32, 128 and
512; batch 1 over the first :data:`BATCH1_SAMPLES` images only, so that the
slow trainers finish; the table says so), with:

* ``fastnn``: the compiled trainer (:func:`fastnn.training.fit`, default kernels);
* ``numpy``: the pure-NumPy trainer of the same algorithm
  (``kernels=fastnn.reference``): same initial weights, same row order, so
  the same final loss up to float rounding;
* ``jax``: when ``import jax`` works (never a dependency): the whole epoch
  compiled, ``jax.jit`` of a ``lax.scan`` over the batches (one more compiled
  step for a last, shorter batch), fastnn's initial weights and row order,
  the same SGD momentum/L2 update, float32. Its compile time is reported
  apart and not counted in the epoch time; its loss matches fastnn's;
* ``torch``: PyTorch on the CPU, when ``import torch`` works (never a
  dependency): the same network, fastnn's initial weights and row order,
  ``torch.optim.SGD(momentum=0.9)`` with ``weight_decay=1e-3`` on the weights
  only, as fastnn (so its loss matches too, up to rounding);
* ``sklearn``: :class:`sklearn.neural_network.MLPClassifier` (solver "sgd",
  ``max_iter=1``), when scikit-learn is importable: its own initialisation
  and shuffling, and its reported loss includes the L2 penalty, so only its
  time is comparable;
* ``floor``: the matrix products of one epoch and nothing else, with NumPy's
  BLAS (``matmul`` into preallocated outputs): no trainer can beat it with
  the same BLAS, so ``fastnn / floor`` says how much of fastnn's time is not
  GEMM;
* ``floor_scipy``: the same products with the BLAS fastnn's compiled code
  links (SciPy's, through ``scipy.linalg.blas``), which may be another build
  of OpenBLAS than NumPy's.

The roofline: before the trainers, :func:`fastnn_bench._peak.peak_gflops` measures
the single-precision FMA peak of the cores in use (a register-only loop of
fused multiply-adds on as many threads as the trainers' BLAS uses), and each
trainer's epoch FLOPs (those of its matrix products, 2 per multiply-add,
:meth:`fastnn_bench.trainers.GemmFloor.flops`) divided by its time is shown as a percentage of it.

Each trainer is timed ``repeats`` times on a fresh model (building the model
is not timed), in ``repeats`` interleaved rounds that time every trainer once
each (after a warm-up, in a fresh process), so that a drift of the machine's
speed favours no trainer; the table shows the best and median times and the
speed-up of fastnn over each (other's best / fastnn's best).

This module runs the benchmark and parses its options; the rest of fastnn_bench
holds its parts: :mod:`~fastnn_bench.settings` (networks, batches, optimiser),
:mod:`~fastnn_bench.trainers` (the trainers, and the building blocks
``benchmarks/bench_*.py`` time under pytest-benchmark: :func:`make_model`,
:func:`fit_epoch`, :class:`GemmFloor`, :class:`JaxEpoch`),
:mod:`~fastnn_bench.machine` (its description, the FMA peak, the thread limit)
and :mod:`~fastnn_bench.report` (the tables). None of it is part of the fastnn
package: it is the repository's ``benchmarks/`` distribution, fastnn-bench
(``pip install ./benchmarks``), which ``fastnn bench`` imports.
"""
import os
import statistics
import sys

import numpy as np

from fastnn import threads as fastnn_threads

from .machine import format_machine, machine_info, measure_peak, peak_probe, thread_limit
from .report import fmt_time, format_table, jsonable, net_name
from .settings import (ACTIVATION, BATCH1_SAMPLES, BATCH_SIZES, DTYPE, FLOORS, L2, LABELS,
                       LAYERS, LEARNING_RATE, MOMENTUM, OPTIONAL, SEED, TRAINERS, WIDE_BATCH_SIZES,
                       WIDE_LAYERS)
from .trainers import (available_trainers, epoch_flops_per_sample, load_data, make_trainer,
                       time_trainer, warm_up)


def parse_layers(text):
    """``"784,128,10"`` -> ``(784, 128, 10)`` (the ``--layers`` syntax)."""
    try:
        layers = tuple(int(w) for w in str(text).replace("[", "").replace("]", "").split(","))
    except ValueError:
        raise ValueError(f"a network is comma-separated widths like 784,128,10, got {text!r}") \
            from None
    if len(layers) < 2 or min(layers) < 1 or layers[-1] < 2:
        raise ValueError(f"a network needs >= 2 positive widths and >= 2 classes, got {text!r}")
    return layers


def batch_samples(batch_size, n, batch1_samples=BATCH1_SAMPLES):
    """Images of the timed epoch at ``batch_size``: all ``n``, or the first
    ``batch1_samples`` at batch 1."""
    return min(n, int(batch1_samples)) if batch_size == 1 else n


def _time_all(name, data_dir, n_samples, networks, batch_sizes, batch1_samples, repeats, seed,
              threads, data=None):
    """``{(layers, batch_size): (times, loss, compile_seconds)}`` of one trainer
    (run in a child process by :func:`run`)."""
    if name == "jax" and threads == 1 and "jax" not in sys.modules:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   " --xla_cpu_multi_thread_eigen=false"
                                   " intra_op_parallelism_threads=1").strip()
    X, y = load_data(data_dir, n_samples) if data is None else data
    if name in OPTIONAL:
        __import__(OPTIONAL[name])  # before the thread limit, which then covers it
    out = {}
    with thread_limit(threads):
        for layers in networks:
            for b in batch_sizes:
                n = batch_samples(b, X.shape[0], batch1_samples)
                Xb, yb = X[:n], y[:n]
                trainer = make_trainer(name, Xb, yb, b, seed, layers)
                plan = warm_up(name, trainer, Xb, yb, b, seed, layers)
                times, loss = time_trainer(trainer, repeats)
                extra = {"compile_seconds": getattr(trainer, "compile_seconds", None),
                         "step_plans": [plan] if plan is not None else None}
                out[(tuple(layers), b)] = (times, loss, extra)
    return out


def run(data_dir=None, batch_sizes=BATCH_SIZES, repeats=3, threads=None, out=print, *,
        n_samples=None, trainers=None, seed=SEED, isolate=True, layers=(LAYERS,),
        batch1_samples=BATCH1_SAMPLES, peak=True):
    """Time one MNIST epoch per trainer, network and batch size; print side-by-side tables.

    Parameters
    ----------
    data_dir : folder of the MNIST files (default: ``$FASTNN_DATA``, then the
        user cache, downloading if needed; see :mod:`fastnn.datasets`).
    batch_sizes : the batch sizes to time, one table column each.
    repeats : timed runs per trainer and batch size, in as many interleaved
        rounds of all the trainers (best and median reported).
    threads : BLAS threads for every trainer (fastnn, NumPy, torch alike; JAX
        is held to one thread only when this is 1); ``None`` leaves the
        libraries' defaults (``FASTNN_NUM_THREADS``, if set, then applies to
        all of them).
    out : called with each line of the report (``print``); ``None`` for silence.
    n_samples : train on the first ``n_samples`` images only (quick runs).
    trainers : subset of :data:`TRAINERS` (default: all that are importable;
        ``fastnn`` is always included, as the reference of the ratios).
    seed : seed of the models' initial weights and row order.
    isolate : time each trainer in a fresh process (the default), so that no
        library's idle thread pool competes with the next trainer.
    layers : the networks, each a sequence of widths (one table each).
    batch1_samples : images of a batch-1 epoch (the first ones).
    peak : measure the FMA peak and show the roofline.

    Returns
    -------
    dict with ``machine`` (see :func:`machine_info`), ``config``, ``peak``
    (see :func:`measure_peak`, or None) and ``networks``: a list of
    ``{"layers", "batches": {batch_size: {"samples", "flops", "trainers":
    {name: {"times", "best", "median", "loss", "gflops", "peak_pct",
    "compile_seconds"}}, "speedup": {name: other_best / fastnn_best},
    "floor_ratio", "floor_scipy_ratio": fastnn_best / floor_best}}}``;
    JSON-serialisable.
    """
    say = out if out is not None else (lambda *_: None)
    batch_sizes = [int(b) for b in batch_sizes]
    if not batch_sizes or min(batch_sizes) < 1:
        raise ValueError(f"batch_sizes must be positive integers, got {batch_sizes}")
    networks = [parse_layers(",".join(map(str, l)) if not isinstance(l, str) else l)
                for l in layers]
    if not networks:
        raise ValueError("layers must name at least one network")
    repeats = int(repeats)
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    batch1_samples = int(batch1_samples)
    if batch1_samples < 1:
        raise ValueError(f"batch1_samples must be >= 1, got {batch1_samples}")
    if n_samples is not None and (isinstance(n_samples, bool) or int(n_samples) < 1):
        raise ValueError(f"samples must be >= 1 (the first N images), got {n_samples}")
    available = available_trainers()
    if trainers is None:
        names = available
    else:
        unknown = [t for t in trainers if t not in TRAINERS]
        if unknown:
            raise ValueError(f"unknown trainers {unknown}; choose from {list(TRAINERS)}")
        missing = [t for t in trainers if t not in available]
        if missing:
            raise ValueError(f"trainers {missing} are not importable here")
        names = [t for t in TRAINERS if t in trainers or t == "fastnn"]

    if peak:
        peak_probe()  # before any work: fail early where it is not built
    if threads is None:
        threads = fastnn_threads.get_num_threads()
    elif isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    X, y = load_data(data_dir, n_samples)
    with thread_limit(threads):
        machine = machine_info()
        for name in ("jax", "torch", "sklearn"):
            if name in names:
                module = __import__(name)
                machine[name] = module.__version__
        config = {"layers": [list(l) for l in networks], "activation": ACTIVATION,
                  "learning_rate": LEARNING_RATE, "momentum": MOMENTUM, "l2": L2,
                  "dtype": DTYPE, "samples": int(X.shape[0]), "batch_sizes": batch_sizes,
                  "batch1_samples": batch1_samples, "repeats": repeats, "threads": threads,
                  "seed": seed, "trainers": names}
        for line in format_machine(machine):
            say(line)
        say(f"MNIST, one epoch of {X.shape[0]} images, {ACTIVATION}, SGD lr {LEARNING_RATE} "
            f"momentum {MOMENTUM} L2 {L2}, {DTYPE}; BLAS threads: "
            f"{threads if threads is not None else 'library default'}")
    peak_info = measure_peak(threads) if peak else None
    if peak_info:
        say(f"FMA peak ({peak_info['isa']}): {peak_info['gflops']:.0f} GFLOP/s on "
            f"{peak_info['threads']} thread(s), {peak_info['gflops_1thread']:.0f} on one")
    results = {"machine": machine, "config": config, "peak": peak_info, "networks": []}
    # The repeats are interleaved: each of `repeats` rounds times every trainer
    # once (after its warm-up), so a machine whose speed drifts over minutes
    # (a shared host, a VM, thermal limits) biases no trainer against another.
    # Each trainer runs in a fresh process when isolated: thread pools of
    # other libraries (torch's OpenMP, NumPy's OpenBLAS, XLA's) stay alive and
    # spin after use, and on a small machine they slow whichever trainer comes next.
    timings = {name: {} for name in names}
    args = (data_dir, n_samples, networks, batch_sizes, batch1_samples, 1, seed, threads)
    for round_ in range(repeats):
        for name in names:
            if isolate:
                import multiprocessing
                from concurrent.futures import ProcessPoolExecutor
                with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                    part = pool.submit(_time_all, name, *args).result()
            else:
                part = _time_all(name, *args, data=(X, y))
            for key, (times, loss, extra) in part.items():
                old_times, _, merged = timings[name].get(key, ([], None, {}))
                merged = dict(merged)
                if merged.get("compile_seconds") is None:  # the first round's compile
                    merged["compile_seconds"] = extra["compile_seconds"]
                if extra["step_plans"] is not None:  # each round's process chose one
                    merged["step_plans"] = merged.get("step_plans", []) + extra["step_plans"]
                timings[name][key] = (old_times + list(times), loss, merged)
            for net in networks:
                for b in batch_sizes:
                    say(f"  round {round_ + 1}/{repeats}  {net_name(net):<22} batch {b:>5}  "
                        f"{LABELS[name]:<20} {fmt_time(timings[name][(net, b)][0][-1])}")
    for net in networks:
        entry_net = {"layers": list(net), "batches": {}}
        for b in batch_sizes:
            n = batch_samples(b, X.shape[0], batch1_samples)
            flops = n * epoch_flops_per_sample(net)
            entry = {"samples": n, "flops": flops, "trainers": {}, "speedup": {}}
            for name in names:
                times, loss, extra = timings[name][(net, b)]
                best = min(times)
                r = {"times": times, "best": best, "median": statistics.median(times),
                     "loss": None if loss is None else float(loss),
                     "gflops": flops / best / 1e9}
                r["peak_pct"] = 100 * r["gflops"] / peak_info["gflops"] if peak_info else None
                for field in ("compile_seconds", "step_plans"):
                    if extra.get(field) is not None:
                        r[field] = extra[field]
                entry["trainers"][name] = r
            base = entry["trainers"]["fastnn"]["best"]
            for name, r in entry["trainers"].items():
                entry["speedup"][name] = r["best"] / base
            for floor in FLOORS:
                entry[f"{floor}_ratio"] = (base / entry["trainers"][floor]["best"]
                                           if floor in entry["trainers"] else None)
            entry_net["batches"][b] = entry
        results["networks"].append(entry_net)
    say("")
    for line in format_table(results, repeats):
        say(line)
    return results


def add_arguments(p):
    """The options of ``fastnn bench`` (and ``python -m fastnn_bench``)."""
    p.add_argument("--data-dir", default=None,
                   help="folder with the MNIST IDX files (default: $FASTNN_DATA, else the user cache)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=None,
                   help=f"default {' '.join(map(str, BATCH_SIZES))} "
                        f"({' '.join(map(str, WIDE_BATCH_SIZES))} with --wide)")
    p.add_argument("--wide", action="store_true",
                   help="the wide networks (weights beyond L2): "
                        + " ".join(",".join(map(str, w)) for w in WIDE_LAYERS)
                        + f" at batches {', '.join(map(str, WIDE_BATCH_SIZES))}, unless "
                          "--layers/--batch-sizes say otherwise")
    p.add_argument("--layers", nargs="+", default=None,
                   metavar="WIDTHS",
                   help="networks as comma-separated widths, one table each (default 784,128,10; "
                        "the study's: 784,128,10 784,800,10 784,256,256,256,10)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="BLAS threads (default: BLAS's)")
    p.add_argument("--samples", type=int, default=None, help="use the first N images only")
    p.add_argument("--batch1-samples", type=int, default=BATCH1_SAMPLES,
                   help=f"images of a batch-1 epoch (default {BATCH1_SAMPLES})")
    p.add_argument("--trainers", nargs="+", choices=TRAINERS, default=None)
    p.add_argument("--no-peak", dest="peak", action="store_false",
                   help="skip the FMA-peak measurement and the roofline")
    p.add_argument("--json", default=None, help="also write the results to this file")
    p.add_argument("--no-isolate", dest="isolate", action="store_false",
                   help="time all trainers in this process (default: a fresh process each)")


def run_from_args(args):
    if args.layers is None:
        args.layers = [",".join(map(str, w)) for w in (WIDE_LAYERS if args.wide else [LAYERS])]
    if args.batch_sizes is None:
        args.batch_sizes = list(WIDE_BATCH_SIZES if args.wide else BATCH_SIZES)
    try:
        layers = [parse_layers(text) for text in args.layers]
    except ValueError as exc:
        print(f"fastnn bench: --layers: {exc}", file=sys.stderr)
        return 2
    if args.peak:
        try:
            peak_probe()
        except ImportError as exc:
            print(f"fastnn bench: {exc}", file=sys.stderr)
            return 2
    if args.json:  # before minutes of timing, not after them
        from fastnn._atomic import check_target
        try:
            check_target(args.json, "--json ")
        except OSError as exc:
            print(f"fastnn bench: {exc}", file=sys.stderr)
            return 2
    results = run(args.data_dir, args.batch_sizes, args.repeats, args.threads,
                  n_samples=args.samples, trainers=args.trainers, isolate=args.isolate,
                  layers=layers, batch1_samples=args.batch1_samples, peak=args.peak)
    if args.json:
        from fastnn._atomic import atomic_write_json
        atomic_write_json(args.json, jsonable(results), indent=2, default=str)
    return 0


def main(argv=None):
    """``fastnn bench [--batch-sizes 1 10 32 128 512] [--layers 784,128,10] ...``
    (or ``python -m fastnn_bench ...``)."""
    import argparse
    p = argparse.ArgumentParser(prog="fastnn bench", description=run.__doc__.split("\n")[0])
    add_arguments(p)
    return run_from_args(p.parse_args(argv))


