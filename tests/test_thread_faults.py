"""The compiled loop's divergence paths on several threads: a non-finite loss
in a partial last batch, a non-finite weight made by an update, with a
thread delayed at each decision point (the race that hung fastnn 0.1) and on
an oversubscribed CPU. Cases: tests/thread_faults_cases.py."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastnn import _kernels
from fastnn import kernels as K
from fastnn import reference as R
from fastnn.training import Workspace

sys.path.insert(0, str(Path(__file__).parent))
import thread_faults_cases as cases  # noqa: E402

SCRIPT = Path(__file__).parent / "thread_faults_cases.py"


@pytest.fixture(autouse=True)
def _no_delay():
    yield
    _kernels._test_delay(-1, 0, 0)


ALL_CASES = dict(cases.cases())


@pytest.mark.parametrize("n_threads", [1, 2, 3, 4])
@pytest.mark.parametrize("name", list(ALL_CASES))
def test_divergence_result_on_every_thread_count(kernel_isa, name, n_threads):
    got, expected = cases.run_case(ALL_CASES[name], n_threads)
    assert got == expected


@pytest.mark.parametrize("point", [1, 2, 3])
@pytest.mark.parametrize("name", ["nan-partial-b10", "nan-wide-b7", "inf-weight-one-batch"])
def test_delayed_thread_cannot_desynchronise_the_team(name, point):
    """Thread 1 sleeps 20 ms at a decision point of every step, so that thread 0
    has long set the status for the step's divergence when thread 1 gets
    there: every thread must still leave the call at the same barrier. Run in
    a subprocess: a hang fails the test on the timeout."""
    code = (f"import sys; sys.path.insert(0, {str(SCRIPT.parent)!r});"
            "import thread_faults_cases as c; from fastnn import _kernels;"
            f"_kernels._test_delay(1, {point}, 20000);"
            f"case = dict(c.cases())[{name!r}];"
            "print([c.run_case(case, n) for n in (2, 3, 4)])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    results = eval(out.stdout)  # noqa: S307 - our own subprocess's list of tuples
    assert all(got == expected for got, expected in results), results


def test_stress_divergence_oversubscribed():
    """Threads 1-4 x partial batches x divergence, thread 1 delayed at each
    point in turn, with two spinning processes more than the cores can run
    (``FASTNN_STRESS_REPS`` repetitions, 10 by default; the stress run of the
    README uses 200)."""
    reps = os.environ.get("FASTNN_STRESS_REPS", "10")
    busy = str(max(2, (os.cpu_count() or 1)))
    out = subprocess.run([sys.executable, str(SCRIPT), "--reps", reps, "--busy", busy,
                          "--delay"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("ok:")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("fn", [K.train_batches, R.train_batches], ids=["compiled", "numpy"])
def test_update_that_overflows_a_weight_reports_diverged(fn, dtype):
    """Compiled kernel and twin agree: the batch whose update made a weight
    infinite counts as done (it was applied) and the call reports it."""
    args, (rows, _) = cases.inf_weight_case(5, n_batches=1, dtype=dtype)
    params, slots = args["params"].copy(), args["slots"].copy()
    ws = Workspace(args["sizes"], args["batch"], dtype)
    order = np.arange(args["X"].shape[0], dtype=np.intp)
    with np.errstate(all="ignore"):
        out = fn(args["X"], args["y"], order, 0, order.size, args["batch"], args["sizes"],
                 "tanh", params, slots, ws, K.Hyper("sgd", learning_rate=0.5, momentum=0.9))
    assert out[0] == rows and out[3] is True
    assert np.isfinite(out[1])  # the loss itself was finite
    assert not np.isfinite(params).all()


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_finite_training_is_not_flagged(kind):
    """The weight check has no false alarm on ordinary training (all ISAs' tails)."""
    rng = np.random.default_rng(3)
    sizes = np.array([37, 29, 5], np.intp)
    from fastnn._layout import n_params
    params = (rng.standard_normal(n_params(list(sizes))) * 0.1).astype(np.float32)
    slots = np.zeros((2, params.size), np.float32)
    X = rng.standard_normal((50, 37)).astype(np.float32)
    y = rng.integers(0, 5, 50).astype(np.intp)
    ws = Workspace(sizes, 7, np.float32)
    out = K.train_batches(X, y, np.arange(50, dtype=np.intp), 0, 50, 7, sizes, "relu", params,
                          slots, ws, K.Hyper(kind, learning_rate=0.01), n_threads=2)
    assert out[0] == 50 and out[3] is False


def test_test_delay_validates():
    with pytest.raises(ValueError, match="tid"):
        _kernels._test_delay(-2, 1, 10)
    with pytest.raises(ValueError, match="point"):
        _kernels._test_delay(0, 4, 10)
    with pytest.raises(TypeError, match="us"):
        _kernels._test_delay(0, 1, 1.5)


@pytest.mark.skipif(__import__("platform").machine().lower() not in ("x86_64", "amd64", "aarch64",
                                                                      "arm64"),
                    reason="flushing subnormals is implemented on x86-64 and aarch64")
@pytest.mark.parametrize("n_threads", [1, 2])
def test_training_flushes_subnormals_and_restores_the_mode(n_threads):
    """Inside a training call subnormal numbers are flushed to zero (a velocity
    of 1e-39 with a zero gradient becomes 0, not 9e-40); afterwards the
    caller's mode is back (NumPy makes subnormals again)."""
    sizes = np.array([3, 2], np.intp)
    from fastnn._layout import n_params
    params = np.zeros(n_params([3, 2]), np.float32)
    slots = np.zeros((1, params.size), np.float32)
    slots[0, 0] = 1e-39  # W[0, 0]'s velocity; X[:, 0] == 0: its gradient is 0
    X = np.zeros((4, 3), np.float32)
    X[:, 1] = 1.0
    y = np.array([0, 1, 0, 1], np.intp)
    ws = Workspace(sizes, 4, np.float32)
    K.train_batches(X, y, np.arange(4, dtype=np.intp), 0, 4, 4, sizes, "relu", params, slots, ws,
                    K.Hyper("sgd", learning_rate=0.1, momentum=0.9), n_threads=n_threads)
    assert slots[0, 0] == 0 and params[0] == 0
    assert np.float32(1e-38) * np.float32(0.5) != 0  # the caller's mode restored
