"""One epoch of MNIST: fastnn's trainer, the pure-NumPy trainer, and the GEMM floor.

``[784, 128, 10]`` ReLU, float32, SGD with learning rate 0.01, momentum 0.9
and L2 1e-3, on the 60,000 minmax-normalised training images, at batch 128
and batch 10:

* ``fastnn``: :func:`fastnn.training.fit` with the compiled kernels (the
  whole run of batches inside one compiled call per chunk);
* ``numpy``: the same ``fit`` with ``kernels=fastnn.reference``, the
  pure-NumPy trainer of the same algorithm: same initial weights, same row
  order, so the final losses agree to float32 rounding (checked: rtol 1e-3
  at batch 128, 2e-3 at batch 10, see :data:`LOSS_RTOL`);
* ``floor``: :class:`fastnn.bench.GemmFloor`, the epoch's matrix products
  alone (NumPy ``matmul`` into preallocated outputs), the GEMM-bound limit.

Each round trains a fresh model (built in the untimed setup). When the
benchmarks are disabled (plain ``pytest``, ``--benchmark-disable``) each runs
once as a test, and the batch-10 group uses only the first
:data:`DISABLED_SUBSET_B10` images: a full batch-10 epoch of the NumPy
trainer takes seconds, which a correctness run does not need.
"""
import numpy as np
import pytest

from fastnn.bench import KERNELS, GemmFloor, fit_epoch, make_model

BATCHES = [128, 10]
TRAINERS = ["numpy", "fastnn", "floor"]  # numpy first: fastnn's loss for its check is cheap
DISABLED_SUBSET_B10 = 6000
#: Final losses of the two trainers must agree to this. Single-threaded they
#: agree to ~1e-8; with several BLAS threads the GEMMs round differently and
#: 6,000 small-batch SGD steps amplify that (seen: 6e-4 at batch 10, 2 threads).
LOSS_RTOL = {128: 1e-3, 10: 2e-3}


def epoch_data(mnist_train, batch_size, disabled):
    X, y = mnist_train
    if disabled and batch_size < 128:
        X, y = X[:DISABLED_SUBSET_B10], y[:DISABLED_SUBSET_B10]
    return X, y


def epoch_loss(cache, trainer, X, y, batch_size):
    """The final loss of ``trainer`` on (X, y), computed once per session."""
    key = (trainer, batch_size, X.shape[0])
    if key not in cache:
        cache[key] = fit_epoch(make_model(), X, y, batch_size, KERNELS[trainer])
    return cache[key]


@pytest.mark.parametrize("batch_size", BATCHES, ids=lambda b: f"b{b}")
@pytest.mark.parametrize("trainer", TRAINERS)
def test_epoch(benchmark, bench_rounds, mnist_train, epoch_losses, trainer, batch_size):
    disabled = not getattr(benchmark, "enabled", False)
    X, y = epoch_data(mnist_train, batch_size, disabled)
    n = X.shape[0]
    rounds = bench_rounds
    benchmark.group = f"epoch MNIST {n} images [784,128,10] float32 batch {batch_size}"
    benchmark.extra_info.update(impl=trainer, kernel="epoch", samples=n, batch_size=batch_size)

    if trainer == "floor":
        floor = GemmFloor(X, batch_size)
        if not disabled:
            floor()  # warm-up: first touch of the buffers, BLAS threads
        flops = benchmark.pedantic(floor, rounds=rounds)
        assert flops == n * 2 * (784 * 128 * 2 + 128 * 10 * 3)
        benchmark.extra_info["gflop"] = flops / 1e9
        return

    kernels = KERNELS[trainer]
    if not disabled:  # warm-up on a slice: lazy imports, thread pools, page faults
        fit_epoch(make_model(), X[:2048], y[:2048], batch_size, kernels)
    loss = benchmark.pedantic(fit_epoch, setup=lambda: ((make_model(), X, y, batch_size, kernels), {}),
                              rounds=rounds)
    assert np.isfinite(loss)
    epoch_losses.setdefault((trainer, batch_size, n), loss)
    assert loss == epoch_losses[(trainer, batch_size, n)], "same seed, different loss"
    other = "numpy" if trainer == "fastnn" else "fastnn"
    other_loss = epoch_loss(epoch_losses, other, X, y, batch_size)
    benchmark.extra_info["loss"] = loss
    assert loss == pytest.approx(other_loss, rel=LOSS_RTOL[batch_size]), \
        f"{trainer} and {other} trainers disagree on the final loss"
