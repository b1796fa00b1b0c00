"""fastnn: multilayer perceptrons on the CPU, fast.

>>> from fastnn import MLP
>>> MLP([784, 128, 10], seed=0)
MLP(layers=[784, 128, 10], activation='relu', dtype='float32', seed=0, init='auto') # 101770 parameters, 0 epochs trained
"""
from ._version import __version__
from .model import MLP
from .sysinfo import show_config
from .threads import get_num_threads, set_num_threads
from .training import Callback, FitConfig, History, TrainingDivergedWarning

__all__ = ["MLP", "FitConfig", "History", "Callback", "TrainingDivergedWarning",
           "set_num_threads", "get_num_threads", "show_config", "__version__"]


_ESTIMATORS = ("MLPClassifier", "MLPRegressor")


def __getattr__(name):
    # fastnn.MLPClassifier/MLPRegressor without importing scikit-learn at ``import fastnn``
    if name in _ESTIMATORS:
        from . import sklearn
        return getattr(sklearn, name)
    raise AttributeError(f"module 'fastnn' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_ESTIMATORS])
