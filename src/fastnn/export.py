"""Export a trained model to ONNX, to serve it without fastnn.

Needs the ``onnx`` package (``pip install 'fastnn[onnx]'``), imported only
here and only when a model is exported: ``import fastnn`` never imports it.

The graph (opset :data:`OPSET`, IR version :data:`IR_VERSION`):

* input ``"X"``: ``(N, n_features)`` of the model's dtype (float32, or float64
  for a float64 model); ``N`` is free;
* one ``Gemm`` per layer (``X @ W + b``, ``W`` as ``coefs_``) and the hidden
  activation after each hidden one (``Relu``, ``Tanh``, ``Sigmoid``, or
  none for ``"identity"``);
* outputs, by the model's output (:func:`output_kind`):

  - ``"softmax"`` (a classifier, fastnn's ``MLP``): ``"probabilities"``
    ``(N, n_classes)`` (``Softmax`` of the last layer), ``"label"`` ``(N,)``
    (``ArgMax``: int64 class indices, or the elements of ``classes``: int64 for
    integers (uint64 past int64's range), bool, double, or string);
  - ``"logistic"`` (one logistic output for two classes): ``"probabilities"``
    ``(N, 2)``, ``[1 - p, p]``, and ``"label"`` (``p > 0.5``);
  - ``"identity"`` (a regressor): ``"predictions"`` ``(N, n_outputs)``.

>>> import numpy as np, fastnn
>>> model = fastnn.MLP([4, 8, 3], seed=0)
>>> output_kind(model), output_names(model)
('softmax', ('probabilities', 'label'))
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .model import MLP

#: The ONNX operator set the graph uses (Softmax over the last axis, opset 13's).
OPSET = 13
#: The ONNX IR version written (the one of opset 13: read by onnxruntime >= 1.8).
IR_VERSION = 7
#: The input's name.
INPUT = "X"
#: The hidden activations and their ONNX operators (``None``: no node).
ACTIVATION_OPS = {"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid", "identity": None}
#: The model's output kind by its ``loss`` attribute (a model without one is a
#: softmax classifier, as ``MLP`` is).
OUTPUT_OF_LOSS = {None: "softmax", "cross_entropy": "softmax",
                  "binary_cross_entropy": "logistic", "mse": "identity"}
#: Each output kind's graph outputs.
OUTPUTS = {"softmax": ("probabilities", "label"), "logistic": ("probabilities", "label"),
           "identity": ("predictions",)}


def output_kind(model: MLP) -> str:
    """``"softmax"``, ``"logistic"`` or ``"identity"``: the output of ``model``,
    read from its ``loss`` attribute (:data:`OUTPUT_OF_LOSS`)."""
    loss = getattr(model, "loss", None)
    if loss not in OUTPUT_OF_LOSS:
        raise ValueError(f"cannot export a model with loss={loss!r} to ONNX "
                         f"(known: {sorted(k for k in OUTPUT_OF_LOSS if k)})")
    return OUTPUT_OF_LOSS[loss]


def output_names(model: MLP) -> tuple[str, ...]:
    """The names of the graph's outputs for ``model``."""
    return OUTPUTS[output_kind(model)]


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ImportError("ONNX export needs the onnx package: pip install 'fastnn[onnx]'") \
            from None
    return onnx


def _classes_tensor(classes: Any, n_classes: int) -> tuple[np.ndarray, int]:
    """``classes`` as an array for the graph's label lookup, and its ONNX element type."""
    onnx = _import_onnx()
    if not isinstance(classes, np.ndarray) and isinstance(classes, (list, tuple)):
        kinds = {isinstance(c, (str, np.str_)) for c in classes}
        if len(kinds) > 1:  # np.asarray would make the numbers strings: "1" for 1
            raise TypeError(f"classes must be all strings or all numbers, got a mix: "
                            f"{list(classes)!r}")
    arr = np.asarray(classes)
    if arr.ndim != 1 or arr.shape[0] != n_classes:
        raise ValueError(f"classes must list the model's {n_classes} classes, got shape "
                         f"{arr.shape}")
    if arr.dtype.kind == "b":  # labels True/False, not 1/0
        return arr, onnx.TensorProto.BOOL
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        return arr.astype(np.uint64), onnx.TensorProto.UINT64  # would wrap in int64
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64), onnx.TensorProto.INT64
    if arr.dtype.kind == "f":
        return arr.astype(np.float64), onnx.TensorProto.DOUBLE
    if arr.dtype.kind in "UO" and all(isinstance(c, str) for c in arr.tolist()):
        return arr.astype(object), onnx.TensorProto.STRING
    raise TypeError(f"classes must be integers, floats or strings to export, got dtype "
                    f"{arr.dtype}")


def to_onnx_model(model: MLP, classes: Any = None, name: str = "fastnn") -> Any:
    """The ``onnx.ModelProto`` of ``model`` (see the module's description).

    ``classes``: the labels that ``"label"`` reports, one per class (the
    default: the class indices, int64).
    """
    kind = output_kind(model)
    if kind == "identity" and classes is not None:
        raise ValueError("classes is for classifiers: a regressor (loss='mse') has no labels "
                         "to export")
    if model.activation not in ACTIVATION_OPS:
        raise ValueError(f"cannot export activation {model.activation!r} to ONNX")
    onnx = _import_onnx()
    from onnx import TensorProto, helper, numpy_helper
    elem = TensorProto.FLOAT if model.dtype == np.float32 else TensorProto.DOUBLE
    weights, biases = model.coefs_, model.intercepts_
    inits, nodes = [], []
    x = INPUT
    last = len(weights) - 1
    for i, (W, b) in enumerate(zip(weights, biases)):
        inits += [numpy_helper.from_array(np.ascontiguousarray(W), f"W{i}"),
                  numpy_helper.from_array(np.ascontiguousarray(b), f"b{i}")]
        out = "logits" if i == last else f"z{i}"
        nodes.append(helper.make_node("Gemm", [x, f"W{i}", f"b{i}"], [out], name=f"dense{i}"))
        x = out
        op = ACTIVATION_OPS[model.activation]
        if i < last and op is not None:
            nodes.append(helper.make_node(op, [x], [f"h{i}"], name=f"{model.activation}{i}"))
            x = f"h{i}"
    n_out = model.layers[-1]
    outputs = []
    if kind == "identity":
        nodes.append(helper.make_node("Identity", ["logits"], ["predictions"]))
        outputs.append(helper.make_tensor_value_info("predictions", elem, ["N", n_out]))
    else:
        n_classes = 2 if kind == "logistic" else n_out
        if kind == "softmax":
            nodes += [helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
                      helper.make_node("ArgMax", ["logits"], ["index"], axis=1, keepdims=0)]
        else:  # one logistic unit p: probabilities [1 - p, p], label p > 0.5
            inits += [numpy_helper.from_array(np.ones((1, 1), model.dtype), "one"),
                      numpy_helper.from_array(np.zeros((1, 1), model.dtype), "zero")]
            nodes += [helper.make_node("Sigmoid", ["logits"], ["p"]),
                      helper.make_node("Sub", ["one", "p"], ["q"]),
                      helper.make_node("Concat", ["q", "p"], ["probabilities"], axis=1),
                      # p > 0.5 exactly where the logit is > 0
                      helper.make_node("Greater", ["logits", "zero"], ["positive"]),
                      helper.make_node("Cast", ["positive"], ["index2d"], to=TensorProto.INT64),
                      helper.make_node("Squeeze", ["index2d", "axis1"], ["index"])]
            inits.append(numpy_helper.from_array(np.array([1], np.int64), "axis1"))
        outputs.append(helper.make_tensor_value_info("probabilities", elem, ["N", n_classes]))
        if classes is None:
            nodes.append(helper.make_node("Identity", ["index"], ["label"]))
            label_type: int = TensorProto.INT64
        else:
            table, label_type = _classes_tensor(classes, n_classes)
            inits.append(numpy_helper.from_array(table, "classes"))
            nodes.append(helper.make_node("Gather", ["classes", "index"], ["label"], axis=0))
        outputs.append(helper.make_tensor_value_info("label", label_type, ["N"]))
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info(INPUT, elem, ["N", model.layers[0]])],
        outputs, initializer=inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="fastnn", producer_version=_version())
    proto.ir_version = IR_VERSION
    onnx.checker.check_model(proto)
    return proto


def _version() -> str:
    from ._version import __version__
    return __version__


def to_onnx(model: MLP, path: str | os.PathLike[str], classes: Any = None) -> None:
    """Write ``model`` to ``path`` as an ONNX file (see :func:`to_onnx_model`), atomically."""
    from ._atomic import atomic_write_bytes
    proto = to_onnx_model(model, classes)
    atomic_write_bytes(path, proto.SerializeToString())
