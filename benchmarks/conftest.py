"""Fixtures and the ratio report of the benchmark suite.

Pairing: every benchmark sets ``benchmark.group`` (one group per kernel,
shape, dtype and batch size, or per epoch batch size) and
``benchmark.extra_info["impl"]``: ``"fastnn"`` (compiled), ``"numpy"`` (the
twin in :mod:`fastnn.reference` / the pure-NumPy trainer), ``"jax"`` and
``"torch"`` (the peers, epochs only) or ``"floor"`` / ``"floor_scipy"`` (the
GEMM-only epoch with NumPy's / SciPy's BLAS). After pytest-benchmark's
tables, the terminal summary prints per group ``other / fastnn`` (speed-up
of the compiled code) and, for the epochs, ``fastnn / floor`` (how far the
trainer is from the GEMM bound), from both the min and the median times. ``--benchmark-json`` files get the
same table under the key ``"fastnn_ratios"``.
"""
import os

import numpy as np
import pytest


class _Untimed:
    """Stand-in for pytest-benchmark's fixture when the plugin is absent
    (not installed, or ``-p no:benchmark``): runs the function once."""

    disabled = True
    enabled = False

    def __init__(self):
        self.group = None
        self.extra_info = {}

    def __call__(self, fn, *args, **kwargs):
        return fn(*args, **kwargs)

    def pedantic(self, target, args=(), kwargs=None, setup=None, teardown=None, rounds=1,
                 warmup_rounds=0, iterations=1):
        if setup is not None:
            made = setup()
            if made:
                args, kwargs = made
        result = target(*args, **(kwargs or {}))
        if teardown is not None:
            teardown(*args, **(kwargs or {}))
        return result


class _UntimedPlugin:
    @pytest.fixture
    def benchmark(self):
        return _Untimed()


def pytest_configure(config):
    if not config.pluginmanager.hasplugin("benchmark"):
        config.pluginmanager.register(_UntimedPlugin(), "fastnn-untimed-benchmark")


# ---------------------------------------------------------------------------
# Threads
# ---------------------------------------------------------------------------

def bench_threads():
    """``$FASTNN_BENCH_THREADS``: BLAS threads for the whole suite (unset: BLAS's default)."""
    value = os.environ.get("FASTNN_BENCH_THREADS", "").strip()
    if not value:
        return None
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise pytest.UsageError(f"FASTNN_BENCH_THREADS must be a positive integer, got {value!r}")
    return n


@pytest.fixture(scope="session", autouse=True)
def _blas_threads():
    """Every BLAS (NumPy's, SciPy's: fastnn's) on FASTNN_BENCH_THREADS threads, if set.

    On a shared or loaded machine, multi-threaded OpenBLAS can slow down by an
    order of magnitude on small GEMMs (its threads spin for cores that are
    busy elsewhere); ``FASTNN_BENCH_THREADS=1`` gives stable comparisons there.
    """
    n = bench_threads()
    if n is None:
        yield None
        return
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=n, user_api="blas"):
        yield n


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config, machine_info):
    from fastnn_bench.machine import machine_info as fastnn_machine_info
    info = fastnn_machine_info()
    info["bench_threads"] = bench_threads()
    machine_info["fastnn"] = info


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def mnist_train(mnist_path):
    """The 60,000 MNIST training images (minmax float32) and labels (intp)."""
    from fastnn_bench.trainers import load_data
    return load_data(mnist_path)


@pytest.fixture(scope="session")
def epoch_losses():
    """Final losses of the epoch benchmarks, keyed (trainer, batch, n_samples),
    so that each trainer is compared with the other without running it twice."""
    return {}


@pytest.fixture
def bench_rounds(request):
    """Rounds of the epoch benchmarks: --benchmark-min-rounds (3 by default, see
    the root conftest.py)."""
    try:
        return max(1, int(request.config.getoption("benchmark_min_rounds")))
    except (ValueError, TypeError):
        return 3


# ---------------------------------------------------------------------------
# Ratios
# ---------------------------------------------------------------------------

#: Per group, ``other / fastnn`` for these (speed-up of fastnn over them) ...
PEERS = ("numpy", "jax", "torch")
#: ... and for these variants of fastnn's own epoch (bench_epoch.py's optimizer
#: group, where ``fastnn`` is SGD with momentum): their cost relative to it ...
VARIANTS = ("nesterov", "adam", "dropout", "weights")
#: ... and ``fastnn / floor`` for these (how far fastnn is from the GEMM bound).
FLOORS = ("floor", "floor_scipy")


def ratio_rows(benchmarks):
    """Per group: the min and median times of each impl and their ratios to fastnn."""
    groups = {}
    for bench in benchmarks:
        if not bench or getattr(bench, "has_error", False):
            continue
        impl = (bench.extra_info or {}).get("impl")
        if impl is None or bench.group is None:
            continue
        groups.setdefault(bench.group, {})[impl] = (bench.stats.min, bench.stats.median)
    rows = []
    for group in sorted(groups, key=_group_key):
        g = groups[group]
        if "fastnn" not in g:
            continue
        fast = g["fastnn"]
        row = {"group": group, "fastnn_min": fast[0], "fastnn_median": fast[1]}
        for peer in PEERS + VARIANTS:
            if peer in g:
                row.update({f"{peer}_min": g[peer][0], f"{peer}_median": g[peer][1],
                            f"{peer}_over_fastnn_min": g[peer][0] / fast[0],
                            f"{peer}_over_fastnn_median": g[peer][1] / fast[1]})
        for floor in FLOORS:
            if floor in g:
                row.update({f"{floor}_min": g[floor][0], f"{floor}_median": g[floor][1],
                            f"fastnn_over_{floor}_min": fast[0] / g[floor][0],
                            f"fastnn_over_{floor}_median": fast[1] / g[floor][1]})
        rows.append(row)
    return rows


def _group_key(group):
    """Sort groups by kernel, shape, dtype, then batch size numerically."""
    parts = group.split()
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts]


def _fmt(t):
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if t >= scale:
            return f"{t / scale:7.2f} {unit}"
    return f"{t * 1e9:7.0f} ns"


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_json(config, benchmarks, output_json):
    output_json["fastnn_ratios"] = ratio_rows(benchmarks)


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    session = getattr(config, "_benchmarksession", None)
    if session is None or session.disabled:
        return
    rows = ratio_rows(session.benchmarks)
    if not rows:
        return
    tr = terminalreporter
    width = max(len(r["group"]) for r in rows)
    cols = ([(f"{p}/fastnn", f"{p}_over_fastnn") for p in PEERS + VARIANTS]
            + [(f"fastnn/{f}", f"fastnn_over_{f}") for f in FLOORS])
    cols = [(title, key) for title, key in cols if any(f"{key}_min" in r for r in rows)]
    tr.write_sep("-", "fastnn speed-ups: other/fastnn and fastnn/floor (min | median)")
    tr.write_line(f"{'group':<{width}}  {'fastnn min':>10}  {'numpy min':>10}  "
                  + "  ".join(f"{title:>18}" for title, _ in cols))
    for r in rows:
        numpy_min = _fmt(r["numpy_min"]) if "numpy_min" in r else ""
        ratios = [(f"{r[key + '_min']:7.2f} | {r[key + '_median']:7.2f}"
                   if f"{key}_min" in r else "") for _, key in cols]
        tr.write_line(f"{r['group']:<{width}}  {_fmt(r['fastnn_min']):>10}  {numpy_min:>10}  "
                      + "  ".join(f"{x:>18}" for x in ratios).rstrip())
    speedups = [r["numpy_over_fastnn_min"] for r in rows if "numpy_min" in r]
    if speedups:
        geo = float(np.exp(np.mean(np.log(speedups))))
        tr.write_line(f"geometric mean of numpy/fastnn (min) over {len(speedups)} groups: "
                      f"{geo:.2f}x; above 1: fastnn is faster.")
