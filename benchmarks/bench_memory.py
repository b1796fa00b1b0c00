"""Training allocates nothing per batch: memory does not grow with epochs or batches.

Plain tests (no timing; they run in ``pytest`` and ``pytest benchmarks
--benchmark-disable``, and are skipped by ``--benchmark-only``):

* tracemalloc (which sees NumPy's buffers): the peak of a 5-epoch ``fit``
  is within 10% of a 1-epoch ``fit`` plus one row-order vector (from the
  second epoch on, the previous epoch's order is alive while the next is
  drawn: ``n * 8`` bytes, once); inside the training loop (measured from a
  callback, after the once-per-fit buffers exist) the peak of 5 epochs is
  within 10% of 2 epochs;
* tracemalloc: the loop's peak does not depend on the batch size (batch
  1024 vs 128): per-batch temporaries would scale with it. The NumPy
  trainer must not grow by a batch of X either (it reuses the caller's
  buffers); a trainer that gathers each batch into a new array is the
  control that shows the probe sees such growth;
* peak RSS of a subprocess (``resource.getrusage``), which sees every
  allocation, C ones included: 5 epochs within 10% of 1 epoch.

They train on the first 20,000 images (:data:`N_SAMPLES`) to stay quick.
"""
import resource
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from fastnn import Callback, reference
from fastnn_bench.settings import L2, LEARNING_RATE, MOMENTUM
from fastnn_bench.trainers import make_model

TOLERANCE = 0.10
N_SAMPLES = 20000  # a third of MNIST: keeps these tests to a few seconds


class LoopPeak(Callback):
    """Peak traced memory of the training loop, above what existed at its start."""

    def on_train_begin(self, logs=None):
        self.base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()

    def on_train_end(self, logs=None):
        self.peak = tracemalloc.get_traced_memory()[1] - self.base


def traced_fit(X, y, epochs, batch_size, kernels=None):
    """``(peak of the whole fit, peak of its training loop)`` in bytes, by tracemalloc."""
    from fastnn import training
    model = make_model()
    probe = LoopPeak()
    started = tracemalloc.is_tracing()
    if not started:
        tracemalloc.start()
    try:
        with threadpool_limits(limits=1, user_api="blas"):  # memory, not speed: 1 thread
            base = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            history = training.fit(
                model, X, y, epochs=epochs, batch_size=batch_size, learning_rate=LEARNING_RATE,
                momentum=MOMENTUM, l2=L2, l1=0.0, validation_split=0.0, validation_data=None,
                early_stopping=None, lr_decay=None, lr_decay_threshold=0.001, verbose=False,
                callbacks=[probe], checkpoint=None, kernels=kernels)
            fit_peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        if not started:
            tracemalloc.stop()
    assert len(history.epoch) == epochs and not history.diverged
    return fit_peak, probe.peak


def _within(big, small, what):
    assert big <= small * (1 + TOLERANCE), (
        f"{what}: {big / 1e6:.3f} MB vs {small / 1e6:.3f} MB (more than {TOLERANCE:.0%} apart): "
        "training allocates memory that grows with the number of epochs or batches")


def test_peak_memory_does_not_grow_with_epochs(mnist_train):
    X, y = mnist_train
    X, y = X[:N_SAMPLES], y[:N_SAMPLES]
    fit1, _ = traced_fit(X, y, 1, 128)
    _, loop2 = traced_fit(X, y, 2, 128)
    fit5, loop5 = traced_fit(X, y, 5, 128)
    # From the second epoch on, the previous epoch's row order is still alive
    # while the next one is drawn: one intp vector of n rows, once, not per batch.
    order_bytes = X.shape[0] * np.dtype(np.intp).itemsize
    _within(fit5, fit1 + order_bytes, "peak of fit, 5 epochs vs 1 (+ one row order)")
    _within(loop5, loop2, "peak of the training loop, 5 epochs vs 2")


class _GatheringTrainer:
    """The control: the NumPy trainer plus what a naive one does, a fresh
    ``X[batch]`` per batch (kept until the next batch replaces it)."""

    def __init__(self):
        self.last = None

    def train_batches(self, X, y, order, start, stop, batch_size, *args, **kwargs):
        for s0 in range(start, stop, batch_size):
            self.last = X[order[s0:min(s0 + batch_size, stop)]]
        return reference.train_batches(X, y, order, start, stop, batch_size, *args, **kwargs)


def test_training_loop_allocates_nothing_per_batch(mnist_train):
    X, y = mnist_train
    X, y = X[:N_SAMPLES], y[:N_SAMPLES]
    _, small = traced_fit(X, y, 1, 128)
    _, large = traced_fit(X, y, 1, 1024)
    _within(large, small, "peak of the training loop, batch 1024 vs 128")
    # The NumPy trainer works in the caller's buffers too: its per-call
    # temporaries (a mask, the SGD step, row-sized vectors) grow with the batch
    # by far less than one batch of X would.
    batch_growth = (1024 - 128) * X.shape[1] * X.itemsize
    _, np_small = traced_fit(X, y, 1, 128, kernels=reference)
    _, np_large = traced_fit(X, y, 1, 1024, kernels=reference)
    assert np_large - np_small < batch_growth / 4, \
        "the NumPy trainer allocates per batch (it should reuse the caller's buffers)"
    # The control: a trainer that gathers each batch into a new array shows
    # that growth. If this fails, the probe is blind.
    _, ctl_small = traced_fit(X, y, 1, 128, kernels=_GatheringTrainer())
    _, ctl_large = traced_fit(X, y, 1, 1024, kernels=_GatheringTrainer())
    assert ctl_large - ctl_small > batch_growth


_RSS_SCRIPT = textwrap.dedent("""
    import resource, sys
    import numpy as np
    from fastnn_bench.trainers import make_model
    from fastnn import training
    X = np.load(sys.argv[1])
    y = np.load(sys.argv[2])
    epochs = int(sys.argv[3])
    from threadpoolctl import threadpool_limits
    threadpool_limits(limits=1, user_api="blas")  # memory, not speed
    model = make_model()
    h = training.fit(model, X, y, epochs=epochs, batch_size=128, learning_rate=0.01,
                     momentum=0.9, l2=1e-3, l1=0.0, validation_split=0.0,
                     validation_data=None, early_stopping=None, lr_decay=None,
                     lr_decay_threshold=0.001, verbose=False, callbacks=None,
                     checkpoint=None)
    assert len(h.epoch) == epochs
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
""")


@pytest.mark.skipif(not hasattr(resource, "getrusage"), reason="needs resource.getrusage")
def test_peak_rss_does_not_grow_with_epochs(mnist_train, tmp_path):
    X, y = mnist_train
    X, y = X[:N_SAMPLES], y[:N_SAMPLES]
    xf, yf = tmp_path / "X.npy", tmp_path / "y.npy"
    np.save(xf, X)
    np.save(yf, y)
    peaks = {}
    for epochs in (1, 5):
        proc = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, str(xf), str(yf), str(epochs)],
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
        peaks[epochs] = int(proc.stdout.split()[-1]) * 1024  # ru_maxrss is in KiB on Linux
    _within(peaks[5], peaks[1], "peak RSS of a process that trains 5 epochs vs 1")
