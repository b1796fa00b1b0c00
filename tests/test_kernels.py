"""The compiled kernels against their plain-NumPy twins in fastnn.reference.

Random inputs with awkward shapes (batch 1, 7, 128, 1000; widths that are
not multiples of 8 or 16), both float dtypes, tolerances stated per dtype.
Also: caller-supplied ``out`` buffers, numerical stability of the softmax
and cross-entropy, the SGD update rule, and ``train_batches`` on multi-layer
nets (returned counters and the resulting params and velocity), on every
instruction-set variant of fastnn's own kernels that the CPU runs and on
several threads (the weights must not depend on the thread count).
"""
import os
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest

from fastnn import MLP, _kernels
from fastnn import kernels as K
from fastnn import reference as R
from fastnn._layout import as_sizes, n_params, n_weights, unflatten, workspace_sizes

DTYPES = [np.float32, np.float64]
ACTIVATIONS = ["identity", "relu", "tanh", "sigmoid"]

# Kernel vs twin: same maths, different summation order (BLAS builds,
# pairwise sums in NumPy) and libm vs NumPy ufuncs. Values are O(1), so the
# atol covers cancellation in dot products of up to ~1000 terms.
TOL = {
    np.float32: dict(rtol=1e-4, atol=1e-5),
    np.float64: dict(rtol=1e-10, atol=1e-12),
}
# A few SGD steps through a whole net amplify the per-kernel rounding a little.
TRAIN_TOL = {
    np.float32: dict(rtol=1e-3, atol=1e-5),
    np.float64: dict(rtol=1e-9, atol=1e-11),
}
# Loss values are accumulated in double by the kernel, in the dtype by the twin.
LOSS_RTOL = {np.float32: 1e-5, np.float64: 1e-12}

# (batch, n_in, n_out): batch 1, 7, 128, 1000; widths 1, 3, 13, 33, 784 -> 129 ...
DENSE_SHAPES = [
    (1, 1, 1),
    (1, 784, 129),
    (7, 3, 13),
    (7, 33, 1),
    (128, 13, 33),
    (128, 784, 129),
    (1000, 13, 3),
    (1000, 33, 10),
]
# (batch, classes)
SOFTMAX_SHAPES = [(1, 1), (1, 10), (7, 3), (128, 13), (1000, 33), (1000, 10)]


def shape_id(shape):
    return "x".join(map(str, shape))


@pytest.fixture
def rng():
    return np.random.default_rng(20240611)


# the kernel variants this build and CPU run, the selected (best) first (the
# kernel_isa fixture, tests/conftest.py, runs a test on each)
ISAS = [e["isa"] for e in _kernels._ukernels() if e["usable"]]


def randn(rng, shape, dtype, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def layer_inputs(rng, batch, n_in, n_out, dtype):
    """X ~ N(0, 1), W ~ N(0, 1/n_in), b ~ N(0, 0.5): pre-activations O(1)."""
    X = randn(rng, (batch, n_in), dtype)
    W = randn(rng, (n_in, n_out), dtype, 1.0 / np.sqrt(n_in))
    b = randn(rng, (n_out,), dtype, 0.5)
    return X, W, b


def activated(rng, shape, dtype, activation):
    """A plausible layer input A_prev = activation(Z_prev) (ReLU: exact zeros)."""
    z = randn(rng, shape, np.float64, 1.5)
    return R._activate(z, activation).astype(dtype)


# ---------------------------------------------------------------------------
# dense_forward
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("shape", DENSE_SHAPES, ids=shape_id)
def test_dense_forward_matches_reference(rng, shape, activation, dtype):
    X, W, b = layer_inputs(rng, *shape, dtype)
    got = K.dense_forward(X, W, b, activation)
    want = R.dense_forward(X, W, b, activation)
    assert got.dtype == dtype and got.shape == (shape[0], shape[2])
    assert got.flags.c_contiguous
    np.testing.assert_allclose(got, want, **TOL[dtype])
    # an independent float64 oracle as well, so a shared mistake would show
    z = X.astype(np.float64) @ W.astype(np.float64) + b
    oracle = {"identity": z, "relu": np.maximum(z, 0), "tanh": np.tanh(z),
              "sigmoid": 1 / (1 + np.exp(-z))}[activation]
    np.testing.assert_allclose(got, oracle, **TOL[dtype])


# batch rows around the register tile (6 rows) and widths around the vector
# widths (4, 8, 16 lanes): every row and column tail of the micro-kernels
KERNEL_BATCHES = [1, 7, 10, 33, 128]
KERNEL_WIDTHS = [1, 3, 10, 17, 31, 100, 129]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", KERNEL_BATCHES)
def test_own_forward_kernel_tails(rng, kernel_isa, batch, dtype):
    """fastnn's forward kernel (bias + activation fused) against the twin and
    the BLAS product, for every tail width, on each instruction-set variant."""
    for n_in in (1, 17, 100):
        for n_out in KERNEL_WIDTHS:
            for activation in ACTIVATIONS:
                X, W, b = layer_inputs(rng, batch, n_in, n_out, dtype)
                got = K.dense_forward(X, W, b, activation)
                want = R.dense_forward(X, W, b, activation)
                np.testing.assert_allclose(got, want, **TOL[dtype],
                                           err_msg=f"{n_in}x{n_out} {activation}")
                blas = R._activate(X @ W + b, activation)
                np.testing.assert_allclose(got, blas, **TOL[dtype])


def test_kernel_isa_selection_refuses_unknown_names():
    with pytest.raises(ValueError, match="name must be"):
        _kernels._kernel_isa("sse9")
    assert _kernels._kernel_isa() in ("avx512", "avx2", "neon", "generic")


def test_the_registry_lists_each_instruction_set_once_best_first():
    """The micro-kernel registry (fnn_ukernels): one entry per instruction set
    the build holds, generic last and always usable; the selection at load is
    its first usable entry; an entry the CPU cannot run is refused by name;
    each entry's float and double tiles are the same shape, double with half
    the lanes, and fit the widest panel (64 columns) the blocking assumes."""
    entries = _kernels._ukernels()
    names = [e["isa"] for e in entries]
    assert len(set(names)) == len(names)
    assert set(names) <= set(_kernels.KERNEL_ISAS) and names[-1] == "generic"
    assert entries[-1]["usable"]
    best = next(e["isa"] for e in entries if e["usable"])
    # unless FASTNN_ISA named another usable one for this process
    chosen = os.environ.get("FASTNN_ISA", "").strip().lower()
    usable = [e["isa"] for e in entries if e["usable"]]
    assert ISAS[0] == best
    assert _kernels._kernel_isa() == (chosen if chosen in usable else best)
    lanes = {"avx512": 16, "avx2": 8, "neon": 4, "generic": 1}
    for e in entries:
        f, d = e["float32"], e["float64"]
        assert (f["mr"], f["nrv"]) == (d["mr"], d["nrv"])
        assert f["vl"] == lanes[e["isa"]] and d["vl"] == max(1, f["vl"] // 2)
        assert 1 <= f["mr"] <= 6 and f["nrv"] in (1, 2, 4) and f["nrv"] * f["vl"] <= 64
        if not e["usable"]:
            with pytest.raises(ValueError, match="cannot run"):
                _kernels._kernel_isa(e["isa"])
    for isa in set(_kernels.KERNEL_ISAS) - set(names):
        with pytest.raises(ValueError, match="cannot run"):
            _kernels._kernel_isa(isa)


_FIT_IN_A_CHILD = """
import sys
import numpy as np
import fastnn, fastnn._kernels as k
rng = np.random.default_rng(0)
X = rng.random((64, 12), np.float32)
y = rng.integers(0, 3, 64)
m = fastnn.MLP([12, 8, 3], seed=1)
m.fit(X, y, epochs=2, batch_size=16, verbose=False)
np.save(sys.argv[1], m.parameters)
print(k._kernel_isa())
"""


def _child_fit(tmp_path, isa):
    env = {k: v for k, v in os.environ.items() if k != "FASTNN_ISA"}
    if isa is not None:
        env["FASTNN_ISA"] = isa
    out = tmp_path / "params.npy"
    r = subprocess.run([sys.executable, "-c", _FIT_IN_A_CHILD, str(out)], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip(), r.stderr, np.load(out)


@pytest.mark.parametrize("spelling", ["{}", " {} ", "{upper}"])
def test_fastnn_isa_selects_the_kernels_at_import(tmp_path, spelling):
    """FASTNN_ISA=<name> (any case, blanks around it) selects those kernels for
    the process at import, as _kernel_isa(name) does: a fit in a child with
    FASTNN_ISA=generic gives the weights this process gives on the generic
    kernels, bit for bit."""
    name = "generic"
    isa, err, got = _child_fit(tmp_path, spelling.format(name, upper=name.upper()))
    assert isa == name and "FASTNN_ISA" not in err
    before = _kernels._kernel_isa()
    try:
        _kernels._kernel_isa(name)
        rng = np.random.default_rng(0)
        X = rng.random((64, 12), np.float32)
        y = rng.integers(0, 3, 64)
        m = MLP([12, 8, 3], seed=1)
        m.fit(X, y, epochs=2, batch_size=16, verbose=False)
    finally:
        _kernels._kernel_isa(before)
    np.testing.assert_array_equal(got, m.parameters)


@pytest.mark.parametrize("value", ["sse9", "neon", "avx512", ""])
def test_fastnn_isa_that_cannot_run_warns_and_keeps_the_best(tmp_path, value):
    """A name that is not an instruction set, or one this build or CPU lacks,
    does not break the import: a RuntimeWarning names the variable and what
    this CPU runs, and the best kernels train. Blank: the best, silently."""
    best = next(e["isa"] for e in _kernels._ukernels() if e["usable"])
    usable = [e["isa"] for e in _kernels._ukernels() if e["usable"]]
    isa, err, _ = _child_fit(tmp_path, value)
    if value in usable:
        assert isa == value and "FASTNN_ISA" not in err
    elif value == "":
        assert isa == best and "FASTNN_ISA" not in err
    else:
        assert isa == best
        assert f"RuntimeWarning: FASTNN_ISA={value!r} ignored" in err and str(usable) in err
    # in-process: the same rule, the selection unchanged by a refused name
    before = _kernels._kernel_isa()
    if value not in usable and value:
        with pytest.warns(RuntimeWarning, match="FASTNN_ISA"):
            assert _kernels._isa_from_environment(value) == before
    assert _kernels._kernel_isa() == before


def _cpu_flags():
    """The x86 feature flags of /proc/cpuinfo (Linux), else None."""
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return None


def test_kernel_dispatch_selects_the_simd_path_of_this_machine():
    """The dispatch at load picks the widest variant the CPU runs (NEON on
    every aarch64 CPU; AVX-512 or AVX2 where /proc/cpuinfo lists AVX2 and
    FMA), whichever compiler built the module; "generic" is always there."""
    import os
    import platform
    machine = platform.machine().lower()
    best = ISAS[0]
    assert "generic" in ISAS
    info = _kernels._build_info()
    if os.environ.get("FASTNN_PORTABLE", "") not in ("", "0"):
        # a deliberately portable build (setup.py): the C kernels only
        assert not info["simd"] and ISAS == ["generic"]
        return
    # a SIMD variant that failed to compile falls back to the portable core
    # (setup.py) instead of failing the install; on these machines it must not
    # (MSVC on x86-64 builds the portable core: the x86 variants need GCC or clang)
    if machine in ("x86_64", "amd64", "aarch64", "arm64") and not (
            info["compiler"] == "msvc" and machine in ("x86_64", "amd64")):
        assert info["simd"], f"the SIMD kernels were not built: {info}"
    if not info["simd"]:
        assert ISAS == ["generic"]
    elif machine in ("aarch64", "arm64"):
        assert best == "neon"
    elif machine in ("x86_64", "amd64"):
        flags = _cpu_flags()
        if flags is not None and {"avx2", "fma"} <= flags:
            assert best in ("avx512", "avx2")
            assert "avx2" in ISAS
        if flags is not None and {"avx512f", "avx512vl", "avx512bw", "avx512dq"} <= flags:
            assert best == "avx512"
        assert "neon" not in ISAS
    assert info["compiler"].split()[0] in ("gcc", "clang", "msvc", "c")
    if machine == "x86_64" and sys.platform.startswith("linux") and (
            info["compiler"].startswith("gcc")
            or (info["compiler"].startswith("clang")
                and int(info["compiler"].split()[1].split(".")[0]) >= 14)):
        assert info["clones"], info  # the cloned elementwise passes (ifunc)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_forward_activation_values(dtype):
    """Hand-computed values, including saturation of tanh/sigmoid."""
    X = np.array([[1.0, -2.0], [0.5, 0.25]], dtype)
    W = np.array([[1.0, 0.0, 100.0], [0.0, 1.0, 0.0]], dtype)
    b = np.array([0.0, 0.0, -60.0], dtype)
    z = np.array([[1.0, -2.0, 40.0], [0.5, 0.25, -10.0]])
    np.testing.assert_allclose(K.dense_forward(X, W, b), z, **TOL[dtype])
    np.testing.assert_array_equal(K.dense_forward(X, W, b, "relu"), np.maximum(z, 0))
    np.testing.assert_allclose(K.dense_forward(X, W, b, "tanh"), np.tanh(z), **TOL[dtype])
    sig = K.dense_forward(X, W, b, "sigmoid")
    np.testing.assert_allclose(sig, 1 / (1 + np.exp(-z)), **TOL[dtype])
    assert np.all(np.isfinite(sig)) and sig[0, 2] <= 1 and sig[1, 2] > 0


# ---------------------------------------------------------------------------
# dense_backward
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation_prev", ACTIVATIONS)
@pytest.mark.parametrize("shape", DENSE_SHAPES, ids=shape_id)
def test_dense_backward_matches_reference(rng, shape, activation_prev, dtype):
    batch, n_in, n_out = shape
    A_prev = activated(rng, (batch, n_in), dtype, activation_prev)
    W = randn(rng, (n_in, n_out), dtype, 1.0 / np.sqrt(n_in))
    dZ = randn(rng, (batch, n_out), dtype, 1.0 / batch)
    dW, db, dZ_prev = K.dense_backward(A_prev, W, dZ, activation_prev)
    rW, rb, rZ = R.dense_backward(A_prev, W, dZ, activation_prev)
    assert dW.shape == (n_in, n_out) and db.shape == (n_out,) and dZ_prev.shape == (batch, n_in)
    assert dW.dtype == db.dtype == dZ_prev.dtype == dtype
    np.testing.assert_allclose(dW, rW, **TOL[dtype])
    np.testing.assert_allclose(db, rb, **TOL[dtype])
    np.testing.assert_allclose(dZ_prev, rZ, **TOL[dtype])
    if activation_prev == "relu":
        # the derivative is exactly zero where the unit was off
        assert np.all(dZ_prev[A_prev == 0] == 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation_prev", ACTIVATIONS)
@pytest.mark.parametrize("shape", [(1, 784, 129), (7, 3, 13), (1000, 33, 10)], ids=shape_id)
def test_dense_backward_without_dZ_prev(rng, shape, activation_prev, dtype):
    batch, n_in, n_out = shape
    A_prev = activated(rng, (batch, n_in), dtype, activation_prev)
    W = randn(rng, (n_in, n_out), dtype, 1.0 / np.sqrt(n_in))
    dZ = randn(rng, (batch, n_out), dtype, 1.0 / batch)
    dW, db, dZ_prev = K.dense_backward(A_prev, W, dZ, activation_prev, compute_dZ_prev=False)
    rW, rb, rZ = R.dense_backward(A_prev, W, dZ, activation_prev, compute_dZ_prev=False)
    assert dZ_prev is None and rZ is None
    np.testing.assert_allclose(dW, rW, **TOL[dtype])
    np.testing.assert_allclose(db, rb, **TOL[dtype])
    # and the same dW/db as when dZ_prev is computed
    dW2, db2, _ = K.dense_backward(A_prev, W, dZ, activation_prev)
    np.testing.assert_array_equal(dW, dW2)
    np.testing.assert_array_equal(db, db2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_backward_hand_computed(dtype):
    A_prev = np.array([[0.5, 0.0], [2.0, 1.0]], dtype)  # relu outputs
    W = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype)
    dZ = np.array([[1.0, 0.0, -1.0], [0.5, 0.5, 0.5]], dtype)
    dW, db, dZ_prev = K.dense_backward(A_prev, W, dZ, "relu")
    np.testing.assert_allclose(dW, A_prev.T.astype(np.float64) @ dZ, **TOL[dtype])
    np.testing.assert_allclose(db, [1.5, 0.5, -0.5], **TOL[dtype])
    # dZ @ W.T = [[-2, -2], [3, 7.5]]; relu' from A_prev zeroes entry (0, 1)
    np.testing.assert_allclose(dZ_prev, [[-2.0, 0.0], [3.0, 7.5]], **TOL[dtype])
    _, _, dZ_tanh = K.dense_backward(A_prev * 0.5, W, dZ, "tanh")
    a = A_prev.astype(np.float64) * 0.5
    np.testing.assert_allclose(dZ_tanh, [[-2.0, -2.0], [3.0, 7.5]] * (1 - a * a), **TOL[dtype])
    _, _, dZ_sig = K.dense_backward(A_prev * 0.25, W, dZ, "sigmoid")
    a = A_prev.astype(np.float64) * 0.25
    np.testing.assert_allclose(dZ_sig, [[-2.0, -2.0], [3.0, 7.5]] * a * (1 - a), **TOL[dtype])


# ---------------------------------------------------------------------------
# softmax_cross_entropy and softmax
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SOFTMAX_SHAPES, ids=shape_id)
def test_softmax_cross_entropy_matches_reference(rng, shape, dtype):
    batch, k = shape
    logits = randn(rng, shape, dtype, 3.0)
    labels = rng.integers(0, k, batch).astype(np.intp)
    loss, grad = K.softmax_cross_entropy(logits, labels)
    rloss, rgrad = R.softmax_cross_entropy(logits, labels)
    assert isinstance(loss, float)
    assert grad.dtype == dtype and grad.shape == shape
    np.testing.assert_allclose(loss, rloss, rtol=LOSS_RTOL[dtype])
    np.testing.assert_allclose(grad, rgrad, **TOL[dtype])
    # independent float64 oracle
    z = logits.astype(np.float64)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(loss, -np.mean(np.log(p[np.arange(batch), labels])),
                               rtol=LOSS_RTOL[dtype] * 10)
    onehot = np.eye(k)[labels]
    np.testing.assert_allclose(grad, (p - onehot) / batch, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SOFTMAX_SHAPES, ids=shape_id)
def test_softmax_matches_reference(rng, shape, dtype):
    logits = randn(rng, shape, dtype, 3.0)
    before = logits.copy()
    got = K.softmax(logits)
    assert got is not logits and got.dtype == dtype
    np.testing.assert_array_equal(logits, before)  # input untouched
    np.testing.assert_allclose(got, R.softmax(logits), **TOL[dtype])
    np.testing.assert_allclose(got.sum(axis=1), 1.0, **TOL[dtype])


# ---------------------------------------------------------------------------
# Stability of softmax / cross-entropy
# ---------------------------------------------------------------------------

# (dtype, magnitude): every finite magnitude the dtype can hold without the
# difference of two logits overflowing the loss (which is returned as double).
EXTREMES = [(np.float32, 1e4), (np.float64, 1e4), (np.float64, 1e30),
            (np.float32, 3e38), (np.float64, 1e300)]


@pytest.mark.parametrize("dtype,v", EXTREMES, ids=lambda p: str(getattr(p, "__name__", p)))
def test_cross_entropy_extreme_logits_analytic(dtype, v):
    assert np.isfinite(dtype(v))
    logits = np.array([[v, -v], [v, -v], [-v, v], [0.0, v]], dtype)
    labels = np.array([0, 1, 0, 1], np.intp)
    with np.errstate(all="raise"):
        loss, grad = K.softmax_cross_entropy(logits, labels)
    # per-row losses: 0, 2v, 2v, 0 (computed with the dtype's value of v)
    vv = float(dtype(v))
    assert np.isfinite(loss)
    np.testing.assert_allclose(loss, (0 + 2 * vv + 2 * vv + 0) / 4, rtol=1e-7)
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad.sum(axis=1), 0.0, atol=TOL[dtype]["atol"])
    np.testing.assert_allclose(grad, [[0, 0], [0.25, -0.25], [-0.25, 0.25], [0, 0]], atol=1e-7)
    rloss, rgrad = R.softmax_cross_entropy(logits, labels)
    np.testing.assert_allclose(loss, rloss, rtol=1e-7)
    np.testing.assert_allclose(grad, rgrad, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_single_row_1e4(dtype):
    """The issue's example: logits [1e4, -1e4] give loss 0 (label 0) and 2e4 (label 1)."""
    logits = np.array([[1e4, -1e4]], dtype)
    loss0, g0 = K.softmax_cross_entropy(logits, np.array([0], np.intp))
    loss1, g1 = K.softmax_cross_entropy(logits, np.array([1], np.intp))
    assert loss0 == 0.0
    assert loss1 == 2e4
    np.testing.assert_array_equal(g0, [[0.0, 0.0]])
    np.testing.assert_array_equal(g1, [[1.0, -1.0]])


@pytest.mark.parametrize("dtype,v", EXTREMES, ids=lambda p: str(getattr(p, "__name__", p)))
def test_softmax_extreme_logits(rng, dtype, v):
    logits = (rng.uniform(-1, 1, (64, 13)) * v).astype(dtype)
    logits[0] = v
    logits[1] = -v
    logits[2, :] = -v
    logits[2, 5] = v
    with np.errstate(all="raise"):
        p = K.softmax(logits)
    assert np.all(np.isfinite(p)) and np.all(p >= 0) and np.all(p <= 1)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, **TOL[dtype])
    np.testing.assert_allclose(p[0], 1.0 / 13, **TOL[dtype])
    np.testing.assert_allclose(p[1], 1.0 / 13, **TOL[dtype])
    np.testing.assert_array_equal(p[2], np.eye(13)[5])
    with np.errstate(over="ignore"):
        np.testing.assert_allclose(p, R.softmax(logits), **TOL[dtype])


@pytest.mark.parametrize("dtype,v", [(np.float32, 1e4), (np.float64, 1e4), (np.float64, 1e30)],
                         ids=lambda p: str(getattr(p, "__name__", p)))
def test_cross_entropy_extreme_random_rows(rng, dtype, v):
    """Random huge logits: finite, equal to the twin, grad rows sum to ~0."""
    logits = (rng.uniform(-1, 1, (1000, 33)) * v).astype(dtype)
    labels = rng.integers(0, 33, 1000).astype(np.intp)
    loss, grad = K.softmax_cross_entropy(logits, labels)
    rloss, rgrad = R.softmax_cross_entropy(logits, labels)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(loss, rloss, rtol=LOSS_RTOL[dtype])
    np.testing.assert_allclose(grad, rgrad, **TOL[dtype])
    np.testing.assert_allclose(grad.sum(axis=1), 0.0, atol=TOL[dtype]["atol"])


# ---------------------------------------------------------------------------
# Caller-supplied out buffers
# ---------------------------------------------------------------------------

def garbage(shape, dtype):
    return np.full(shape, np.nan, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dense_forward_out(rng, activation, dtype):
    X, W, b = layer_inputs(rng, 7, 33, 13, dtype)
    want = K.dense_forward(X, W, b, activation)
    out = garbage((7, 13), dtype)
    got = K.dense_forward(X, W, b, activation, out=out)
    assert got is out
    np.testing.assert_array_equal(out, want)
    # a row-block view of a larger buffer (as MLP._logits_blocks uses): only it is written
    big = garbage((10, 13), dtype)
    view = big[2:9]
    assert K.dense_forward(X, W, b, activation, out=view) is view
    np.testing.assert_array_equal(big[2:9], want)
    assert np.isnan(big[:2]).all() and np.isnan(big[9:]).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("compute_dZ_prev", [True, False])
def test_dense_backward_out(rng, dtype, compute_dZ_prev):
    A_prev = activated(rng, (128, 33), dtype, "tanh")
    W = randn(rng, (33, 13), dtype)
    dZ = randn(rng, (128, 13), dtype)
    want = K.dense_backward(A_prev, W, dZ, "tanh", compute_dZ_prev=compute_dZ_prev)
    dW, db = garbage((33, 13), dtype), garbage((13,), dtype)
    dZ_prev = garbage((128, 33), dtype) if compute_dZ_prev else None
    got = K.dense_backward(A_prev, W, dZ, "tanh", dW=dW, db=db, dZ_prev=dZ_prev,
                           compute_dZ_prev=compute_dZ_prev)
    assert got[0] is dW and got[1] is db and got[2] is dZ_prev
    np.testing.assert_array_equal(dW, want[0])
    np.testing.assert_array_equal(db, want[1])
    if compute_dZ_prev:
        np.testing.assert_array_equal(dZ_prev, want[2])
    # out buffers that are views into one flat gradient vector (as gradcheck uses)
    flat = garbage(33 * 13 + 13, dtype)
    gW, gb = flat[:33 * 13].reshape(33, 13), flat[33 * 13:]
    got = K.dense_backward(A_prev, W, dZ, "tanh", dW=gW, db=gb, compute_dZ_prev=False)
    assert got[0] is gW and got[1] is gb
    np.testing.assert_array_equal(flat, np.concatenate([want[0].ravel(), want[1]]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_cross_entropy_out(rng, dtype):
    logits = randn(rng, (128, 10), dtype, 3.0)
    labels = rng.integers(0, 10, 128).astype(np.intp)
    loss, want = K.softmax_cross_entropy(logits, labels)
    grad = garbage((128, 10), dtype)
    loss2, got = K.softmax_cross_entropy(logits, labels, grad=grad)
    assert got is grad
    assert loss2 == loss
    np.testing.assert_array_equal(grad, want)
    rgrad = garbage((128, 10), dtype)
    rloss, rgot = R.softmax_cross_entropy(logits, labels, grad=rgrad)
    assert rgot is rgrad
    np.testing.assert_allclose(rgrad, grad, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", [1, 7, 128])
def test_softmax_cross_entropy_counts_correct(rng, dtype, batch):
    # integer-valued logits make ties common: the first largest logit counts,
    # as np.argmax picks it
    logits = rng.integers(-2, 3, (batch, 10)).astype(dtype)
    labels = rng.integers(0, 10, batch).astype(np.intp)
    want = int(np.count_nonzero(logits.argmax(axis=1) == labels))
    loss, grad, hits = K.softmax_cross_entropy(logits, labels, return_correct=True)
    assert hits == want
    assert K.softmax_cross_entropy(logits, labels)[0] == loss
    rloss, rgrad, rhits = R.softmax_cross_entropy(logits, labels, return_correct=True)
    assert rhits == want
    np.testing.assert_allclose(rloss, loss, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_out(rng, dtype):
    logits = randn(rng, (1000, 33), dtype, 3.0)
    want = K.softmax(logits)
    out = garbage((1000, 33), dtype)
    assert K.softmax(logits, out=out) is out
    np.testing.assert_array_equal(out, want)
    # in place: out is logits
    inplace = logits.copy()
    assert K.softmax(inplace, out=inplace) is inplace
    np.testing.assert_array_equal(inplace, want)
    # a row-block view of a larger buffer (as MLP.predict_proba uses)
    big = garbage((1010, 33), dtype)
    view = big[5:1005]
    assert K.softmax(logits, out=view) is view
    np.testing.assert_array_equal(view, want)
    assert np.isnan(big[:5]).all() and np.isnan(big[1005:]).all()


# ---------------------------------------------------------------------------
# sgd_update
# ---------------------------------------------------------------------------

def sgd_inputs(rng, shape, dtype):
    W = randn(rng, shape, dtype)
    W.reshape(-1)[::5] = 0  # sign(0) = 0: no L1 push on exact zeros
    g = randn(rng, shape, dtype)
    v = randn(rng, shape, dtype, 0.1)
    return W, g, v


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("l1", [0.0, 1e-3])
@pytest.mark.parametrize("l2", [0.0, 1e-2])
def test_sgd_update_matches_reference(rng, momentum, l1, l2, dtype):
    for shape in [(1,), (13,), (33, 7), (784, 129)]:
        W, g, v = sgd_inputs(rng, shape, dtype)
        W2, v2 = W.copy(), v.copy()
        g_before = g.copy()
        for step in range(3):
            assert K.sgd_update(W, g, v, 0.05, momentum, l1, l2) is None
            R.sgd_update(W2, g, v2, 0.05, momentum, l1, l2)
        np.testing.assert_array_equal(g, g_before)  # grad is read only
        np.testing.assert_allclose(W, W2, **TOL[dtype])
        np.testing.assert_allclose(v, v2, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum,l1,l2", [(0.0, 0.0, 0.0), (0.9, 0.0, 0.0),
                                            (0.5, 0.01, 0.0), (0.5, 0.0, 0.1),
                                            (0.9, 0.01, 0.1)])
def test_sgd_update_semantics(rng, momentum, l1, l2, dtype):
    """v = mu*v - lr*(g + l2*W + l1*sign(W)); W += v, written out in float64."""
    lr = 0.1
    W, g, v = sgd_inputs(rng, (13, 3), dtype)
    W64, g64, v64 = (a.astype(np.float64) for a in (W, g, v))
    v_new = momentum * v64 - lr * (g64 + l2 * W64 + l1 * np.sign(W64))
    W_new = W64 + v_new
    K.sgd_update(W, g, v, lr, momentum, l1, l2)
    np.testing.assert_allclose(v, v_new, **TOL[dtype])
    np.testing.assert_allclose(W, W_new, **TOL[dtype])


def test_sgd_update_hand_computed():
    W = np.array([2.0, -1.0, 0.0])
    g = np.array([1.0, 1.0, 1.0])
    v = np.array([1.0, -2.0, 0.5])
    K.sgd_update(W, g, v, learning_rate=0.5, momentum=0.5, l1=0.2, l2=0.1)
    # step = g + 0.1 W + 0.2 sign(W) = [1.4, 0.7, 1.0]; v = 0.5 v - 0.5 step
    np.testing.assert_allclose(v, [0.5 - 0.7, -1.0 - 0.35, 0.25 - 0.5])
    np.testing.assert_allclose(W, [2.0 - 0.2, -1.0 - 1.35, -0.25])


@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_update_zero_d_and_empty(dtype):
    W, g, v = np.array(2.0, dtype), np.array(1.0, dtype), np.array(0.0, dtype)
    K.sgd_update(W, g, v, 0.5)
    assert W == 1.5 and v == -0.5
    # an empty parameter array is a no-op, not an error
    e = np.empty((0, 3), dtype)
    assert K.sgd_update(e, e.copy(), e.copy(), 0.1, 0.9, 0.1, 0.1) is None


# ---------------------------------------------------------------------------
# train_batches
# ---------------------------------------------------------------------------

def make_workspace(sizes, batch_size, dtype, rng, n_slots=2):
    """params (scaled normal weights, small biases), slots (a small velocity or
    Adam's m in slots[0], a non-negative v in slots[1]) and the work space."""
    sizes = as_sizes(sizes)
    p = n_params(list(sizes))
    params = np.zeros(p, dtype)
    weights, biases = unflatten(params, list(sizes))
    for W in weights:
        W[...] = rng.standard_normal(W.shape) / np.sqrt(W.shape[0])
    for b in biases:
        b[...] = rng.standard_normal(b.shape) * 0.1
    slots = (rng.standard_normal((n_slots, p)) * 0.01).astype(dtype)
    slots[1:] = np.abs(slots[1:]) * 0.01
    need = workspace_sizes(list(sizes), batch_size)
    ws = dict(
        params=params, slots=slots, grads=np.zeros(p, dtype),
        acts=np.zeros(need.acts, dtype), deltas=np.zeros(need.deltas, dtype),
        ybuf=np.zeros(batch_size, np.intp), wbuf=np.zeros(need.wbuf, dtype),
        masks=np.zeros(need.masks, np.uint8),
    )
    return sizes, ws


WS_FIELDS = ("grads", "acts", "deltas", "ybuf", "wbuf", "masks")


def training_problem(sizes, batch_size, dtype, seed, n_rows):
    """A fresh work space (make_workspace) and ``n_rows`` random rows to train
    on, all drawn from ``default_rng(seed)``: ``(sizes, ws, X, y, order)``."""
    rng = np.random.default_rng(seed)
    sz, ws = make_workspace(sizes, batch_size, dtype, rng)
    X = randn(rng, (n_rows, sz[0]), dtype)
    y = rng.integers(0, sz[-1], n_rows).astype(np.intp)
    order = rng.permutation(n_rows).astype(np.intp)
    return sz, ws, X, y, order


def copy_ws(ws):
    return {k: v.copy() for k, v in ws.items()}


def run_train(fn, X, y, order, start, stop, batch_size, sizes, activation, ws, *, kind="sgd",
              sample_weight=None, dropout=None, seed=0, epoch=0, n_threads=1,
              split_threshold=None, loss_start=0.0, **hyper):
    """fn's train_batches on the buffers of ``ws`` with ``Hyper(kind, **hyper)``."""
    space = types.SimpleNamespace(**{k: ws[k] for k in WS_FIELDS})
    return fn(X, y, order, start, stop, batch_size, sizes, activation, ws["params"],
              ws["slots"], space, K.Hyper(kind, **hyper), sample_weight=sample_weight,
              dropout=dropout, seed=seed, epoch=epoch, n_threads=n_threads,
              split_threshold=split_threshold, loss_start=loss_start)


TRAIN_CASES = [
    # sizes, n_rows, batch_size, start, stop, activation, hyper-parameters
    ([13, 33, 7, 3], 200, 7, 3, 150, "tanh", dict(learning_rate=0.05, momentum=0.9, l1=1e-4, l2=1e-3)),
    ([13, 33, 7, 3], 200, 128, 0, 200, "relu", dict(learning_rate=0.1)),
    ([33, 129, 13, 10], 300, 1, 10, 30, "sigmoid", dict(learning_rate=0.1, momentum=0.5)),
    ([784, 129, 33, 10], 300, 128, 0, 300, "relu", dict(learning_rate=0.05, momentum=0.9, l2=1e-3)),
    ([3, 1, 13, 2], 100, 13, 0, 100, "identity", dict(learning_rate=0.01, l1=1e-3)),
    ([7, 3], 50, 7, 5, 48, "tanh", dict(learning_rate=0.5, momentum=0.3, l1=1e-3, l2=1e-2)),
]


@pytest.mark.parametrize("n_threads", [1, 3])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", TRAIN_CASES, ids=lambda c: f"{c[0]}-bs{c[2]}-{c[5]}")
def test_train_batches_matches_reference(rng, case, dtype, kernel_isa, n_threads):
    sizes, n_rows, batch_size, start, stop, activation, hyper = case
    sizes, ws = make_workspace(sizes, batch_size, dtype, rng)
    X = randn(rng, (n_rows, sizes[0]), dtype)
    y = rng.integers(0, sizes[-1], n_rows).astype(np.intp)
    order = rng.permutation(n_rows).astype(np.intp)
    ws0, ws_ref = copy_ws(ws), copy_ws(ws)
    got = run_train(K.train_batches, X, y, order, start, stop, batch_size, sizes,
                    activation, ws, n_threads=n_threads, **hyper)
    want = run_train(R.train_batches, X, y, order, start, stop, batch_size, sizes,
                     activation, ws_ref, **hyper)
    rows, loss_sum, correct, diverged = got
    assert type(rows) is int and type(correct) is int and type(diverged) is bool
    assert rows == want[0] == stop - start
    assert diverged is False and want[3] is False
    np.testing.assert_allclose(loss_sum, want[1], rtol=TRAIN_TOL[dtype]["rtol"])
    assert correct == want[2]
    assert 0 <= correct <= rows
    assert not np.array_equal(ws["params"], ws0["params"])  # it did train
    for name in ("params", "slots"):  # grads is work space
        np.testing.assert_allclose(ws[name], ws_ref[name], **TRAIN_TOL[dtype],
                                   err_msg=name)


def test_train_batches_loss_sum_is_sum_of_batch_losses(rng):
    """loss_sum = sum over batches of mean batch loss times batch size, before each update."""
    dtype = np.float64
    sizes, ws = make_workspace([5, 13, 3], 4, dtype, rng)
    X = randn(rng, (10, 5), dtype)
    y = rng.integers(0, 3, 10).astype(np.intp)
    order = np.arange(10, dtype=np.intp)
    expect_loss, expect_correct = 0.0, 0
    ws_step = copy_ws(ws)
    for s0 in range(0, 10, 4):  # batches of 4, 4, 2, one call each
        W, b = unflatten(ws_step["params"], [5, 13, 3])
        idx = order[s0:s0 + 4]
        h = np.tanh(X[idx] @ W[0] + b[0])
        logits = h @ W[1] + b[1]
        loss, _ = R.softmax_cross_entropy(logits, y[idx])
        expect_loss += loss * len(idx)
        expect_correct += int(np.sum(logits.argmax(1) == y[idx]))
        run_train(K.train_batches, X, y, order, s0, min(s0 + 4, 10), 4, sizes, "tanh",
                  ws_step, learning_rate=0.3)
    rows, loss_sum, correct, diverged = run_train(
        K.train_batches, X, y, order, 0, 10, 4, sizes, "tanh", ws, learning_rate=0.3)
    assert (rows, correct, diverged) == (10, expect_correct, False)
    np.testing.assert_allclose(loss_sum, expect_loss, rtol=1e-12)
    np.testing.assert_allclose(ws["params"], ws_step["params"], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", DTYPES)
def test_train_batches_empty_range(rng, dtype):
    sizes, ws = make_workspace([13, 7, 3], 8, dtype, rng)
    X = randn(rng, (20, 13), dtype)
    y = rng.integers(0, 3, 20).astype(np.intp)
    ws0 = copy_ws(ws)
    got = run_train(K.train_batches, X, y, np.arange(20), 5, 5, 8, sizes, "relu", ws,
                    learning_rate=0.1)
    assert got == (0, 0.0, 0, False)
    for name in ws:
        np.testing.assert_array_equal(ws[name], ws0[name])


@pytest.mark.parametrize("dtype", DTYPES)
def test_train_batches_diverged(rng, dtype):
    """A batch with a non-finite loss stops the run before its update."""
    sizes, ws = make_workspace([13, 7, 3], 8, dtype, rng)
    X = randn(rng, (40, 13), dtype)
    X[20] = np.finfo(dtype).max  # third batch (rows 16..23) overflows to inf/NaN logits
    y = rng.integers(0, 3, 40).astype(np.intp)
    order = np.arange(40, dtype=np.intp)
    ws_ref = copy_ws(ws)
    with np.errstate(all="ignore"):
        got = run_train(K.train_batches, X, y, order, 0, 40, 8, sizes, "identity", ws,
                        learning_rate=0.1, momentum=0.9)
        want = run_train(R.train_batches, X, y, order, 0, 40, 8, sizes, "identity", ws_ref,
                         learning_rate=0.1, momentum=0.9)
    assert got[0] == want[0] == 16
    assert got[3] is True and want[3] is True
    assert got[2] == want[2]
    np.testing.assert_allclose(got[1], want[1], rtol=TRAIN_TOL[dtype]["rtol"])
    assert np.all(np.isfinite(ws["params"]))  # the bad batch did not update
    np.testing.assert_allclose(ws["params"], ws_ref["params"], **TRAIN_TOL[dtype])
    np.testing.assert_allclose(ws["slots"], ws_ref["slots"], **TRAIN_TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("l1,l2", [(0.0, 0.5), (0.1, 0.0), (0.1, 0.5)])
def test_train_batches_biases_unpenalised(rng, dtype, l1, l2):
    """1-layer net, one batch: W gets the penalty, b gets the plain gradient step."""
    lr, mu = 0.1, 0.5
    sizes, ws = make_workspace([6, 4], 9, dtype, rng)
    (W,), (b,) = unflatten(ws["params"], [6, 4])
    b[...] = [3.0, -2.0, 1.5, -4.0]  # large biases: an l2*b or l1*sign(b) term would show
    X = randn(rng, (9, 6), dtype)
    y = rng.integers(0, 4, 9).astype(np.intp)
    W0, b0 = W.astype(np.float64), b.astype(np.float64)
    (vW0,), (vb0,) = unflatten(ws["slots"][0].astype(np.float64), [6, 4])
    # gradient of the mean loss, in float64
    z = X.astype(np.float64) @ W0 + b0
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    dz = (p - np.eye(4)[y]) / 9
    gW, gb = X.astype(np.float64).T @ dz, dz.sum(0)
    run_train(K.train_batches, X, y, np.arange(9), 0, 9, 9, sizes, "relu", ws,
              learning_rate=lr, momentum=mu, l1=l1, l2=l2)
    (W1,), (b1,) = unflatten(ws["params"], [6, 4])
    (vW1,), (vb1,) = unflatten(ws["slots"][0], [6, 4])
    expect_vW = mu * vW0 - lr * (gW + l2 * W0 + l1 * np.sign(W0))
    expect_vb = mu * vb0 - lr * gb
    np.testing.assert_allclose(vW1, expect_vW, **TOL[dtype])
    np.testing.assert_allclose(W1, W0 + expect_vW, **TOL[dtype])
    np.testing.assert_allclose(vb1, expect_vb, **TOL[dtype])
    np.testing.assert_allclose(b1, b0 + expect_vb, **TOL[dtype])
    penalised = b0 + mu * vb0 - lr * (gb + l2 * b0 + l1 * np.sign(b0))
    assert np.min(np.abs(b1 - penalised)) > 1e-3  # clearly not the penalised update


def test_reference_train_batches_biases_unpenalised(rng):
    """The twin applies the same rule (so the comparison above is not vacuous)."""
    sizes, ws = make_workspace([6, 4], 9, np.float64, rng)
    ws_pen = copy_ws(ws)
    X = randn(rng, (9, 6), np.float64)
    y = rng.integers(0, 4, 9).astype(np.intp)
    run_train(R.train_batches, X, y, np.arange(9), 0, 9, 9, sizes, "relu", ws,
              learning_rate=0.1, l2=0.5)
    run_train(R.train_batches, X, y, np.arange(9), 0, 9, 9, sizes, "relu", ws_pen,
              learning_rate=0.1, l2=0.0)
    nw = n_weights([6, 4])
    np.testing.assert_array_equal(ws["params"][nw:], ws_pen["params"][nw:])
    assert not np.allclose(ws["params"][:nw], ws_pen["params"][:nw])


# ---------------------------------------------------------------------------
# fastnn's own training kernels: tails, threads, instruction sets
# ---------------------------------------------------------------------------

# 125: a last panel of nearly full width (every vector of the tile, the last
# one masked) on every instruction set and dtype
TAIL_NETS = [[17, 31, 10], [100, 129, 1, 3], [31, 10, 17, 100, 3], [61, 125, 7]]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", KERNEL_BATCHES)
@pytest.mark.parametrize("sizes", TAIL_NETS, ids=lambda s: "-".join(map(str, s)))
def test_train_kernels_tails_match_reference(rng, kernel_isa, sizes, batch, dtype):
    """Fused forward, dZ_prev and dW+update kernels on widths that are not
    multiples of any vector width, against the NumPy twin (BLAS products and
    a separate SGD pass)."""
    sizes, ws = make_workspace(sizes, batch, dtype, rng)
    n_rows = 3 * batch + 1  # a short last batch too
    X = randn(rng, (n_rows, sizes[0]), dtype)
    y = rng.integers(0, sizes[-1], n_rows).astype(np.intp)
    order = rng.permutation(n_rows).astype(np.intp)
    ws_ref = copy_ws(ws)
    hyper = dict(learning_rate=0.05, momentum=0.9, l1=1e-4, l2=1e-3)
    got = run_train(K.train_batches, X, y, order, 0, n_rows, batch, sizes, "tanh", ws,
                    n_threads=2, **hyper)
    want = run_train(R.train_batches, X, y, order, 0, n_rows, batch, sizes, "tanh", ws_ref,
                     **hyper)
    assert got[0] == want[0] == n_rows and got[2] == want[2]
    np.testing.assert_allclose(got[1], want[1], rtol=TRAIN_TOL[dtype]["rtol"])
    for name in ("params", "slots"):
        np.testing.assert_allclose(ws[name], ws_ref[name], **TRAIN_TOL[dtype], err_msg=name)


def _train_result(sizes, batch, dtype, activation, n_threads, seed=7):
    rng = np.random.default_rng(seed)
    sizes, ws = make_workspace(sizes, batch, dtype, rng)
    n_rows = 4 * batch + 3
    X = randn(rng, (n_rows, sizes[0]), dtype)
    y = rng.integers(0, sizes[-1], n_rows).astype(np.intp)
    order = rng.permutation(n_rows).astype(np.intp)
    out = run_train(K.train_batches, X, y, order, 0, n_rows, batch, sizes, activation, ws,
                    learning_rate=0.05, momentum=0.9, l1=1e-4, l2=1e-3, n_threads=n_threads)
    return out, ws["params"], ws["slots"]


# big enough that every layer's work is split across the threads, and small
# enough that only the first layer's is
THREAD_NETS = [([784, 129, 33, 10], 33), ([300, 256, 256, 10], 64), ([784, 128, 10], 10),
               ([31, 17, 3], 7)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
@pytest.mark.parametrize("net", THREAD_NETS, ids=lambda n: f"{'-'.join(map(str, n[0]))}-bs{n[1]}")
def test_train_weights_bit_identical_across_thread_counts(kernel_isa, net, activation, dtype):
    sizes, batch = net
    ref = _train_result(sizes, batch, dtype, activation, 1)
    for n_threads in (2, 3):
        got = _train_result(sizes, batch, dtype, activation, n_threads)
        assert got[0] == ref[0], n_threads  # same loss sum, bit for bit
        np.testing.assert_array_equal(got[1], ref[1], err_msg=f"params, {n_threads} threads")
        np.testing.assert_array_equal(got[2], ref[2], err_msg=f"slots, {n_threads} threads")


@pytest.mark.skipif(not {"avx512", "avx2"} <= set(ISAS), reason="needs AVX-512 and AVX2")
@pytest.mark.parametrize("dtype", DTYPES)
def test_train_weights_same_on_avx512_and_avx2(dtype):
    """Both FMA variants reduce every element in the same order: same bits."""
    before = _kernels._kernel_isa()
    try:
        results = []
        for isa in ("avx512", "avx2"):
            _kernels._kernel_isa(isa)
            results.append(_train_result([100, 129, 17, 10], 33, dtype, "tanh", 2))
    finally:
        _kernels._kernel_isa(before)
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])
    np.testing.assert_array_equal(results[0][2], results[1][2])


def test_train_batches_refuses_bad_thread_counts(rng):
    sizes, ws = make_workspace([5, 4, 3], 4, np.float64, rng)
    X = randn(rng, (8, 5), np.float64)
    y = np.zeros(8, np.intp)
    order = np.arange(8, dtype=np.intp)
    for bad, exc in ((0, ValueError), (-1, ValueError), (2000, ValueError), (1.5, TypeError),
                     ("2", TypeError)):
        with pytest.raises(exc, match="n_threads"):
            run_train(K.train_batches, X, y, order, 0, 8, 4, sizes, "relu", ws,
                      learning_rate=0.1, n_threads=bad)


# ---------------------------------------------------------------------------
# Optimizers, sample weights, dropout: standalone kernels against their twins
# ---------------------------------------------------------------------------

UPDATE_SHAPES = [(1,), (7,), (13, 3), (33, 17), (128, 129), (784, 10)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum,l1,l2", [(0.0, 0.0, 0.0), (0.9, 0.0, 1e-2), (0.5, 1e-3, 0.0)])
def test_sgd_update_nesterov_matches_reference(rng, momentum, l1, l2, dtype):
    for shape in UPDATE_SHAPES:
        W, g, v = sgd_inputs(rng, shape, dtype)
        W2, v2 = W.copy(), v.copy()
        for _ in range(3):
            assert K.sgd_update(W, g, v, 0.05, momentum, l1, l2, nesterov=True) is None
            R.sgd_update(W2, g, v2, 0.05, momentum, l1, l2, nesterov=True)
        np.testing.assert_allclose(W, W2, **TOL[dtype])
        np.testing.assert_allclose(v, v2, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_update_nesterov_semantics(rng, dtype):
    """v = mu*v - lr*g; W += mu*v - lr*g (g with the penalties), in float64."""
    lr, mu, l1, l2 = 0.1, 0.9, 0.01, 0.1
    W, g, v = sgd_inputs(rng, (13, 3), dtype)
    W64, g64, v64 = (a.astype(np.float64) for a in (W, g, v))
    step = g64 + l2 * W64 + l1 * np.sign(W64)
    v_new = mu * v64 - lr * step
    K.sgd_update(W, g, v, lr, mu, l1, l2, nesterov=True)
    np.testing.assert_allclose(v, v_new, **TOL[dtype])
    np.testing.assert_allclose(W, W64 + mu * v_new - lr * step, **TOL[dtype])
    # without momentum, Nesterov is plain SGD, bit for bit
    W1, W2 = W.copy(), W.copy()
    K.sgd_update(W1, g, np.zeros_like(W), lr, 0.0, l1, l2, nesterov=True)
    K.sgd_update(W2, g, np.zeros_like(W), lr, 0.0, l1, l2)
    np.testing.assert_array_equal(W1, W2)


def adam_inputs(rng, shape, dtype):
    W = randn(rng, shape, dtype)
    W.reshape(-1)[::5] = 0  # sign(0) = 0
    g = randn(rng, shape, dtype)
    m = randn(rng, shape, dtype, 0.1)
    v = np.abs(randn(rng, shape, dtype, 0.1))
    return W, g, m, v


ADAM_HYPER = [dict(),  # the defaults
              dict(beta1=0.5, beta2=0.9, eps=1e-3),
              dict(weight_decay=0.1, l1=1e-3, l2=1e-2),
              dict(beta1=0.0, beta2=0.0)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hyper", ADAM_HYPER, ids=lambda h: "-".join(h) or "defaults")
def test_adam_update_matches_reference(rng, hyper, dtype):
    for shape in UPDATE_SHAPES:
        W, g, m, v = adam_inputs(rng, shape, dtype)
        W2, m2, v2 = W.copy(), m.copy(), v.copy()
        g_before = g.copy()
        for t in (1, 2, 3, 1000):
            assert K.adam_update(W, g, m, v, 0.01, t, **hyper) is None
            R.adam_update(W2, g, m2, v2, 0.01, t, **hyper)
        np.testing.assert_array_equal(g, g_before)  # grad is read only
        np.testing.assert_allclose(W, W2, **TOL[dtype])
        np.testing.assert_allclose(m, m2, **TOL[dtype])
        np.testing.assert_allclose(v, v2, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("t", [1, 2, 10])
def test_adam_update_semantics(rng, t, dtype):
    """The update rule written out in float64 (AdamW: decoupled decay)."""
    lr, b1, b2, eps, wd, l1, l2 = 0.01, 0.8, 0.95, 1e-6, 0.1, 1e-3, 1e-2
    W, g, m, v = adam_inputs(rng, (13, 7), dtype)
    W64, g64, m64, v64 = (a.astype(np.float64) for a in (W, g, m, v))
    gg = g64 + l2 * W64 + l1 * np.sign(W64)
    m_new = b1 * m64 + (1 - b1) * gg
    v_new = b2 * v64 + (1 - b2) * gg * gg
    m_hat, v_hat = m_new / (1 - b1**t), v_new / (1 - b2**t)
    W_new = W64 * (1 - lr * wd) - lr * m_hat / (np.sqrt(v_hat) + eps)
    K.adam_update(W, g, m, v, lr, t, b1, b2, eps, wd, l1, l2)
    np.testing.assert_allclose(m, m_new, **TOL[dtype])
    np.testing.assert_allclose(v, v_new, **TOL[dtype])
    np.testing.assert_allclose(W, W_new, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_update_empty_and_zero_d(dtype):
    e = np.empty((0, 3), dtype)
    assert K.adam_update(e, e.copy(), e.copy(), e.copy(), 0.1, 1) is None
    W, g = np.array(1.0, dtype), np.array(0.5, dtype)
    m, v = np.array(0.0, dtype), np.array(0.0, dtype)
    K.adam_update(W, g, m, v, 0.1, 1, eps=0.0 + 1e-30)
    # first step from zero moments: m_hat = g, v_hat = g*g, so W -= lr * sign(g)
    np.testing.assert_allclose(W, 0.9, rtol=1e-6)


def test_hyper_defaults_are_the_interfaces():
    h = K.Hyper("adam", 1e-3)
    assert (h.momentum, h.nesterov, h.beta1, h.beta2, h.eps, h.weight_decay, h.l1, h.l2, h.t) \
        == (0.0, False, 0.9, 0.999, 1e-8, 0.0, 0.0, 0.0, 0)
    assert K.Hyper._field_defaults["beta2"] == 0.999
    assert R.Hyper is K.Hyper


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SOFTMAX_SHAPES, ids=shape_id)
def test_softmax_cross_entropy_sample_weight_matches_reference(rng, shape, dtype):
    batch, k = shape
    logits = randn(rng, shape, dtype, 3.0)
    labels = rng.integers(0, k, batch).astype(np.intp)
    w = (rng.random(batch) * 3).astype(dtype)
    w[::4] = 0  # zero weights: rows that do not count
    loss, grad, hits = K.softmax_cross_entropy(logits, labels, sample_weight=w,
                                               return_correct=True)
    rloss, rgrad, rhits = R.softmax_cross_entropy(logits, labels, sample_weight=w,
                                                  return_correct=True)
    np.testing.assert_allclose(loss, rloss, rtol=LOSS_RTOL[dtype], atol=1e-300)
    np.testing.assert_allclose(grad, rgrad, **TOL[dtype])
    assert hits == rhits == int(np.count_nonzero(logits.argmax(1) == labels))  # unweighted
    # float64 oracle: sum_i w_i CE_i / batch and w_i (p_i - onehot_i) / batch
    z = logits.astype(np.float64)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    ce = -np.log(p[np.arange(batch), labels])
    np.testing.assert_allclose(loss, np.sum(w * ce) / batch, rtol=LOSS_RTOL[dtype] * 10,
                               atol=1e-300)
    np.testing.assert_allclose(grad, w[:, None] * (p - np.eye(k)[labels]) / batch, **TOL[dtype])
    assert np.all(grad[::4] == 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_cross_entropy_unit_weights_are_no_weights(rng, dtype):
    logits = randn(rng, (128, 10), dtype, 3.0)
    labels = rng.integers(0, 10, 128).astype(np.intp)
    loss, grad = K.softmax_cross_entropy(logits, labels)
    wloss, wgrad = K.softmax_cross_entropy(logits, labels, sample_weight=np.ones(128, dtype))
    assert wloss == loss
    np.testing.assert_array_equal(wgrad, grad)


M64 = (1 << 64) - 1


def scalar_mask(rows, width, rate, seed, epoch, step, layer):
    """The interface's definition, element by element in Python ints: an
    oracle independent of both vectorised implementations."""
    def mix(z):
        z = (z + 0x9E3779B97F4A7C15) & M64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        return z ^ (z >> 31)
    key = mix(mix(mix(mix(seed) ^ epoch) ^ step) ^ layer)
    thr = round(rate * 65536)
    out = np.empty((rows, width), bool)
    for i in range(rows):
        for j in range(width):
            e = i * width + j
            u = (mix((key + (e >> 2)) & M64) >> (16 * (e & 3))) & 0xFFFF
            out[i, j] = u >= thr
    return out


MASK_CASES = [  # rows, width, rate, seed, epoch, step, layer
    (1, 1, 0.5, 0, 0, 0, 0),
    (7, 13, 0.2, 1, 2, 3, 1),
    (1, 784, 0.5, 2**64 - 1, 0, 0, 0),
    (128, 129, 0.5, 2**64 - 2, 2**64 - 1, 2**64 - 1, 2**64 - 1),
    (128, 784, 0.2, 12345, 7, 468, 0),
    (33, 10, 0.9, 2**63, 1, 5, 2),
    (5, 3, 1 / 131072, 3, 0, 0, 1),  # rate * 65536 = 0.5: round half to even, thr 0
    (5, 3, 3 / 131072, 3, 0, 0, 1),  # 1.5: thr 2
    (9, 17, 0.0, 4, 4, 4, 4),
    (9, 17, 1 - 1e-9, 4, 4, 4, 4),  # thr 65536: every element dropped
]


@pytest.mark.parametrize("case", MASK_CASES, ids=lambda c: f"{c[0]}x{c[1]}-r{c[2]:.3g}-s{c[3]}")
def test_dropout_mask_matches_reference_bit_for_bit(kernel_isa, case):
    got = K.dropout_mask(*case)
    want = R.dropout_mask(*case)
    assert got.dtype == np.bool_ and got.shape == case[:2]
    np.testing.assert_array_equal(got, want)
    if case[0] * case[1] <= 2000:
        np.testing.assert_array_equal(got, scalar_mask(*case))
    if case[2] == 0:
        assert got.all()
    if case[2] > 1 - 1e-6:
        assert not got.any()


def test_dropout_mask_statistics():
    """Keep fraction 1 - rate; masks of different layers, steps, epochs, seeds differ."""
    for rate in (0.1, 0.5, 0.8):
        mask = K.dropout_mask(500, 784, rate, 0, 0, 0, 0)
        assert abs(mask.mean() - (1 - rate)) < 0.005
    base = K.dropout_mask(64, 100, 0.5, 1, 2, 3, 4)
    for args in ((2, 2, 3, 4), (1, 3, 3, 4), (1, 2, 4, 4), (1, 2, 3, 5)):
        other = K.dropout_mask(64, 100, 0.5, *args)
        assert 0.4 < np.mean(other != base) < 0.6


# ---------------------------------------------------------------------------
# train_batches: optimizers, sample weights, dropout
# ---------------------------------------------------------------------------

OPT_CASES = {
    "sgd": dict(kind="sgd", learning_rate=0.05, momentum=0.9, l1=1e-4, l2=1e-3),
    "nesterov": dict(kind="sgd", learning_rate=0.05, momentum=0.9, nesterov=True, l2=1e-3),
    "adam": dict(kind="adam", learning_rate=0.01),
    "adamw-l1-l2": dict(kind="adam", learning_rate=0.01, beta1=0.8, beta2=0.99, eps=1e-6,
                        weight_decay=0.1, l1=1e-3, l2=1e-2, t=4),
    "dropout": dict(kind="sgd", learning_rate=0.05, momentum=0.5, seed=2**64 - 1, epoch=3),
    "sample-weights": dict(kind="sgd", learning_rate=0.05, momentum=0.5),
    "adam-dropout-weights": dict(kind="adam", learning_rate=0.01, weight_decay=0.01, l2=1e-3,
                                 seed=11, epoch=2),
}
# the dropout cases use these rates (input, hidden...) and the weights cases these weights
DROP = {"dropout", "adam-dropout-weights"}
WEIGHTED = {"sample-weights", "adam-dropout-weights"}


def opt_kwargs(name, sizes, n_rows, dtype, rng):
    kw = dict(OPT_CASES[name])
    if name in DROP:
        kw["dropout"] = np.array([0.2] + [0.5, 0.3, 0.1][:len(sizes) - 2])
    if name in WEIGHTED:
        w = (rng.random(n_rows) * 2).astype(dtype)
        w[::7] = 0
        kw["sample_weight"] = w
    return kw


def opt_setup(rng, sizes, batch, dtype, n_rows):
    sizes, ws = make_workspace(sizes, batch, dtype, rng)
    X = randn(rng, (n_rows, sizes[0]), dtype)
    y = rng.integers(0, sizes[-1], n_rows).astype(np.intp)
    order = rng.permutation(n_rows).astype(np.intp)
    return sizes, ws, X, y, order


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("name", list(OPT_CASES))
def test_train_batches_optimizers_match_reference(rng, kernel_isa, name, activation, dtype):
    """Each optimizer, dropout and sample weights against the twin, batches 1, 7
    and 128 (with a short last batch), odd widths."""
    for sizes, batch in (([17, 31, 10], 7), ([31, 10, 17, 3], 1), ([100, 129, 13, 10], 128)):
        n_rows = 2 * batch + 3
        sizes, ws, X, y, order = opt_setup(rng, sizes, batch, dtype, n_rows)
        kw = opt_kwargs(name, sizes, n_rows, dtype, rng)
        ws0, ws_ref = copy_ws(ws), copy_ws(ws)
        got = run_train(K.train_batches, X, y, order, 0, n_rows, batch, sizes, activation, ws,
                        n_threads=2, **kw)
        want = run_train(R.train_batches, X, y, order, 0, n_rows, batch, sizes, activation,
                         ws_ref, **kw)
        assert got[0] == want[0] == n_rows and got[3] is want[3] is False
        assert got[2] == want[2]
        np.testing.assert_allclose(got[1], want[1], rtol=TRAIN_TOL[dtype]["rtol"])
        assert not np.array_equal(ws["params"], ws0["params"])
        for key in ("params", "slots"):
            np.testing.assert_allclose(ws[key], ws_ref[key], **TRAIN_TOL[dtype],
                                       err_msg=f"{key} {sizes} batch {batch}")
        if kw["kind"] == "sgd":  # one slot used: the second is untouched
            np.testing.assert_array_equal(ws["slots"][1], ws0["slots"][1])


@pytest.mark.parametrize("dtype", DTYPES)
def test_train_batches_adam_one_step_semantics(rng, dtype):
    """1-layer net, one batch, step t = 3: weights get L1, L2 and the decoupled
    decay, biases the plain Adam step; the rule written out in float64."""
    lr, b1, b2, eps, wd, l1, l2, t = 0.01, 0.8, 0.9, 1e-6, 0.5, 0.01, 0.1, 2
    sizes, ws = make_workspace([6, 4], 9, dtype, rng)
    (W,), (b,) = unflatten(ws["params"], [6, 4])
    b[...] = [3.0, -2.0, 1.5, -4.0]
    X = randn(rng, (9, 6), dtype)
    y = rng.integers(0, 4, 9).astype(np.intp)
    W0, b0 = W.astype(np.float64), b.astype(np.float64)
    (mW, mb), (vW, vb) = (unflatten(s.astype(np.float64), [6, 4]) for s in ws["slots"])
    z = X.astype(np.float64) @ W0 + b0
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    dz = (p - np.eye(4)[y]) / 9
    gW, gb = X.astype(np.float64).T @ dz + l2 * W0 + l1 * np.sign(W0), dz.sum(0)
    run_train(K.train_batches, X, y, np.arange(9), 0, 9, 9, sizes, "relu", ws, kind="adam",
              learning_rate=lr, beta1=b1, beta2=b2, eps=eps, weight_decay=wd, l1=l1, l2=l2, t=t)
    step = t + 1
    a_t, s_t = lr / (1 - b1**step), 1 / np.sqrt(1 - b2**step)
    for w0, g, m0, v0, penalised, got in ((W0, gW, mW[0], vW[0], True, W),
                                          (b0, gb, mb[0], vb[0], False, b)):
        m1 = b1 * m0 + (1 - b1) * g
        v1 = b2 * v0 + (1 - b2) * g * g
        want = (w0 * (1 - lr * wd) if penalised else w0) - a_t * m1 / (np.sqrt(v1) * s_t + eps)
        np.testing.assert_allclose(got, want, **TOL[dtype])
    (mW1, mb1), (vW1, vb1) = (unflatten(s, [6, 4]) for s in ws["slots"])
    np.testing.assert_allclose(mb1[0], b1 * mb[0] + (1 - b1) * gb, **TOL[dtype])
    np.testing.assert_allclose(vb1[0], b2 * vb[0] + (1 - b2) * gb * gb, **TOL[dtype])


def _opt_run(name, sizes, batch, dtype, activation, n_threads, calls=None, seed=5):
    """train_batches over one epoch in one call, or in ``calls`` (a list of
    (start, stop) of whole batches, Adam's t advanced by the batches done)."""
    rng = np.random.default_rng(seed)
    n_rows = 4 * batch + 3
    sizes, ws, X, y, order = opt_setup(rng, sizes, batch, dtype, n_rows)
    kw = opt_kwargs(name, sizes, n_rows, dtype, rng)
    out = []
    for start, stop in calls or [(0, n_rows)]:
        call_kw = dict(kw, t=kw.get("t", 0) + start // batch) if kw["kind"] == "adam" else kw
        out.append(run_train(K.train_batches, X, y, order, start, stop, batch, sizes, activation,
                             ws, n_threads=n_threads, **call_kw))
    return out, ws["params"], ws["slots"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("net", THREAD_NETS, ids=lambda n: f"{'-'.join(map(str, n[0]))}-bs{n[1]}")
def test_train_adam_dropout_weights_bit_identical_across_thread_counts(kernel_isa, net, dtype):
    sizes, batch = net
    ref = _opt_run("adam-dropout-weights", sizes, batch, dtype, "tanh", 1)
    for n_threads in (2, 3):
        got = _opt_run("adam-dropout-weights", sizes, batch, dtype, "tanh", n_threads)
        assert got[0] == ref[0], n_threads
        np.testing.assert_array_equal(got[1], ref[1], err_msg=f"params, {n_threads} threads")
        np.testing.assert_array_equal(got[2], ref[2], err_msg=f"slots, {n_threads} threads")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["adam", "adam-dropout-weights", "dropout", "nesterov"])
def test_train_chunking_does_not_change_the_weights(name, dtype):
    """An epoch in one call, or in calls of whole batches (Adam's t carried over):
    the same masks, the same steps, the same bits."""
    sizes, batch = [31, 17, 13, 3], 7
    n_rows = 4 * batch + 3
    one = _opt_run(name, sizes, batch, dtype, "relu", 2)
    cuts = [(0, batch), (batch, 3 * batch), (3 * batch, n_rows)]
    many = _opt_run(name, sizes, batch, dtype, "relu", 2, calls=cuts)
    assert sum(r[0] for r in many[0]) == one[0][0][0] == n_rows
    assert sum(r[2] for r in many[0]) == one[0][0][2]
    np.testing.assert_array_equal(many[1], one[1])
    np.testing.assert_array_equal(many[2], one[2])


@pytest.mark.parametrize("dtype", DTYPES)
def test_train_adam_t_continuity(rng, dtype):
    """Two calls (the second with t = the first's batches) equal one call; a
    second call that restarts at t = 0 does not."""
    sizes, batch = [13, 7, 3], 5
    n_rows = 6 * batch
    sizes, ws, X, y, order = opt_setup(rng, sizes, batch, dtype, n_rows)
    ws_two, ws_restart = copy_ws(ws), copy_ws(ws)
    hyper = dict(kind="adam", learning_rate=0.01, weight_decay=0.01, t=3)
    run_train(K.train_batches, X, y, order, 0, n_rows, batch, sizes, "tanh", ws, **hyper)
    run_train(K.train_batches, X, y, order, 0, 2 * batch, batch, sizes, "tanh", ws_two, **hyper)
    run_train(K.train_batches, X, y, order, 2 * batch, n_rows, batch, sizes, "tanh", ws_two,
              **dict(hyper, t=5))
    np.testing.assert_array_equal(ws_two["params"], ws["params"])
    np.testing.assert_array_equal(ws_two["slots"], ws["slots"])
    run_train(K.train_batches, X, y, order, 0, 2 * batch, batch, sizes, "tanh", ws_restart,
              **hyper)
    run_train(K.train_batches, X, y, order, 2 * batch, n_rows, batch, sizes, "tanh",
              ws_restart, **hyper)
    assert not np.array_equal(ws_restart["params"], ws["params"])


@pytest.mark.parametrize("dtype", DTYPES)
def test_train_zero_rates_and_unit_weights_change_nothing(rng, dtype):
    """dropout of rate 0 everywhere and sample weights of 1: today's arithmetic, bit for bit."""
    sizes, batch = [31, 17, 3], 7
    sizes, ws, X, y, order = opt_setup(rng, sizes, batch, dtype, 40)
    ws_plain = copy_ws(ws)
    hyper = dict(learning_rate=0.1, momentum=0.9, l2=1e-3)
    a = run_train(K.train_batches, X, y, order, 0, 40, batch, sizes, "relu", ws,
                  dropout=np.zeros(2), sample_weight=np.ones(40, dtype), **hyper)
    b = run_train(K.train_batches, X, y, order, 0, 40, batch, sizes, "relu", ws_plain, **hyper)
    assert a == b
    np.testing.assert_array_equal(ws["params"], ws_plain["params"])
    np.testing.assert_array_equal(ws["slots"], ws_plain["slots"])


@pytest.mark.parametrize("dtype", DTYPES)
def test_train_input_dropout_is_training_on_the_masked_copy(rng, kernel_isa, dtype):
    """Input dropout only, one batch in row order: the same bits as training
    without dropout on X * mask * scale (X itself is not written)."""
    sizes, batch, rate = [33, 17, 3], 16, 0.3
    sizes, ws, X, y, order = opt_setup(rng, sizes, batch, dtype, batch)
    order = np.arange(batch, dtype=np.intp)
    X_before, ws_plain = X.copy(), copy_ws(ws)
    run_train(K.train_batches, X, y, order, 0, batch, batch, sizes, "tanh", ws,
              dropout=np.array([rate, 0.0]), seed=9, epoch=4, learning_rate=0.1)
    np.testing.assert_array_equal(X, X_before)
    keep = K.dropout_mask(batch, 33, rate, 9, 4, 0, 0)
    X_masked = np.where(keep, X * dtype(1 / (1 - rate)), 0).astype(dtype)
    run_train(K.train_batches, X_masked, y, order, 0, batch, batch, sizes, "tanh", ws_plain,
              learning_rate=0.1)
    np.testing.assert_array_equal(ws["params"], ws_plain["params"])


@pytest.mark.parametrize("dtype", DTYPES)
def test_train_dropout_masks_follow_the_batch_position(rng, dtype):
    """The masks are keyed by (seed, epoch, step = position // batch_size): another
    seed or epoch trains differently, the same ones identically."""
    sizes, batch = [13, 11, 3], 4
    sizes, ws, X, y, order = opt_setup(rng, sizes, batch, dtype, 20)
    results = {}
    for seed, epoch in ((1, 0), (1, 0), (2, 0), (1, 1)):
        w = copy_ws(ws)
        run_train(K.train_batches, X, y, order, 0, 20, batch, sizes, "relu", w,
                  dropout=np.array([0.0, 0.5]), seed=seed, epoch=epoch, learning_rate=0.1)
        results.setdefault((seed, epoch), []).append(w["params"])
    np.testing.assert_array_equal(*results[(1, 0)])
    assert not np.array_equal(results[(1, 0)][0], results[(2, 0)][0])
    assert not np.array_equal(results[(1, 0)][0], results[(1, 1)][0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_train_sample_weights_scale_the_loss(rng, dtype):
    """loss_sum = sum over batches of sum_i w_i CE_i (before each update);
    weights of 2 everywhere: twice the loss, the step of twice the learning rate
    for plain SGD (up to rounding)."""
    sizes, batch = [13, 7, 3], 5
    sizes, ws, X, y, order = opt_setup(rng, sizes, batch, dtype, 5)
    ws2, ws_lr = copy_ws(ws), copy_ws(ws)
    a = run_train(K.train_batches, X, y, order, 0, 5, batch, sizes, "tanh", ws,
                  learning_rate=0.1)
    b = run_train(K.train_batches, X, y, order, 0, 5, batch, sizes, "tanh", ws2,
                  sample_weight=np.full(5, 2, dtype), learning_rate=0.1)
    run_train(K.train_batches, X, y, order, 0, 5, batch, sizes, "tanh", ws_lr,
              learning_rate=0.2)
    np.testing.assert_allclose(b[1], 2 * a[1], rtol=1e-6)
    assert b[2] == a[2]  # an unweighted count
    np.testing.assert_allclose(ws2["params"], ws_lr["params"], **TOL[dtype])


@pytest.mark.skipif(not {"avx512", "avx2"} <= set(ISAS), reason="needs AVX-512 and AVX2")
@pytest.mark.parametrize("dtype", DTYPES)
def test_train_adam_dropout_same_on_avx512_and_avx2(dtype):
    before = _kernels._kernel_isa()
    try:
        results = []
        for isa in ("avx512", "avx2"):
            _kernels._kernel_isa(isa)
            results.append(_opt_run("adam-dropout-weights", [100, 129, 17, 10], 33, dtype,
                                    "sigmoid", 2))
    finally:
        _kernels._kernel_isa(before)
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])
    np.testing.assert_array_equal(results[0][2], results[1][2])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu"])
def test_train_hidden_dropout_one_step_semantics(rng, kernel_isa, activation, dtype):
    """[d, h, k], one batch, plain SGD, hidden dropout: the step written out in
    float64, with the derivative at the undropped activation (tanh and sigmoid
    would differ clearly at the dropped-and-scaled one)."""
    d, h, k, batch, rate, lr = 9, 13, 4, 6, 0.4, 0.5
    sizes, ws = make_workspace([d, h, k], batch, dtype, rng)
    ws["slots"][:] = 0
    X = randn(rng, (batch, d), dtype)
    y = rng.integers(0, k, batch).astype(np.intp)
    (W0, W1), (b0, b1) = (list(map(lambda a: a.astype(np.float64), part))
                          for part in unflatten(ws["params"], [d, h, k]))
    keep = K.dropout_mask(batch, h, rate, 3, 1, 0, 1)
    scale = float(dtype(1 / (1 - rate)))
    act = {"tanh": np.tanh, "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
           "relu": lambda z: np.maximum(z, 0)}[activation]
    deriv = {"tanh": lambda a: 1 - a * a, "sigmoid": lambda a: a * (1 - a),
             "relu": lambda a: (a > 0).astype(np.float64)}[activation]
    x = X.astype(np.float64)
    a1 = act(x @ W0 + b0)
    a1d = np.where(keep, a1 * scale, 0)
    z = a1d @ W1 + b1
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    dz = (p - np.eye(k)[y]) / batch
    da1 = (dz @ W1.T) * deriv(a1) * np.where(keep, scale, 0)
    want = np.concatenate([(W0 - lr * (x.T @ da1)).ravel(), (W1 - lr * (a1d.T @ dz)).ravel(),
                           b0 - lr * da1.sum(0), b1 - lr * dz.sum(0)])
    run_train(K.train_batches, X, y, np.arange(batch), 0, batch, batch, sizes, activation, ws,
              dropout=np.array([0.0, rate]), seed=3, epoch=1, learning_rate=lr)
    np.testing.assert_allclose(ws["params"], want, **TOL[dtype])


# nets whose widths are not multiples of any vector length (the packed panels'
# edges), batches either side of the transposed-copy crossover (FNN_BT_MIN_ROWS 8)
# and of a 6-row tile, on 1 and 2 threads; a layer whose rows are over 2 KiB
# apart (530 columns: B's panels are packed, the full ones by their first
# tile as it computes, the last 18 columns by a copy of their own); a batch
# of 17 on a 200 x 300 layer (dZ_prev as W dZ^T, fnn_ct_form)
PACK_NETS = [([37, 70, 45, 11], 9), ([37, 70, 45, 11], 7), ([50, 33, 16, 5], 31),
             ([20, 130, 10], 64), ([784, 129, 33, 10], 13), ([20, 300, 70, 10], 64),
             ([20, 70, 300, 10], 64), ([20, 530, 10], 13), ([20, 200, 300, 10], 17)]
#: the caches the blocking assumes: the machine's, and tiny ones (2 KiB L1d,
#: 64 KiB L2), under which dw_update packs batches of 64 rows (their dZ
#: panels exceed the L1d on every instruction set) and splits W's 300 columns
#: into chunks of 64 or 128 (the chunk's packed dZ, half the L2; the 70 x 300
#: layer's backward in panels of rows then repacks them panel by panel, and
#: A's packed columns are kept for every chunk, or, without _pack_panels' bit
#: 8, packed again for each)
CACHES = [None, (2 * 1024, 64 * 1024)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["sgd", "adam"])
@pytest.mark.parametrize("net", PACK_NETS, ids=lambda n: f"{'-'.join(map(str, n[0]))}-bs{n[1]}")
@pytest.mark.parametrize("caches", CACHES, ids=["machine", "tiny"])
def test_packed_panels_give_the_same_bits(kernel_isa, net, kind, dtype, caches):
    """Packing B panels, W^T panels transposed in registers and dW's operands
    (in chunks of columns, whatever the caches), and the backward's one pass
    over W in panels of rows (sized from the L2, or one panel of the products
    each, with dZ's packing reused or, over several chunks, redone) change
    where operands live, not the arithmetic: the same bits as reading them in
    place (with a transposed copy of W)."""
    sizes, batch = net
    results = []
    machine = _kernels._cache_sizes()
    fuse = _kernels._fuse_rows()
    for packed, rows in ((False, 0), (True, 0), (True, -1), (True, 1), (7, -1), (15, -1), (31, -1)):
        before = _kernels._pack_panels()
        _kernels._pack_panels(packed)
        _kernels._fuse_rows(rows)
        if caches is not None:
            _kernels._cache_sizes(*caches)
        try:
            for n_threads in (1, 2):
                n_rows = 3 * batch + 2
                sz, ws, X, y, order = training_problem(sizes, batch, dtype, 11, n_rows)
                hyper = dict(learning_rate=0.02, l1=1e-4, l2=1e-3)
                if kind == "sgd":
                    hyper["momentum"] = 0.9
                out = run_train(K.train_batches, X, y, order, 0, n_rows, batch, sz, "tanh", ws,
                                kind=kind, n_threads=n_threads, **hyper)
                results.append((out, ws["params"].copy(), ws["slots"].copy()))
        finally:
            _kernels._pack_panels(before)
            _kernels._fuse_rows(fuse)
            _kernels._cache_sizes(*machine)
    for out, params, slots in results[1:]:
        assert out[0] == results[0][0][0]
        np.testing.assert_array_equal(params, results[0][1])
        np.testing.assert_array_equal(slots, results[0][2])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "identity"])
@pytest.mark.parametrize("net", [([20, 200, 300, 10], 17), ([9, 45, 133, 7], 16)],
                         ids=["200x300-bs17", "45x133-bs16"])
def test_ct_form_gives_the_same_bits_for_every_activation(kernel_isa, net, activation, dtype):
    """dZ_prev as C^T = W dZ^T, transposed back with act' (the kernels'
    transpose and ct_dact: vector blocks, partial edges), against dZ W^T
    with W^T's panels: the same bits, on one thread and two."""
    sizes, batch = net
    results = []
    before = _kernels._pack_panels()
    try:
        for mode in (31, 63):
            _kernels._pack_panels(mode)
            for n_threads in (1, 2):
                n_rows = 3 * batch + 2
                sz, ws, X, y, order = training_problem(sizes, batch, dtype, 5, n_rows)
                out = run_train(K.train_batches, X, y, order, 0, n_rows, batch, sz, activation,
                                ws, kind="sgd", n_threads=n_threads, learning_rate=0.02,
                                momentum=0.9)
                results.append((out, ws["params"].copy(), ws["slots"].copy()))
    finally:
        _kernels._pack_panels(before)
    for out, params, slots in results[1:]:
        assert out[0] == results[0][0][0]
        np.testing.assert_array_equal(params, results[0][1])
        np.testing.assert_array_equal(slots, results[0][2])


def test_fuse_rows_is_checked():
    rows = _kernels._fuse_rows()
    assert rows == -1
    with pytest.raises(ValueError, match="n must be"):
        _kernels._fuse_rows(-2)
    with pytest.raises(TypeError, match="n"):
        _kernels._fuse_rows(1.5)
    assert _kernels._fuse_rows() == rows


def test_cache_sizes_are_checked():
    l1, l2 = _kernels._cache_sizes()
    assert 1024 <= l1 <= 1 << 30 and 1024 <= l2 <= 1 << 30
    with pytest.raises(ValueError, match="l1"):
        _kernels._cache_sizes(l1=512)
    with pytest.raises(TypeError, match="l2"):
        _kernels._cache_sizes(l2=1.5e6)
    assert _kernels._cache_sizes() == (l1, l2)


def _fake_sysfs(folder, entries):
    """A folder laid out as sysfs's cpu0/cache: entries of (level, type, size)."""
    for i, (level, kind, size) in enumerate(entries):
        d = folder / f"index{i}"
        d.mkdir(parents=True)
        (d / "level").write_text(f"{level}\n")
        (d / "type").write_text(f"{kind}\n")
        (d / "size").write_text(f"{size}\n")
    return folder


def _sysconf_or(name, default, low, high):
    """What fnn_caches takes from sysconf: the value where glibc gives a
    plausible one, else the default (glibc's getconf asks the same sysconf;
    Python's os.sysconf does not know these names)."""
    if not sys.platform.startswith("linux"):
        return default, "default"
    if shutil.which("getconf") is None:
        pytest.skip("no getconf to ask what sysconf says")
    r = subprocess.run(["getconf", name], capture_output=True, text=True, timeout=60)
    try:
        v = int(r.stdout.strip())
    except ValueError:
        return default, "default"
    return (v, "sysconf") if low <= v <= high else (default, "default")


@pytest.fixture
def machine_caches():
    """The sizes in use, restored after the test (a detection changes them)."""
    before = _kernels._cache_sizes()
    yield before
    _kernels._cache_sizes(*before)


def test_cache_detection_reads_sysfs_levels_and_units(tmp_path, machine_caches):
    """The first data (or unified) cache of levels 1 and 2 in index order, in
    K, M or bytes; instruction caches and level 3 are not the L1d or L2."""
    folder = _fake_sysfs(tmp_path / "a", [(1, "Instruction", "64K"), (1, "Data", "48K"),
                                          (2, "Unified", "2M"), (3, "Unified", "300M")])
    assert _kernels._detect_caches(folder) == ((48 << 10, 2 << 20), ("sysfs", "sysfs"))
    assert _kernels._cache_sizes() == (48 << 10, 2 << 20)
    folder = _fake_sysfs(tmp_path / "b", [(2, "Unified", str(1280 << 10)), (1, "Data", "32768"),
                                          (1, "Data", "64K")])
    assert _kernels._detect_caches(folder) == ((32 << 10, 1280 << 10), ("sysfs", "sysfs"))


def test_cache_detection_falls_back_to_sysconf_then_the_defaults(tmp_path, machine_caches):
    """sysfs silent (an empty folder: some containers hide the real one) or
    implausible (an L1d of 4 KiB, an L2 of 1 TiB): glibc's sysconf where it
    answers plausibly, else 32 KiB and 1 MiB; each level on its own."""
    l1 = _sysconf_or("LEVEL1_DCACHE_SIZE", 32 << 10, 8 << 10, 1 << 20)
    l2 = _sysconf_or("LEVEL2_CACHE_SIZE", 1 << 20, 128 << 10, 64 << 20)
    want = ((l1[0], l2[0]), (l1[1], l2[1]))
    (tmp_path / "empty").mkdir()
    assert _kernels._detect_caches(tmp_path / "empty") == want
    assert _kernels._detect_caches(tmp_path / "missing") == want
    folder = _fake_sysfs(tmp_path / "odd", [(1, "Data", "4K"), (2, "Unified", "1073741824K")])
    assert _kernels._detect_caches(folder) == want
    folder = _fake_sysfs(tmp_path / "half", [(2, "Unified", "3M")])
    assert _kernels._detect_caches(folder) == ((l1[0], 3 << 20), (l1[1], "sysfs"))
    with pytest.raises(ValueError, match="sysfs_dir"):
        _kernels._detect_caches("x" * 2000)


def test_cache_detection_again_gives_what_a_fresh_process_assumes(machine_caches):
    """Detecting again from the real folder gives the sizes a fresh process
    assumes at first use, plausible ones, each from one of the three sources."""
    (l1, l2), sources = _kernels._detect_caches()
    assert 8 << 10 <= l1 <= 1 << 20 and 128 << 10 <= l2 <= 64 << 20
    assert set(sources) <= {"sysfs", "sysconf", "default"}
    fresh = subprocess.run([sys.executable, "-c",
                            "import fastnn._kernels as k; print(*k._cache_sizes())"],
                           capture_output=True, text=True, timeout=120)
    assert fresh.returncode == 0, fresh.stderr
    assert tuple(map(int, fresh.stdout.split())) == (l1, l2)


# ---------------------------------------------------------------------------
# the other output layers: squared error, one logistic output; weighted_mean
# ---------------------------------------------------------------------------

LOSS_SHAPES = [(1, 1), (7, 1), (33, 3), (128, 10)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "weighted_mean"])
@pytest.mark.parametrize("shape", LOSS_SHAPES, ids=shape_id)
def test_squared_error_matches_reference_and_definition(rng, shape, dtype, weighted, reduction):
    z, t = randn(rng, shape, dtype, 2.0), randn(rng, shape, dtype)
    w = (rng.random(shape[0]) * 2).astype(dtype) if weighted else None
    loss, grad = K.squared_error(z, t, sample_weight=w, loss_reduction=reduction)
    rloss, rgrad = R.squared_error(z, t, sample_weight=w, loss_reduction=reduction)
    assert isinstance(loss, float) and grad.dtype == dtype and grad.shape == shape
    np.testing.assert_allclose(loss, rloss, rtol=LOSS_RTOL[dtype])
    np.testing.assert_allclose(grad, rgrad, **TOL[dtype])
    w64 = np.ones(shape[0]) if w is None else w.astype(np.float64)
    denom = w64.sum() if (reduction == "weighted_mean" and w is not None) else shape[0]
    d = z.astype(np.float64) - t
    np.testing.assert_allclose(loss, (w64 * 0.5 * (d * d).sum(1)).sum() / denom, rtol=1e-5)
    np.testing.assert_allclose(grad, w64[:, None] * d / denom, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "weighted_mean"])
@pytest.mark.parametrize("batch", [1, 7, 200])
def test_sigmoid_cross_entropy_matches_reference_and_definition(rng, batch, dtype, weighted,
                                                                 reduction):
    z = randn(rng, (batch, 1), dtype, 4.0)
    y = rng.integers(0, 2, batch).astype(np.intp)
    w = (rng.random(batch) * 2).astype(dtype) if weighted else None
    loss, grad, hits = K.sigmoid_cross_entropy(z, y, sample_weight=w, return_correct=True,
                                               loss_reduction=reduction)
    rloss, rgrad, rhits = R.sigmoid_cross_entropy(z, y, sample_weight=w, return_correct=True,
                                                  loss_reduction=reduction)
    assert hits == rhits == int(np.sum((z[:, 0] > 0) == (y == 1)))
    np.testing.assert_allclose(loss, rloss, rtol=LOSS_RTOL[dtype])
    np.testing.assert_allclose(grad, rgrad, **TOL[dtype])
    w64 = np.ones(batch) if w is None else w.astype(np.float64)
    denom = w64.sum() if (reduction == "weighted_mean" and w is not None) else batch
    z64 = z[:, 0].astype(np.float64)
    p = 1 / (1 + np.exp(-z64))
    ce = -(y * np.log(p) + (1 - y) * np.log1p(-p))
    np.testing.assert_allclose(loss, (w64 * ce).sum() / denom, rtol=1e-5)
    np.testing.assert_allclose(grad[:, 0], w64 * (p - y) / denom, **TOL[dtype])


@pytest.mark.parametrize("dtype,v", EXTREMES, ids=lambda p: str(getattr(p, "__name__", p)))
def test_sigmoid_cross_entropy_extreme_logits(dtype, v):
    z = np.array([[v], [-v], [v], [-v]], dtype)
    y = np.array([1, 0, 0, 1], np.intp)
    with np.errstate(all="raise"):
        loss, grad = K.sigmoid_cross_entropy(z, y)
    vv = float(dtype(v))
    np.testing.assert_allclose(loss, 2 * vv / 4, rtol=1e-7)  # rows: 0, 0, v, v
    np.testing.assert_allclose(grad[:, 0], [0, 0, 0.25, -0.25], atol=1e-7)


def test_weighted_mean_of_zero_weights_is_no_gradient(rng):
    z = randn(rng, (4, 3), np.float64)
    w = np.zeros(4)
    for fn, args in ((K.squared_error, (z, randn(rng, (4, 3), np.float64))),
                     (K.softmax_cross_entropy, (z, np.array([0, 1, 2, 0], np.intp))),
                     (K.sigmoid_cross_entropy, (z[:, :1].copy(), np.array([0, 1, 1, 0], np.intp)))):
        loss, grad = fn(*args, sample_weight=w, loss_reduction="weighted_mean")[:2]
        rloss, rgrad = getattr(R, fn.__name__)(*args, sample_weight=w,
                                                loss_reduction="weighted_mean")[:2]
        assert loss == rloss == 0.0
        assert not grad.any() and not rgrad.any()


def test_new_losses_refuse_bad_arguments(rng):
    z = randn(rng, (4, 1), np.float64)
    with pytest.raises(ValueError, match="labels"):
        K.sigmoid_cross_entropy(z, np.array([0, 1, 2, 0], np.intp))
    with pytest.raises(ValueError, match="logits"):
        K.sigmoid_cross_entropy(randn(rng, (4, 2), np.float64), np.zeros(4, np.intp))
    with pytest.raises(ValueError, match="targets"):
        K.squared_error(z, randn(rng, (4, 2), np.float64))
    with pytest.raises(TypeError, match="targets"):
        K.squared_error(z, z.astype(np.float32))
    with pytest.raises(ValueError, match="loss_reduction"):
        K.squared_error(z, z.copy(), loss_reduction="sum")
    with pytest.raises(ValueError, match="sample_weight"):
        K.squared_error(z, z.copy(), sample_weight=-np.ones(4))


def _loss_data(rng, loss, k, n, dtype):
    if loss == "mse":
        return randn(rng, (n, k), dtype)
    return rng.integers(0, max(k, 2), n).astype(np.intp)


LOSS_CASES = [("mse", 3), ("mse", 1), ("binary_cross_entropy", 1), ("cross_entropy", 4)]


def _losses_match_reference(rng, loss, k, weighted, reduction, dtype, n_threads, hidden=33,
                            batch_size=7, **options):
    """One call of the compiled loop and of its twin on the same data (200 rows of
    13 features, rows 3:150, tanh, SGD with momentum and penalties; weights with
    zeros among them when ``weighted``), ``options`` given to both: the same rows,
    loss, correct count, parameters and slots."""
    sizes, ws = make_workspace([13, hidden, 7, k], batch_size, dtype, rng)
    X = randn(rng, (200, 13), dtype)
    y = _loss_data(rng, loss, k, 200, dtype)
    sw = (rng.random(200) * 2).astype(dtype) if weighted else None
    if sw is not None:
        sw[::5] = 0
    order = rng.permutation(200).astype(np.intp)
    ref = copy_ws(ws)
    hyper = dict(learning_rate=0.05, momentum=0.9, l1=1e-3, l2=1e-2)
    space = types.SimpleNamespace(**{f: ws[f] for f in WS_FIELDS})
    rspace = types.SimpleNamespace(**{f: ref[f] for f in WS_FIELDS})
    got = K.train_batches(X, y, order, 3, 150, batch_size, sizes, "tanh", ws["params"],
                          ws["slots"], space, K.Hyper("sgd", **hyper), sample_weight=sw,
                          loss=loss, loss_reduction=reduction, n_threads=n_threads, **options)
    want = R.train_batches(X, y, order, 3, 150, batch_size, sizes, "tanh", ref["params"],
                           ref["slots"], rspace, K.Hyper("sgd", **hyper), sample_weight=sw,
                           loss=loss, loss_reduction=reduction, **options)
    assert got[0] == want[0] == 147 and got[3] is False and want[3] is False
    assert got[2] == want[2] and (got[2] == 0) == (loss == "mse")
    np.testing.assert_allclose(got[1], want[1], rtol=TRAIN_TOL[dtype]["rtol"])
    for name in ("params", "slots"):
        np.testing.assert_allclose(ws[name], ref[name], **TRAIN_TOL[dtype], err_msg=name)


@pytest.mark.parametrize("n_threads", [1, 3])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "weighted_mean"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("loss,k", LOSS_CASES)
def test_train_batches_losses_match_reference(rng, loss, k, weighted, reduction, dtype,
                                              n_threads):
    _losses_match_reference(rng, loss, k, weighted, reduction, dtype, n_threads)


@pytest.mark.parametrize("loss,k", LOSS_CASES)
def test_train_batches_losses_bit_identical_across_thread_counts(rng, kernel_isa, loss, k):
    dtype = np.float32
    X = randn(rng, (300, 64), dtype)
    y = _loss_data(rng, loss, k, 300, dtype)
    sw = (rng.random(300) * 2).astype(dtype)
    order = rng.permutation(300).astype(np.intp)
    results = []
    for n_threads in (1, 2, 3):
        sizes, ws = make_workspace([64, 256, 256, k], 64, dtype, np.random.default_rng(5))
        space = types.SimpleNamespace(**{f: ws[f] for f in WS_FIELDS})
        out = K.train_batches(X, y, order, 0, 300, 64, sizes, "relu", ws["params"], ws["slots"],
                              space, K.Hyper("adam", learning_rate=1e-3, l2=1e-3),
                              sample_weight=sw, loss=loss, loss_reduction="weighted_mean",
                              n_threads=n_threads)
        results.append((out[1], ws["params"].copy()))
    for loss_sum, params in results[1:]:
        assert loss_sum == results[0][0]
        np.testing.assert_array_equal(params, results[0][1])


def test_weighted_mean_scales_the_penalties_per_unit_weight(rng):
    """Weights all c: the gradient is the unweighted mean's, and the penalties act per
    unit of weight (l * bs / sum(w) = l / c, as scikit-learn's alpha / sum(w)): the same
    steps as the unweighted mean with l1 / c and l2 / c."""
    dtype = np.float64
    X = randn(rng, (40, 5), dtype)
    y = rng.integers(0, 3, 40).astype(np.intp)
    order = np.arange(40, dtype=np.intp)
    results = []
    for sw, reduction, scale in ((None, "mean", 1 / 2.5), (np.full(40, 2.5), "weighted_mean", 1)):
        sizes, ws = make_workspace([5, 9, 3], 8, dtype, np.random.default_rng(2))
        space = types.SimpleNamespace(**{f: ws[f] for f in WS_FIELDS})
        K.train_batches(X, y, order, 0, 40, 8, sizes, "relu", ws["params"], ws["slots"], space,
                        K.Hyper("sgd", learning_rate=0.1, momentum=0.5, l2=0.05 * scale,
                                l1=0.01 * scale),
                        sample_weight=sw, loss_reduction=reduction)
        results.append(ws["params"].copy())
    np.testing.assert_allclose(results[1], results[0], rtol=1e-12, atol=1e-14)


def test_train_batches_refuses_mismatched_losses(rng):
    sizes, ws = make_workspace([5, 4, 3], 4, np.float64, rng)
    space = types.SimpleNamespace(**{f: ws[f] for f in WS_FIELDS})
    X = randn(rng, (10, 5), np.float64)
    order = np.arange(10, dtype=np.intp)
    call = lambda y, **kw: K.train_batches(  # noqa: E731
        X, y, order, 0, 10, 4, sizes, "relu", ws["params"], ws["slots"], space,
        K.Hyper("sgd", learning_rate=0.1), **kw)
    with pytest.raises(ValueError, match="loss"):
        call(np.zeros(10, np.intp), loss="hinge")
    with pytest.raises(TypeError, match="y"):
        call(np.zeros(10, np.intp), loss="mse")
    with pytest.raises(ValueError, match="columns"):
        call(np.zeros((10, 2)), loss="mse")
    with pytest.raises(ValueError, match="finite"):
        call(np.full((10, 3), np.nan), loss="mse")
    with pytest.raises(ValueError, match="sizes"):
        call(np.zeros(10, np.intp), loss="binary_cross_entropy")
    with pytest.raises(ValueError, match="loss_reduction"):
        call(np.zeros(10, np.intp), loss_reduction="sum")


def _csr(X, index_dtype=np.intp):
    import scipy.sparse as sp
    A = sp.csr_matrix(X)
    A.indices, A.indptr = A.indices.astype(index_dtype), A.indptr.astype(index_dtype)
    return A


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_threads", [1, 3])
def test_train_batches_csr_x_is_dense_x_bit_for_bit_and_twin(rng, dtype, n_threads):
    X = randn(rng, (120, 40), dtype)
    X[rng.random(X.shape) < 0.75] = 0
    y = rng.integers(0, 3, 120).astype(np.intp)
    order = rng.permutation(120).astype(np.intp)
    runs = []
    for fn, data in ((K.train_batches, X), (K.train_batches, _csr(X)), (R.train_batches, _csr(X))):
        sizes, ws = make_workspace([40, 17, 3], 16, dtype, np.random.default_rng(4))
        space = types.SimpleNamespace(**{f: ws[f] for f in WS_FIELDS})
        out = fn(data, y, order, 5, 110, 16, sizes, "tanh", ws["params"], ws["slots"], space,
                 K.Hyper("sgd", learning_rate=0.1, momentum=0.9, l2=1e-3),
                 dropout=np.array([0.2, 0.1]), n_threads=n_threads)
        runs.append((out, ws["params"].copy()))
    assert runs[1][0] == runs[0][0]
    np.testing.assert_array_equal(runs[1][1], runs[0][1])
    np.testing.assert_allclose(runs[2][1], runs[1][1], **TRAIN_TOL[dtype])


def test_train_batches_refuses_bad_csr(rng):
    X = randn(rng, (10, 5), np.float64)
    sizes, ws = make_workspace([5, 4, 3], 4, np.float64, rng)
    space = types.SimpleNamespace(**{f: ws[f] for f in WS_FIELDS})
    y = np.zeros(10, np.intp)
    order = np.arange(10, dtype=np.intp)
    call = lambda A: K.train_batches(  # noqa: E731
        A, y, order, 0, 10, 4, sizes, "relu", ws["params"], ws["slots"], space,
        K.Hyper("sgd", learning_rate=0.1))
    with pytest.raises(TypeError, match="X.indices"):
        call(_csr(X, np.int32))
    A = _csr(X)
    A.indices[3] = 7
    with pytest.raises(ValueError, match="X.indices"):
        call(A)
    A = _csr(X)
    A.indptr[4], A.indptr[5] = A.indptr[5], A.indptr[4]
    with pytest.raises(ValueError, match="X.indptr"):
        call(A)
    A = _csr(X)
    A.indptr = A.indptr[:-1].copy()
    with pytest.raises(ValueError, match="X.indptr"):
        call(A)


# ---------------------------------------------------------------------------
# exact sums: the weight and bias gradients' batch sums in float64, weights there
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("n_threads", [1, 3])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "weighted_mean"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("loss,k", LOSS_CASES)
def test_train_batches_exact_sums_match_reference(rng, kernel_isa, loss, k, weighted, reduction,
                                                  dtype, n_threads):
    """exact_sums=True against its twin, every loss, with and without weights (zeros
    among them), penalties and momentum, on a batch of 7 (W's transposed copy) and
    of 32 (W^T's packed panels, and dropout on the input and the hidden layers)."""
    for batch_size, dropout in ((7, None), (32, np.array([0.2, 0.3, 0.1]))):
        _losses_match_reference(rng, loss, k, weighted, reduction, dtype, n_threads, hidden=48,
                                 batch_size=batch_size, exact_sums=True, dropout=dropout,
                                 seed=3)


def _weighted_and_repeated(rng, n=15, d=30):
    """scikit-learn's sample-weight check's data: rows, labels, integer weights
    (zeros among them), and the rows repeated by their weights."""
    X = rng.random((n, d)).astype(np.float32)
    y = rng.integers(0, 3, n).astype(np.intp)
    sw = rng.integers(0, 5, n)
    sw[:2] = (0, 3)
    return X, y, sw.astype(np.float32), X.repeat(sw, axis=0), y.repeat(sw)


@pytest.mark.parametrize("kind", ["sgd", "nesterov", "adam"])
@pytest.mark.parametrize("sizes", [[30, 48, 3], [30, 64, 40, 3], [30, 16, 256, 3]],
                         ids=lambda s: "x".join(map(str, s)))
def test_exact_sums_integer_weights_are_repeated_rows(kernel_isa, sizes, kind):
    """float32 with exact_sums: rows of integer weight w train exactly as w copies of
    them (one batch per step, the rows in another order every step), to the bit, on
    1 to 3 threads with every phase split (the first layer's by columns, the others by
    rows of W, in 8-row panels of the one pass); without the exact sums they do not."""
    rng = np.random.default_rng(42)
    X, y, sw, Xr, yr = _weighted_and_repeated(rng)
    hyper = {"sgd": K.Hyper("sgd", learning_rate=0.1, momentum=0.9),
             "nesterov": K.Hyper("sgd", learning_rate=0.1, momentum=0.9, nesterov=True),
             "adam": K.Hyper("adam", learning_rate=0.01)}[kind]
    before = _kernels._split_threshold(), _kernels._fuse_rows()
    results = {}
    try:
        _kernels._split_threshold(0)
        _kernels._fuse_rows(8)
        for exact in (True, False):
            for n_threads in (1, 2, 3):
                params = []
                for Xs, ys, w, reduction in ((X, y, sw, "weighted_mean"), (Xr, yr, None, "mean")):
                    n = Xs.shape[0]
                    _, ws = make_workspace(sizes, n, np.float32, np.random.default_rng(0))
                    space = types.SimpleNamespace(**{f: ws[f] for f in WS_FIELDS})
                    step_rng = np.random.default_rng(1)
                    for step in range(6):
                        order = step_rng.permutation(n).astype(np.intp)
                        K.train_batches(Xs, ys, order, 0, n, n, np.asarray(sizes, np.intp),
                                        "relu", ws["params"], ws["slots"], space,
                                        hyper._replace(t=step), sample_weight=w,
                                        loss_reduction=reduction, n_threads=n_threads,
                                        exact_sums=exact)
                    params.append(ws["params"].copy())
                results[exact, n_threads] = params
    finally:
        _kernels._split_threshold(before[0])
        _kernels._fuse_rows(before[1])
    for n_threads in (1, 2, 3):
        weighted, repeated = results[True, n_threads]
        np.testing.assert_array_equal(weighted, repeated)
        np.testing.assert_array_equal(weighted, results[True, 1][0])  # any thread count
    plain_w, plain_r = results[False, 1]
    assert not np.array_equal(plain_w, plain_r)  # the float32 sums' order shows
    np.testing.assert_allclose(plain_w, plain_r, rtol=1e-4, atol=1e-6)


def test_exact_sums_arguments(rng):
    sizes, ws = make_workspace([5, 4, 3], 4, np.float64, rng)
    space = types.SimpleNamespace(**{f: ws[f] for f in WS_FIELDS})
    X = randn(rng, (10, 5), np.float64)
    y = rng.integers(0, 3, 10).astype(np.intp)
    args = (X, y, np.arange(10), 0, 10, 4, sizes, "relu", ws["params"], ws["slots"], space,
            K.Hyper("sgd", learning_rate=0.1))
    for fn in (K.train_batches, R.train_batches):
        with pytest.raises(TypeError, match="exact_sums"):
            fn(*args, exact_sums=1)
    sp = pytest.importorskip("scipy.sparse")
    Xs = sp.csr_array(X)
    Xs.indices, Xs.indptr = Xs.indices.astype(np.intp), Xs.indptr.astype(np.intp)
    for fn in (K.train_batches, R.train_batches):
        with pytest.raises(ValueError, match="exact_sums"):
            fn(Xs, *args[1:], exact_sums=True, csr_products=True)


@pytest.mark.parametrize("sizes", [[30, 64, 40, 3], [30, 16, 256, 8, 64, 3]],
                         ids=lambda s: "x".join(map(str, s)))
def test_step_plans_give_the_same_bits(sizes):
    """Every plan of a step (which phases split over the threads: thresholds
    between each phase's multiply-adds, with and without the small phases whose
    split adds no barrier) trains to the same bits as one thread, on 2 and 3
    threads, a partial last batch included."""
    batch = 24
    phases = set()
    for l in range(len(sizes) - 1):
        macs = batch * sizes[l] * sizes[l + 1]
        phases.update((macs, macs * (2 if l > 0 else 1)))
    thresholds = sorted(phases) + [0]
    before = _kernels._split_threshold(), _kernels._free_splits()

    def train(n_threads):
        n_rows = 3 * batch + 5
        sz, ws, X, y, order = training_problem(sizes, batch, np.float32, 5, n_rows)
        out = run_train(K.train_batches, X, y, order, 0, n_rows, batch, sz, "tanh", ws,
                        n_threads=n_threads, learning_rate=0.05, momentum=0.9, l2=1e-3)
        return out[0], ws["params"].copy(), ws["slots"].copy()

    try:
        want = train(1)
        for free in (True, False):
            _kernels._free_splits(free)
            for t in thresholds:
                _kernels._split_threshold(t)
                for n_threads in (2, 3):
                    loss, params, slots = train(n_threads)
                    assert loss == want[0], (free, t, n_threads)
                    np.testing.assert_array_equal(params, want[1])
                    np.testing.assert_array_equal(slots, want[2])
    finally:
        _kernels._split_threshold(before[0])
        _kernels._free_splits(before[1])


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_call_s_split_threshold_gives_the_same_bits(dtype):
    """train_batches(split_threshold=...): every phase split (0), some, none
    (above every phase: the call then starts no second thread) or the
    measured rule (None) train to the same bits as one thread."""
    sizes, batch = [30, 64, 40, 3], 16

    def train(n_threads, split_threshold):
        n_rows = 4 * batch + 3
        sz, ws, X, y, order = training_problem(sizes, batch, dtype, 8, n_rows)
        out = run_train(K.train_batches, X, y, order, 0, n_rows, batch, sz, "relu", ws,
                        n_threads=n_threads, split_threshold=split_threshold,
                        learning_rate=0.05, momentum=0.9)
        return out[:2], ws["params"].copy(), ws["slots"].copy()

    want = train(1, None)
    for t in (0, 0.0, batch * 30 * 64, 1e12, None):
        for n_threads in (2, 3):
            got = train(n_threads, t)
            assert got[0] == want[0], (t, n_threads)
            np.testing.assert_array_equal(got[1], want[1])
            np.testing.assert_array_equal(got[2], want[2])


@pytest.mark.skipif(not _kernels._build_info()["threads"], reason="a build without threads")
def test_default_rule_splits_every_phase_when_the_state_exceeds_the_l2():
    """The default split rule's state rule (fnn_split_rule): at batch 1, where
    no phase reaches the measured threshold of multiply-adds (at least
    8 x 784 x 128), every phase is split exactly when the network's weights
    and optimizer slots exceed one core's L2, and never on one thread."""
    machine = _kernels._cache_sizes()
    none, every = ([False, False], [False, False]), ([True, True], [True, True])
    try:
        _kernels._cache_sizes(machine[0], 1 << 20)
        # [784, 800, 10]: 635,200 weights, 5.1 MB with SGD's velocity
        assert _kernels._split_phases([784, 800, 10], 1) == every
        assert _kernels._split_phases([784, 800, 10], 1, n_threads=1) == none
        # [784, 128, 10]: 101,632 weights: 813 KB in float32 with a velocity,
        # 1.2 MB with Adam's two moments, 1.6 MB in float64
        assert _kernels._split_phases([784, 128, 10], 1) == none
        assert _kernels._split_phases([784, 128, 10], 1, n_slots=2) == every
        assert _kernels._split_phases([784, 128, 10], 1, dtype=np.float64) == every
        _kernels._cache_sizes(machine[0], 64 << 20)
        assert _kernels._split_phases([784, 800, 10], 1) == none
    finally:
        _kernels._cache_sizes(*machine)
    with pytest.raises(ValueError, match="sizes must hold"):
        _kernels._split_phases([784], 1)


@pytest.mark.parametrize("fn", [K.train_batches, R.train_batches], ids=["compiled", "numpy"])
@pytest.mark.parametrize("value, exc, match", [
    (-1.0, ValueError, "split_threshold must be finite and >= 0.0"),
    (float("nan"), ValueError, "split_threshold must be finite"),
    (float("inf"), ValueError, "split_threshold must be finite"),
    ("0", TypeError, "split_threshold must be a real number"),
    (True, TypeError, "split_threshold must be a real number"),
])
def test_split_threshold_is_checked(fn, value, exc, match):
    rng = np.random.default_rng(0)
    sz, ws = make_workspace([5, 4, 3], 4, np.float32, rng)
    X = randn(rng, (8, 5), np.float32)
    y = rng.integers(0, 3, 8).astype(np.intp)
    with pytest.raises(exc, match=match):
        run_train(fn, X, y, np.arange(8, dtype=np.intp), 0, 8, 4, sz, "relu", ws,
                  n_threads=2, split_threshold=value, learning_rate=0.1)


@pytest.mark.parametrize("fn", [K.train_batches, R.train_batches], ids=["compiled", "numpy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_loss_start_makes_the_loss_sum_independent_of_the_calls(fn, dtype):
    """One call over 25 batches, or calls of 1, 3, 7 and 14 batches each going
    on from the last one's sum (loss_start): the same weights, and the same
    loss sum, bit for bit (the same additions in the same order)."""
    sz, ws0, X, y, order = training_problem([11, 17, 5], 8, dtype, 9, 200)
    kw = dict(learning_rate=0.05, momentum=0.9)
    ws = copy_ws(ws0)
    want = run_train(fn, X, y, order, 0, 200, 8, sz, "relu", ws, **kw)
    got_ws, total, start = copy_ws(ws0), 0.0, 0
    for stop in (8, 32, 88, 200):
        rows, total, _, diverged = run_train(fn, X, y, order, start, stop, 8, sz, "relu", got_ws,
                                             loss_start=total, **kw)
        assert rows == stop - start and not diverged
        start = stop
    assert total == want[1]
    np.testing.assert_array_equal(got_ws["params"], ws["params"])
    # a start value is added first: the sum of the call itself is not the same bits
    rows, shifted, _, _ = run_train(fn, X, y, order, 0, 8, 8, sz, "relu", copy_ws(ws0),
                                    loss_start=1.5, **kw)
    assert shifted == 1.5 + run_train(fn, X, y, order, 0, 8, 8, sz, "relu", copy_ws(ws0),
                                      **kw)[1]
    # an empty range returns the start value as it is
    assert run_train(fn, X, y, order, 8, 8, 8, sz, "relu", copy_ws(ws0), loss_start=2.25,
                     **kw)[:2] == (0, 2.25)


@pytest.mark.parametrize("fn", [K.train_batches, R.train_batches], ids=["compiled", "numpy"])
@pytest.mark.parametrize("value, exc, match", [
    (float("nan"), ValueError, "loss_start must be finite"),
    (float("inf"), ValueError, "loss_start must be finite"),
    ("0", TypeError, "loss_start must be a real number"),
    (None, TypeError, "loss_start must be a real number"),
])
def test_loss_start_is_checked(fn, value, exc, match):
    sz, ws, X, y, order = training_problem([5, 4, 3], 4, np.float32, 0, 8)
    with pytest.raises(exc, match=match):
        run_train(fn, X, y, order, 0, 8, 4, sz, "relu", ws, loss_start=value,
                  learning_rate=0.1)


def test_free_splits_is_checked():
    assert _kernels._free_splits() is True
    with pytest.raises(TypeError, match="on must be a bool"):
        _kernels._free_splits(1)
    assert _kernels._free_splits() is True


def test_cache_sources_follow_detection_and_setting(tmp_path, machine_caches):
    """_cache_sources names where each size in use came from: a detection's
    sources, then "set" for a size given to _cache_sizes."""
    folder = _fake_sysfs(tmp_path / "c", [(1, "Data", "48K"), (2, "Unified", "2M")])
    _kernels._detect_caches(folder)
    assert _kernels._cache_sources() == ("sysfs", "sysfs")
    _kernels._cache_sizes(l2=3 << 20)
    assert _kernels._cache_sources() == ("sysfs", "set")
    assert _kernels._cache_sizes() == (48 << 10, 3 << 20)
