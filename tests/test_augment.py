"""fastnn.augment: the compiled deformations against their NumPy twin, exact
transforms, reproducibility across threads and checkpoints, and the boundary."""
import numpy as np
import pytest

from fastnn import MLP, _kernels
from fastnn import kernels as K
from fastnn import reference as R
from fastnn.augment import Affine, Augment, Elastic, Flip

DTYPES = [np.float32, np.float64]

CASES = {
    "identity": Augment(),
    "affine": Affine(rotation=15, scale=0.15, shear=0.3, translation=2.5),
    "elastic": Elastic(alpha=34, sigma=4),
    "elastic-wide": Elastic(alpha=36, sigma=6),
    "all": Affine(rotation=(-5, 30), scale=(-0.1, 0.2), translation=3) + Elastic(8, 1.5) + Flip(),
}


@pytest.fixture
def images(rng):
    return rng.random((64, 784))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_compiled_equals_twin_bit_for_bit(images, rng, dtype, case):
    X = images.astype(dtype)
    params = CASES[case].kernel_params(784)
    rows = rng.integers(0, X.shape[0], 50)
    got = K.augment_rows(X, rows, 11, 3, params)
    want = R.augment_rows(X, rows, 11, 3, params)
    assert got.dtype == want.dtype == dtype
    np.testing.assert_array_equal(got, want)
    if case != "identity":
        assert not np.array_equal(got, X[rows])
        # the same row in another epoch gets another deformation
        assert not np.array_equal(got, K.augment_rows(X, rows, 11, 4, params))


# widths below, at and across the compiled passes' vectors of 16 and pairs of
# them (32), odd heights, and Gaussians wider than the image; sides that are
# neither (17, 18, 20) and long thin images both ways (4 x 18, 40 x 5)
@pytest.mark.parametrize("sigma", [1, 3])
@pytest.mark.parametrize("shape", [(5, 9, 3), (7, 4), (2, 2), (3, 40), (11, 33), (16, 16, 2),
                                   (20, 17), (17, 20, 2), (4, 18), (18, 4), (40, 5)],
                         ids=str)
def test_channels_and_rectangles_match_the_twin(rng, shape, sigma):
    X = rng.random((10, int(np.prod(shape)))).astype(np.float32)
    aug = (Affine(rotation=20, translation=1) + Elastic(3, sigma)).with_image_shape(shape)
    params = aug.kernel_params(X.shape[1])
    np.testing.assert_array_equal(K.augment_rows(X, np.arange(10), 0, 0, params),
                                  R.augment_rows(X, np.arange(10), 0, 0, params))


@pytest.mark.parametrize("dtype", DTYPES)
def test_identity_returns_the_input(images, dtype):
    X = images.astype(dtype)
    np.testing.assert_array_equal(Augment().apply(X), X)


@pytest.mark.parametrize("t", [(1, 1), (3, 3), (-2, -2)])
def test_integer_translation_moves_pixels_exactly(images, t):
    X = images.astype(np.float32)
    s = t[0]
    out = Affine(translation=t).apply(X).reshape(-1, 28, 28)
    img = X.reshape(-1, 28, 28)
    # both axes move by s (drawn independently, from the one-point range)
    if s > 0:
        np.testing.assert_array_equal(out[:, s:, s:], img[:, :-s, :-s])
    else:
        np.testing.assert_array_equal(out[:, :s, :s], img[:, -s:, -s:])


def test_a_flip_mirrors_exactly(images):
    X = images.astype(np.float64)
    out = Flip().apply(X, epoch=1).reshape(-1, 28, 28)
    img = X.reshape(-1, 28, 28)
    mirrored = np.all(out == img[:, :, ::-1], axis=(1, 2))
    same = np.all(out == img, axis=(1, 2))
    assert np.all(mirrored | same) and mirrored.any() and same.any()


def test_elastic_field_is_smooth_and_scaled(rng):
    """A horizontal ramp deformed by the field alone: the displacement is
    about alpha times the smoothed noise's spread, and neighbours move alike."""
    ramp = np.tile(np.arange(28, dtype=np.float64), 28)[None, :].repeat(200, axis=0)
    out = Elastic(alpha=34, sigma=4).apply(ramp).reshape(-1, 28, 28)
    dx = (out - ramp.reshape(-1, 28, 28))[:, 8:20, 8:20]  # away from the clamped border
    assert 0.3 < dx.std() < 3
    assert np.abs(np.diff(dx, axis=2)).mean() < 0.25 * dx.std() + 0.05


def _train_batches(fn, X, y, sizes, batch, aug, n_threads, dtype, seed=5, epoch=2):
    from fastnn._layout import as_sizes, n_params, workspace_sizes
    rng = np.random.default_rng(0)
    sizes = as_sizes(sizes)
    p = n_params(list(sizes))
    params = (rng.standard_normal(p) * 0.05).astype(dtype)
    slots = np.zeros((1, p), dtype)
    need = workspace_sizes(list(sizes), batch)
    import types
    ws = types.SimpleNamespace(grads=np.zeros(need.params, dtype), acts=np.zeros(need.acts, dtype),
                               deltas=np.zeros(need.deltas, dtype),
                               ybuf=np.zeros(batch, np.intp), wbuf=np.zeros(need.wbuf, dtype),
                               masks=np.zeros(need.masks, np.uint8))
    order = np.random.default_rng(1).permutation(X.shape[0]).astype(np.intp)
    out = fn(X, y, order, 0, X.shape[0], batch, sizes, "relu", params, slots, ws,
             K.Hyper("sgd", learning_rate=0.05, momentum=0.9), seed=seed, epoch=epoch,
             n_threads=n_threads, augment=aug.kernel_params(X.shape[1]))
    return out, params


@pytest.mark.parametrize("dtype", DTYPES)
def test_training_with_augmentation_is_the_same_on_1_and_2_threads(rng, dtype):
    X = rng.random((300, 784)).astype(dtype)
    y = rng.integers(0, 10, 300).astype(np.intp)
    aug = CASES["all"]
    before = _kernels._split_threshold()
    try:
        _kernels._split_threshold(0)  # split every phase, the gather too
        ref = _train_batches(K.train_batches, X, y, [784, 64, 10], 50, aug, 1, dtype)
        got = _train_batches(K.train_batches, X, y, [784, 64, 10], 50, aug, 2, dtype)
    finally:
        _kernels._split_threshold(before)
    assert got[0] == ref[0]
    np.testing.assert_array_equal(got[1], ref[1])
    # and it trains on the deformed rows: the NumPy trainer agrees
    want = _train_batches(R.train_batches, X, y, [784, 64, 10], 50, aug, 1, dtype)
    tol = dict(rtol=1e-3, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(got[1], want[1], **tol)
    plain = _train_batches(K.train_batches, X, y, [784, 64, 10], 50, Augment(), 1, dtype)
    assert not np.allclose(plain[1], got[1])


def test_fit_with_augmentation_resumes_from_a_checkpoint_exactly(rng, tmp_path):
    X = rng.random((400, 784)).astype(np.float32)
    y = rng.integers(0, 10, 400)
    kw = dict(batch_size=32, learning_rate=0.05, momentum=0.9, verbose=False,
              augment={"rotation": 10, "elastic_alpha": 20, "elastic_sigma": 3})
    full = MLP([784, 16, 10], seed=3)
    full.fit(X, y, epochs=3, checkpoint=tmp_path / "full.npz", **kw)
    part = MLP([784, 16, 10], seed=3)
    part.fit(X, y, epochs=2, checkpoint=tmp_path / "part.npz", **kw)
    resumed = MLP([784, 16, 10], seed=3)
    h = resumed.fit(X, y, epochs=3, checkpoint=tmp_path / "part.npz", **kw)
    np.testing.assert_array_equal(resumed.parameters, full.parameters)
    assert h.params["augment"]["rotation"] == [-10.0, 10.0]
    plain = MLP([784, 16, 10], seed=3)
    plain.fit(X, y, epochs=3, **{**kw, "augment": None})
    assert not np.array_equal(plain.parameters, full.parameters)
    # prediction never augments
    np.testing.assert_array_equal(full.predict_proba(X[:5]), full.predict_proba(X[:5]))


def test_identity_augmentation_trains_as_none(rng):
    X = rng.random((100, 784)).astype(np.float32)
    y = rng.integers(0, 10, 100)
    a, b = MLP([784, 8, 10], seed=0), MLP([784, 8, 10], seed=0)
    a.fit(X, y, epochs=2, verbose=False, augment=Augment())
    b.fit(X, y, epochs=2, verbose=False)
    np.testing.assert_array_equal(a.parameters, b.parameters)
    # an identity's image shape, where given, must still fit the rows (as any
    # augmentation's), while non-image rows take an identity without one
    with pytest.raises(ValueError, match=r"image_shape \(20, 20\) does not match rows of 784"):
        MLP([784, 8, 10], seed=0).fit(X, y, epochs=1, verbose=False,
                                      augment=Augment(image_shape=(20, 20)))
    MLP([10, 4, 2], seed=0).fit(X[:, :10], y % 2, epochs=1, verbose=False, augment=Augment())


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(rotation=46), ValueError, "rotation"),
    (dict(rotation=(5, 1)), ValueError, "rotation"),
    (dict(rotation="x"), TypeError, "rotation"),
    (dict(translation="12"), TypeError, "translation"),  # not the pair (1, 2)
    (dict(rotation=(True, 2)), TypeError, "rotation"),
    (dict(scale=("0.1", 0.2)), TypeError, "scale"),
    (dict(scale=(-1, 0)), ValueError, "scale"),
    (dict(shear=2), ValueError, "shear"),
    (dict(translation=float("nan")), ValueError, "translation"),
    (dict(elastic_alpha=5), ValueError, "elastic_sigma"),
    (dict(elastic_alpha=-1, elastic_sigma=1), ValueError, "elastic_alpha"),
    (dict(elastic_alpha=1e7, elastic_sigma=4), ValueError, "elastic_alpha must be below"),
    (dict(flip=1), TypeError, "flip"),
    (dict(image_shape=(28,)), ValueError, "image_shape"),
    (dict(image_shape=(1, 784)), ValueError, "image_shape"),
])
def test_bad_parameters_name_themselves(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        Augment(**kwargs)


def test_rows_that_are_not_the_image_are_refused(rng):
    X = rng.random((10, 785)).astype(np.float32)
    y = rng.integers(0, 10, 10)
    with pytest.raises(ValueError, match="image_shape"):
        MLP([785, 10]).fit(X, y, epochs=1, verbose=False, augment=Affine(rotation=5))
    with pytest.raises(ValueError, match="image_shape"):
        MLP([785, 10]).fit(X, y, epochs=1, verbose=False,
                           augment=Augment(rotation=5, image_shape=(28, 28)))
    with pytest.raises(ValueError, match="unknown key"):
        MLP([784, 10]).fit(X[:, :784], y, epochs=1, verbose=False, augment={"rotate": 5})
    with pytest.raises(TypeError, match="augment"):
        MLP([784, 10]).fit(X[:, :784], y, epochs=1, verbose=False, augment=5)


def test_kernel_boundary_refuses_bad_params(rng):
    X = rng.random((4, 784)).astype(np.float32)
    good = Affine(rotation=5).kernel_params(784)
    with pytest.raises(TypeError, match="AugmentParams"):
        K.augment_rows(X, [0], 0, 0, object())
    with pytest.raises(ValueError, match="does not match"):
        K.augment_rows(X, [0], 0, 0, good._replace(image_shape=(28, 27, 1)))
    with pytest.raises(ValueError, match="angle"):
        K.augment_rows(X, [0], 0, 0, good._replace(hi=good.hi * 0 + 1.0))
    with pytest.raises(ValueError, match="gauss"):
        K.augment_rows(X, [0], 0, 0, good._replace(gauss=np.ones(4, np.float32)))
    with pytest.raises(ValueError, match="rows"):
        K.augment_rows(X, [4], 0, 0, good)


def test_composition_refuses_a_conflict():
    assert (Affine(rotation=5) + Elastic(3, 1)).elastic_sigma == 1.0
    with pytest.raises(ValueError, match="rotation"):
        Affine(rotation=5) + Affine(rotation=6)


def test_the_documented_directions_of_shear_translation_and_rotation():
    """Augment's docstring: shear k moves a pixel y rows below the centre by -k·y
    columns; translation moves the content right and down; a positive angle turns
    it counterclockwise as displayed."""
    def peak(aug, row, col):
        Z = np.zeros((1, 29 * 29), np.float32)
        Z[0, row * 29 + col] = 1
        out = aug.apply(Z, image_shape=(29, 29)).reshape(29, 29)
        return np.unravel_index(out.argmax(), out.shape)
    assert peak(Affine(shear=(0.5, 0.5)), 24, 14) == (24, 9)    # 10 below: -5 columns
    assert peak(Affine(shear=(0.5, 0.5)), 4, 14) == (4, 19)     # 10 above: +5
    assert peak(Affine(translation=(2, 2)), 24, 14) == (26, 16)
    r, c = peak(Affine(rotation=(10, 10)), 14, 24)              # right of the centre:
    assert r < 14 and c <= 24                                   # it moves up
