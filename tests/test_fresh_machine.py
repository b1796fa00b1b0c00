"""A user's fresh machine: MNIST only in the user cache, no FASTNN_DATA.

The README's two commands (``fastnn train --config best`` and
``pytest``) must find the data where fastnn keeps it. These tests build such a
machine in a subprocess: a temporary ``XDG_CACHE_HOME`` (and ``HOME``) whose
``fastnn/mnist`` folder holds links to the four IDX files, ``FASTNN_DATA``
unset, and no network proxy needed (the files are there, so nothing is
downloaded). Then the loader, ``fastnn train`` and the test suite's own
``mnist_path`` fixture all have to find the files in the cache.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fastnn.datasets import _FILES, find_dataset

ROOT = Path(__file__).resolve().parents[1]
#: the console script beside this interpreter (a virtual environment), else on
#: PATH (an install with ``pip --target`` or ``--user``)
FASTNN = (Path(sys.executable).with_name("fastnn")
          if Path(sys.executable).with_name("fastnn").is_file() else shutil.which("fastnn"))


@pytest.fixture(scope="module")
def cache_only_env(mnist_path, tmp_path_factory):
    """Environment of a machine whose only copy of MNIST is in the user cache."""
    home = tmp_path_factory.mktemp("home")
    cache = home / "xdg-cache"
    folder = cache / "fastnn" / "mnist"
    folder.mkdir(parents=True)
    for stem in _FILES.values():
        for name in (stem, stem + ".gz"):
            if (Path(mnist_path) / name).is_file():
                (folder / name).symlink_to((Path(mnist_path) / name).resolve())
                break
    env = {k: v for k, v in os.environ.items()
           if k not in ("FASTNN_DATA", "PYTEST_ADDOPTS", "PYTEST_CURRENT_TEST")}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(cache), MPLBACKEND="Agg",
               FASTNN_NUM_THREADS="1")
    return env, folder


def _run(args, env, cwd):
    result = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_loader_finds_the_cache(cache_only_env, tmp_path):
    env, folder = cache_only_env
    out = _run([sys.executable, "-c",
                "from fastnn.datasets import find_dataset, load_mnist\n"
                "print(find_dataset('mnist', download=False))\n"
                "(X, y), (Xt, yt) = load_mnist(download=False)\n"
                "print(X.shape, Xt.shape)"], env, tmp_path)
    assert out.splitlines() == [str(folder), "(60000, 784) (10000, 784)"]


def test_train_command_finds_the_cache(cache_only_env, tmp_path):
    """The README's first command, cut to one epoch, in a folder of its own (the
    config by name: it ships with the package)."""
    env, _ = cache_only_env
    if FASTNN is None:
        pytest.skip("no fastnn console script beside the interpreter or on PATH")
    out = _run([str(FASTNN), "train", "--config", "best",
                "--epochs", "1", "--quiet", "--out", str(tmp_path / "run")], env, tmp_path)
    assert "test accuracy" in out
    assert (tmp_path / "run" / "model.npz").is_file()


def test_suite_fixture_finds_the_cache(cache_only_env, tmp_path):
    """The README's second command: the suite's mnist_path fixture finds the
    cache (one real-data test of the suite, run by a nested pytest)."""
    env, folder = cache_only_env
    probe = tmp_path / "test_probe.py"
    probe.write_text("def test_probe(mnist_path):\n"
                     f"    assert str(mnist_path) == {str(folder)!r}\n")
    # the repository's root conftest.py (where the fixture lives) loaded as a plugin
    # (before any PYTHONPATH of the caller's, which may be where fastnn is installed)
    env = {**env, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)}
    out = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "conftest",
                "--rootdir", str(tmp_path), str(probe)], env, tmp_path)
    assert "1 passed" in out


def test_fixture_and_loader_agree(mnist_path):
    assert Path(mnist_path) == find_dataset("mnist")
