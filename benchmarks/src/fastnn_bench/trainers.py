"""The trainers ``fastnn bench`` times, and the building blocks the pytest
benchmarks share: :func:`make_model`, :func:`fit_epoch`, :class:`GemmFloor`,
:class:`JaxEpoch`. Each trainer's ``setup()`` (untimed) gives a fresh state and
``run(state)`` trains one epoch (:func:`time_trainer`)."""
import time
import warnings

import numpy as np

from fastnn import training
from fastnn.model import MLP

from .settings import (ACTIVATION, DTYPE, FLOORS, KERNELS, L2, LAYERS, LEARNING_RATE, MOMENTUM,
                       OPTIONAL, SEED, TRAINERS)


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


def warm_up(name, trainer, X, y, batch_size, seed=SEED, layers=LAYERS):
    """Run the untimed warm-up of ``trainer`` (``make_trainer(name, X, y,
    batch_size, seed, layers)``) before its timed epochs.

    JAX: one epoch of the trainer itself (its compile for these shapes).
    fastnn: epochs of the trainer itself until the step plan of its shape is
    chosen (the first epoch of a threaded fit times the plans on its first
    batches, :mod:`fastnn.training.tuning`, once per process, as JAX compiles
    once). The others: one epoch on the first 2,048 rows (lazy imports,
    thread pools, page faults).

    Returns fastnn's step plan for the shape (a name of
    ``fastnn.training.tuning.PLANS``; ``"one thread"`` when the fit runs on one
    thread, ``"fixed: NAME"`` under ``FASTNN_STEP_PLAN``, ``"trial unfinished"``
    when 8 epochs did not hold the trial), else None.
    """
    if name == "jax":
        trainer.run(trainer.setup())
    elif name == "fastnn":
        from fastnn.training import tuning
        fixed = tuning.fixed_plan()
        before = tuning.chosen()
        for _ in range(8):  # one epoch holds the trial unless it is tiny
            trainer.run(trainer.setup())
            if not tuning.pending():
                break
        if fixed is not None:
            return f"fixed: {fixed}"
        from fastnn import threads
        if threads.training_threads() == 1:
            return "one thread"
        new = {v for k, v in tuning.chosen().items() if k not in before}
        return new.pop() if len(new) == 1 else "trial unfinished" if not new else "?"
    else:
        n_warm = min(X.shape[0], 2048)
        warm = make_trainer(name, X[:n_warm], y[:n_warm], batch_size, seed, layers)
        warm.run(warm.setup())


def time_trainer(trainer, repeats=3):
    """Time ``trainer.run`` ``repeats`` times, each on a fresh ``setup()``
    (after :func:`warm_up`). Returns ``(times_in_seconds, last_loss)``.
    """
    times, loss = [], None
    for _ in range(repeats):
        state = trainer.setup()
        t0 = time.perf_counter()
        loss = trainer.run(state)
        times.append(time.perf_counter() - t0)
    return times, loss
