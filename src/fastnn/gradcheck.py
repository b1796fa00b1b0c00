"""Finite-difference check of backpropagation (the original report's Table 1).

Backprop gradients come from the compiled kernels; numerical ones from
fourth-order central differences of the mean cross-entropy (without
penalties), which keep truncation and rounding error both near 1e-11. Run it on a float64 model: in float32
the differences drown in rounding.

>>> import numpy as np
>>> from fastnn import MLP
>>> from fastnn.gradcheck import gradient_check
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(16, 5)); y = rng.integers(0, 3, 16)
>>> rows = gradient_check(MLP([5, 8, 7, 3], "tanh", dtype="float64", seed=0), X, y)
>>> max(r["max_rel_error"] for r in rows) < 1e-6
True
"""
import numpy as np

from . import kernels
from ._layout import unflatten
from ._validation import check_float, check_int, check_X, check_y


def loss_and_gradient(model, X, y):
    """Mean cross-entropy of ``model`` on a batch and its gradient, a flat
    vector in the model's parameter layout (weights, then biases)."""
    X = check_X(X, model.layers[0], model.dtype)
    y = check_y(y, X.shape[0], model.layers[-1])
    weights, biases = unflatten(model.parameters, model.layers)
    acts = [X]
    last = len(weights) - 1
    for i, (W, b) in enumerate(zip(weights, biases)):
        acts.append(kernels.dense_forward(acts[-1], W, b,
                                          model.activation if i < last else "identity"))
    loss, delta = kernels.softmax_cross_entropy(acts[-1], y)
    grad = np.empty_like(model.parameters)
    gW, gb = unflatten(grad, model.layers)
    for i in range(last, -1, -1):
        _, _, delta = kernels.dense_backward(acts[i], weights[i], delta, model.activation,
                                             dW=gW[i], db=gb[i], compute_dZ_prev=i > 0)
    return loss, grad


def _loss(model, X, y):
    return model.evaluate(X, y, check_overflow=False)[0]


def _central_difference(model, X, y, j, eps):
    """Fourth-order central difference of the loss in parameter j:
    (-L(+2e) + 8 L(+e) - 8 L(-e) + L(-2e)) / (12 e): truncation O(e^4), so a
    step large enough to keep rounding small stays accurate."""
    params = model.parameters
    old = params[j]
    values = []
    try:
        for step in (2, 1, -1, -2):
            params[j] = old + step * eps
            values.append(_loss(model, X, y))
    finally:  # also on Ctrl-C or an error in the loss: the model is left unchanged
        params[j] = old
    # Differences first: they are exact for nearby values, so a parameter the
    # loss does not depend on gives exactly 0. Summing -L + 8L - 8L + L left to
    # right rounds 7L and leaves ~1e-12 of noise, which the relative error
    # turned into 1.0 for zero gradients (e.g. weights of MNIST's blank pixels).
    return (8 * (values[1] - values[2]) - (values[0] - values[3])) / (12 * eps)


def gradient_check(model, X, y, n_checks=10, eps=1e-4, seed=0, floor=1e-6):
    """Compare backprop with central differences on sampled parameters.

    For every layer's weights and biases, ``n_checks`` entries (all when
    fewer) are perturbed by ``±eps`` and ``±2 eps``. Returns one row per (layer, param):
    ``{"layer", "param", "checked", "max_abs_error", "max_rel_error"}``
    with relative error ``|g_bp - g_fd| / max(|g_bp|, |g_fd|, floor)``: a
    gradient below ``floor`` is judged by its absolute error against ``floor``
    (the differences carry about ``1e-16 / eps`` of rounding noise, which would
    make the relative error of a gradient that small about 1; with the default,
    an absolute error of 1e-12 reads as 1e-6). The model is left unchanged.
    """
    X = check_X(X, model.layers[0], model.dtype)
    y = check_y(y, X.shape[0], model.layers[-1])
    n_checks = check_int(n_checks, "n_checks", low=1)
    eps = check_float(eps, "eps", low=0.0, low_open=True)
    floor = check_float(floor, "floor", low=0.0, low_open=True)
    _, grad = loss_and_gradient(model, X, y)
    rng = np.random.default_rng(seed)
    params = model.parameters
    flat_index = np.arange(params.size)
    idx_W, idx_b = unflatten(flat_index, model.layers)
    rows = []
    for layer in range(len(model.layers) - 1):
        for name, idx in (("W", idx_W[layer]), ("b", idx_b[layer])):
            idx = idx.ravel()
            chosen = idx if idx.size <= n_checks else rng.choice(idx, n_checks, replace=False)
            abs_err, rel_err = 0.0, 0.0
            for j in chosen:
                numeric = _central_difference(model, X, y, j, eps)
                analytic = float(grad[j])
                err = abs(analytic - numeric)
                abs_err = max(abs_err, err)
                rel_err = max(rel_err, err / max(abs(analytic), abs(numeric), floor))
            rows.append({"layer": layer, "param": name, "checked": int(len(chosen)),
                         "max_abs_error": abs_err, "max_rel_error": rel_err})
    return rows


def format_table(rows):
    """The rows of :func:`gradient_check` as a text table."""
    lines = [f"{'layer':>5} {'param':>5} {'checked':>7} {'max abs error':>14} {'max rel error':>14}"]
    for r in rows:
        lines.append(f"{r['layer']:>5} {r['param']:>5} {r['checked']:>7} "
                     f"{r['max_abs_error']:>14.3e} {r['max_rel_error']:>14.3e}")
    return "\n".join(lines)
