"""``fastnn bench``'s tables: one per network, trainers by batch sizes, with the
roofline and the final losses; and its results made JSON-friendly."""
import numpy as np

from .settings import FLOORS, LABELS, TRAINERS


def fmt_time(t):
    return "-" if t is None else (f"{t:.3f} s" if t < 10 else f"{t:.1f} s")


def net_name(layers):
    return "[" + ", ".join(str(int(w)) for w in layers) + "]"


def format_table(results, repeats):
    """The side-by-side tables, one per network: rows are trainers, columns batch sizes."""
    lines = []
    peak = results.get("peak")
    for net in results["networks"]:
        batches = list(net["batches"])
        entries = [net["batches"][b] for b in batches]
        names = [n for n in TRAINERS if any(n in e["trainers"] for e in entries)]
        w0, wc = 20, 30
        lines.append(f"network {net_name(net['layers'])}")
        head = "trainer".ljust(w0) + "".join(
            (f"batch {b}" + ("*" if e["samples"] < results["config"]["samples"] else "")).center(wc)
            for b, e in zip(batches, entries))
        sub = "".ljust(w0) + "".join(f"{'best':>9} {'median':>9} {'fastnn x':>9} " for _ in batches)
        lines += [head, sub, "-" * len(sub)]
        for name in names:
            row = LABELS[name].ljust(w0)
            for e in entries:
                r = e["trainers"].get(name)
                if r is None:
                    row += f"{'-':>9} {'-':>9} {'-':>9} "
                    continue
                ratio = e["speedup"].get(name)
                rtxt = "-" if ratio is None else f"{ratio:.2f}x"
                row += f"{fmt_time(r['best']):>9} {fmt_time(r['median']):>9} {rtxt:>9} "
            lines.append(row.rstrip())
        if peak:
            lines.append("roofline: GFLOP/s of the epoch's matrix products / best time, "
                         f"and % of the FMA peak ({peak['gflops']:.0f} GFLOP/s)")
            for name in names:
                row = ("  " + LABELS[name]).ljust(w0)
                for e in entries:
                    r = e["trainers"].get(name)
                    txt = "-" if r is None else f"{r['gflops']:.1f} ({r['peak_pct']:.1f}%)"
                    row += txt.rjust(19) + " " * 11
                lines.append(row.rstrip())
        lines.append("final training loss (mean over the epoch)")
        for name in names:
            if name in FLOORS:
                continue
            row = ("  " + LABELS[name]).ljust(w0)
            for e in entries:
                r = e["trainers"].get(name)
                loss = None if r is None else r.get("loss")
                row += ("-" if loss is None else f"{loss:.5f}").rjust(9) + " " * 21
            lines.append(row.rstrip())
        for b, e in zip(batches, entries):
            notes = []
            for floor in FLOORS:
                fl = e.get(f"{floor}_ratio")
                if fl is not None:
                    notes.append(f"fastnn takes {fl:.2f}x the {LABELS[floor]}")
            jax = e["trainers"].get("jax")
            if jax is not None and jax.get("compile_seconds") is not None:
                notes.append(f"JAX compiled in {jax['compile_seconds']:.2f} s (not counted)")
            plans = e["trainers"].get("fastnn", {}).get("step_plans")
            if plans:
                counts = {p: plans.count(p) for p in dict.fromkeys(plans)}
                notes.append("fastnn's step plan (chosen in its warm-up, each round): "
                             + ", ".join(f"{p} x{c}" for p, c in counts.items()))
            if notes:
                lines.append(f"batch {b}: " + "; ".join(notes))
        short = sorted({e["samples"] for e in entries if e["samples"] < results["config"]["samples"]})
        if short:
            lines.append(f"* over the first {', '.join(map(str, short))} images only")
        lines.append("")
    lines.append(f"best/median of {repeats} runs (interleaved rounds of all the trainers), each "
                 "on a fresh model; 'fastnn x' = the trainer's best time / fastnn's best time")
    lines.append("(above 1: fastnn is that many times faster; the GEMM floors' are below 1 "
                 "by construction).")
    if peak:
        lines.append(f"FMA peak: {peak['gflops']:.0f} GFLOP/s measured on {peak['threads']} "
                     f"thread(s), {peak['gflops_1thread']:.0f} on one ({peak['isa']} loop); "
                     "on a busy machine the first is below threads x the second.")
    if any("sklearn" in e["trainers"] for net in results["networks"]
           for e in net["batches"].values()):
        lines.append("scikit-learn: own init and shuffling; its loss includes the L2 penalty.")
    return lines


def jsonable(obj):
    """Tuple keys (none today) and numpy scalars made JSON-friendly."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj
