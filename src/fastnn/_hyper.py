"""The hyperparameters of one compiled training call (see the interface of
:func:`fastnn.kernels.train_batches`)."""
from typing import NamedTuple


class Hyper(NamedTuple):
    kind: str
    learning_rate: float
    momentum: float = 0.0
    nesterov: bool = False
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    l1: float = 0.0
    l2: float = 0.0
    t: int = 0
