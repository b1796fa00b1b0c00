# Type stub of the compiled module fastnn._kernels (see _kernels.pyx).
from typing import Any, Dict, List, Literal, Optional, Protocol, Tuple, Union, overload

import numpy as np
from numpy.typing import NDArray

from ._hyper import Hyper

_F = NDArray[np.floating]

ACTIVATIONS: Dict[str, int]
LOSSES: Dict[str, int]
CSR_PRODUCTS_MAX_DENSITY: float
LOSS_REDUCTIONS: Tuple[str, ...]
DEBUG_BUILD: bool
THREADED: bool

KERNEL_ISAS: Tuple[str, ...]

def _kernel_isa(name: Optional[str] = None) -> str: ...
def _ukernels() -> List[Dict[str, Any]]: ...
def _isa_from_environment(value: Optional[str]) -> str: ...
def _cache_sizes(l1: Optional[int] = None, l2: Optional[int] = None) -> Tuple[int, int]: ...
def _cache_sources() -> Tuple[str, str]: ...
def _detect_caches(sysfs_dir: Any = None) -> Tuple[Tuple[int, int], Tuple[str, str]]: ...
def _build_info() -> dict: ...

def dense_forward(X: _F, W: _F, b: _F, activation: str = "identity",
                  out: Optional[_F] = None) -> _F: ...
def csr_forward(X: Any, W: _F, b: _F, activation: str = "identity",
                out: Optional[_F] = None, *, rows: Optional[Tuple[int, int]] = None) -> _F: ...
def dense_backward(A_prev: _F, W: _F, dZ: _F, activation_prev: str = "identity",
                   dW: Optional[_F] = None, db: Optional[_F] = None, dZ_prev: Optional[_F] = None,
                   compute_dZ_prev: bool = True) -> Tuple[_F, _F, Optional[_F]]: ...

class _CrossEntropy(Protocol):
    """softmax_cross_entropy and sigmoid_cross_entropy: (loss, grad), and the
    count of correct rows with return_correct=True."""
    @overload
    def __call__(self, logits: _F, labels: NDArray[np.integer], grad: Optional[_F] = None, *,
                 sample_weight: Optional[_F] = None, return_correct: Literal[False] = False,
                 loss_reduction: str = "mean") -> Tuple[float, _F]: ...
    @overload
    def __call__(self, logits: _F, labels: NDArray[np.integer], grad: Optional[_F] = None, *,
                 sample_weight: Optional[_F] = None, return_correct: Literal[True],
                 loss_reduction: str = "mean") -> Tuple[float, _F, int]: ...

softmax_cross_entropy: _CrossEntropy
sigmoid_cross_entropy: _CrossEntropy

def squared_error(outputs: _F, targets: _F, grad: Optional[_F] = None, *,
                  sample_weight: Optional[_F] = None, loss_reduction: str = "mean"
                  ) -> Tuple[float, _F]: ...
def softmax(logits: _F, out: Optional[_F] = None) -> _F: ...
def sgd_update(W: _F, grad: _F, velocity: _F, learning_rate: float, momentum: float = 0.0,
               l1: float = 0.0, l2: float = 0.0, nesterov: bool = False) -> None: ...
def adam_update(W: _F, grad: _F, m: _F, v: _F, learning_rate: float, t: int,
                beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                weight_decay: float = 0.0, l1: float = 0.0, l2: float = 0.0) -> None: ...
def dropout_mask(
    rows: int, width: int, rate: float, seed: int, epoch: int, step: int, layer: int
) -> NDArray[np.bool_]: ...
def train_batches(
    X: Any,
    y: Union[NDArray[np.intp], NDArray[np.floating]],
    order: NDArray[np.intp],
    start: int,
    stop: int,
    batch_size: int,
    sizes: NDArray[np.intp],
    activation: str,
    params: NDArray[np.floating],
    slots: NDArray[np.floating],
    ws: Any,
    hyper: Hyper,
    *,
    sample_weight: Optional[NDArray[np.floating]] = None,
    dropout: Optional[NDArray[np.float64]] = None,
    seed: int = 0,
    epoch: int = 0,
    n_threads: int = 1,
    loss: str = "cross_entropy",
    loss_reduction: str = "mean",
    augment: Any = None,
    csr_products: Optional[bool] = None,
    exact_sums: bool = False,
    split_threshold: Optional[float] = None,
    loss_start: float = 0.0,
) -> Tuple[int, float, int, bool]: ...
def augment_rows(X: _F, rows: NDArray[np.integer], seed: int, epoch: int, augment: Any,
                 out: Optional[_F] = None) -> _F: ...
