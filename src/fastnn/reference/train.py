"""The twin of ``train_batches``: the whole mini-batch training step in NumPy,
one Python step per batch, in the caller's buffers."""
import numpy as np

from .._checks import check_float
from .._hyper import adam_constants, check_hyper
from .._layout import drop_threshold, n_weights, unflatten
from .augment import augment_rows
from .dropout import _drop_forward, _drop_key, _mask_into, _MaskBuffers
from .layers import (LOSSES, _loss_denominator, _mul_activation_grad, _sigmoid_xent,
                     _softmax_xent, _squared_error, _XentBuffers, csr_forward,
                     csr_weight_grad, dense_forward)
from .updates import _adam_step, _sgd_step


class _TrainBuffers:
    """Views of one ``train_batches`` call into the caller's buffers (the same
    layout as the compiled kernel: ``acts`` holds A_0..A_L of a batch, ``deltas``
    two ping-pong deltas of the widest layer, ``grads`` the gradients, ``ybuf``
    and ``wbuf`` the batch's labels and sample weights, ``masks`` the dropout
    masks), plus the few temporaries NumPy needs, allocated once per call."""

    def __init__(self, sizes, batch_size, params, ws, hyper, rates):
        dtype = params.dtype
        self.W, self.b = unflatten(params, sizes)
        self.gW, self.gb = unflatten(ws.grads, sizes)
        self.A, off = [], 0
        for width in sizes:
            self.A.append(ws.acts[off:off + batch_size * width].reshape(batch_size, width))
            off += batch_size * width
        self.keep, off = [], 0  # masks of A_0..A_{L-1}, at A_l's offset as in acts
        masks = ws.masks.view(np.bool_)
        for width in sizes[:-1]:
            self.keep.append(masks[off:off + batch_size * width].reshape(batch_size, width))
            off += batch_size * width
        half = batch_size * max(sizes[1:])
        self.deltas = (ws.deltas[:half], ws.deltas[half:2 * half])
        self.ybuf = ws.ybuf[:batch_size]
        self.wbuf = ws.wbuf[:batch_size]
        self.work = np.empty(half, dtype)  # activation-derivative factor or ReLU mask
        self.xent = _XentBuffers(batch_size, sizes[-1], dtype)
        self.targets = np.empty((batch_size, sizes[-1]), dtype)  # loss "mse"
        self.argmax = np.empty(batch_size, np.intp)
        self.hits = np.empty(batch_size, bool)
        n = params.size
        self.finite = np.empty(n, bool)  # the check of the updated parameters
        self.step = np.empty(n, dtype)
        self.t1 = np.empty(n, dtype) if (hyper.l1 or hyper.nesterov
                                         or hyper.kind == "adam") else None
        self.t2 = np.empty(n, dtype) if hyper.kind == "adam" else None
        # dropout: the undropped activations of the dropped hidden layers (the
        # derivative is taken there), the dropped elements, the mask generator
        widest = max(sizes[:-1])
        self.undropped = [np.empty((batch_size, w), dtype) if (rates is not None and 0 < l
                                                               and rates[l] > 0) else None
                          for l, w in enumerate(sizes[:-1])]
        self.dropped = np.empty(batch_size * widest, bool) if rates is not None else None
        self.gen = _MaskBuffers(batch_size * widest) if rates is not None else None
        self.x_csr = None  # a CSR X's batch rows (the first layer's products on them)


def train_batches(X, y, order, start, stop, batch_size, sizes, activation, params, slots,
                  ws, hyper, *, sample_weight=None, dropout=None, seed=0, epoch=0,
                  n_threads=1, loss="cross_entropy", loss_reduction="mean", augment=None,
                  csr_products=None, exact_sums=False, split_threshold=None,
                  loss_start=0.0):
    """Mini-batch training over ``order[start:stop]``, one Python step per batch.

    Same algorithm, arguments, buffers and return value as the compiled kernel
    (see :func:`fastnn.kernels.train_batches`, its ``loss`` and
    ``loss_reduction`` included): ``(rows_done, loss_sum,
    n_correct, diverged)``; this is its specification in NumPy (the
    derivative under dropout at the undropped activation, which it keeps).
    Every array of a batch lives in the caller's buffers or in temporaries
    made once per call, so a batch allocates nothing (NumPy's ``out=``
    everywhere). ``n_threads`` and ``split_threshold`` (the compiled loop's step
    plan) are accepted for the same signature; NumPy's BLAS uses its own threads. A SciPy CSR ``X`` runs the first layer's products
    on the batch's CSR rows (:func:`csr_forward`, :func:`csr_weight_grad`),
    or with input dropout on its dense rows; ``csr_products``, the compiled
    loop's choice between the two (same meaning), is accepted and not needed.
    ``exact_sums``: the weight and bias gradients as float64 products and sums,
    the sample weights applied there (not in the loss's gradient), rounded
    to the dtype (a CSR X then runs on its dense rows, as the compiled loop).
    ``loss_start``: the value ``loss_sum`` starts from, as in the compiled kernel.
    """
    if not isinstance(exact_sums, (bool, np.bool_)):
        raise TypeError(f"exact_sums must be True or False, got {exact_sums!r}")
    if exact_sums and csr_products:
        raise ValueError("csr_products=True cannot make the exact sums (exact_sums=True): "
                         "they need the dense rows")
    check_float(split_threshold, "split_threshold", low=0.0, allow_none=True)
    loss_start = check_float(loss_start, "loss_start")
    hyper = check_hyper(hyper)
    sizes = [int(s) for s in sizes]
    rates = _check_call(X, y, order, start, stop, sizes, slots, hyper, sample_weight, dropout,
                        loss, loss_reduction)
    buf = _TrainBuffers(sizes, batch_size, params, ws, hyper, rates)
    if exact_sums:  # the float64 operands and gradients, made once per call
        buf.exact = (np.empty(batch_size * max(sizes)), np.empty(batch_size * max(sizes[1:])),
                     np.empty(max(sizes[l] * sizes[l + 1] for l in range(len(sizes) - 1))))
    nw = n_weights(sizes)
    dt = params.dtype.type
    scales = None if rates is None else [dt(1.0 / (1.0 - r)) for r in rates]
    loss_sum, correct = loss_start, 0
    for s0 in range(start, stop, batch_size):
        idx = order[s0:min(s0 + batch_size, stop)]
        bs = idx.shape[0]
        step = s0 // batch_size
        a, labels, weights = _gather(X, y, idx, sample_weight, buf, loss, seed, epoch, augment,
                                     exact_sums or (rates is not None and rates[0] > 0))
        logits = _forward(a, buf, sizes, activation, rates, scales, seed, epoch, step)
        delta = buf.deltas[0][:bs * sizes[-1]].reshape(bs, sizes[-1])
        batch_loss, hits, delta = _output_delta(logits, labels, delta, weights, buf, loss,
                                                loss_reduction, not exact_sums)
        if not np.isfinite(batch_loss):
            return s0 - start, loss_sum, correct, True
        loss_sum += batch_loss * bs
        correct += hits
        _backward(delta, buf, sizes, activation, scales, weights if exact_sums else False)
        _update(params, slots, ws, hyper, buf, weights, loss_reduction, nw,
                (s0 - start) // batch_size + 1)
        # an update that made a weight or bias infinite or NaN (the loss can stay
        # finite: saturated tanh, say) ends the call after this batch
        if not np.isfinite(params, out=buf.finite).all():
            return s0 + bs - start, loss_sum, correct, True
    return stop - start, loss_sum, correct, False


def _check_call(X, y, order, start, stop, sizes, slots, hyper, sample_weight, dropout, loss,
                loss_reduction):
    """The checks of one ``train_batches`` call; returns the dropout rates per
    layer input (None without dropout)."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
    _loss_denominator(1, None, loss_reduction)  # checks it
    n_layers = len(sizes) - 1
    rates = None
    if dropout is not None:
        rates = [float(r) for r in dropout]
        if len(rates) != n_layers or not all(0.0 <= r < 1.0 for r in rates):
            raise ValueError(f"dropout must hold {n_layers} rates in [0, 1), got {dropout!r}")
        if not any(rates):
            rates = None
    if start < stop:  # checked once, so that each batch can gather with mode="clip"
        rows = order[start:stop]
        if rows.min() < 0 or rows.max() >= X.shape[0]:
            raise ValueError(f"order must hold row indices in [0, {X.shape[0]})")
        labels = y[rows]
        if loss == "mse":
            if not np.isfinite(labels).all():
                raise ValueError("y (the targets) must be finite")
        elif labels.min() < 0 or labels.max() >= max(sizes[-1], 2):
            raise ValueError(f"y must hold labels in [0, {max(sizes[-1], 2)})")
        if sample_weight is not None:
            w = sample_weight[rows]
            if not (np.all(np.isfinite(w)) and w.min() >= 0):
                raise ValueError("sample_weight must be finite and >= 0")
    adam = hyper.kind == "adam"
    if slots.shape[0] < (2 if adam else 1):
        raise ValueError(f"slots must have at least {2 if adam else 1} rows for hyper.kind "
                         f"{hyper.kind!r}")
    return rates


def _gather(X, y, idx, sample_weight, buf, loss, seed, epoch, augment, dense_rows):
    """The batch's rows (into A_0; a CSR X's as CSR rows, ``buf.x_csr``, unless
    ``dense_rows``), labels or targets, and weights (or None)."""
    bs = idx.shape[0]
    buf.x_csr = None
    if hasattr(X, "indptr") and dense_rows:  # CSR, input dropout: the dense rows
        a = X[idx].toarray(out=buf.A[0][:bs])
    elif hasattr(X, "indptr"):  # CSR: the first layer's products on its rows
        a = buf.x_csr = X[idx]
    elif augment is not None:  # the deformed rows, as the compiled loop makes them
        a = augment_rows(X, idx, seed, epoch, augment, out=buf.A[0][:bs])
    else:  # mode="clip": indices checked above; "raise" would copy through a temporary
        a = np.take(X, idx, axis=0, out=buf.A[0][:bs], mode="clip")
    if loss == "mse":  # the targets' rows (the compiled loop reads them in place)
        labels = np.take(y, idx, axis=0, out=buf.targets[:bs], mode="clip")
    else:
        labels = np.take(y, idx, out=buf.ybuf[:bs], mode="clip")
    weights = None
    if sample_weight is not None:
        weights = np.take(sample_weight, idx, out=buf.wbuf[:bs], mode="clip")
    return a, labels, weights


def _forward(a, buf, sizes, activation, rates, scales, seed, epoch, step):
    """The forward pass of the batch in A_0 (dropout on each layer's input where
    its rate is > 0); returns the logits (A_L)."""
    bs = a.shape[0]
    n_layers = len(sizes) - 1
    W, b = buf.W, buf.b
    if rates is not None and rates[0] > 0:  # input dropout, on the gathered copy
        keep = _mask_into(buf.keep[0][:bs], _drop_key(seed, epoch, step, 0),
                          drop_threshold(rates[0]), buf.gen)
        _drop_forward(a, keep, buf.dropped[:keep.size].reshape(keep.shape), scales[0])
    for layer in range(n_layers):
        act = activation if layer < n_layers - 1 else "identity"
        if layer == 0 and buf.x_csr is not None:
            a = csr_forward(buf.x_csr, W[0], b[0], act, out=buf.A[1][:bs])
        else:
            a = dense_forward(a, W[layer], b[layer], act, out=buf.A[layer + 1][:bs])
        if layer + 1 < n_layers and buf.undropped[layer + 1] is not None:
            np.copyto(buf.undropped[layer + 1][:bs], a)
            keep = _mask_into(buf.keep[layer + 1][:bs],
                              _drop_key(seed, epoch, step, layer + 1),
                              drop_threshold(rates[layer + 1]), buf.gen)
            _drop_forward(a, keep, buf.dropped[:keep.size].reshape(keep.shape),
                          scales[layer + 1])
    return a


def _output_delta(logits, labels, delta, weights, buf, loss, loss_reduction, grad_weights):
    """``(batch loss, hits, delta)``: the loss and the output layer's delta (into
    ``delta``; the weights in it with ``grad_weights``), and the count of rows
    predicted right."""
    bs = logits.shape[0]
    if loss == "mse":
        batch_loss, hits = _squared_error(logits, labels, delta, weights, loss_reduction,
                                          grad_weights), 0
    elif loss == "binary_cross_entropy":
        batch_loss, hits = _sigmoid_xent(logits, labels, delta, weights, loss_reduction,
                                         grad_weights)
    else:
        batch_loss, delta = _softmax_xent(logits, labels, delta, buf.xent, weights,
                                          loss_reduction, grad_weights)
        np.argmax(logits, axis=1, out=buf.argmax[:bs])
        hits = int(np.count_nonzero(np.equal(buf.argmax[:bs], labels, out=buf.hits[:bs])))
    return batch_loss, hits, delta


def _backward(delta, buf, sizes, activation, scales, exact=False):
    """The gradients of the batch (into ``buf.gW``, ``buf.gb``) from the output
    layer's ``delta``, the two delta buffers in turn. ``exact`` (not False: the
    batch's weights, or None): the exact sums (``buf.exact``'s float64 buffers)."""
    bs = delta.shape[0]
    n_layers = len(sizes) - 1
    W, gW, gb = buf.W, buf.gW, buf.gb
    cur = 0  # which of the two delta buffers holds the current delta
    for layer in range(n_layers - 1, -1, -1):
        a_prev = buf.A[layer][:bs]
        if exact is not False:
            ni, no = sizes[layer], sizes[layer + 1]
            a64 = buf.exact[0][:bs * ni].reshape(bs, ni)
            d64 = buf.exact[1][:bs * no].reshape(bs, no)
            g64 = buf.exact[2][:ni * no].reshape(ni, no)
            np.copyto(a64, a_prev)
            np.copyto(d64, delta)
            if exact is not None:
                d64 *= exact[:, None]
            np.matmul(a64.T, d64, out=g64)
            np.copyto(gW[layer], g64)
            np.sum(d64, axis=0, out=g64[0])
            np.copyto(gb[layer], g64[0])
        elif layer == 0 and buf.x_csr is not None:
            csr_weight_grad(buf.x_csr, delta, out=gW[0])
        elif bs == 1:  # an outer product: BLAS gemm with k=1 is several times slower
            np.multiply(a_prev.T, delta, out=gW[layer])
        else:
            np.matmul(a_prev.T, delta, out=gW[layer])
        if exact is False:
            np.sum(delta, axis=0, out=gb[layer])
        if layer > 0:
            cur = 1 - cur
            nxt = buf.deltas[cur][:bs * sizes[layer]].reshape(bs, sizes[layer])
            np.matmul(delta, W[layer].T, out=nxt)
            undropped = buf.undropped[layer]
            if undropped is None:
                delta = _mul_activation_grad(nxt, a_prev, activation, buf.work)
            else:  # act' at the undropped activation, then the mask and scale
                delta = _mul_activation_grad(nxt, undropped[:bs], activation, buf.work)
                keep = buf.keep[layer][:bs]
                _drop_forward(delta, keep, buf.dropped[:keep.size].reshape(keep.shape),
                              scales[layer])


def _update(params, slots, ws, hyper, buf, weights, loss_reduction, nw, k):
    """The optimizer's step ``k`` of this call on the batch's gradients (weights
    penalised, biases not)."""
    step_hyper = hyper
    if loss_reduction == "weighted_mean" and weights is not None:
        # the penalties per unit of weight, as the loss: times bs / sum(w)
        total = float(np.sum(weights, dtype=np.float64))
        scale = weights.shape[0] / total if total > 0 else 0.0
        step_hyper = hyper._replace(l1=hyper.l1 * scale, l2=hyper.l2 * scale)
    if hyper.kind == "adam":
        constants = adam_constants(hyper, hyper.t + k)
        for lo, hi, penalise in ((0, nw, True), (nw, params.size, False)):
            _adam_step(params[lo:hi], ws.grads[lo:hi], slots[0, lo:hi], slots[1, lo:hi],
                       step_hyper, constants, penalise, buf.step[lo:hi], buf.t1[lo:hi],
                       buf.t2[lo:hi])
    else:
        t1 = buf.t1
        _sgd_step(params[:nw], ws.grads[:nw], slots[0, :nw], hyper.learning_rate,
                  hyper.momentum, step_hyper.l1, step_hyper.l2, buf.step[:nw],
                  None if t1 is None else t1[:nw], hyper.nesterov)
        _sgd_step(params[nw:], ws.grads[nw:], slots[0, nw:], hyper.learning_rate,
                  hyper.momentum, 0.0, 0.0, buf.step[nw:],
                  None if t1 is None else t1[nw:], hyper.nesterov)
