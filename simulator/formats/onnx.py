"""ONNX export and import of VPRTempo-shaped networks (written with ``onnx.helper``).

Graph: input ``spikes`` float32 (queries, K); per module m a ``QuantizeLinear`` (sx_m, zx_m,
uint8) and two layers, then output ``places_m`` uint8 (one output per module, in order).
A layer is, by ``form``:

* ``qlinear``: ``QLinearMatMul`` (codes uint8, weights int8 (in, out), per-column scales,
  zero points 0) -> uint8 (sy, zy);
* ``matmulinteger``: ``MatMulInteger`` -> int32 -> ``Cast`` float -> ``Mul`` by the float32
  per-column constant f32(f32(sx) * f32(sw_j)) -> ``QuantizeLinear`` (sy, zy) -> uint8
  (dequantize-then-quantize: two float32 roundings; preset ``onnxruntime_matmulinteger``);
* ``qdq``: ``DequantizeLinear`` of the codes and of the int8 weights (axis 1, per column) ->
  float ``MatMul`` -> ``QuantizeLinear`` (sy, zy). ONNX Runtime's default graph optimizations
  fuse each such group into QLinearMatMul (measured: the same codes as ``qlinear``), so the
  preset is ``onnxruntime``; with optimizations disabled it would compute in float;
* ``qgemm``: ONNX Runtime's contrib op ``com.microsoft.QGemm`` (transB = 1: weights stored
  (out, in) as in hwsim, per-row scales, no bias) -> uint8 (sy, zy); preset ``onnxruntime``.

ONNX stores MatMul weights as (in, out), the transpose of hwsim's (out, in) rows.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..network import Layer, ModelError, Module, QuantizedNetwork, WeightPath
from . import FormatUnavailableError
from .tflite import _check_exportable

ONNX_FORMS: tuple[str, ...] = ("qlinear", "matmulinteger", "qdq", "qgemm")
MS_DOMAIN = "com.microsoft"
OPSET = 21
IR_VERSION = 10


def _onnx() -> Any:
    try:
        import onnx

        return onnx
    except ImportError:
        raise FormatUnavailableError(
            "the ONNX format needs the 'onnx' package; pip install 'tempo-hwsim[engines]'"
        ) from None


def export_onnx(net: QuantizedNetwork, path: str | os.PathLike[str], form: str = "qlinear") -> Path:
    """Write ``net`` as an ONNX graph of ``form`` (see module doc)."""
    if form not in ONNX_FORMS:
        raise ModelError(f"--form {form!r}: choose one of {', '.join(ONNX_FORMS)}")
    _check_exportable(net)
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper

    inits: list[Any] = []
    nodes: list[Any] = []

    def const(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(arr, name))
        return name

    k = net.in_features
    outputs = []
    for mi, mod in enumerate(net.modules):
        pre = f"m{mi}"
        sx = const(f"{pre}/input_scale", np.array(mod.input_scale, np.float32))
        zx = const(f"{pre}/input_zero_point", np.array(mod.input_zero_point, np.uint8))
        x = f"{pre}/input_codes"
        nodes.append(helper.make_node("QuantizeLinear", ["spikes", sx, zx], [x],
                                      name=f"{pre}/quantize"))
        for lay in mod.layers:
            p = lay.paths[0]
            ln = f"{pre}/{lay.name}"
            n = lay.out_features
            # ONNX MatMul weights are (in, out); QGemm with transB = 1 takes hwsim's (out, in)
            layout = p.weight if form == "qgemm" else p.weight.T
            w = const(f"{ln}/weight", np.ascontiguousarray(layout.astype(np.int8)))
            sy = const(f"{ln}/output_scale", np.array(lay.output_scale, np.float32))
            zy = const(f"{ln}/output_zero_point", np.array(lay.output_zero_point, np.uint8))
            y = f"places_{mi}" if lay.name == "output" else f"{ln}/codes"
            zw = const(f"{ln}/weight_zero_point", np.zeros(n, np.int8))
            if form == "qlinear":
                sw = const(f"{ln}/weight_scale", p.scale.astype(np.float32))
                nodes.append(helper.make_node(
                    "QLinearMatMul", [x, sx, zx, w, sw, zw, sy, zy], [y], name=ln))
            elif form == "qgemm":
                sw = const(f"{ln}/weight_scale", p.scale.astype(np.float32))
                nodes.append(helper.make_node(
                    "QGemm", [x, sx, zx, w, sw, zw, "", sy, zy], [y], name=ln,
                    domain=MS_DOMAIN, transB=1))
            elif form == "qdq":
                sw = const(f"{ln}/weight_scale", p.scale.astype(np.float32))
                nodes += [
                    helper.make_node("DequantizeLinear", [x, sx, zx], [f"{ln}/input_real"],
                                     name=f"{ln}/dequantize_input"),
                    helper.make_node("DequantizeLinear", [w, sw, zw], [f"{ln}/weight_real"],
                                     axis=1, name=f"{ln}/dequantize_weight"),
                    helper.make_node("MatMul", [f"{ln}/input_real", f"{ln}/weight_real"],
                                     [f"{ln}/real"], name=f"{ln}/matmul"),
                    helper.make_node("QuantizeLinear", [f"{ln}/real", sy, zy], [y],
                                     name=f"{ln}/quantize"),
                ]
            else:
                sxv = np.float32(
                    mod.input_scale if lay.name == "feature" else mod.layer("feature").output_scale
                )
                scale = (sxv * p.scale.astype(np.float32)).astype(np.float32)
                m = const(f"{ln}/dequant_scale", scale)
                nodes += [
                    helper.make_node("MatMulInteger", [x, w, zx, zw], [f"{ln}/acc"],
                                     name=f"{ln}/matmul"),
                    helper.make_node("Cast", [f"{ln}/acc"], [f"{ln}/acc_f"],
                                     to=TensorProto.FLOAT, name=f"{ln}/cast"),
                    helper.make_node("Mul", [f"{ln}/acc_f", m], [f"{ln}/real"], name=f"{ln}/mul"),
                    helper.make_node("QuantizeLinear", [f"{ln}/real", sy, zy], [y],
                                     name=f"{ln}/quantize"),
                ]
            x, sx, zx = y, sy, zy
        outputs.append(helper.make_tensor_value_info(
            f"places_{mi}", TensorProto.UINT8, ["queries", mod.places]))
    graph = helper.make_graph(
        nodes, "vprtempo",
        [helper.make_tensor_value_info("spikes", TensorProto.FLOAT, ["queries", k])],
        outputs, initializer=inits,
    )
    opsets = [helper.make_opsetid("", OPSET)]
    if form == "qgemm":
        opsets.append(helper.make_opsetid(MS_DOMAIN, 1))
    model = helper.make_model(graph, opset_imports=opsets, producer_name="tempo-hwsim")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)  # contrib ops (QGemm) are checked for structure only
    out = Path(path)
    onnx.save(model, str(out))
    return out


# --- import ------------------------------------------------------------------------------------


def import_onnx(path: str | os.PathLike[str]) -> QuantizedNetwork:
    """Read an ONNX graph of either exported form into a network (see module doc)."""
    onnx = _onnx()
    from onnx import numpy_helper

    p = Path(path)
    try:
        model = onnx.load(str(p), load_external_data=False)  # never follow paths in a model
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise ModelError(f"{p}: not a readable ONNX model ({type(exc).__name__}); "
                         "re-export it") from None
    g = model.graph
    for t in g.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            raise ModelError(f"{p}: tensor {t.name!r} keeps its data in an external file; hwsim "
                             "reads self-contained .onnx files: re-save with onnx.save(model, "
                             "path, save_as_external_data=False)")
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for node in g.node:  # Constant nodes are constants too
        if node.op_type == "Constant" and node.attribute:
            val = onnx.helper.get_attribute_value(node.attribute[0])
            consts[node.output[0]] = (numpy_helper.to_array(val)
                                      if isinstance(val, onnx.TensorProto) else np.asarray(val))
    producer = {o: n for n in g.node for o in n.output}
    supported = ("QuantizeLinear", "QLinearMatMul", "MatMulInteger", "Cast", "Mul", "Constant",
                 "DequantizeLinear", "MatMul", "QGemm")
    for node in g.node:
        if node.op_type not in supported:
            raise ModelError(
                f"{p}: node {node.name or node.output[0]!r} is {node.op_type}; hwsim imports "
                "QuantizeLinear + QLinearMatMul layers, MatMulInteger -> Cast -> Mul -> "
                "QuantizeLinear, QDQ MatMul groups or com.microsoft.QGemm, as hwsim export "
                "writes them"
            )
    graph_inputs = {i.name for i in g.input} - set(consts)
    if len(graph_inputs) != 1:
        raise ModelError(f"{p}: expected one float input (the spikes), found "
                         f"{sorted(graph_inputs)}")

    def const(name: str, what: str) -> np.ndarray:
        if name not in consts:
            raise ModelError(f"{p}: tensor {name!r} ({what}) must be a constant initializer")
        return consts[name]

    def scalar_q(scale: str, zp: str) -> tuple[float, int]:
        s, z = const(scale, "scale"), const(zp, "zero point")
        if s.size != 1 or z.size != 1:
            raise ModelError(f"{p}: tensor {scale!r}: activations need one scale and zero "
                             f"point (per tensor), found {s.size}; re-quantize per tensor")
        if z.dtype != np.uint8:
            raise ModelError(f"{p}: tensor {zp!r} is {z.dtype}; hwsim imports uint8 activations "
                             "(for int8, add 128 to every activation zero point)")
        return float(np.float32(s.ravel()[0])), int(z.ravel()[0])

    def weights(name: str, zp: str, n_scales: int | None) -> np.ndarray:
        w = const(name, "weights")
        if w.dtype != np.int8 or w.ndim != 2:
            raise ModelError(f"{p}: tensor {name!r}: weights must be a 2-D int8 (in, out) "
                             f"matrix, found {w.dtype} {w.shape}")
        if n_scales is not None and n_scales not in (1, w.shape[1]):
            hint = (" (it looks transposed: ONNX MatMul weights are (in, out))"
                    if n_scales == w.shape[0] else "")
            raise ModelError(f"{p}: tensor {name!r} of shape {w.shape} has {n_scales} scales; "
                             f"need 1 or one per output column ({w.shape[1]}){hint}")
        z = const(zp, "weight zero point") if zp else np.zeros(1, np.int8)
        if np.any(z != 0):
            raise ModelError(f"{p}: tensor {zp!r}: weight zero points must be 0 (symmetric)")
        return w

    def weights_t(name: str, zp: str, n_scales: int, w_out_in: np.ndarray) -> np.ndarray:
        """QGemm transB = 1 weights (out, in), returned as (in, out)."""
        if w_out_in.dtype != np.int8:
            raise ModelError(f"{p}: tensor {name!r}: weights must be int8, not {w_out_in.dtype}")
        if n_scales not in (1, w_out_in.shape[0]):
            hint = (" (it looks transposed: with transB = 1 QGemm weights are (out, in))"
                    if n_scales == w_out_in.shape[1] else "")
            raise ModelError(f"{p}: tensor {name!r} of shape {w_out_in.shape} has {n_scales} "
                             f"scales; need 1 or one per output row ({w_out_in.shape[0]}){hint}")
        z = const(zp, "weight zero point") if zp else np.zeros(1, np.int8)
        if np.any(z != 0):
            raise ModelError(f"{p}: tensor {zp!r}: weight zero points must be 0 (symmetric)")
        return np.ascontiguousarray(w_out_in.T)

    def layer(y: str, lname: str) -> tuple[Layer, str, float]:
        node = producer.get(y)
        if node is None:
            raise ModelError(f"{p}: tensor {y!r} has no producer; expected a quantized layer")
        if node.op_type == "QLinearMatMul":
            x, sxn, zxn, wn, swn, zwn, syn, zyn = node.input
            sw = const(swn, "weight scale").astype(np.float32).ravel()
            w = weights(wn, zwn, sw.size)
            sy, zy = scalar_q(syn, zyn)
            sx = float(np.float32(const(sxn, "input scale").ravel()[0]))
            sw = np.broadcast_to(sw, (w.shape[1],)).astype(np.float64)
        elif node.op_type == "QGemm":
            attrs = {a.name: (a.i if a.type == a.INT else a.f) for a in node.attribute}
            if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0:
                raise ModelError(f"{p}: node {node.name or y!r}: QGemm with transA or alpha != 1 "
                                 "is not a VPRTempo layer; export with transA = 0, alpha = 1")
            ins = list(node.input) + [""] * (9 - len(node.input))
            x, sxn, zxn, wn, swn, zwn, cn, syn, zyn = ins[:9]
            if cn and np.any(const(cn, "bias") != 0):
                raise ModelError(f"{p}: tensor {cn!r} is a non-zero bias; hwsim models "
                                 "bias-free VPRTempo layers: export without a bias")
            if not syn:
                raise ModelError(f"{p}: node {node.name or y!r}: QGemm without y_scale gives "
                                 "float output; hwsim needs quantized (uint8) outputs")
            sw = const(swn, "weight scale").astype(np.float32).ravel()
            trans_b = bool(attrs.get("transB", 0))
            wraw = const(wn, "weights")
            if trans_b and wraw.ndim == 2:  # (out, in): check against (in, out) after the flip
                w = weights_t(wn, zwn, sw.size, wraw)
            else:
                w = weights(wn, zwn, sw.size)
            sy, zy = scalar_q(syn, zyn)
            sx = float(np.float32(const(sxn, "input scale").ravel()[0]))
            sw = np.broadcast_to(sw, (w.shape[1],)).astype(np.float64)
        elif node.op_type == "QuantizeLinear" and getattr(
            producer.get(node.input[0]), "op_type", ""
        ) == "MatMul":
            mm = producer[node.input[0]]
            dq_x, dq_w = producer.get(mm.input[0]), producer.get(mm.input[1])
            for t, dq in ((mm.input[0], dq_x), (mm.input[1], dq_w)):
                if dq is None or dq.op_type != "DequantizeLinear":
                    raise ModelError(f"{p}: tensor {t!r}: a QDQ MatMul needs DequantizeLinear "
                                     "inputs (quantized codes and int8 weights)")
            axis = next((a.i for a in dq_w.attribute if a.name == "axis"), 1)
            sw = const(dq_w.input[1], "weight scale").astype(np.float32).ravel()
            if sw.size > 1 and axis not in (1, -1):
                raise ModelError(f"{p}: tensor {dq_w.input[1]!r}: per-channel weight scales "
                                 f"must be on axis 1 (output columns), found axis {axis}")
            w = weights(dq_w.input[0], dq_w.input[2] if len(dq_w.input) > 2 else "", sw.size)
            sw = np.broadcast_to(sw, (w.shape[1],)).astype(np.float64)
            sy, zy = scalar_q(node.input[1], node.input[2])
            x = dq_x.input[0]
            sx, zx_dq = scalar_q(dq_x.input[1], dq_x.input[2])
            src = producer.get(x)
            if src is not None and len(src.input) >= 3 and (
                float(np.float32(const(src.input[1], "scale").ravel()[0])) != sx
                or int(const(src.input[2], "zero point").ravel()[0]) != zx_dq
            ):
                raise ModelError(f"{p}: tensor {dq_x.input[1]!r}: the DequantizeLinear of "
                                 f"{x!r} must use the scale and zero point that quantized it")
        elif node.op_type == "QuantizeLinear" and producer.get(node.input[0]) is not None:
            mul = producer[node.input[0]]
            cast = producer.get(mul.input[0]) if mul.op_type == "Mul" else None
            is_cast = cast is not None and cast.op_type == "Cast"
            mm = producer.get(cast.input[0]) if is_cast else None
            if mm is None or mm.op_type != "MatMulInteger":
                raise ModelError(f"{p}: tensor {y!r}: expected MatMulInteger -> Cast -> Mul -> "
                                 "QuantizeLinear before it")
            x, wn = mm.input[0], mm.input[1]
            m = const(mul.input[1], "dequantize scale").astype(np.float32).ravel()
            w = weights(wn, mm.input[3], m.size)
            sy, zy = scalar_q(node.input[1], node.input[2])
            src = producer.get(x)
            if src is None or len(src.input) < 3:
                raise ModelError(f"{p}: tensor {x!r}: expected quantized codes")
            sx = float(np.float32(const(src.input[1], "scale").ravel()[0]))
            # hwsim's dequant_quant recomputes f32(f32(sx) * f32(sw)); recover sw exactly
            sw = np.broadcast_to(m / np.float32(sx), (w.shape[1],)).astype(np.float64)
            if not np.array_equal((np.float32(sx) * sw.astype(np.float32)).astype(np.float32),
                                  np.broadcast_to(m, sw.shape)):
                raise ModelError(f"{p}: tensor {mul.input[1]!r}: the dequantize scale is not "
                                 "f32(input scale * weight scale); hwsim cannot represent it")
        else:
            raise ModelError(f"{p}: tensor {y!r} comes from {node.op_type}; expected a "
                             "QLinearMatMul or a MatMulInteger chain")
        wp = WeightPath("combined", np.ascontiguousarray(w.T), sw.copy(),
                        np.zeros(w.shape[1], np.int64))
        return Layer(lname, (wp,), sy, zy), x, sx

    modules = []
    forms = set()
    for out in g.output:
        lay2, h, _ = layer(out.name, "output")
        lay1, xq, sx = layer(h, "feature")
        last = producer[out.name]
        forms.add(last.op_type if last.op_type in ("QLinearMatMul", "QGemm")
                  else getattr(producer.get(last.input[0]), "op_type", ""))
        q = producer.get(xq)
        if q is None or q.op_type != "QuantizeLinear" or q.input[0] not in graph_inputs:
            raise ModelError(f"{p}: tensor {xq!r}: expected a QuantizeLinear of the float input")
        sx, zx = scalar_q(q.input[1], q.input[2])
        modules.append(Module(sx, zx, (lay1, lay2)))
    if not modules:
        raise ModelError(f"{p}: the graph has no outputs")
    names = {"QLinearMatMul": "qlinear", "Mul": "matmulinteger", "MatMul": "qdq",
             "QGemm": "qgemm"}
    form = "+".join(sorted(names.get(f, f) for f in forms))
    net = QuantizedNetwork("combined", tuple(modules), {"format": "onnx", "onnx_form": form},
                           str(p))
    net.validate()
    return net
