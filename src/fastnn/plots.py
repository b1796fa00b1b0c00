"""PNG plots of a run: learning curves, confusion matrix, per-class errors.

Uses matplotlib's object API (``Figure``) with the Agg canvas: no pyplot
state, no display needed, nothing happens at import.
"""
import numpy as np

from .metrics import per_class_error


def _figure(width=6.4, height=4.8):
    from matplotlib.figure import Figure
    return Figure(figsize=(width, height), layout="constrained")


def plot_history(history, path, title=None):
    """Train/validation loss and accuracy per epoch, side by side (a regressor's
    history: the mean squared error and the validation R²)."""
    from matplotlib.ticker import MaxNLocator
    h = history.history if hasattr(history, "history") else history
    fig = _figure(11, 4.2)
    axes = fig.subplots(1, 2)
    if "val_r2" in h:
        panels = ((axes[0], "loss", "mean squared error"), (axes[1], "r2", "R²"))
    else:
        panels = ((axes[0], "loss", "cross-entropy loss"), (axes[1], "accuracy", "accuracy"))
    for ax, key, label in panels:
        # each curve's own length: a history may lack "loss" (or hold fewer val_ entries);
        # a marker on every epoch, so that one epoch (or one between NaNs) is seen
        n = max((len(h[k]) for k in (key, "val_" + key) if k in h), default=0)
        style = dict(marker="o", markersize=3) if n <= 50 else {}
        if key in h:
            ax.plot(np.arange(1, len(h[key]) + 1), h[key], label="train", **style)
        if "val_" + key in h:
            ax.plot(np.arange(1, len(h["val_" + key]) + 1), h["val_" + key],
                    label="validation", **style)
        best = getattr(history, "best_epoch", None)
        if best is not None:
            ax.axvline(best + 1, color="grey", linestyle=":", label="best epoch")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if n == 1:  # one tick, at epoch 1 (not a float range around it)
            ax.set_xlim(0.5, 1.5)
            ax.set_xticks([1])
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # no curves: no legend (and no warning)
            ax.legend()
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=110)
    return path


def _tick_labels(class_names, k):
    """Tick labels for k classes: the names (checked against k), else 0..k-1."""
    if class_names is None:
        return [str(i) for i in range(k)]
    names = [str(n) for n in class_names]
    if len(names) != k:
        raise ValueError(f"class_names must name the {k} classes, got {len(names)} names")
    return names


def plot_confusion_matrix(cm, path, title="Confusion matrix (test set)", class_names=None):
    """``class_names``: tick labels by class (e.g. Fashion-MNIST's); default 0..k-1."""
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"cm must be a square confusion matrix, got shape {cm.shape}")
    k = cm.shape[0]
    labels = _tick_labels(class_names, k)
    fig = _figure(6.4, 5.6)
    ax = fig.subplots()
    im = ax.imshow(cm, cmap="Blues")
    fig.colorbar(im, ax=ax)
    ax.set_xticks(range(k), labels, rotation=45 if class_names is not None else 0,
                  ha="right" if class_names is not None else "center")
    ax.set_yticks(range(k), labels)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    threshold = cm.max() / 2 if cm.size else 0
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if cm[i, j] > threshold else "black")
    ax.set_title(title)
    fig.savefig(path, dpi=110)
    return path


def plot_per_class_errors(cm, path, title="Error rate per class (test set)", class_names=None):
    """``class_names``: bar labels by class (e.g. Fashion-MNIST's); default 0..k-1."""
    errors = per_class_error(cm) * 100
    labels = _tick_labels(class_names, len(errors))
    fig = _figure(6.4, 4.0)
    ax = fig.subplots()
    ax.bar(range(len(errors)), errors, color="tab:red")
    ax.set_xticks(range(len(errors)), labels, rotation=45 if class_names is not None else 0,
                  ha="right" if class_names is not None else "center")
    ax.set_xlabel("true class")
    ax.set_ylabel("error (%)")
    for i, e in enumerate(errors):
        ax.text(i, e, f"{e:.1f}", ha="center", va="bottom", fontsize=8)
    ax.set_title(title)
    fig.savefig(path, dpi=110)
    return path


def plot_sweep_results(histories, trials, keys, path, title=None):
    """A sweep's comparison: the trials' learning curves (validation where they
    have it) on the top row, and test accuracy against each swept key below.

    ``histories``: run label -> history dict; ``trials``: the sweep.json
    records (``run``, ``params``, ``status``, ``test_accuracy``); ``keys``:
    the swept config keys. Failed trials are drawn hollow.
    """
    from matplotlib.ticker import MaxNLocator
    keys = list(keys) or ["trial"]
    cols = max(2, len(keys))
    fig = _figure(4.2 * cols, 7.6)
    grid = fig.add_gridspec(2, cols)
    curves = [fig.add_subplot(grid[0, :cols // 2]), fig.add_subplot(grid[0, cols // 2:])]
    for label, h in histories.items():
        for ax, key in zip(curves, ("loss", "accuracy")):
            curve = h.get("val_" + key) or h.get(key)
            if curve:
                ax.plot(np.arange(1, len(curve) + 1), curve, label=label, linewidth=1)
    for ax, key in zip(curves, ("loss", "accuracy")):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(f"{key} (validation where available)")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0] and len(histories) <= 12:
            ax.legend(fontsize=7)
    for i, key in enumerate(keys):
        ax = fig.add_subplot(grid[1, i])
        values = [t["params"].get(key) for t in trials]
        names = sorted({_value_name(v) for v in values}, key=_natural)
        for t, v in zip(trials, values):
            if t.get("test_accuracy") is None:
                continue
            ok = t.get("status") == "ok"
            ax.scatter(names.index(_value_name(v)), t["test_accuracy"] * 100,
                       facecolors="tab:blue" if ok else "none", edgecolors="tab:blue")
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=30 if len(names) > 4 else 0, fontsize=8)
        ax.set_xlabel(key)
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=100)
    return path


def _value_name(value):
    if isinstance(value, (list, tuple)):
        return "-".join(str(v) for v in value)
    return "null" if value is None else str(value)


def _natural(name):
    """Numbers by value, then text."""
    try:
        return (0, float(name), "")
    except ValueError:
        return (1, 0.0, name)


def plot_augmentation(X, augment, path, *, n=8, copies=5, seed=0, title=None):
    """``n`` training images (the first of X) beside ``copies`` deformed
    copies of each, as epochs 0, 1, ... of a model seeded ``seed`` make them
    (``augment``: a :class:`fastnn.augment.Augment` with its image shape)."""
    X = np.asarray(X)[:n]
    h, w, c = augment.resolve_shape(X.shape[1])
    fig = _figure(1.1 * (copies + 1), 1.1 * len(X) + 0.4)
    axes = fig.subplots(len(X), copies + 1, squeeze=False)
    cols = [X] + [augment.apply(X, seed=seed, epoch=e) for e in range(copies)]
    # three or four channels: RGB (alpha dropped), scaled by the originals' range
    # (imshow takes RGB in [0, 1]); any other count: the first channel, in grey
    lo, hi = float(X.min()), float(X.max())
    for j, imgs in enumerate(cols):
        for i in range(len(X)):
            ax = axes[i, j]
            img = imgs[i].reshape(h, w, c)
            if c in (3, 4):
                ax.imshow(np.clip((img[..., :3] - lo) / ((hi - lo) or 1.0), 0.0, 1.0))
            else:
                ax.imshow(img[..., 0], cmap="gray")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, j].set_title("original" if j == 0 else f"epoch {j - 1}", fontsize=8)
    fig.suptitle(title or "Training images and their deformations", fontsize=9)
    fig.savefig(path, dpi=100)
    return path  # as the other plots
