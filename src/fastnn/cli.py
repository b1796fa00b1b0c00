"""The ``fastnn`` command line: train, sweep, study, evaluate, gradcheck, bench.

    fastnn configs                      # the shipped configs, by name
    fastnn train --config best --data-dir ../shared/data/mnist --out runs/best
    fastnn train --config my-config.yaml  # a path works as well
    fastnn sweep --config best --grid activation=relu,tanh --grid l2=0,1e-3 --jobs 2
    fastnn study --out runs/study         # the shipped study configs (or a folder of configs)
    fastnn evaluate runs/best/model.npz --data-dir ../shared/data/mnist
    fastnn gradcheck --data-dir ../shared/data/mnist
    fastnn bench --data-dir ../shared/data/mnist

Every config key can be overridden by a flag of the same name (``--epochs 1``,
``--learning-rate 0.1``, ``--layers 784,256,10``). The benchmark harness is
imported only by ``fastnn bench`` (``fastnn --help`` stays light).
"""
import argparse
import contextlib
import contextvars
import json
import logging
import sys
import threading
import time
from pathlib import Path

import yaml

from . import config as cfg
from ._atomic import atomic_write_json

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


def _value(text):
    """A flag's value, typed like a YAML scalar ("1" -> 1, "null" -> None);
    a comma-separated list of ints for layers."""
    if "," in text and not text.strip().startswith("["):
        text = f"[{text}]"
    try:
        return cfg.parse_yaml(text)
    except yaml.YAMLError:
        return text


def _add_data_args(p):
    p.add_argument("--data-dir", default=None,
                   help="folder with the IDX files (default: $FASTNN_DATA, else the user cache)")


def _add_config_overrides(p, title, exclude=()):
    """A ``--key VALUE`` flag for every config key but ``exclude`` (read by
    :func:`_config_from_args`)."""
    group = p.add_argument_group(title)
    for key in cfg.DEFAULTS:
        if key in exclude:
            continue
        # SUPPRESS: only the flags given appear, so "--early-stopping null" can set None
        group.add_argument("--" + key.replace("_", "-"), dest="set_" + key, type=_value,
                           default=argparse.SUPPRESS, metavar="VALUE")


def _parser():
    parser = argparse.ArgumentParser(prog="fastnn", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("configs", help="list the shipped configs (their names work as --config)")

    p = sub.add_parser("train", help="train a model from a config file")
    p.add_argument("--config", required=True,
                   help="YAML or JSON config: a path, or a shipped config's name (fastnn configs)")
    _add_data_args(p)
    p.add_argument("--out", default=None, help="output folder (default: runs/<config name>)")
    p.add_argument("--checkpoint", default=None,
                   help="save the training state here every epoch; resume from it if present")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_config_overrides(p, "config overrides")

    p = sub.add_parser("sweep", help="train a grid of configs (in parallel, or on a Dask "
                                     "cluster) and compare them")
    p.add_argument("--config", required=True,
                   help="YAML or JSON config (the base): a path, or a shipped config's name")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="a config key and its values; repeat for a product grid. layers take "
                        "semicolons (layers=784,10;784,128,10); any key takes a YAML list")
    p.add_argument("--param", default=None, help="shorthand: --param KEY --values V1,V2 is "
                                                 "--grid KEY=V1,V2")
    p.add_argument("--values", default=None, help="the values of --param")
    p.add_argument("--random", type=int, default=None, metavar="N",
                   help="train N trials drawn from the grid")
    p.add_argument("--seed", type=int, default=0, metavar="S",
                   help="seed of --random's draw (the models' seed is the config key seed; "
                        "sweep it with --grid seed=0,1,2)")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="trials at once in worker processes, one BLAS thread each "
                        "(default: one per core)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run the trials on a Dask cluster, e.g. tcp://host:8786 "
                        "(pip install 'fastnn[dask]')")
    _add_data_args(p)
    p.add_argument("--out", default=None, help="output folder (default: runs/sweep-<config>-<keys>)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_config_overrides(p, "config overrides (applied to every run)", exclude=("seed",))

    p = sub.add_parser("evaluate", help="evaluate a saved model on the test set")
    p.add_argument("model", help="a model.npz written by `fastnn train` or MLP.save")
    _add_data_args(p)
    p.add_argument("--dataset", default=None, help="mnist | fashion-mnist (default: from the run)")
    p.add_argument("--normalize", default=None, help="minmax | standard | none (default: from the run)")

    p = sub.add_parser("gradcheck", help="finite differences vs backpropagation, per layer")
    _add_data_args(p)
    p.add_argument("--layers", type=_value, default=[784, 64, 32, 10])
    p.add_argument("--activation", default="tanh")
    p.add_argument("--samples", type=int, default=64, help="MNIST images in the batch")
    p.add_argument("--checks", type=int, default=10, help="entries sampled per weight/bias")
    p.add_argument("--eps", type=float, default=1e-4)
    p.add_argument("--tol", type=float, default=1e-6, help="fail (exit 1) above this relative error")
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("study", help="run the original studies' configs; reported vs fastnn table")
    p.add_argument("folder", nargs="?", default=None,
                   help="folder of study configs (default: the shipped ones, study/... in "
                        "fastnn configs)")
    _add_data_args(p)
    p.add_argument("--out", default="runs/study", help="output folder (default: runs/study)")
    p.add_argument("--only", default=None, help="comma-separated config names to run")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    # its options are fastnn.bench's own (parsed there: --help does not import the harness)
    sub.add_parser("bench", help="time one MNIST epoch: fastnn vs NumPy (vs PyTorch)",
                   add_help=False)
    return parser


def _load_data(dataset, data_dir, normalize):
    from .datasets import load_dataset
    return load_dataset(dataset, data_dir=data_dir, normalize=normalize)


def run_experiment(config, data, out, name, verbose=True, checkpoint=None):
    """Train one resolved config on ``data`` and write a run folder.

    ``data``: ``((X, y), (X_test, y_test))``. Writes model.npz, config.json,
    history.json, metrics.json, train.log and the PNG plots into ``out``;
    returns ``(metrics, history)``.
    """
    from . import MLP, plots
    from .datasets import class_names
    from .metrics import confusion_matrix, per_class_error

    model_kw, _, fit_kw = cfg.split(config)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (X, y), (X_test, y_test) = data
    with _run_log(out / "train.log"):
        log.info("config %s: %s", name, json.dumps(config))
        log.info("data: %d train, %d test images", len(X), len(X_test))
        model = MLP(**model_kw)
        # the dataset's class names, unless the arrays came from elsewhere
        # (a sweep's in-memory data) with another number of classes
        names = class_names(config["dataset"])
        names = names if len(names) == model.n_classes_ else None
        config = {**config, "seed": model.seed}  # the seed drawn for `seed: null`
        log.info("model: %r", model)
        t0 = time.perf_counter()
        history = model.fit(X, y, verbose=verbose, checkpoint=checkpoint, **fit_kw)
        train_seconds = time.perf_counter() - t0
        for i, epoch in enumerate(history.epoch):
            log.info("epoch %d: %s", epoch + 1,
                     ", ".join(f"{k}={v[i]:.5g}" for k, v in history.history.items()))
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
        log.info("test accuracy %.4f, test loss %.4f, %.1f s of training", test_acc, test_loss,
                 train_seconds)
    return metrics, history


def _config_from_args(args):
    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("set_")}
    return cfg.resolve({**cfg.load(args.config), **overrides})


def cmd_train(args):
    config = _config_from_args(args)
    data = _load_data(config["dataset"], args.data_dir, config["normalize"])
    out = Path(args.out or Path("runs") / Path(args.config).stem)
    metrics, _ = run_experiment(config, data, out, Path(args.config).stem,
                                verbose=not args.quiet, checkpoint=args.checkpoint)
    print(f"test accuracy: {metrics['test_accuracy'] * 100:.2f} % (loss {metrics['test_loss']:.4f}; "
          f"{metrics['epochs']} epochs, {metrics['train_seconds']:.1f} s of training) -> {out}")
    return 0


def cmd_sweep(args):
    """``fastnn sweep``: the grid from the flags, the work in :func:`fastnn.sweep.run_sweep`."""
    from . import sweep
    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("set_")}
    base = {**cfg.load(args.config), **overrides}
    grid = dict(sweep.parse_grid(g) for g in args.grid)
    if (args.param is None) != (args.values is None):
        raise ValueError("--param and --values go together")
    if args.param is not None:
        key, values = sweep.parse_grid(f"{args.param}={args.values}")
        if key not in cfg.DEFAULTS:
            raise ValueError(f"--param must be a config key ({', '.join(sorted(cfg.DEFAULTS))}), "
                             f"got {args.param!r}")
        grid[key] = values
    if not grid:
        raise ValueError("give at least one --grid KEY=V1,V2 (or --param KEY --values V1,V2)")
    name = f"{Path(args.config).stem}-{'-'.join(grid)}"
    out = Path(args.out or Path("runs") / f"sweep-{name}")
    try:
        summary = sweep.run_sweep(base, grid, out, loader=lambda d, n: _load_data(d, args.data_dir, n),
                                  random=args.random, seed=args.seed, jobs=args.jobs,
                                  scheduler=args.scheduler, progress=not args.quiet, name=name)
    except KeyboardInterrupt:
        print(f"fastnn sweep: interrupted; the finished trials are in {out}/sweep.json "
              f"(rerun the same command to continue)", file=sys.stderr)
        return 130
    print(sweep.format_table(summary))
    failed = [t for t in summary["trials"] if t["status"] != "ok"]
    rate = summary["trials_per_minute"]
    print(f"{len(summary['trials'])} trials ({summary['skipped']} from an earlier run, "
          f"{len(failed)} failed) on {summary['backend']}"
          + (f", {rate:.1f} trials/minute" if rate else "")
          + f"; best (*): {summary['best']} -> {out}/sweep.json, {out}/sweep.png")
    return 1 if failed else 0


def cmd_evaluate(args):
    from . import MLP
    from .datasets import class_names
    from .metrics import confusion_matrix, per_class_error
    model = MLP.load(args.model)
    run_config = Path(args.model).with_name("config.json")
    saved = json.loads(run_config.read_text()) if run_config.is_file() else {}
    dataset = args.dataset or saved.get("dataset", "mnist")
    normalize = args.normalize or saved.get("normalize", "minmax")
    names = class_names(dataset)
    if len(names) != model.n_classes_:
        raise ValueError(f"the model has {model.n_classes_} classes, {dataset} has {len(names)}")
    _, (X_test, y_test) = _load_data(dataset, args.data_dir, normalize)
    loss, acc = model.evaluate(X_test, y_test)
    cm = confusion_matrix(y_test, model.predict(X_test), model.n_classes_)
    print(json.dumps({"model": args.model, "dataset": dataset, "normalize": normalize,
                      "test_accuracy": acc, "test_loss": loss,
                      "per_class_error": dict(zip(names, per_class_error(cm).tolist())),
                      "confusion_matrix": {"classes": names, "rows_true_columns_predicted":
                                           cm.tolist()}}, indent=2))
    return 0


def cmd_configs(args):
    """``fastnn configs``: the shipped configs' names and first comment lines."""
    names = cfg.shipped()
    width = max(map(len, names))
    for name, path in names.items():
        print(f"{name:<{width}}  {cfg.describe(path)}")
    print(f"({len(names)} configs in {cfg.SHIPPED}; use a name as --config NAME)")
    return 0


def cmd_study(args):
    from .study import run_study
    only = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    folder = cfg.SHIPPED / "study" if args.folder is None else args.folder
    rows = run_study(folder, args.out, data_dir=args.data_dir, only=only,
                     verbose=not args.quiet)
    met = sum(r["meets_target"] for r in rows)
    print(f"{met} of {len(rows)} rows within 0.5 points of the report or above "
          f"-> {args.out}/study.md, {args.out}/study.json")
    return 0


def cmd_bench(args):
    from . import bench
    return bench.main(args.bench_argv)


def cmd_gradcheck(args):
    from . import MLP
    from .gradcheck import format_table, gradient_check
    (X, y), _ = _load_data("mnist", args.data_dir, "standard")
    model = MLP(args.layers, args.activation, dtype="float64", seed=args.seed)
    rows = gradient_check(model, X[:args.samples], y[:args.samples], n_checks=args.checks,
                          eps=args.eps, seed=args.seed)
    print(f"gradient check: {model!r}, {args.samples} images, eps {args.eps:g}")
    print(format_table(rows))
    worst = max(r["max_rel_error"] for r in rows)
    ok = worst < args.tol
    print(f"max relative error {worst:.3e}: {'PASS' if ok else 'FAIL'} (tolerance {args.tol:g})")
    return 0 if ok else 1


COMMANDS = {"configs": cmd_configs, "train": cmd_train, "sweep": cmd_sweep, "study": cmd_study,
            "evaluate": cmd_evaluate, "gradcheck": cmd_gradcheck, "bench": cmd_bench}


def main(argv=None):
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "bench":
        args.bench_argv = extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return COMMANDS[args.command](args)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"fastnn {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
