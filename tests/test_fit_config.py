"""FitConfig: fit's arguments as one object, defaults written once, validated once,
the same training whether passed as keywords or as a config."""
import dataclasses
import inspect

import numpy as np
import pytest

from fastnn import MLP, FitConfig, config as cfg
from fastnn.optim import SGD
from fastnn.schedules import Cosine
from fastnn.training import config_fields


def _data():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(120, 5)).astype(np.float32)
    return X, (X[:, 0] - X[:, 1] > 0).astype(np.intp)


def test_keywords_and_config_train_the_same_weights():
    X, y = _data()
    kw = dict(epochs=3, batch_size=16, learning_rate=0.05, momentum=0.9, l2=1e-3,
              validation_split=0.25, lr_schedule="cosine", verbose=False)
    a, b, c = (MLP([5, 7, 2], seed=1) for _ in range(3))
    ha = a.fit(X, y, **kw)
    hb = b.fit(X, y, config=FitConfig(**kw))
    hc = c.fit(X, y, config=FitConfig(epochs=9, batch_size=16, verbose=False),
               **{k: v for k, v in kw.items() if k != "batch_size"})  # keywords win
    np.testing.assert_array_equal(a.parameters, b.parameters)
    np.testing.assert_array_equal(a.parameters, c.parameters)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr"):
        assert ha.history[key] == hb.history[key] == hc.history[key]
    assert ha.params == hb.params == hc.params


def test_the_defaults_are_the_fields():
    defaults = FitConfig.defaults()
    assert MLP.fit_defaults() == defaults
    sig = inspect.signature(MLP.fit).parameters
    assert {k: sig[k].default for k in defaults} == defaults
    assert all(sig[k].annotation is not inspect.Parameter.empty for k in defaults)
    # the shorthand's defaults are SGD's; config files take the fields a file can hold
    assert defaults["learning_rate"] == SGD().learning_rate
    assert cfg.FIT_KEYS == config_fields()
    assert not {"optimizer", "learning_rate", "verbose", "callbacks", "checkpoint"} & set(
        cfg.FIT_KEYS)


@pytest.mark.parametrize("kwargs, error, name", [
    (dict(epochs=-1), ValueError, "epochs"), (dict(batch_size=0), ValueError, "batch_size"),
    (dict(validation_split=1.0), ValueError, "validation_split"),
    (dict(monitor="val_f1"), ValueError, "monitor"), (dict(min_delta=-1), ValueError, "min_delta"),
    (dict(loss_reduction="max"), ValueError, "loss_reduction"),
    (dict(lr_decay=0.5, lr_schedule="cosine"), ValueError, "lr_schedule"),
    (dict(verbose="yes"), TypeError, "verbose"), (dict(shuffle=1), TypeError, "shuffle"), (dict(exact_sums="yes"), TypeError, "exact_sums"),
    (dict(callbacks=[object()]), TypeError, "callbacks"), (dict(checkpoint=3), TypeError, "checkpoint"),
    (dict(augment={"rotation": "a lot"}), (TypeError, ValueError), "rotation"),
    # lr_decay's own parameters without it (or beside a schedule) would do nothing
    (dict(min_learning_rate=0.005, lr_schedule="cosine"), ValueError, "min_learning_rate goes "
                                                                     "with lr_decay"),
    (dict(lr_decay_threshold=0.5), ValueError, "lr_decay_threshold goes with lr_decay"),
])
def test_construction_validates_and_names_the_field(kwargs, error, name):
    with pytest.raises(error, match=name):
        FitConfig(**kwargs)
    X, y = _data()
    with pytest.raises(error, match=name):  # fit raises the same, before any training
        MLP([5, 2], seed=0).fit(X, y, **kwargs)


def test_normalised_frozen_and_replaced():
    c = FitConfig(epochs=np.int64(4), lr_schedule={"name": "cosine"}, callbacks=[])
    assert type(c.epochs) is int and isinstance(c.lr_schedule, Cosine) and c.callbacks == ()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.epochs = 5
    assert c.replace(epochs=2).epochs == 2 and c.epochs == 4
    with pytest.raises(ValueError, match="epochs"):
        c.replace(epochs=-2)


def test_unknown_keyword_and_wrong_config_are_type_errors():
    X, y = _data()
    with pytest.raises(TypeError, match="epochz"):
        MLP([5, 2], seed=0).fit(X, y, epochz=3)
    with pytest.raises(TypeError, match="config"):
        MLP([5, 2], seed=0).fit(X, y, config={"epochs": 3})


def test_a_config_file_builds_its_fit_config():
    resolved = cfg.resolve({"layers": [5, 2], "epochs": 2, "optimizer": "adam",
                            "learning_rate": 0.01, "lr_schedule": "cosine"})
    fc = cfg.fit_config(resolved, verbose=False)
    assert fc.epochs == 2 and fc.verbose is False and isinstance(fc.lr_schedule, Cosine)
    assert fc.optimizer.get_config()["learning_rate"] == 0.01
    with pytest.raises(ValueError, match="batch_size"):
        cfg.fit_config({**resolved, "batch_size": 0})
