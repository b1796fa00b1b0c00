"""One experiment: train a resolved config, evaluate it, write its run folder.

The layer between the library (model, training, data) and what runs many
experiments (:mod:`fastnn.sweep`, :mod:`fastnn.study`) or parses a command
line (:mod:`fastnn.cli`, which nothing in the package imports).

A run folder holds ``model.npz``, ``config.json``, ``history.json``,
``metrics.json``, ``train.log`` and the PNG plots (learning curves,
confusion matrix, per-class errors). ``train.log`` takes what the run's own
thread logs to the ``fastnn`` logger, so runs in several threads (trials on a
threaded Dask worker) each keep their own.

>>> import numpy as np, tempfile
>>> from fastnn import config
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(120, 4)).astype(np.float32); y = (X[:, 0] > 0).astype(np.intp)
>>> cfg = config.resolve({"layers": [4, 2], "epochs": 2, "batch_size": 20})
>>> with tempfile.TemporaryDirectory() as out:
...     metrics, history = run_experiment(cfg, ((X[:80], y[:80]), (X[80:], y[80:])), out, "tiny",
...                                       verbose=False)
>>> metrics["epochs"], 0 <= metrics["test_accuracy"] <= 1
(2, True)
"""
import contextlib
import contextvars
import json
import logging
import math
import threading
import time
import warnings
from pathlib import Path

from . import config as cfg
from . import datasets, plots, serialization, training
from ._atomic import atomic_write_json
from .metrics import confusion_matrix, per_class_error
from .model import MLP

__all__ = ["check_config", "load_data", "run_experiment", "evaluate_saved"]

log = logging.getLogger("fastnn")
#: The run whose train.log takes the records logged in this thread (or task).
_CURRENT_RUN = contextvars.ContextVar("fastnn_run", default=None)
_LOG_LOCK = threading.Lock()
_log_state = {"runs": 0, "level": logging.NOTSET}


class _ThisRun(logging.Filter):
    """Passes the records logged where ``run`` is the current run (its thread)."""

    def __init__(self, run):
        super().__init__()
        self.run = run

    def filter(self, record):
        return _CURRENT_RUN.get() is self.run


@contextlib.contextmanager
def _run_log(path):
    """``path`` (train.log) takes what this thread logs to ``fastnn`` during the
    block, and only that: runs in other threads have their own. The ``fastnn``
    logger is at INFO (or finer) while any run is going, and its level and
    handlers are restored when the last one ends."""
    run = object()
    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    handler.addFilter(_ThisRun(run))
    token = _CURRENT_RUN.set(run)
    with _LOG_LOCK:
        if _log_state["runs"] == 0:
            _log_state["level"] = log.level
        _log_state["runs"] += 1
        if log.getEffectiveLevel() > logging.INFO:
            log.setLevel(logging.INFO)
        log.addHandler(handler)
    try:
        yield
    finally:
        with _LOG_LOCK:
            log.removeHandler(handler)
            _log_state["runs"] -= 1
            if _log_state["runs"] == 0:
                log.setLevel(_log_state["level"])
        _CURRENT_RUN.reset(token)
        handler.close()


def check_config(config):
    """Fail on values the model, optimizer or fit reject, before any data loads or
    any training runs (a resolved config); returns the model that ``config``
    builds (its seed drawn, for ``seed: null``)."""
    model_kw, _, _ = cfg.split(config)  # builds (validates) the optimizer
    model = MLP(**model_kw)
    fit_config = cfg.fit_config(config)  # validates fit's arguments
    # and what fit checks against the model and its validation data (a run from a
    # config validates on validation_split, or not at all)
    training.check_without_data(model, fit_config, validating=bool(config["validation_split"]))
    return model


def load_data(dataset, data_dir, normalize):
    """``((X, y), (X_test, y_test))`` of ``dataset`` (see :mod:`fastnn.datasets`)."""
    return datasets.load_dataset(dataset, data_dir=data_dir, normalize=normalize)


def run_experiment(config, data, out, name, verbose=True, checkpoint=None):
    """Train one resolved config on ``data`` and write a run folder.

    ``data``: ``((X, y), (X_test, y_test))``. Writes model.npz, config.json,
    history.json, metrics.json, train.log and the PNG plots into ``out``;
    returns ``(metrics, history)``.
    """
    model_kw, _, _ = cfg.split(config)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (X, y), (X_test, y_test) = data
    with _run_log(out / "train.log"):
        log.info("config %s: %s", name, json.dumps(config))
        log.info("data: %d train, %d test samples", len(X), len(X_test))
        if model_kw["seed"] is None and checkpoint is not None:
            # `seed: null` resuming a checkpoint: its seed (MLP.fit would take it
            # too), so that config.json and the plots name the seed trained with
            model_kw = {**model_kw, "seed": serialization.checkpoint_seed(checkpoint)}
        model = MLP(**model_kw)
        fit_config = cfg.fit_config(config, verbose=verbose, checkpoint=checkpoint)
        if not model.is_classifier:
            return _run_regression(model, config, fit_config, data, out, name)
        # the dataset's class names, unless the arrays came from elsewhere
        # (a sweep's in-memory data) with another number of classes
        names = datasets.class_names(config["dataset"])
        names = names if len(names) == model.n_classes_ else None
        config = {**config, "seed": model.seed}  # the seed drawn for `seed: null`
        log.info("model: %r", model)
        augment = fit_config.augment
        if augment is not None:
            # the dataset's image shape, unless the config gave one
            augment = augment.with_image_shape(datasets.image_shape(config["dataset"]))
            fit_config = fit_config.replace(augment=augment)
            log.info("augmentation: %s", json.dumps(augment.to_dict()))
            plots.plot_augmentation(X, augment, out / "augmentation_samples.png",
                                    seed=model.seed, title=f"{name}: training images (left) "
                                    f"and their deformations in epochs 0-4")
        history, train_seconds = _train(model, X, y, fit_config)
        test_loss, test_acc = model.evaluate(X_test, y_test)
        cm = confusion_matrix(y_test, model.predict(X_test), model.n_classes_)
        metrics = {"test_accuracy": test_acc, "test_loss": test_loss,
                   "train_seconds": train_seconds, "epochs": len(history.epoch),
                   "best_epoch": history.best_epoch, "stopped_epoch": history.stopped_epoch,
                   "diverged": history.diverged, "interrupted": history.interrupted,
                   "class_names": names,
                   "per_class_error": per_class_error(cm).tolist(),
                   "confusion_matrix": cm.tolist()}
        model.save(out / "model.npz")
        # written with the results, so a run that fails does not leave a config.json that
        # disagrees with an earlier run's model.npz (evaluate reads its normalize setting)
        atomic_write_json(out / "config.json", config, indent=2)
        history.to_json(out / "history.json")
        atomic_write_json(out / "metrics.json", metrics, indent=2)
        plots.plot_history(history, out / "learning_curves.png", title=f"{name}: {list(model.layers)}")
        plots.plot_confusion_matrix(cm, out / "confusion_matrix.png", class_names=names)
        plots.plot_per_class_errors(cm, out / "per_class_errors.png", class_names=names)
        _remove_stale(out, () if augment is not None else ("augmentation_samples.png",))
        log.info("test accuracy %.4f, test loss %.4f, %.1f s of training", test_acc, test_loss,
                 train_seconds)
    return metrics, history


def _remove_stale(out, names):
    """Delete an earlier run's outputs that this finished run does not write
    (its folder reused: a regression after a classifier, a run without
    augmentation after one with), so the folder describes one run."""
    for name in names:
        (out / name).unlink(missing_ok=True)


def _train(model, X, y, fit_config):
    """``(history, seconds)`` of ``model.fit`` on (X, y), its epochs logged."""
    t0 = time.perf_counter()
    history = model.fit(X, y, config=fit_config)
    train_seconds = time.perf_counter() - t0
    for i, epoch in enumerate(history.epoch):
        log.info("epoch %d: %s", epoch + 1,
                 ", ".join(f"{k}={v[i]:.5g}" for k, v in history.history.items()))
    return history, train_seconds


def _run_regression(model, config, fit_config, data, out, name):
    """run_experiment for a regressor (``loss: mse``): metrics.json holds the test
    set's R², RMSE and mean squared error (``test_loss``); no confusion matrix."""
    (X, y), (X_test, y_test) = data
    config = {**config, "seed": model.seed}
    log.info("model: %r", model)
    history, train_seconds = _train(model, X, y, fit_config)
    test_mse, test_r2 = model.evaluate(X_test, y_test)
    metrics = {"test_r2": test_r2, "test_rmse": math.sqrt(test_mse), "test_loss": test_mse,
               "train_seconds": train_seconds, "epochs": len(history.epoch),
               "best_epoch": history.best_epoch, "stopped_epoch": history.stopped_epoch,
               "diverged": history.diverged, "interrupted": history.interrupted}
    model.save(out / "model.npz")
    atomic_write_json(out / "config.json", config, indent=2)
    history.to_json(out / "history.json")
    atomic_write_json(out / "metrics.json", metrics, indent=2)
    plots.plot_history(history, out / "learning_curves.png", title=f"{name}: {list(model.layers)}")
    _remove_stale(out, ("confusion_matrix.png", "per_class_errors.png",
                        "augmentation_samples.png"))
    log.info("test R2 %.4f, RMSE %.4f, %.1f s of training", test_r2, metrics["test_rmse"],
             train_seconds)
    return metrics, history


def _run_config(path, model):
    """The ``config.json`` of the run folder holding the model file ``path`` ({}
    where there is none), checked to be a config of this model's layers: an
    error names the file otherwise (another run's, or not a config)."""
    run_config = Path(path).with_name("config.json")
    if not run_config.is_file():
        return {}
    how = "give --dataset and --normalize (or move the file)"
    try:
        saved = json.loads(run_config.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:  # JSONDecodeError and UnicodeDecodeError included
        raise ValueError(f"{str(run_config)!r} beside the model is not a run's config.json "
                         f"({' '.join(str(exc).split())}): {how}") from None
    if not isinstance(saved, dict):
        raise ValueError(f"{str(run_config)!r} beside the model is not a run's config.json "
                         f"(a JSON {type(saved).__name__}, not a mapping): {how}")
    layers = saved.get("layers")
    if layers is not None and list(layers) != list(model.layers):
        raise ValueError(f"{str(run_config)!r} beside the model is another run's: its layers "
                         f"are {layers}, the model's {list(model.layers)}; {how}")
    return saved


def evaluate_saved(path, data_dir=None, dataset=None, normalize=None):
    """Evaluate a saved model (a run folder's ``model.npz``, or :meth:`MLP.save`'s file)
    on its dataset's test set; ``dataset`` and ``normalize`` default to the run's
    ``config.json`` beside it (else MNIST, minmax). Returns a JSON-ready dict."""
    model = MLP.load(path)
    saved = {} if dataset is not None and normalize is not None else _run_config(path, model)
    if not saved and (dataset is None or normalize is None):
        # a model file alone does not say how its inputs were scaled
        warnings.warn(f"no config.json beside {str(path)!r}: evaluating with "
                      f"dataset={dataset or 'mnist'!r}, normalize={normalize or 'minmax'!r} "
                      f"(give both when the model was trained otherwise)")
    dataset = dataset or saved.get("dataset", "mnist")
    normalize = normalize or saved.get("normalize", "minmax")
    if not model.is_classifier:
        _, (X_test, y_test) = load_data(dataset, data_dir, normalize)
        mse, r2 = model.evaluate(X_test, y_test)
        return {"model": str(path), "dataset": dataset, "normalize": normalize,
                "test_r2": r2, "test_rmse": math.sqrt(mse), "test_loss": mse}
    names = datasets.class_names(dataset)
    if not names:
        raise ValueError(f"the model is a classifier of {model.n_classes_} classes, and "
                         f"{dataset} is a regression dataset")
    if len(names) != model.n_classes_:
        raise ValueError(f"the model has {model.n_classes_} classes, {dataset} has {len(names)}")
    _, (X_test, y_test) = load_data(dataset, data_dir, normalize)
    loss, acc = model.evaluate(X_test, y_test)
    cm = confusion_matrix(y_test, model.predict(X_test), model.n_classes_)
    return {"model": str(path), "dataset": dataset, "normalize": normalize,
            "test_accuracy": acc, "test_loss": loss,
            "per_class_error": dict(zip(names, per_class_error(cm).tolist())),
            "confusion_matrix": {"classes": names, "rows_true_columns_predicted": cm.tolist()}}
