"""Build the compiled kernels; all metadata lives in pyproject.toml.

Environment variables read at build time:

* ``FASTNN_DEBUG=1``  -- Cython bounds checks, wraparound and initialisation
  checks on, ``-O0 -g`` (the kernel tests run once in this mode in CI);
* ``FASTNN_NATIVE=1`` -- add ``-march=native`` (faster elementwise passes on
  the build machine; the default build stays portable across x86-64: the
  training kernels of _gemm.h pick AVX-512/AVX2/generic at load time anyway);
"""
import os

import numpy as np

from Cython.Build import cythonize
from setuptools import Extension, setup


def _flag(name):
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


DEBUG = _flag("FASTNN_DEBUG")
NATIVE = _flag("FASTNN_NATIVE")


# -fno-trapping-math lets gcc vectorise the branch-free activations in
# _fastmath.h (it changes no results: fastnn never reads FP exception flags);
# -fno-math-errno lets it vectorise sqrt (Adam's update: sqrt is correctly
# rounded either way; fastnn never reads errno);
# -ffp-contract=off keeps a*b+c two roundings on every instruction set, so a
# build gives the same bits on SSE2, AVX2 and AVX-512 machines.
compile_args = ["-O0", "-g", "-UNDEBUG"] if DEBUG else ["-O3", "-fno-trapping-math"]
compile_args += ["-ffp-contract=off", "-fno-math-errno", "-Werror=implicit-function-declaration"]
if NATIVE:
    compile_args.append("-march=native")
# fastnn's training threads are POSIX threads started per call (_gemm.h)
link_args = []
if os.name == "posix":
    compile_args.append("-pthread")
    link_args.append("-pthread")

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": not DEBUG,
    "embedsignature": True,
}

extensions = [
    Extension(
        "fastnn._kernels",
        ["src/fastnn/_kernels.pyx"],
        include_dirs=[np.get_include(), "src/fastnn"],
        define_macros=[("FASTNN_DEBUG", "1" if DEBUG else "0"),
                       ("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    ),
    # an empty module whose file name threadpoolctl matches to list and limit
    # fastnn's training threads (fastnn.threads)
    Extension("fastnn._fastnn_threads", ["src/fastnn/_fastnn_threads.pyx"]),
]

setup(ext_modules=cythonize(extensions, compiler_directives=directives))
