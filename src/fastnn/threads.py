"""How many threads fastnn uses.

Training runs on fastnn's own kernels and its own thread pool (OpenMP): each
step is split across the threads, and BLAS is not called (batches of
``fastnn._kernels._BLAS_MIN_BATCH`` rows or more go to BLAS and its threads
instead). Prediction on many rows calls BLAS. Set a number with
:func:`set_num_threads` or the environment variable ``FASTNN_NUM_THREADS``;
by default fastnn trains on one thread (see :func:`training_threads`) and
leaves BLAS at its own default. A configured number also applies to every
BLAS library loaded in the process (NumPy's and SciPy's) while fastnn trains
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


def training_threads():
    """Threads for fastnn's training loop: the configured count, else 1.

    The weights do not depend on it, and the compiled loop keeps a layer too
    small to split on one thread (``FNN_PAR_MIN_MACS`` in _gemm.h), starting
    no second thread when no layer reaches it. One thread is the default
    because a second was slower on the machine fastnn is measured on (2 vCPUs
    of an AMD EPYC, Zen 5, KVM, shared with other jobs): a one-epoch ``fit``
    of [784, 128, 10] at batch 128 took 0.44 s on two threads against 0.19 s
    on one (see the README, "Threads").
    """
    n = get_num_threads()
    return 1 if n is None else n


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
