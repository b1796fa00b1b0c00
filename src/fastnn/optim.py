"""The optimiser: mini-batch SGD with momentum, L1/L2 and learning-rate decay.

The arithmetic of a step is one compiled pass (:func:`fastnn.kernels.sgd_update`);
this module holds the policy: the validated hyperparameters and the
decay rule between epochs.
"""
from dataclasses import asdict, dataclass
from typing import Optional

from ._validation import check_float


@dataclass(frozen=True)
class SGD:
    """Hyperparameters of one ``fit``.

    ``velocity = momentum*velocity - learning_rate*(grad + l2*W + l1*sign(W))``,
    ``W += velocity``; biases get no penalty. With ``lr_decay`` set, the
    learning rate is multiplied by it after every epoch whose validation
    accuracy improved by less than ``lr_decay_threshold`` over the previous epoch.

    >>> SGD(learning_rate=0.1, lr_decay=0.5).next_learning_rate(0.1, gain=0.0)
    0.05
    """

    learning_rate: float = 0.01
    momentum: float = 0.0
    l1: float = 0.0
    l2: float = 0.0
    lr_decay: Optional[float] = None
    lr_decay_threshold: float = 0.001

    def __post_init__(self):
        checked = {
            "learning_rate": check_float(self.learning_rate, "learning_rate", low=0.0,
                                         low_open=True),
            "momentum": check_float(self.momentum, "momentum", low=0.0, high=1.0,
                                    high_open=True),
            "l1": check_float(self.l1, "l1", low=0.0),
            "l2": check_float(self.l2, "l2", low=0.0),
            "lr_decay": check_float(self.lr_decay, "lr_decay", low=0.0, high=1.0,
                                    low_open=True, allow_none=True),
            "lr_decay_threshold": check_float(self.lr_decay_threshold, "lr_decay_threshold"),
        }
        # store plain Python floats: NumPy scalars (np.float32(0.1)) would leak into
        # the history and the JSON of checkpoints
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    def next_learning_rate(self, lr, gain):
        """The learning rate for the next epoch, given the last validation-accuracy gain."""
        if self.lr_decay is not None and gain < self.lr_decay_threshold:
            return lr * self.lr_decay
        return lr

    def to_dict(self):
        return asdict(self)
