"""How many threads fastnn's BLAS calls use.

fastnn's kernels are single-threaded loops around BLAS GEMMs; the GEMMs are
the only multi-threaded part. By default fastnn leaves BLAS at its own
default (one thread per core). Set a number with :func:`set_num_threads` or
the environment variable ``FASTNN_NUM_THREADS``; it applies to every BLAS
library loaded in the process (NumPy's and SciPy's) while fastnn trains or
predicts, through threadpoolctl, and is restored afterwards. Results do not
depend on the thread count beyond float rounding.
"""
import contextlib
import os

from ._validation import check_int

_num_threads = None
_controller = None


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


@contextlib.contextmanager
def limit():
    """Apply the configured thread count to BLAS for the duration of a block."""
    n = get_num_threads()
    if n is None:
        yield
        return
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController
        _controller = ThreadpoolController()
    with _controller.limit(limits=n, user_api="blas"):
        yield
