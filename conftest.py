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

import pytest


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
def pytest_addoption(parser):
    parser.addoption("--bench-all", action="store_true", default=False,
                     help="benchmarks: the long sweep (every network x batch with the peers, "
                          "and the wide networks [784, 1024, 1024, 10] and [784, 2048, 2048, 10] "
                          "at batches 32, 128 and 512)")


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
    """The folder of the real MNIST IDX files, found exactly as fastnn finds them
    (:func:`fastnn.datasets.find_dataset`): ``$FASTNN_DATA``, else the user cache
    ``~/.cache/fastnn/mnist`` (``$XDG_CACHE_HOME`` respected), downloading and
    verifying missing files there when online. Shared by tests/ and benchmarks/.

    Data that cannot be found or downloaded fails the tests that need it (with
    the loader's message: where to put the files), it never skips them: a
    green suite always means the real-data tests ran. Offline, point
    ``FASTNN_DATA`` at a folder with the files (``../shared/data/mnist`` on
    this project's machines)."""
    from fastnn.datasets import DatasetNotFoundError, find_dataset
    try:
        return find_dataset("mnist")
    except DatasetNotFoundError as exc:
        pytest.fail(f"MNIST not found: {exc}", pytrace=False)
