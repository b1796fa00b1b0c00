"""A sweep's results for people: the text table (:func:`format_table`), the
best trial, and ``sweep.png`` (:func:`fastnn.plots.plot_sweep_results`)."""
from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Mapping
from typing import Any

from ..plots import plot_sweep_results


def _rank_value(trial):
    """Validation accuracy, else test accuracy (trials without validation)."""
    value = trial.get("val_accuracy")
    return trial.get("test_accuracy") if value is None else value


def best(trials):
    ok = [t for t in trials if t["status"] == "ok" and _rank_value(t) is not None]
    return max(ok, key=_rank_value)["run"] if ok else None


def plot(out, summary):
    histories = {}
    for t in summary["trials"]:
        path = out / t["run"] / "history.json"
        with contextlib.suppress(OSError, ValueError, KeyError):
            histories[t["run"]] = json.loads(path.read_text())["history"]
    plot_sweep_results(histories, summary["trials"], list(summary["grid"]), out / "sweep.png",
                       title=summary["name"])


def format_table(summary: Mapping[str, Any]) -> str:
    """The trials as a text table sorted by validation accuracy, the best marked ``*``."""
    keys = list(summary["grid"])
    trials = sorted(summary["trials"], key=lambda t: (t["status"] != "ok",
                                                      -(_rank_value(t) or 0.0)))
    head = ["", *keys, "val acc", "test acc", "epochs", "seconds", "status"]
    rows = []
    for t in trials:
        pct = lambda v: "" if v is None else f"{v * 100:.2f} %"  # noqa: E731
        status = t["status"] if t["error"] is None else f"{t['status']}: {t['error']}"
        rows.append(["*" if t["run"] == summary["best"] else "",
                     *(json.dumps(t["params"].get(k)) if not isinstance(t["params"].get(k), str)
                       else t["params"][k] for k in keys),
                     pct(t["val_accuracy"]), pct(t["test_accuracy"]),
                     "" if t["epochs"] is None else str(t["epochs"]),
                     "" if t["seconds"] is None else f"{t['seconds']:.1f}", status])
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head) - 1)]
    buf = io.StringIO()
    for r in [head, *rows]:
        buf.write("  ".join(str(c).ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] + "\n")
    return buf.getvalue().rstrip("\n")
