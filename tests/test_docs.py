"""The examples in the docstrings run and give what they show."""
import doctest
import importlib

import pytest

MODULES = ["fastnn", "fastnn.kernels", "fastnn.model", "fastnn.inference", "fastnn.optim", "fastnn.gradcheck",
           "fastnn._validation", "fastnn._hyper", "fastnn._layout",
           "fastnn.config", "fastnn.metrics", "fastnn.datasets", "fastnn.training.loop", "fastnn.training.options",
           "fastnn.study", "fastnn.sklearn", "fastnn.sweep", "fastnn.sweep.grid",
           "fastnn.experiment", "fastnn._checks", "fastnn.schedules", "fastnn.export",
           "fastnn.augment"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
