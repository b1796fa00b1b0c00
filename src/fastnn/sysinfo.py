"""What fastnn runs on, for bug reports and benchmark logs: the versions, how
the compiled core was built, the micro-kernels in use, the cache sizes its
blocking assumes and where they came from, and the thread count a fit would
use (``fastnn info`` on the command line).

>>> info = config_info()
>>> info["kernels"] in info["kernels_usable"]
True
"""
from __future__ import annotations

import json
import os
import platform
import sys
from typing import Any, TextIO

import numpy as np

from . import _kernels, threads
from ._version import __version__


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo's ``model name``; elsewhere
    what :mod:`platform` knows)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


#: The environment variables that change what fastnn or a BLAS beside it does.
ENV_PREFIXES = ("FASTNN_", "OMP_", "OPENBLAS_", "MKL_")


def environment() -> dict[str, str]:
    """The variables set whose names start with :data:`ENV_PREFIXES`, sorted."""
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith(ENV_PREFIXES)}


def config_info() -> dict[str, Any]:
    """The configuration as a JSON-able dict: ``fastnn``, ``python``,
    ``platform``, ``cpu`` (:func:`cpu_model`), ``numpy``, ``scipy`` (versions), ``build`` (compiler, whether
    the SIMD kernels and the cloned passes were built, whether training can
    use threads; ``debug``: bounds checks on), ``kernels`` (the instruction
    set fastnn trains on: its best, or ``FASTNN_ISA``'s) and
    ``kernels_usable``, ``caches`` (``l1d`` and ``l2`` in bytes and each one's
    ``source``: sysfs, sysconf, default or set), ``threads`` (``usable_cores``,
    ``setting``: ``set_num_threads``/``FASTNN_NUM_THREADS`` or None,
    ``training``: what a fit here would use) and ``env`` (:func:`environment`)."""
    import scipy

    l1, l2 = _kernels._cache_sizes()
    src1, src2 = _kernels._cache_sources()
    return {
        "fastnn": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "build": {**_kernels._build_info(), "debug": bool(_kernels.DEBUG_BUILD)},
        "kernels": _kernels._kernel_isa(),
        "kernels_usable": [e["isa"] for e in _kernels._ukernels() if e["usable"]],
        "caches": {"l1d": int(l1), "l2": int(l2), "source": {"l1d": src1, "l2": src2}},
        "threads": {"usable_cores": threads.usable_cores(),
                    "setting": threads.get_num_threads(),
                    "training": threads.training_threads()},
        "env": environment(),
    }


def format_config(info: dict[str, Any]) -> str:
    """:func:`config_info` as lines of text."""
    b, c, t = info["build"], info["caches"], info["threads"]
    kib = lambda n: f"{n // 1024} KiB" if n < 1 << 20 else f"{n / (1 << 20):g} MiB"  # noqa: E731
    lines = [
        f"fastnn {info['fastnn']}: Python {info['python']}, NumPy {info['numpy']}, "
        f"SciPy {info['scipy']}",
        f"platform: {info['platform']}; CPU: {info['cpu']}",
        f"build: {b['compiler']}; SIMD kernels {'built' if b['simd'] else 'not built'}"
        f"{', cloned passes' if b['clones'] else ''}"
        f"{', threads' if b['threads'] else ', no threads'}"
        f"{', debug (bounds checks)' if b['debug'] else ''}",
        f"kernels: {info['kernels']} (this CPU runs {', '.join(info['kernels_usable'])})",
        f"caches: L1d {kib(c['l1d'])} ({c['source']['l1d']}), L2 {kib(c['l2'])} "
        f"({c['source']['l2']}) a core",
        f"threads: {t['training']} for a fit ({t['usable_cores']} usable cores"
        + (f", set to {t['setting']}" if t["setting"] is not None else "") + ")",
    ]
    if info["env"]:
        lines.append("env: " + " ".join(f"{k}={v}" for k, v in info["env"].items()))
    return "\n".join(lines)


def show_config(file: TextIO | None = None, *, as_json: bool = False) -> None:
    """Print :func:`config_info` (as text, or JSON with ``as_json``) to
    ``file`` (standard output by default): paste it into a bug report."""
    info = config_info()
    text = json.dumps(info, indent=2) if as_json else format_config(info)
    print(text, file=file if file is not None else sys.stdout)
