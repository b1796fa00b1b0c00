"""fastnn.metrics (confusion matrix, per-class error) and fastnn.plots (PNG files)."""
import struct
import warnings

import numpy as np
import pytest

from fastnn import History, MLP
from fastnn import plots
from fastnn.augment import Augment
from fastnn.metrics import confusion_matrix, per_class_error, r2_score

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


# ---------------------------------------------------------------------------
# confusion_matrix / per_class_error
# ---------------------------------------------------------------------------

def test_confusion_matrix_hand_example():
    y_true = [0, 0, 1, 2, 2, 2]
    y_pred = [0, 1, 1, 2, 0, 2]
    cm = confusion_matrix(y_true, y_pred, 3)
    assert cm.tolist() == [[1, 1, 0],
                           [0, 1, 0],
                           [1, 0, 2]]
    np.testing.assert_allclose(per_class_error(cm), [0.5, 0.0, 1 / 3])


def test_confusion_matrix_empty_class_and_input():
    cm = confusion_matrix([0, 0, 2], [0, 2, 2], 4)
    assert cm.shape == (4, 4) and cm[1].sum() == 0 and cm[3].sum() == 0
    np.testing.assert_allclose(per_class_error(cm), [0.5, 0.0, 0.0, 0.0])
    assert confusion_matrix([], [], 3).tolist() == [[0] * 3] * 3


@pytest.mark.parametrize("n, k, dtype", [(500, 7, np.int64), (1000, 10, np.uint8),
                                         (3, 10, np.int32)])
def test_confusion_matrix_vs_loop(n, k, dtype):
    rng = np.random.default_rng(n + k)
    y_true = rng.integers(0, k, n).astype(dtype)
    # mostly right, as a classifier's predictions
    y_pred = np.where(rng.random(n) < 0.7, y_true, rng.integers(0, k, n)).astype(dtype)
    expected = np.zeros((k, k), dtype=np.int64)
    for t, p in zip(y_true, y_pred):
        expected[t, p] += 1
    cm = confusion_matrix(y_true, y_pred, k)
    np.testing.assert_array_equal(cm, expected)
    assert cm.sum() == n and np.issubdtype(cm.dtype, np.integer)

    errors = np.zeros(k)
    for c in range(k):
        rows = y_true == c
        errors[c] = np.mean(y_pred[rows] != c) if rows.any() else 0.0
    np.testing.assert_allclose(per_class_error(cm), errors, rtol=1e-12, atol=0)


def test_confusion_matrix_accepts_integral_floats():
    assert confusion_matrix(np.array([0.0, 1.0]), [1, 1], 2).tolist() == [[0, 1], [0, 1]]


@pytest.mark.parametrize("y_true, y_pred, n_classes, match", [
    ([0, 1], [0], 2, "same length"),
    ([[0, 1]], [[0, 1]], 2, "1-D"),
    ([0, 2], [0, 1], 2, r"y_true must be in \[0, 2\)"),
    ([0, 1], [-1, 1], 2, r"y_pred must be in \[0, 2\)"),
    ([0.5, 1], [0, 1], 2, "y_true must hold integer"),
    ([0, np.nan], [0, 1], 2, "y_true must hold integer"),
    ([0, 1], ["a", "b"], 2, "y_pred must hold integer"),
    ([True, False], [1, 0], 2, "y_true must hold integer"),
    ([0, 1], [0, 1], 0, "n_classes"),
    ([0, 1], [0, 1], 2.5, "n_classes"),
])
def test_confusion_matrix_bad_inputs(y_true, y_pred, n_classes, match):
    with pytest.raises(ValueError, match=match):
        confusion_matrix(y_true, y_pred, n_classes)


@pytest.mark.parametrize("cm", [np.ones((2, 3)), np.ones(4), np.ones((2, 2, 2))])
def test_per_class_error_needs_a_square_matrix(cm):
    with pytest.raises(ValueError, match="square"):
        per_class_error(cm)


# ---------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def history():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 6)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)
    model = MLP([6, 8, 3], seed=0)
    return model.fit(X, y, epochs=4, batch_size=32, learning_rate=0.1, validation_split=0.2,
                     early_stopping=2, verbose=False)


def test_plot_history_object(history, tmp_path):
    assert isinstance(history, History) and history.best_epoch is not None
    path = tmp_path / "curves.png"
    assert plots.plot_history(history, path, title="test") == path
    assert png_size(path) == (1210, 462)  # 11 x 4.2 inches at 110 dpi
    assert path.stat().st_size > 10000


@pytest.mark.parametrize("h", [
    {"loss": [1.0, 0.5, 0.3], "accuracy": [0.5, 0.7, 0.8],
     "val_loss": [1.1, 0.6, 0.4], "val_accuracy": [0.4, 0.6, 0.7]},
    {"loss": [0.9, 0.4]},
    {"accuracy": [0.5, 0.6, 0.65]},  # no "loss": the curves keep their own length
    {},
], ids=["full", "loss-only", "accuracy-only", "empty"])
def test_plot_history_dict(h, tmp_path):
    path = tmp_path / "curves.png"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plots.plot_history(h, path)
    assert png_size(path) == (1210, 462)
    assert path.stat().st_size > 5000


def test_plot_confusion_matrix_and_errors(tmp_path):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 10, 400)
    cm = confusion_matrix(y, np.where(rng.random(400) < 0.8, y, 0), 10)
    path = tmp_path / "cm.png"
    assert plots.plot_confusion_matrix(cm, path) == path
    assert png_size(path) == (704, 616)  # 6.4 x 5.6 inches at 110 dpi
    assert path.stat().st_size > 10000
    plots.plot_confusion_matrix(cm.tolist(), tmp_path / "cm-list.png", title="as a list")
    png_size(tmp_path / "cm-list.png")

    path = tmp_path / "errors.png"
    assert plots.plot_per_class_errors(cm, path) == path
    assert png_size(path) == (704, 440)  # 6.4 x 4.0 inches at 110 dpi
    assert path.stat().st_size > 5000


def test_plot_per_class_errors_rejects_a_non_square_matrix(tmp_path):
    with pytest.raises(ValueError, match="square"):
        plots.plot_per_class_errors(np.ones((2, 3)), tmp_path / "x.png")
    with pytest.raises(ValueError, match="square"):
        plots.plot_confusion_matrix(np.ones((3, 2)), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_plot_history_marks_each_epoch_of_a_short_run(tmp_path, monkeypatch):
    """One epoch (or points between NaNs) would be an invisible line of one
    point: short runs get a marker per epoch, and one epoch one tick."""
    from matplotlib.axes import Axes
    calls, real = [], Axes.plot

    def spy(self, *args, **kwargs):
        calls.append(kwargs.get("marker"))
        return real(self, *args, **kwargs)
    monkeypatch.setattr(Axes, "plot", spy)
    plots.plot_history({"loss": [0.9], "val_loss": [1.0], "accuracy": [0.5],
                        "val_accuracy": [0.4]}, tmp_path / "one.png")
    assert calls == ["o"] * 4
    calls.clear()
    plots.plot_history({"loss": list(np.linspace(1, 0, 80))}, tmp_path / "long.png")
    assert calls == [None]
    assert plots.plot_augmentation(np.zeros((2, 784), np.float32), Augment(rotation=5),
                                   tmp_path / "aug.png") == tmp_path / "aug.png"


@pytest.mark.parametrize("shape", [(28, 28), (6, 5, 1), (6, 5, 2), (6, 5, 3), (6, 5, 4),
                                   (7, 7, 16)])
def test_augmentation_samples_plot_any_channel_count(tmp_path, shape):
    """fastnn train draws augmentation_samples.png for every image shape the
    augmentation takes (two or five channels made imshow fail before training)."""
    X = np.random.default_rng(0).normal(size=(3, int(np.prod(shape)))).astype(np.float32)
    path = tmp_path / "aug.png"
    assert plots.plot_augmentation(X, Augment(rotation=5, image_shape=shape), path) == path
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_r2_score_refuses_non_finite_values(bad):
    # as scikit-learn's: NaN scored 0.0 and inf -inf before
    with pytest.raises(ValueError, match="y_true must be finite"):
        r2_score([1.0, 2.0, bad], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="y_pred must be finite"):
        r2_score([1.0, 2.0, 3.0], [1.0, bad, 3.0])
    assert r2_score([1.0, 2.0, 3.0], [1.0, 2.0, 4.0]) == 0.5
