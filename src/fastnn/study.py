"""The original studies, row by row: run a folder of configs, compare with the reports.

Every ``*.yaml``/``*.json`` file of the folder (``configs/study/``) is an
ordinary fastnn config plus a ``report`` mapping holding what the original
report states for that experiment::

    report:
      source: "001 §4"            # which report, which section or table
      test_accuracy: 0.9668       # the reported test accuracy (fraction)
      epochs: 100                 # epochs the report trained (or its maximum)
      note: "..."                 # what the report leaves unstated, if anything

``fastnn study configs/study --out runs/study`` trains each config into its
own run folder (:func:`fastnn.experiment.run_experiment`, as ``fastnn train``
does) and writes ``study.json`` and the Markdown table ``study.md``: reported
vs fastnn test accuracy, their difference in percentage points, epochs,
seconds of training. A row meets the target when fastnn is within
:data:`TOLERANCE_PP` percentage points below the report, or above it.

>>> row = {"name": "x", "source": "001", "reported_accuracy": 0.9759,
...        "test_accuracy": 0.9761, "reported_epochs": 100, "epochs": 35,
...        "train_seconds": 5.0, "note": ""}
>>> print(format_table([row]).splitlines()[2])
| x | 001 | 97.59 % | 97.61 % | +0.02 | 100 | 35 | 5.0 | yes |  |
"""
import time
from pathlib import Path

from . import config as cfg
from . import experiment
from ._atomic import atomic_write_json, atomic_write_text

#: A row meets the target when fastnn's test accuracy is at most this many
#: percentage points below the report's (or above it).
TOLERANCE_PP = 0.5

_REPORT_FIELDS = {"source": str, "test_accuracy": float, "epochs": int, "note": str}


def load_report(raw, name):
    """The ``report`` mapping of a study config, checked."""
    report = raw.get(cfg.REPORT_KEY)
    if not isinstance(report, dict):
        raise ValueError(f"study config {name!r} needs a 'report' mapping with the reported "
                         f"test_accuracy (and source, epochs, note)")
    unknown = set(report) - set(_REPORT_FIELDS)
    if unknown:
        raise ValueError(f"study config {name!r}: unknown report keys {sorted(unknown)}; "
                         f"known: {sorted(_REPORT_FIELDS)}")
    acc = report.get("test_accuracy")
    if isinstance(acc, bool) or not isinstance(acc, (int, float)) or not 0 <= acc <= 1:
        raise ValueError(f"study config {name!r}: report.test_accuracy must be a fraction in "
                         f"[0, 1], got {acc!r}")
    return {"source": str(report.get("source", "")), "test_accuracy": float(acc),
            "epochs": report.get("epochs"), "note": str(report.get("note", "") or "")}


def load_study(folder, only=None):
    """``[(name, resolved config, report)]`` for the configs in ``folder`` (those
    named in ``only``, when given), by name, each checked (:func:`fastnn.experiment.check_config`; classifiers only) before
    any trains: an error names the config."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"study folder not found: {str(folder)!r}")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".yaml", ".yml", ".json"))
    if not paths:
        raise ValueError(f"no .yaml or .json configs in {str(folder)!r}")
    if only:  # the names asked for, and only they checked
        wanted = set(only)
        missing = sorted(wanted - {p.stem for p in paths})
        if missing:
            raise ValueError(f"no study config named {', '.join(missing)} in {str(folder)!r}")
        paths = [p for p in paths if p.stem in wanted]
    out = []
    for path in paths:  # every one checked before any trains
        raw = cfg.load(path)
        report = load_report(raw, path.stem)
        config = cfg.resolve(raw)
        try:
            model = experiment.check_config(config)
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"study config {path.stem!r}: {exc}") from None
        if not model.is_classifier:
            raise ValueError(f"study config {path.stem!r}: studies compare test accuracies, so "
                             f"they take classifiers only; loss {config['loss']!r} is a "
                             f"regressor's")
        out.append((path.stem, config, report))
    return out


def meets_target(reported, measured, tolerance_pp=TOLERANCE_PP):
    """True when ``measured`` is above ``reported`` or within ``tolerance_pp`` points below."""
    return (measured - reported) * 100 >= -tolerance_pp - 1e-9


def run_study(folder, out, data_dir=None, only=None, verbose=False):
    """Train every config of ``folder`` (or those named in ``only``) into
    ``out/<name>``; write ``out/study.json`` and ``out/study.md``; return the rows."""
    entries = load_study(folder, only)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data_cache, rows = {}, []
    t_start = time.perf_counter()
    for name, config, report in entries:
        key = (config["dataset"], config["normalize"])
        if key not in data_cache:
            data_cache[key] = experiment.load_data(key[0], data_dir, key[1])
        metrics, _ = experiment.run_experiment(config, data_cache[key], out / name, name,
                                               verbose=verbose)
        row = {"name": name, "source": report["source"],
               "reported_accuracy": report["test_accuracy"],
               "test_accuracy": metrics["test_accuracy"], "reported_epochs": report["epochs"],
               "epochs": metrics["epochs"], "train_seconds": metrics["train_seconds"],
               "diverged": metrics["diverged"], "note": report["note"], "config": config}
        row["meets_target"] = meets_target(row["reported_accuracy"], row["test_accuracy"])
        rows.append(row)
        print(f"{name:>32}: reported {row['reported_accuracy'] * 100:6.2f} %, fastnn "
              f"{row['test_accuracy'] * 100:6.2f} % ({row['epochs']} epochs, "
              f"{row['train_seconds']:.1f} s)", flush=True)
    total = time.perf_counter() - t_start
    atomic_write_json(out / "study.json", {"folder": str(folder), "tolerance_pp": TOLERANCE_PP,
                                           "total_seconds": total, "rows": rows}, indent=2)
    atomic_write_text(out / "study.md", format_table(rows) + "\n")
    return rows


def format_table(rows):
    """The rows of :func:`run_study` as a Markdown table."""
    lines = ["| experiment | report | reported | fastnn | Δ (points) | reported epochs | "
             "fastnn epochs | seconds | within 0.5 or above | note |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        delta = (r["test_accuracy"] - r["reported_accuracy"]) * 100
        ok = "yes" if meets_target(r["reported_accuracy"], r["test_accuracy"]) else "**no**"
        epochs = "" if r["reported_epochs"] is None else r["reported_epochs"]
        lines.append(f"| {r['name']} | {r['source']} | {r['reported_accuracy'] * 100:.2f} % | "
                     f"{r['test_accuracy'] * 100:.2f} % | {delta:+.2f} | {epochs} | "
                     f"{r['epochs']} | {r['train_seconds']:.1f} | {ok} | {r['note']} |")
    return "\n".join(lines)
