"""The ``fastnn`` command line: train, sweep, study, evaluate, export, gradcheck, bench, info.

    fastnn configs                      # the shipped configs, by name
    fastnn train --config best --data-dir ../shared/data/mnist --out runs/best
    fastnn train --config my-config.yaml  # a path works as well
    fastnn sweep --config best --grid activation=relu,tanh --grid l2=0,1e-3 --jobs 2
    fastnn study --out runs/study         # the shipped study configs (or a folder of configs)
    fastnn evaluate runs/best/model.npz --data-dir ../shared/data/mnist
    fastnn export runs/best/model.npz --onnx runs/best/model.onnx
    fastnn gradcheck --data-dir ../shared/data/mnist
    fastnn bench --data-dir ../shared/data/mnist
    fastnn info                           # what fastnn runs on (for bug reports)

Every config key can be overridden by a flag of the same name (``--epochs 1``,
``--learning-rate 0.1``, ``--layers 784,256,10``). The benchmark harness is
not part of the package (``benchmarks/`` in the repository: ``pip install
./benchmarks``); only ``fastnn bench`` imports it. The command line is the
top of the package: it calls :mod:`fastnn.experiment`, :mod:`fastnn.sweep`
and :mod:`fastnn.study`, and no module of the package imports it.
"""
import argparse
import json
import sys
import warnings
from pathlib import Path

import yaml

from . import config as cfg
from . import experiment
from ._atomic import check_target
from .augment import KEYS as AUGMENT_KEYS


def _value(text):
    """A flag's value, typed like a YAML scalar ("1" -> 1, "null" -> None);
    a comma-separated list of ints for layers; a YAML flow list or mapping as is
    (``--lr-schedule "{name: cosine, warmup_epochs: 2}"``)."""
    if "," in text and not text.strip().startswith(("[", "{")):
        text = f"[{text}]"
    try:
        return cfg.parse_yaml(text)
    except cfg.DuplicateKeyError as exc:  # a mapping with a key twice: not a plain string
        raise argparse.ArgumentTypeError(f"{exc.problem} in {text!r}") from None
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
    if "augment" not in exclude:
        # one flag per key of the ``augment:`` mapping (--augment-rotation 15 ...)
        for key in AUGMENT_KEYS:
            group.add_argument("--augment-" + key.replace("_", "-"), dest="aug_" + key,
                               type=_value, default=argparse.SUPPRESS, metavar="VALUE")


def _parser():
    parser = argparse.ArgumentParser(prog="fastnn", description=__doc__.split("\n")[0])
    from ._version import __version__
    parser.add_argument("--version", action="version", version=f"fastnn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("configs", help="list the shipped configs (their names work as --config)")

    p = sub.add_parser("info", help="what fastnn runs on: versions, build, kernels, caches, "
                                    "threads (for bug reports)")
    p.add_argument("--json", action="store_true", help="as JSON")

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
                   help="trials at once in worker processes, one thread each "
                        "(default: one per core)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run the trials on a Dask cluster, e.g. tcp://host:8786 "
                        "(pip install 'fastnn[dask]')")
    _add_data_args(p)
    p.add_argument("--out", default=None, help="output folder (default: runs/sweep-<config>-<keys>)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_config_overrides(p, "config overrides (applied to every run)", exclude=("seed",))

    p = sub.add_parser("export", help="export a saved model to another format (ONNX)")
    p.add_argument("model", help="a model.npz written by `fastnn train` or MLP.save")
    p.add_argument("--onnx", required=True, metavar="PATH",
                   help="write an ONNX file here (pip install 'fastnn[onnx]')")

    p = sub.add_parser("evaluate", help="evaluate a saved model on the test set")
    p.add_argument("model", help="a model.npz written by `fastnn train` or MLP.save")
    _add_data_args(p)
    p.add_argument("--dataset", default=None, help="mnist | fashion-mnist | friedman1 (default: from the run)")
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

    # its options are the harness's own (parsed there: --help does not import it)
    sub.add_parser("bench", help="time one MNIST epoch: fastnn vs NumPy (vs PyTorch)",
                   add_help=False)
    return parser


def _config_from_args(args):
    """The config file of ``--config`` with the ``--key VALUE`` overrides, unresolved."""
    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("set_")}
    base = cfg.load(args.config)
    aug = {k[4:]: v for k, v in vars(args).items() if k.startswith("aug_")}
    if aug:  # --augment-KEY flags update the config's (or --augment's) mapping
        current = overrides.get("augment", base.get("augment")) or {}
        if not isinstance(current, dict):
            raise ValueError(f"config key 'augment' must be a mapping to take --augment-* flags, "
                             f"got {current!r}")
        overrides["augment"] = {**current, **aug}
    return {**base, **overrides}


def cmd_train(args):
    config = cfg.resolve(_config_from_args(args))
    experiment.check_config(config)  # a bad value fails here, before the data loads
    out = Path(args.out or Path("runs") / Path(args.config).stem)
    out.mkdir(parents=True, exist_ok=True)  # a bad --out too
    if args.checkpoint:  # its folder too, as --out's, and then the file's place
        Path(args.checkpoint).absolute().parent.mkdir(parents=True, exist_ok=True)
        check_target(args.checkpoint, "--checkpoint ")
    data = experiment.load_data(config["dataset"], args.data_dir, config["normalize"])
    metrics, _ = experiment.run_experiment(config, data, out, Path(args.config).stem,
                                           verbose=not args.quiet, checkpoint=args.checkpoint)
    if "test_r2" in metrics:
        print(f"test R²: {metrics['test_r2']:.4f}, RMSE {metrics['test_rmse']:.4f} "
              f"({metrics['epochs']} epochs, {metrics['train_seconds']:.1f} s of training) "
              f"-> {out}")
    else:
        print(f"test accuracy: {metrics['test_accuracy'] * 100:.2f} % (loss "
              f"{metrics['test_loss']:.4f}; {metrics['epochs']} epochs, "
              f"{metrics['train_seconds']:.1f} s of training) -> {out}")
    # the run folder is written either way; the status tells scripts it is not a
    # finished run: 130 after Ctrl-C (as a shell reports SIGINT), 1 after divergence
    if metrics["interrupted"]:
        print("fastnn train: interrupted: the results are of the weights so far"
              + (f" (rerun with --checkpoint {args.checkpoint} to continue)"
                 if args.checkpoint else ""), file=sys.stderr)
        return 130
    if metrics["diverged"]:
        print("fastnn train: training diverged (a non-finite or runaway loss): the results "
              "are of the last finite weights; lower the learning rate", file=sys.stderr)
        return 1
    return 0


def cmd_sweep(args):
    """``fastnn sweep``: the grid from the flags, the work in :func:`fastnn.sweep.run_sweep`."""
    from . import sweep
    base = _config_from_args(args)
    pairs = [sweep.parse_grid(g) for g in args.grid]
    if (args.param is None) != (args.values is None):
        raise ValueError("--param and --values go together")
    if args.param is not None:
        key, values = sweep.parse_grid(f"{args.param}={args.values}")
        if key not in cfg.DEFAULTS:
            raise ValueError(f"--param must be a config key ({', '.join(sorted(cfg.DEFAULTS))}), "
                             f"got {args.param!r}")
        pairs.append((key, values))
    grid = {}
    flags = {k[4:] for k in vars(args) if k.startswith("set_")}
    if any(k.startswith("aug_") for k in vars(args)):
        flags.add("augment")  # the --augment-* flags fix parts of it
    for key, values in pairs:  # a key swept twice, or also fixed by its flag: which wins?
        if key in grid:
            raise ValueError(f"the grid gives {key!r} twice: give all its values in one "
                             f"--grid {key}=V1,V2")
        if key in flags:
            raise ValueError(f"--{key.replace('_', '-')} fixes {key!r}, which the grid sweeps: "
                             f"give one or the other")
        grid[key] = values
    if not grid:
        raise ValueError("give at least one --grid KEY=V1,V2 (or --param KEY --values V1,V2)")
    name = f"{Path(args.config).stem}-{'-'.join(grid)}"
    out = Path(args.out or Path("runs") / f"sweep-{name}")
    try:
        summary = sweep.run_sweep(base, grid, out,
                                  loader=lambda d, n: experiment.load_data(d, args.data_dir, n),
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
    result = experiment.evaluate_saved(args.model, args.data_dir, dataset=args.dataset,
                                       normalize=args.normalize)
    print(json.dumps(result, indent=2))
    return 0


def cmd_export(args):
    """``fastnn export model.npz --onnx out.onnx``."""
    from .export import INPUT, OPSET, output_names
    from .model import MLP
    model = MLP.load(args.model)
    try:
        model.to_onnx(args.onnx)
    except ImportError as exc:
        print(f"fastnn export: error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.model} -> {args.onnx} (ONNX opset {OPSET}; input {INPUT!r} "
          f"{model.dtype.name} (N, {model.n_features_in_}); outputs "
          f"{', '.join(map(repr, output_names(model)))})")
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
    # names as `fastnn configs` lists them (study/NAME) or bare
    only = (None if args.only is None else
            [n.strip().removeprefix("study/") for n in args.only.split(",") if n.strip()])
    if only == []:  # --only "" or ",": a typo, not "every config"
        raise ValueError(f"--only names no config: got {args.only!r}")
    folder = cfg.SHIPPED / "study" if args.folder is None else args.folder
    rows = run_study(folder, args.out, data_dir=args.data_dir, only=only,
                     verbose=not args.quiet)
    met = sum(r["meets_target"] for r in rows)
    print(f"{met} of {len(rows)} rows within 0.5 points of the report or above "
          f"-> {args.out}/study.md, {args.out}/study.json")
    return 0


def _bench_harness():
    """The harness of ``fastnn bench``: the repository's ``benchmarks/`` distribution
    (fastnn-bench), installed, else found beside this package in a checkout."""
    try:
        from fastnn_bench import harness
        return harness
    except ImportError:
        pass
    checkout = Path(__file__).resolve().parents[2] / "benchmarks" / "src"
    if (checkout / "fastnn_bench" / "harness.py").is_file():
        sys.path.insert(0, str(checkout))
        from fastnn_bench import harness
        return harness
    raise FileNotFoundError("the benchmark harness is not installed: it is fastnn-bench, the "
                            "benchmarks/ folder of fastnn's repository; from a checkout, "
                            "pip install ./benchmarks")


def cmd_bench(args):
    return _bench_harness().main(args.bench_argv)


def cmd_gradcheck(args):
    from ._validation import check_float, check_int
    from .gradcheck import format_table, gradient_check
    from .model import MLP
    check_int(args.samples, "--samples", low=1)  # (a negative count would slice from the end)
    check_float(args.tol, "--tol", low=0.0, low_open=True)
    (X, y), _ = experiment.load_data("mnist", args.data_dir, "standard")
    model = MLP(args.layers, args.activation, dtype="float64", seed=args.seed)
    rows = gradient_check(model, X[:args.samples], y[:args.samples], n_checks=args.checks,
                          eps=args.eps, seed=args.seed)
    print(f"gradient check: {model!r}, {args.samples} images, eps {args.eps:g}")
    print(format_table(rows))
    worst = max(r["max_rel_error"] for r in rows)
    ok = worst < args.tol
    print(f"max relative error {worst:.3e}: {'PASS' if ok else 'FAIL'} (tolerance {args.tol:g})")
    return 0 if ok else 1


def cmd_info(args):
    from .sysinfo import show_config
    show_config(as_json=args.json)
    return 0


COMMANDS = {"configs": cmd_configs, "info": cmd_info, "train": cmd_train, "sweep": cmd_sweep,
            "study": cmd_study, "evaluate": cmd_evaluate, "export": cmd_export,
            "gradcheck": cmd_gradcheck, "bench": cmd_bench}


def main(argv=None):
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "bench":
        args.bench_argv = extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        with warnings.catch_warnings():  # restores showwarning when the command ends
            # a warning is one line of its own, not the source line that raised it
            warnings.showwarning = _show_one_line
            return COMMANDS[args.command](args)
    except (ValueError, TypeError, OSError) as exc:  # OSError: files (exists, is a directory, ...)
        print(f"fastnn {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # outside training (loading the data, writing the results)
        print(f"fastnn {args.command}: interrupted", file=sys.stderr)
        return 130


def _one_line_warning(message, category, filename, lineno, line=None):
    return f"fastnn: {category.__name__}: {message}\n"


def _show_one_line(message, category, filename, lineno, file=None, line=None):
    """``warnings.showwarning`` of the command line: one line on stderr."""
    (file or sys.stderr).write(_one_line_warning(message, category, filename, lineno))


if __name__ == "__main__":
    sys.exit(main())
