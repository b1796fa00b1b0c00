"""The measured single-precision FMA peak of the cores in use (``fastnn bench``'s roofline).

A register-only loop of fused multiply-adds (``_peak_loops.h``: AVX-512F,
AVX2 + FMA, NEON or a portable variant, chosen at run time) runs on ``threads``
threads at once, each with the GIL released, for about ``seconds``; the
best of ``repeats`` gives the GFLOP/s that no kernel on those cores can
exceed (2 floating-point operations per multiply-add per vector lane).
"""
import threading
import time

from fastnn.threads import usable_cores

cdef extern from "_peak_loops.h" nogil:
    double fastnn_fma_loop(long long iters)
    long long fastnn_fma_flops_per_iter()
    const char *fastnn_fma_isa()


def isa():
    """The instruction set of the loop chosen for this CPU: ``"avx512f"``,
    ``"avx2-fma"``, ``"neon"`` (aarch64) or ``"generic"``."""
    return fastnn_fma_isa().decode()


def flops_per_iteration():
    """Floating-point operations of one iteration of the loop."""
    return int(fastnn_fma_flops_per_iter())


def fma_loop(long long iters):
    """Run ``iters`` iterations of the loop without the GIL; a checksum of its accumulators."""
    cdef double checksum
    with nogil:
        checksum = fastnn_fma_loop(iters)
    return checksum


def peak_gflops(threads=None, seconds=0.2, repeats=3):
    """GFLOP/s of the FMA loop on ``threads`` threads at once (default: the usable cores).

    Each repeat starts the threads together and times until the last one
    ends; the best repeat counts. ``seconds`` is the target length of one
    repeat (the loop is calibrated on one thread first).
    """
    if threads is None:
        threads = usable_cores()
    threads = int(threads)
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    seconds, repeats = float(seconds), int(repeats)
    if not seconds > 0 or repeats < 1:
        raise ValueError(f"seconds must be > 0 and repeats >= 1, got {seconds}, {repeats}")
    flops = flops_per_iteration()  # selects the variant, under the GIL
    iters = 1024
    while True:  # calibrate on this thread: about a tenth of the target time
        t0 = time.perf_counter()
        fma_loop(iters)
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds / 10 or iters >= 1 << 40:
            break
        iters *= 2
    iters = max(1024, int(iters * seconds / max(elapsed, 1e-9)))
    best = None
    for _ in range(repeats):
        start = threading.Barrier(threads + 1)
        workers = [threading.Thread(target=lambda: (start.wait(), fma_loop(iters)), daemon=True)
                   for _ in range(threads)]
        for w in workers:
            w.start()
        start.wait()
        t0 = time.perf_counter()
        for w in workers:
            w.join()
        elapsed = time.perf_counter() - t0
        best = elapsed if best is None else min(best, elapsed)
    return threads * iters * flops / best / 1e9
