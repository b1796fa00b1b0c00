"""The step plan of a threaded fit, chosen by timing real steps.

On ``n > 1`` threads the compiled loop splits each phase of a step (a layer's
forward, or its backward) over the threads or runs it on thread 0 alone
(``fnn_split_fwd``/``fnn_split_bwd`` in ``_gemm.h``). Every plan gives the
same weights, bit for bit: only the time differs. The compiled default rule
splits a phase from a threshold of multiply-adds that the process measured
once, on a synthetic [784, 128, 10], and splits every phase when the
network's weights and optimizer slots exceed one core's L2 (a step that
streams them rather than one of many multiply-adds: before that second
rule, on 2 vCPUs of an AMD EPYC, Zen 4, epochs interleaved, every phase
split took 0.60-0.83x the rule's time on [784, 800, 10] at batch 10, which
the threshold kept on one thread, 0.81-0.93x on [784, 256, 256, 256, 10] at
batch 10; and 1.04-1.56x on [784, 128, 10] at batch 10, where the rule is
right). A rule still misjudges a step now and then: the measurement is short
and a VM's cores are not always both there.

So the first batches of a fit of a network not yet timed in this process run
in segments of about :data:`TRIAL_MACS` multiply-adds (fewer where the trial
would span more than an epoch) under each of
:data:`PLANS` in turn, :data:`ROUNDS` rounds interleaved after one untimed
warm-up segment. Each timed segment follows an untimed quarter segment of
its own plan: a plan that follows another finds the weights in the other
core's cache, and its first steps pay for moving them. The segments are real
training steps, as the plans are equivalent. The rest of the fit, and every
later fit with the same key (the widths, the batch size, the dtype, the
threads and what else changes a step's cost), use the plan that beats the
default rule by more than :data:`KEEP_DEFAULT` both in its best round and in
its median round (the fastest such), else the default rule.
``FASTNN_STEP_PLAN`` (one of :data:`PLANS`, or ``"tune"``, the default)
fixes the plan instead, for measurements.
"""
from __future__ import annotations

import math
import os
import statistics
import threading

#: The candidate plans: the compiled default rule (the measured threshold),
#: every phase split over the threads, one thread.
PLANS = ("default", "split", "one")
#: Multiply-adds of a timed segment (about 0.1 s on two cores; the forward
#: and backward of a row are about 3 per weight), in whole batches, at least
#: :data:`MIN_BATCHES` of them. Segments a quarter this long misjudged
#: [784, 800, 10] at batch 10 on 2 vCPUs of Zen 4 (every phase split within
#: 5 % of one thread, where whole epochs took 0.54-0.70x).
TRIAL_MACS = 6e9
MIN_BATCHES = 2
#: The whole trial (warm-up, settling and timed segments) spans at most this
#: fraction of an epoch's rows, when that leaves :data:`MIN_BATCHES` a
#: segment: a small network's segments of :data:`TRIAL_MACS` would otherwise
#: run over several epochs (about 5 of MNIST for [784, 128, 10] at batch
#: 128), so that every early epoch, and a benchmark's timed one, would mix
#: the plans.
TRIAL_EPOCH_FRACTION = 1.0
#: Timed rounds per plan.
ROUNDS = 4
#: Another plan replaces the default rule only when it is faster by more than
#: this fraction both in its best round and in its median round (so that
#: plans of about equal speed do not swap on noise, nor on one lucky round).
KEEP_DEFAULT = 0.10

_lock = threading.Lock()


def _after_fork_in_child():
    """A fresh lock in a forked child: a thread of the parent that held it (a fit
    choosing its plan) does not exist there, and would hold the copy for good."""
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=lambda: _lock.acquire(), after_in_parent=lambda: _lock.release(),
                        after_in_child=_after_fork_in_child)
_chosen: dict[tuple, str] = {}
_timed: dict[tuple, dict[str, tuple[float, float]]] = {}
_trials: dict[tuple, "_Trial"] = {}


def fixed_plan():
    """``FASTNN_STEP_PLAN`` (read at each call): a name of :data:`PLANS`, or
    None for ``"tune"`` (the default) or unset."""
    value = os.environ.get("FASTNN_STEP_PLAN", "").strip().lower()
    if value in ("", "tune"):
        return None
    if value not in PLANS:
        raise ValueError(f"FASTNN_STEP_PLAN must be one of {list(PLANS) + ['tune']}, "
                         f"got {value!r}")
    return value


def call_args(plan, n_threads):
    """``(n_threads, split_threshold)`` of a ``train_batches`` call on ``plan``."""
    if plan == "one":
        return 1, None
    return n_threads, (0.0 if plan == "split" else None)


class _Trial:
    """The segments of one key: ``order`` lists ``(plan, kind)``, kind
    "warm" (the untimed warm-up), "settle" (untimed, a quarter segment) or
    "timed"; ROUNDS rounds of every plan, each round in another order."""

    def __init__(self):
        self.order = [("default", "warm")]
        for r in range(ROUNDS):
            for i in range(len(PLANS)):
                plan = PLANS[(i + r) % len(PLANS)]
                self.order += [(plan, "settle"), (plan, "timed")]
        self.issued = 0
        self.reported = 0
        self.times = {p: [] for p in PLANS}

    def summary(self):
        """``{plan: (best, median)}`` seconds a row (inf for a plan not timed)."""
        return {p: (min(t), statistics.median(t)) if t else (math.inf, math.inf)
                for p, t in self.times.items()}

    def choice(self):
        s = self.summary()
        better = [p for p in PLANS if p != "default"
                  and all(s[p][i] * (1 + KEEP_DEFAULT) < s["default"][i] for i in (0, 1))]
        return min(better, key=lambda p: s[p]) if better else "default"


def _settle_batches(batches):
    """Batches of a settling segment before a timed one of ``batches``."""
    return max(1, batches // 4)


def _trial_batches(batches):
    """Batches of a whole trial whose timed segments have ``batches``."""
    return batches + ROUNDS * len(PLANS) * (batches + _settle_batches(batches))


def segment_rows(batch_size, n_weights, epoch_rows=None):
    """Rows of a timed segment: whole batches, about :data:`TRIAL_MACS`
    multiply-adds for a network of ``n_weights`` weights, fewer when the
    trial would otherwise span more than :data:`TRIAL_EPOCH_FRACTION` of an
    epoch of ``epoch_rows`` rows; at least :data:`MIN_BATCHES` batches.

    >>> segment_rows(128, 784 * 128 + 128 * 10), segment_rows(512, 784 * 2048)
    (19712, 1536)
    >>> segment_rows(128, 784 * 128 + 128 * 10, epoch_rows=60000)
    3712
    """
    batches = math.ceil(TRIAL_MACS / (3.0 * n_weights * batch_size))
    if epoch_rows is not None:
        room = TRIAL_EPOCH_FRACTION * epoch_rows / batch_size
        while batches > MIN_BATCHES and _trial_batches(batches) > room:
            batches = min(batches - 1, int(batches * room / _trial_batches(batches)))
    return max(MIN_BATCHES, batches) * batch_size


def next_plan(key, batch_size, n_weights, epoch_rows=None):
    """The plan of a fit's next compiled call: ``(plan, rows, segment)``.
    ``rows`` None: a whole chunk; else the rows of a segment of the trial
    (:func:`segment_rows` of an epoch of ``epoch_rows`` rows, a quarter of
    it to settle), whose time the caller reports with :func:`record`
    (``segment``)."""
    fixed = fixed_plan()
    if fixed is not None:
        return fixed, None, None
    with _lock:
        plan = _chosen.get(key)
        if plan is not None:
            return plan, None, None
        trial = _trials.setdefault(key, _Trial())
        if trial.issued >= len(trial.order):  # the last segments are still running
            return "default", None, None
        segment = trial.issued
        trial.issued += 1
    plan, kind = trial.order[segment]
    rows = segment_rows(batch_size, n_weights, epoch_rows)
    if kind == "settle":
        rows = _settle_batches(rows // batch_size) * batch_size
    return plan, rows, segment


def record(key, segment, rows, seconds):
    """Report the time of a trial's segment (``rows`` trained in ``seconds``);
    the last report makes the choice, kept for the process."""
    with _lock:
        trial = _trials.get(key)
        if trial is None:
            return
        plan, kind = trial.order[segment]
        if kind == "timed" and rows > 0:
            trial.times[plan].append(seconds / rows)
        trial.reported += 1
        if trial.reported == len(trial.order):
            _chosen[key] = trial.choice()
            _timed[key] = trial.summary()
            del _trials[key]


def chosen():
    """The plans chosen so far in this process: ``{key: plan}`` (a copy)."""
    with _lock:
        return dict(_chosen)


def timings():
    """What the choices saw: ``{key: {plan: (best, median)}}``, seconds a row
    in the timed rounds."""
    with _lock:
        return {k: dict(v) for k, v in _timed.items()}


def pending():
    """The keys whose trial has begun and not yet ended."""
    with _lock:
        return list(_trials)


def forget():
    """Forget every choice and trial (the next fits time their plans again)."""
    with _lock:
        _chosen.clear()
        _timed.clear()
        _trials.clear()
