# Type stub of the compiled module fastnn._kernels (see _kernels.pyx).
from typing import Any, Dict, Literal, Optional, Tuple, Union, overload

import numpy as np
from numpy.typing import NDArray

from ._hyper import Hyper

ACTIVATIONS: Dict[str, int]
LOSSES: Dict[str, int]
CSR_PRODUCTS_MAX_DENSITY: float
LOSS_REDUCTIONS: Tuple[str, ...]
DEBUG_BUILD: bool
THREADED: bool

def _kernel_isa(name: Optional[str] = None) -> str: ...
def _build_info() -> dict: ...

def dense_forward(
    X: NDArray[np.floating],
    W: NDArray[np.floating],
    b: NDArray[np.floating],
    activation: str = "identity",
    out: Optional[NDArray[np.floating]] = None,
) -> NDArray[np.floating]: ...
def dense_backward(
    A_prev: NDArray[np.floating],
    W: NDArray[np.floating],
    dZ: NDArray[np.floating],
    activation_prev: str = "identity",
    dW: Optional[NDArray[np.floating]] = None,
    db: Optional[NDArray[np.floating]] = None,
    dZ_prev: Optional[NDArray[np.floating]] = None,
    compute_dZ_prev: bool = True,
) -> Tuple[NDArray[np.floating], NDArray[np.floating], Optional[NDArray[np.floating]]]: ...
@overload
def softmax_cross_entropy(
    logits: NDArray[np.floating],
    labels: NDArray[np.integer],
    grad: Optional[NDArray[np.floating]] = None,
    *,
    sample_weight: Optional[NDArray[np.floating]] = None,
    return_correct: Literal[False] = False,
    loss_reduction: str = "mean",
) -> Tuple[float, NDArray[np.floating]]: ...
@overload
def softmax_cross_entropy(
    logits: NDArray[np.floating],
    labels: NDArray[np.integer],
    grad: Optional[NDArray[np.floating]] = None,
    *,
    sample_weight: Optional[NDArray[np.floating]] = None,
    return_correct: Literal[True],
    loss_reduction: str = "mean",
) -> Tuple[float, NDArray[np.floating], int]: ...
@overload
def sigmoid_cross_entropy(
    logits: NDArray[np.floating],
    labels: NDArray[np.intp],
    grad: Optional[NDArray[np.floating]] = None,
    *,
    sample_weight: Optional[NDArray[np.floating]] = None,
    return_correct: Literal[False] = False,
    loss_reduction: str = "mean",
) -> Tuple[float, NDArray[np.floating]]: ...
@overload
def sigmoid_cross_entropy(
    logits: NDArray[np.floating],
    labels: NDArray[np.intp],
    grad: Optional[NDArray[np.floating]] = None,
    *,
    sample_weight: Optional[NDArray[np.floating]] = None,
    return_correct: Literal[True],
    loss_reduction: str = "mean",
) -> Tuple[float, NDArray[np.floating], int]: ...
def squared_error(
    outputs: NDArray[np.floating],
    targets: NDArray[np.floating],
    grad: Optional[NDArray[np.floating]] = None,
    *,
    sample_weight: Optional[NDArray[np.floating]] = None,
    loss_reduction: str = "mean",
) -> Tuple[float, NDArray[np.floating]]: ...
def softmax(
    logits: NDArray[np.floating], out: Optional[NDArray[np.floating]] = None
) -> NDArray[np.floating]: ...
def sgd_update(
    W: NDArray[np.floating],
    grad: NDArray[np.floating],
    velocity: NDArray[np.floating],
    learning_rate: float,
    momentum: float = 0.0,
    l1: float = 0.0,
    l2: float = 0.0,
    nesterov: bool = False,
) -> None: ...
def adam_update(
    W: NDArray[np.floating],
    grad: NDArray[np.floating],
    m: NDArray[np.floating],
    v: NDArray[np.floating],
    learning_rate: float,
    t: int,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    l1: float = 0.0,
    l2: float = 0.0,
) -> None: ...
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
) -> Tuple[int, float, int, bool]: ...
def augment_rows(
    X: NDArray[np.floating],
    rows: NDArray[np.integer],
    seed: int,
    epoch: int,
    augment: Any,
    out: Optional[NDArray[np.floating]] = None,
) -> NDArray[np.floating]: ...
