"""How many threads fastnn uses.

Training runs on fastnn's own kernels and its own threads (POSIX threads
started per compiled call): each step is split across the threads, and BLAS
is not called. Prediction on many rows calls BLAS. Set a number with :func:`set_num_threads` or the environment variable
``FASTNN_NUM_THREADS``; by default fastnn trains on one thread per usable
core (see :func:`training_threads`) and leaves BLAS at its own default. A
configured number also applies to every BLAS library loaded in the process (NumPy's and SciPy's) while fastnn trains
or predicts, through threadpoolctl, and is restored afterwards. Training
results do not depend on the thread count, bit for bit; BLAS results only
up to float rounding.
"""
import contextlib
import os
import threading

from ._validation import check_int

_num_threads = None
_controller = None
_lock = threading.Lock()
_active = 0  # blocks inside limit(), across threads
_limiter = None


def set_num_threads(n):
    """Use ``n`` BLAS threads inside fastnn (``None``: BLAS's default)."""
    global _num_threads
    _num_threads = check_int(n, "n", low=1, allow_none=True)


def get_num_threads():
    """The configured thread count, or None for BLAS's default."""
    if _num_threads is not None:
        return _num_threads
    env = os.environ.get("FASTNN_NUM_THREADS", "").strip()
    if not env:
        return None
    try:
        return check_int(int(env), "FASTNN_NUM_THREADS", low=1)
    except ValueError:
        raise ValueError(f"FASTNN_NUM_THREADS must be a positive integer, got {env!r}") from None


def usable_cores():
    """The cores this process may run on (its CPU affinity where the OS tells it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def training_threads():
    """Threads for fastnn's training loop: the configured count, else one per
    usable core.

    The weights do not depend on it, bit for bit. The compiled loop keeps a
    layer phase too small to split on one thread (``FNN_PAR_MIN_MACS`` in
    _gemm.h) and starts no second thread when no phase reaches it, so small
    networks and small batches (batch 1) run as on one thread. Measured on 2
    vCPUs of an AMD EPYC (Zen 5, KVM), otherwise idle, one MNIST epoch: two
    threads took 0.54-0.65x the time of one for [784, 128, 10] at batches
    32-512 and [784, 800, 10] at batches 10-512, 0.89x for [784, 128, 10] and
    0.58x for [784, 256, 256, 256, 10] at batch 10. On a machine whose other
    cores are busy a thread that waits for a core stalls every step: set
    ``FASTNN_NUM_THREADS=1`` (or :func:`set_num_threads`) there.
    """
    n = get_num_threads()
    return usable_cores() if n is None else n


@contextlib.contextmanager
def limit():
    """Apply the configured thread count to BLAS for the duration of a block.

    The BLAS setting is process-wide, so overlapping blocks (fastnn called from
    several threads) share one limit: the first to enter applies it, the last
    to leave restores the original. (Nested per-block save/restore would
    interleave across threads and leave BLAS at the limit for good.)
    """
    n = get_num_threads()
    if n is None:
        yield
        return
    global _controller, _active, _limiter
    with _lock:
        if _active == 0:
            if _controller is None:
                from threadpoolctl import ThreadpoolController
                _controller = ThreadpoolController()
            _limiter = _controller.limit(limits=n, user_api="blas")
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
