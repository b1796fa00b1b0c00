"""Time one epoch of MNIST training: fastnn against the alternatives.

:func:`run` (behind ``fastnn bench``) trains ``[784, 128, 10]`` ReLU with
SGD (learning rate 0.01, momentum 0.9, L2 1e-3, float32) for one epoch of
the 60,000 MNIST training images, per batch size, with:

* ``fastnn``: the compiled trainer (:func:`fastnn.training.fit`, default kernels);
* ``numpy``: the pure-NumPy trainer of the same algorithm
  (``kernels=fastnn.reference``): same initial weights, same row order, so
  the same final loss up to float rounding;
* ``floor``: the matrix products of one epoch and nothing else (NumPy
  ``matmul`` into preallocated outputs): no trainer can beat it with the
  same BLAS, so ``fastnn / floor`` says how much of fastnn's time is not GEMM;
* ``torch``: PyTorch on the CPU, when ``import torch`` works (never a
  dependency): the same network, fastnn's initial weights and row order,
  ``torch.optim.SGD(momentum=0.9)`` with ``weight_decay=1e-3`` on the weights
  only, as fastnn (so its loss matches too, up to rounding);
* ``sklearn``: :class:`sklearn.neural_network.MLPClassifier` (solver "sgd",
  ``max_iter=1``), when scikit-learn is importable: its own initialisation
  and shuffling, and its reported loss includes the L2 penalty, so only its
  time is comparable.

Each trainer is timed ``repeats`` times on a fresh model (building the model
is not timed) after a short warm-up; the table shows the best and median
times and the speed-up of fastnn over each (other's best / fastnn's best).

The same building blocks (:func:`make_model`, :func:`fit_epoch`,
:class:`GemmFloor`) are what ``benchmarks/`` times under pytest-benchmark.
"""
import contextlib
import os
import platform
import statistics
import sys
import time
import warnings

import numpy as np

from . import reference, training
from . import threads as _threads
from ._layout import unflatten

#: The benchmark's network and optimiser.
LAYERS = (784, 128, 10)
ACTIVATION = "relu"
LEARNING_RATE = 0.01
MOMENTUM = 0.9
L2 = 1e-3
DTYPE = "float32"
SEED = 0

#: Trainer names, in table order.
TRAINERS = ("fastnn", "numpy", "torch", "sklearn", "floor")
LABELS = {
    "fastnn": "fastnn (compiled)",
    "numpy": "NumPy trainer",
    "torch": "PyTorch CPU",
    "sklearn": "scikit-learn MLP",
    "floor": "GEMM floor (NumPy)",
}
#: Kernel modules of the two fastnn trainers (None: the compiled default).
KERNELS = {"fastnn": None, "numpy": reference}


# ---------------------------------------------------------------------------
# Shared building blocks (also used by benchmarks/)
# ---------------------------------------------------------------------------

def make_model(layers=LAYERS, seed=SEED, dtype=DTYPE, activation=ACTIVATION):
    """A fresh :class:`fastnn.MLP` with the benchmark's architecture and seed."""
    from .model import MLP
    return MLP(list(layers), activation, dtype=dtype, seed=seed)


def fit_epoch(model, X, y, batch_size, kernels=None, learning_rate=LEARNING_RATE,
              momentum=MOMENTUM, l2=L2):
    """Train ``model`` for one epoch; returns the epoch's mean training loss.

    ``kernels=None`` is fastnn's compiled trainer, ``kernels=fastnn.reference``
    the pure-NumPy trainer: same algorithm, initial weights and row order.
    """
    history = training.fit(
        model, X, y, epochs=1, batch_size=batch_size, learning_rate=learning_rate,
        momentum=momentum, l2=l2, l1=0.0, validation_split=0.0, validation_data=None,
        early_stopping=None, lr_decay=None, lr_decay_threshold=0.001, verbose=False,
        callbacks=None, checkpoint=None, kernels=kernels)
    if history.diverged or not history.history.get("loss"):
        raise RuntimeError(f"the benchmark epoch did not complete: {history!r}")
    return history.history["loss"][-1]


class GemmFloor:
    """The matrix products of one training epoch, and nothing else.

    Per batch, the GEMMs the trainer runs, with NumPy ``matmul`` into
    preallocated outputs: forward ``A_l @ W_l`` for every layer; backward
    ``A_l.T @ dZ_l`` for every layer and ``dZ_l @ W_l.T`` for every layer
    but the first (for ``[784, 128, 10]``: ``X@W1, H@W2, H.T@dZ2, dZ2@W2.T,
    X.T@dZ1``). Batches are consecutive row slices of ``X`` (no gather) and the
    last one may be short, as in the trainer. Calling the object runs one
    epoch and returns the number of floating-point operations done.
    """

    def __init__(self, X, batch_size, layers=LAYERS, dtype=None, seed=SEED):
        layers = [int(s) for s in layers]
        dtype = np.dtype(dtype if dtype is not None else X.dtype)
        if X.ndim != 2 or X.shape[1] != layers[0]:
            raise ValueError(f"X must have shape (n, {layers[0]}), got {X.shape}")
        self.X = np.ascontiguousarray(X, dtype=dtype)
        self.batch_size = int(batch_size)
        self.layers = layers
        rng = np.random.default_rng(seed)
        pairs = list(zip(layers[:-1], layers[1:]))
        bs = self.batch_size
        self.W = [(rng.standard_normal((a, b)) * np.sqrt(2.0 / a)).astype(dtype) for a, b in pairs]
        self.A = [np.zeros((bs, b), dtype=dtype) for _, b in pairs]
        self.dZ = [(rng.standard_normal((bs, b)) / bs).astype(dtype) for _, b in pairs]
        self.dW = [np.empty((a, b), dtype=dtype) for a, b in pairs]
        self.dA = [np.empty((bs, a), dtype=dtype) for a, _ in pairs]

    def flops(self):
        """Floating-point operations of one epoch (2 per multiply-add)."""
        n = self.X.shape[0]
        per_row = sum(2 * a * b * (2 if l == 0 else 3)
                      for l, (a, b) in enumerate(zip(self.layers[:-1], self.layers[1:])))
        return n * per_row

    def __call__(self):
        X, W, A, dZ, dW, dA = self.X, self.W, self.A, self.dZ, self.dW, self.dA
        n, bs, L = X.shape[0], self.batch_size, len(W)
        matmul = np.matmul
        for s in range(0, n, bs):
            xb = X[s:s + bs]
            rows = xb.shape[0]
            a = xb
            for l in range(L):
                out = A[l][:rows]
                matmul(a, W[l], out=out)
                a = out
            for l in range(L - 1, -1, -1):
                dz = dZ[l][:rows]
                a_prev = xb if l == 0 else A[l - 1][:rows]
                matmul(a_prev.T, dz, out=dW[l])
                if l > 0:
                    matmul(dz, W[l].T, out=dA[l][:rows])
        return self.flops()


def load_data(data_dir=None, n_samples=None):
    """MNIST training images (minmax-normalised float32) and labels as intp."""
    from .datasets import load_mnist
    (X, y), _ = load_mnist(data_dir, normalize="minmax")
    if n_samples is not None:
        X, y = X[:n_samples], y[:n_samples]
    return np.ascontiguousarray(X, dtype=DTYPE), np.ascontiguousarray(y, dtype=np.intp)


# ---------------------------------------------------------------------------
# Trainers: setup() (not timed) and run(state) -> final loss or None (timed)
# ---------------------------------------------------------------------------

class _FitTrainer:
    def __init__(self, name, X, y, batch_size, seed):
        self.kernels = KERNELS[name]
        self.X, self.y, self.batch_size, self.seed = X, y, batch_size, seed

    def setup(self):
        return make_model(seed=self.seed)

    def run(self, model):
        return fit_epoch(model, self.X, self.y, self.batch_size, self.kernels)


class _FloorTrainer:
    def __init__(self, X, batch_size, seed):
        self.floor = GemmFloor(X, batch_size, seed=seed)

    def setup(self):
        return None

    def run(self, _):
        self.floor()
        return None


class _TorchTrainer:
    """PyTorch, written to match fastnn: same init, order and update rule.

    ``torch.optim.SGD`` keeps ``buf = mu*buf + (g + wd*w)``, ``w -= lr*buf``:
    fastnn's ``v = mu*v - lr*(g + l2*w)``, ``w += v`` with ``v = -lr*buf``.
    Weight decay goes on the weights only, as fastnn's L2.
    """

    def __init__(self, X, y, batch_size, seed):
        import torch
        self.torch = torch
        self.X = torch.from_numpy(X)
        self.y = torch.from_numpy(np.asarray(y, dtype=np.int64))
        self.batch_size, self.seed = batch_size, seed
        order = training.epoch_order(np.arange(X.shape[0], dtype=np.intp), seed, 0)
        self.order = torch.from_numpy(order.astype(np.int64))

    def setup(self):
        torch = self.torch
        ref = make_model(seed=self.seed)
        weights, biases = unflatten(ref._params, ref._sizes)
        dims = list(zip(LAYERS[:-1], LAYERS[1:]))
        mods = []
        for i, (a, b) in enumerate(dims):
            lin = torch.nn.Linear(a, b)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(weights[i].T)))
                lin.bias.copy_(torch.from_numpy(biases[i]))
            mods.append(lin)
            if i < len(dims) - 1:
                mods.append(torch.nn.ReLU())
        net = torch.nn.Sequential(*mods)
        decay = [m.weight for m in mods if isinstance(m, torch.nn.Linear)]
        no_decay = [m.bias for m in mods if isinstance(m, torch.nn.Linear)]
        opt = torch.optim.SGD([{"params": decay, "weight_decay": L2},
                               {"params": no_decay, "weight_decay": 0.0}],
                              lr=LEARNING_RATE, momentum=MOMENTUM)
        return net, opt

    def run(self, state):
        torch = self.torch
        net, opt = state
        F = torch.nn.functional
        n, bs = self.X.shape[0], self.batch_size
        total = 0.0
        for s in range(0, n, bs):
            idx = self.order[s:s + bs]
            xb, yb = self.X[idx], self.y[idx]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(net(xb), yb)
            loss.backward()
            opt.step()
            total += loss.item() * idx.shape[0]
        return total / n


class _SklearnTrainer:
    """scikit-learn's MLPClassifier for one epoch.

    Its L2 term is ``alpha * W / batch``, so ``alpha = L2 * batch_size`` gives
    fastnn's penalty; its initialisation and shuffling are its own, and its
    ``loss_`` includes the penalty.
    """

    def __init__(self, X, y, batch_size, seed):
        self.X, self.y, self.batch_size, self.seed = X, y, batch_size, seed

    def setup(self):
        from sklearn.neural_network import MLPClassifier
        return MLPClassifier(
            hidden_layer_sizes=LAYERS[1:-1], activation=ACTIVATION, solver="sgd",
            alpha=L2 * self.batch_size, batch_size=self.batch_size,
            learning_rate_init=LEARNING_RATE, momentum=MOMENTUM, nesterovs_momentum=False,
            max_iter=1, shuffle=True, random_state=self.seed, tol=0.0)

    def run(self, clf):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning for max_iter=1
            clf.fit(self.X, self.y)
        return float(clf.loss_)


def available_trainers():
    """The trainer names that can run here (torch and sklearn are optional)."""
    names = []
    for name in TRAINERS:
        if name == "torch":
            try:
                import torch  # noqa: F401
            except Exception:
                continue
        elif name == "sklearn":
            try:
                import sklearn.neural_network  # noqa: F401
            except Exception:
                continue
        names.append(name)
    return names


def _make_trainer(name, X, y, batch_size, seed):
    if name in KERNELS:
        return _FitTrainer(name, X, y, batch_size, seed)
    if name == "floor":
        return _FloorTrainer(X, batch_size, seed)
    if name == "torch":
        return _TorchTrainer(X, y, batch_size, seed)
    if name == "sklearn":
        return _SklearnTrainer(X, y, batch_size, seed)
    raise ValueError(f"unknown trainer {name!r}; choose from {TRAINERS}")


def time_trainer(trainer, repeats=3, warmup=None):
    """Time ``trainer.run`` ``repeats`` times, each on a fresh ``setup()``.

    ``warmup``: an optional smaller trainer run once first, untimed (first
    calls pay for lazy imports and thread-pool start-up).
    Returns ``(times_in_seconds, last_loss)``.
    """
    if warmup is not None:
        warmup.run(warmup.setup())
    times, loss = [], None
    for _ in range(repeats):
        state = trainer.setup()
        t0 = time.perf_counter()
        loss = trainer.run(state)
        times.append(time.perf_counter() - t0)
    return times, loss


# ---------------------------------------------------------------------------
# Machine description
# ---------------------------------------------------------------------------

def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_info():
    """CPU, cores, platform, library versions and the BLAS libraries loaded."""
    import scipy

    from . import __version__, kernels  # noqa: F401  (loads SciPy's BLAS)
    info = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "fastnn": __version__,
        "fastnn_threads": _threads.get_num_threads(),
    }
    if hasattr(os, "sched_getaffinity"):
        info["usable_cores"] = len(os.sched_getaffinity(0))
    env = {k: v for k, v in os.environ.items()
           if k.startswith(("OPENBLAS_", "OMP_", "MKL_", "FASTNN_"))}
    if env:
        info["env"] = env
    try:
        from threadpoolctl import threadpool_info
        info["blas"] = [
            {k: lib.get(k) for k in ("user_api", "internal_api", "version", "num_threads",
                                     "architecture", "threading_layer")}
            | {"library": "/".join((lib.get("filepath") or "").split(os.sep)[-2:])}
            for lib in threadpool_info()]
    except Exception as exc:  # threadpoolctl is a dependency, but never fail a report on it
        info["blas"] = f"unavailable: {exc}"
    return info


def format_machine(info):
    lines = [f"machine: {info['cpu']}, {info['cores']} cores"
             + (f" ({info['usable_cores']} usable)" if "usable_cores" in info else ""),
             f"         {info['platform']}, Python {info['python']}, NumPy {info['numpy']}, "
             f"SciPy {info['scipy']}, fastnn {info['fastnn']}"]
    for extra in ("torch", "sklearn"):
        if extra in info:
            lines.append(f"         {extra} {info[extra]}")
    blas = info.get("blas")
    if isinstance(blas, list):
        for lib in blas:
            lines.append(f"  {lib['user_api']}: {lib['internal_api']} {lib['version'] or ''} "
                         f"({lib['library']}), {lib['num_threads']} threads"
                         + (f", {lib['architecture']}" if lib.get("architecture") else ""))
    else:
        lines.append(f"  blas: {blas}")
    if info.get("env"):
        lines.append("  env: " + " ".join(f"{k}={v}" for k, v in sorted(info["env"].items())))
    return lines


# ---------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------

@contextlib.contextmanager
def _thread_limit(n):
    """Every BLAS (and torch) in the process on ``n`` threads, fastnn included."""
    if n is None:
        yield
        return
    from threadpoolctl import threadpool_limits
    saved_fastnn = _threads._num_threads
    torch = sys.modules.get("torch")  # only if already imported: never import it here
    torch_threads = None
    if torch is not None:
        torch_threads = torch.get_num_threads()
        torch.set_num_threads(n)
    try:
        _threads.set_num_threads(n)
        with threadpool_limits(limits=n, user_api="blas"):
            yield
    finally:
        _threads._num_threads = saved_fastnn
        if torch is not None and torch_threads is not None:
            torch.set_num_threads(torch_threads)


def _fmt_time(t):
    return "-" if t is None else (f"{t:.3f} s" if t < 10 else f"{t:.1f} s")


def format_table(results, repeats):
    """The side-by-side table: rows are trainers, columns batch sizes."""
    batches = list(results["batches"])
    names = [n for n in TRAINERS if any(n in results["batches"][b]["trainers"] for b in batches)]
    w0, wc = 20, 30
    head = "trainer".ljust(w0) + "".join(f"batch {b}".center(wc) for b in batches)
    sub = "".ljust(w0) + "".join(
        f"{'best':>9} {'median':>9} {'fastnn x':>9} " for _ in batches)
    lines = [head, sub, "-" * len(sub)]
    for name in names:
        row = LABELS[name].ljust(w0)
        for b in batches:
            r = results["batches"][b]["trainers"].get(name)
            if r is None:
                row += f"{'-':>9} {'-':>9} {'-':>9} "
                continue
            ratio = results["batches"][b]["speedup"].get(name)
            rtxt = "-" if ratio is None else f"{ratio:.2f}x"
            row += f"{_fmt_time(r['best']):>9} {_fmt_time(r['median']):>9} {rtxt:>9} "
        lines.append(row.rstrip())
    lines.append("-" * len(sub))
    lines.append("final training loss (mean over the epoch)")
    for name in names:
        if name == "floor":
            continue
        row = ("  " + LABELS[name]).ljust(w0)
        for b in batches:
            r = results["batches"][b]["trainers"].get(name)
            loss = None if r is None else r.get("loss")
            row += ("-" if loss is None else f"{loss:.5f}").rjust(9) + " " * 21
        lines.append(row.rstrip())
    lines.append("")
    lines.append(f"best/median of {repeats} runs, each on a fresh model; 'fastnn x' = the "
                 "trainer's best time / fastnn's best time")
    lines.append("(above 1: fastnn is that many times faster; the GEMM floor's is below 1 "
                 "by construction).")
    for b in batches:
        fl = results["batches"][b].get("floor_ratio")
        if fl is not None:
            lines.append(f"batch {b}: fastnn takes {fl:.2f}x the time of the GEMMs alone "
                         f"({100 / fl:.0f}% of the GEMM-bound speed).")
    if "sklearn" in names:
        lines.append("scikit-learn: own init and shuffling; its loss includes the L2 penalty.")
    return lines


def _time_all(name, data_dir, n_samples, batch_sizes, repeats, seed, threads, data=None):
    """``{batch_size: (times, loss)}`` of one trainer (run in a child process by :func:`run`)."""
    X, y = load_data(data_dir, n_samples) if data is None else data
    if name == "torch":
        import torch  # noqa: F401  (before the thread limit, which then covers it)
    n_warm = min(X.shape[0], 2048)
    out = {}
    with _thread_limit(threads):
        for b in batch_sizes:
            trainer = _make_trainer(name, X, y, b, seed)
            warm = _make_trainer(name, X[:n_warm], y[:n_warm], b, seed)
            out[b] = time_trainer(trainer, repeats, warmup=warm)
    return out


def run(data_dir=None, batch_sizes=(128, 10), repeats=3, threads=None, out=print, *,
        n_samples=None, trainers=None, seed=SEED, isolate=True):
    """Time one MNIST epoch per trainer and print a side-by-side table.

    Parameters
    ----------
    data_dir : folder of the MNIST files (default: ``$FASTNN_DATA``, then the
        user cache, downloading if needed; see :mod:`fastnn.datasets`).
    batch_sizes : the batch sizes to time, one table column each.
    repeats : timed runs per trainer and batch size (best and median reported).
    threads : BLAS threads for every trainer (fastnn, NumPy, torch alike);
        ``None`` leaves the libraries' defaults (``FASTNN_NUM_THREADS``, if set,
        then applies to all of them).
    out : called with each line of the report (``print``); ``None`` for silence.
    n_samples : train on the first ``n_samples`` images only (quick runs).
    trainers : subset of :data:`TRAINERS` (default: all that are importable;
        ``fastnn`` is always included, as the reference of the ratios).
    seed : seed of the models' initial weights and row order.
    isolate : time each trainer in a fresh process (the default), so that no
        library's idle thread pool competes with the next trainer.

    Returns
    -------
    dict with ``machine`` (see :func:`machine_info`), ``config`` and
    ``batches``: ``{batch_size: {"trainers": {name: {"times", "best",
    "median", "loss"}}, "speedup": {name: other_best / fastnn_best},
    "floor_ratio": fastnn_best / floor_best}}``; JSON-serialisable.
    """
    say = out if out is not None else (lambda *_: None)
    batch_sizes = [int(b) for b in batch_sizes]
    if not batch_sizes or min(batch_sizes) < 1:
        raise ValueError(f"batch_sizes must be positive integers, got {batch_sizes}")
    repeats = int(repeats)
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
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

    if threads is None:
        threads = _threads.get_num_threads()
    elif isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    X, y = load_data(data_dir, n_samples)
    with _thread_limit(threads):
        machine = machine_info()
        if "torch" in names:
            import torch
            machine["torch"] = torch.__version__
        if "sklearn" in names:
            import sklearn
            machine["sklearn"] = sklearn.__version__
        config = {"layers": list(LAYERS), "activation": ACTIVATION, "learning_rate": LEARNING_RATE,
                  "momentum": MOMENTUM, "l2": L2, "dtype": DTYPE, "samples": int(X.shape[0]),
                  "batch_sizes": batch_sizes, "repeats": repeats, "threads": threads,
                  "seed": seed, "trainers": names}
        for line in format_machine(machine):
            say(line)
        say(f"MNIST, one epoch of {X.shape[0]} images, {list(LAYERS)} {ACTIVATION}, SGD lr "
            f"{LEARNING_RATE} momentum {MOMENTUM} L2 {L2}, {DTYPE}; BLAS threads: "
            f"{threads if threads is not None else 'library default'}")
        results = {"machine": machine, "config": config, "batches": {}}
    # Each trainer runs in a fresh process when isolated: thread pools of
    # other libraries (torch's OpenMP, NumPy's OpenBLAS) stay alive and spin
    # after use, and on a small machine they slow whichever trainer comes next.
    timings = {}
    for name in names:
        if isolate:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                timings[name] = pool.submit(_time_all, name, data_dir, n_samples, batch_sizes,
                                            repeats, seed, threads).result()
        else:
            timings[name] = _time_all(name, data_dir, n_samples, batch_sizes, repeats, seed,
                                      threads, data=(X, y))
        for b in batch_sizes:
            say(f"  batch {b:>5}  {LABELS[name]:<20} best {_fmt_time(min(timings[name][b][0]))}")
    for b in batch_sizes:
        entry = {"trainers": {}, "speedup": {}, "floor_ratio": None}
        for name in names:
            times, loss = timings[name][b]
            entry["trainers"][name] = {
                "times": times, "best": min(times), "median": statistics.median(times),
                "loss": None if loss is None else float(loss)}
        base = entry["trainers"]["fastnn"]["best"]
        for name, r in entry["trainers"].items():
            entry["speedup"][name] = r["best"] / base
        if "floor" in entry["trainers"]:
            entry["floor_ratio"] = base / entry["trainers"]["floor"]["best"]
        results["batches"][b] = entry
    say("")
    for line in format_table(results, repeats):
        say(line)
    return results


def add_arguments(p):
    """The options of ``fastnn bench`` (shared by the CLI and ``python -m fastnn.bench``)."""
    p.add_argument("--data-dir", default=None,
                   help="folder with the MNIST IDX files (default: $FASTNN_DATA, else the user cache)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 10])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="BLAS threads (default: BLAS's)")
    p.add_argument("--samples", type=int, default=None, help="use the first N images only")
    p.add_argument("--trainers", nargs="+", choices=TRAINERS, default=None)
    p.add_argument("--json", default=None, help="also write the results to this file")
    p.add_argument("--no-isolate", dest="isolate", action="store_false",
                   help="time all trainers in this process (default: a fresh process each)")


def run_from_args(args):
    import json
    results = run(args.data_dir, args.batch_sizes, args.repeats, args.threads,
                  n_samples=args.samples, trainers=args.trainers, isolate=args.isolate)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2, default=str)
    return 0


def main(argv=None):
    """``python -m fastnn.bench [--batch-sizes 128 10] [--repeats 3] ...``"""
    import argparse
    p = argparse.ArgumentParser(prog="fastnn bench", description=run.__doc__.split("\n")[0])
    add_arguments(p)
    return run_from_args(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
