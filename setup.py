"""Build the compiled kernels; all metadata lives in pyproject.toml.

Environment variables read at build time:

* ``FASTNN_DEBUG=1``  -- Cython bounds checks, wraparound and initialisation
  checks on, ``-O0 -g`` (the kernel tests run once in this mode in CI);
* ``FASTNN_NATIVE=1`` -- add ``-march=native`` (faster elementwise passes on
  the build machine; the default build stays portable across x86-64: the
  training kernels of _gemm.h pick AVX-512/AVX2/generic at load time anyway);
* ``FASTNN_PORTABLE=1`` -- the standard-C core only (``FASTNN_PORTABLE_C``: no
  GNU extension, no SIMD variant), as a compiler without them builds it.

A C compiler that cannot build the SIMD variants (an old one, or one without
the intrinsics) does not fail the install: the build of the compiled module is
retried once with the portable core, and says so.
"""
import glob
import os

import numpy as np

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def _flag(name):
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


DEBUG = _flag("FASTNN_DEBUG")
NATIVE = _flag("FASTNN_NATIVE")
PORTABLE = _flag("FASTNN_PORTABLE")


# -fno-trapping-math lets gcc vectorise the branch-free activations in
# _fastmath.h (it changes no results: fastnn never reads FP exception flags);
# -fno-math-errno lets it vectorise sqrt (Adam's update: sqrt is correctly
# rounded either way; fastnn never reads errno);
# -ffp-contract=off keeps a*b+c two roundings wherever the C code writes a*b+c
# (the generic kernels and the elementwise passes), so the cloned elementwise
# passes give the same bits on SSE2, AVX2 and AVX-512 machines. The training
# kernels' SIMD variants (AVX-512, AVX2, NEON) use fused multiply-adds (one
# rounding) and agree bit for bit with each other, but not with the generic
# C kernels (up to about 5e-5 relative in float32 after training).
compile_args = ["-O0", "-g", "-UNDEBUG"] if DEBUG else ["-O3", "-fno-trapping-math"]
compile_args += ["-ffp-contract=off", "-fno-math-errno", "-Werror=implicit-function-declaration"]
if NATIVE:
    compile_args.append("-march=native")
# fastnn's training threads are POSIX threads started per call (_gemm.h; Win32
# threads on Windows)
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
        # the C core's headers: an edited header rebuilds the module (build_ext
        # compares them with it; the generated _kernels.c does not change)
        depends=sorted(glob.glob("src/fastnn/*.h")),
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

def render_templates(folder="src/fastnn"):
    """Cython's Tempita templates (``*.pxi.tp``, the declarations written once
    per dtype) into their ``.pxi``, rewritten only when the text changes (so
    cythonize's dependency check stays quiet)."""
    from Cython import Tempita

    for name in sorted(os.listdir(folder)):
        if name.endswith(".pxi.tp"):
            src = os.path.join(folder, name)
            with open(src, encoding="utf-8") as f:
                text = Tempita.sub(f.read())
            out = src[:-len(".tp")]
            old = open(out, encoding="utf-8").read() if os.path.exists(out) else None
            if text != old:
                with open(out, "w", encoding="utf-8") as f:
                    f.write(text)


render_templates()

PORTABLE_MACROS = [("FASTNN_PORTABLE_C", "1"), ("FASTNN_NO_SIMD", "1"), ("FASTNN_NO_CLONES", "1")]
if PORTABLE:
    for ext in extensions:
        ext.define_macros = list(ext.define_macros) + PORTABLE_MACROS


class BuildExt(build_ext):
    """MSVC's spelling of the flags, and the portable retry: a compiled module
    whose SIMD variants do not compile is built again with the standard-C core
    (FASTNN_PORTABLE_C) instead of failing the install."""

    def build_extension(self, ext):
        if self.compiler.compiler_type == "msvc":
            # /fp:precise: no contraction into FMA, errno and traps not read
            ext.extra_compile_args = ["/Od", "/Zi"] if DEBUG else ["/O2", "/fp:precise"]
            ext.extra_compile_args.append("/std:c11")
            ext.extra_link_args = []
        try:
            super().build_extension(ext)
        except Exception as exc:  # CompileError, or the platform's own error
            if ("FASTNN_PORTABLE_C", "1") in ext.define_macros:
                raise
            print(f"warning: building {ext.name} with the SIMD variants failed ({exc}); "
                  f"building it again with the portable C core (FASTNN_PORTABLE_C)")
            ext.define_macros = list(ext.define_macros) + PORTABLE_MACROS
            super().build_extension(ext)


setup(ext_modules=cythonize(extensions, compiler_directives=directives),
      cmdclass={"build_ext": BuildExt})
