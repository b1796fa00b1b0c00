"""Shared fixtures: the real MNIST data (``mnist_path`` is in the root conftest.py)."""
import signal

import numpy as np
import pytest

from fastnn import _kernels


def supported_isas():
    """The kernel variants this build and CPU run (the registry's usable
    entries), the selected (best) first."""
    return [e["isa"] for e in _kernels._ukernels() if e["usable"]]


@pytest.fixture(params=supported_isas())
def kernel_isa(request):
    """Run a test on each variant of fastnn's kernels this CPU supports."""
    before = _kernels._kernel_isa()
    _kernels._kernel_isa(request.param)
    yield request.param
    _kernels._kernel_isa(before)


@pytest.fixture(scope="session", autouse=True)
def ctrl_c_reaches_python():
    """Python's Ctrl-C handler for the session: a shell starts a background job
    with SIGINT ignored, and Python then leaves it ignored, so Ctrl-C and
    ``_thread.interrupt_main`` would do nothing and the interruption tests
    could not interrupt (they failed in a background run)."""
    before = signal.getsignal(signal.SIGINT)
    if before is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    if before is signal.SIG_IGN:
        signal.signal(signal.SIGINT, before)


@pytest.fixture(scope="session")
def mnist(mnist_path):
    """((X_train, y_train), (X_test, y_test)), minmax-normalised float32."""
    from fastnn.datasets import load_mnist
    return load_mnist(mnist_path)


@pytest.fixture(scope="session")
def mnist_small(mnist):
    """A 6,000/1,000 subset for quick training tests."""
    (X, y), (Xt, yt) = mnist
    return (X[:6000], y[:6000]), (Xt[:1000], yt[:1000])


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(scope="module")
def one_blas_thread():
    """fastnn on one BLAS thread for a module, restored after it: small GEMMs run
    faster and far more steadily so on a shared 2-core machine. Use with
    ``pytestmark = pytest.mark.usefixtures("one_blas_thread")``."""
    from fastnn import threads
    previous = threads._num_threads
    threads.set_num_threads(1)
    yield
    threads.set_num_threads(previous)
