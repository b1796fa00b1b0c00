"""Build the compiled kernels; all metadata lives in pyproject.toml.

Environment variables read at build time:

* ``FASTNN_DEBUG=1``  -- Cython bounds checks, wraparound and initialisation
  checks on, ``-O0 -g`` (the kernel tests run once in this mode in CI);
* ``FASTNN_NATIVE=1`` -- add ``-march=native`` (faster elementwise passes on
  the build machine; the default build stays portable across x86-64: the
  training kernels of _gemm.h pick AVX-512/AVX2/generic at load time anyway);
* ``FASTNN_OPENMP=0``  -- build without OpenMP (fastnn's training loop then
  runs on one thread). By default OpenMP is used when the compiler has it.
"""
import os

import numpy as np

from Cython.Build import cythonize
from setuptools import Extension, setup


def _flag(name):
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


DEBUG = _flag("FASTNN_DEBUG")
NATIVE = _flag("FASTNN_NATIVE")


def _openmp_flag():
    """``-fopenmp`` if the C compiler accepts it (and FASTNN_OPENMP is not 0)."""
    if os.environ.get("FASTNN_OPENMP", "1").strip().lower() in ("0", "false", "no"):
        return None
    import tempfile
    from setuptools._distutils.ccompiler import new_compiler
    from setuptools._distutils.sysconfig import customize_compiler
    cc = new_compiler()
    customize_compiler(cc)
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "omp.c")
        with open(src, "w") as f:
            f.write("#include <omp.h>\nint main(void) { return omp_get_max_threads() < 1; }\n")
        try:
            objs = cc.compile([src], output_dir=tmp, extra_postargs=["-fopenmp"])
            cc.link_executable(objs, os.path.join(tmp, "omp"), extra_postargs=["-fopenmp"])
        except Exception:
            return None
    return "-fopenmp"


OPENMP = _openmp_flag()

# -fno-trapping-math lets gcc vectorise the branch-free activations in
# _fastmath.h (it changes no results: fastnn never reads FP exception flags);
# -ffp-contract=off keeps a*b+c two roundings on every instruction set, so a
# build gives the same bits on SSE2, AVX2 and AVX-512 machines.
compile_args = ["-O0", "-g", "-UNDEBUG"] if DEBUG else ["-O3", "-fno-trapping-math"]
compile_args.append("-ffp-contract=off")
if NATIVE:
    compile_args.append("-march=native")
link_args = []
if OPENMP:
    compile_args.append(OPENMP)
    link_args.append(OPENMP)

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
    )
]

setup(ext_modules=cythonize(extensions, compiler_directives=directives))
