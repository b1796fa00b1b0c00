"""fastnn's C core beyond the compiler that built the extension.

tests/c/core_driver.c trains a small network with the core's own training
loop (no Python) on every kernel variant the CPU runs, on 1 and 2 threads, and
exits 0 when the weights are finite and the same bits on both, and when a
diverging run stops at the same batch on both and says so. Here it is
compiled as standard C11 with GNU extensions refused (``-std=c11
-pedantic-errors``) and the portable path selected (``FASTNN_PORTABLE_C``:
no attribute, builtin, vector type or ``__atomic``; C11 atomics), the way a
compiler without GNU C (MSVC) sees the core (the GNU C build is the
extension's own). Skipped where no C compiler is on PATH (an installed wheel).
"""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import fastnn

HEADERS = Path(fastnn.__file__).resolve().parent
DRIVER = Path(__file__).resolve().parent / "c" / "core_driver.c"
CC = os.environ.get("CC", "cc").split()[0]


def _have_compiler():
    """A C compiler on PATH that answers --version (CC=false, or none: no)."""
    if os.name != "posix" or shutil.which(CC) is None:
        return False
    try:
        return subprocess.run([CC, "--version"], capture_output=True, timeout=60).returncode == 0
    except OSError:
        return False


@pytest.mark.skipif(not _have_compiler(), reason="no C compiler on PATH")
def test_portable_core_compiles_as_c11_and_trains(tmp_path):
    exe = tmp_path / "core_driver"
    # _GNU_SOURCE: the POSIX declarations of <time.h> etc. (not a language extension)
    flags = ["-O0", "-ffp-contract=off", "-pthread", f"-I{HEADERS}", "-std=c11",
             "-pedantic-errors", "-Wall", "-Werror", "-Wno-unused-function", "-D_GNU_SOURCE",
             "-DFASTNN_PORTABLE_C"]
    build = subprocess.run([CC, *flags, str(DRIVER), "-o", str(exe), "-lm"],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert "simd built: 0" in lines[0] and {ln.split()[0] for ln in lines[1:]} == {"generic"}
    assert "same bits: yes" in lines[1]
    assert "diverged 1 and 1" in lines[2]
