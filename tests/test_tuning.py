"""fastnn.training.tuning: the step plan of a threaded fit, timed on its first
batches. The timing decides only the speed: every plan trains the same bits,
which is what these tests check with real fits; the choice itself is checked
with reported times (no test depends on the machine's speed)."""
import numpy as np
import pytest

import fastnn
from fastnn import reference
from fastnn.training import tuning


@pytest.fixture(autouse=True)
def fresh_choices(monkeypatch):
    monkeypatch.delenv("FASTNN_STEP_PLAN", raising=False)
    tuning.forget()
    yield
    tuning.forget()


def _run_trial(key, cost, batch_size=10):
    """Issue and report every segment of key's trial, a plan's segment taking
    cost[plan] seconds a row (or cost(plan, timed), timed False for the warm-up
    and the settling quarters); returns the plans and rows in the order
    issued, and the plan kept."""
    issued = []
    while True:
        plan, rows, segment = tuning.next_plan(key, batch_size, 1000)
        if rows is None:
            return issued, plan
        issued.append((plan, rows))
        timed = segment > 0 and rows == tuning.segment_rows(batch_size, 1000)
        per_row = cost(plan, timed) if callable(cost) else cost[plan]
        tuning.record(key, segment, rows, rows * per_row)


def test_a_trial_times_every_plan_then_keeps_the_fastest():
    issued, plan = _run_trial("k", {"default": 3.0, "split": 1.0, "one": 2.0})
    assert plan == "split" and tuning.chosen() == {"k": "split"}
    # an untimed warm-up under the default rule, then every plan ROUNDS times,
    # each timed segment after a quarter segment of the same plan
    full = tuning.segment_rows(10, 1000)
    assert issued[0] == ("default", full)
    assert len(issued) == 1 + 2 * tuning.ROUNDS * len(tuning.PLANS)
    settle, timed = issued[1::2], issued[2::2]
    assert [p for p, _ in settle] == [p for p, _ in timed]
    assert {r for _, r in settle} == {full // 4} and {r for _, r in timed} == {full}
    assert all([p for p, _ in timed].count(p) == tuning.ROUNDS for p in tuning.PLANS)
    # kept: later calls train whole chunks on it; what the choice saw is kept too
    assert tuning.next_plan("k", 10, 1000) == ("split", None, None)
    assert tuning.timings() == {"k": {"default": (3.0, 3.0), "split": (1.0, 1.0),
                                      "one": (2.0, 2.0)}}


def test_the_default_rule_stays_unless_another_plan_is_clearly_faster():
    near = 1.0 / (1 + tuning.KEEP_DEFAULT / 2)
    assert _run_trial("a", {"default": 1.0, "split": near, "one": 1.2})[1] == "default"
    assert _run_trial("b", {"default": 1.0, "split": 1.3, "one": 0.5})[1] == "one"


def test_one_lucky_round_does_not_switch_the_plan():
    """A plan must beat the default rule in its median round too."""
    key, rounds = "k", {"default": [1.0] * 4, "split": [0.5, 1.0, 1.0, 1.0], "one": [1.2] * 4}
    _run_trial(key, lambda plan, timed: rounds[plan].pop(0) if timed else 9.0, 16)
    assert tuning.chosen()[key] == "default"
    assert tuning.timings()[key]["split"] == (0.5, 1.0)


def test_a_slow_round_does_not_condemn_a_plan():
    """One slow round (a busy moment) does not condemn a plan; the untimed
    segments (the warm-up, each settling quarter) count for nothing."""
    key, cost = "k", {"default": 1.0, "split": 0.5, "one": 1.0}
    seen = set()

    def slow_first_round(plan, timed):
        if not timed:
            return 100 * cost[plan]
        first = plan not in seen
        seen.add(plan)
        return cost[plan] * (10 if first else 1)

    _run_trial(key, slow_first_round, 16)
    assert tuning.chosen()[key] == "split"


def test_segments_are_whole_batches_of_about_trial_macs():
    for batch_size in (1, 10, 128, 5000):
        for n_weights in (100, 100_000, 5_000_000):
            rows = tuning.segment_rows(batch_size, n_weights)
            assert rows % batch_size == 0 and rows >= tuning.MIN_BATCHES * batch_size
            assert rows * 3 * n_weights >= tuning.TRIAL_MACS or \
                rows == tuning.MIN_BATCHES * batch_size
            assert (rows - batch_size) * 3 * n_weights < tuning.TRIAL_MACS or \
                rows == tuning.MIN_BATCHES * batch_size


def test_the_environment_fixes_the_plan(monkeypatch):
    monkeypatch.setenv("FASTNN_STEP_PLAN", "one")
    assert tuning.next_plan("k", 10, 1000) == ("one", None, None)
    monkeypatch.setenv("FASTNN_STEP_PLAN", "tune")
    assert tuning.next_plan("k", 10, 1000)[1] is not None
    monkeypatch.setenv("FASTNN_STEP_PLAN", "fastest")
    with pytest.raises(ValueError, match="FASTNN_STEP_PLAN must be one of"):
        tuning.next_plan("k", 10, 1000)


def test_call_args():
    assert tuning.call_args("default", 2) == (2, None)
    assert tuning.call_args("split", 3) == (3, 0.0)
    assert tuning.call_args("one", 2) == (1, None)


def _fit(n_threads, model_args, fit_args):
    rng = np.random.default_rng(3)
    X = rng.random((700, 20), dtype=np.float32)
    y = rng.integers(0, 4, 700)
    model = fastnn.MLP([20, 48, 32, 4], seed=2, **model_args)
    with fastnn.threads.using(n_threads):
        history = model.fit(X, y, epochs=3, batch_size=16, verbose=False, **fit_args).history
    return model.parameters.copy(), history["loss"]


def _assert_same(got, want):
    """The same weights and the same epoch losses, bit for bit (the trial's
    segments divide an epoch among more calls than a plain fit's chunks)."""
    np.testing.assert_array_equal(got[0], want[0])
    assert got[1] == want[1]


@pytest.mark.parametrize("model_args, fit_args", [
    ({}, {"learning_rate": 0.05, "momentum": 0.9}),
    ({"dropout": 0.2, "dtype": "float64"}, {"learning_rate": 0.05}),
    ({}, {"optimizer": "adam", "validation_split": 0.2}),
], ids=["sgd", "dropout-float64", "adam"])
def test_a_tuned_fit_trains_the_weights_of_one_thread(monkeypatch, model_args, fit_args):
    want = _fit(1, model_args, fit_args)
    monkeypatch.setattr(tuning, "TRIAL_MACS", 1e5)  # the trial ends in the first epoch
    _assert_same(_fit(2, model_args, fit_args), want)
    assert len(tuning.chosen()) == 1 and tuning.pending() == []  # the choice is kept
    _assert_same(_fit(2, model_args, fit_args), want)  # on the kept plan
    for plan in tuning.PLANS:
        monkeypatch.setenv("FASTNN_STEP_PLAN", plan)
        _assert_same(_fit(3, model_args, fit_args), want)


def test_one_thread_and_the_numpy_trainer_are_not_tuned():
    _fit(1, {}, {})
    rng = np.random.default_rng(0)
    X, y = rng.random((64, 5), dtype=np.float32), rng.integers(0, 2, 64)
    model = fastnn.MLP([5, 8, 2], seed=0)
    with fastnn.threads.using(2):
        fastnn.training.fit(model, X, y, epochs=1, batch_size=8, verbose=False,
                            kernels=reference)
    assert tuning.chosen() == {} and tuning.pending() == []


def test_the_trial_ends_in_the_first_epoch():
    """Segments of TRIAL_MACS would span many epochs of this small network:
    they are shortened so that the whole trial fits in one epoch."""
    rng = np.random.default_rng(3)
    X, y = rng.random((700, 20), dtype=np.float32), rng.integers(0, 4, 700)
    model = fastnn.MLP([20, 48, 32, 4], seed=2)
    with fastnn.threads.using(2):
        model.fit(X, y, epochs=1, batch_size=16, verbose=False)
    assert tuning.pending() == [] and len(tuning.chosen()) == 1


@pytest.mark.parametrize("batch_size, n_weights", [(10, 1000), (128, 101_632), (512, 3_000_000)])
@pytest.mark.parametrize("epoch_rows", [100, 1000, 5000, 7777, 60_000, 10**7])
def test_the_trial_spans_at_most_an_epoch(batch_size, n_weights, epoch_rows):
    def trial_rows(rows):  # the warm-up, then every round's settling and timed segments
        settle = max(batch_size, rows // 4 // batch_size * batch_size)
        return rows + tuning.ROUNDS * len(tuning.PLANS) * (rows + settle)

    rows = tuning.segment_rows(batch_size, n_weights, epoch_rows)
    assert rows % batch_size == 0 and rows >= tuning.MIN_BATCHES * batch_size
    assert rows <= tuning.segment_rows(batch_size, n_weights)
    if rows > tuning.MIN_BATCHES * batch_size:  # not at the floor: within an epoch
        assert trial_rows(rows) <= epoch_rows * tuning.TRIAL_EPOCH_FRACTION
        longer = rows + batch_size  # and as long as that allows
        assert (trial_rows(longer) > epoch_rows
                or longer > tuning.segment_rows(batch_size, n_weights))


def test_an_unfinished_trial_goes_on_in_the_next_fit(monkeypatch):
    """A data set smaller than the trial's segments: each epoch is one segment,
    and the next fit of the same key goes on with the trial."""
    monkeypatch.setattr(tuning, "MIN_BATCHES", 64)  # 1,024 rows a segment, 700 an epoch
    _fit(2, {}, {})
    assert len(tuning.pending()) == 1 and tuning.chosen() == {}
    segments = 1 + 2 * tuning.ROUNDS * len(tuning.PLANS)  # 3 a fit: one an epoch
    for _ in range(segments // 3):
        _fit(2, {}, {})
    assert tuning.pending() == [] and len(tuning.chosen()) == 1
