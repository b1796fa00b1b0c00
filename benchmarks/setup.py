"""Build fastnn-bench's compiled FMA-peak probe; all metadata lives in pyproject.toml.

``fastnn_bench._peak``: register-only loops of fused multiply-adds, each
variant built for its own instruction set with GCC's target attribute and
chosen at run time, so no -march flag is needed; -O2 always (the loop
measures the CPU, not the code).
"""
from Cython.Build import cythonize
from setuptools import Extension, setup

extensions = [
    Extension("fastnn_bench._peak", ["src/fastnn_bench/_peak.pyx"],
              include_dirs=["src/fastnn_bench"], extra_compile_args=["-O2"]),
]

setup(ext_modules=cythonize(extensions, compiler_directives={"language_level": 3,
                                                             "embedsignature": True}))
