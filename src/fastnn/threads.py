"""How many threads fastnn uses, and the limits it respects.

Training runs on fastnn's own kernels and its own threads (POSIX threads
started per compiled call): each step is split across the threads, and BLAS
is not called. The count of a training call is decided by
:func:`training_threads`, in this order:

1. an explicit count: the ``n`` of a ``with fastnn.threads.using(n):`` block
   (or an estimator's ``n_threads``); it holds for the Python thread (and
   context) that entered the block only, so fits in two Python threads with
   two counts do not disturb each other;
2. fastnn's own setting: :func:`set_num_threads`, else the environment
   variable ``FASTNN_NUM_THREADS``;
3. the limits a parent set, as caps: ``threadpoolctl.threadpool_limits``
   (fastnn registers its threads with threadpoolctl as a controller of their
   own, ``user_api="fastnn"``, so ``threadpool_limits(1)`` limits them and
   ``threadpool_info()`` lists them), and ``OMP_NUM_THREADS`` (which joblib's
   loky workers, and so scikit-learn's ``GridSearchCV(n_jobs=...)``, set per
   worker);
4. the cores the process may use: its CPU affinity and its cgroup CPU quota
   (a container limited to 1.5 CPUs gets 2 threads).

Prediction (``predict``, ``predict_proba``, ``predict_log_proba``,
``decision_function``, ``evaluate``, ``score``, and the validation of ``fit``)
uses the same count: each block of rows is split into one contiguous part per
thread (:func:`split_work`: Python threads around the compiled forward, which
releases the GIL), every layer of a part on one thread, when each part gets
enough work (``fastnn.inference``). Code that predicts from several Python
threads at once (a server's workers) multiplies the threads: give each
``using(1)``, or ``set_num_threads(1)``.

A configured number (1 or 2) also applies to every BLAS library loaded in the
process (NumPy's and SciPy's: the NumPy twins of :mod:`fastnn.reference` call
it) while fastnn trains or predicts, through threadpoolctl, and is restored
afterwards. Training and prediction run on fastnn's own kernels, never BLAS:
their results do not depend on the thread count, bit for bit.
"""
import contextlib
import contextvars
import functools
import math
import os
import threading

from ._checks import check_int
from ._version import __version__

#: the most threads a count may name
MAX_THREADS = 1024
#: the most a fit (and prediction) runs on: the compiled loop's own limit
#: (_gemm_train.h); a larger count runs on this many
MAX_TRAINING_THREADS = 64

_num_threads = None
_explicit = contextvars.ContextVar("fastnn_explicit_threads", default=None)
_pool_limit = None  # set through threadpoolctl on fastnn's controller
_controller = None
_lock = threading.Lock()
_active = 0  # blocks inside limit(), across threads
_limiter = None


def set_num_threads(n: int | None) -> None:
    """fastnn's own thread count, process-wide (``None``: back to the default).

    Used for training (unless a ``using`` block gives an explicit count) and
    applied to BLAS while fastnn trains or predicts."""
    global _num_threads
    _num_threads = check_int(n, "n", low=1, high=MAX_THREADS, allow_none=True)


def get_num_threads() -> int | None:
    """fastnn's own setting (:func:`set_num_threads`, else ``FASTNN_NUM_THREADS``),
    or None when none is set."""
    if _num_threads is not None:
        return _num_threads
    env = os.environ.get("FASTNN_NUM_THREADS", "").strip()
    if not env:
        return None
    try:
        return check_int(int(env), "FASTNN_NUM_THREADS", low=1, high=MAX_THREADS)
    except ValueError:
        raise ValueError(f"FASTNN_NUM_THREADS must be an integer in [1, {MAX_THREADS}], "
                         f"got {env!r}") from None


@contextlib.contextmanager
def using(n):
    """Train and predict on ``n`` threads inside the block (``None``: no count
    of its own; an enclosing block's still holds).

    The count belongs to the current Python thread and context only (a
    :mod:`contextvars` variable): another thread's fits are not affected.

    >>> from fastnn import threads
    >>> with threads.using(1):
    ...     threads.training_threads()
    1
    """
    n = check_int(n, "n", low=1, high=MAX_THREADS, allow_none=True)
    if n is None:
        yield
        return
    token = _explicit.set(n)
    try:
        yield
    finally:
        _explicit.reset(token)


def usable_cores():
    """The cores this process may run on: its CPU affinity where the OS tells
    it, capped by its cgroup CPU quota (rounded up)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    if quota is not None:
        n = min(n, max(1, math.ceil(quota)))
    return max(1, n)


@functools.lru_cache(maxsize=8)
def cgroup_cpu_quota(root="/sys/fs/cgroup", proc_cgroup="/proc/self/cgroup"):
    """The CPU quota of this process's cgroup in CPUs (``quota / period``; the
    smallest along its path), or None when there is none or it cannot be read.
    Read once per process (each training call asks for the thread count).

    cgroup v2 (``cpu.max``: ``"max 100000"`` or ``"150000 100000"``) and v1
    (``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``, ``-1`` for none)."""
    try:
        with open(proc_cgroup) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    best = None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":  # v2 unified hierarchy
            bases = [root]
            files = ("cpu.max",)
        elif "cpu" in controllers.split(","):
            bases = [os.path.join(root, controllers), os.path.join(root, "cpu"),
                     os.path.join(root, "cpu,cpuacct")]
            files = ("cpu.cfs_quota_us", "cpu.cfs_period_us")
        else:
            continue
        for base in bases:
            q = _quota_along(base, path.strip("/"), files)
            if q is not None:
                best = q if best is None else min(best, q)
                break
    return best


def _quota_along(base, rel, files):
    """The smallest quota from ``base/rel`` up to ``base`` (a container sees its
    own cgroup as the root, so the path may not exist: then the root's)."""
    parts = [p for p in rel.split("/") if p]
    best = None
    seen = False
    for depth in range(len(parts), -1, -1):
        folder = os.path.join(base, *parts[:depth])
        q = _read_quota(folder, files)
        if q is False:
            continue
        seen = True
        if q is not None:
            best = q if best is None else min(best, q)
    return best if seen else None


def _read_quota(folder, files):
    """The quota in ``folder`` (None: unlimited), or False if it has no such file."""
    try:
        if len(files) == 1:
            with open(os.path.join(folder, files[0])) as f:
                fields = f.read().split()
            if not fields or fields[0] == "max":
                return None
            quota, period = int(fields[0]), int(fields[1]) if len(fields) > 1 else 100000
        else:
            with open(os.path.join(folder, files[0])) as f:
                quota = int(f.read().strip())
            with open(os.path.join(folder, files[1])) as f:
                period = int(f.read().strip())
            if quota < 0:
                return None
    except (OSError, ValueError, IndexError):
        return False
    return quota / period if quota > 0 and period > 0 else None


def omp_limit():
    """``OMP_NUM_THREADS`` as a positive count (its first level when it lists
    several), or None when unset or not a positive integer."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if not env:
        return None
    try:
        n = int(env.split(",")[0])
    except ValueError:
        return None
    return n if n >= 1 else None


def parent_limit(pool_limit=None):
    """The smallest of the limits set from outside fastnn (``pool_limit``,
    threadpoolctl's on fastnn's controller, and ``OMP_NUM_THREADS``), or None."""
    limits = [n for n in (pool_limit, omp_limit()) if n is not None]
    return min(limits) if limits else None


def default_threads(ignore_pool_limit=False):
    """The count without an explicit count or fastnn's own setting: the usable
    cores, capped by the parent's limits (threadpoolctl's unless
    ``ignore_pool_limit``)."""
    n = usable_cores()
    cap = parent_limit(None if ignore_pool_limit else _pool_limit)
    return n if cap is None else max(1, min(n, cap))


def training_threads(n=None):
    """Threads for fastnn's training loop and its prediction, in the order of
    the module's docstring: ``n`` (an explicit count), a ``using`` block,
    fastnn's own setting, else :func:`default_threads`.

    The weights do not depend on it, bit for bit. The compiled loop keeps a
    layer phase too small to split on one thread and starts no second thread
    when no phase is big enough; the threshold is measured by the process at
    its first threaded call (a crossover of real training steps on one and
    two threads, ``fastnn._kernels._thread_calibration()``), so a default
    count is not slower than one thread on a machine where sharing a step's
    data between cores costs more than it saves. ``fit`` then times that rule
    against splitting every phase and against one thread on the first
    batches of each network (:mod:`fastnn.training.tuning`) and keeps the
    fastest.
    """
    if n is not None:
        return min(check_int(n, "n_threads", low=1, high=MAX_THREADS), MAX_TRAINING_THREADS)
    for value in (_explicit.get(), get_num_threads()):
        if value is not None:
            return min(value, MAX_TRAINING_THREADS)
    return min(default_threads(), MAX_TRAINING_THREADS)


def split_work(n, n_threads, work):
    """Run ``work(lo, hi)`` on ``n_threads`` contiguous parts of ``range(n)``,
    the first in the calling thread and the others in Python threads (``work``
    releases the GIL for the parallelism: fastnn's compiled kernels and NumPy's
    ufuncs do). With ``n_threads <= 1``, ``work(0, n)``'s own value; else True
    when every part returned a true value. Parts are empty when ``n_threads >
    n``: callers give at most ``n``. An exception in a part (the first one, if
    several) is raised again in the caller, after every started part has
    finished, also when the caller's own part is interrupted.

    >>> parts = []
    >>> split_work(10, 3, lambda lo, hi: parts.append((lo, hi)) or True)
    True
    >>> sorted(parts)
    [(0, 3), (3, 6), (6, 10)]
    """
    if n_threads <= 1:
        return work(0, n)
    bounds = [n * i // n_threads for i in range(n_threads + 1)]
    results = [False] * n_threads
    errors = []

    def run(i):
        try:
            results[i] = work(bounds[i], bounds[i + 1])
        except BaseException as exc:  # e.g. MemoryError: re-raised in the caller's thread
            errors.append(exc)

    helpers = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(1, n_threads)]
    try:
        for t in helpers:
            t.start()
        run(0)
    finally:
        for t in helpers:
            if t.ident is not None:  # started
                t.join()
    if errors:
        raise errors[0]
    return all(results)


def configured_threads():
    """The count to apply to BLAS while fastnn runs: an explicit count or
    fastnn's own setting, else None (BLAS keeps its default)."""
    n = _explicit.get()
    return n if n is not None else get_num_threads()


@contextlib.contextmanager
def limit():
    """Apply the configured thread count to BLAS for the duration of a block.

    The BLAS setting is process-wide, so overlapping blocks (fastnn called from
    several threads) share one limit: the first to enter applies it, the last
    to leave restores the original. (Nested per-block save/restore would
    interleave across threads and leave BLAS at the limit for good.)
    """
    n = configured_threads()
    if n is None:
        yield
        return
    global _controller, _active, _limiter
    with _lock:
        if _active == 0:
            if _controller is None:
                from threadpoolctl import ThreadpoolController
                _controller = ThreadpoolController()
            _limiter = _BlasCap(_controller, n)
            _release_control()
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                _limiter.restore_original_limits()
                _limiter = None
                _release_control()


class _BlasCap:
    """Every BLAS library capped at ``n`` threads, never raised (a library on
    fewer, a caller's ``threadpool_limits(1)``, keeps its count), library by
    library: two can share a name prefix (NumPy's and SciPy's OpenBLAS)."""

    def __init__(self, controller, n):
        self.saved = [(lib, lib.num_threads)
                      for lib in controller.select(user_api="blas").lib_controllers]
        for lib, k in self.saved:
            if n < k:
                lib.set_num_threads(n)

    def restore_original_limits(self):
        for lib, k in self.saved:
            if lib.num_threads != k:
                lib.set_num_threads(k)


def _after_fork_in_child():
    """A forked child has only the thread that forked: no other can be inside
    :func:`limit` there, so its count starts at 0 and BLAS gets the original
    limits back (no thread of the child would restore them); the lock is
    new (the parent's holder, if any, does not exist here)."""
    global _lock, _active, _limiter
    _lock = threading.Lock()
    limiter, _active, _limiter = _limiter, 0, None
    if limiter is not None:
        try:
            limiter.restore_original_limits()
            _release_control()
        except Exception:  # never fail the fork; BLAS keeps the limit then
            pass


if hasattr(os, "register_at_fork"):
    # the one side effect of importing this module: a fork while another thread
    # holds the lock (a fit or predict under `using(n)`) would leave the child's
    # copy held for good, and its first fastnn call would hang
    os.register_at_fork(before=lambda: _lock.acquire(),
                        after_in_parent=lambda: _lock.release(),
                        after_in_child=_after_fork_in_child)


def _release_control():
    """Let go of OpenBLAS after setting its limit.

    Recent threadpoolctl lets only the thread that set an OpenBLAS limit change
    it again until that thread lets go (which ``with`` does on exit); fastnn's
    set and restore may run in different threads, so it lets go each time.
    """
    import threadpoolctl
    controller = getattr(threadpoolctl, "OpenBLASController", None)
    clear = getattr(controller, "clear_controlling_thread", None)
    if clear is not None:
        clear()


# --------------------------------------------------------------------------
# threadpoolctl: fastnn's training threads as a controller of their own


def _register_with_threadpoolctl():
    """Register :class:`FastnnController` (threadpoolctl >= 3.4 has
    ``register``); the library it matches is fastnn's ``_fastnn_threads``
    extension, loaded with the package."""
    import threadpoolctl
    from . import _fastnn_threads  # noqa: F401  (the library threadpoolctl finds)

    class FastnnController(threadpoolctl.LibController):
        """threadpoolctl's view of fastnn's training threads: ``num_threads`` is
        what a fit would use now (without an explicit count or fastnn's own
        setting); ``threadpool_limits(n)`` caps it at ``n``."""
        user_api = "fastnn"
        internal_api = "fastnn"
        filename_prefixes = ("_fastnn_threads",)

        def get_num_threads(self):
            return default_threads()

        def set_num_threads(self, num_threads):
            global _pool_limit
            # restoring the value read on entry (the default count) lifts the limit
            _pool_limit = None if num_threads == default_threads(ignore_pool_limit=True) else int(num_threads)

        def get_version(self):
            return __version__

    threadpoolctl.register(FastnnController)
    return FastnnController


try:
    _register_with_threadpoolctl()
except (ImportError, AttributeError):  # threadpoolctl < 3.4 has no register
    pass
