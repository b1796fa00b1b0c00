"""fastnn.sweep: grids, sweep.json, reruns, failures, Ctrl-C, and the parallel backends
(worker processes, a Dask LocalCluster) plus GridSearchCV on joblib's Dask backend.

The backends' tests train tiny networks on a small synthetic problem, so that
each takes seconds; the CLI's are in test_cli.py (real MNIST)."""
import gc
import json
import os
import signal
import threading
import warnings

import numpy as np
import pytest

from fastnn import sweep

pytestmark = pytest.mark.usefixtures("one_blas_thread")

BASE = {"layers": [12, 8, 3], "epochs": 2, "batch_size": 32, "learning_rate": 0.05,
        "validation_split": 0.2, "seed": 0}
GRID = {"activation": ["relu", "tanh"], "learning_rate": [0.05, 1e5]}  # 1e5 diverges


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(900, 12)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.intp) + (X[:, 1] > 0.5)
    return (X[:700], y[:700]), (X[700:], y[700:])


@pytest.fixture(autouse=True)
def _collect_garbage():
    """Run the finalizers of each test's garbage (pools, Dask clients) before the next
    test: at a later, random garbage collection they could swallow another test's
    Ctrl-C (a KeyboardInterrupt raised inside a finalizer is only reported, "Exception
    ignored"), which the Ctrl-C tests of test_training.py would see as lost."""
    yield
    gc.collect()


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      dashboard_address=None, worker_dashboard_address=None
                                      ) as c:
            yield c
    gc.collect()  # the closed cluster's objects, for the same reason as _collect_garbage
    gc.collect()


def read(out):
    return json.loads((out / "sweep.json").read_text())


def results(summary):
    return {t["run"]: (t["status"], t["test_accuracy"], t["val_accuracy"], t["epochs"])
            for t in summary["trials"]}


# ---------------------------------------------------------------------------
# the grid
# ---------------------------------------------------------------------------

def test_parse_grid_types_values_and_takes_layers():
    assert sweep.parse_grid("l2=0,1e-3") == ("l2", [0, 0.001])
    assert sweep.parse_grid("activation=relu,tanh") == ("activation", ["relu", "tanh"])
    assert sweep.parse_grid("early-stopping=null,3") == ("early_stopping", [None, 3])
    assert sweep.parse_grid("layers=784,10;784,128,10") == ("layers", [[784, 10], [784, 128, 10]])
    assert sweep.parse_grid("layers=[[784,10],[784,32,10]]") == ("layers", [[784, 10], [784, 32, 10]])
    # mappings keep their commas
    assert sweep.parse_grid("class_weight={0: 2, 1: 3},balanced") == \
        ("class_weight", [{0: 2, 1: 3}, "balanced"])
    assert sweep.parse_grid("lr_schedule={name: step, step_size: 2}, cosine") == \
        ("lr_schedule", [{"name": "step", "step_size": 2}, "cosine"])
    assert sweep.parse_grid("augment={rotation: 5, scale: 0.1},null") == \
        ("augment", [{"rotation": 5, "scale": 0.1}, None])
    for bad in ("l2", "l2=", "layers=[1"):
        with pytest.raises(ValueError):
            sweep.parse_grid(bad)


def test_expand_and_sample():
    trials = sweep.expand_grid({"activation": ["relu", "tanh", "sigmoid"], "l2": [0, 1]})
    assert len(trials) == 6 and trials[1] == {"activation": "relu", "l2": 1}
    picked = sweep.sample_trials(trials, 3, seed=5)
    assert len(picked) == 3 and picked == sweep.sample_trials(trials, 3, seed=5)
    assert all(p in trials for p in picked)
    assert [trials.index(p) for p in picked] == sorted(trials.index(p) for p in picked)
    assert {json.dumps(p) for s in range(20) for p in sweep.sample_trials(trials, 2, s)} \
        == {json.dumps(t) for t in trials}  # every trial can be drawn
    assert sweep.sample_trials(trials, 99, 0) == trials
    with pytest.raises(ValueError, match="bogus"):
        sweep.expand_grid({"bogus": [1]})
    with pytest.raises(ValueError, match="non-empty"):
        sweep.expand_grid({"l2": []})
    assert sweep.trial_key({"b": 1, "a": [1, 2]}) == sweep.trial_key({"a": [1, 2], "b": 1})


def test_trial_labels_are_bounded_ascii_and_unique_per_config():
    from fastnn import config as cfg
    params = [{"dropout": 0.5}, {"dropout": [0.5]}, {"activation": "relu"},
              {"layers": [12] + [3] * 300 + [3]}, {"class_weight": {"é": 1.0}}]
    configs = [cfg.resolve({**BASE, **p}) for p in params]
    labels = [sweep.trial_label(p, c) for p, c in zip(params, configs)]
    assert len(set(labels)) == len(labels)
    assert labels[0].split("@")[0] == labels[1].split("@")[0] == "dropout=0.5"
    assert all(len(label) <= sweep.MAX_LABEL and label.isascii() for label in labels)
    assert all(sweep.store.plain_name(label) for label in labels)
    assert labels[3].startswith("layers=12-3-3-")
    assert labels == [sweep.trial_label(p, c) for p, c in zip(params, configs)]  # stable
    # another base config is another folder for the same swept value
    other = cfg.resolve({**BASE, "epochs": 1, "activation": "relu"})
    assert sweep.trial_label({"activation": "relu"}, other) != labels[2]


@pytest.mark.parametrize("name, ok", [
    ("model.npz", True), ("train.log", True), (".hidden", True), ("a" * 255, True),
    ("", False), (".", False), ("..", False), ("../x", False), ("../../x", False),
    ("/etc/passwd", False), ("a/b", False), ("a\\b", False), ("a\0b", False),
    ("a" * 256, False), ("é.txt", True), (3, False), (None, False)])
def test_plain_file_names(name, ok):
    assert sweep.store.plain_name(name) is ok


@pytest.mark.parametrize("base, grid, match", [
    (BASE, {"activation": ["relu", "swish"]}, "activation"),
    # what fit checks against the model and the validation data, needing no data
    ({**BASE, "validation_split": 0.0}, {"early_stopping": [2, 3]},
     "early_stopping needs validation data"),
    (BASE, {"monitor": ["val_loss", "val_r2"]}, "monitor must be 'val_loss' or 'val_accuracy'"),
    ({**BASE, "validation_split": 0.0}, {"lr_schedule": ["cosine", "plateau"]},
     "lr_schedule needs validation data"),
    (BASE, {"class_weight": ["balanced", "bogus"]}, "class_weight must be one of"),
    (BASE, {"class_weight": [{0: 1.0, 7: 2.0}]}, "class_weight key"),
    (BASE, {"augment": [{"rotation": 5}]}, "image_shape"),
])
def test_bad_values_fail_before_any_training(tmp_path, data, base, grid, match):
    with pytest.raises(ValueError, match=match):
        sweep.run_sweep(base, grid, tmp_path / "s", data=data, progress=False)
    assert not (tmp_path / "s").exists()


# ---------------------------------------------------------------------------
# sequential: sweep.json, failures, reruns, atomicity, Ctrl-C
# ---------------------------------------------------------------------------

def test_a_regression_sweep_is_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match="classifiers only"):
        sweep.run_sweep({"layers": [10, 4, 1], "loss": "mse", "dataset": "friedman1",
                         "epochs": 1}, {"learning_rate": [0.01, 0.02]}, tmp_path / "s",
                        data=(("unused",), ("unused",)), progress=False)
    assert not (tmp_path / "s").exists()


def test_sweep_records_every_trial_and_failures_go_on(tmp_path, data):
    out = tmp_path / "s"
    grid = {**GRID, "layers": [[12, 8, 3], [5, 8, 3]]}  # 5 inputs: fit raises on 12 features
    summary = sweep.run_sweep(BASE, grid, out, data=data, progress=False)
    assert summary == read(out)
    assert len(summary["trials"]) == 8
    by = {(t["params"]["activation"], t["params"]["learning_rate"], len(t["params"]["layers"])
           and t["params"]["layers"][0]): t for t in summary["trials"]}
    for act in ("relu", "tanh"):
        ok = by[(act, 0.05, 12)]
        assert ok["status"] == "ok" and ok["error"] is None and ok["epochs"] == 2
        assert 0.4 < ok["test_accuracy"] <= 1 and 0.4 < ok["val_accuracy"] <= 1
        assert ok["seconds"] > 0
        metrics = json.loads((out / ok["run"] / "metrics.json").read_text())
        assert metrics["test_accuracy"] == ok["test_accuracy"]
        diverged = by[(act, 1e5, 12)]
        assert diverged["status"] == "failed" and "diverged" in diverged["error"]
        wrong = by[(act, 0.05, 5)]
        assert wrong["status"] == "failed" and "ValueError" in wrong["error"]
        assert "features" in wrong["error"]
    best = max((t for t in summary["trials"] if t["status"] == "ok"),
               key=lambda t: t["val_accuracy"])
    assert summary["best"] == best["run"]
    assert (out / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    table = sweep.format_table(summary)
    lines = table.splitlines()
    assert lines[1].startswith("*") and best["run"].split(",")[0].split("=")[1] in lines[1]
    assert sum(line.startswith("*") for line in lines) == 1
    assert "failed: ValueError" in table


def test_rerun_skips_finished_trials_and_retries_failed(tmp_path, data, monkeypatch):
    out = tmp_path / "s"
    first = sweep.run_sweep(BASE, GRID, out, data=data, progress=False)
    ran = []
    real = sweep.run_trial
    monkeypatch.setattr(sweep.runner, "run_trial", lambda c, p, label, *a, **k: (
        ran.append(label), real(c, p, label, *a, **k))[1])
    again = sweep.run_sweep(BASE, GRID, out, data=data, progress=False)
    failed = {t["run"] for t in first["trials"] if t["status"] != "ok"}
    assert set(ran) == failed and len(failed) == 2
    assert again["skipped"] == 2
    assert results(again) == results(first)
    # another base config is another trial: nothing is skipped
    ran.clear()
    sweep.run_sweep({**BASE, "epochs": 1}, {"activation": ["relu"]}, out, data=data,
                    progress=False)
    assert len(ran) == 1 and ran[0].startswith("activation=relu@")


def test_sweep_json_is_replaced_atomically(tmp_path, data, monkeypatch):
    out = tmp_path / "s"
    seen = []
    real_write = sweep.store.write_summary

    def spy(folder, summary):
        real_write(folder, summary)
        seen.append(len(read(folder)["trials"]))  # always complete JSON
    monkeypatch.setattr(sweep.store, "write_summary", spy)
    sweep.run_sweep(BASE, {"activation": ["relu", "tanh"]}, out, data=data, progress=False)
    assert seen[:3] == [0, 1, 2]
    monkeypatch.setattr(sweep.store, "write_summary", real_write)
    before = (out / "sweep.json").read_text()

    def broken_dump(obj, f, **kw):
        f.write('{"trials": [')
        raise OSError("disk full")
    monkeypatch.setattr(json, "dump", broken_dump)
    with pytest.raises(OSError, match="disk full"):
        sweep.store.write_summary(out, {"trials": []})
    assert (out / "sweep.json").read_text() == before
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


def test_run_folder_is_replaced_whole_and_restored_on_failure(tmp_path, monkeypatch):
    """Where folders cannot be swapped in one step, a retried trial's folder
    replaces the old one by renames: if moving the new folder in fails, the old
    one is back in place; nothing temporary is left."""
    import os
    import stat
    out = tmp_path / "s"
    out.mkdir()
    sweep.store.write_run(out, "run-a", {"model.npz": b"old", "train.log": b"old log"})
    real = os.replace

    def failing(src, dst):
        if os.fspath(dst) == os.fspath(out / "run-a") and ".run-" in os.fspath(src):
            raise OSError("rename failed")
        return real(src, dst)
    monkeypatch.setattr(os, "replace", failing)
    monkeypatch.setattr(sweep.store, "exchange", lambda a, b: False)
    with pytest.raises(OSError, match="rename failed"):
        sweep.store.write_run(out, "run-a", {"model.npz": b"new"})
    monkeypatch.undo()
    assert (out / "run-a" / "model.npz").read_bytes() == b"old"
    assert (out / "run-a" / "train.log").read_bytes() == b"old log"
    assert sorted(p.name for p in out.iterdir()) == ["run-a"]
    # writing the new files fails: the old folder is untouched, no .run-* is left
    with pytest.raises(TypeError):
        sweep.store.write_run(out, "run-a", {"model.npz": "not bytes"})
    assert sorted(p.name for p in out.iterdir()) == ["run-a"]
    assert (out / "run-a" / "model.npz").read_bytes() == b"old"
    # a successful retry holds the new attempt's files only, in an ordinary folder
    umask = os.umask(0o022)
    try:
        sweep.store.write_run(out, "run-a", {"model.npz": b"new"})
    finally:
        os.umask(umask)
    assert sorted(p.name for p in (out / "run-a").iterdir()) == ["model.npz"]
    assert (out / "run-a" / "model.npz").read_bytes() == b"new"
    assert sorted(p.name for p in out.iterdir()) == ["run-a"]
    assert stat.S_IMODE((out / "run-a").stat().st_mode) == 0o755


@pytest.mark.filterwarnings("ignore:constrained_layout not applied")  # sweep.png's long ticks
def test_long_label_gets_a_bounded_folder_and_the_sweep_goes_on(tmp_path, data):
    """A trial whose swept values make a name over 255 bytes (the file-system limit)
    trains into a folder of at most MAX_LABEL characters; the other trials run."""
    out = tmp_path / "s"
    deep = [12] + [3] * 130 + [3]  # "layers=12-3-3-...-3": 272 characters
    summary = sweep.run_sweep({**BASE, "epochs": 1}, {"layers": [deep, [12, 8, 3]]}, out,
                              data=data, progress=False)
    assert [t["params"]["layers"] for t in summary["trials"]] == [deep, [12, 8, 3]]
    for t in summary["trials"]:
        assert len(t["run"]) <= sweep.MAX_LABEL
        assert (out / t["run"] / "train.log").is_file()
        assert json.loads((out / t["run"] / "config.json").read_text())["layers"] == \
            t["params"]["layers"]
    assert summary["trials"][1]["status"] == "ok"
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


def test_trials_with_one_readable_label_get_two_folders(tmp_path, data):
    """``dropout=0.5`` and ``dropout=[0.5]`` are two configs (two trials) whose values
    read the same: each keeps its own run folder and files."""
    out = tmp_path / "s"
    summary = sweep.run_sweep({**BASE, "epochs": 1}, {"dropout": [0.5, [0.5]]}, out, data=data,
                              progress=False)
    runs = [t["run"] for t in summary["trials"]]
    assert [t["status"] for t in summary["trials"]] == ["ok", "ok"]
    assert len(set(runs)) == 2 and all(r.startswith("dropout=0.5@") for r in runs)
    for t in summary["trials"]:
        saved = json.loads((out / t["run"] / "config.json").read_text())
        assert saved["dropout"] == t["params"]["dropout"]
        metrics = json.loads((out / t["run"] / "metrics.json").read_text())
        assert metrics["test_accuracy"] == t["test_accuracy"]
    # a value given twice is one trial
    again = sweep.run_sweep({**BASE, "epochs": 1}, {"dropout": [0.5, 0.5, [0.5]]}, out,
                            data=data, progress=False)
    assert again["skipped"] == 2 and len(again["trials"]) == 2


def test_rerun_keeps_run_folders_named_before_the_hash(tmp_path, data, monkeypatch):
    """A sweep.json written when run folders were named by the swept values alone
    (``activation=relu``) still maps: a finished trial whose folder holds its
    config is skipped; a record whose folder holds another trial's is retrained."""
    out = tmp_path / "s"
    first = sweep.run_sweep(BASE, {"dropout": [0.5, [0.5]], "activation": ["relu"]}, out,
                            data=data, progress=False)
    legacy = json.loads((out / "sweep.json").read_text())
    for t in legacy["trials"]:  # the old names: both trials had the same one
        t["run"] = "dropout=0.5,activation=relu"
    (out / first["trials"][1]["run"]).rename(out / "dropout=0.5,activation=relu")
    (out / first["trials"][0]["run"]).rename(out / "elsewhere")
    (out / "sweep.json").write_text(json.dumps(legacy))
    ran = []
    real = sweep.run_trial
    monkeypatch.setattr(sweep.runner, "run_trial", lambda c, p, label, *a, **k: (
        ran.append(p), real(c, p, label, *a, **k))[1])
    again = sweep.run_sweep(BASE, {"dropout": [0.5, [0.5]], "activation": ["relu"]}, out,
                            data=data, progress=False)
    assert ran == [{"dropout": 0.5, "activation": "relu"}] and again["skipped"] == 1
    assert [t["run"] for t in again["trials"]] == [first["trials"][0]["run"],
                                                   "dropout=0.5,activation=relu"]
    assert [t["test_accuracy"] for t in again["trials"]] == \
        [t["test_accuracy"] for t in first["trials"]]


def test_worker_file_names_cannot_leave_the_run_folder(tmp_path, data, monkeypatch):
    """The client writes only plain file names a worker returns; the trial is failed
    and names the others. The record's run folder is the client's, not the worker's."""
    out = tmp_path / "a" / "s"
    real = sweep.run_trial

    def hostile(config, params, label, *args, **kwargs):
        record, files = real(config, params, label, *args, **kwargs)
        record["run"] = "../../evil-run"
        files.update({"../../x": b"evil", str(tmp_path / "abs"): b"evil", "a/b": b"evil",
                      "..": b"evil", "": b"evil", "nul\0": b"evil", "str.txt": "not bytes"})
        return record, files
    monkeypatch.setattr(sweep.runner, "run_trial", hostile)
    summary = sweep.run_sweep(BASE, {"activation": ["relu"]}, out, data=data, progress=False)
    trial, = summary["trials"]
    assert trial["status"] == "failed" and trial["run"].startswith("activation=relu@")
    for name in ("'../../x'", "'a/b'", "'..'", "'str.txt'"):
        assert name in trial["error"]
    outside = [p for p in tmp_path.rglob("*") if p not in (out, out.parent)
               and out not in p.parents]
    assert outside == []
    folder = out / trial["run"]
    assert (folder / "model.npz").is_file() and not (folder / "str.txt").exists()
    assert sorted(p.name for p in out.iterdir()) == sorted([trial["run"], "sweep.json",
                                                            "sweep.png"])
    # the failed trial is retried on a rerun
    monkeypatch.setattr(sweep.runner, "run_trial", real)
    again = sweep.run_sweep(BASE, {"activation": ["relu"]}, out, data=data, progress=False)
    assert again["skipped"] == 0 and again["trials"][0]["status"] == "ok"


def test_ctrl_c_keeps_what_finished(tmp_path, data, monkeypatch):
    out = tmp_path / "s"
    real = sweep.run_trial
    calls = []

    def interrupted_second(*args, **kwargs):
        calls.append(args[2])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)
    monkeypatch.setattr(sweep.runner, "run_trial", interrupted_second)
    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(BASE, {"activation": ["relu", "tanh", "sigmoid"]}, out, data=data,
                        progress=False)
    summary = read(out)
    assert summary["interrupted"] is True
    assert [t["params"] for t in summary["trials"]] == [{"activation": "relu"}]
    monkeypatch.setattr(sweep.runner, "run_trial", real)
    again = sweep.run_sweep(BASE, {"activation": ["relu", "tanh", "sigmoid"]}, out, data=data,
                            progress=False)
    assert again["skipped"] == 1 and len(again["trials"]) == 3


def test_ctrl_c_caught_by_fit_stops_a_sequential_sweep(tmp_path, data, monkeypatch):
    """Ctrl-C during a trial's fit is caught by fit (which returns early, marked
    interrupted): the one-after-another sweep must still stop there, leave that
    trial out of sweep.json (not "ok" with a half-trained model) and redo it on
    a rerun."""
    out = tmp_path / "s"
    real = sweep.trial.run_experiment
    calls = []

    def second_interrupted(*args, **kwargs):
        metrics, history = real(*args, **kwargs)
        calls.append(args[3])
        if len(calls) == 2:
            metrics = {**metrics, "interrupted": True}
        return metrics, history
    monkeypatch.setattr(sweep.trial, "run_experiment", second_interrupted)
    grid = {"activation": ["relu", "tanh", "sigmoid"]}
    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(BASE, grid, out, data=data, progress=False, jobs=1)
    assert len(calls) == 2
    summary = read(out)
    assert summary["interrupted"] is True
    assert [t["params"] for t in summary["trials"]] == [{"activation": "relu"}]
    monkeypatch.setattr(sweep.trial, "run_experiment", real)
    again = sweep.run_sweep(BASE, grid, out, data=data, progress=False, jobs=1)
    assert again["skipped"] == 1 and len(again["trials"]) == 3


# ---------------------------------------------------------------------------
# parallel backends: the same results as one after another
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sequential(tmp_path_factory, data):
    return sweep.run_sweep(BASE, GRID, tmp_path_factory.mktemp("seq") / "s", data=data,
                           progress=False)


def test_jobs_2_matches_sequential(tmp_path, data, sequential):
    summary = sweep.run_sweep(BASE, GRID, tmp_path / "s", data=data, jobs=2, progress=False)
    assert summary["backend"] == "processes(2)"
    assert results(summary) == results(sequential)
    assert all((tmp_path / "s" / t["run"] / "model.npz").is_file() for t in summary["trials"])


def test_local_cluster_matches_sequential(tmp_path, data, sequential, cluster):
    out = tmp_path / "s"
    summary = sweep.run_sweep(BASE, GRID, out, data=data, scheduler=cluster.scheduler_address,
                              progress=False)
    assert summary["backend"] == "dask"
    assert results(summary) == results(sequential)
    for t in summary["trials"]:  # the workers' run folders came back to the client
        assert (out / t["run"] / "history.json").is_file()
    # a rerun against the cluster skips everything that finished
    again = sweep.run_sweep(BASE, GRID, out, data=data, scheduler=cluster.scheduler_address,
                            progress=False)
    assert again["skipped"] == 2 and results(again) == results(summary)


_REAL_PROCESS_TASK = sweep.executors.process_task


def _dying_task(config, params, label):
    """A worker's task that kills its own process on the tanh trials, as the
    out-of-memory killer would (runs in the worker: imported from this module)."""
    if params.get("activation") == "tanh":
        os.kill(os.getpid(), signal.SIGKILL)
    return _REAL_PROCESS_TASK(config, params, label)


def _run_guarded(**kwargs):
    """run_sweep in a thread, so that a stalled pool fails the test instead of
    hanging the suite (the limit is generous: the sweep takes seconds)."""
    box = {}

    def target():
        try:
            box["summary"] = sweep.run_sweep(**kwargs)
        except BaseException as exc:  # noqa: BLE001 -- re-raised below
            box["error"] = exc
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(300)
    assert not thread.is_alive(), "the sweep stalled"
    if "error" in box:
        raise box["error"]
    return box["summary"]


def test_a_killed_worker_fails_its_trial_and_the_others_finish(tmp_path, data, monkeypatch):
    out = tmp_path / "s"
    grid = {"activation": ["relu", "tanh", "sigmoid"], "learning_rate": [0.05, 0.1]}
    monkeypatch.setattr(sweep.executors, "process_task", _dying_task)
    summary = _run_guarded(base_config=BASE, grid=grid, out=out, data=data, jobs=2,
                           progress=False)
    assert summary == read(out)  # sweep.json: valid JSON, every trial
    assert len(summary["trials"]) == 6 and summary["backend"] == "processes(2)"
    for t in summary["trials"]:
        if t["params"]["activation"] == "tanh":
            assert t["status"] == "failed", t
            assert t["error"].startswith("worker process died (killed by SIGKILL)"), t["error"]
        else:
            assert t["status"] == "ok" and t["error"] is None, t
            assert (out / t["run"] / "model.npz").is_file()
    # a rerun retries the killed trials only
    monkeypatch.undo()
    again = _run_guarded(base_config=BASE, grid=grid, out=out, data=data, jobs=2,
                         progress=False)
    assert again["skipped"] == 4
    assert [t["status"] for t in again["trials"]] == ["ok"] * 6


def test_ctrl_c_with_worker_processes_stops_them(tmp_path, data, monkeypatch):
    import multiprocessing
    out = tmp_path / "s"
    real = sweep.store.write_run

    def interrupted(*args):
        real(*args)
        raise KeyboardInterrupt  # as if Ctrl-C came while the first result was written
    monkeypatch.setattr(sweep.store, "write_run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(BASE, {"activation": ["relu", "tanh", "sigmoid"]}, out, data=data,
                        jobs=2, progress=False)
    assert [p for p in multiprocessing.active_children() if p.name == "fastnn-sweep-worker"] == []
    summary = read(out)
    assert summary["interrupted"] is True and len(summary["trials"]) <= 1


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_gridsearchcv_on_joblibs_dask_backend(data, cluster):
    joblib = pytest.importorskip("joblib")
    distributed = pytest.importorskip("distributed")
    from sklearn.model_selection import GridSearchCV

    from fastnn.sklearn import MLPClassifier
    (X, y), _ = data
    grid = {"alpha": [1e-4, 1e-2], "hidden_layer_sizes": [(4,), (16,)]}
    est = MLPClassifier(max_iter=15, learning_rate_init=0.05, random_state=0)
    local = GridSearchCV(est, grid, cv=3).fit(X, y)
    with distributed.Client(cluster, set_as_default=True) as client, \
            joblib.parallel_backend("dask"):
        remote = GridSearchCV(est, grid, cv=3, n_jobs=-1).fit(X, y)
        assert len(client.scheduler_info()["workers"]) == 2
    np.testing.assert_array_equal(remote.cv_results_["mean_test_score"],
                                  local.cv_results_["mean_test_score"])
    assert remote.best_params_ == local.best_params_


def test_numpy_values_and_schedule_objects_sweep_as_their_plain_values(data, tmp_path):
    """Values fit accepts (NumPy scalars and arrays, a Cosine object) sweep as
    the JSON values they equal: the same trial, the same folder (were a TypeError
    of json.dumps after the checks)."""
    from fastnn.schedules import Cosine
    base = {**BASE, "epochs": np.int64(1), "layers": np.array([12, 8, 3]),
            "lr_schedule": Cosine(min_learning_rate=1e-3)}
    out = tmp_path / "s"
    summary = sweep.run_sweep(base, {"batch_size": np.array([16, 32])}, out, data=data,
                              progress=False)
    assert [t["status"] for t in summary["trials"]] == ["ok", "ok"]
    assert read(out)["base_config"]["lr_schedule"] == Cosine(min_learning_rate=1e-3).to_dict()
    plain = {**BASE, "epochs": 1, "lr_schedule": {"name": "cosine", "epochs": None,
                                                   "min_learning_rate": 1e-3, "warmup_epochs": 0}}
    again = sweep.run_sweep(plain, {"batch_size": [16, 32]}, out, data=data, progress=False)
    assert again["skipped"] == 2  # the same trials, found done


def test_a_grid_takes_any_iterable_and_refuses_what_is_not_a_config_value(data, tmp_path):
    summary = sweep.run_sweep({**BASE, "epochs": 1}, {"batch_size": range(16, 48, 16)},
                              tmp_path / "s", data=data, progress=False)
    assert [t["params"]["batch_size"] for t in summary["trials"]] == [16, 32]
    with pytest.raises(ValueError, match="sweep configs hold JSON values"):
        sweep.run_sweep({**BASE, "epochs": 1}, {"batch_size": [object()]}, tmp_path / "t",
                        data=data, progress=False)


def test_random_draws_among_distinct_trials(data, tmp_path):
    """--random N draws N distinct trials: duplicates are merged before the draw."""
    for seed in range(4):
        summary = sweep.run_sweep({**BASE, "epochs": 1},
                                  {"activation": ["relu", "relu", "relu", "tanh"]},
                                  tmp_path / f"s{seed}", data=data, random=2, seed=seed,
                                  progress=False)
        assert sorted(t["params"]["activation"] for t in summary["trials"]) == ["relu", "tanh"]
