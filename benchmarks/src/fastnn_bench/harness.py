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
:meth:`GemmFloor.flops`) divided by its time is shown as a percentage of it.

Each trainer is timed ``repeats`` times on a fresh model (building the model
is not timed) after a warm-up; the table shows the best and median times and
the speed-up of fastnn over each (other's best / fastnn's best).

The same building blocks (:func:`make_model`, :func:`fit_epoch`,
:class:`GemmFloor`, :class:`JaxEpoch`) are what ``benchmarks/bench_*.py`` time
under pytest-benchmark. This module is not part of the fastnn package: it is
the repository's ``benchmarks/`` distribution, fastnn-bench
(``pip install ./benchmarks``), which ``fastnn bench`` imports.
"""
import contextlib
import os
import platform
import statistics
import sys
import time
import warnings

import numpy as np

import fastnn
from fastnn import reference, training
from fastnn import threads as fastnn_threads
from fastnn.model import MLP

#: The benchmark's default network, batch sizes and optimiser.
LAYERS = (784, 128, 10)
#: The networks of the issue's study (``--layers 784,128,10 784,800,10 784,256,256,256,10``).
STUDY_LAYERS = ((784, 128, 10), (784, 800, 10), (784, 256, 256, 256, 10))
#: `fastnn bench --wide`: networks whose weights do not fit in a core's L2.
WIDE_LAYERS = ((784, 1024, 1024, 10), (784, 2048, 2048, 10))
WIDE_BATCH_SIZES = (32, 128, 512)
BATCH_SIZES = (1, 10, 32, 128, 512)
#: Images of a batch-1 epoch (the first ones): a full one takes the NumPy
#: trainer and PyTorch most of a minute per repeat.
BATCH1_SAMPLES = 6000
ACTIVATION = "relu"
LEARNING_RATE = 0.01
MOMENTUM = 0.9
L2 = 1e-3
DTYPE = "float32"
SEED = 0

#: Trainer names, in table order.
TRAINERS = ("fastnn", "numpy", "jax", "torch", "sklearn", "floor", "floor_scipy")
LABELS = {
    "fastnn": "fastnn (compiled)",
    "numpy": "NumPy trainer",
    "jax": "JAX (jit epoch)",
    "torch": "PyTorch CPU",
    "sklearn": "scikit-learn MLP",
    "floor": "GEMM floor (NumPy)",
    "floor_scipy": "GEMM floor (SciPy)",
}
#: Trainers that are the epoch's GEMMs alone, not training.
FLOORS = ("floor", "floor_scipy")
#: Optional trainers and the module that must import for each.
OPTIONAL = {"jax": "jax", "torch": "torch", "sklearn": "sklearn.neural_network"}
#: Kernel modules of the two fastnn trainers (None: the compiled default).
KERNELS = {"fastnn": None, "numpy": reference}


# ---------------------------------------------------------------------------
# Shared building blocks (also used by benchmarks/)
# ---------------------------------------------------------------------------

def make_model(layers=LAYERS, seed=SEED, dtype=DTYPE, activation=ACTIVATION):
    """A fresh :class:`fastnn.MLP` with the benchmark's (or the given) architecture and seed."""
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

    Per batch, the GEMMs the trainer runs, into preallocated outputs: forward
    ``A_l @ W_l`` for every layer; backward ``A_l.T @ dZ_l`` for every layer
    and ``dZ_l @ W_l.T`` for every layer but the first (for ``[784, 128,
    10]``: ``X@W1, H@W2, H.T@dZ2, dZ2@W2.T, X.T@dZ1``). Batches are
    consecutive row slices of ``X`` (no gather) and the last one may be
    short, as in the trainer. Calling the object runs one epoch and returns
    the number of floating-point operations done.

    ``blas="numpy"``: NumPy's ``matmul`` (NumPy's BLAS); a one-row batch's
    ``A.T @ dZ`` is an outer product, done by ``np.multiply`` (gemm with an
    inner dimension of 1 is several times slower). ``blas="scipy"``: SciPy's
    ``?gemm`` (``scipy.linalg.blas``, the BLAS that fastnn's compiled code
    calls through ``scipy.linalg.cython_blas``) on Fortran-order views of the
    same buffers, so nothing is copied.
    """

    def __init__(self, X, batch_size, layers=LAYERS, dtype=None, seed=SEED, blas="numpy"):
        layers = [int(s) for s in layers]
        dtype = np.dtype(dtype if dtype is not None else X.dtype)
        if X.ndim != 2 or X.shape[1] != layers[0]:
            raise ValueError(f"X must have shape (n, {layers[0]}), got {X.shape}")
        if blas not in ("numpy", "scipy"):
            raise ValueError(f"blas must be 'numpy' or 'scipy', got {blas!r}")
        self.X = np.ascontiguousarray(X, dtype=dtype)
        self.batch_size = int(batch_size)
        self.layers = layers
        self.blas = blas
        rng = np.random.default_rng(seed)
        pairs = list(zip(layers[:-1], layers[1:]))
        bs = self.batch_size
        self.W = [(rng.standard_normal((a, b)) * np.sqrt(2.0 / a)).astype(dtype) for a, b in pairs]
        self.A = [np.zeros((bs, b), dtype=dtype) for _, b in pairs]
        self.dZ = [(rng.standard_normal((bs, b)) / bs).astype(dtype) for _, b in pairs]
        self.dW = [np.empty((a, b), dtype=dtype) for a, b in pairs]
        self.dA = [np.empty((bs, a), dtype=dtype) for a, _ in pairs]
        if blas == "scipy":
            from scipy.linalg.blas import get_blas_funcs
            self._gemm = get_blas_funcs("gemm", dtype=dtype)

    def flops(self, n_samples=None):
        """Floating-point operations of one epoch (2 per multiply-add) over
        ``n_samples`` rows (default: all of ``X``)."""
        n = self.X.shape[0] if n_samples is None else int(n_samples)
        return n * epoch_flops_per_sample(self.layers)

    def __call__(self):
        if self.blas == "scipy":
            self._run_scipy()
        else:
            self._run_numpy()
        return self.flops()

    def _run_numpy(self):
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
                if rows == 1:
                    np.multiply(a_prev.T, dz, out=dW[l])
                else:
                    matmul(a_prev.T, dz, out=dW[l])
                if l > 0:
                    matmul(dz, W[l].T, out=dA[l][:rows])

    def _run_scipy(self):
        # Row-major C = A @ B is column-major C.T = B.T @ A.T: every operand
        # below is a Fortran-contiguous view (.T of a C array), so f2py copies
        # nothing and writes into the preallocated output (overwrite_c).
        X, W, A, dZ, dW, dA = self.X, self.W, self.A, self.dZ, self.dW, self.dA
        n, bs, L = X.shape[0], self.batch_size, len(W)
        gemm = self._gemm
        for s in range(0, n, bs):
            xb = X[s:s + bs]
            rows = xb.shape[0]
            a = xb
            for l in range(L):
                out = A[l][:rows]
                gemm(1.0, W[l].T, a.T, c=out.T, overwrite_c=True)  # out = a @ W
                a = out
            for l in range(L - 1, -1, -1):
                dz = dZ[l][:rows]
                a_prev = xb if l == 0 else A[l - 1][:rows]
                gemm(1.0, dz.T, a_prev.T, trans_b=True, c=dW[l].T, overwrite_c=True)
                if l > 0:  # dA = dz @ W.T
                    gemm(1.0, W[l].T, dz.T, trans_a=True, c=dA[l][:rows].T, overwrite_c=True)


def epoch_flops_per_sample(layers):
    """Floating-point operations of the matrix products per training sample
    (2 per multiply-add): forward and weight gradient for every layer, the
    input gradient for every layer but the first."""
    return sum(2 * a * b * (2 if l == 0 else 3)
               for l, (a, b) in enumerate(zip(layers[:-1], layers[1:])))


def load_data(data_dir=None, n_samples=None):
    """MNIST training images (minmax-normalised float32) and labels as intp."""
    from fastnn.datasets import load_mnist
    (X, y), _ = load_mnist(data_dir, normalize="minmax")
    if n_samples is not None:
        X, y = X[:n_samples], y[:n_samples]
    return np.ascontiguousarray(X, dtype=DTYPE), np.ascontiguousarray(y, dtype=np.intp)


# ---------------------------------------------------------------------------
# Trainers: setup() (not timed) and run(state) -> final loss or None (timed)
# ---------------------------------------------------------------------------

class JaxEpoch:
    """One MNIST epoch in JAX, compiled whole: ``jax.jit`` of a ``lax.scan``
    over the batches, each step gather, forward, softmax cross-entropy,
    ``jax.value_and_grad`` and fastnn's update (``v = mu*v - lr*(g + l2*W)``
    on the weights, ``v = mu*v - lr*g`` on the biases, ``W += v``), float32.

    Same initial weights (a :func:`make_model` of the same seed) and row
    order (:func:`fastnn.training.epoch_order`) as fastnn. Rows that do not
    fill a last batch go through a second compiled step. Compiling (both
    functions, ahead of time) happens in the constructor and is timed apart:
    :attr:`compile_seconds`. Calling ``run(setup())`` trains one epoch from the
    initial weights and returns its mean loss (batch means weighted by rows,
    before each update, as fastnn reports).
    """

    def __init__(self, X, y, batch_size, layers=LAYERS, seed=SEED):
        import jax
        import jax.numpy as jnp
        from jax import lax
        self.jax, self.jnp = jax, jnp
        self.layers, self.seed = tuple(int(s) for s in layers), seed
        n, bs = X.shape[0], int(batch_size)
        order = training.epoch_order(np.arange(n, dtype=np.intp), seed, 0).astype(np.int32)
        n_full = n // bs
        self.n, self.bs, self.n_full = n, bs, n_full
        self.X, self.y = jnp.asarray(X), jnp.asarray(np.asarray(y, dtype=np.int32))
        self.idx_full = jnp.asarray(order[:n_full * bs].reshape(n_full, bs)) if n_full else None
        rest = order[n_full * bs:]
        self.idx_rest = jnp.asarray(rest.reshape(1, -1)) if rest.size else None
        lr, mu, l2, last = LEARNING_RATE, MOMENTUM, L2, len(self.layers) - 2

        def loss_fn(params, xb, yb):
            a = xb
            for i, (W, b) in enumerate(zip(*params)):
                a = a @ W + b
                if i < last:
                    a = jnp.maximum(a, 0)
            picked = jnp.take_along_axis(a, yb[:, None], axis=1)[:, 0]
            return jnp.mean(jax.nn.logsumexp(a, axis=1) - picked)

        def step(carry, idx):
            (Ws, bs_), (vW, vb) = carry
            loss, (gW, gb) = jax.value_and_grad(loss_fn)((Ws, bs_), self.X[idx], self.y[idx])
            vW = [mu * v - lr * (g + l2 * W) for v, g, W in zip(vW, gW, Ws)]
            vb = [mu * v - lr * g for v, g in zip(vb, gb)]
            Ws = [W + v for W, v in zip(Ws, vW)]
            bs_ = [b + v for b, v in zip(bs_, vb)]
            return ((Ws, bs_), (vW, vb)), loss

        def epoch(state, idx):
            return lax.scan(step, state, idx)

        state = self.setup()
        t0 = time.perf_counter()
        jitted = jax.jit(epoch)
        self._full = jitted.lower(state, self.idx_full).compile() if n_full else None
        self._rest = jitted.lower(state, self.idx_rest).compile() if rest.size else None
        self.compile_seconds = time.perf_counter() - t0

    def setup(self):
        """The initial (params, velocity), on the device: fastnn's weights."""
        jnp = self.jnp
        model = make_model(self.layers, seed=self.seed)
        W, b = model.coefs_, model.intercepts_
        params = ([jnp.asarray(w) for w in W], [jnp.asarray(v) for v in b])
        zeros = ([jnp.zeros_like(w) for w in params[0]], [jnp.zeros_like(v) for v in params[1]])
        return params, zeros

    def run(self, state):
        loss_sum = 0.0
        if self._full is not None:
            state, losses = self._full(state, self.idx_full)
            loss_sum += float(np.sum(np.asarray(losses, dtype=np.float64))) * self.bs
        if self._rest is not None:
            state, losses = self._rest(state, self.idx_rest)
            loss_sum += float(np.asarray(losses, dtype=np.float64)[0]) * (self.n - self.n_full * self.bs)
        self.jax.block_until_ready(state)
        return loss_sum / self.n


class _FitTrainer:
    def __init__(self, name, X, y, batch_size, seed, layers):
        self.kernels = KERNELS[name]
        self.X, self.y, self.batch_size, self.seed, self.layers = X, y, batch_size, seed, layers

    def setup(self):
        return make_model(self.layers, seed=self.seed)

    def run(self, model):
        return fit_epoch(model, self.X, self.y, self.batch_size, self.kernels)


class _FloorTrainer:
    def __init__(self, X, batch_size, seed, layers, blas):
        self.floor = GemmFloor(X, batch_size, layers, seed=seed, blas=blas)

    def setup(self):
        return None

    def run(self, _):
        self.floor()
        return None


class _JaxTrainer:
    def __init__(self, X, y, batch_size, seed, layers):
        self.epoch = JaxEpoch(X, y, batch_size, layers, seed)
        self.compile_seconds = self.epoch.compile_seconds

    def setup(self):
        return self.epoch.setup()

    def run(self, state):
        return self.epoch.run(state)


class _TorchTrainer:
    """PyTorch, written to match fastnn: same init, order and update rule.

    ``torch.optim.SGD`` keeps ``buf = mu*buf + (g + wd*w)``, ``w -= lr*buf``:
    fastnn's ``v = mu*v - lr*(g + l2*w)``, ``w += v`` with ``v = -lr*buf``.
    Weight decay goes on the weights only, as fastnn's L2.
    """

    def __init__(self, X, y, batch_size, seed, layers):
        import torch
        self.torch = torch
        self.X = torch.from_numpy(X)
        self.y = torch.from_numpy(np.asarray(y, dtype=np.int64))
        self.batch_size, self.seed, self.layers = batch_size, seed, tuple(layers)
        order = training.epoch_order(np.arange(X.shape[0], dtype=np.intp), seed, 0)
        self.order = torch.from_numpy(order.astype(np.int64))

    def setup(self):
        torch = self.torch
        ref = make_model(self.layers, seed=self.seed)
        weights, biases = ref.coefs_, ref.intercepts_
        dims = list(zip(self.layers[:-1], self.layers[1:]))
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

    def __init__(self, X, y, batch_size, seed, layers):
        self.X, self.y, self.batch_size, self.seed, self.layers = X, y, batch_size, seed, layers

    def setup(self):
        from sklearn.neural_network import MLPClassifier
        return MLPClassifier(
            hidden_layer_sizes=tuple(self.layers[1:-1]), activation=ACTIVATION, solver="sgd",
            alpha=L2 * self.batch_size, batch_size=self.batch_size,
            learning_rate_init=LEARNING_RATE, momentum=MOMENTUM, nesterovs_momentum=False,
            max_iter=1, shuffle=True, random_state=self.seed, tol=0.0)

    def run(self, clf):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning for max_iter=1
            clf.fit(self.X, self.y)
        return float(clf.loss_)


def available_trainers():
    """The trainer names that can run here (jax, torch and sklearn are optional)."""
    names = []
    for name in TRAINERS:
        if name in OPTIONAL:
            try:
                __import__(OPTIONAL[name])
            except Exception:
                continue
        names.append(name)
    return names


def make_trainer(name, X, y, batch_size, seed=SEED, layers=LAYERS):
    """The trainer ``name`` on (X, y): ``setup()`` (untimed) gives a fresh state,
    ``run(state)`` trains one epoch and returns its loss (None for the floors)."""
    if name in KERNELS:
        return _FitTrainer(name, X, y, batch_size, seed, layers)
    if name in FLOORS:
        return _FloorTrainer(X, batch_size, seed, layers, "scipy" if name == "floor_scipy" else "numpy")
    if name == "jax":
        return _JaxTrainer(X, y, batch_size, seed, layers)
    if name == "torch":
        return _TorchTrainer(X, y, batch_size, seed, layers)
    if name == "sklearn":
        return _SklearnTrainer(X, y, batch_size, seed, layers)
    raise ValueError(f"unknown trainer {name!r}; choose from {TRAINERS}")


def time_trainer(trainer, repeats=3, warmup=None):
    """Time ``trainer.run`` ``repeats`` times, each on a fresh ``setup()``.

    ``warmup``: an optional trainer run once first, untimed (first calls pay
    for lazy imports, thread-pool start-up and page faults).
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

    from fastnn import kernels  # noqa: F401  (loads SciPy's BLAS)
    info = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": fastnn_threads.usable_cores(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "fastnn": fastnn.__version__,
        "fastnn_threads": fastnn_threads.get_num_threads(),
    }
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
             + f" ({info['usable_cores']} usable)",
             f"         {info['platform']}, Python {info['python']}, NumPy {info['numpy']}, "
             f"SciPy {info['scipy']}, fastnn {info['fastnn']}"]
    for extra in ("jax", "torch", "sklearn"):
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
    torch = sys.modules.get("torch")  # only if already imported: never import it here
    torch_threads = None
    if torch is not None:
        torch_threads = torch.get_num_threads()
        torch.set_num_threads(n)
    try:
        with fastnn_threads.using(n), threadpool_limits(limits=n, user_api="blas"):
            yield
    finally:
        if torch is not None and torch_threads is not None:
            torch.set_num_threads(torch_threads)


def _fmt_time(t):
    return "-" if t is None else (f"{t:.3f} s" if t < 10 else f"{t:.1f} s")


def _net_name(layers):
    return "[" + ", ".join(str(int(w)) for w in layers) + "]"


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


def format_table(results, repeats):
    """The side-by-side tables, one per network: rows are trainers, columns batch sizes."""
    lines = []
    peak = results.get("peak")
    for net in results["networks"]:
        batches = list(net["batches"])
        entries = [net["batches"][b] for b in batches]
        names = [n for n in TRAINERS if any(n in e["trainers"] for e in entries)]
        w0, wc = 20, 30
        lines.append(f"network {_net_name(net['layers'])}")
        head = "trainer".ljust(w0) + "".join(
            (f"batch {b}" + ("*" if e["samples"] < results["config"]["samples"] else "")).center(wc)
            for b, e in zip(batches, entries))
        sub = "".ljust(w0) + "".join(f"{'best':>9} {'median':>9} {'fastnn x':>9} " for _ in batches)
        lines += [head, sub, "-" * len(sub)]
        for name in names:
            row = LABELS[name].ljust(w0)
            for e in entries:
                r = e["trainers"].get(name)
                if r is None:
                    row += f"{'-':>9} {'-':>9} {'-':>9} "
                    continue
                ratio = e["speedup"].get(name)
                rtxt = "-" if ratio is None else f"{ratio:.2f}x"
                row += f"{_fmt_time(r['best']):>9} {_fmt_time(r['median']):>9} {rtxt:>9} "
            lines.append(row.rstrip())
        if peak:
            lines.append("roofline: GFLOP/s of the epoch's matrix products / best time, "
                         f"and % of the FMA peak ({peak['gflops']:.0f} GFLOP/s)")
            for name in names:
                row = ("  " + LABELS[name]).ljust(w0)
                for e in entries:
                    r = e["trainers"].get(name)
                    txt = "-" if r is None else f"{r['gflops']:.1f} ({r['peak_pct']:.1f}%)"
                    row += txt.rjust(19) + " " * 11
                lines.append(row.rstrip())
        lines.append("final training loss (mean over the epoch)")
        for name in names:
            if name in FLOORS:
                continue
            row = ("  " + LABELS[name]).ljust(w0)
            for e in entries:
                r = e["trainers"].get(name)
                loss = None if r is None else r.get("loss")
                row += ("-" if loss is None else f"{loss:.5f}").rjust(9) + " " * 21
            lines.append(row.rstrip())
        for b, e in zip(batches, entries):
            notes = []
            for floor in FLOORS:
                fl = e.get(f"{floor}_ratio")
                if fl is not None:
                    notes.append(f"{fl:.2f}x the {LABELS[floor]}")
            jax = e["trainers"].get("jax")
            if jax is not None and jax.get("compile_seconds") is not None:
                notes.append(f"JAX compiled in {jax['compile_seconds']:.2f} s (not counted)")
            if notes:
                lines.append(f"batch {b}: fastnn takes " + "; ".join(notes))
        short = sorted({e["samples"] for e in entries if e["samples"] < results["config"]["samples"]})
        if short:
            lines.append(f"* over the first {', '.join(map(str, short))} images only")
        lines.append("")
    lines.append(f"best/median of {repeats} runs, each on a fresh model; 'fastnn x' = the "
                 "trainer's best time / fastnn's best time")
    lines.append("(above 1: fastnn is that many times faster; the GEMM floors' are below 1 "
                 "by construction).")
    if peak:
        lines.append(f"FMA peak: {peak['gflops']:.0f} GFLOP/s measured on {peak['threads']} "
                     f"thread(s), {peak['gflops_1thread']:.0f} on one ({peak['isa']} loop); "
                     "on a busy machine the first is below threads x the second.")
    if any("sklearn" in e["trainers"] for net in results["networks"]
           for e in net["batches"].values()):
        lines.append("scikit-learn: own init and shuffling; its loss includes the L2 penalty.")
    return lines


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
    with _thread_limit(threads):
        for layers in networks:
            for b in batch_sizes:
                n = batch_samples(b, X.shape[0], batch1_samples)
                Xb, yb = X[:n], y[:n]
                trainer = make_trainer(name, Xb, yb, b, seed, layers)
                if name == "jax":
                    warm = trainer  # compiled for these shapes: one untimed epoch
                else:
                    n_warm = min(n, 2048)
                    warm = make_trainer(name, Xb[:n_warm], yb[:n_warm], b, seed, layers)
                times, loss = time_trainer(trainer, repeats, warmup=warm)
                out[(tuple(layers), b)] = (times, loss, getattr(trainer, "compile_seconds", None))
    return out


def peak_probe():
    """The compiled FMA-peak probe, :mod:`fastnn_bench._peak`; ImportError saying
    how to build it when this harness runs from a checkout without it."""
    try:
        from . import _peak
    except ImportError:
        raise ImportError("the FMA-peak probe (fastnn_bench._peak, compiled) is not built: "
                          "pip install ./benchmarks from fastnn's repository, or pass --no-peak"
                          ) from None
    return _peak


def measure_peak(threads):
    """The single-precision FMA peak on ``threads`` threads and on one, in GFLOP/s."""
    _peak = peak_probe()
    n = threads if threads is not None else fastnn_threads.usable_cores()
    return {"gflops": _peak.peak_gflops(n), "threads": n,
            "gflops_1thread": _peak.peak_gflops(1), "isa": _peak.isa()}


def run(data_dir=None, batch_sizes=BATCH_SIZES, repeats=3, threads=None, out=print, *,
        n_samples=None, trainers=None, seed=SEED, isolate=True, layers=(LAYERS,),
        batch1_samples=BATCH1_SAMPLES, peak=True):
    """Time one MNIST epoch per trainer, network and batch size; print side-by-side tables.

    Parameters
    ----------
    data_dir : folder of the MNIST files (default: ``$FASTNN_DATA``, then the
        user cache, downloading if needed; see :mod:`fastnn.datasets`).
    batch_sizes : the batch sizes to time, one table column each.
    repeats : timed runs per trainer and batch size (best and median reported).
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
    with _thread_limit(threads):
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
    # Each trainer runs in a fresh process when isolated: thread pools of
    # other libraries (torch's OpenMP, NumPy's OpenBLAS, XLA's) stay alive and
    # spin after use, and on a small machine they slow whichever trainer comes next.
    timings = {}
    args = (data_dir, n_samples, networks, batch_sizes, batch1_samples, repeats, seed, threads)
    for name in names:
        if isolate:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                timings[name] = pool.submit(_time_all, name, *args).result()
        else:
            timings[name] = _time_all(name, *args, data=(X, y))
        for net in networks:
            for b in batch_sizes:
                say(f"  {_net_name(net):<22} batch {b:>5}  {LABELS[name]:<20} best "
                    f"{_fmt_time(min(timings[name][(net, b)][0]))}")
    for net in networks:
        entry_net = {"layers": list(net), "batches": {}}
        for b in batch_sizes:
            n = batch_samples(b, X.shape[0], batch1_samples)
            flops = n * epoch_flops_per_sample(net)
            entry = {"samples": n, "flops": flops, "trainers": {}, "speedup": {}}
            for name in names:
                times, loss, compile_seconds = timings[name][(net, b)]
                best = min(times)
                r = {"times": times, "best": best, "median": statistics.median(times),
                     "loss": None if loss is None else float(loss),
                     "gflops": flops / best / 1e9}
                r["peak_pct"] = 100 * r["gflops"] / peak_info["gflops"] if peak_info else None
                if compile_seconds is not None:
                    r["compile_seconds"] = compile_seconds
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
    results = run(args.data_dir, args.batch_sizes, args.repeats, args.threads,
                  n_samples=args.samples, trainers=args.trainers, isolate=args.isolate,
                  layers=layers, batch1_samples=args.batch1_samples, peak=args.peak)
    if args.json:
        from fastnn._atomic import atomic_write_json
        atomic_write_json(args.json, _jsonable(results), indent=2, default=str)
    return 0


def _jsonable(obj):
    """Tuple keys (none today) and numpy scalars made JSON-friendly."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def main(argv=None):
    """``fastnn bench [--batch-sizes 1 10 32 128 512] [--layers 784,128,10] ...``
    (or ``python -m fastnn_bench ...``)."""
    import argparse
    p = argparse.ArgumentParser(prog="fastnn bench", description=run.__doc__.split("\n")[0])
    add_arguments(p)
    return run_from_args(p.parse_args(argv))


