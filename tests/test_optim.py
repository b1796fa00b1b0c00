"""Optimizers as objects (SGD, Nesterov, Adam/AdamW), the training state,
dropout, sample and class weights, monitor/min_delta/min_learning_rate,
and the configs that choose them."""
import numpy as np
import pytest

from fastnn import MLP, config, reference
from fastnn import kernels, training
from fastnn.optim import SGD, Adam, OPTIMIZERS, make, params_of

pytestmark = pytest.mark.usefixtures("one_blas_thread")

FIT = dict(batch_size=32, verbose=False)


@pytest.fixture(scope="module")
def data(mnist_small):
    (X, y), (Xt, yt) = mnist_small
    return X[:1200], y[:1200], Xt[:400], yt[:400]


# -- the optimizer objects ------------------------------------------------------

def test_defaults_are_written_once():
    assert params_of("sgd") == {"learning_rate": 0.01, "momentum": 0.0, "nesterov": False,
                                "l1": 0.0, "l2": 0.0}
    assert params_of("adam")["beta2"] == kernels.Hyper._field_defaults["beta2"]
    # fit's shorthand and the configs read them from there
    fit = MLP.fit_defaults()
    assert fit["learning_rate"] == SGD().learning_rate and fit["momentum"] == SGD().momentum
    cfg = config.resolve({"layers": [4, 2], "optimizer": "adam"})
    assert cfg["learning_rate"] == Adam().learning_rate and cfg["momentum"] is None
    assert config.resolve({"layers": [4, 2]})["learning_rate"] == SGD().learning_rate


@pytest.mark.parametrize("kwargs, name", [
    (dict(learning_rate=0), "learning_rate"), (dict(momentum=1.0), "momentum"),
    (dict(l2=-1), "l2"), (dict(nesterov=1), "nesterov")])
def test_sgd_rejects_bad_values(kwargs, name):
    with pytest.raises((TypeError, ValueError), match=name):
        SGD(**kwargs)


@pytest.mark.parametrize("kwargs, name", [
    (dict(beta1=1.0), "beta1"), (dict(beta2=-0.1), "beta2"), (dict(eps=0), "eps"),
    (dict(weight_decay=float("nan")), "weight_decay"), (dict(learning_rate="a"), "learning_rate")])
def test_adam_rejects_bad_values(kwargs, name):
    with pytest.raises((TypeError, ValueError), match=name):
        Adam(**kwargs)


def test_make_names_the_unknown_parameter():
    with pytest.raises(ValueError, match="momentum"):
        make("adam", momentum=0.9)
    with pytest.raises(ValueError, match="optimizer"):
        make("rmsprop")
    assert sorted(OPTIMIZERS) == ["adam", "sgd"]
    opt = make("sgd", learning_rate=0.1, nesterov=True, momentum=0.5)
    assert type(opt)(**opt.get_config()).get_config() == opt.get_config()


def test_step_takes_an_array_like_gradient_and_names_params():
    """grad is array-like (a list works); params must be the flat float array it
    updates, and an error names params or grad, not the optimizer's state."""
    w = np.ones(4)
    SGD(learning_rate=0.5).step(w, [1.0, 1.0, 1.0, 1.0])
    np.testing.assert_array_equal(w, np.full(4, 0.5))
    for opt in (SGD(0.1), Adam(0.1)):
        with pytest.raises(TypeError, match="params must be a 1-D"):
            opt.step(np.ones((2, 2)), np.ones((2, 2)))
        with pytest.raises(ValueError, match="grad must have the shape of params"):
            opt.step(np.ones(4), np.ones(3))
        assert opt.slots is None and opt.t == 0  # nothing bound, no step counted


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_step_is_the_kernel_update(dtype):
    rng = np.random.default_rng(0)
    w = rng.normal(size=50).astype(dtype)
    g = rng.normal(size=50).astype(dtype)
    w_ref, m, v = w.copy(), np.zeros_like(w), np.zeros_like(w)
    opt = Adam(learning_rate=0.01, weight_decay=0.1, l2=0.01)
    for t in (1, 2, 3):
        opt.step(w, g)
        reference.adam_update(w_ref, g, m, v, 0.01, t, 0.9, 0.999, 1e-8, 0.1, 0.0, 0.01)
    tol = 1e-6 if dtype == "float32" else 1e-13
    np.testing.assert_allclose(w, w_ref, rtol=tol, atol=tol)
    assert opt.t == 3 and opt.slots.shape == (2, 50)
    state = opt.state_dict()
    other = Adam(learning_rate=0.01, weight_decay=0.1, l2=0.01)
    other.load_state_dict(state)
    w2 = w.copy()
    opt.step(w, g)
    other.step(w2, g)
    np.testing.assert_array_equal(w, w2)


def test_an_optimizer_bound_to_one_model_refuses_another(data):
    X, y, _, _ = data
    opt = Adam()
    MLP([784, 8, 10], seed=0).fit(X, y, epochs=1, optimizer=opt, **FIT)
    with pytest.raises(ValueError, match="another model"):
        MLP([784, 9, 10], seed=0).fit(X, y, epochs=1, optimizer=opt, **FIT)


def test_optimizer_and_shorthand_are_exclusive(data):
    X, y, _, _ = data
    with pytest.raises(ValueError, match="momentum"):
        MLP([784, 8, 10], seed=0).fit(X, y, optimizer=Adam(), momentum=0.9, **FIT)
    with pytest.raises(TypeError, match="optimizer"):
        MLP([784, 8, 10], seed=0).fit(X, y, optimizer=object(), **FIT)
    # passed at the default value is still passed
    with pytest.raises(ValueError, match="learning_rate"):
        MLP([784, 8, 10], seed=0).fit(X, y, optimizer=Adam(), learning_rate=0.01, **FIT)


# -- training with each optimizer --------------------------------------------------

OPTIMIZER_CASES = {
    "sgd": lambda: SGD(0.05, momentum=0.9),
    "nesterov": lambda: SGD(0.05, momentum=0.9, nesterov=True, l1=1e-5),
    "adam": lambda: Adam(0.002),
    "adamw": lambda: Adam(0.002, weight_decay=0.01, l2=1e-4),
}


@pytest.mark.parametrize("case", sorted(OPTIMIZER_CASES))
def test_each_optimizer_learns_and_is_bit_reproducible(data, case):
    X, y, Xt, yt = data
    runs = []
    for _ in range(2):
        model = MLP([784, 32, 10], seed=3, dropout=0.2)
        model.fit(X, y, epochs=4, optimizer=OPTIMIZER_CASES[case](), **FIT)
        runs.append(model)
    np.testing.assert_array_equal(runs[0].parameters, runs[1].parameters)
    assert runs[0].score(Xt, yt) > 0.8
    assert runs[0].optimizer_.t == 4 * int(np.ceil(1200 / 32))


@pytest.mark.parametrize("case", sorted(OPTIMIZER_CASES))
def test_compiled_trainer_matches_the_numpy_twin(data, case):
    X, y, _, _ = data
    X64 = X.astype(np.float64)
    out = []
    for kern in (None, reference):
        model = MLP([784, 24, 12, 10], seed=5, dtype="float64", dropout=[0.3, 0.1],
                    input_dropout=0.1)
        training.fit(model, X64, y, epochs=2, batch_size=32, optimizer=OPTIMIZER_CASES[case](),
                     validation_split=0.0,
                     validation_data=None, early_stopping=None, lr_decay=None,
                     lr_decay_threshold=0.001, verbose=False, callbacks=None, checkpoint=None,
                     class_weight="balanced", kernels=kern)
        out.append(model.parameters.copy())
    np.testing.assert_allclose(out[0], out[1], rtol=1e-9, atol=1e-11)


def test_one_adam_object_continues_across_fits(data):
    X, y, _, _ = data
    once = MLP([784, 16, 10], seed=1)
    once.fit(X, y, epochs=2, optimizer=Adam(0.003), **FIT)
    twice = MLP([784, 16, 10], seed=1)
    opt = Adam(0.003)
    twice.fit(X, y, epochs=1, optimizer=opt, **FIT)
    twice.fit(X, y, epochs=1, optimizer=opt, **FIT)
    np.testing.assert_array_equal(twice.parameters, once.parameters)
    assert opt.t == once.optimizer_.t


@pytest.mark.parametrize("dtype, eps, reduction", [("float32", 1e-40, "mean"),
                                                    ("float64", 1e-310, "mean"),
                                                    ("float32", 1e-37, "sum")])
def test_adam_eps_below_the_dtypes_smallest_normal_is_refused(data, dtype, eps, reduction):
    # the training threads flush subnormals to 0: such an eps made Adam divide
    # 0 by 0 for an input that is always 0 (a silent divergence, weights kept)
    X, y, _, _ = data
    model = MLP([784, 8, 10], seed=0, dtype=dtype)
    before = model.parameters.copy()
    with pytest.raises(ValueError, match="optimizer.eps must be at least"):
        model.fit(X[:64], y[:64], epochs=1, optimizer=Adam(0.01, eps=eps),
                  loss_reduction=reduction, batch_size=32)
    np.testing.assert_array_equal(model.parameters, before)


def test_loss_reduction_sum_with_adam_is_the_mean_step_with_scaled_eps(data):
    X, y, _, _ = data
    a = MLP([784, 16, 10], seed=2, dtype="float64")
    a.fit(X, y, epochs=1, optimizer=Adam(0.01, eps=1e-3, l2=0.5), loss_reduction="sum", **FIT)
    b = MLP([784, 16, 10], seed=2, dtype="float64")
    b.fit(X, y, epochs=1, optimizer=Adam(0.01, eps=1e-3 / 32, l2=0.5 / 32), **FIT)
    np.testing.assert_allclose(a.parameters, b.parameters, rtol=1e-10, atol=1e-12)


# -- checkpoints: the whole training state -------------------------------------------

def test_checkpoint_resume_is_bit_identical_with_adam_dropout_weights(data, tmp_path):
    X, y, Xt, yt = data
    kw = dict(validation_split=0.2, early_stopping=5, monitor="val_accuracy",
              class_weight="balanced", lr_decay=0.5, **FIT)
    full = MLP([784, 16, 10], seed=4, dropout=0.25, input_dropout=0.1)
    h_full = full.fit(X, y, epochs=4, optimizer=Adam(0.003), **kw)
    part = MLP([784, 16, 10], seed=4, dropout=0.25, input_dropout=0.1)
    path = tmp_path / "ck.npz"
    part.fit(X, y, epochs=2, optimizer=Adam(0.003), checkpoint=path, **kw)
    resumed = MLP([784, 16, 10], seed=4, dropout=0.25, input_dropout=0.1)
    opt = Adam(0.003)
    h = resumed.fit(X, y, epochs=4, optimizer=opt, checkpoint=path, **kw)
    np.testing.assert_array_equal(resumed.parameters, full.parameters)
    assert h.history["loss"] == h_full.history["loss"]
    assert h.best_epoch == h_full.best_epoch and opt.t == full.optimizer_.t
    # another optimizer setting is another run: refused
    with pytest.raises(ValueError, match="different"):
        MLP([784, 16, 10], seed=4, dropout=0.25, input_dropout=0.1).fit(
            X, y, epochs=4, optimizer=Adam(0.004), checkpoint=path, **kw)


# -- dropout ---------------------------------------------------------------------------

def test_dropout_arguments_are_validated():
    with pytest.raises(ValueError, match="dropout"):
        MLP([4, 8, 2], dropout=1.0)
    with pytest.raises(ValueError, match="one rate per hidden layer"):
        MLP([4, 8, 8, 2], dropout=[0.1])
    with pytest.raises(ValueError, match="input_dropout"):
        MLP([4, 8, 2], input_dropout=-0.1)
    with pytest.raises(TypeError, match="dropout"):
        MLP([4, 8, 2], dropout="0.5")
    assert MLP([4, 8, 8, 2], dropout=0.5).dropout == (0.5, 0.5)
    assert "dropout=0.5" in repr(MLP([4, 8, 2], dropout=0.5, seed=0))
    with pytest.raises(ValueError, match="has none"):  # no hidden layer: nothing to drop
        MLP([4, 2], dropout=0.5)
    assert MLP([4, 2], dropout=0.0, input_dropout=0.2).dropout_rates == (0.2,)


def test_dropout_trains_differently_but_predicts_deterministically(data, tmp_path):
    X, y, Xt, yt = data
    plain = MLP([784, 32, 10], seed=0)
    plain.fit(X, y, epochs=2, learning_rate=0.05, **FIT)
    zero = MLP([784, 32, 10], seed=0, dropout=0.0, input_dropout=0.0)
    zero.fit(X, y, epochs=2, learning_rate=0.05, **FIT)
    np.testing.assert_array_equal(plain.parameters, zero.parameters)  # rate 0 == no dropout
    drop = MLP([784, 32, 10], seed=0, dropout=0.5, input_dropout=0.2)
    drop.fit(X, y, epochs=2, learning_rate=0.05, **FIT)
    assert not np.array_equal(drop.parameters, plain.parameters)
    np.testing.assert_array_equal(drop.predict_proba(Xt), drop.predict_proba(Xt))
    drop.save(tmp_path / "m.npz")
    loaded = MLP.load(tmp_path / "m.npz")
    assert loaded.dropout == (0.5,) and loaded.input_dropout == 0.2
    np.testing.assert_array_equal(loaded.predict_proba(Xt), drop.predict_proba(Xt))


# -- sample and class weights ---------------------------------------------------------------

def test_balanced_class_weight_is_the_explicit_sample_weight(data):
    X, y, _, _ = data
    counts = np.bincount(y, minlength=10)
    w = (len(y) / (10 * counts))[y]
    a = MLP([784, 16, 10], seed=0, dtype="float64")
    a.fit(X, y, epochs=1, class_weight="balanced", **FIT)
    b = MLP([784, 16, 10], seed=0, dtype="float64")
    b.fit(X, y, epochs=1, sample_weight=w, **FIT)
    np.testing.assert_allclose(a.parameters, b.parameters, rtol=1e-12, atol=1e-14)
    c = MLP([784, 16, 10], seed=0, dtype="float64")
    c.fit(X, y, epochs=1, class_weight={int(k): float(v) for k, v in enumerate(len(y) / (10 * counts))},
          **FIT)
    np.testing.assert_allclose(c.parameters, b.parameters, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_a_named_optimizer_continues_across_fits(data, name):
    """fit(optimizer="adam") twice trains as one fit of both epochs (the state
    goes on, as the docstring says a fit does), not with Adam restarted."""
    X, y, _, _ = data
    X, y = X[:600], y[:600]
    whole = MLP([784, 16, 10], seed=3)
    whole.fit(X, y, epochs=3, optimizer=name, **FIT)
    parts = MLP([784, 16, 10], seed=3)
    parts.fit(X, y, epochs=2, optimizer=name, **FIT)
    parts.fit(X, y, epochs=1, optimizer=name, **FIT)
    assert parts.optimizer_.t == whole.optimizer_.t
    np.testing.assert_array_equal(parts.parameters, whole.parameters)


def test_balanced_class_weight_counts_the_classes_present():
    """As scikit-learn's compute_class_weight: n / (classes present * count), so a
    model with more outputs than the data's classes keeps a mean weight of 1."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5))
    y = rng.integers(0, 3, 300)
    want = (len(y) / (3 * np.bincount(y)))[y]
    a = MLP([5, 4, 10], seed=0, dtype="float64")
    a.fit(X, y, epochs=2, class_weight="balanced", **FIT)
    b = MLP([5, 4, 10], seed=0, dtype="float64")
    b.fit(X, y, epochs=2, sample_weight=want, **FIT)
    np.testing.assert_array_equal(a.parameters, b.parameters)


def test_unit_weights_train_as_no_weights(data):
    X, y, _, _ = data
    a = MLP([784, 16, 10], seed=0, dtype="float64")
    a.fit(X, y, epochs=1, **FIT)
    b = MLP([784, 16, 10], seed=0, dtype="float64")
    b.fit(X, y, epochs=1, sample_weight=np.ones(len(y)), **FIT)
    np.testing.assert_allclose(a.parameters, b.parameters, rtol=1e-12, atol=1e-14)


def test_a_zero_weight_class_is_never_learned(data):
    X, y, Xt, yt = data
    model = MLP([784, 32, 10], seed=0)
    model.fit(X, y, epochs=5, learning_rate=0.05, momentum=0.9, class_weight={3: 0.0}, **FIT)
    pred = model.predict(Xt)
    assert (pred == 3).sum() == 0 and model.score(Xt, yt) > 0.7


@pytest.mark.parametrize("kwargs, exc, name", [
    (dict(sample_weight=np.ones(5)), ValueError, "sample_weight"),
    (dict(sample_weight=-np.ones(1200)), ValueError, "sample_weight"),
    (dict(sample_weight=np.full(1200, np.nan)), ValueError, "sample_weight"),
    (dict(sample_weight=np.array(["a"] * 1200)), TypeError, "sample_weight"),
    (dict(sample_weight=np.zeros(1200)), ValueError, "weight 0"),
    (dict(class_weight="balance"), ValueError, "class_weight"),
    (dict(class_weight={10: 1.0}), ValueError, "class_weight"),
    (dict(class_weight={0: -1.0}), ValueError, "class_weight"),
    (dict(class_weight=[1.0] * 10), TypeError, "class_weight"),
    # below float32's smallest normal: training flushes it to 0 (the row would not train)
    (dict(sample_weight=np.full(1200, 1e-38)), ValueError, "below 1.17549e-38"),
    (dict(class_weight={0: 1e-40}), ValueError, "smallest normal float32"),
])
def test_bad_weights_are_rejected_before_training(data, kwargs, exc, name):
    X, y, _, _ = data
    model = MLP([784, 8, 10], seed=0)
    before = model.parameters.copy()
    with pytest.raises(exc, match=name):
        model.fit(X, y, epochs=1, **kwargs, **FIT)
    np.testing.assert_array_equal(model.parameters, before)


# -- early stopping and the schedule -----------------------------------------------------------

def test_min_delta_counts_small_gains_as_no_gain(data):
    X, y, Xt, yt = data
    model = MLP([784, 16, 10], seed=0)
    h = model.fit(X, y, epochs=10, learning_rate=0.05, validation_data=(Xt, yt),
                  early_stopping=2, min_delta=10.0, **FIT)
    assert h.best_epoch == 0 and h.stopped_epoch == 2 and len(h.epoch) == 3


def test_monitor_val_accuracy_picks_the_most_accurate_epoch(data):
    X, y, Xt, yt = data
    model = MLP([784, 16, 10], seed=0)
    h = model.fit(X, y, epochs=6, learning_rate=0.05, validation_data=(Xt, yt),
                  monitor="val_accuracy", **FIT)
    acc = h.history["val_accuracy"]
    assert h.best_epoch == int(np.argmax(acc))
    assert model.evaluate(Xt, yt)[1] == acc[h.best_epoch]
    with pytest.raises(ValueError, match="monitor"):
        model.fit(X, y, monitor="loss", validation_data=(Xt, yt), **FIT)


def test_min_learning_rate_floors_the_plateau_decay(data):
    X, y, Xt, yt = data
    model = MLP([784, 16, 10], seed=0)
    h = model.fit(X, y, epochs=8, learning_rate=0.05, validation_data=(Xt, yt),
                  lr_decay=0.1, lr_decay_threshold=1.0, min_learning_rate=1e-3, **FIT)
    # the first epoch has no gain to judge; then every epoch decays, down to the floor
    assert h.history["lr"][:4] == pytest.approx([0.05, 0.05, 0.005, 0.001])
    assert min(h.history["lr"]) == pytest.approx(1e-3)


# -- configs -----------------------------------------------------------------------------

def test_config_chooses_the_optimizer_and_refuses_foreign_keys():
    cfg = config.resolve({"layers": [784, 10], "optimizer": "adam", "learning_rate": 0.002,
                          "weight_decay": 0.01, "dropout": 0.0})
    _, _, fit = config.split(cfg)
    assert isinstance(fit["optimizer"], Adam) and fit["optimizer"].weight_decay == 0.01
    with pytest.raises(ValueError, match="momentum"):
        config.resolve({"layers": [784, 10], "optimizer": "adam", "momentum": 0.9})
    with pytest.raises(ValueError, match="optimizer"):
        config.resolve({"layers": [784, 10], "optimizer": "lbfgs"})
    assert config.split(config.resolve({"layers": [784, 10], "class_weight": {"3": 2.0}}))[2][
        "class_weight"] == {3: 2.0}


@pytest.mark.parametrize("name", ["mnist-dropout.yaml", "best-adam.yaml"])
def test_shipped_configs_resolve(name):
    path = config.SHIPPED / name
    cfg = config.resolve(config.load(path))
    model_kw, _, fit_kw = config.split(cfg)
    MLP(**model_kw)


def test_scaled_weights_are_not_mistaken_for_divergence():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 8)); y = (X[:, 0] > 0).astype(int)
    runs = []
    for scale in (1.0, 1500.0):
        model = MLP([8, 16, 2], seed=0)
        h = model.fit(X, y, epochs=3, batch_size=32, optimizer=Adam(0.01),
                      sample_weight=np.full(400, scale), verbose=False)
        runs.append((len(h.epoch), h.diverged, model.optimizer_.t))
    assert runs[0] == runs[1] == (3, False, 39)


def test_min_learning_rate_never_raises_the_rate(data):
    X, y, Xt, yt = data
    model = MLP([784, 8, 10], seed=0)
    h = model.fit(X, y, epochs=3, optimizer=Adam(0.001), validation_data=(Xt, yt),
                  lr_decay=0.5, lr_decay_threshold=1.0, min_learning_rate=0.05, **FIT)
    assert h.history["lr"] == [0.001] * 3


def test_adam_step_count_matches_the_parameters_after_ctrl_c(data):
    """Ctrl-C during a compiled chunk: t counts the steps the parameters took."""
    import _thread
    import threading
    import warnings
    X, y, _, _ = data
    X = np.tile(X, (8, 1)); y = np.tile(y, 8)          # 9,600 rows: two chunks at batch 32
    model = MLP([784, 64, 10], seed=0)
    opt = Adam(0.001)

    class Interrupt(training.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                threading.Timer(0.003, _thread.interrupt_main).start()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        h = model.fit(X, y, epochs=3, optimizer=opt, callbacks=[Interrupt()], **FIT)
    assert h.interrupted
    # replay as many steps as t says, from the same start: the same parameters
    replay = MLP([784, 64, 10], seed=0)
    steps = opt.t
    full, rest = divmod(steps, -(-9600 // 32))
    ropt = Adam(0.001)
    if full:
        replay.fit(X, y, epochs=full, optimizer=ropt, **FIT)
    if rest:
        order = training.epoch_order(np.arange(9600, dtype=np.intp), 0, full)
        ws = training.Workspace(np.array(replay.layers, np.intp), 32, replay.dtype)
        ropt.bind(replay.n_params, replay.dtype)
        kernels.train_batches(np.ascontiguousarray(X, np.float32), y.astype(np.intp), order, 0,
                              rest * 32, 32, np.array(replay.layers, np.intp), "relu",
                              replay.parameters, ropt.slots, ws, ropt.hyper(), seed=0,
                              epoch=full, n_threads=1)
    np.testing.assert_array_equal(replay.parameters, model.parameters)
