"""fit(): History, validation, early stopping, learning-rate decay, callbacks,
continued training, divergence, Ctrl-C and checkpoint/resume."""
import _thread
import json
import re
import threading
import time
import warnings

import numpy as np
import pytest

from fastnn import MLP, Callback, History, TrainingDivergedWarning
from fastnn import training

FIT = dict(batch_size=32, learning_rate=0.05, momentum=0.9, verbose=False)


pytestmark = pytest.mark.usefixtures("one_blas_thread")


@pytest.fixture(scope="module")
def data(mnist_small):
    """1,500 training rows, 500 test rows of real MNIST."""
    (X, y), (Xt, yt) = mnist_small
    return X[:1500], y[:1500], Xt[:500], yt[:500]


def _no_time(history):
    return {k: v for k, v in history.history.items() if k != "time"}


class Recorder(Callback):
    def __init__(self, stop_after=None):
        self.calls, self.logs, self.stop_after = [], [], stop_after

    def on_train_begin(self, logs=None):
        self.calls.append("train_begin")

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(f"begin{epoch}")

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(f"end{epoch}")
        self.logs.append(logs)
        if self.stop_after is not None and epoch >= self.stop_after:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        self.calls.append("train_end")
        self.end_logs = logs


# -- History ---------------------------------------------------------------------

def test_history_keys_values_and_json(data):
    X, y, _, _ = data
    model = MLP([784, 16, 10], seed=0)
    history = model.fit(X, y, epochs=3, validation_split=0.2, **FIT)
    assert isinstance(history, History) and model.history_ is history
    h = history.history
    assert set(h) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "time"}
    assert all(len(v) == 3 for v in h.values())
    assert history.epoch == [0, 1, 2]
    for key in ("loss", "val_loss"):
        assert all(isinstance(v, float) and 0 < v < 10 for v in h[key])
    for key in ("accuracy", "val_accuracy"):
        assert all(0 <= v <= 1 for v in h[key])
    assert h["val_accuracy"][-1] > 0.8
    assert h["lr"] == [0.05] * 3
    assert all(t > 0 for t in h["time"])
    text = json.dumps(history.history)
    assert json.loads(text) == history.history
    restored = History.from_dict(json.loads(history.to_json()))
    assert restored.history == history.history and restored.best_epoch == history.best_epoch
    assert history.params["epochs"] == 3 and history.params["batch_size"] == 32
    # stratified, round(1500 * 0.2) rows held out
    assert history.params["samples"] + history.params["validation_samples"] == 1500
    assert history.params["validation_samples"] == 300
    assert history.params["learning_rate"] == 0.05 and history.params["momentum"] == 0.9
    json.dumps(history.params)
    assert history.best_epoch in (0, 1, 2) and history.stopped_epoch is None
    assert not history.diverged and not history.interrupted
    assert "3 epochs" in repr(history) and "val_loss" in repr(history)


def test_history_without_validation(data):
    X, y, _, _ = data
    model = MLP([784, 10], seed=0)
    history = model.fit(X, y, epochs=2, **FIT)
    assert set(history.history) == {"loss", "accuracy", "lr", "time"}
    assert history.best_epoch is None
    # training accuracy is the running accuracy over the epoch's batches
    assert 0.5 < history.history["accuracy"][-1] <= 1


def test_numpy_scalar_hyperparameters_stay_json(data, tmp_path):
    X, y, _, _ = data
    model = MLP([784, 10], seed=0)
    history = model.fit(X[:300], y[:300], epochs=2, learning_rate=np.float32(0.05),
                        momentum=np.float64(0.5), l2=np.int64(0), verbose=False,
                        checkpoint=tmp_path / "ck.npz")
    json.dumps(history.history)
    json.dumps(history.params)
    assert all(type(v) is float for v in history.history["lr"])
    assert (tmp_path / "ck.npz").exists()


def test_epochs_zero_changes_nothing(data):
    X, y, _, _ = data
    model = MLP([784, 10], seed=0)
    before = model.parameters.copy()
    history = model.fit(X, y, epochs=0, **FIT)
    assert history.epoch == [] and history.history == {}
    np.testing.assert_array_equal(model.parameters, before)


# -- validation, best epoch, early stopping, lr decay ----------------------------

def test_history_json_is_standard_json_with_nan_as_null():
    """A callback's NaN metric is JSON's null in history.json, and NaN read back."""
    history = History({"epochs": 2})
    history._append(0, {"loss": 0.5, "custom": float("nan")})
    history._append(1, {"loss": 0.25, "custom": float("inf")})
    text = history.to_json()
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    assert data["history"] == {"loss": [0.5, 0.25], "custom": [None, None]}
    restored = History.from_dict(data)
    assert restored.history["loss"] == [0.5, 0.25]
    assert all(np.isnan(restored.history["custom"]))


def test_validation_split_is_stratified_and_deterministic(mnist_small):
    (X, y), _ = mnist_small
    y = y.astype(np.intp)
    train, val = training.stratified_split(y, 0.1, seed=3, n_classes=10)
    assert len(np.intersect1d(train, val)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(len(y)))
    counts = np.bincount(y, minlength=10)
    assert len(val) == int(np.floor(len(y) * 0.1 + 0.5))
    held = np.bincount(y[val], minlength=10)
    assert np.all((held == np.floor(counts * 0.1)) | (held == np.floor(counts * 0.1) + 1))
    np.testing.assert_allclose(np.bincount(y[val], minlength=10) / len(val), counts / len(y),
                               atol=0.005)
    # shuffled: not just the first rows of each class
    assert not np.array_equal(val, np.sort(val)[: len(val)]) or val.max() > len(y) // 2
    first = np.concatenate([np.flatnonzero(y == c)[: int(np.floor(counts[c] * 0.1 + 0.5))]
                            for c in range(10)])
    assert not np.array_equal(np.sort(first), val)
    again = training.stratified_split(y, 0.1, seed=3, n_classes=10)
    np.testing.assert_array_equal(again[1], val)
    other = training.stratified_split(y, 0.1, seed=4, n_classes=10)
    assert not np.array_equal(other[1], val)


@pytest.mark.parametrize("counts, fraction", [
    ([20, 20, 20, 20, 20], 0.33),      # 6.6 a class: 33 in all, not 5 x 7 = 35
    ([34, 33, 33], 0.5),               # 50, not 17 + 17 + 17 = 51
    ([60, 30, 9, 1], 0.01),            # 1 row: the largest remainder (class 0)
    ([5, 5, 0, 5], 0.2),               # an absent class gets nothing
    ([1000, 3, 2, 1], 0.25),
])
def test_validation_split_holds_out_round_n_times_split_rows(counts, fraction):
    y = np.repeat(np.arange(len(counts)), counts).astype(np.intp)
    train, val = training.stratified_split(y, fraction, seed=0, n_classes=len(counts))
    assert len(val) == int(np.floor(len(y) * fraction + 0.5))
    assert len(train) + len(val) == len(y) and len(np.intersect1d(train, val)) == 0
    share = np.asarray(counts) * fraction
    held = np.bincount(y[val], minlength=len(counts))
    assert np.all((held >= np.floor(share)) & (held <= np.ceil(share)))


def test_fit_validates_on_the_stratified_split(data):
    X, y, _, _ = data
    model = MLP([784, 16, 10], seed=8)
    history = model.fit(X, y, epochs=3, validation_split=0.25, **FIT)
    _, val = training.stratified_split(y.astype(np.intp), 0.25, 8, 10)
    assert history.params["validation_samples"] == len(val)
    # the model ends with the best epoch's weights: re-evaluating gives its val metrics
    best = history.best_epoch
    assert model.evaluate(X[val], y[val]) == (history.history["val_loss"][best],
                                              history.history["val_accuracy"][best])
    # deterministic: the same seed gives the same split and metrics
    again = MLP([784, 16, 10], seed=8).fit(X, y, epochs=3, validation_split=0.25, **FIT)
    assert _no_time(again) == _no_time(history)


def test_validation_data(data):
    X, y, Xt, yt = data
    model = MLP([784, 16, 10], seed=0)
    history = model.fit(X, y, epochs=2, validation_data=(Xt, yt), **FIT)
    assert history.params["validation_samples"] == len(yt)
    assert history.params["samples"] == len(y)
    best = history.best_epoch
    assert model.evaluate(Xt, yt) == (history.history["val_loss"][best],
                                      history.history["val_accuracy"][best])
    # a list is accepted as well as a tuple
    model2 = MLP([784, 16, 10], seed=0)
    history2 = model2.fit(X, y, epochs=2, validation_data=[Xt.tolist(), list(yt)], **FIT)
    assert _no_time(history2) == _no_time(history)


def _overfitting_run(data, **kwargs):
    """100 training rows, a large learning rate: the validation loss goes up and down."""
    X, y, Xt, yt = data
    model = MLP([784, 64, 10], seed=0)
    record = Recorder()
    args = dict(epochs=30, batch_size=10, learning_rate=0.5, momentum=0.9, verbose=False,
                validation_data=(Xt, yt), callbacks=[record])
    args.update(kwargs)
    history = model.fit(X[:100], y[:100], **args)
    return model, history, record


def test_best_epoch_weights_are_restored(data):
    _, _, Xt, yt = data
    model, history, record = _overfitting_run(data, epochs=8)
    val_loss = history.history["val_loss"]
    best = history.best_epoch
    assert best == int(np.argmin(val_loss))
    assert best < len(val_loss) - 1 and val_loss[-1] > val_loss[best]  # restoring matters
    assert [logs["val_loss"] for logs in record.logs] == val_loss
    assert model.evaluate(Xt, yt)[0] == val_loss[best]
    assert model.evaluate(Xt, yt)[0] != val_loss[-1]


def test_early_stopping(data):
    model, history, _ = _overfitting_run(data, early_stopping=3)
    assert history.stopped_epoch is not None
    n = len(history.epoch)
    assert n == history.stopped_epoch + 1 < 30
    assert history.stopped_epoch - history.best_epoch == 3
    val_loss = history.history["val_loss"]
    assert min(val_loss[history.best_epoch + 1:]) >= val_loss[history.best_epoch]
    assert model.epochs_trained == n


def test_lr_decay(data):
    X, y, Xt, yt = data
    model = MLP([784, 16, 10], seed=0)
    # a threshold above any possible gain: decay after every epoch but the first
    history = model.fit(X, y, epochs=4, validation_data=(Xt, yt), lr_decay=0.5,
                        lr_decay_threshold=1.0, **FIT)
    assert history.history["lr"] == [0.05, 0.05, 0.025, 0.0125]
    # a threshold below any possible gain: never decays
    history = MLP([784, 16, 10], seed=0).fit(X, y, epochs=3, validation_data=(Xt, yt),
                                               lr_decay=0.5, lr_decay_threshold=-1.0, **FIT)
    assert history.history["lr"] == [0.05] * 3


def test_lr_decay_changes_training(data):
    X, y, Xt, yt = data
    a = MLP([784, 16, 10], seed=0)
    a.fit(X, y, epochs=3, validation_data=(Xt, yt), lr_decay=0.1, lr_decay_threshold=1.0, **FIT)
    b = MLP([784, 16, 10], seed=0)
    b.fit(X, y, epochs=3, validation_data=(Xt, yt), **FIT)
    assert not np.array_equal(a.parameters, b.parameters)


# -- continued training, callbacks -----------------------------------------------

def test_fit_continues_from_weights_and_momentum(data):
    X, y, _, _ = data
    once = MLP([784, 16, 10], seed=1)
    h_once = once.fit(X, y, epochs=2, **FIT)
    twice = MLP([784, 16, 10], seed=1)
    h1 = twice.fit(X, y, epochs=1, **FIT)
    assert np.abs(twice.optimizer_.slots[0]).max() > 0
    h2 = twice.fit(X, y, epochs=1, **FIT)
    assert twice.epochs_trained == 2 and len(h2.epoch) == 1
    # two calls of one epoch == one call of two epochs, bit for bit
    np.testing.assert_array_equal(twice.parameters, once.parameters)
    np.testing.assert_array_equal(twice.optimizer_.slots[0], once.optimizer_.slots[0])
    assert h1.history["loss"] + h2.history["loss"] == h_once.history["loss"]
    # ... which needs the momentum: without it the second call differs
    reset = MLP([784, 16, 10], seed=1)
    reset.fit(X, y, epochs=1, **FIT)
    reset.optimizer_.reset()
    reset.fit(X, y, epochs=1, **FIT)
    assert not np.array_equal(reset.parameters, once.parameters)
    # and so does a fresh model trained for one epoch
    fresh = MLP([784, 16, 10], seed=1)
    fresh.fit(X, y, epochs=1, **FIT)
    assert not np.array_equal(fresh.parameters, twice.parameters)


def test_callbacks_receive_logs_and_can_stop(data):
    X, y, _, _ = data
    record = Recorder(stop_after=1)
    model = MLP([784, 16, 10], seed=0)
    history = model.fit(X, y, epochs=10, validation_split=0.2, callbacks=[record], **FIT)
    assert record.model is model
    assert record.calls == ["train_begin", "begin0", "end0", "begin1", "end1", "train_end"]
    assert len(history.epoch) == 2 and model.epochs_trained == 2
    assert [set(logs) for logs in record.logs] == [set(history.history)] * 2
    for i, logs in enumerate(record.logs):
        assert {k: v[i] for k, v in history.history.items()} == logs
    assert record.end_logs["history"] is history
    # stop_training is reset by the next fit
    history = model.fit(X, y, epochs=2, callbacks=[Recorder()], **FIT)
    assert len(history.epoch) == 2


def test_a_callback_that_raises_leaves_this_fits_history(data):
    """The error propagates; model.history_ is this fit's (its epochs so far), not
    the previous fit's, and the counts agree with the weights."""
    X, y, _, _ = data

    class Raises(Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("from a callback")

    model = MLP([784, 10], seed=0)
    first = model.fit(X, y, epochs=1, **FIT)
    with pytest.raises(RuntimeError, match="from a callback"):
        model.fit(X, y, epochs=5, callbacks=[Raises()], **FIT)
    assert model.history_ is not first and len(model.history_.epoch) == 2
    assert model.epochs_trained == 3


def test_a_callback_that_raises_leaves_the_best_epochs_weights(data):
    """Validating, the model holds history_.best_epoch's weights when fit ends,
    whether it ends normally, on Ctrl-C or on a callback's error."""
    X, y, _, _ = data
    snapshots = []

    class KeepAndRaise(Callback):
        def on_epoch_end(self, epoch, logs=None):
            snapshots.append(self.model.parameters.copy())
            if epoch == 4:
                raise RuntimeError("from a callback")

    model = MLP([784, 16, 10], seed=0)
    with pytest.raises(RuntimeError, match="from a callback"):
        model.fit(X[:600], y[:600], epochs=8, callbacks=[KeepAndRaise()], validation_split=0.2,
                  **{**FIT, "learning_rate": 0.5})
    best = model.history_.best_epoch
    assert best is not None and len(snapshots) == 5
    np.testing.assert_array_equal(model.parameters, snapshots[best])


def test_a_rate_set_in_on_epoch_begin_is_that_epochs(data):
    """As in Keras: a callback that sets the optimizer's rate when an epoch begins
    trains that epoch at it (it took effect one epoch late)."""
    X, y, _, _ = data

    class Drop(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                self.model.optimizer_.learning_rate = 0.001

    h = MLP([784, 10], seed=0).fit(X[:300], y[:300], epochs=4, callbacks=[Drop()], **FIT)
    assert h.history["lr"] == [0.05, 0.05, 0.001, 0.001]


def test_callback_logs_are_copies(data):
    X, y, _, _ = data

    class Mutator(Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["loss"] = -1.0
            logs["extra"] = 1

    history = MLP([784, 10], seed=0).fit(X, y, epochs=2, callbacks=[Mutator()], **FIT)
    assert all(v > 0 for v in history.history["loss"]) and "extra" not in history.history


# -- robustness of a run: huge batches, divergence, Ctrl-C -----------------------

def test_batch_larger_than_data_is_one_batch():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 20)).astype(np.float32)
    y = rng.integers(0, 3, 50)
    ref = MLP([20, 8, 3], seed=0)
    ref.fit(X, y, epochs=3, batch_size=50, verbose=False)
    for bs in (51, 10**6, 2**31 - 1):  # must not allocate buffers for bs rows
        model = MLP([20, 8, 3], seed=0)
        history = model.fit(X, y, epochs=3, batch_size=bs, verbose=False)
        np.testing.assert_array_equal(model.parameters, ref.parameters)
        assert history.params["batch_size"] == bs


@pytest.mark.parametrize("activation, lr", [("identity", 1e4), ("relu", 1e10)])
def test_divergence_warns_and_keeps_finite_weights(data, activation, lr):
    X, y, Xt, _ = data
    model = MLP([784, 32, 10], activation, seed=0)
    with pytest.warns(TrainingDivergedWarning, match="NaN, infinite or runaway"):
        history = model.fit(X, y, epochs=5, batch_size=32, learning_rate=lr, momentum=0.9,
                            verbose=False)
    assert history.diverged
    assert len(history.epoch) < 5
    assert np.isfinite(model.parameters).all() and np.isfinite(model.optimizer_.slots[0]).all()
    proba = model.predict_proba(Xt)
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-5)
    # still trainable afterwards
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(X, y, epochs=1, **FIT)
    assert np.isfinite(model.parameters).all()


def test_divergence_restores_the_last_finite_weights(data):
    X, y, Xt, yt = data
    model = MLP([784, 32, 10], "identity", seed=0)
    model.fit(X, y, epochs=1, validation_data=(Xt, yt), **FIT)
    good = model.parameters.copy()
    with pytest.warns(TrainingDivergedWarning):
        history = model.fit(X, y, epochs=3, batch_size=32, learning_rate=1e5, momentum=0.9,
                            validation_data=(Xt, yt), verbose=False)
    assert history.diverged and history.epoch == [] and history.best_epoch is None
    np.testing.assert_array_equal(model.parameters, good)  # back to where this fit started
    assert model.epochs_trained == 1
    assert model.score(Xt, yt) > 0.7


class _DivergeAt(Callback):
    """Switches training to absurd inputs from epoch ``epoch`` on (the trainer
    reads X in place, so scaling it in a callback changes the next epochs)."""

    def __init__(self, X, epoch):
        self.X, self.epoch = X, epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            self.X *= 1e30


def test_divergence_after_good_epochs_restores_best_epoch(data):
    X, y, Xt, yt = data
    X = np.array(X[:600], dtype=np.float32)  # C-contiguous float32: used in place by fit
    model = MLP([784, 32, 10], seed=0)
    with pytest.warns(TrainingDivergedWarning):
        history = model.fit(X, y[:600], epochs=6, validation_data=(Xt, yt),
                            callbacks=[_DivergeAt(X, 3)], **FIT)
    assert history.diverged and len(history.epoch) == 3
    assert np.isfinite(model.parameters).all()
    best = history.best_epoch
    assert best is not None
    assert model.evaluate(Xt, yt) == (history.history["val_loss"][best],
                                      history.history["val_accuracy"][best])


def test_overflow_in_the_last_batch_of_an_epoch_is_divergence():
    """The loss of the only batch is finite, but its update overflows the weights:
    that must count as divergence too, not leave inf/NaN weights behind."""
    X = np.full((20, 4), 100.0, dtype=np.float32)
    y = np.arange(20) % 3
    model = MLP([4, 3], seed=0)
    start = model.parameters.copy()
    with pytest.warns(TrainingDivergedWarning):
        history = model.fit(X, y, epochs=1, batch_size=20, learning_rate=1e38, verbose=False)
    assert history.diverged and history.epoch == []
    np.testing.assert_array_equal(model.parameters, start)
    assert np.isfinite(model.predict_proba(X)).all()


def test_overflowing_validation_loss_is_divergence():
    """Training losses finite, weights finite, but the updated network's outputs
    overflow: the validation loss is inf/NaN, which is a divergence too.

    Identical rows with balanced labels: every gradient is zero up to rounding
    (whose value depends on the instruction set's order of the sums), so the
    L1 term alone moves the weights, to +-lr * l1 = +-1e34 each, and the
    output (about 1e34 * 1e34) overflows on every instruction set."""
    X = np.ones((10, 1), np.float32)
    y = np.arange(10) % 2
    model = MLP([1, 1, 2], "identity", seed=0)
    start = model.parameters.copy()
    with pytest.warns(TrainingDivergedWarning):
        history = model.fit(X, y, epochs=1, batch_size=10, learning_rate=1e38, l1=1e-4,
                            validation_data=(X, y), verbose=False)
    assert history.diverged and history.history == {}
    np.testing.assert_array_equal(model.parameters, start)
    np.testing.assert_array_equal(model.predict_proba(X[:1]),
                                  MLP([1, 1, 2], "identity", seed=0).predict_proba(X[:1]))
    # without validation data the trainer cannot see it; inference then refuses
    model = MLP([1, 1, 2], "identity", seed=0)
    model.fit(X, y, epochs=1, batch_size=10, learning_rate=1e38, l1=1e-4, verbose=False)
    assert np.isfinite(model.parameters).all()
    with pytest.raises(ValueError, match="overflow"):
        model.predict_proba(X)


class _InterruptDuring(Callback):
    """Sends a real Ctrl-C (``_thread.interrupt_main`` from another thread)
    shortly after epoch ``epoch`` begins, and makes sure it lands in that epoch."""

    def __init__(self, epoch, delay=0.0):
        self.epoch, self.delay, self.timer, self.sent_at = epoch, delay, None, None

    def _send(self):
        self.sent_at = time.perf_counter()
        _thread.interrupt_main()

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            self.timer = threading.Timer(self.delay, self._send)
            self.timer.start()

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            self.timer.join()
            for _ in range(200):  # the pending KeyboardInterrupt is raised here at the latest
                time.sleep(0.01)
            raise AssertionError("the interrupt never arrived")


def test_ctrl_c_returns_history_promptly(mnist):
    """A real Ctrl-C in the middle of a long epoch (all 60,000 rows) stops within a
    chunk of batches, and fit returns normally."""
    (X, y), (Xt, yt) = mnist
    model = MLP([784, 128, 10], seed=0)
    cb = _InterruptDuring(epoch=0, delay=0.05)  # an epoch takes several times longer
    with pytest.warns(RuntimeWarning, match="interrupted") as record:
        history = model.fit(X, y, epochs=10**6, batch_size=32, learning_rate=0.05,
                            momentum=0.9, verbose=False, callbacks=[cb])
    assert history.interrupted and not history.diverged
    # (almost always inside epoch 0; on a starved machine perhaps just after it)
    assert len(history.epoch) <= 1 and model.epochs_trained == len(history.epoch)
    done = [int(m.group(1)) for w in record
            if (m := re.search(r"after (\d+) samples", str(w.message)))]
    assert all(0 <= d < len(y) for d in done), done  # stopped inside the epoch
    # promptness in samples, not seconds (no wall-clock limit): the interrupt was
    # sent and fit stopped inside the epoch it landed in
    assert cb.sent_at is not None
    assert np.isfinite(model.parameters).all() and np.isfinite(model.optimizer_.slots[0]).all()
    assert model.score(Xt[:1000], yt[:1000]) > 0.5  # it did learn before the interrupt
    # usable afterwards: predicts and trains again
    history = model.fit(X[:500], y[:500], epochs=1, verbose=False)
    assert not history.interrupted and len(history.epoch) == 1


def test_ctrl_c_with_batches_larger_than_a_chunk(mnist):
    """Batches of 20,000 rows (> CHUNK_ROWS): each batch is one compiled call, and
    Ctrl-C stops fit at the next batch boundary (the README's promise)."""
    (X, y), _ = mnist
    assert training.chunk_rows(20000) == 20000 > training.CHUNK_ROWS
    model = MLP([784, 32, 10], seed=0)
    cb = _InterruptDuring(epoch=1)
    with pytest.warns(RuntimeWarning, match="interrupted") as record:
        history = model.fit(X, y, epochs=10**6, batch_size=20000, learning_rate=0.1,
                            verbose=False, callbacks=[cb])
    assert history.interrupted and len(history.epoch) <= 2
    done = [int(m.group(1)) for w in record
            if (m := re.search(r"after (\d+) samples", str(w.message)))]
    assert all(d % 20000 == 0 and d < len(y) for d in done), done
    assert np.isfinite(model.parameters).all()


def test_ctrl_c_between_epochs_is_caught(data):
    X, y, Xt, yt = data

    class CtrlC(Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    model = MLP([784, 16, 10], seed=0)
    with pytest.warns(RuntimeWarning, match="interrupted"):
        history = model.fit(X, y, epochs=5, validation_data=(Xt, yt), callbacks=[CtrlC()],
                            **FIT)
    assert history.interrupted and len(history.epoch) == 2


# -- checkpoints -------------------------------------------------------------------

def test_checkpoint_in_a_missing_folder_fails_before_training(tmp_path):
    X = np.zeros((8, 3), np.float32)
    model = MLP([3, 2], seed=0)
    (tmp_path / "afile").write_text("x")
    for bad, error, why in ((tmp_path / "none" / "ck.npz", FileNotFoundError, "does not exist"),
                            (tmp_path, IsADirectoryError, "is a folder"),
                            (tmp_path / "afile" / "ck.npz", NotADirectoryError, "is not a folder")):
        with pytest.raises(error, match=why):
            model.fit(X, np.zeros(8, int), epochs=1, checkpoint=bad, verbose=False)
    assert model.epochs_trained == 0


CK = dict(batch_size=32, learning_rate=0.05, momentum=0.9, verbose=False,
          validation_split=0.2, lr_decay=0.5, lr_decay_threshold=0.11)


def _assert_same_run(a, ha, b, hb):
    np.testing.assert_array_equal(a.parameters, b.parameters)
    np.testing.assert_array_equal(a.optimizer_.slots, b.optimizer_.slots)
    assert a.optimizer_.t == b.optimizer_.t
    assert _no_time(ha) == _no_time(hb)
    assert ha.epoch == hb.epoch
    assert (ha.best_epoch, ha.stopped_epoch) == (hb.best_epoch, hb.stopped_epoch)
    assert ha.params == hb.params
    assert a.epochs_trained == b.epochs_trained


@pytest.mark.parametrize("how", ["fewer-epochs", "stop_training", "ctrl-c"])
def test_checkpoint_resume_is_bitwise_identical(data, tmp_path, how):
    X, y, _, _ = data
    X, y = X[:1000], y[:1000]
    full = MLP([784, 16, 10], seed=4)
    h_full = full.fit(X, y, epochs=4, checkpoint=tmp_path / "full.npz", **CK)
    assert len(h_full.epoch) == 4

    path = tmp_path / "part.npz"
    first = MLP([784, 16, 10], seed=4)
    if how == "fewer-epochs":
        h = first.fit(X, y, epochs=2, checkpoint=path, **CK)
    elif how == "stop_training":
        h = first.fit(X, y, epochs=4, checkpoint=path, callbacks=[Recorder(stop_after=1)], **CK)
    else:
        with pytest.warns(RuntimeWarning, match="interrupted"):
            h = first.fit(X, y, epochs=4, checkpoint=path, callbacks=[_InterruptDuring(2)],
                          **CK)
        assert h.interrupted
    assert len(h.epoch) == 2
    assert path.exists()

    resumed = MLP([784, 16, 10], seed=4)
    h_resumed = resumed.fit(X, y, epochs=4, checkpoint=path, **CK)
    _assert_same_run(full, h_full, resumed, h_resumed)
    # the lr decayed before the split point, so the restored lr mattered
    assert h_full.history["lr"][2] < h_full.history["lr"][0]
    if how == "fewer-epochs":  # and back: a finished checkpoint asked for fewer epochs
        again = MLP([784, 16, 10], seed=4)
        with pytest.warns(UserWarning, match="holds 4 epochs, more than the 3 asked"):
            again.fit(X, y, epochs=3, checkpoint=tmp_path / "full.npz", **CK)
        np.testing.assert_array_equal(again.parameters, full.parameters)


def test_checkpoint_of_other_data_in_any_row_is_rejected(data, tmp_path):
    """Every value of X keys the checkpoint (a sample of every n // 257th row
    let a fit on data changed elsewhere resume)."""
    X, y, _, _ = data
    X, y = X[:1200], y[:1200]
    path = tmp_path / "ck.npz"
    args = dict(batch_size=64, learning_rate=0.05, verbose=False, checkpoint=path)
    MLP([784, 8, 10], seed=0).fit(X, y, epochs=1, **args)
    X2 = X.copy()
    X2[1, 300] += 0.5
    with pytest.raises(ValueError, match="different model, data or arguments"):
        MLP([784, 8, 10], seed=0).fit(X2, y, epochs=2, **args)
    MLP([784, 8, 10], seed=0).fit(X.copy(), y, epochs=2, **args)  # the same values resume


def test_checkpoint_resume_with_a_drawn_seed(data, tmp_path):
    """MLP(seed=None) draws a new seed in every process: "the same call after a
    crash" resumes with the checkpoint's seed (split, dropout and shuffles
    included), exactly as an uninterrupted run of that seed; an explicit other
    seed is still refused."""
    X, y, _, _ = data
    X, y = X[:600], y[:600]
    path = tmp_path / "ck.npz"
    first = MLP([784, 16, 10], dropout=0.3)
    assert first.seed_drawn
    first.fit(X, y, epochs=2, checkpoint=path, **CK)
    resumed = MLP([784, 16, 10], dropout=0.3)
    assert resumed.seed != first.seed  # (a 63-bit draw)
    h_resumed = resumed.fit(X, y, epochs=4, checkpoint=path, **CK)
    assert resumed.seed == first.seed and not resumed.seed_drawn
    full = MLP([784, 16, 10], dropout=0.3, seed=first.seed)
    h_full = full.fit(X, y, epochs=4, **CK)
    _assert_same_run(full, h_full, resumed, h_resumed)
    with pytest.raises(ValueError, match="different model, data or arguments"):
        MLP([784, 16, 10], dropout=0.3, seed=first.seed + 1).fit(X, y, epochs=4,
                                                                 checkpoint=path, **CK)


def test_a_refused_checkpoint_leaves_a_drawn_seed_model_as_it_was(data, tmp_path):
    """Taking the checkpoint's seed is undone when the resume is refused: the
    model keeps its drawn seed and its weights (assigned ones included)."""
    X, y, _, _ = data
    path = tmp_path / "ck.npz"
    MLP([784, 16, 10]).fit(X[:300], y[:300], epochs=1, checkpoint=path, **CK)
    model = MLP([784, 16, 10])
    model.coefs_[0] = np.full((784, 16), 0.01)
    seed, before = model.seed, model.parameters.copy()
    with pytest.raises(ValueError, match="different model, data or arguments"):
        model.fit(X[:200], y[:200], epochs=2, checkpoint=path, **CK)
    assert model.seed == seed and model.seed_drawn
    np.testing.assert_array_equal(model.parameters, before)


def test_model_fit_takes_the_numpy_trainer_as_training_fit_does(data):
    from fastnn import reference
    X, y, _, _ = data
    a = MLP([784, 8, 10], dtype="float64", seed=0)
    a.fit(X[:200], y[:200], epochs=1, kernels=reference, **FIT)
    b = MLP([784, 8, 10], dtype="float64", seed=0)
    b.fit(X[:200], y[:200], epochs=1, **FIT)
    np.testing.assert_allclose(a.parameters, b.parameters, rtol=1e-9, atol=1e-12)


def test_checkpoint_resume_with_early_stopping(data, tmp_path):
    X, y, Xt, yt = data
    args = dict(batch_size=10, learning_rate=0.5, momentum=0.9, verbose=False,
                validation_data=(Xt, yt), early_stopping=3)
    full = MLP([784, 64, 10], seed=0)
    h_full = full.fit(X[:100], y[:100], epochs=30, checkpoint=tmp_path / "a.npz", **args)
    assert h_full.stopped_epoch is not None
    part = MLP([784, 64, 10], seed=0)
    part.fit(X[:100], y[:100], epochs=h_full.stopped_epoch - 1, checkpoint=tmp_path / "b.npz",
             **args)
    resumed = MLP([784, 64, 10], seed=0)
    h_resumed = resumed.fit(X[:100], y[:100], epochs=30, checkpoint=tmp_path / "b.npz", **args)
    _assert_same_run(full, h_full, resumed, h_resumed)
    # a finished checkpoint: fitting again trains nothing and returns the same
    again = MLP([784, 64, 10], seed=0)
    h_again = again.fit(X[:100], y[:100], epochs=30, checkpoint=tmp_path / "a.npz", **args)
    _assert_same_run(full, h_full, again, h_again)


def test_checkpoint_from_other_data_or_arguments_is_rejected(data, tmp_path):
    X, y, Xt, yt = data
    X, y = X[:300], y[:300]
    path = tmp_path / "ck.npz"
    args = dict(batch_size=32, learning_rate=0.05, verbose=False)
    MLP([784, 16, 10], seed=0).fit(X, y, epochs=1, checkpoint=path,
                                   validation_data=(Xt[:100], yt[:100]), **args)
    saved = path.read_bytes()
    y2 = y.copy()
    y2[7] = (y2[7] + 1) % 10
    X2 = X.copy()
    X2[0, 300] += 0.5
    Xt2 = Xt[:100].copy()
    Xt2[0, 300] += 0.5
    val = (Xt[:100], yt[:100])
    cases = [
        (MLP([784, 16, 10], seed=0), dict(X=X, y=y2, validation_data=val)),
        (MLP([784, 16, 10], seed=0), dict(X=X2, y=y, validation_data=val)),
        (MLP([784, 16, 10], seed=0), dict(X=X[:299], y=y[:299], validation_data=val)),
        (MLP([784, 16, 10], seed=0), dict(X=X, y=y, validation_data=(Xt2, yt[:100]))),
        (MLP([784, 16, 10], seed=0), dict(X=X, y=y, validation_data=val, learning_rate=0.1)),
        (MLP([784, 16, 10], seed=0), dict(X=X, y=y, validation_data=val, batch_size=16)),
        (MLP([784, 16, 10], seed=0), dict(X=X, y=y, validation_data=val, momentum=0.5)),
        (MLP([784, 16, 10], seed=0), dict(X=X, y=y, validation_split=0.25)),
        (MLP([784, 16, 10], seed=1), dict(X=X, y=y, validation_data=val)),
        (MLP([784, 8, 10], seed=0), dict(X=X, y=y, validation_data=val)),
        (MLP([784, 16, 10], "tanh", seed=0), dict(X=X, y=y, validation_data=val)),
        (MLP([784, 16, 10], seed=0, dtype="float64"), dict(X=X, y=y, validation_data=val)),
    ]
    for model, kwargs in cases:
        call = {**args, **kwargs}
        X_, y_ = call.pop("X"), call.pop("y")
        before = model.parameters.copy()
        with pytest.raises(ValueError, match="checkpoint"):
            model.fit(X_, y_, epochs=2, checkpoint=path, **call)
        np.testing.assert_array_equal(model.parameters, before)
    assert path.read_bytes() == saved  # left untouched
    # the right arguments still resume
    MLP([784, 16, 10], seed=0).fit(X, y, epochs=2, checkpoint=path, validation_data=val, **args)


@pytest.mark.parametrize("content", [b"", b"garbage" * 10, b"PK\x03\x04truncated"])
def test_corrupt_checkpoint_is_rejected(data, tmp_path, content):
    X, y, _, _ = data
    path = tmp_path / "ck.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="ck.npz"):
        MLP([784, 10], seed=0).fit(X[:100], y[:100], epochs=1, checkpoint=path, verbose=False)


def _tamper_checkpoint(path, edit_state=None, drop=None, replace=None):
    """Rewrite a checkpoint with its JSON state edited or an array dropped/replaced."""
    import json
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    header = json.loads(arrays["header"].tobytes().decode())
    if edit_state:
        edit_state(header["state"])
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    if drop:
        del arrays[drop]
    arrays.update(replace or {})
    with open(path, "wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize("tamper", [
    dict(edit_state=lambda st: st.update(wait="x")),
    dict(edit_state=lambda st: st.update(lr=-1.0)),
    dict(edit_state=lambda st: st.pop("base_epoch")),
    dict(edit_state=lambda st: st["history"]["history"]["loss"].append(1.0)),
    dict(edit_state=lambda st: st.update(history=[1, 2])),
    dict(drop="best"),
    dict(replace={"best": np.zeros(3, np.float32)}),
], ids=["wait", "lr", "base_epoch", "history-length", "history-type", "no-best", "best-shape"])
def test_tampered_checkpoint_state_is_a_value_error(data, tmp_path, tamper):
    X, y, _, _ = data
    path = tmp_path / "ck.npz"
    args = dict(epochs=1, batch_size=50, verbose=False, validation_split=0.2, checkpoint=path)
    MLP([784, 10], seed=0).fit(X[:300], y[:300], **args)
    _tamper_checkpoint(path, **tamper)
    with pytest.raises(ValueError, match="ck.npz"):
        MLP([784, 10], seed=0).fit(X[:300], y[:300], **{**args, "epochs": 2})


def test_a_model_file_is_not_a_checkpoint(data, tmp_path):
    X, y, _, _ = data
    path = tmp_path / "model.npz"
    MLP([784, 10], seed=0).save(path)
    with pytest.raises(ValueError, match="fastnn-checkpoint"):
        MLP([784, 10], seed=0).fit(X[:100], y[:100], epochs=1, checkpoint=path, verbose=False)


def test_checkpoint_is_written_atomically(data, tmp_path, monkeypatch):
    X, y, _, _ = data
    path = tmp_path / "ck.npz"
    from fastnn import serialization
    real = np.savez
    calls = []

    def flaky(file, **arrays):
        calls.append(1)
        if len(calls) == 2:
            real(file, **arrays)  # half a file written, then the crash
            file.truncate(100)
            raise OSError("disk full")
        return real(file, **arrays)

    monkeypatch.setattr(serialization.np, "savez", flaky)
    model = MLP([784, 10], seed=0)
    with pytest.raises(OSError, match="disk full"):
        model.fit(X[:200], y[:200], epochs=3, checkpoint=path, verbose=False)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.npz"]  # no temp file left
    header, arrays = serialization.load_checkpoint(path)
    assert len(header["state"]["history"]["epoch"]) == 1  # the first epoch's, intact
    # and it resumes
    history = MLP([784, 10], seed=0).fit(X[:200], y[:200], epochs=3, checkpoint=path,
                                         verbose=False)
    assert history.epoch == [0, 1, 2]


def test_checkpoint_argument_types(data, tmp_path):
    X, y, _, _ = data
    with pytest.raises(TypeError, match="checkpoint"):
        MLP([784, 10]).fit(X[:10], y[:10], epochs=1, checkpoint=3, verbose=False)
    with pytest.raises(FileNotFoundError):
        MLP([784, 10]).fit(X[:10], y[:10], epochs=1, verbose=False,
                           checkpoint=tmp_path / "no" / "such" / "dir" / "ck.npz")


# -- bad arguments to fit ----------------------------------------------------------

GOOD_X = np.random.default_rng(0).normal(size=(20, 4))
GOOD_Y = np.arange(20) % 3


class NotACallback:
    def on_epoch_end(self, epoch, logs=None):
        pass


BAD_FIT = [
    (dict(epochs=-1), ValueError, "epochs"),
    (dict(epochs=1.5), TypeError, "epochs"),
    (dict(epochs="3"), TypeError, "epochs"),
    (dict(epochs=True), TypeError, "epochs"),
    (dict(epochs=None), TypeError, "epochs"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(batch_size=-8), ValueError, "batch_size"),
    (dict(batch_size=2**40), ValueError, "batch_size"),
    (dict(batch_size=8.0), TypeError, "batch_size"),
    (dict(batch_size=None), TypeError, "batch_size"),
    (dict(learning_rate=0), ValueError, "learning_rate"),
    (dict(learning_rate=-0.1), ValueError, "learning_rate"),
    (dict(learning_rate=float("nan")), ValueError, "learning_rate"),
    (dict(learning_rate=float("inf")), ValueError, "learning_rate"),
    (dict(learning_rate="0.1"), TypeError, "learning_rate"),
    (dict(learning_rate=None), TypeError, "learning_rate"),
    (dict(learning_rate=1j), TypeError, "learning_rate"),
    (dict(momentum=1.0), ValueError, "momentum"),
    (dict(momentum=-0.1), ValueError, "momentum"),
    (dict(momentum=float("nan")), ValueError, "momentum"),
    (dict(momentum=True), TypeError, "momentum"),
    (dict(l2=-1e-4), ValueError, "l2"),
    (dict(l2=float("nan")), ValueError, "l2"),
    (dict(l2=float("inf")), ValueError, "l2"),
    (dict(l1=-1e-4), ValueError, "l1"),
    (dict(l1=float("nan")), ValueError, "l1"),
    (dict(l1=[0.1]), TypeError, "l1"),
    (dict(validation_split=1.0), ValueError, "validation_split"),
    (dict(validation_split=-0.1), ValueError, "validation_split"),
    (dict(validation_split=1.5), ValueError, "validation_split"),
    (dict(validation_split=float("nan")), ValueError, "validation_split"),
    (dict(validation_split="0.1"), TypeError, "validation_split"),
    (dict(validation_split=0.01), ValueError, "validation_split"),  # empty validation set
    (dict(validation_split=0.99), ValueError, "validation_split"),  # empty training set
    (dict(validation_split=0.2, validation_data=(GOOD_X, GOOD_Y)), ValueError,
     "validation_split or validation_data"),
    (dict(validation_data=GOOD_X), TypeError, "validation_data"),
    (dict(validation_data=(GOOD_X,)), TypeError, "validation_data"),
    (dict(validation_data=(GOOD_X[:, :3], GOOD_Y)), ValueError, r"validation_data\[0\]"),
    (dict(validation_data=(GOOD_X, GOOD_Y[:5])), ValueError, r"validation_data\[1\]"),
    (dict(validation_data=(GOOD_X, GOOD_Y + 1)), ValueError, r"validation_data\[1\]"),
    (dict(validation_data=(GOOD_X * np.nan, GOOD_Y)), ValueError, r"validation_data\[0\]"),
    (dict(early_stopping=0), ValueError, "early_stopping"),
    (dict(early_stopping=2.5), TypeError, "early_stopping"),
    (dict(early_stopping=3), ValueError, "early_stopping needs validation"),
    (dict(lr_decay=0.5), ValueError, "lr_decay needs validation"),
    (dict(lr_decay=0.0, validation_split=0.5), ValueError, "lr_decay"),
    (dict(lr_decay=1.5, validation_split=0.5), ValueError, "lr_decay"),
    (dict(lr_decay=float("nan"), validation_split=0.5), ValueError, "lr_decay"),
    (dict(lr_decay_threshold=float("nan")), ValueError, "lr_decay_threshold"),
    (dict(verbose="yes"), TypeError, "verbose"),
    (dict(callbacks=[NotACallback()]), TypeError, "callbacks"),
    (dict(callbacks=Recorder()), TypeError, "callbacks"),
    (dict(callbacks=[print]), TypeError, "callbacks"),
    (dict(shuffle="no"), TypeError, "shuffle"),
    (dict(class_weights=None), TypeError, "class_weights"),  # an unknown keyword
    (dict(monitor="accuracy"), ValueError, "monitor"),
    (dict(min_delta=-1.0), ValueError, "min_delta"),
    (dict(min_learning_rate=float("inf")), ValueError, "min_learning_rate"),
    (dict(optimizer="rmsprop"), ValueError, "optimizer"),
    (dict(sample_weight=np.ones((20, 1))), ValueError, "sample_weight"),
]


@pytest.mark.parametrize("kwargs, exc, match", BAD_FIT, ids=[str(i) for i in range(len(BAD_FIT))])
def test_fit_rejects_bad_arguments(kwargs, exc, match):
    model = MLP([4, 5, 3], seed=0)
    before = model.parameters.copy()
    with pytest.raises(exc, match=match):
        model.fit(GOOD_X, GOOD_Y, **{"epochs": 1, "verbose": False, **kwargs})
    np.testing.assert_array_equal(model.parameters, before)
    assert model.epochs_trained == 0


BAD_DATA = [
    (np.ones(20), GOOD_Y, ValueError, "X must be 2-D"),
    (np.ones((20, 5)), GOOD_Y, ValueError, "X must have 4 features"),
    (np.ones((0, 4)), GOOD_Y[:0], ValueError, "X must have at least one sample"),
    (GOOD_X, GOOD_Y[:19], ValueError, "y must have 20 labels"),
    (GOOD_X[:19], GOOD_Y, ValueError, "y must have 19 labels"),
    (GOOD_X, GOOD_Y + 1, ValueError, r"y must be in \[0, 3\)"),
    (GOOD_X, GOOD_Y - 1, ValueError, r"y must be in \[0, 3\)"),
    (GOOD_X, GOOD_Y + 0.5, ValueError, "fractional"),
    (GOOD_X, GOOD_Y.reshape(4, 5), ValueError, "y must be 1-D"),
    (GOOD_X, GOOD_Y.astype(bool), TypeError, "y must hold integer"),
    (GOOD_X, GOOD_Y.astype(str), TypeError, "y must hold real numbers"),
    (np.where(GOOD_X > 1, np.nan, GOOD_X), GOOD_Y, ValueError, "X must be finite"),
    (np.where(GOOD_X > 1, np.inf, GOOD_X), GOOD_Y, ValueError, "X must be finite"),
    (GOOD_X.astype(complex), GOOD_Y, TypeError, "X must hold real numbers"),
    (GOOD_X.astype(object), GOOD_Y, TypeError, "X must hold real numbers"),
    (GOOD_X.astype(str), GOOD_Y, TypeError, "X must hold real numbers"),
    ([[1, 2, 3, 4]] * 19 + [[1, 2]], GOOD_Y, ValueError, "X must be a rectangular"),
]


@pytest.mark.parametrize("X, y, exc, match", BAD_DATA, ids=[str(i) for i in range(len(BAD_DATA))])
def test_fit_rejects_bad_data(X, y, exc, match):
    with pytest.raises(exc, match=match):
        MLP([4, 5, 3], seed=0).fit(X, y, epochs=1, verbose=False)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_runaway_learning_rate_is_divergence_even_with_a_finite_loss(data, activation):
    """lr=1e4 on MNIST gives a mean loss near 1e18 (ReLU) or 1e5 (tanh): finite,
    since the cross-entropy is computed stably, but garbage. It must count as
    divergence: a warning, and the weights from before the runaway epoch."""
    X, y, _, _ = data
    model = MLP([784, 32, 10], activation, seed=0)
    initial = model.parameters.copy()
    with pytest.warns(TrainingDivergedWarning, match="runaway"):
        history = model.fit(X, y, epochs=3, batch_size=32, learning_rate=1e4, momentum=0.9,
                            verbose=False)
    assert history.diverged and history.epoch == []
    np.testing.assert_array_equal(model.parameters, initial)
    assert np.isfinite(model.predict_proba(X[:50])).all()


def test_a_poorly_scaled_but_sane_run_is_not_divergence(data):
    """Unnormalised 0..255 pixels give large early losses that are not runaway."""
    X, y, _, _ = data
    history = MLP([784, 32, 10], seed=0).fit(X * 255, y, epochs=2, batch_size=32,
                                              learning_rate=1e-4, momentum=0.9, verbose=False)
    assert not history.diverged and len(history.epoch) == 2


# -- loss_reduction="sum": the reports' summed cross-entropy ---------------------

def _sum_reduction_by_hand(W, b, X, y, order, B, eta, mu, l1, l2, epochs, seed):
    """SGD on the batch's *summed* cross-entropy plus the penalties, written out in
    float64 as the reports do: v = mu*v - eta*(sum_n dE_n/dW + l2*W + l1*sign(W)),
    W += v (biases: no penalty). A last batch of b < B rows is scaled by B/b: fastnn
    uses the nominal batch size (documented in MLP.fit)."""
    W, b = W.astype(np.float64).copy(), b.astype(np.float64).copy()
    vW, vb = np.zeros_like(W), np.zeros_like(b)
    k = W.shape[1]
    for epoch in range(epochs):
        perm = training.epoch_order(order, seed, epoch)
        for s in range(0, perm.size, B):
            rows = perm[s:s + B]
            Z = X[rows] @ W + b
            P = np.exp(Z - Z.max(axis=1, keepdims=True))
            P /= P.sum(axis=1, keepdims=True)
            D = P - np.eye(k)[y[rows]]             # d(sum of CE)/dZ, no 1/B
            scale = B / rows.size                   # 1 for every full batch
            gW = scale * (X[rows].T @ D) + l2 * W + l1 * np.sign(W)
            gb = scale * D.sum(axis=0)
            vW = mu * vW - eta * gW
            vb = mu * vb - eta * gb
            W += vW
            b += vb
    return W, b


@pytest.mark.parametrize("n", [48, 53])  # 53: a last batch of 5 rows
@pytest.mark.parametrize("mu,l1,l2", [(0.0, 0.0, 0.0), (0.9, 0.0, 0.3), (0.5, 0.2, 0.1)])
def test_sum_reduction_is_the_summed_loss_step(rng, n, mu, l1, l2):
    """fit(loss_reduction="sum", learning_rate=eta, l1, l2) takes exactly the reports'
    step on the summed loss (hand-computed above), not a rescaled variant."""
    d, k, B, eta = 6, 4, 16, 0.01
    X = rng.normal(size=(n, d))
    y = rng.integers(0, k, n)
    model = MLP([d, k], "identity", dtype="float64", seed=3)
    (W0,), (b0,) = model.coefs_, model.intercepts_
    W_want, b_want = _sum_reduction_by_hand(W0, b0, X, y, np.arange(n, dtype=np.intp), B, eta,
                                            mu, l1, l2, epochs=2, seed=3)
    model.fit(X, y, epochs=2, batch_size=B, learning_rate=eta, momentum=mu, l1=l1, l2=l2,
              loss_reduction="sum", verbose=False)
    np.testing.assert_allclose(model.coefs_[0], W_want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model.intercepts_[0], b_want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sum_reduction_equals_mean_with_scaled_hyperparameters(data, dtype):
    """With B dividing the data: sum(eta, l1, l2) == mean(eta*B, l1/B, l2/B), also for
    the NumPy reference trainer, and the history's loss stays the mean per sample."""
    X, y, _, _ = data
    B, eta, l1, l2 = 50, 2e-4, 1e-3, 5e-3
    args = dict(epochs=2, batch_size=B, momentum=0.9, verbose=False)
    a, b = MLP([784, 16, 10], dtype=dtype, seed=1), MLP([784, 16, 10], dtype=dtype, seed=1)
    ha = a.fit(X, y, learning_rate=eta, l1=l1, l2=l2, loss_reduction="sum", **args)
    hb = b.fit(X, y, learning_rate=eta * B, l1=l1 / B, l2=l2 / B, **args)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == "float32" else dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a.parameters, b.parameters, **tol)
    np.testing.assert_allclose(ha.history["loss"], hb.history["loss"], **tol)
    assert ha.history["lr"] == [eta, eta] and ha.params["loss_reduction"] == "sum"
    from fastnn import reference
    c = MLP([784, 16, 10], dtype=dtype, seed=1)
    training.fit(c, X, y, epochs=2, batch_size=B, learning_rate=eta, momentum=0.9, l2=l2, l1=l1,
                 validation_split=0.0, validation_data=None, early_stopping=None, lr_decay=None,
                 lr_decay_threshold=0.001, verbose=False, callbacks=None, checkpoint=None,
                 loss_reduction="sum", kernels=reference)
    np.testing.assert_allclose(c.parameters, a.parameters, **tol)


@pytest.mark.parametrize("bad", ["Sum", "none", None, 1])
def test_loss_reduction_is_validated(data, bad):
    X, y, _, _ = data
    model = MLP([784, 10], seed=0)
    before = model.parameters.copy()
    with pytest.raises(ValueError, match="loss_reduction"):
        model.fit(X[:100], y[:100], epochs=1, loss_reduction=bad, verbose=False)
    np.testing.assert_array_equal(model.parameters, before)


@pytest.mark.parametrize("dtype, big", [("float32", 2.0**120), ("float64", 2.0**1000)])
def test_weighted_mean_is_free_of_the_weights_scale(dtype, big):
    """loss_reduction='weighted_mean' divides each batch by its weight sum, so the
    weights' scale does not matter: huge weights train as weights of 1 (a power of
    two: to the bit), where the kernels' 1 / sum was flushed to 0 (no training, no
    warning) or the float64 sum overflowed (a NaN loss, a divergence warning)."""
    rng = np.random.default_rng(0)
    X = rng.random((512, 6)).astype(dtype)
    y = (X[:, 0] > 0.5).astype(int)
    fitted = []
    for w in (1.0, big, big * 3.0):
        model = MLP([6, 5, 2], seed=0, dtype=dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            model.fit(X, y, epochs=3, batch_size=128, sample_weight=np.full(512, w),
                      loss_reduction="weighted_mean", verbose=False)
        fitted.append(model.parameters.copy())
    np.testing.assert_array_equal(fitted[1], fitted[0])
    np.testing.assert_allclose(fitted[2], fitted[0], rtol=1e-5 if dtype == "float32" else 1e-12)
    assert not np.array_equal(fitted[0], MLP([6, 5, 2], seed=0, dtype=dtype).parameters)


def test_a_runaway_validation_loss_is_a_divergence():
    """The training loss is measured before each step, so a runaway that an
    epoch's last step makes shows first in the validation loss: past the same
    bound (1000 x ln(classes)) the epoch is a divergence, never recorded, never
    a best epoch (an epoch of val_loss 1.3e9 was recorded before)."""
    rng = np.random.default_rng(0)
    X = rng.random((1000, 6)).astype(np.float32)
    y = (X[:, 0] > 0.5).astype(int)
    model = MLP([6, 5, 2], seed=0)
    with pytest.warns(TrainingDivergedWarning, match="epoch 1"):
        h = model.fit(X, y, epochs=5, batch_size=800, learning_rate=3e3, verbose=False,
                      validation_split=0.2)
    assert h.diverged and h.epoch == [0] and h.best_epoch == 0
    assert max(h.history["val_loss"]) <= 1000 * np.log(2)
    assert model.evaluate(X[:10], y[:10])[0] < 1000 * np.log(2)


def test_a_slowly_climbing_validation_loss_is_no_divergence():
    """An overconfident model on unscaled inputs whose validation labels disagree:
    its validation loss climbs past the bound epoch by epoch (566 to 1581 nats),
    a model that overfits, not a runaway (a jump of a hundredfold): it trains on."""
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(400, 2)) * 1000).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    Xv = (rng.normal(size=(100, 2)) * 1000).astype(np.float32)
    yv = 1 - (Xv[:, 0] > 0).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h = MLP([2, 8, 2], seed=0).fit(X, y, epochs=30, batch_size=32, learning_rate=1e-4,
                                       momentum=0.9, validation_data=(Xv, yv), verbose=False)
    assert not h.diverged and len(h.epoch) == 30
    assert max(h.history["val_loss"]) > 1000 * np.log(2)
