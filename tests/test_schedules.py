"""fastnn.schedules: the rates, their validation, and fit(lr_schedule=...)."""
import math

import numpy as np
import pytest

from fastnn import MLP, Callback, cli, config as cfg, schedules, training
from fastnn.optim import SGD, Adam
from fastnn.schedules import Constant, Cosine, Exponential, Plateau, Step

pytestmark = pytest.mark.usefixtures("one_blas_thread")

FIT = dict(batch_size=32, verbose=False)


@pytest.fixture(scope="module")
def data(mnist_small):
    (X, y), (Xt, yt) = mnist_small
    return X[:600], y[:600], Xt[:300], yt[:300]


def _rates(schedule, base, epochs):
    return [schedule.rate(e, base, epochs=epochs) for e in range(epochs)]


# -- the rates ---------------------------------------------------------------------

def test_rates_follow_their_formulas():
    base = 0.3
    assert _rates(Constant(), base, 4) == [base] * 4
    assert _rates(Step(step_size=3, gamma=0.5), base, 7) == [
        base * 0.5 ** (e // 3) for e in range(7)]
    assert _rates(Exponential(gamma=0.8), base, 5) == [base * 0.8 ** e for e in range(5)]
    # the floor holds the rate once the decay reaches it; one above the base leaves the base
    assert _rates(Exponential(gamma=0.5, min_learning_rate=0.1), base, 4) == [
        base, base * 0.5, 0.1, 0.1]
    assert _rates(Exponential(gamma=0.5, min_learning_rate=1.0), base, 3) == [base] * 3
    T, m = 6, 0.01
    assert _rates(Cosine(min_learning_rate=m), base, T) == pytest.approx(
        [m + (base - m) * (1 + math.cos(math.pi * e / T)) / 2 for e in range(T)], rel=1e-15)
    # Cosine's own length beats the fit's; past it, the floor
    assert _rates(Cosine(epochs=3, min_learning_rate=m), base, 5)[3:] == [m, m]


@pytest.mark.parametrize("schedule", [Constant(warmup_epochs=3), Step(1, 0.5, warmup_epochs=3),
                                      Exponential(0.5, warmup_epochs=3),
                                      Cosine(warmup_epochs=3)])
def test_warmup_ramps_linearly_then_starts_the_schedule(schedule):
    base, epochs = 0.4, 8
    rates = _rates(schedule, base, epochs)
    assert rates[:3] == pytest.approx([base / 4, base / 2, 3 * base / 4], rel=1e-15)
    assert rates[3] == base  # the schedule's own epoch 0
    # after the warm-up the schedule runs shifted by it (the cosine over the rest)
    plain = type(schedule)(**{**schedule.get_config(), "warmup_epochs": 0})
    assert rates[3:] == _rates(plain, base, epochs - 3)


def test_plateau_is_the_rule_of_lr_decay():
    p = Plateau(factor=0.5, threshold=0.01, min_learning_rate=0.03)
    hist = {"lr": [0.1, 0.1, 0.05], "val_accuracy": [0.5, 0.6, 0.605]}
    assert p.rate(0, 0.1, history={}) == 0.1
    assert p.rate(1, 0.1, history=hist) == 0.1        # the first epoch counts as a rise
    assert p.rate(2, 0.1, history=hist) == 0.1        # rose by 0.1 > 0.01
    assert p.rate(3, 0.1, history=hist) == 0.03       # rose by 0.005: halved, floored
    # a floor above the rate leaves the rate
    assert Plateau(0.5, 1.0, min_learning_rate=1.0).rate(2, 0.1, history=hist) == 0.1


# -- construction and validation ---------------------------------------------------

@pytest.mark.parametrize("spec, expected", [
    ("constant", Constant()),
    ("cosine", Cosine()),
    ({"name": "cosine", "warmup_epochs": 2, "min_learning_rate": 1e-4},
     Cosine(min_learning_rate=1e-4, warmup_epochs=2)),
    ({"name": "step", "step_size": 2}, Step(2)),
    ({"name": "plateau", "factor": 0.5}, Plateau(0.5)),
    (None, None),
])
def test_make(spec, expected):
    made = schedules.make(spec)
    assert made == expected
    if made is not None:
        assert schedules.make(made.to_dict()) == made  # what configs write back
        assert schedules.make(made) is made


@pytest.mark.parametrize("spec, exc, message", [
    ("linear", ValueError, "lr_schedule must be one of"),
    ({"warmup_epochs": 2}, ValueError, "must name its schedule"),
    ({"name": "step"}, ValueError, "step_size"),
    ({"name": "step", "step_size": 2, "size": 3}, ValueError, "takes no parameter 'size'"),
    ({"name": "step", "step_size": 0}, ValueError, "step_size"),
    ({"name": "step", "step_size": 1.5}, TypeError, "step_size"),
    ({"name": "exponential", "gamma": 1.5}, ValueError, "gamma"),
    ({"name": "exponential", "gamma": float("nan")}, ValueError, "gamma"),
    ({"name": "exponential", "gamma": "0.5"}, TypeError, "gamma"),
    ({"name": "cosine", "warmup_epochs": -1}, ValueError, "warmup_epochs"),
    ({"name": "cosine", "epochs": 3, "warmup_epochs": 3}, ValueError, "warmup_epochs"),
    ({"name": "cosine", "min_learning_rate": -1}, ValueError, "min_learning_rate"),
    ({"name": "plateau", "factor": 0}, ValueError, "factor"),
    (0.1, TypeError, "lr_schedule must be"),
])
def test_bad_schedules_name_the_parameter(spec, exc, message):
    with pytest.raises(exc, match=message):
        schedules.make(spec)


@pytest.mark.parametrize("kwargs, exc, message", [
    (dict(lr_schedule="bogus"), ValueError, "lr_schedule must be one of"),
    (dict(lr_schedule=Plateau(0.5)), ValueError, "lr_schedule needs validation data"),
    (dict(lr_schedule="cosine", lr_decay=0.5, validation_split=0.2), ValueError,
     "lr_schedule or lr_decay, not both"),
    # a rate of 0 makes no update: refused before training
    (dict(lr_schedule=Cosine(epochs=2), epochs=3), ValueError, "learning rate 0.0 in epoch 2"),
    # annealing over the fit's epochs: the warm-up must leave some, as Cosine(epochs=...)'s
    (dict(lr_schedule=Cosine(warmup_epochs=2), epochs=2), ValueError,
     r"anneals over the fit's 2 epochs: its warmup_epochs \(2\) must be less"),
    (dict(lr_schedule="cosine", epochs=1), None, None),
    (dict(lr_schedule=Cosine(warmup_epochs=3), epochs=4), None, None),
])
def test_fit_rejects_bad_schedules_before_training(data, kwargs, exc, message):
    X, y, _, _ = data
    model = MLP([784, 8, 10], seed=0)
    before = model.parameters.copy()
    if exc is None:  # the limits themselves: accepted
        model.fit(X[:64], y[:64], **{"epochs": 2, **FIT, **kwargs})
        return
    with pytest.raises(exc, match=message):
        model.fit(X, y, **{"epochs": 2, **FIT, **kwargs})
    np.testing.assert_array_equal(model.parameters, before)
    assert model.epochs_trained == 0


# -- in fit ------------------------------------------------------------------------

def test_plateau_object_equals_lr_decay_bit_for_bit(data):
    X, y, Xt, yt = data
    args = dict(epochs=5, validation_data=(Xt, yt), learning_rate=0.05, momentum=0.9, **FIT)
    a = MLP([784, 16, 10], seed=1)
    ha = a.fit(X, y, lr_decay=0.5, lr_decay_threshold=0.06, min_learning_rate=0.02, **args)
    b = MLP([784, 16, 10], seed=1)
    hb = b.fit(X, y, lr_schedule=Plateau(0.5, 0.06, 0.02), **args)
    np.testing.assert_array_equal(a.parameters, b.parameters)
    assert {k: v for k, v in ha.history.items() if k != "time"} == \
        {k: v for k, v in hb.history.items() if k != "time"}
    # the rule did act: a rise kept the rate, plateaus halved it, the floor held it
    assert ha.history["lr"] == [0.05, 0.05, 0.05, 0.025, 0.02]


@pytest.mark.parametrize("opt", [lambda: SGD(0.05, momentum=0.9), lambda: Adam(0.002)])
def test_schedule_equals_setting_the_rate_before_each_epoch(data, opt):
    """fit(epochs=4, lr_schedule=s) trains as four one-epoch fits of the same
    optimizer whose learning_rate is set to s's rate for that epoch."""
    X, y, _, _ = data
    schedule = Cosine(epochs=4, warmup_epochs=1, min_learning_rate=1e-3)
    a = MLP([784, 16, 10], seed=2)
    h = a.fit(X, y, epochs=4, optimizer=opt(), lr_schedule=schedule, **FIT)
    base = opt().learning_rate
    rates = [schedule.rate(e, base) for e in range(4)]
    assert h.history["lr"] == rates
    assert h.params["lr_schedule"] == schedule.to_dict()

    b = MLP([784, 16, 10], seed=2)
    manual = opt()
    for rate in rates:
        manual.learning_rate = rate
        b.fit(X, y, epochs=1, optimizer=manual, **FIT)
    np.testing.assert_array_equal(a.parameters, b.parameters)
    np.testing.assert_array_equal(a.optimizer_.slots, manual.slots)


def test_schedule_by_name_and_mapping_and_reference_twin(data):
    """A mapping is the schedule it names; the NumPy trainer applies it alike."""
    from fastnn import reference
    X, y, _, _ = data
    X, y = X[:256], y[:256]
    spec = {"name": "step", "step_size": 1, "gamma": 0.5}
    a = MLP([784, 8, 10], dtype="float64", seed=3)
    ha = a.fit(X, y, epochs=3, learning_rate=0.1, lr_schedule=spec, **FIT)
    assert ha.history["lr"] == [0.1, 0.05, 0.025]
    b = MLP([784, 8, 10], dtype="float64", seed=3)
    training.fit(b, X, y, epochs=3, learning_rate=0.1, lr_schedule=Step(1, 0.5),
                 validation_split=0.0, validation_data=None, early_stopping=None, lr_decay=None,
                 lr_decay_threshold=0.001, callbacks=None, checkpoint=None,
                 kernels=reference, **FIT)
    np.testing.assert_allclose(a.parameters, b.parameters, rtol=1e-9, atol=1e-12)


def test_checkpoint_resumes_a_schedule_exactly(data, tmp_path):
    X, y, _, _ = data
    args = dict(learning_rate=0.05, momentum=0.9, lr_schedule=Cosine(epochs=4, warmup_epochs=1),
                **FIT)
    full = MLP([784, 16, 10], seed=5)
    h_full = full.fit(X, y, epochs=4, **args)
    path = tmp_path / "ck.npz"
    MLP([784, 16, 10], seed=5).fit(X, y, epochs=2, checkpoint=path, **args)
    resumed = MLP([784, 16, 10], seed=5)
    h = resumed.fit(X, y, epochs=4, checkpoint=path, **args)
    np.testing.assert_array_equal(full.parameters, resumed.parameters)
    assert h.history["lr"] == h_full.history["lr"]
    # another schedule is another fit: its checkpoint is refused
    with pytest.raises(ValueError, match="different model, data or arguments"):
        MLP([784, 16, 10], seed=5).fit(X, y, epochs=4, checkpoint=path,
                                       **{**args, "lr_schedule": Cosine(epochs=5)})


def test_a_checkpoint_of_cosine_over_the_fits_epochs_resumes_only_as_many(data, tmp_path):
    """Cosine(epochs=None) anneals over the fit's epochs: a checkpoint of a 4-epoch
    fit resumed by an 8-epoch one would follow neither curve, so it is refused;
    schedules that do not read the fit's length resume with more epochs."""
    X, y, _, _ = data
    args = dict(learning_rate=0.05, momentum=0.9, **FIT)
    path = tmp_path / "ck.npz"
    MLP([784, 16, 10], seed=5).fit(X, y, epochs=4, checkpoint=path, lr_schedule=Cosine(),
                                   callbacks=[_StopAfter(2)], **args)
    with pytest.raises(ValueError, match="different model, data or arguments"):
        MLP([784, 16, 10], seed=5).fit(X, y, epochs=8, checkpoint=path, lr_schedule=Cosine(),
                                       **args)
    h = MLP([784, 16, 10], seed=5).fit(X, y, epochs=4, checkpoint=path, lr_schedule=Cosine(),
                                       **args)
    assert h.history["lr"] == [Cosine().rate(e, 0.05, epochs=4) for e in range(4)]
    assert Cosine().reads_fit_epochs and not Cosine(epochs=4).reads_fit_epochs
    assert not Step(2).reads_fit_epochs and not Plateau().reads_fit_epochs
    step = tmp_path / "step.npz"
    MLP([784, 16, 10], seed=5).fit(X, y, epochs=2, checkpoint=step, lr_schedule=Step(1), **args)
    MLP([784, 16, 10], seed=5).fit(X, y, epochs=3, checkpoint=step, lr_schedule=Step(1), **args)


class _StopAfter(Callback):
    def __init__(self, n):
        self.n = n

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 >= self.n:
            self.model.stop_training = True


# -- configs and the command line --------------------------------------------------

def test_config_key_and_flag():
    assert cfg.DEFAULTS["lr_schedule"] is None
    config = cfg.resolve({"layers": [784, 10],
                          "lr_schedule": {"name": "cosine", "warmup_epochs": 2}})
    _, _, fit_kw = cfg.split(config)
    assert schedules.make(fit_kw["lr_schedule"]) == Cosine(warmup_epochs=2)
    args = cli._parser().parse_args(["train", "--config", "x.yaml", "--lr-schedule",
                                     "{name: step, step_size: 2, gamma: 0.5}"])
    assert args.set_lr_schedule == {"name": "step", "step_size": 2, "gamma": 0.5}
    assert cli._value("cosine") == "cosine"


def test_sweep_checks_the_schedule_before_training():
    from fastnn.sweep.grid import check_config
    with pytest.raises(ValueError, match="lr_schedule: schedule 'step' takes no parameter"):
        check_config(cfg.resolve({"layers": [784, 10],
                                         "lr_schedule": {"name": "step", "gamma": 2,
                                                         "steps": 1}}))


def test_sweep_grid_of_schedules_parses_and_labels():
    from fastnn import sweep
    from fastnn.sweep.grid import check_config
    key, values = sweep.parse_grid("lr_schedule=[{name: cosine}, {name: step, step_size: 2}]")
    assert key == "lr_schedule"
    labels = []
    for params in sweep.expand_grid({key: values}):
        config = cfg.resolve({"layers": [784, 10], **params})
        check_config(config)
        labels.append(sweep.trial_label(params, config).split("@")[0])
    assert labels == ["lr_schedule=cosine", "lr_schedule=step-step_size_2"]


def test_plateau_never_decays_to_zero():
    """min_learning_rate 0 and a rate decayed every epoch: it stops at its last
    positive value instead of reaching 0.0, which the kernels refuse (a long
    fit with lr_decay failed in its 323rd epoch, its history lost)."""
    s = Plateau(factor=1e-200, threshold=1.0)
    history = {"lr": [1e-250, 1e-250], "val_accuracy": [0.5, 0.5]}
    assert s.rate(2, 0.1, history=history) == 1e-250
    X = np.random.default_rng(0).normal(size=(40, 4))
    model = MLP([4, 4, 2], seed=0)
    h = model.fit(X, (X[:, 0] > 0).astype(int), epochs=6, lr_decay=1e-160,
                  validation_split=0.25, batch_size=40, verbose=False)
    assert len(h.epoch) == 6 and min(h.history["lr"]) > 0


def test_a_subclass_with_a_name_is_known_to_make_and_configs():
    """The module docstring's recipe: a subclass with a name is made by name."""
    try:
        class Half(schedules.Schedule):
            name = "test-half"

            def __init__(self, warmup_epochs: int = 0) -> None:
                super().__init__(warmup_epochs)

            def _rate(self, epoch, learning_rate, epochs, history):
                return learning_rate / 2
        assert schedules.make("test-half") == Half()
        assert schedules.make({"name": "test-half", "warmup_epochs": 1}).rate(1, 1.0) == 0.5
        with pytest.raises(ValueError, match="exists already"):
            class Other(schedules.Schedule):
                name = "step"
    finally:
        schedules.SCHEDULES.pop("test-half", None)
    assert set(schedules.SCHEDULES) == {"constant", "step", "exponential", "cosine", "plateau"}


@pytest.mark.parametrize("schedule", [Cosine(epochs=4, min_learning_rate=0.1),
                                      Cosine(min_learning_rate=0.1, warmup_epochs=1),
                                      Exponential(0.5, min_learning_rate=0.1)])
def test_a_floor_above_the_base_rate_leaves_the_base_rate(schedule):
    """min_learning_rate above the base (a typo, say) never raises the rate."""
    rates = [schedule.rate(e, 0.01, epochs=4) for e in range(6)]
    assert max(rates) == pytest.approx(0.01) and rates[-1] == pytest.approx(0.01)


@pytest.mark.parametrize("dtype, rate", [("float32", 1e-45), ("float64", 1e-320)])
def test_a_subnormal_learning_rate_is_refused(data, dtype, rate):
    """The training threads flush subnormals to 0: such a rate, given or reached
    by a schedule, would train nothing, silently."""
    X, y, _, _ = data
    with pytest.raises(ValueError, match="learning_rate must be at least"):
        MLP([784, 10], dtype=dtype, seed=0).fit(X[:64], y[:64], epochs=1, learning_rate=rate,
                                                **FIT)
    tiny = float(np.finfo(dtype).tiny)
    with pytest.raises(ValueError, match="smallest normal"):
        MLP([784, 10], dtype=dtype, seed=0).fit(
            X[:64], y[:64], epochs=3, learning_rate=tiny * 1.5,
            lr_schedule=Exponential(0.5), **FIT)


def test_cosine_over_a_fit_of_no_epochs():
    """epochs=0 trains nothing, with any schedule."""
    Cosine().check_epochs(0)
    Cosine(warmup_epochs=2).check_epochs(0)
