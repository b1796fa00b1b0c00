"""The machine under ``fastnn bench``: its description (CPU, cores, libraries,
BLAS), the measured FMA peak of its cores (the roofline), and the thread
limit every trainer runs under."""
import contextlib
import os
import platform
import sys

import numpy as np

import fastnn
from fastnn import _kernels
from fastnn import threads as fastnn_threads
from fastnn.sysinfo import cpu_model as _cpu_model  # one reader of the CPU's name
from fastnn.sysinfo import environment


def machine_info():
    """CPU, cores, platform, library versions and the BLAS libraries loaded."""
    import scipy

    from fastnn import kernels  # noqa: F401  (loads SciPy's BLAS)
    info = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": fastnn_threads.usable_cores(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "fastnn": fastnn.__version__,
        "fastnn_threads": fastnn_threads.training_threads(),  # a fit's now (--threads too)
        # the micro-kernels fastnn trains on (its best for this CPU, or FASTNN_ISA's)
        "fastnn_kernels": _kernels._kernel_isa(),
    }
    env = environment()
    if env:
        info["env"] = env
    try:
        from threadpoolctl import threadpool_info
        info["blas"] = [
            {k: lib.get(k) for k in ("user_api", "internal_api", "version", "num_threads",
                                     "architecture", "threading_layer")}
            | {"library": "/".join((lib.get("filepath") or "").split(os.sep)[-2:])}
            for lib in threadpool_info()]
        for lib in info["blas"]:
            if lib["user_api"] == "fastnn":
                # threadpoolctl reads fastnn's default; a run's --threads is a
                # using() block (fastnn.threads), which the default ignores
                lib["num_threads"] = fastnn_threads.training_threads()
    except Exception as exc:  # threadpoolctl is a dependency, but never fail a report on it
        info["blas"] = f"unavailable: {exc}"
    return info


def format_machine(info):
    lines = [f"machine: {info['cpu']}, {info['cores']} cores"
             + f" ({info['usable_cores']} usable)",
             f"         {info['platform']}, Python {info['python']}, NumPy {info['numpy']}, "
             f"SciPy {info['scipy']}, fastnn {info['fastnn']}"
             + (f" ({info['fastnn_kernels']} kernels)" if info.get("fastnn_kernels") else "")]
    for extra in ("jax", "torch", "sklearn"):
        if extra in info:
            lines.append(f"         {extra} {info[extra]}")
    blas = info.get("blas")
    if isinstance(blas, list):
        for lib in blas:
            lines.append(f"  {lib['user_api']}: {lib['internal_api']} {lib['version'] or ''} "
                         f"({lib['library']}), {lib['num_threads']} threads"
                         + (f", {lib['architecture']}" if lib.get("architecture") else ""))
    else:
        lines.append(f"  blas: {blas}")
    if info.get("env"):
        lines.append("  env: " + " ".join(f"{k}={v}" for k, v in sorted(info["env"].items())))
    return lines



@contextlib.contextmanager
def thread_limit(n):
    """Every BLAS (and torch) in the process on ``n`` threads, fastnn included."""
    if n is None:
        yield
        return
    from threadpoolctl import threadpool_limits
    torch = sys.modules.get("torch")  # only if already imported: never import it here
    torch_threads = None
    if torch is not None:
        torch_threads = torch.get_num_threads()
        torch.set_num_threads(n)
    try:
        with fastnn_threads.using(n), threadpool_limits(limits=n, user_api="blas"):
            yield
    finally:
        if torch is not None and torch_threads is not None:
            torch.set_num_threads(torch_threads)


def peak_probe():
    """The compiled FMA-peak probe, :mod:`fastnn_bench._peak`; ImportError saying
    how to build it when this harness runs from a checkout without it."""
    try:
        from . import _peak
    except ImportError:
        raise ImportError("the FMA-peak probe (fastnn_bench._peak, compiled) is not built: "
                          "pip install ./benchmarks from fastnn's repository, or pass --no-peak"
                          ) from None
    return _peak


def measure_peak(threads):
    """The single-precision FMA peak on ``threads`` threads and on one, in GFLOP/s."""
    _peak = peak_probe()
    n = threads if threads is not None else fastnn_threads.usable_cores()
    return {"gflops": _peak.peak_gflops(n), "threads": n,
            "gflops_1thread": _peak.peak_gflops(1), "isa": _peak.isa()}
