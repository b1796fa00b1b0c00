"""Repository-wide pytest set-up: benchmarks are timed only when asked for.

``pytest`` (tests/ and benchmarks/, see ``testpaths``) runs every benchmark
once, untimed, as a correctness test: this file turns on pytest-benchmark's
``--benchmark-disable`` unless the command line asks for timing with
``--benchmark-only``, ``--benchmark-enable``, ``--benchmark-json``,
``--benchmark-save`` or ``--benchmark-autosave``. ``--benchmark-skip`` and an
explicit ``--benchmark-disable`` behave as usual.

When timing, the defaults are ``--benchmark-max-time=0.5`` and
``--benchmark-min-rounds=3`` (pytest-benchmark's own are 1.0 and 5) so that
``pytest --benchmark-only`` finishes in a few minutes on two cores; either
option given on the command line (or in ``addopts``/``PYTEST_ADDOPTS``) wins.
"""
import os
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent

#: Options that mean "time the benchmarks".
TIMING_FLAGS = ("--benchmark-only", "--benchmark-enable", "--benchmark-json",
                "--benchmark-save", "--benchmark-autosave")
#: Defaults applied unless the option is given.
TIMING_DEFAULTS = {"--benchmark-max-time": ("benchmark_max_time", "0.5"),
                   "--benchmark-min-rounds": ("benchmark_min_rounds", 3)}


def _given_args(config):
    args = [str(a) for a in config.invocation_params.args]
    args += shlex.split(os.environ.get("PYTEST_ADDOPTS", ""))
    try:
        args += [str(a) for a in config.getini("addopts")]
    except (ValueError, KeyError):
        pass
    return args


def _given(args, flag):
    return any(a == flag or a.startswith(flag + "=") for a in args)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    # pytest-benchmark builds its session in a trylast pytest_configure, from
    # config.option: what is set here is what it sees.
    if not hasattr(config.option, "benchmark_disable"):
        return  # pytest-benchmark is not installed (or disabled with -p no:benchmark)
    args = _given_args(config)
    timing = any(_given(args, flag) for flag in TIMING_FLAGS)
    if not timing and not config.option.benchmark_disable:
        config.option.benchmark_disable = True
    for flag, (dest, value) in TIMING_DEFAULTS.items():
        if not _given(args, flag):
            setattr(config.option, dest, value)


@pytest.fixture(scope="session")
def mnist_path():
    """The folder of the real MNIST IDX files: $FASTNN_DATA, else ../shared/data/mnist.
    Shared by tests/ and benchmarks/; a missing folder fails, it is never skipped."""
    env = os.environ.get("FASTNN_DATA")
    path = Path(env) if env else ROOT.parent / "shared" / "data" / "mnist"
    if not (path / "train-images-idx3-ubyte.gz").exists() and \
            not (path / "train-images-idx3-ubyte").exists():
        pytest.fail(f"MNIST files not found in {path}; set FASTNN_DATA to their folder")
    return path
