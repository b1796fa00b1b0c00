"""Threads: concurrent use of one model, the BLAS thread count
(set_num_threads / FASTNN_NUM_THREADS) and its restoration."""
import os
import threading
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_info

import fastnn
from fastnn import MLP, Callback, get_num_threads, set_num_threads, threads


def _blas_threads():
    return sorted({info["num_threads"] for info in threadpool_info()
                   if info["user_api"] == "blas"})


@pytest.fixture(autouse=True)
def _restore(monkeypatch):
    monkeypatch.delenv("FASTNN_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    previous = threads._num_threads
    before = _blas_threads()
    yield
    threads._num_threads = previous
    assert _blas_threads() == before  # BLAS is left as it was found


@pytest.fixture(scope="module")
def model_and_data(mnist_small):
    (X, y), (Xt, yt) = mnist_small
    model = MLP([784, 64, 10], seed=0)
    set_num_threads(1)
    try:
        model.fit(X[:1000], y[:1000], epochs=1, batch_size=32, learning_rate=0.05, verbose=False)
    finally:
        set_num_threads(None)
    return model, X[:1000], y[:1000], Xt[:800], yt[:800]


def _run_threads(target, n):
    errors = []

    def wrapped(i):
        try:
            target(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
    ts = [threading.Thread(target=wrapped, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in ts)
    if errors:
        raise errors[0]


@pytest.mark.parametrize("n_threads", [None, 1])
def test_concurrent_predict_proba_equals_sequential(model_and_data, n_threads):
    model, _, _, Xt, yt = model_and_data
    set_num_threads(n_threads)
    # each thread gets different rows, so mixed-up buffers would show
    chunks = [Xt[i * 200:(i + 1) * 200] for i in range(4)]
    labels = [yt[i * 200:(i + 1) * 200] for i in range(4)]
    expected = [model.predict_proba(c) for c in chunks]
    expected_pred = [model.predict(c) for c in chunks]
    expected_eval = [model.evaluate(c, lab) for c, lab in zip(chunks, labels)]
    results = [[] for _ in range(4)]
    start = threading.Barrier(4)

    def work(i):
        start.wait()
        for _ in range(15):
            results[i].append((model.predict_proba(chunks[i]), model.predict(chunks[i]),
                               model.evaluate(chunks[i], labels[i])))

    _run_threads(work, 4)
    for i in range(4):
        assert len(results[i]) == 15
        for proba, pred, ev in results[i]:
            np.testing.assert_allclose(proba, expected[i], rtol=1e-5, atol=1e-7)
            np.testing.assert_array_equal(pred, expected_pred[i])
            assert ev[1] == expected_eval[i][1]
            assert ev[0] == pytest.approx(expected_eval[i][0], rel=1e-5)
    if n_threads == 1:  # one BLAS thread everywhere: deterministic to the bit
        for i in range(4):
            for proba, _, ev in results[i]:
                np.testing.assert_array_equal(proba, expected[i])
                assert ev == expected_eval[i]


def test_concurrent_fit_of_separate_models_equals_sequential(model_and_data):
    _, X, y, Xt, _ = model_and_data
    set_num_threads(1)
    args = dict(epochs=2, batch_size=16, learning_rate=0.05, momentum=0.9, verbose=False)
    expected = []
    for seed in range(3):
        m = MLP([784, 32, 10], seed=seed)
        m.fit(X[:600], y[:600], **args)
        expected.append(m.parameters.copy())
    got = [None] * 3

    def work(i):
        m = MLP([784, 32, 10], seed=i)
        m.fit(X[:600], y[:600], **args)
        got[i] = m.parameters.copy()

    _run_threads(work, 3)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)


def test_thread_count_does_not_change_results_beyond_rounding(model_and_data):
    model, X, y, Xt, yt = model_and_data
    out = {}
    for n in (1, 2):
        set_num_threads(n)
        assert get_num_threads() == n
        m = MLP([784, 64, 10], seed=3)
        m.fit(X[:500], y[:500], epochs=1, batch_size=100, learning_rate=0.01, verbose=False)
        out[n] = (model.predict_proba(Xt), model.predict(Xt), model.evaluate(Xt, yt), m.parameters)
    np.testing.assert_allclose(out[1][0], out[2][0], rtol=1e-5, atol=1e-7)
    assert (out[1][1] != out[2][1]).mean() < 0.01
    assert out[1][2][0] == pytest.approx(out[2][2][0], rel=1e-5)
    np.testing.assert_allclose(out[1][3], out[2][3], rtol=1e-4, atol=1e-6)


class _ReadBlas(Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.inside = _blas_threads()


def test_set_num_threads_applies_during_fit_only():
    X = np.random.default_rng(0).normal(size=(64, 8))
    y = np.arange(64) % 3
    before = _blas_threads()
    set_num_threads(1)
    cb = _ReadBlas()
    MLP([8, 4, 3], seed=0).fit(X, y, epochs=1, verbose=False, callbacks=[cb])
    assert cb.inside == [1]
    assert _blas_threads() == before
    set_num_threads(None)
    assert get_num_threads() is None
    MLP([8, 4, 3], seed=0).fit(X, y, epochs=1, verbose=False, callbacks=[cb])
    assert cb.inside == before  # BLAS default, untouched


def test_env_var_applies(monkeypatch):
    X = np.random.default_rng(0).normal(size=(64, 8))
    y = np.arange(64) % 3
    set_num_threads(None)
    monkeypatch.setenv("FASTNN_NUM_THREADS", "1")
    assert get_num_threads() == 1
    cb = _ReadBlas()
    MLP([8, 4, 3], seed=0).fit(X, y, epochs=1, verbose=False, callbacks=[cb])
    assert cb.inside == [1]


def test_overlapping_calls_from_threads_restore_blas():
    """Thread A enters fit, then B; A leaves first. B must still run with the limit,
    and BLAS must end as it was (not left at the limit for good)."""
    X = np.random.default_rng(0).normal(size=(64, 8))
    y = np.arange(64) % 3
    before = _blas_threads()
    set_num_threads(1)
    both_inside = threading.Barrier(2, timeout=30)
    a_done = threading.Event()
    seen = {}

    class First(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            both_inside.wait()

    class Second(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            both_inside.wait()
            assert a_done.wait(timeout=30)
            seen["after_a"] = _blas_threads()

    def work(i):
        cb = First() if i == 0 else Second()
        MLP([8, 4, 3], seed=i).fit(X, y, epochs=1, verbose=False, callbacks=[cb])
        if i == 0:
            a_done.set()

    _run_threads(work, 2)
    assert seen["after_a"] == [1]
    assert _blas_threads() == before


@pytest.mark.parametrize("value, exc", [(0, ValueError), (-1, ValueError), (1.5, TypeError),
                                        (threads.MAX_THREADS + 1, ValueError),
                                        ("2", TypeError), (True, TypeError), ([2], TypeError),
                                        (float("nan"), TypeError)])
def test_set_num_threads_validates(value, exc):
    set_num_threads(2)
    with pytest.raises(exc, match="n must"):
        set_num_threads(value)
    assert get_num_threads() == 2  # unchanged


def test_thread_counts_over_the_limit_fail_where_they_are_given():
    """A count above MAX_THREADS is refused by the call that names it, not by every
    later fit (whose error would name neither the count nor where it came from)."""
    with pytest.raises(ValueError, match=r"n must be in \[1, 1024\]"):
        with threads.using(threads.MAX_THREADS + 1):
            pass
    # accepted up to MAX_THREADS, and run on at most the compiled loop's limit (a
    # count said to be used that was not: fastnn info showed 100 for a fit)
    assert threads.training_threads(threads.MAX_THREADS) == threads.MAX_TRAINING_THREADS == 64
    with threads.using(100):
        assert threads.training_threads() == 64
    with pytest.raises(ValueError, match="n_threads"):
        threads.training_threads(threads.MAX_THREADS + 1)


def test_the_blas_limit_of_a_fit_caps_and_never_raises():
    """threads.limit() applies fastnn's count to BLAS as a cap: a user's own
    threadpool_limits(1) stays 1 during a fit on 8 threads (it became 8)."""
    from threadpoolctl import threadpool_info, threadpool_limits
    blas = lambda: [lib["num_threads"] for lib in threadpool_info()  # noqa: E731
                    if lib["user_api"] == "blas"]
    if not blas():
        pytest.skip("no BLAS library loaded")
    with threadpool_limits(1, user_api="blas"):
        with threads.using(8), threads.limit():
            assert blas() == [1] * len(blas())
    before = blas()
    with threads.using(1), threads.limit():
        assert blas() == [1] * len(before)
    assert blas() == before


def test_set_num_threads_accepts():
    for value, expected in ((1, 1), (np.int64(3), 3), (np.uint8(2), 2), (None, None)):
        set_num_threads(value)
        assert get_num_threads() == expected
        assert expected is None or type(get_num_threads()) is int
    assert fastnn.set_num_threads is set_num_threads


@pytest.mark.parametrize("env, expected", [("1", 1), ("4", 4), (" 2 ", 2), ("", None),
                                           ("  ", None), ("08", 8)])
def test_env_var_parsing(monkeypatch, env, expected):
    set_num_threads(None)
    monkeypatch.setenv("FASTNN_NUM_THREADS", env)
    assert get_num_threads() == expected


@pytest.mark.parametrize("env", ["0", "-2", "abc", "1.5", "2 threads", "1e3", "5000"])
def test_env_var_invalid(monkeypatch, env):
    set_num_threads(None)
    monkeypatch.setenv("FASTNN_NUM_THREADS", env)
    with pytest.raises(ValueError, match="FASTNN_NUM_THREADS") as info:
        get_num_threads()
    assert repr(env) in str(info.value)
    with pytest.raises(ValueError, match="FASTNN_NUM_THREADS"):
        MLP([3, 2], seed=0).predict(np.ones((1, 3)))


def test_set_num_threads_overrides_env(monkeypatch):
    monkeypatch.setenv("FASTNN_NUM_THREADS", "abc")
    set_num_threads(2)
    assert get_num_threads() == 2
    monkeypatch.setenv("FASTNN_NUM_THREADS", "3")
    assert get_num_threads() == 2
    set_num_threads(None)
    assert get_num_threads() == 3


def test_training_threads_policy(monkeypatch):
    set_num_threads(None)
    monkeypatch.delenv("FASTNN_NUM_THREADS", raising=False)
    # the default: one thread per core this process may use
    assert threads.training_threads() == threads.usable_cores() >= 1
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    assert threads.training_threads() == 3
    set_num_threads(3)
    assert threads.training_threads() == 3
    set_num_threads(None)
    monkeypatch.setenv("FASTNN_NUM_THREADS", "2")
    assert threads.training_threads() == 2


def test_fit_weights_bit_identical_across_thread_counts(mnist_small):
    """fastnn's training loop reduces every element in a fixed order: the same
    seed gives the same weights, bit for bit, on 1, 2 or 3 threads (a batch big
    enough that the first layer's work is split)."""
    (X, y), _ = mnist_small
    params = {}
    for n in (1, 2, 3):
        set_num_threads(n)
        m = MLP([784, 200, 10], seed=5)
        m.fit(X[:1200], y[:1200], epochs=2, batch_size=40, learning_rate=0.05, momentum=0.9,
              l2=1e-3, verbose=False)
        params[n] = m.parameters.copy()
    np.testing.assert_array_equal(params[1], params[2])
    np.testing.assert_array_equal(params[1], params[3])


def _fit_in_child(X, y, queue):
    m = MLP([784, 200, 10], seed=1)
    m.fit(X, y, epochs=1, batch_size=64, verbose=False)
    queue.put(m.parameters.copy())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_threaded_training_works_after_fork(mnist_small):
    """fastnn's training threads live for one compiled call: a process forked
    after threaded training can train on threads too (a persistent pool, as
    libgomp's, would hang the child)."""
    import multiprocessing as mp
    (X, y), _ = mnist_small
    X, y = X[:1500], y[:1500]
    set_num_threads(2)
    parent = MLP([784, 200, 10], seed=1)
    parent.fit(X, y, epochs=1, batch_size=64, verbose=False)
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_fit_in_child, args=(X, y, queue))
    proc.start()
    try:
        child = queue.get(timeout=60)
    finally:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()
    np.testing.assert_array_equal(child, parent.parameters)


def _run_forked(child):
    """Fork; the child runs ``child()`` (an alarm ends a hang) and exits with the
    code it returns (1 if it raised). The parent's ``(done, status)``, the child
    killed after 30 s."""
    import signal
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            signal.alarm(20)
            code = child()
        finally:
            os._exit(code)
    deadline = time.time() + 30
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done or time.time() > deadline:
            break
        time.sleep(0.05)
    if not done:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    return done, status


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_a_fork_while_another_thread_is_inside_fastnn():
    """A fork while another Python thread predicts under ``using(1)`` (inside
    ``threads.limit``): the child's first fastnn call must not wait for a lock
    that thread held (it does not exist in the child), and the child's BLAS
    gets its original limits back."""
    X = np.random.default_rng(0).random((64, 20)).astype(np.float32)
    model = MLP([20, 8, 3], seed=0)
    model.fit(X, np.arange(64) % 3, epochs=1, verbose=False)
    inside, leave = threading.Event(), threading.Event()

    def child():  # exit 0 only if a fastnn call under a count returns
        with threads.using(1):
            model.predict(X)
        return 0 if threads._active == 0 else 2

    def predict_inside():
        with threads.using(1), threads.limit():
            inside.set()
            leave.wait(30)
    worker = threading.Thread(target=predict_inside)
    worker.start()
    try:
        assert inside.wait(10) and threads._active == 1
        done, status = _run_forked(child)
        assert done and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    finally:
        leave.set()
        worker.join()
    assert threads._active == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
@pytest.mark.parametrize("lock", ["progress bar", "plan tuning"])
def test_a_fork_while_another_thread_holds_a_fit_lock_does_not_hang_the_child(lock):
    """A fit takes tqdm's lock (a verbose fit's bar) and the plan tuner's lock: a
    fork while another thread held one left the child's copy held for good, and
    the child's first fit hung (12 of 15 children beside a training thread)."""
    from tqdm.std import TqdmDefaultWriteLock

    from fastnn.training import tuning
    X = np.random.default_rng(0).random((64, 20)).astype(np.float32)
    y = np.arange(64) % 3
    model = MLP([20, 8, 3], seed=0)
    model.fit(X, y, epochs=1, verbose=False)
    inside, leave = threading.Event(), threading.Event()
    held = TqdmDefaultWriteLock.th_lock if lock == "progress bar" else tuning._lock

    def hold():
        with held:
            inside.set()
            leave.wait(30)
    worker = threading.Thread(target=hold)
    worker.start()
    try:
        assert inside.wait(10)
        verbose = lock == "progress bar"  # (a verbose fit takes the bar's lock)
        if not verbose:  # tuning's lock the fork itself waits for: no race
            threading.Timer(0.2, leave.set).start()

        def child():
            model.fit(X, y, epochs=1, verbose=verbose)
            return 0
        done, status = _run_forked(child)
    finally:
        leave.set()
        worker.join()
    assert done and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status


# --- the limits around fastnn ------------------------------------------------------------


def test_threadpoolctl_lists_and_limits_fastnn():
    from threadpoolctl import threadpool_limits
    mine = [i for i in threadpool_info() if i["user_api"] == "fastnn"]
    assert len(mine) == 1 and mine[0]["num_threads"] == threads.training_threads()
    default = threads.training_threads()
    with threadpool_limits(1):
        assert threads.training_threads() == 1
        assert [i["num_threads"] for i in threadpool_info() if i["user_api"] == "fastnn"] == [1]
        with threadpool_limits(limits=default, user_api="fastnn"):
            assert threads.training_threads() == default
        assert threads.training_threads() == 1
    assert threads.training_threads() == default
    assert threads._pool_limit is None  # lifted, not left at the default's value
    with threadpool_limits(limits=1, user_api="blas"):  # BLAS only: fastnn untouched
        assert threads.training_threads() == default


def test_omp_num_threads_caps_the_default(monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 8)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.training_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "16")  # a cap, not a request
    assert threads.training_threads() == 8
    monkeypatch.setenv("OMP_NUM_THREADS", "2,1")  # nested levels: the first
    assert threads.training_threads() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "junk")  # ignored, as OpenMP runtimes do
    assert threads.training_threads() == 8


def test_order_explicit_then_own_setting_then_parent(monkeypatch):
    from threadpoolctl import threadpool_limits
    monkeypatch.setattr(threads, "usable_cores", lambda: 8)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    with threadpool_limits(1):
        assert threads.training_threads() == 1
        set_num_threads(5)
        assert threads.training_threads() == 5
        with threads.using(3):
            assert threads.training_threads() == 3
            assert threads.training_threads(4) == 4
            with threads.using(None):  # no count of its own: the enclosing one holds
                assert threads.training_threads() == 3
        assert threads.training_threads() == 5


def test_using_belongs_to_one_python_thread():
    """Two fits' counts in two Python threads do not see each other (the 0.1
    estimator set a process-wide global around its fit)."""
    start, seen = threading.Barrier(2), {}

    def work(i):
        with threads.using(i + 1):
            start.wait()
            seen[i] = [threads.training_threads() for _ in range(1000)]
            start.wait()

    _run_threads(work, 2)
    assert set(seen[0]) == {1} and set(seen[1]) == {2}
    assert get_num_threads() is None


def _worker_threads():
    import os
    from fastnn import threads as t
    return t.training_threads(), os.environ.get("OMP_NUM_THREADS"), t.usable_cores()


def test_loky_workers_follow_their_limit():
    """joblib's loky workers (GridSearchCV(n_jobs=...)) set OMP_NUM_THREADS to
    their share of the cores: fastnn trains on that many threads there."""
    joblib = pytest.importorskip("joblib")
    out = joblib.Parallel(n_jobs=2, backend="loky")(
        joblib.delayed(_worker_threads)() for _ in range(2))
    for n, omp, cores in out:
        assert omp is not None
        assert n == max(1, min(cores, int(omp)))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_estimator_leaves_the_global_alone(monkeypatch, mnist_small):
    pytest.importorskip("sklearn")
    from fastnn.sklearn import MLPClassifier

    def forbidden(n):
        raise AssertionError("set_num_threads called inside a fit")

    (X, y), _ = mnist_small
    monkeypatch.setattr(threads, "set_num_threads", forbidden)
    clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=1, n_threads=1, random_state=0,
                        batch_size=50)
    clf.fit(X[:200], y[:200])
    clf.predict(X[:10])


def _cgroup(tmp_path, proc, files):
    (tmp_path / "proc").write_text(proc)
    for rel, text in files.items():
        path = tmp_path / "fs" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return dict(root=str(tmp_path / "fs"), proc_cgroup=str(tmp_path / "proc"))


@pytest.mark.parametrize("proc, files, expected", [
    ("0::/\n", {"cpu.max": "max 100000\n"}, None),
    ("0::/\n", {"cpu.max": "150000 100000\n"}, 1.5),
    ("0::/a/b\n", {"cpu.max": "400000 100000\n", "a/cpu.max": "200000 100000\n",
                   "a/b/cpu.max": "max 100000\n"}, 2.0),
    ("0::/gone\n", {"cpu.max": "50000 100000\n"}, 0.5),  # a container's own root
    ("1:cpu,cpuacct:/\n", {"cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
                           "cpu,cpuacct/cpu.cfs_period_us": "100000\n"}, None),
    ("1:cpu,cpuacct:/x\n", {"cpu,cpuacct/x/cpu.cfs_quota_us": "300000\n",
                            "cpu,cpuacct/x/cpu.cfs_period_us": "100000\n"}, 3.0),
    ("0::/\n", {}, None),
    ("garbage", {"cpu.max": "junk"}, None),
])
def test_cgroup_cpu_quota(tmp_path, proc, files, expected):
    assert threads.cgroup_cpu_quota(**_cgroup(tmp_path, proc, files)) == expected


def test_usable_cores_follow_the_quota(monkeypatch):
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(threads, "cgroup_cpu_quota", lambda: 1.5)
    assert threads.usable_cores() == 2
    monkeypatch.setattr(threads, "cgroup_cpu_quota", lambda: 0.2)
    assert threads.usable_cores() == 1
    monkeypatch.setattr(threads, "cgroup_cpu_quota", lambda: None)
    assert threads.usable_cores() == 4


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_prediction_splits_the_rows_across_threads_with_the_same_bits(monkeypatch, dtype):
    """predict_proba, decision_function and evaluate split each block of rows
    across the threads (every layer of a part on one thread): the same bits on
    1, 2 and 3 threads, dense or CSR, and the NumPy twin's values."""
    import functools

    import scipy.sparse

    from fastnn import inference, reference
    from fastnn._layout import unflatten

    rng = np.random.default_rng(0)
    model = MLP([37, 29, 11, 5], activation="tanh", dtype=dtype, seed=0)
    n = 2 * inference._BLOCK + 7  # two full blocks and a short one
    X = rng.standard_normal((n, 37)).astype(dtype)
    X[::3, ::2] = 0
    y = rng.integers(0, 5, n)
    parts = []
    split = threads.split_work

    def recording(rows, k, work):
        if isinstance(work, functools.partial):  # the forward's (not the input checks')
            parts.append((rows, k))
        return split(rows, k, work)

    monkeypatch.setattr(threads, "split_work", recording)
    with threads.using(3):  # the default cost: too little work to split
        model.decision_function(X)
    assert parts and all(k == 1 for _, k in parts)
    row_macs = 37 * 29 + 29 * 11 + 11 * 5
    monkeypatch.setattr(inference, "_THREAD_START_MACS", row_macs * 500)
    parts.clear()
    with threads.using(8):  # 2,048 rows: at most sqrt(4) parts; 7 rows: one
        model.decision_function(X)
    assert parts == [(inference._BLOCK, 2), (inference._BLOCK, 2), (7, 1)]
    monkeypatch.setattr(inference, "_THREAD_START_MACS", 1)  # split even this small network
    parts.clear()
    got = {}
    for n_threads in (1, 2, 3):
        with threads.using(n_threads):
            got[n_threads] = (model.decision_function(X), model.predict_proba(X),
                              model.evaluate(X, y),
                              model.decision_function(scipy.sparse.csr_array(X)),
                              model.decision_function(X[:2]))
    assert (inference._BLOCK, 3) in parts and (7, 2) in parts and (2, 2) in parts
    for n_threads in (2, 3):
        for a, b in zip(got[n_threads], got[1]):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(got[1][3], got[1][0])  # CSR as dense
    a = X
    weights, biases = unflatten(model.parameters, model.layers)
    for i, (W, b) in enumerate(zip(weights, biases)):
        a = reference.dense_forward(a, W, b, "tanh" if i < len(weights) - 1 else "identity")
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got[1][0], a, rtol=tol, atol=tol)


def test_split_work_joins_its_helpers_when_the_callers_part_is_interrupted():
    """An exception in the calling thread's part (KeyboardInterrupt, say) is
    raised after the helpers' parts have finished: none is left running on
    the caller's buffers."""
    done = []

    def work(lo, hi):
        if lo == 0:
            raise KeyboardInterrupt
        time.sleep(0.2)  # still running when the caller's part fails
        done.append(threading.get_ident())
        return True

    with pytest.raises(KeyboardInterrupt):
        threads.split_work(10, 3, work)
    assert len(done) == 2
