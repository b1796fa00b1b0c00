"""Type aliases of the public API's annotations (checked by mypy in the tests)."""
from __future__ import annotations

import os
from typing import Any, Union

import numpy as np
from numpy.typing import ArrayLike, NDArray

#: A file path: ``str`` or any ``os.PathLike``.
PathLike = Union[str, "os.PathLike[str]"]
#: An array of the model's dtype (float32 or float64).
FloatArray = NDArray[np.floating[Any]]
#: Integer labels or indices.
IntArray = NDArray[np.integer[Any]]

__all__ = ["ArrayLike", "NDArray", "PathLike", "FloatArray", "IntArray"]
