"""Prediction: ``MLP.predict_proba`` against the NumPy twin and PyTorch.

One group per network (10,000 rows of MNIST-shaped float32 inputs, uniform
in [0, 1)), side by side (``extra_info["impl"]``):

* ``fastnn``: ``model.predict_proba(X)`` on the default thread count (each
  block of 2,048 rows split across the threads);
* ``numpy``: the twin: the same forward with ``fastnn.reference.dense_forward``
  (NumPy's BLAS on its default threads) and ``reference.softmax``, into
  buffers allocated once, in the same blocks;
* ``torch``, when installed: the same weights in a ``torch.nn.Sequential``
  of ``Linear`` and ``ReLU`` and a softmax, under ``torch.inference_mode``, on
  PyTorch's default threads, the whole input at once.

Each benchmark checks its probabilities against the compiled ones, so a fast
wrong forward fails here too. Untimed (the test run), one network and 700
rows.
"""
import numpy as np
import pytest

from fastnn import MLP, reference

NETWORKS = [(784, 128, 10), (784, 1024, 1024, 10)]
ROWS = 10_000
UNTIMED_ROWS = 700
BLOCK = 2048  # the twin's rows per block (buffers allocated once, as fastnn's are)
IMPLS = ["fastnn", "numpy", "torch"]


def _model(layers):
    return MLP(list(layers), seed=0)


def _inputs(layers, rows):
    return np.random.default_rng(list(layers)).random((rows, layers[0]), dtype=np.float32)


def numpy_predict_proba(model, X, block=BLOCK):
    """The twin: the blocked forward of ``predict_proba`` in NumPy."""
    weights, biases = model.coefs_, model.intercepts_
    rows = min(block, X.shape[0])
    bufs = [np.empty((rows, w), dtype=X.dtype) for w in model.layers[1:]]
    out = np.empty((X.shape[0], model.layers[-1]), dtype=X.dtype)
    last = len(weights) - 1
    for start in range(0, X.shape[0], block):
        a = X[start:start + block]
        n = a.shape[0]
        for i, (W, b) in enumerate(zip(weights, biases)):
            a = reference.dense_forward(a, W, b, "relu" if i < last else "identity",
                                        out=bufs[i][:n])
        reference.softmax(a, out=out[start:start + n])
    return out


def torch_predict_proba(model):
    import torch
    weights, biases = model.coefs_, model.intercepts_
    mods = []
    for i, (W, b) in enumerate(zip(weights, biases)):
        lin = torch.nn.Linear(*W.shape)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(W.T)))
            lin.bias.copy_(torch.from_numpy(b))
        mods.append(lin)
        if i < len(weights) - 1:
            mods.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*mods).eval()

    def run(X):
        with torch.inference_mode():
            return torch.softmax(net(torch.from_numpy(X)), dim=1).numpy()
    return run


@pytest.mark.parametrize("layers", NETWORKS, ids=["x".join(map(str, l)) for l in NETWORKS])
@pytest.mark.parametrize("impl", IMPLS)
def test_predict_proba(benchmark, layers, impl):
    disabled = not getattr(benchmark, "enabled", False)
    if disabled and layers != NETWORKS[0]:
        pytest.skip("untimed: the first network only")
    if impl == "torch":
        pytest.importorskip("torch")
    rows = UNTIMED_ROWS if disabled else ROWS
    model, X = _model(layers), _inputs(layers, rows)
    benchmark.group = f"predict_proba {rows} rows {list(layers)} float32"
    benchmark.extra_info.update(impl=impl, kernel="predict_proba", rows=rows,
                                layers=list(layers))
    if impl == "fastnn":
        run = model.predict_proba
    elif impl == "numpy":
        def run(X):
            return numpy_predict_proba(model, X)
    else:
        run = torch_predict_proba(model)
    if not disabled:
        run(X)  # warm-up: lazy imports, first touch of the buffers, BLAS threads
    got = benchmark(run, X)
    expected = model.predict_proba(X) if impl != "fastnn" else numpy_predict_proba(model, X)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6,
                               err_msg=f"{impl} and fastnn disagree on predict_proba")
