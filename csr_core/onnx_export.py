"""Export a style as an ONNX graph (``csr export-onnx``): CSRNet for any ONNX runtime, in any language.

One graph, built from the layer table (``csr_core.architecture``) and the style's weights, with two
inputs: ``condition`` (1 x 3 x h x w float32 sRGB in [0, 1]: the photo resized so its long side is the
style's ``cond_size``, antialiased bilinear) and ``pixels`` (N x 3 float32 in [0, 1], any N: the photo's
pixels, or a lattice to bake a LUT). Output ``rgb`` (N x 3, clamped to [0, 1]) is what
``csr retouch --exact`` computes before rounding. Opset 17, standard operators only (Conv, Relu,
GlobalAveragePool, Gemm, MatMul, Add, Mul, Clip), so every runtime runs it. Needs the ``onnx`` package.
"""
from __future__ import annotations

import os

import numpy as np

from .architecture import BASE, CONDITION, SCALES, SHIFTS
from .engine import Net
from .errors import require
from .fsutil import write_bytes_atomic

OPSET = 17


def build(net: Net, cond_size: int, name: str = "csr"):
    """The ONNX ModelProto of ``net`` (its condition input's long side is ``cond_size``)."""
    onnx = require("onnx", "csr export-onnx")
    from onnx import TensorProto, helper, numpy_helper

    inits, nodes = [], []

    def const(key: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value, dtype=np.float32), key))
        return key

    def node(op: str, inputs: list[str], out: str, **attrs) -> str:
        nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    p = net.state
    x = "condition"
    for c in CONDITION:
        x = node("Conv", [x, const(f"{c.name}.weight", p[f"{c.name}.weight"]), const(f"{c.name}.bias", p[f"{c.name}.bias"])],
                 f"{c.name}.out", kernel_shape=[c.kernel] * 2, strides=[c.stride] * 2, pads=[c.padding] * 4)
        x = node("Relu", [x], f"{c.name}.relu") if c.relu else x
    vec = node("Flatten", [node("GlobalAveragePool", [x], "cond_net.pool")], "cond_vector")
    one = const("one", np.ones(1))

    def gfm(lin) -> str:
        return node("Gemm", [vec, const(f"{lin.name}.weight", p[f"{lin.name}.weight"]),
                             const(f"{lin.name}.bias", p[f"{lin.name}.bias"])], lin.name, transB=1)

    y = "pixels"
    for c, s, t in zip(BASE, SCALES, SHIFTS):
        w = p[f"{c.name}.weight"].reshape(c.cout, c.cin).T
        y = node("Add", [node("MatMul", [y, const(f"{c.name}.weight_t", w)], f"{c.name}.mm"),
                         const(f"{c.name}.bias", p[f"{c.name}.bias"])], f"{c.name}.out")
        y = node("Add", [node("Mul", [y, node("Add", [gfm(s), one], f"{s.name}.gain")], f"{c.name}.scaled"), gfm(t)],
                 f"{c.name}.modulated")
        y = node("Relu", [y], f"{c.name}.relu") if c.relu else y
    lo, hi = const("zero", np.zeros(())), const("one_scalar", np.ones(()))
    node("Clip", [y, lo, hi], "rgb")
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("condition", TensorProto.FLOAT, [1, 3, "h", "w"]),
         helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["n", 3])],
        [helper.make_tensor_value_info("rgb", TensorProto.FLOAT, ["n", 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="csr",
                              doc_string=__doc__.split("\n\n")[1].replace("\n", " "))
    model.ir_version = 8  # the oldest that opset 17 allows: loads in older runtimes too
    helper.set_model_props(model, {"style": name, "cond_size": str(cond_size), "architecture": "csrnet",
                                   "condition": f"1x3xhxw sRGB in [0,1], long side {cond_size}, antialiased bilinear",
                                   "blend": "out = pixels + strength * (rgb - pixels), 0 <= strength <= 2"})
    onnx.checker.check_model(model)
    return model


def export(net: Net, cond_size: int, path: str | os.PathLike, name: str = "csr") -> int:
    """Write the graph to ``path`` atomically; returns its size in bytes."""
    blob = build(net, cond_size, name).SerializeToString()
    write_bytes_atomic(path, blob)
    return len(blob)
