"""The ``fastnn`` command line: train, evaluate, gradcheck, bench, and its errors.

Most tests call :func:`fastnn.cli.main` in-process, with the MNIST loader of
the CLI memoised (the real files, loaded once per normalisation, read-only so
that nothing may write into the shared arrays); a few run the installed
``fastnn`` console script in a subprocess, which loads the files itself.
"""
import contextlib
import io
import json
import re
import shutil
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from fastnn import MLP, _kernels, cli, experiment
from fastnn import config as cfg
from fastnn.metrics import per_class_error
from fastnn.training import tuning

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = cfg.SHIPPED  # the shipped configs (package data; configs/ in a clone links to them)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ACCURACY_LINE = re.compile(r"test accuracy: (\d+\.\d\d) % \(loss (\d+\.\d{4}); (\d+) epochs")
ARTIFACTS = ("model.npz", "history.json", "metrics.json", "train.log", "config.json",
             "learning_curves.png", "confusion_matrix.png", "per_class_errors.png")
PLOTS = ("learning_curves.png", "confusion_matrix.png", "per_class_errors.png")


# ---------------------------------------------------------------------------
# Helpers and fixtures
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module", autouse=True)
def cached_data():
    """``experiment.load_data`` (the CLI's loader) memoised for this module (loading
    MNIST costs ~1 s a time)."""
    original = experiment.load_data
    cache = {}

    def load(dataset, data_dir, normalize):
        key = (dataset, None if data_dir is None else str(Path(data_dir).resolve()), normalize)
        if key not in cache:
            data = original(dataset, data_dir, normalize)  # errors propagate, uncached
            for X, y in data:
                X.flags.writeable = False
                y.flags.writeable = False
            cache[key] = data
        return cache[key]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(experiment, "load_data", load)
        yield load
    cache.clear()


def run_main(*argv):
    """``(exit code, stdout, stderr)`` of ``fastnn.cli.main(argv)`` in-process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = cli.main([str(a) for a in argv])
        except SystemExit as exc:  # argparse errors
            rc = exc.code
    return rc, out.getvalue(), err.getvalue()


def train(config, out, data_dir, *extra):
    return run_main("train", "--config", config, "--data-dir", data_dir, "--out", out,
                    "--quiet", *extra)


def read_json(path):
    return json.loads(Path(path).read_text())


def png_size(path):
    """(width, height) from a PNG's IHDR chunk; asserts the file is a PNG."""
    data = Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def params_of(path):
    model = MLP.load(path)
    return [*model.coefs_, *model.intercepts_]


def fastnn_script():
    """The installed console script (next to this interpreter, else on PATH)."""
    script = Path(sys.executable).with_name("fastnn")
    found = str(script) if script.exists() else shutil.which("fastnn")
    if found is None:
        pytest.fail("the `fastnn` console script is not installed next to "
                    f"{sys.executable} nor on PATH")
    return found


@pytest.fixture(scope="module")
def best_run(tmp_path_factory, mnist_path):
    """configs/best.yaml shrunk to one epoch of [784, 32, 10]: (out folder, stdout)."""
    out = tmp_path_factory.mktemp("best") / "run"
    rc, stdout, stderr = train(CONFIGS / "best.yaml", out, mnist_path,
                               "--epochs", "1", "--layers", "784,32,10")
    assert rc == 0, stderr
    return out, stdout


@pytest.fixture(scope="module")
def test_labels(cached_data, mnist_path):
    return cached_data("mnist", mnist_path, "minmax")[1][1]


# ---------------------------------------------------------------------------
# train
# ---------------------------------------------------------------------------

def test_train_writes_every_artifact(best_run):
    out, _ = best_run
    written = sorted(p.name for p in out.iterdir())
    for name in ARTIFACTS:
        assert (out / name).is_file(), f"{name} missing from {written}"
    for name in PLOTS:
        width, height = png_size(out / name)
        assert width >= 400 and height >= 300, (name, width, height)
        assert (out / name).stat().st_size > 5000, name
    log = (out / "train.log").read_text()
    assert "config " in log and "epoch 1:" in log and "test accuracy" in log
    assert "epoch 2:" not in log


def test_runs_in_two_threads_keep_their_own_train_log(tmp_path, monkeypatch):
    """Two run_experiment calls at once in two threads (as trials on a threaded Dask
    worker): each train.log holds its own run's lines only, and the ``fastnn``
    logger's level and handlers are as before afterwards."""
    import logging
    import threading

    from fastnn import config as cfg
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 6)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.intp)
    data = ((X[:200], y[:200]), (X[200:], y[200:]))
    logger = logging.getLogger("fastnn")
    level, handlers = logger.level, list(logger.handlers)
    both_training = threading.Barrier(2, timeout=120)  # the timeout only guards a hang
    real_fit = MLP.fit

    def fit(self, *args, **kwargs):  # both runs' handlers are attached from here on
        both_training.wait()
        return real_fit(self, *args, **kwargs)
    monkeypatch.setattr(MLP, "fit", fit)
    errors = []

    def run(name, epochs):
        try:
            config = cfg.resolve({"layers": [6, 4, 2], "epochs": epochs, "batch_size": 20})
            experiment.run_experiment(config, data, tmp_path / name, name, verbose=False)
        except BaseException as exc:  # noqa: BLE001 -- reported below
            errors.append(exc)
            both_training.abort()
    threads = [threading.Thread(target=run, args=(name, epochs))
               for name, epochs in (("one", 1), ("two", 2))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for name, epochs in (("one", 1), ("two", 2)):
        log = (tmp_path / name / "train.log").read_text()
        configs = re.findall(r"config (\w+):", log)
        assert configs == [name], log
        assert re.findall(r"epoch (\d+):", log) == [str(e + 1) for e in range(epochs)], log
        assert log.count("test accuracy") == 1, log
    assert logger.level == level and logger.handlers == handlers


def test_train_history_json(best_run):
    out, _ = best_run
    saved = read_json(out / "history.json")
    history = saved["history"]
    # best.yaml holds out 20 % for validation: val_ curves too
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "time"):
        assert isinstance(history[key], list) and len(history[key]) == 1, key
    assert saved["epoch"] == [0]
    assert history["lr"] == [0.01]
    assert 0 < history["loss"][0] < 2.3  # below chance (ln 10) after one epoch
    assert saved["params"]["validation_samples"] == 12000


def test_train_metrics_json(best_run, test_labels):
    out, _ = best_run
    metrics = read_json(out / "metrics.json")
    cm = np.array(metrics["confusion_matrix"])
    assert cm.shape == (10, 10)
    assert cm.sum() == 10000
    np.testing.assert_array_equal(cm.sum(axis=1), np.bincount(test_labels, minlength=10))
    assert metrics["test_accuracy"] == pytest.approx(np.trace(cm) / 10000, abs=1e-12)
    assert 0.85 < metrics["test_accuracy"] < 1
    assert 0 < metrics["test_loss"] < 1
    assert metrics["train_seconds"] > 0
    assert metrics["epochs"] == 1
    np.testing.assert_allclose(metrics["per_class_error"], per_class_error(cm))


def test_train_config_json_is_the_resolved_config(best_run):
    config = read_json(best_run[0] / "config.json")
    assert config["layers"] == [784, 32, 10]      # --layers
    assert config["epochs"] == 1                   # --epochs
    assert config["normalize"] == "standard"       # best.yaml
    assert config["momentum"] == 0.9 and config["l2"] == 0.001
    assert config["init"] == "auto"                # a default best.yaml leaves out


def test_train_prints_the_accuracy_of_metrics_json(best_run, cached_data, mnist_path):
    out, stdout = best_run
    match = ACCURACY_LINE.search(stdout)
    assert match, stdout
    metrics = read_json(out / "metrics.json")
    assert float(match.group(1)) == round(metrics["test_accuracy"] * 100, 2)
    assert float(match.group(2)) == round(metrics["test_loss"], 4)
    assert int(match.group(3)) == 1
    assert str(out) in stdout
    # and the saved model is the one that scored it
    model = MLP.load(out / "model.npz")
    assert model.layers == (784, 32, 10)
    _, (X_test, y_test) = cached_data("mnist", mnist_path, "standard")
    assert model.score(X_test, y_test) == metrics["test_accuracy"]


def test_train_overrides_apply_and_checkpoint_resumes(tmp_path, mnist_path):
    """--epochs and --learning-rate reach fit; a run stopped after one epoch and
    rerun with --epochs 2 on its checkpoint ends with the uninterrupted run's weights."""
    ckpt = tmp_path / "state.ckpt"
    args = ("--layers", "784,32,10", "--learning-rate", "0.02")
    rc, _, err = train(CONFIGS / "best.yaml", tmp_path / "a", mnist_path, *args,
                       "--epochs", "1", "--checkpoint", ckpt)
    assert rc == 0, err
    assert ckpt.is_file()
    assert len(read_json(tmp_path / "a" / "history.json")["epoch"]) == 1

    rc, stdout, err = train(CONFIGS / "best.yaml", tmp_path / "b", mnist_path, *args,
                            "--epochs", "2", "--checkpoint", ckpt)
    assert rc == 0, err
    assert ACCURACY_LINE.search(stdout).group(3) == "2"
    resumed = read_json(tmp_path / "b" / "history.json")
    assert resumed["epoch"] == [0, 1]
    assert read_json(tmp_path / "b" / "metrics.json")["epochs"] == 2

    rc, _, err = train(CONFIGS / "best.yaml", tmp_path / "c", mnist_path, *args, "--epochs", "2")
    assert rc == 0, err
    straight = read_json(tmp_path / "c" / "history.json")
    assert straight["epoch"] == [0, 1]
    assert straight["history"]["lr"] == [0.02, 0.02]
    assert resumed["history"]["lr"] == [0.02, 0.02]
    assert resumed["history"]["val_loss"] == straight["history"]["val_loss"]

    final = params_of(tmp_path / "b" / "model.npz")
    expected = params_of(tmp_path / "c" / "model.npz")
    assert all(np.array_equal(p, q) for p, q in zip(final, expected, strict=True))
    # the second run really resumed: its first epoch is the first run's, timing included
    first_run = read_json(tmp_path / "a" / "history.json")["history"]
    assert resumed["history"]["time"][0] == first_run["time"][0]
    assert straight["history"]["time"][0] != first_run["time"][0]
    first = params_of(tmp_path / "a" / "model.npz")
    assert not all(np.array_equal(p, q) for p, q in zip(first, expected))


def test_train_softmax_regression_with_null_and_exponent_overrides(tmp_path, mnist_path):
    """``--early-stopping null`` switches off the config's early stopping (an
    explicit None, not "no override"); ``--learning-rate 1e-3`` is a number."""
    out = tmp_path / "softmax"
    rc, stdout, err = train(CONFIGS / "softmax-regression.yaml", out, mnist_path, "--epochs", "1",
                            "--early-stopping", "null", "--learning-rate", "1e-3")
    assert rc == 0, err
    assert ACCURACY_LINE.search(stdout)
    config = read_json(out / "config.json")
    assert config["layers"] == [784, 10]
    assert config["early_stopping"] is None
    assert config["learning_rate"] == 0.001
    assert read_json(out / "history.json")["history"]["lr"] == [0.001]
    assert MLP.load(out / "model.npz").layers == (784, 10)
    metrics = read_json(out / "metrics.json")
    assert 0.5 < metrics["test_accuracy"] < 0.95  # one epoch at lr 1e-3: ~0.67
    assert np.array(metrics["confusion_matrix"]).sum() == 10000
    for name in PLOTS:
        png_size(out / name)


def test_train_json_config(tmp_path, mnist_path):
    config = tmp_path / "small.json"
    config.write_text(json.dumps({"layers": [784, 16, 10], "normalize": "minmax",
                                  "epochs": 1, "learning_rate": 5e-2, "seed": 3}))
    rc, _, err = train(config, tmp_path / "out", mnist_path)
    assert rc == 0, err
    saved = read_json(tmp_path / "out" / "config.json")
    assert saved["layers"] == [784, 16, 10] and saved["normalize"] == "minmax"
    assert saved["seed"] == 3 and saved["learning_rate"] == 0.05
    assert read_json(tmp_path / "out" / "history.json")["history"]["lr"] == [0.05]
    assert "val_loss" not in read_json(tmp_path / "out" / "history.json")["history"]


# ---------------------------------------------------------------------------
# evaluate
# ---------------------------------------------------------------------------

def test_evaluate_matches_the_training_run(best_run, mnist_path):
    out, _ = best_run
    rc, stdout, err = run_main("evaluate", out / "model.npz", "--data-dir", mnist_path)
    assert rc == 0, err
    result = json.loads(stdout)
    metrics = read_json(out / "metrics.json")
    assert result["normalize"] == "standard"  # from the run's config.json, not the default
    assert result["dataset"] == "mnist"
    assert result["test_accuracy"] == metrics["test_accuracy"]
    assert result["test_loss"] == pytest.approx(metrics["test_loss"], rel=1e-9)


def test_evaluate_normalize_flag_and_missing_run_config(best_run, tmp_path, mnist_path):
    out, _ = best_run
    metrics = read_json(out / "metrics.json")
    rc, stdout, err = run_main("evaluate", out / "model.npz", "--data-dir", mnist_path,
                               "--normalize", "minmax")
    assert rc == 0, err
    forced = json.loads(stdout)
    assert forced["normalize"] == "minmax"
    assert forced["test_accuracy"] != metrics["test_accuracy"]  # the setting matters
    # a model without its run's config.json: the default normalisation (minmax)
    shutil.copy(out / "model.npz", tmp_path / "model.npz")
    # ... and said, in one line: the file alone does not record how its inputs were scaled
    rc, stdout, err = run_main("evaluate", tmp_path / "model.npz", "--data-dir", mnist_path)
    assert rc == 0, err
    assert json.loads(stdout) == {**forced, "model": str(tmp_path / "model.npz")}
    assert err.startswith("fastnn: UserWarning: no config.json beside")
    assert "normalize='minmax'" in err and len(err.splitlines()) == 1
    rc, _, err = run_main("evaluate", tmp_path / "model.npz", "--data-dir", mnist_path,
                          "--dataset", "mnist", "--normalize", "standard")
    assert rc == 0 and err == ""
    # the command line prints a warning as one line, not the source line that raised it,
    # and leaves the process's warning display as it found it
    line = cli._one_line_warning(UserWarning("a\tb"), UserWarning, __file__, 1, "x = f()")
    assert line == "fastnn: UserWarning: a\tb\n"
    shown, formatted = warnings.showwarning, warnings.formatwarning
    assert run_main("configs")[0] == 0
    assert (warnings.showwarning, warnings.formatwarning) == (shown, formatted)
    stream = io.StringIO()
    cli._show_one_line(UserWarning("c"), UserWarning, __file__, 1, file=stream)
    assert stream.getvalue() == "fastnn: UserWarning: c\n"


def test_a_reused_out_folder_describes_the_last_run(tmp_path, mnist_path):
    """Outputs an earlier run wrote and this one does not (its deformation samples)
    are removed once the new run has finished."""
    out = tmp_path / "run"
    rc, _, err = train("softmax-regression", out, mnist_path, "--epochs", "1",
                       "--augment-rotation", "5")
    assert rc == 0, err
    assert (out / "augmentation_samples.png").is_file()
    rc, _, err = train("softmax-regression", out, mnist_path, "--epochs", "1")
    assert rc == 0, err
    assert not (out / "augmentation_samples.png").exists()
    assert all((out / name).is_file() for name in ARTIFACTS)
    (out / "notes.txt").write_text("mine")
    rc, _, err = run_main("train", "--config", "regression-friedman1", "--out", out,
                          "--epochs", "1", "--quiet")
    assert rc == 0, err
    assert not (out / "confusion_matrix.png").exists()  # a regression has none
    assert not (out / "per_class_errors.png").exists()
    assert (out / "notes.txt").read_text() == "mine"  # not fastnn's: left alone


def test_train_exit_status_says_diverged_or_interrupted(tmp_path, mnist_path, monkeypatch):
    """The run folder is written either way, but the status is not 0: 1 after a
    divergence, 130 after Ctrl-C (in training, or while the data load)."""
    out = tmp_path / "div"
    rc, stdout, err = train("softmax-regression", out, mnist_path, "--epochs", "2",
                            "--learning-rate", "1e4")
    assert rc == 1, err
    assert read_json(out / "metrics.json")["diverged"] is True
    assert "training diverged" in err and "test accuracy" in stdout
    # fit's warning, as one line (not the source line that raised it)
    assert "fastnn: TrainingDivergedWarning: " in err and "model.fit(" not in err
    real = experiment.run_experiment

    def interrupted(*args, **kwargs):
        metrics, history = real(*args, **kwargs)
        return {**metrics, "interrupted": True}, history
    monkeypatch.setattr(experiment, "run_experiment", interrupted)
    rc, _, err = train("softmax-regression", tmp_path / "int", mnist_path, "--epochs", "1",
                       "--checkpoint", tmp_path / "new" / "ck.npz")
    assert rc == 130 and "interrupted" in err and "--checkpoint" in err
    assert (tmp_path / "new" / "ck.npz").is_file()  # its folder made, as --out's
    rc, _, err = train("softmax-regression", tmp_path / "y", mnist_path, "--checkpoint",
                       tmp_path / "new")
    assert rc == 2 and "is a folder" in err

    def ctrl_c(*args):
        raise KeyboardInterrupt
    monkeypatch.setattr(experiment, "load_data", ctrl_c)
    rc, stdout, err = train("softmax-regression", tmp_path / "x", mnist_path)
    assert rc == 130 and err.strip() == "fastnn train: interrupted" and stdout == ""


@pytest.mark.parametrize("text, message", [
    ("[1, 2]", "not a run's config.json (a JSON list, not a mapping)"),
    ("{not json", "not a run's config.json (Expecting property name"),
    ('{"layers": [784, 10], "dataset": "mnist"}', "another run's: its layers are [784, 10]"),
])
def test_evaluate_refuses_a_config_json_that_is_not_the_models(best_run, tmp_path, mnist_path,
                                                               text, message):
    """The config.json beside a model says how to evaluate it: one that is not a
    config, or another run's, is an error naming it (exit 2, one line), unless
    --dataset and --normalize make it unneeded."""
    out, _ = best_run
    shutil.copy(out / "model.npz", tmp_path / "model.npz")
    (tmp_path / "config.json").write_text(text)
    rc, stdout, err = run_main("evaluate", tmp_path / "model.npz", "--data-dir", mnist_path)
    assert rc == 2 and message in err and "config.json" in err, err
    assert len(err.strip().splitlines()) == 1 and stdout == ""
    rc, _, err = run_main("evaluate", tmp_path / "model.npz", "--data-dir", mnist_path,
                          "--dataset", "mnist", "--normalize", "minmax")
    assert rc == 0, err


def test_evaluate_a_classifier_on_a_regression_dataset_says_so(best_run, mnist_path):
    out, _ = best_run
    rc, _, err = run_main("evaluate", out / "model.npz", "--data-dir", mnist_path,
                          "--dataset", "friedman1", "--normalize", "none")
    assert rc == 2 and "friedman1 is a regression dataset" in err, err


def test_evaluate_missing_model(tmp_path, mnist_path):
    rc, stdout, err = run_main("evaluate", tmp_path / "nope.npz", "--data-dir", mnist_path)
    assert rc == 2
    assert "nope.npz" in err and stdout == ""


# ---------------------------------------------------------------------------
# gradcheck
# ---------------------------------------------------------------------------

ROW = re.compile(r"^\s*(\d+)\s+(W|b)\s+(\d+)\s+(\S+)\s+(\S+)\s*$", re.M)


def test_gradcheck_passes_with_a_row_per_layer_and_param(mnist_path):
    rc, stdout, err = run_main("gradcheck", "--data-dir", mnist_path, "--samples", "16",
                               "--checks", "2")
    assert rc == 0, err
    rows = ROW.findall(stdout)
    # default layers [784, 64, 32, 10]: three weight matrices, three bias vectors
    assert [(int(l), p) for l, p, *_ in rows] == [(0, "W"), (0, "b"), (1, "W"), (1, "b"),
                                                   (2, "W"), (2, "b")]
    for _, _, checked, abs_err, rel_err in rows:
        assert int(checked) == 2
        assert 0 <= float(rel_err) < 1e-6 and 0 <= float(abs_err) < 1e-6
    assert "PASS" in stdout and "FAIL" not in stdout


def test_gradcheck_tolerance_fails(mnist_path):
    rc, stdout, err = run_main("gradcheck", "--data-dir", mnist_path, "--layers", "784,8,10",
                               "--samples", "8", "--checks", "2", "--tol", "1e-30")
    assert rc == 1, err
    assert len(ROW.findall(stdout)) == 4
    assert "FAIL" in stdout


@pytest.mark.parametrize("argv, needle", [
    (("--samples", "-1"), "--samples must be >= 1"),  # not "all but the last image"
    (("--tol", "-1"), "--tol must be finite and > 0.0"),
    (("--tol", "nan"), "--tol"), (("--tol", "inf"), "--tol"),
])
def test_gradcheck_bad_values_exit_2_before_loading(argv, needle, monkeypatch):
    def no_loading(*args):
        raise AssertionError("the data loaded before the arguments were checked")
    monkeypatch.setattr(experiment, "load_data", no_loading)
    rc, stdout, err = run_main("gradcheck", *argv)
    assert rc == 2 and needle in err and stdout == ""


# ---------------------------------------------------------------------------
# bench
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("argv, needle", [
    (("--samples", "-1"), "samples must be >= 1"),
    (("--json", "{tmp}/none/x.json"), "does not exist"),
    (("--json", "{tmp}"), "it is a folder"),
])
def test_bench_bad_values_exit_2_before_timing(argv, needle, tmp_path, mnist_path):
    argv = [a.format(tmp=tmp_path) for a in argv]
    rc, stdout, err = run_main("bench", "--data-dir", mnist_path, "--no-peak", "--repeats", "1",
                               "--batch-sizes", "128", "--trainers", "fastnn", "--no-isolate",
                               *argv)
    assert rc == 2 and needle in err, err
    assert "best" not in stdout  # no table: nothing was timed

def test_bench_quick_json(tmp_path, mnist_path):
    path = tmp_path / "bench.json"
    rc, stdout, err = run_main("bench", "--data-dir", mnist_path, "--samples", "2000",
                               "--batch-sizes", "128", "1", "--batch1-samples", "50",
                               "--repeats", "1", "--layers", "784,16,10", "784,8,8,10",
                               "--trainers", "fastnn", "numpy", "floor", "floor_scipy",
                               "--json", path)
    assert rc == 0, err
    results = read_json(path)
    assert results["config"]["samples"] == 2000
    assert results["config"]["batch_sizes"] == [128, 1]
    assert results["config"]["layers"] == [[784, 16, 10], [784, 8, 8, 10]]
    peak = results["peak"]
    assert peak["gflops"] > 0 and peak["gflops_1thread"] > 0
    assert [net["layers"] for net in results["networks"]] == [[784, 16, 10], [784, 8, 8, 10]]
    for net in results["networks"]:
        assert net["batches"]["1"]["samples"] == 50  # batch 1 on a subset
        entry = net["batches"]["128"]
        assert entry["samples"] == 2000
        assert set(entry["trainers"]) == {"fastnn", "numpy", "floor", "floor_scipy"}
        fastnn_best = entry["trainers"]["fastnn"]["best"]
        for name, r in entry["trainers"].items():
            assert len(r["times"]) == 1 and r["best"] == r["times"][0] > 0, name
            assert entry["speedup"][name] == pytest.approx(r["best"] / fastnn_best)
            assert r["gflops"] == pytest.approx(entry["flops"] / r["best"] / 1e9)
            assert r["peak_pct"] == pytest.approx(100 * r["gflops"] / peak["gflops"])
        assert entry["trainers"]["floor"]["loss"] is None
        # the NumPy twin trains the same model on the same rows: same loss up to rounding
        assert entry["trainers"]["numpy"]["loss"] == pytest.approx(
            entry["trainers"]["fastnn"]["loss"], rel=1e-4)
        assert entry["floor_ratio"] > 0 and entry["floor_scipy_ratio"] > 0
        # the step plan fastnn's fit chose in the warm-up of the round's process
        plans = entry["trainers"]["fastnn"]["step_plans"]
        assert len(plans) == 1 and (plans[0] in (*tuning.PLANS, "one thread")
                                    or plans[0].startswith("fixed: ")), plans
        assert "step_plans" not in entry["trainers"]["numpy"]
    assert "fastnn's step plan" in stdout
    assert "GEMM floor (NumPy)" in stdout and "GEMM floor (SciPy)" in stdout
    assert "NumPy trainer" in stdout and "FMA peak" in stdout
    assert "over the first 50 images only" in stdout
    # the kernels fastnn trained on (its best for this CPU, or FASTNN_ISA's)
    assert results["machine"]["fastnn_kernels"] == _kernels._kernel_isa()
    assert f"({_kernels._kernel_isa()} kernels)" in stdout


def test_bench_machine_header_names_the_threads_of_the_run():
    """``fastnn bench --threads 1`` runs in a ``threads.using(1)`` block: the
    header's fastnn line and the JSON's ``fastnn_threads`` say 1, not the default."""
    pytest.importorskip("fastnn_bench")
    from fastnn_bench.machine import format_machine, machine_info

    from fastnn import threads
    with threads.using(1):
        info = machine_info()
    assert info["fastnn_threads"] == 1
    if isinstance(info["blas"], list) and any(l["user_api"] == "fastnn" for l in info["blas"]):
        line = next(l for l in format_machine(info) if l.lstrip().startswith("fastnn:"))
        assert line.endswith(", 1 threads"), line


@pytest.mark.parametrize("layers", ["784", "784,x,10", "784,128,1", "784,0,10"])
def test_bench_bad_layers_exit_2(layers):
    rc, stdout, err = run_main("bench", "--layers", layers, "--trainers", "fastnn")
    assert rc == 2 and "--layers" in err


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------

def test_unknown_config_key(tmp_path, mnist_path):
    config = tmp_path / "typo.yaml"
    config.write_text("layers: [784, 10]\nlearnig_rate: 0.1\n")
    rc, stdout, err = train(config, tmp_path / "out", mnist_path)
    assert rc == 2
    assert "learnig_rate" in err and "unknown config key" in err
    assert err.startswith("fastnn train: error:")
    assert not (tmp_path / "out").exists()  # nothing written


def test_missing_config_file(tmp_path, mnist_path):
    rc, _, err = train(tmp_path / "missing.yaml", tmp_path / "out", mnist_path)
    assert rc == 2
    assert "config file not found" in err and "missing.yaml" in err


@pytest.mark.parametrize("flag, value, name", [
    ("--learning-rate", "-1", "learning_rate"),
    ("--layers", "784,abc", "layers"),
    ("--layers", "784", "layers"),
    ("--epochs", "two", "epochs"),
    ("--batch-size", "0", "batch_size"),
    ("--activation", "swish", "activation"),
    ("--epochs", "-1", "epochs must be >= 0, got -1"),
    ("--lr-schedule", "{name: step}", "schedule 'step' needs step_size (it takes"),
])
def test_bad_value_names_the_argument(tmp_path, mnist_path, flag, value, name, monkeypatch):
    """A bad value exits 2 naming it, before the data loads, and leaves an earlier
    run's config.json alone."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_text('{"earlier": "run"}')

    def no_loading(*args):
        raise AssertionError("the data loaded before the config was checked")
    monkeypatch.setattr(experiment, "load_data", no_loading)
    rc, stdout, err = train(CONFIGS / "softmax-regression.yaml", out, mnist_path,
                            "--epochs", "1", "--normalize", "minmax", flag, value)
    assert rc == 2
    assert name in err, err
    assert "test accuracy" not in stdout
    assert read_json(out / "config.json") == {"earlier": "run"}


def test_output_folder_errors_are_one_line(tmp_path, mnist_path):
    """--out on a file (or under one): exit 2 with one line, before the data loads."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out in (afile, afile / "sub"):
        rc, stdout, err = train(CONFIGS / "softmax-regression.yaml", out, mnist_path,
                                "--epochs", "1")
        assert rc == 2, err
        assert err.startswith("fastnn train: error:") and err.count("\n") == 1, err
        assert "Traceback" not in err and "test accuracy" not in stdout
    model = tmp_path / "m.npz"
    MLP([784, 10], seed=0).save(model)
    rc, _, err = run_main("export", model, "--onnx", tmp_path)  # a folder, not a file
    assert rc == 2 and err.startswith("fastnn export: error:"), err


def test_missing_data_dir(tmp_path):
    missing = tmp_path / "no-such-folder"
    rc, _, err = train(CONFIGS / "softmax-regression.yaml", tmp_path / "out", missing,
                       "--epochs", "1")
    assert rc == 2
    assert str(missing) in err
    rc, _, err = run_main("gradcheck", "--data-dir", missing)
    assert rc == 2 and str(missing) in err


@pytest.mark.parametrize("name, text, message", [
    ("list.yaml", "- 784\n- 10\n", "must be a mapping"),
    ("scalar.yaml", "784\n", "must be a mapping"),
    ("list.json", "[784, 10]", "must be a mapping"),
    ("broken.yaml", "layers: [784, 10\nepochs: 1\n", "is not valid YAML"),
    ("broken.json", '{"layers": [784, 10],}', "is not valid JSON"),
    ("empty.yaml", "# nothing\n", "'layers' is required"),
])
def test_bad_config_files(tmp_path, mnist_path, name, text, message):
    config = tmp_path / name
    config.write_text(text)
    rc, _, err = train(config, tmp_path / "out", mnist_path)
    assert rc == 2
    assert message in err, err
    assert name in err or message == "'layers' is required"


@pytest.mark.parametrize("argv", [
    [],                                   # no command
    ["train"],                            # --config is required
    ["frobnicate"],
    ["bench", "--trainers", "bogus"],
    ["gradcheck", "--samples", "many"],
])
def test_usage_errors_exit_2(argv):
    rc, stdout, err = run_main(*argv)
    assert rc == 2
    assert "usage: fastnn" in err


def test_value_parsing():
    assert cli._value("784,32,10") == [784, 32, 10]
    assert cli._value("[784, 32, 10]") == [784, 32, 10]
    assert cli._value("1e-3") == 0.001 and isinstance(cli._value("1e-3"), float)
    assert cli._value("0.9") == 0.9
    assert cli._value("3") == 3 and isinstance(cli._value("3"), int)
    assert cli._value("null") is None
    assert cli._value("tanh") == "tanh"
    assert cli._value("784,abc") == [784, "abc"]


# ---------------------------------------------------------------------------
# the console script, for real
# ---------------------------------------------------------------------------

def test_console_script_help():
    proc = subprocess.run([fastnn_script(), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for command in ("train", "evaluate", "gradcheck", "bench"):
        assert command in proc.stdout
    proc = subprocess.run([fastnn_script(), "train", "--help"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0
    assert "--learning-rate" in proc.stdout and "--checkpoint" in proc.stdout


def test_console_script_train_and_error(tmp_path, mnist_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [fastnn_script(), "train", "--config", "softmax-regression",  # by name, from any folder
         "--data-dir", str(mnist_path), "--out", str(out), "--epochs", "1", "--quiet"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    match = ACCURACY_LINE.search(proc.stdout)
    assert match, proc.stdout
    assert float(match.group(1)) == round(read_json(out / "metrics.json")["test_accuracy"] * 100, 2)
    assert not (tmp_path / "runs").exists()

    proc = subprocess.run(
        [fastnn_script(), "train", "--config", str(tmp_path / "nope.yaml"), "--data-dir",
         str(mnist_path)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2
    assert "nope.yaml" in proc.stderr and "not found" in proc.stderr


# ---------------------------------------------------------------------------
# sweep
# ---------------------------------------------------------------------------

def test_sweep_trains_one_run_per_value_and_compares_them(tmp_path, mnist_path):
    out = tmp_path / "sweep"
    rc, stdout, err = run_main("sweep", "--config", CONFIGS / "best.yaml", "--param", "activation",
                               "--values", "relu,tanh", "--data-dir", mnist_path, "--out", out,
                               "--quiet", "--epochs", "1", "--layers", "784,16,10", "--jobs", "1")
    assert rc == 0, err
    summary = read_json(out / "sweep.json")
    assert summary["grid"] == {"activation": ["relu", "tanh"]}
    assert [t["params"] for t in summary["trials"]] == [{"activation": "relu"},
                                                        {"activation": "tanh"}]
    for trial in summary["trials"]:
        assert trial["status"] == "ok" and trial["error"] is None and trial["epochs"] == 1
        folder = out / trial["run"]
        assert folder.name.startswith(f"activation={trial['params']['activation']}@")
        for name in ARTIFACTS:
            assert (folder / name).is_file(), (folder, name)
        config = read_json(folder / "config.json")
        assert config["activation"] == trial["params"]["activation"]
        assert config["layers"] == [784, 16, 10]
        metrics = read_json(folder / "metrics.json")
        assert metrics["test_accuracy"] == trial["test_accuracy"]
        history = read_json(folder / "history.json")["history"]
        assert trial["val_accuracy"] == history["val_accuracy"][0]
    # the two runs differ only in the swept key, so their results differ
    assert summary["trials"][0]["test_accuracy"] != summary["trials"][1]["test_accuracy"]
    assert (out / "sweep.png").read_bytes()[:8] == PNG_SIGNATURE
    # the table: sorted by validation accuracy, the best marked
    best = max(summary["trials"], key=lambda t: t["val_accuracy"])
    assert summary["best"] == best["run"]
    rows = [line for line in stdout.splitlines() if "%" in line]
    assert len(rows) == 2 and rows[0].startswith("*") and best["params"]["activation"] in rows[0]
    assert f"{best['val_accuracy'] * 100:.2f} %" in rows[0]


def test_sweep_values_are_typed_and_layers_take_semicolons(tmp_path, mnist_path):
    out = tmp_path / "l2"
    rc, _, err = run_main("sweep", "--config", CONFIGS / "softmax-regression.yaml", "--param", "l2",
                          "--values", "0,1e-3", "--data-dir", mnist_path, "--out", out, "--quiet",
                          "--epochs", "1", "--jobs", "1")
    assert rc == 0, err
    assert [t["params"]["l2"] for t in read_json(out / "sweep.json")["trials"]] == [0, 0.001]
    out = tmp_path / "layers"
    rc, _, err = run_main("sweep", "--config", CONFIGS / "softmax-regression.yaml", "--grid",
                          "layers=784,10;784,8,10", "--data-dir", mnist_path,
                          "--out", out, "--quiet", "--epochs", "1", "--jobs", "1")
    assert rc == 0, err
    assert sorted(p.name.split("@")[0] for p in out.iterdir() if p.is_dir()) == \
        ["layers=784-10", "layers=784-8-10"]


def test_sweep_grid_random_and_jobs_2(tmp_path, mnist_path):
    """A product grid sampled with --random, on two worker processes; a rerun skips it all."""
    out = tmp_path / "grid"
    argv = ("sweep", "--config", CONFIGS / "softmax-regression.yaml", "--grid", "l2=0,1e-3",
            "--grid", "learning_rate=0.05,0.1", "--random", "3", "--seed", "1", "--jobs", "2",
            "--data-dir", mnist_path, "--out", out, "--quiet", "--epochs", "1")
    rc, stdout, err = run_main(*argv)
    assert rc == 0, err
    summary = read_json(out / "sweep.json")
    assert summary["backend"] == "processes(2)" and summary["random"] == 3
    params = [t["params"] for t in summary["trials"]]
    assert len(params) == 3 and all(set(p) == {"l2", "learning_rate"} for p in params)
    assert all(t["status"] == "ok" for t in summary["trials"])
    assert "processes(2)" in stdout and "trials/minute" in stdout
    rc, stdout, err = run_main(*argv)
    assert rc == 0, err
    assert read_json(out / "sweep.json")["skipped"] == 3 and "3 from an earlier run" in stdout


def test_sweep_failed_trial_exits_1_and_others_go_on(tmp_path, mnist_path):
    out = tmp_path / "fail"
    rc, stdout, err = run_main("sweep", "--config", CONFIGS / "softmax-regression.yaml",
                               "--grid", "learning_rate=0.1,1e5", "--data-dir", mnist_path,
                               "--out", out, "--quiet", "--epochs", "1", "--jobs", "1")
    assert rc == 1, err
    trials = read_json(out / "sweep.json")["trials"]
    assert [t["status"] for t in trials] == ["ok", "failed"]
    assert "diverged" in trials[1]["error"] and "failed: training diverged" in stdout


@pytest.mark.parametrize("argv, needle", [
    (("--param", "bogus", "--values", "1"), "--param"),
    (("--param", "activation", "--values", "relu,swish"), "activation"),
    (("--grid", "bogus=1"), "bogus"),
    (("--grid", "l2"), "--grid"),
    (("--param", "l2"), "--values"),
    ((), "--grid"),
    (("--grid", "l2=0", "--jobs", "0"), "jobs"),
    (("--grid", "l2=0", "--grid", "l2=1e-3"), "'l2' twice"),
    (("--grid", "l2=0,1e-3", "--l2", "0.1"), "--l2 fixes 'l2'"),
    (("--param", "l2", "--values", "0", "--grid", "l2=1e-3"), "'l2' twice"),
    (("--grid", "augment=[{rotation: 5}, {rotation: 9}]", "--augment-scale", "0.1"),
     "fixes 'augment'"),
    (("--grid", "l2=0", "--lr-schedule", "{name: step, name: cosine}"), "'name' twice"),
])
def test_sweep_errors_name_the_problem(tmp_path, mnist_path, argv, needle):
    rc, _, err = run_main("sweep", "--config", CONFIGS / "best.yaml", "--data-dir", mnist_path,
                          "--out", tmp_path / "s", "--quiet", "--epochs", "1", *argv)
    assert rc == 2
    assert needle in err


# ---------------------------------------------------------------------------
# class names (Fashion-MNIST), the light --help, one version, study
# ---------------------------------------------------------------------------

FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot"]


@pytest.fixture
def fashion_standin(cached_data, mnist_path, monkeypatch):
    """``fashion-mnist`` served by the MNIST files (same format; no Fashion-MNIST
    files on an offline machine): what is checked here is the naming, not the data."""
    def load(dataset, data_dir, normalize):
        return cached_data("mnist", mnist_path, normalize)
    monkeypatch.setattr(experiment, "load_data", load)


def test_evaluate_names_the_classes(best_run, mnist_path):
    out, _ = best_run
    rc, stdout, err = run_main("evaluate", out / "model.npz", "--data-dir", mnist_path)
    assert rc == 0, err
    result = json.loads(stdout)
    assert list(result["per_class_error"]) == [str(d) for d in range(10)]
    cm = np.array(result["confusion_matrix"]["rows_true_columns_predicted"])
    assert result["confusion_matrix"]["classes"] == [str(d) for d in range(10)]
    np.testing.assert_allclose(list(result["per_class_error"].values()), per_class_error(cm))
    assert np.trace(cm) / cm.sum() == pytest.approx(result["test_accuracy"], abs=1e-12)


def test_fashion_mnist_run_and_evaluate_use_class_names(fashion_standin, tmp_path, mnist_path):
    config = tmp_path / "fashion.yaml"
    config.write_text("layers: [784, 10]\ndataset: fashion-mnist\nepochs: 1\n")
    out = tmp_path / "run"
    rc, _, err = run_main("train", "--config", config, "--out", out, "--quiet")
    assert rc == 0, err
    metrics = read_json(out / "metrics.json")
    assert metrics["class_names"] == FASHION
    for name in PLOTS:
        assert (out / name).read_bytes()[:8] == PNG_SIGNATURE
    rc, stdout, err = run_main("evaluate", out / "model.npz")
    assert rc == 0, err
    result = json.loads(stdout)
    assert result["dataset"] == "fashion-mnist"
    assert list(result["per_class_error"]) == FASHION
    assert result["confusion_matrix"]["classes"] == FASHION


def test_bench_without_its_harness_says_how_to_get_it(tmp_path, monkeypatch):
    """Outside a checkout, with fastnn-bench not installed: exit 2 and the way to install it."""
    monkeypatch.setitem(sys.modules, "fastnn_bench", None)  # "import fastnn_bench" fails
    monkeypatch.setattr(cli, "__file__", str(tmp_path / "site-packages" / "fastnn" / "cli.py"))
    rc, stdout, err = run_main("bench", "--trainers", "fastnn")
    assert rc == 2 and stdout == ""
    assert "benchmark harness is not installed" in err and "pip install ./benchmarks" in err


def test_bench_without_the_peak_probe_says_how_to_build_it(monkeypatch):
    """The harness from a checkout without its compiled probe: exit 2 before any work,
    naming the probe, how to build it and --no-peak."""
    import fastnn_bench
    monkeypatch.delattr(fastnn_bench, "_peak", raising=False)  # imported by an earlier test
    monkeypatch.setitem(sys.modules, "fastnn_bench._peak", None)  # "import _peak" fails
    rc, stdout, err = run_main("bench", "--trainers", "fastnn")
    assert rc == 2 and stdout == ""
    assert "fastnn_bench._peak" in err and "pip install ./benchmarks" in err and "--no-peak" in err


def test_help_does_not_import_the_bench_harness():
    code = ("import sys\nfrom fastnn import cli\n"
            "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('fastnn_bench.harness' in sys.modules, 'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "False False"
    # the bench subcommand still has its own help (and imports the harness then)
    proc = subprocess.run([fastnn_script(), "bench", "--help"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and "--batch-sizes" in proc.stdout


def test_version_is_defined_once():
    from importlib.metadata import version

    import fastnn
    assert version("fastnn") == fastnn.__version__
    import tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and project["dynamic"] == ["version"]


def test_train_with_seed_null_resumes_its_checkpoint(tmp_path, mnist_path):
    """`seed: null` draws a seed per run: rerun on its checkpoint, the run takes
    the checkpoint's seed (config.json says so) and resumes instead of refusing."""
    ckpt = tmp_path / "state.ckpt"
    args = ("--layers", "784,16,10", "--seed", "null", "--dropout", "0.2")
    rc, _, err = train(CONFIGS / "best.yaml", tmp_path / "a", mnist_path, *args,
                       "--epochs", "1", "--checkpoint", ckpt)
    assert rc == 0, err
    seed = read_json(tmp_path / "a" / "config.json")["seed"]
    rc, _, err = train(CONFIGS / "best.yaml", tmp_path / "b", mnist_path, *args,
                       "--epochs", "2", "--checkpoint", ckpt)
    assert rc == 0, err
    assert read_json(tmp_path / "b" / "config.json")["seed"] == seed
    resumed = read_json(tmp_path / "b" / "history.json")["history"]
    assert resumed["time"][0] == read_json(tmp_path / "a" / "history.json")["history"]["time"][0]


def test_study_command_writes_the_table(tmp_path, mnist_path):
    folder = tmp_path / "study"
    folder.mkdir()
    (folder / "tiny.yaml").write_text(
        "layers: [784, 10]\nepochs: 1\nbatch_size: 100\nlearning_rate: 0.001\n"
        "loss_reduction: sum\n"
        "report:\n  source: test\n  test_accuracy: 0.5\n  epochs: 1\n  note: a note\n")
    (folder / "unreachable.yaml").write_text(
        "layers: [784, 10]\nepochs: 1\nreport:\n  test_accuracy: 0.9999\n")
    out = tmp_path / "out"
    rc, stdout, err = run_main("study", folder, "--data-dir", mnist_path, "--out", out, "--quiet")
    assert rc == 0, err
    study = read_json(out / "study.json")
    rows = {r["name"]: r for r in study["rows"]}
    assert set(rows) == {"tiny", "unreachable"}
    tiny = rows["tiny"]
    assert tiny["reported_accuracy"] == 0.5 and tiny["epochs"] == 1
    assert tiny["test_accuracy"] == read_json(out / "tiny" / "metrics.json")["test_accuracy"]
    assert tiny["meets_target"] and not rows["unreachable"]["meets_target"]
    assert tiny["config"]["loss_reduction"] == "sum"
    table = (out / "study.md").read_text()
    assert "| tiny | test | 50.00 % |" in table and "a note" in table and "**no**" in table
    assert "1 of 2 rows" in stdout
    # --only
    rc, _, err = run_main("study", folder, "--data-dir", mnist_path, "--out", tmp_path / "o2",
                          "--only", "study/tiny", "--quiet")  # as `fastnn configs` names it
    assert rc == 0, err
    assert [r["name"] for r in read_json(tmp_path / "o2" / "study.json")["rows"]] == ["tiny"]
    rc, _, err = run_main("study", folder, "--out", tmp_path / "o3", "--only", "nope")
    assert rc == 2 and "nope" in err


def test_configs_command_lists_the_shipped_configs():
    rc, stdout, err = run_main("configs")
    assert rc == 0, err
    listed = {line.split()[0]: line for line in stdout.splitlines()[:-1]}
    assert set(listed) == set(cfg.shipped())
    assert "97.59 %" in listed["best"] and "Reported test accuracy" not in listed["best"]
    assert str(cfg.SHIPPED) in stdout.splitlines()[-1]


def test_study_defaults_to_the_shipped_configs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, _, err = run_main("study", "--out", tmp_path / "out", "--only", "nope")
    assert rc == 2 and "no study config named nope" in err
    assert str(cfg.SHIPPED / "study") in err


@pytest.mark.parametrize("report, message", [
    ("", "needs a 'report' mapping"),
    ("report:\n  test_accuracy: 97.5\n", "fraction"),
    ("report:\n  test_accuracy: 0.9\n  accuracy: 0.9\n", "unknown report keys"),
])
def test_study_config_errors(tmp_path, report, message):
    folder = tmp_path / "study"
    folder.mkdir()
    (folder / "bad.yaml").write_text("layers: [784, 10]\n" + report)
    rc, _, err = run_main("study", folder, "--out", tmp_path / "out")
    assert rc == 2 and message in err, err


@pytest.mark.parametrize("second, message", [
    ("layers: [10, 4, 1]\nloss: mse\ndataset: friedman1\nnormalize: none\n",
     "study config 'b': studies compare test accuracies, so they take classifiers only"),
    ("layers: [784, 10]\nepochs: -1\n", "study config 'b': epochs must be >= 0"),
    ("layers: [784, 10]\nearly_stopping: 2\n",
     "study config 'b': early_stopping needs validation data"),
])
def test_study_checks_every_config_before_training_any(tmp_path, second, message):
    """A bad config anywhere in the folder: exit 2 naming it, nothing trained
    (the first config would have trained, then the second failed)."""
    folder = tmp_path / "study"
    folder.mkdir()
    report = "report:\n  test_accuracy: 0.9\n"
    (folder / "a.yaml").write_text("layers: [784, 10]\nepochs: 1\n" + report)
    (folder / "b.yaml").write_text(second + report)
    rc, _, err = run_main("study", folder, "--out", tmp_path / "out")
    assert rc == 2 and message in err, err
    assert not (tmp_path / "out" / "a").exists()


def test_study_only_checks_the_configs_it_runs(tmp_path, mnist_path):
    """--only a: a regressor's config beside it is not the study's concern."""
    folder = tmp_path / "study"
    folder.mkdir()
    report = "report:\n  test_accuracy: 0.9\n"
    (folder / "a.yaml").write_text("layers: [784, 10]\nepochs: 1\n" + report)
    (folder / "b.yaml").write_text("layers: [10, 4, 1]\nloss: mse\ndataset: friedman1\n"
                                   "normalize: none\n" + report)
    rc, _, err = run_main("study", folder, "--out", tmp_path / "out", "--only", "a",
                          "--data-dir", mnist_path)
    assert rc == 0, err
    assert (tmp_path / "out" / "a").is_dir() and not (tmp_path / "out" / "b").exists()


@pytest.mark.parametrize("only", ["", ",", " , "])
def test_study_only_naming_nothing_is_an_error(tmp_path, only):
    rc, _, err = run_main("study", "--out", tmp_path / "out", "--only", only)
    assert rc == 2 and "--only names no config" in err, err
    assert not (tmp_path / "out").exists()


def test_train_regression_config_reports_r2_and_rmse(tmp_path):
    """configs/regression-friedman1.yaml: a generated data set (no files), loss mse;
    the line and metrics.json give the test R² and RMSE, and evaluate agrees."""
    out = tmp_path / "reg"
    rc, stdout, err = run_main("train", "--config", CONFIGS / "regression-friedman1.yaml",
                               "--out", out, "--quiet", "--epochs", "8")
    assert rc == 0, err
    line = re.search(r"test R²: (0\.\d+), RMSE (\d+\.\d+) \(8 epochs", stdout)
    assert line, stdout
    metrics = read_json(out / "metrics.json")
    assert float(line.group(1)) == pytest.approx(metrics["test_r2"], abs=1e-4)
    assert metrics["test_r2"] > 0.8
    assert metrics["test_rmse"] == pytest.approx(metrics["test_loss"] ** 0.5)
    model = MLP.load(out / "model.npz")
    assert model.loss == "mse" and model.layers == (10, 64, 64, 1)
    history = read_json(out / "history.json")["history"]
    assert set(history) == {"loss", "val_loss", "val_r2", "lr", "time"}
    png_size(out / "learning_curves.png")
    rc, stdout, err = run_main("evaluate", out / "model.npz")
    assert rc == 0, err
    assert json.loads(stdout)["test_r2"] == pytest.approx(metrics["test_r2"], rel=1e-6)
