"""Boundary safety of the compiled kernels' public wrappers.

Every bad argument must be refused with TypeError (wrong kind of thing) or
ValueError (right kind, wrong value) whose message names the argument, before
any code runs without the GIL: nothing may crash the interpreter or write
into memory it should not. Each case builds fresh valid arguments, breaks
one of them, and checks the exception type and message; where a wrapper has
output buffers, the test also checks nothing was written.
"""
import types

import numpy as np
import pytest

from fastnn import kernels as K
from fastnn._layout import n_params, workspace_sizes

F64, F32 = np.float64, np.float32


def fortran(a):
    return np.asfortranarray(a)


def strided(a):
    """A non-contiguous view with a's shape and values."""
    big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    big[..., ::2] = a
    view = big[..., ::2]
    assert not view.flags.c_contiguous
    return view


def readonly(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def byteswapped(a):
    return a.astype(a.dtype.newbyteorder())


# ---------------------------------------------------------------------------
# Valid argument sets
# ---------------------------------------------------------------------------

def forward_args(dtype=F64):
    rng = np.random.default_rng(0)
    return dict(X=rng.random((7, 3)).astype(dtype), W=rng.random((3, 5)).astype(dtype),
                b=rng.random(5).astype(dtype), activation="relu", out=None)


def backward_args(dtype=F64):
    rng = np.random.default_rng(1)
    return dict(A_prev=rng.random((7, 3)).astype(dtype), W=rng.random((3, 5)).astype(dtype),
                dZ=rng.random((7, 5)).astype(dtype), activation_prev="tanh",
                dW=None, db=None, dZ_prev=None, compute_dZ_prev=True)


def xent_args(dtype=F64):
    rng = np.random.default_rng(2)
    return dict(logits=rng.random((7, 4)).astype(dtype),
                labels=np.array([0, 1, 2, 3, 0, 1, 2], np.intp), grad=None)


def softmax_args(dtype=F64):
    rng = np.random.default_rng(3)
    return dict(logits=rng.random((7, 4)).astype(dtype), out=None)


def sgd_args(dtype=F64):
    rng = np.random.default_rng(4)
    return dict(W=rng.random((3, 5)).astype(dtype), grad=rng.random((3, 5)).astype(dtype),
                velocity=np.zeros((3, 5), dtype), learning_rate=0.1, momentum=0.5,
                l1=0.01, l2=0.01)


def adam_args(dtype=F64):
    rng = np.random.default_rng(6)
    return dict(W=rng.random((3, 5)).astype(dtype), grad=rng.random((3, 5)).astype(dtype),
                m=np.zeros((3, 5), dtype), v=np.zeros((3, 5), dtype), learning_rate=0.01, t=1,
                beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01, l1=0.01, l2=0.01)


def mask_args(dtype=F64):
    return dict(rows=3, width=5, rate=0.5, seed=1, epoch=2, step=3, layer=1)


SIZES = [4, 6, 3]
BATCH = 5
NEED = workspace_sizes(SIZES, BATCH)
WS_FIELDS = ("grads", "acts", "deltas", "ybuf", "wbuf", "masks")


def make_ws(dtype, **fields):
    """A work space namespace of the right buffers, with ``fields`` replaced."""
    ws = dict(grads=np.zeros(NEED.params, dtype), acts=np.zeros(NEED.acts, dtype),
              deltas=np.zeros(NEED.deltas, dtype), ybuf=np.zeros(BATCH, np.intp),
              wbuf=np.zeros(NEED.wbuf, dtype), masks=np.zeros(NEED.masks, np.uint8))
    ws.update(fields)
    return types.SimpleNamespace(**ws)


def train_args(dtype=F64):
    rng = np.random.default_rng(5)
    p = n_params(SIZES)
    return dict(
        X=rng.random((20, 4)).astype(dtype), y=(np.arange(20) % 3).astype(np.intp),
        order=rng.permutation(20).astype(np.intp), start=0, stop=20, batch_size=BATCH,
        sizes=np.array(SIZES, np.intp), activation="tanh",
        params=rng.standard_normal(p).astype(dtype), slots=np.zeros((2, p), dtype),
        ws=make_ws(dtype), hyper=K.Hyper("sgd", 0.1, momentum=0.5),
        sample_weight=None, dropout=None, seed=0, epoch=0, n_threads=1)


def full_train_args(dtype=F64):
    """train_args with Adam, dropout and sample weights all on."""
    kw = train_args(dtype)
    kw.update(hyper=K.Hyper("adam", 0.01, weight_decay=0.01, l1=1e-3, l2=1e-3, t=3),
              dropout=np.array([0.2, 0.5]), sample_weight=np.linspace(0, 2, 20).astype(dtype),
              seed=2**64 - 1, epoch=7)
    return kw


def test_valid_arguments_work():
    """The baselines the cases below break one argument of are themselves valid."""
    for dtype in (F32, F64):
        assert K.dense_forward(**forward_args(dtype)).shape == (7, 5)
        assert K.dense_backward(**backward_args(dtype))[2].shape == (7, 3)
        assert np.isfinite(K.softmax_cross_entropy(**xent_args(dtype))[0])
        assert K.softmax(**softmax_args(dtype)).shape == (7, 4)
        assert K.sgd_update(**sgd_args(dtype)) is None
        assert K.sgd_update(**sgd_args(dtype), nesterov=True) is None
        assert K.adam_update(**adam_args(dtype)) is None
        assert K.dropout_mask(**mask_args(dtype)).shape == (3, 5)
        assert K.train_batches(**train_args(dtype))[0] == 20
        assert K.train_batches(**full_train_args(dtype))[0] == 20
        kw = xent_args(dtype)
        kw["sample_weight"] = np.ones(7, dtype)
        assert np.isfinite(K.softmax_cross_entropy(**kw)[0])


# ---------------------------------------------------------------------------
# Cases: (id, function, valid-args factory, modifier, exception, match).
# A modifier takes (kwargs, dtype) and returns the broken kwargs. Values given
# to ``with_`` are constants or callables (kwargs, dtype) -> value, so arrays
# are built in the dtype of the run (and "the other dtype" via OTHER).
# ---------------------------------------------------------------------------

OTHER = object()  # stands for "the float dtype that is not the run's"


def resolve_dtype(dtype, run_dtype):
    if dtype is OTHER:
        return F32 if run_dtype == F64 else F64
    return run_dtype if dtype is None else dtype


def Z(*shape, dtype=None, f=None):
    """A zeros array of ``shape`` (run dtype by default), passed through ``f``."""
    def make(kw, dt):
        a = np.zeros(shape, resolve_dtype(dtype, dt))
        return f(a) if f else a
    return make


def with_(**changes):
    def modify(kw, dt):
        for k, v in changes.items():
            kw[k] = v(kw, dt) if callable(v) else v
        return kw
    return modify


def cast(name, dtype, f=None):
    """kwargs[name] converted to ``dtype`` (OTHER: the other float dtype)."""
    def make(kw, dt):
        a = kw[name].astype(resolve_dtype(dtype, dt))
        return f(a) if f else a
    return make


def view(name, f):
    """f(kwargs[name]): a view, a layout change or a list of the valid argument."""
    return lambda kw, dt: f(kw[name])


def shared_overlap(name_a, name_b, shape_a, shape_b, dtype=None):
    """name_a and name_b as views of one buffer that overlap by one element."""
    def modify(kw, dt):
        na, nb = int(np.prod(shape_a)), int(np.prod(shape_b))
        buf = np.zeros(na + nb - 1, resolve_dtype(dtype, dt))
        kw[name_a] = buf[:na].reshape(shape_a)
        kw[name_b] = buf[na - 1:].reshape(shape_b)
        return kw
    return modify


def labels_(*values):
    return lambda kw, dt: np.array(values, np.intp)


CASES = []


def case(id_, fn, base, modify, exc, match):
    CASES.append(pytest.param(fn, base, modify, exc, match, id=id_))


def tolist(a):
    return a.tolist()


# --- dense_forward -----------------------------------------------------------
fwd = K.dense_forward
case("fwd-X-list", fwd, forward_args, with_(X=view("X", tolist)), TypeError, "X")
case("fwd-X-int", fwd, forward_args, with_(X=cast("X", np.int64)), TypeError, "X")
case("fwd-X-float16", fwd, forward_args, with_(X=cast("X", np.float16)), TypeError, "X")
case("fwd-X-bigendian", fwd, forward_args, with_(X=view("X", byteswapped)), TypeError, "X")
case("fwd-X-other-dtype", fwd, forward_args, with_(X=cast("X", OTHER)), TypeError, "W")
case("fwd-W-other-dtype", fwd, forward_args, with_(W=cast("W", OTHER)), TypeError, "W")
case("fwd-W-int", fwd, forward_args, with_(W=cast("W", np.int32)), TypeError, "W")
case("fwd-b-other-dtype", fwd, forward_args, with_(b=cast("b", OTHER)), TypeError, "b")
case("fwd-b-list", fwd, forward_args, with_(b=[0.0] * 5), TypeError, "b")
case("fwd-X-scalar", fwd, forward_args, with_(X=1.0), TypeError, "X")
case("fwd-X-1d", fwd, forward_args, with_(X=view("X", lambda a: a[0])), ValueError, "X")
case("fwd-X-3d", fwd, forward_args, with_(X=view("X", lambda a: a[None])), ValueError, "X")
case("fwd-W-1d", fwd, forward_args, with_(W=view("W", np.ravel)), ValueError, "W")
case("fwd-b-2d", fwd, forward_args, with_(b=view("b", lambda a: a[None])), ValueError, "b")
case("fwd-W-shape", fwd, forward_args, with_(W=Z(4, 5)), ValueError, "W must have shape")
case("fwd-b-shape", fwd, forward_args, with_(b=Z(4)), ValueError, "b must have shape")
case("fwd-X-fortran", fwd, forward_args, with_(X=view("X", fortran)), ValueError, "X must be C-contiguous")
case("fwd-X-strided", fwd, forward_args, with_(X=view("X", strided)), ValueError, "X must be C-contiguous")
case("fwd-X-reversed", fwd, forward_args, with_(X=view("X", lambda a: a[::-1])), ValueError, "X must be C-contiguous")
case("fwd-W-fortran", fwd, forward_args, with_(W=view("W", fortran)), ValueError, "W must be C-contiguous")
case("fwd-b-strided", fwd, forward_args, with_(b=view("b", strided)), ValueError, "b must be C-contiguous")
case("fwd-X-empty-rows", fwd, forward_args, with_(X=Z(0, 3)), ValueError, "X and W must be non-empty")
case("fwd-X-empty-cols", fwd, forward_args, with_(X=Z(7, 0), W=Z(0, 5)), ValueError, "X and W must be non-empty")
case("fwd-W-empty", fwd, forward_args, with_(W=Z(3, 0), b=Z(0)), ValueError, "X and W must be non-empty")
case("fwd-activation-unknown", fwd, forward_args, with_(activation="softplus"), ValueError, "activation")
case("fwd-activation-case", fwd, forward_args, with_(activation="ReLU"), ValueError, "activation")
case("fwd-activation-none", fwd, forward_args, with_(activation=None), ValueError, "activation")
case("fwd-activation-int", fwd, forward_args, with_(activation=1), ValueError, "activation")
case("fwd-out-readonly", fwd, forward_args, with_(out=Z(7, 5, f=readonly)), ValueError, "out must be writeable")
case("fwd-out-shape", fwd, forward_args, with_(out=Z(5, 7)), ValueError, "out must have shape")
case("fwd-out-1d", fwd, forward_args, with_(out=Z(35)), ValueError, "out")
case("fwd-out-dtype", fwd, forward_args, with_(out=Z(7, 5, dtype=OTHER)), TypeError, "out")
case("fwd-out-list", fwd, forward_args, with_(out=[[0.0] * 5] * 7), TypeError, "out")
case("fwd-out-fortran", fwd, forward_args, with_(out=Z(7, 5, f=fortran)), ValueError, "out must be C-contiguous")
case("fwd-out-strided", fwd, forward_args, with_(out=Z(7, 5, f=strided)), ValueError, "out must be C-contiguous")
case("fwd-out-is-X", fwd, forward_args,
     lambda kw, dt: (lambda X: dict(kw, X=X, W=np.ones((5, 5), dt), out=X))(np.ones((7, 5), dt)),
     ValueError, "out must not overlap")
case("fwd-out-overlaps-W", fwd, forward_args, shared_overlap("W", "out", (3, 5), (7, 5)),
     ValueError, "out must not overlap")
case("fwd-out-overlaps-b", fwd, forward_args, shared_overlap("out", "b", (7, 5), (5,)),
     ValueError, "out must not overlap")

# --- dense_backward ------------------------------------------------------------
bwd = K.dense_backward
case("bwd-A_prev-list", bwd, backward_args, with_(A_prev=view("A_prev", tolist)), TypeError, "A_prev")
case("bwd-A_prev-int", bwd, backward_args, with_(A_prev=cast("A_prev", np.int64)), TypeError, "A_prev")
case("bwd-W-other-dtype", bwd, backward_args, with_(W=cast("W", OTHER)), TypeError, "W")
case("bwd-W-list", bwd, backward_args, with_(W=view("W", tolist)), TypeError, "W")
case("bwd-dZ-other-dtype", bwd, backward_args, with_(dZ=cast("dZ", OTHER)), TypeError, "dZ")
case("bwd-dZ-list", bwd, backward_args, with_(dZ=view("dZ", tolist)), TypeError, "dZ")
case("bwd-A_prev-1d", bwd, backward_args, with_(A_prev=view("A_prev", np.ravel)), ValueError, "A_prev")
case("bwd-dZ-3d", bwd, backward_args, with_(dZ=view("dZ", lambda a: a[None])), ValueError, "dZ")
case("bwd-W-shape", bwd, backward_args, with_(W=Z(5, 5)), ValueError, "W must have shape")
case("bwd-dZ-shape", bwd, backward_args, with_(dZ=Z(6, 5)), ValueError, "dZ must have shape")
case("bwd-dZ-shape-cols", bwd, backward_args, with_(dZ=Z(7, 4)), ValueError, "dZ must have shape")
case("bwd-A_prev-fortran", bwd, backward_args, with_(A_prev=view("A_prev", fortran)), ValueError, "A_prev must be C-contiguous")
case("bwd-dZ-strided", bwd, backward_args, with_(dZ=view("dZ", strided)), ValueError, "dZ must be C-contiguous")
case("bwd-W-fortran", bwd, backward_args, with_(W=view("W", fortran)), ValueError, "W must be C-contiguous")
case("bwd-empty", bwd, backward_args, with_(A_prev=Z(0, 3), dZ=Z(0, 5)), ValueError, "A_prev and W must be non-empty")
case("bwd-activation_prev", bwd, backward_args, with_(activation_prev="gelu"), ValueError, "activation_prev")
case("bwd-activation_prev-none", bwd, backward_args, with_(activation_prev=None), ValueError, "activation_prev")
case("bwd-dW-readonly", bwd, backward_args, with_(dW=Z(3, 5, f=readonly)), ValueError, "dW must be writeable")
case("bwd-dW-shape", bwd, backward_args, with_(dW=Z(5, 3)), ValueError, "dW must have shape")
case("bwd-dW-dtype", bwd, backward_args, with_(dW=Z(3, 5, dtype=OTHER)), TypeError, "dW")
case("bwd-db-shape", bwd, backward_args, with_(db=Z(3)), ValueError, "db must have shape")
case("bwd-db-readonly", bwd, backward_args, with_(db=Z(5, f=readonly)), ValueError, "db must be writeable")
case("bwd-db-list", bwd, backward_args, with_(db=[0.0] * 5), TypeError, "db")
case("bwd-dZ_prev-shape", bwd, backward_args, with_(dZ_prev=Z(3, 7)), ValueError, "dZ_prev must have shape")
case("bwd-dZ_prev-fortran", bwd, backward_args, with_(dZ_prev=Z(7, 3, f=fortran)), ValueError, "dZ_prev must be C-contiguous")
case("bwd-dZ_prev-without-compute", bwd, backward_args,
     with_(dZ_prev=Z(7, 3), compute_dZ_prev=False), ValueError, "dZ_prev")
case("bwd-compute_dZ_prev-str", bwd, backward_args, with_(compute_dZ_prev="no"), TypeError,
     "compute_dZ_prev must be a bool")
case("bwd-dW-overlaps-A_prev", bwd, backward_args, shared_overlap("A_prev", "dW", (7, 3), (3, 5)),
     ValueError, "dW must not overlap")
case("bwd-dW-is-W", bwd, backward_args, with_(dW=lambda kw, dt: kw["W"]), ValueError, "dW must not overlap")
case("bwd-db-overlaps-dW", bwd, backward_args, shared_overlap("dW", "db", (3, 5), (5,)),
     ValueError, "db must not overlap")
case("bwd-dZ_prev-is-A_prev", bwd, backward_args, with_(dZ_prev=lambda kw, dt: kw["A_prev"]),
     ValueError, "dZ_prev must not overlap")
case("bwd-dZ_prev-overlaps-dZ", bwd, backward_args, shared_overlap("dZ", "dZ_prev", (7, 5), (7, 3)),
     ValueError, "dZ_prev must not overlap")

# --- softmax_cross_entropy ---------------------------------------------------------
xent = K.softmax_cross_entropy
case("xent-logits-list", xent, xent_args, with_(logits=view("logits", tolist)), TypeError, "logits")
case("xent-logits-int", xent, xent_args, with_(logits=cast("logits", np.int64)), TypeError, "logits")
case("xent-logits-1d", xent, xent_args, with_(logits=view("logits", np.ravel)), ValueError, "logits")
case("xent-logits-fortran", xent, xent_args, with_(logits=view("logits", fortran)), ValueError, "logits must be C-contiguous")
case("xent-logits-empty-rows", xent, xent_args, with_(logits=Z(0, 4), labels=labels_()), ValueError, "logits must be non-empty")
case("xent-logits-empty-cols", xent, xent_args, with_(logits=Z(7, 0)), ValueError, "logits must be non-empty")
case("xent-labels-list", xent, xent_args, with_(labels=[0, 1, 2, 3, 0, 1, 2]), TypeError, "labels")
case("xent-labels-int32", xent, xent_args, with_(labels=cast("labels", np.int32)), TypeError, "labels")
case("xent-labels-uint8", xent, xent_args, with_(labels=cast("labels", np.uint8)), TypeError, "labels")
case("xent-labels-float", xent, xent_args, with_(labels=cast("labels", F64)), TypeError, "labels")
case("xent-labels-2d", xent, xent_args, with_(labels=view("labels", lambda a: a[:, None])), ValueError, "labels")
case("xent-labels-strided", xent, xent_args, with_(labels=view("labels", strided)), ValueError, "labels must be C-contiguous")
case("xent-labels-length", xent, xent_args, with_(labels=labels_(0, 1, 2, 3, 0, 1)), ValueError, "labels must have length")
case("xent-labels-too-big", xent, xent_args, with_(labels=labels_(0, 1, 2, 5, 0, 1, 2)), ValueError, "labels must be in")
case("xent-labels-equal-k", xent, xent_args, with_(labels=labels_(0, 1, 2, 3, 0, 1, 4)), ValueError, "labels must be in")
case("xent-labels-negative", xent, xent_args, with_(labels=labels_(0, -1, 2, 3, 0, 1, 2)), ValueError, "labels must be in")
case("xent-labels-huge", xent, xent_args, with_(labels=labels_(*[2**62] * 7)), ValueError, "labels must be in")
case("xent-grad-readonly", xent, xent_args, with_(grad=Z(7, 4, f=readonly)), ValueError, "grad must be writeable")
case("xent-grad-shape", xent, xent_args, with_(grad=Z(4, 7)), ValueError, "grad must have shape")
case("xent-grad-dtype", xent, xent_args, with_(grad=Z(7, 4, dtype=OTHER)), TypeError, "grad")
case("xent-grad-is-logits", xent, xent_args, with_(grad=lambda kw, dt: kw["logits"]), ValueError, "grad must not overlap")
case("xent-grad-overlaps-logits", xent, xent_args, shared_overlap("logits", "grad", (7, 4), (7, 4)),
     ValueError, "grad must not overlap")

# --- softmax -------------------------------------------------------------------------
smax = K.softmax
case("softmax-logits-list", smax, softmax_args, with_(logits=[[1.0, 2.0]]), TypeError, "logits")
case("softmax-logits-int", smax, softmax_args, with_(logits=cast("logits", np.int64)), TypeError, "logits")
case("softmax-logits-3d", smax, softmax_args, with_(logits=view("logits", lambda a: a[None])), ValueError, "logits")
case("softmax-logits-fortran", smax, softmax_args, with_(logits=view("logits", fortran)), ValueError, "logits must be C-contiguous")
case("softmax-logits-empty", smax, softmax_args, with_(logits=Z(0, 4)), ValueError, "logits must be non-empty")
case("softmax-logits-empty-cols", smax, softmax_args, with_(logits=Z(4, 0)), ValueError, "logits must be non-empty")
case("softmax-out-readonly", smax, softmax_args, with_(out=Z(7, 4, f=readonly)), ValueError, "out must be writeable")
case("softmax-out-shape", smax, softmax_args, with_(out=Z(7, 5)), ValueError, "out must have shape")
case("softmax-out-dtype", smax, softmax_args, with_(out=Z(7, 4, dtype=OTHER)), TypeError, "out")
case("softmax-out-list", smax, softmax_args, with_(out=[[0.0] * 4] * 7), TypeError, "out")
case("softmax-out-strided", smax, softmax_args, with_(out=Z(7, 4, f=strided)), ValueError, "out must be C-contiguous")
case("softmax-out-partial-overlap", smax, softmax_args, shared_overlap("logits", "out", (7, 4), (7, 4)),
     ValueError, "out must not overlap")
case("softmax-inplace-readonly", smax, softmax_args,
     lambda kw, dt: (lambda z: dict(kw, logits=z, out=z))(readonly(kw["logits"])),
     ValueError, "out must be writeable")

# --- sgd_update ----------------------------------------------------------------------
sgd = K.sgd_update
case("sgd-W-list", sgd, sgd_args, with_(W=view("W", tolist)), TypeError, "W")
case("sgd-W-int", sgd, sgd_args, with_(W=cast("W", np.int64)), TypeError, "W")
case("sgd-W-scalar", sgd, sgd_args, with_(W=1.0), TypeError, "W")
case("sgd-grad-other-dtype", sgd, sgd_args, with_(grad=cast("grad", OTHER)), TypeError, "grad")
case("sgd-grad-list", sgd, sgd_args, with_(grad=view("grad", tolist)), TypeError, "grad")
case("sgd-velocity-other-dtype", sgd, sgd_args, with_(velocity=Z(3, 5, dtype=OTHER)), TypeError, "velocity")
case("sgd-grad-ndim", sgd, sgd_args, with_(grad=view("grad", np.ravel)), ValueError, "grad")
case("sgd-grad-shape", sgd, sgd_args, with_(grad=Z(5, 3)), ValueError, "grad must have shape")
case("sgd-velocity-shape", sgd, sgd_args, with_(velocity=Z(3, 4)), ValueError, "velocity must have shape")
case("sgd-W-readonly", sgd, sgd_args, with_(W=view("W", readonly)), ValueError, "W must be writeable")
case("sgd-velocity-readonly", sgd, sgd_args, with_(velocity=Z(3, 5, f=readonly)), ValueError, "velocity must be writeable")
case("sgd-W-fortran", sgd, sgd_args, with_(W=view("W", fortran)), ValueError, "W must be C-contiguous")
case("sgd-grad-strided", sgd, sgd_args, with_(grad=view("grad", strided)), ValueError, "grad must be C-contiguous")
case("sgd-velocity-transposed", sgd, sgd_args, with_(velocity=Z(5, 3, f=np.transpose)), ValueError, "velocity must be C-contiguous")
case("sgd-grad-is-W", sgd, sgd_args, with_(grad=lambda kw, dt: kw["W"]), ValueError, "grad")
case("sgd-velocity-is-W", sgd, sgd_args, with_(velocity=lambda kw, dt: kw["W"]), ValueError, "velocity")
case("sgd-velocity-overlaps-grad", sgd, sgd_args, shared_overlap("grad", "velocity", (3, 5), (3, 5)),
     ValueError, "velocity")
for bad, exc in [(float("nan"), ValueError), (-0.1, ValueError), (float("inf"), ValueError),
                 (None, TypeError), ([0.1], TypeError), (1j, TypeError), ("fast", TypeError)]:
    case(f"sgd-learning_rate-{bad!r}", sgd, sgd_args, with_(learning_rate=bad), exc, "learning_rate")
for bad in [1.0, 1.5, -0.1, float("nan"), float("inf")]:
    case(f"sgd-momentum-{bad!r}", sgd, sgd_args, with_(momentum=bad), ValueError, "momentum")
case("sgd-momentum-None", sgd, sgd_args, with_(momentum=None), TypeError, "momentum")
# text float() would parse, and bools, are not numbers here (adam_update's rule)
for name in ("learning_rate", "momentum", "l1", "l2"):
    case(f"sgd-{name}-str", sgd, sgd_args, with_(**{name: "0.5"}), TypeError, name)
    case(f"sgd-{name}-bool", sgd, sgd_args, with_(**{name: True}), TypeError, name)
for name in ("l1", "l2"):
    for bad in (-1e-3, float("nan"), float("inf")):
        case(f"sgd-{name}-{bad!r}", sgd, sgd_args, with_(**{name: bad}), ValueError, name)
    case(f"sgd-{name}-None", sgd, sgd_args, with_(**{name: None}), TypeError, name)

# --- sgd_update(nesterov) and adam_update -------------------------------------------
case("sgd-nesterov-int", sgd, sgd_args, with_(nesterov=1), TypeError, "nesterov")
case("sgd-nesterov-str", sgd, sgd_args, with_(nesterov="yes"), TypeError, "nesterov")
adam = K.adam_update
case("adam-W-list", adam, adam_args, with_(W=view("W", tolist)), TypeError, "W")
case("adam-W-int", adam, adam_args, with_(W=cast("W", np.int64)), TypeError, "W")
case("adam-grad-other-dtype", adam, adam_args, with_(grad=cast("grad", OTHER)), TypeError, "grad")
case("adam-m-other-dtype", adam, adam_args, with_(m=Z(3, 5, dtype=OTHER)), TypeError, "m")
case("adam-v-list", adam, adam_args, with_(v=[[0.0] * 5] * 3), TypeError, "v")
case("adam-grad-shape", adam, adam_args, with_(grad=Z(5, 3)), ValueError, "grad must have shape")
case("adam-m-shape", adam, adam_args, with_(m=Z(3, 4)), ValueError, "m must have shape")
case("adam-v-shape", adam, adam_args, with_(v=Z(15)), ValueError, "v")
case("adam-W-readonly", adam, adam_args, with_(W=view("W", readonly)), ValueError, "W must be writeable")
case("adam-m-readonly", adam, adam_args, with_(m=Z(3, 5, f=readonly)), ValueError, "m must be writeable")
case("adam-v-readonly", adam, adam_args, with_(v=Z(3, 5, f=readonly)), ValueError, "v must be writeable")
case("adam-v-fortran", adam, adam_args, with_(v=Z(3, 5, f=fortran)), ValueError, "v must be C-contiguous")
case("adam-m-is-W", adam, adam_args, with_(m=lambda kw, dt: kw["W"]), ValueError, "m must not overlap W")
case("adam-v-is-m", adam, adam_args, with_(v=lambda kw, dt: kw["m"]), ValueError, "v must not overlap m")
case("adam-v-overlaps-grad", adam, adam_args, shared_overlap("grad", "v", (3, 5), (3, 5)),
     ValueError, "v must not overlap grad")
for bad, exc in [(0, ValueError), (-1, ValueError), (2**62, ValueError), (1.0, TypeError),
                 (None, TypeError), (True, TypeError), (np.True_, TypeError)]:
    case(f"adam-t-{bad!r}", adam, adam_args, with_(t=bad), exc, "t")
for name, bads in (("learning_rate", (0.0, -1.0, float("nan"), float("inf"))),
                   ("beta1", (1.0, 1.5, -0.1, float("nan"))), ("beta2", (1.0, -1e-9)),
                   ("eps", (0.0, -1e-8, float("inf"))),
                   ("weight_decay", (-0.1, float("nan"))), ("l1", (-1.0,)), ("l2", (float("inf"),))):
    for bad in bads:
        case(f"adam-{name}-{bad!r}", adam, adam_args, with_(**{name: bad}), ValueError, name)
    case(f"adam-{name}-str", adam, adam_args, with_(**{name: "0.1"}), TypeError, name)
    case(f"adam-{name}-bool", adam, adam_args, with_(**{name: True}), TypeError, name)
# an eps below the dtype's smallest normal number is flushed to 0 in the kernels,
# and a weight whose gradient is 0 would be divided by 0
case("adam-eps-subnormal", adam, adam_args, with_(eps=1e-320), ValueError, "eps must be at least")

# --- dropout_mask -------------------------------------------------------------------
dmask = K.dropout_mask
for name in ("rows", "width"):
    case(f"mask-{name}-negative", dmask, mask_args, with_(**{name: -1}), ValueError, name)
    case(f"mask-{name}-float", dmask, mask_args, with_(**{name: 2.0}), TypeError, name)
case("mask-huge", dmask, mask_args, with_(rows=2**40, width=2**40), ValueError, "rows")
for bad, exc in [(1.0, ValueError), (-0.1, ValueError), (float("nan"), ValueError),
                 ("0.5", TypeError), (None, TypeError)]:
    case(f"mask-rate-{bad!r}", dmask, mask_args, with_(rate=bad), exc, "rate")
for name in ("seed", "epoch", "step", "layer"):
    for bad, exc in [(-1, ValueError), (2**64, ValueError), (1.5, TypeError), (None, TypeError)]:
        case(f"mask-{name}-{bad!r}", dmask, mask_args, with_(**{name: bad}), exc, name)

# --- softmax_cross_entropy(sample_weight) ------------------------------------------------
def xent_w(f=None, dtype=None, length=7):
    return Z(length, dtype=dtype, f=f)


def weights_with(value, at=3):
    def make(kw, dt):
        w = np.ones(7, dt)
        w[at] = value
        return w
    return make


case("xent-sample_weight-other-dtype", xent, xent_args, with_(sample_weight=xent_w(dtype=OTHER)), TypeError, "sample_weight")
case("xent-sample_weight-int", xent, xent_args, with_(sample_weight=xent_w(dtype=np.int64)), TypeError, "sample_weight")
case("xent-sample_weight-list", xent, xent_args, with_(sample_weight=[1.0] * 7), TypeError, "sample_weight")
case("xent-sample_weight-2d", xent, xent_args, with_(sample_weight=Z(7, 1)), ValueError, "sample_weight")
case("xent-sample_weight-length", xent, xent_args, with_(sample_weight=xent_w(length=6)), ValueError, "sample_weight must have length")
case("xent-sample_weight-strided", xent, xent_args, with_(sample_weight=xent_w(f=strided)), ValueError, "sample_weight must be C-contiguous")
for bad in (float("nan"), float("inf"), -1.0, -1e-30):
    case(f"xent-sample_weight-{bad!r}", xent, xent_args, with_(sample_weight=weights_with(bad)),
         ValueError, "sample_weight must be finite and >= 0")
case("xent-grad-overlaps-sample_weight", xent, xent_args,
     shared_overlap("grad", "sample_weight", (7, 4), (7,)), ValueError, "grad must not overlap")

# --- train_batches -----------------------------------------------------------------------
tb = K.train_batches
P = n_params(SIZES)


def intp(*shape, f=None):
    return Z(*shape, dtype=np.intp, f=f)


def replace_where(name, old, new):
    return lambda kw, dt: np.where(kw[name] == old, new, kw[name]).astype(np.intp)


def with_ws(**fields):
    """kwargs["ws"] with ``fields`` replaced (values as in ``with_``)."""
    def modify(kw, dt):
        current = dict(vars(kw["ws"]))
        for k, v in fields.items():
            current[k] = v(kw, dt) if callable(v) else v
        kw["ws"] = types.SimpleNamespace(**current)
        return kw
    return modify


def ws_view(field, f):
    return lambda kw, dt: f(getattr(kw["ws"], field))


def without_ws(field):
    def modify(kw, dt):
        current = dict(vars(kw["ws"]))
        del current[field]
        kw["ws"] = types.SimpleNamespace(**current)
        return kw
    return modify


def hyper_(**changes):
    return with_(hyper=lambda kw, dt: kw["hyper"]._replace(**changes))


def sliced_bytes(length_a, length_b, dtype_a, dtype_b):
    """Two arrays of dtypes a and b that share one byte, from one raw buffer."""
    ia, ib = np.dtype(dtype_a).itemsize, np.dtype(dtype_b).itemsize
    raw = np.zeros(length_a * ia + length_b * ib, np.uint8)
    a = raw[:length_a * ia].view(dtype_a)
    b = raw[length_a * ia - 1:length_a * ia - 1 + length_b * ib].view(dtype_b) if ib == 1 else \
        raw[length_a * ia - ib:length_a * ia - ib + length_b * ib].view(dtype_b)
    return a, b


def overlap_ws(field_a, field_b):
    """ws.field_a and ws.field_b sharing bytes."""
    def modify(kw, dt):
        ws = kw["ws"]
        a0, b0 = getattr(ws, field_a), getattr(ws, field_b)
        a, b = sliced_bytes(a0.size, b0.size, a0.dtype.newbyteorder("="), b0.dtype.newbyteorder("="))
        return with_ws(**{field_a: a, field_b: b})(kw, dt)
    return modify


def overlap_input(field, name):
    """ws.field sharing bytes with the input ``name`` (its values kept)."""
    def modify(kw, dt):
        arr = getattr(kw["ws"], field)
        inp = kw[name]
        a, b = sliced_bytes(inp.size, arr.size, inp.dtype, arr.dtype)
        a[...] = inp.reshape(-1)
        kw[name] = a.reshape(inp.shape)
        return with_ws(**{field: b})(kw, dt)
    return modify


case("train-X-list", tb, train_args, with_(X=view("X", tolist)), TypeError, "X")
case("train-X-int", tb, train_args, with_(X=cast("X", np.int64)), TypeError, "X")
case("train-X-fortran", tb, train_args, with_(X=view("X", fortran)), ValueError, "X must be C-contiguous")
case("train-X-strided", tb, train_args, with_(X=view("X", strided)), ValueError, "X must be C-contiguous")
case("train-X-1d", tb, train_args, with_(X=view("X", np.ravel)), ValueError, "X")
case("train-X-columns", tb, train_args, with_(X=Z(20, 5)), ValueError, "X must have 4 columns")
case("train-y-int32", tb, train_args, with_(y=cast("y", np.int32)), TypeError, "y")
case("train-y-list", tb, train_args, with_(y=view("y", tolist)), TypeError, "y")
case("train-y-length", tb, train_args, with_(y=view("y", lambda a: a[:19].copy())), ValueError, "y must have length")
case("train-y-label-too-big", tb, train_args, with_(y=replace_where("y", 2, 3)), ValueError, "y must be in")
case("train-y-label-negative", tb, train_args, with_(y=replace_where("y", 2, -1)), ValueError, "y must be in")
case("train-order-int32", tb, train_args, with_(order=cast("order", np.int32)), TypeError, "order")
case("train-order-float", tb, train_args, with_(order=cast("order", F64)), TypeError, "order")
case("train-order-list", tb, train_args, with_(order=view("order", tolist)), TypeError, "order")
case("train-order-strided", tb, train_args, with_(order=view("order", strided)), ValueError, "order must be C-contiguous")
case("train-order-too-big", tb, train_args, with_(order=replace_where("order", 0, 20)), ValueError, "order")
case("train-order-negative", tb, train_args, with_(order=replace_where("order", 0, -1)), ValueError, "order")
case("train-order-huge", tb, train_args, with_(order=replace_where("order", 0, 2**40)), ValueError, "order")
case("train-start-gt-stop", tb, train_args, with_(start=10, stop=5), ValueError, "start")
case("train-start-negative", tb, train_args, with_(start=-1), ValueError, "start")
case("train-stop-past-order", tb, train_args, with_(stop=21), ValueError, "stop")
case("train-stop-huge", tb, train_args, with_(stop=2**70), ValueError, "stop")
case("train-start-float", tb, train_args, with_(start=1.5), TypeError, "start")
case("train-stop-None", tb, train_args, with_(stop=None), TypeError, "stop")
case("train-batch_size-zero", tb, train_args, with_(batch_size=0), ValueError, "batch_size")
case("train-batch_size-negative", tb, train_args, with_(batch_size=-5), ValueError, "batch_size")
case("train-batch_size-float", tb, train_args, with_(batch_size=5.0), TypeError, "batch_size")
case("train-batch_size-huge", tb, train_args, with_(batch_size=2**70), ValueError, "batch_size")
case("train-sizes-list", tb, train_args, with_(sizes=list(SIZES)), TypeError, "sizes")
case("train-sizes-int32", tb, train_args, with_(sizes=cast("sizes", np.int32)), TypeError, "sizes")
case("train-sizes-one", tb, train_args, with_(sizes=lambda kw, dt: np.array([4], np.intp)), ValueError, "sizes")
case("train-sizes-zero", tb, train_args, with_(sizes=lambda kw, dt: np.array([4, 0, 3], np.intp)), ValueError, "sizes")
case("train-sizes-negative", tb, train_args, with_(sizes=lambda kw, dt: np.array([4, -6, 3], np.intp)), ValueError, "sizes")
case("train-sizes-2d", tb, train_args, with_(sizes=view("sizes", lambda a: a[None])), ValueError, "sizes")
case("train-activation", tb, train_args, with_(activation="swish"), ValueError, "activation")
case("train-n_threads-zero", tb, train_args, with_(n_threads=0), ValueError, "n_threads")
case("train-n_threads-float", tb, train_args, with_(n_threads=2.0), TypeError, "n_threads")
# params and slots
case("train-params-size", tb, train_args, with_(params=Z(P - 1)), ValueError, "params must have")
case("train-params-dtype", tb, train_args, with_(params=Z(P, dtype=OTHER)), TypeError, "params")
case("train-params-readonly", tb, train_args, with_(params=Z(P, f=readonly)), ValueError, "params must be writeable")
case("train-params-2d", tb, train_args, with_(params=Z(1, P)), ValueError, "params")
case("train-params-list", tb, train_args, with_(params=[0.0] * P), TypeError, "params")
case("train-slots-1d", tb, train_args, with_(slots=Z(P)), ValueError, "slots must be 2-D")
case("train-slots-dtype", tb, train_args, with_(slots=Z(2, P, dtype=OTHER)), TypeError, "slots")
case("train-slots-list", tb, train_args, with_(slots=[[0.0] * P]), TypeError, "slots")
case("train-slots-columns", tb, train_args, with_(slots=Z(2, P + 1)), ValueError, "slots must have shape")
case("train-slots-none", tb, train_args, with_(slots=Z(0, P)), ValueError, "slots must have at least 1 rows")
case("train-slots-adam-one", tb, full_train_args, with_(slots=Z(1, P)), ValueError,
     "slots must have at least 2 rows for hyper.kind 'adam'")
case("train-slots-readonly", tb, train_args, with_(slots=Z(2, P, f=readonly)), ValueError, "slots must be writeable")
case("train-slots-fortran", tb, train_args, with_(slots=Z(2, P, f=fortran)), ValueError, "slots must be C-contiguous")
case("train-slots-transposed", tb, train_args, with_(slots=Z(P, 2, f=np.transpose)), ValueError, "slots must be C-contiguous")
case("train-slots-is-params", tb, train_args, with_(slots=lambda kw, dt: kw["params"][None, :]), ValueError,
     "params and slots must not overlap")
# ws
case("train-ws-None", tb, train_args, with_(ws=None), TypeError, "ws must have the attribute 'grads'")
case("train-ws-dict", tb, train_args, with_(ws=lambda kw, dt: dict(vars(kw["ws"]))), TypeError, "ws must have")
for field in WS_FIELDS:
    case(f"train-ws-no-{field}", tb, train_args, without_ws(field), TypeError, f"ws must have the attribute '{field}'")
    case(f"train-ws-{field}-list", tb, train_args, with_ws(**{field: ws_view(field, tolist)}), TypeError, f"ws.{field}")
    case(f"train-ws-{field}-readonly", tb, train_args, with_ws(**{field: ws_view(field, readonly)}), ValueError,
         f"ws.{field} must be writeable")
    case(f"train-ws-{field}-2d", tb, train_args, with_ws(**{field: ws_view(field, lambda a: a[None].copy())}),
         ValueError, f"ws.{field} must be 1-D")
    case(f"train-ws-{field}-strided", tb, train_args, with_ws(**{field: ws_view(field, strided)}), ValueError,
         f"ws.{field} must be C-contiguous")
    if field != "grads":
        case(f"train-ws-{field}-small", tb, train_args, with_ws(**{field: ws_view(field, lambda a: a[:-1].copy())}),
             ValueError, f"ws.{field} must have at least")
case("train-ws-grads-big", tb, train_args, with_ws(grads=Z(P + 1)), ValueError, "ws.grads must have")
case("train-ws-grads-small", tb, train_args, with_ws(grads=Z(P - 1)), ValueError, "ws.grads must have")
case("train-ws-grads-dtype", tb, train_args, with_ws(grads=Z(P, dtype=OTHER)), TypeError, "ws.grads")
case("train-ws-acts-dtype", tb, train_args, with_ws(acts=ws_view("acts", lambda a: a.astype(np.float16))), TypeError, "ws.acts")
case("train-ws-deltas-dtype", tb, train_args, with_ws(deltas=Z(NEED.deltas, dtype=OTHER)), TypeError, "ws.deltas")
case("train-ws-ybuf-int32", tb, train_args, with_ws(ybuf=ws_view("ybuf", lambda a: a.astype(np.int32))), TypeError, "ws.ybuf")
case("train-ws-wbuf-dtype", tb, train_args, with_ws(wbuf=Z(NEED.wbuf, dtype=OTHER)), TypeError, "ws.wbuf")
case("train-ws-wbuf-int", tb, train_args, with_ws(wbuf=intp(NEED.wbuf)), TypeError, "ws.wbuf")
case("train-ws-masks-bool", tb, train_args, with_ws(masks=Z(NEED.masks, dtype=np.bool_)), TypeError, "ws.masks")
case("train-ws-masks-float", tb, train_args, with_ws(masks=Z(NEED.masks)), TypeError, "ws.masks")
case("train-ws-masks-int8", tb, train_args, with_ws(masks=Z(NEED.masks, dtype=np.int8)), TypeError, "ws.masks")
case("train-bigger-batch-needs-bigger-acts", tb, train_args, with_(batch_size=BATCH + 1), ValueError, "ws.acts must have")
# disjointness: of every pair of written buffers, and against every input
case("train-grads-is-params", tb, train_args, with_ws(grads=lambda kw, dt: kw["params"]), ValueError,
     "params and ws.grads must not overlap")
case("train-slots-overlap-grads", tb, train_args,
     lambda kw, dt: (lambda buf: with_ws(grads=buf[2 * P - 1:3 * P - 1])(dict(kw, slots=buf[:2 * P].reshape(2, P)), dt))(
         np.zeros(3 * P, dt)), ValueError, "slots and ws.grads must not overlap")
case("train-acts-overlaps-deltas", tb, train_args, overlap_ws("acts", "deltas"), ValueError,
     "ws.acts and ws.deltas must not overlap")
case("train-wbuf-overlaps-masks", tb, train_args, overlap_ws("wbuf", "masks"), ValueError,
     "ws.wbuf and ws.masks must not overlap")
case("train-ybuf-overlaps-masks", tb, train_args, overlap_ws("ybuf", "masks"), ValueError,
     "ws.ybuf and ws.masks must not overlap")
case("train-deltas-overlaps-wbuf", tb, train_args, overlap_ws("deltas", "wbuf"), ValueError,
     "ws.deltas and ws.wbuf must not overlap")
case("train-acts-overlaps-X", tb, train_args, overlap_input("acts", "X"), ValueError, "ws.acts must not overlap X")
case("train-masks-overlaps-X", tb, train_args, overlap_input("masks", "X"), ValueError, "ws.masks must not overlap X")
case("train-ybuf-is-y", tb, train_args, with_ws(ybuf=lambda kw, dt: kw["y"]), ValueError, "ws.ybuf must not overlap y")
case("train-ybuf-overlaps-order", tb, train_args, with_ws(ybuf=lambda kw, dt: kw["order"][:BATCH]),
     ValueError, "ws.ybuf must not overlap order")
case("train-wbuf-overlaps-sample_weight", tb, full_train_args,
     with_ws(wbuf=lambda kw, dt: kw["sample_weight"][:BATCH]), ValueError, "ws.wbuf must not overlap sample_weight")
case("train-params-overlaps-sample_weight", tb, full_train_args,
     with_(sample_weight=lambda kw, dt: kw["params"][:20]), ValueError, "params must not overlap sample_weight")
case("train-slots-overlaps-X", tb, train_args, with_(X=lambda kw, dt: kw["slots"].reshape(-1)[:80].reshape(20, 4)),
     ValueError, "slots must not overlap X")
# hyper
case("train-hyper-None", tb, train_args, with_(hyper=None), TypeError, "hyper must have the attribute 'kind'")
case("train-hyper-tuple", tb, train_args, with_(hyper=("sgd", 0.1)), TypeError, "hyper must have the attribute")
case("train-hyper-kind-unknown", tb, train_args, hyper_(kind="rmsprop"), ValueError, "hyper.kind must be one of")
case("train-hyper-kind-case", tb, train_args, hyper_(kind="SGD"), ValueError, "hyper.kind")
case("train-hyper-kind-int", tb, train_args, hyper_(kind=0), TypeError, "hyper.kind must be a str")
case("train-hyper-beta1-1.5", tb, full_train_args, hyper_(beta1=1.5), ValueError,
     r"hyper.beta1 must be in \[0, 1\), got 1.5")
case("train-hyper-eps-subnormal", tb, full_train_args, hyper_(eps=1e-320), ValueError,
     "hyper.eps must be at least")
for name, bads in (("learning_rate", (0.0, -1.0, float("nan"), float("inf"))),
                   ("momentum", (1.0, -0.5, float("nan"))), ("beta1", (1.0, -0.1)),
                   ("beta2", (1.0, float("nan"))), ("eps", (0.0, -1.0, float("inf"))),
                   ("weight_decay", (-0.1, float("inf"))), ("l1", (-1.0, float("nan"))),
                   ("l2", (-1e-3, float("nan")))):
    for bad in bads:
        case(f"train-hyper-{name}-{bad!r}", tb, train_args, hyper_(**{name: bad}), ValueError, f"hyper.{name}")
    for bad in ("fast", None, True, 1j):
        case(f"train-hyper-{name}-{bad!r}", tb, train_args, hyper_(**{name: bad}), TypeError, f"hyper.{name}")
for bad, exc in [(-1, ValueError), (2**62, ValueError), (1.0, TypeError), (None, TypeError), (True, TypeError)]:
    case(f"train-hyper-t-{bad!r}", tb, full_train_args, hyper_(t=bad), exc, "hyper.t")
for bad in (1, "yes", None):
    case(f"train-hyper-nesterov-{bad!r}", tb, train_args, hyper_(nesterov=bad), TypeError, "hyper.nesterov")
# sample_weight
case("train-sample_weight-other-dtype", tb, full_train_args, with_(sample_weight=Z(20, dtype=OTHER)), TypeError, "sample_weight")
case("train-sample_weight-int", tb, full_train_args, with_(sample_weight=intp(20)), TypeError, "sample_weight")
case("train-sample_weight-list", tb, full_train_args, with_(sample_weight=[1.0] * 20), TypeError, "sample_weight")
case("train-sample_weight-2d", tb, full_train_args, with_(sample_weight=Z(20, 1)), ValueError, "sample_weight")
case("train-sample_weight-length", tb, full_train_args, with_(sample_weight=Z(19)), ValueError, "sample_weight must have length 20")
case("train-sample_weight-strided", tb, full_train_args, with_(sample_weight=Z(20, f=strided)), ValueError,
     "sample_weight must be C-contiguous")


def weight_at(value, row):
    def make(kw, dt):
        w = np.ones(20, dt)
        w[row] = value
        return w
    return make


for bad in (float("nan"), float("inf"), -float("inf"), -1.0, -1e-30):
    case(f"train-sample_weight-{bad!r}", tb, full_train_args, with_(sample_weight=weight_at(bad, 4)),
         ValueError, "sample_weight must be finite and >= 0")
# dropout
case("train-dropout-list", tb, train_args, with_(dropout=[0.2, 0.5]), TypeError, "dropout")
case("train-dropout-float32", tb, train_args, with_(dropout=lambda kw, dt: np.array([0.2, 0.5], np.float32)), TypeError, "dropout")
case("train-dropout-int", tb, train_args, with_(dropout=lambda kw, dt: np.array([0, 0])), TypeError, "dropout")
case("train-dropout-length", tb, train_args, with_(dropout=lambda kw, dt: np.array([0.2, 0.5, 0.1])), ValueError,
     r"dropout must have shape \(2,\)")
case("train-dropout-short", tb, train_args, with_(dropout=lambda kw, dt: np.array([0.2])), ValueError, "dropout must have shape")
case("train-dropout-2d", tb, train_args, with_(dropout=lambda kw, dt: np.array([[0.2, 0.5]])), ValueError, "dropout must have shape")
for l, bad in ((0, 1.0), (1, 1.0), (1, -0.1), (0, float("nan")), (1, float("inf")), (0, 1.5)):
    case(f"train-dropout-{l}-{bad!r}", tb, train_args,
         with_(dropout=lambda kw, dt, l=l, bad=bad: np.array([0.5, 0.5][:l] + [bad] + [0.5, 0.5][l + 1:2])),
         ValueError, rf"dropout\[{l}\] must be in \[0, 1\)")
# seed and epoch
for name in ("seed", "epoch"):
    for bad, exc in [(-1, ValueError), (2**64, ValueError), (1.5, TypeError), (None, TypeError), ("1", TypeError)]:
        case(f"train-{name}-{bad!r}", tb, full_train_args, with_(**{name: bad}), exc, name)


def snapshot(kw):
    """Copies of every writeable ndarray argument (and of the work space's
    buffers), to check nothing was written."""
    arrays = dict(kw)
    ws = kw.get("ws")
    if isinstance(ws, types.SimpleNamespace):
        arrays.update({f"ws.{k}": v for k, v in vars(ws).items()})
    return {k: v.copy() for k, v in arrays.items()
            if isinstance(v, np.ndarray) and v.flags.writeable}


def current(kw, name):
    return getattr(kw["ws"], name[3:]) if name.startswith("ws.") else kw[name]


@pytest.mark.parametrize("fn,base,modify,exc,match", CASES)
@pytest.mark.parametrize("dtype", [F64, F32], ids=["float64", "float32"])
def test_bad_argument_is_refused(fn, base, modify, exc, match, dtype):
    kw = modify(base(dtype), dtype)
    before = snapshot(kw)
    with pytest.raises(exc, match=match):
        fn(**kw)
    for name, old in before.items():
        np.testing.assert_array_equal(current(kw, name), old, err_msg=f"{name} was written")


# ---------------------------------------------------------------------------
# Edge cases that are valid (and must not crash either)
# ---------------------------------------------------------------------------

def test_softmax_out_is_logits_is_allowed():
    z = np.array([[0.0, np.log(3.0)]])
    assert K.softmax(z, out=z) is z
    np.testing.assert_allclose(z, [[0.25, 0.75]])


def test_train_batches_ignores_labels_outside_the_range():
    """Only the rows order[start:stop] are checked and used."""
    kw = train_args()
    kw["y"][kw["order"][10:]] = 99
    kw["start"], kw["stop"] = 0, 10
    assert K.train_batches(**kw)[0] == 10


def test_train_batches_empty_order():
    kw = train_args()
    kw.update(order=np.zeros(0, np.intp), start=0, stop=0)
    params = kw["params"].copy()
    assert K.train_batches(**kw) == (0, 0.0, 0, False)
    np.testing.assert_array_equal(kw["params"], params)


def test_train_batches_numpy_integer_indices():
    kw = train_args()
    kw.update(start=np.int32(2), stop=np.int64(17), batch_size=np.int8(4))
    assert K.train_batches(**kw)[0] == 15


def test_unaligned_arrays_work():
    """Misaligned (but C-contiguous) data is accepted and computed correctly."""
    raw = np.zeros(7 * 3 * 8 + 1, np.uint8)
    X = np.frombuffer(raw.data, F64, count=21, offset=1).reshape(7, 3)
    assert not X.flags.aligned
    kw = forward_args()
    X[...] = kw["X"]
    np.testing.assert_allclose(K.dense_forward(X, kw["W"], kw["b"], "relu"),
                               K.dense_forward(**kw))


def test_readonly_inputs_are_fine():
    kw = forward_args()
    for name in ("X", "W", "b"):
        kw[name] = readonly(kw[name])
    assert K.dense_forward(**kw).shape == (7, 5)
    kw = xent_args()
    kw["logits"], kw["labels"] = readonly(kw["logits"]), readonly(kw["labels"])
    assert np.isfinite(K.softmax_cross_entropy(**kw)[0])
    kw = sgd_args()
    kw["grad"] = readonly(kw["grad"])
    K.sgd_update(**kw)
    kw = full_train_args()
    for name in ("X", "y", "order", "sizes", "sample_weight", "dropout"):
        kw[name] = readonly(kw[name])
    assert K.train_batches(**kw)[0] == 20


def test_train_batches_sizes_sharing_a_work_buffer_cannot_corrupt_the_layout():
    """The kernel rereads the layer widths every batch: it works on a private
    copy, so widths that alias ybuf (overwritten by the label gather) still
    give exactly the result of an independent sizes array."""
    from fastnn import kernels
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2))
    y = rng.integers(0, 3, 40).astype(np.intp)
    order = np.arange(40, dtype=np.intp)
    widths = [2, 3, 3]
    n_par = 2 * 3 + 3 * 3 + 3 + 3

    def run(alias):
        params = np.linspace(-1, 1, n_par)
        slots = np.zeros((1, n_par))
        need = workspace_sizes(widths, 8)
        ws = types.SimpleNamespace(grads=np.zeros(n_par), acts=np.zeros(need.acts),
                                   deltas=np.zeros(need.deltas), ybuf=np.zeros(8, np.intp),
                                   wbuf=np.zeros(8), masks=np.zeros(need.masks, np.uint8))
        if alias:
            ws.ybuf[:3] = widths
            sizes = ws.ybuf[:3]
        else:
            sizes = np.array(widths, dtype=np.intp)
        out = kernels.train_batches(X, y, order, 0, 40, 8, sizes, "relu", params, slots, ws,
                                    kernels.Hyper("sgd", 0.1, momentum=0.9))
        return out, params

    (out_a, p_a), (out_b, p_b) = run(True), run(False)
    assert out_a == out_b
    np.testing.assert_array_equal(p_a, p_b)
