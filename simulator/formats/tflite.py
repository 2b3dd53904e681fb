"""TFLite flatbuffer export and import of VPRTempo-shaped networks.

Written with the object API of the TFLite schema module that ships with ``ai-edge-litert``
(``ai_edge_litert.schema_py_generated``) or ``tflite-micro``; no hand-written binary.

Graph (one subgraph): input ``spikes`` float32 (batch, K); per module m:
``QUANTIZE`` -> int8 (sx_m, zx_m - 128); ``FULLY_CONNECTED`` (weights int8 (2K, K), per-channel
symmetric scales on axis 0, no bias, no fused activation) -> int8 (s1, z1 - 128);
``FULLY_CONNECTED`` -> output ``places_m`` int8 (s2, z2 - 128). One output per module, in order.

Activations are int8 in the graph and uint8 in hwsim: every activation code and zero point
differs by 128 (see :mod:`simulator.formats`).
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ..network import Layer, ModelError, Module, QuantizedNetwork, WeightPath
from . import FormatUnavailableError

ACTIVATION_OFFSET = 128  # int8 engine code + 128 = uint8 hwsim code
FILE_IDENTIFIER = b"TFL3"
SCHEMA_VERSION = 3


def schema() -> ModuleType:
    """The TFLite flatbuffer schema module of the installed LiteRT or TFLite Micro package."""
    try:
        from ai_edge_litert import schema_py_generated as sch

        return sch
    except ImportError:
        pass
    try:
        from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as sch

        return sch
    except ImportError:
        raise FormatUnavailableError(
            "the TFLite format needs the flatbuffer schema of ai-edge-litert or tflite-micro; "
            "pip install 'tempo-hwsim[engines]'"
        ) from None


def _check_exportable(net: QuantizedNetwork) -> None:
    net.validate()
    if net.layout != "combined":
        raise ModelError(
            f"{net.source}: the split (seed) layout has no TFLite form; export a combined-layout "
            "model (one signed int8 matrix per layer)"
        )
    for mi, mod in enumerate(net.modules):
        for lay in mod.layers:
            p = lay.paths[0]
            if np.any(p.zero_point != 0):
                raise ModelError(
                    f"{net.source}: module {mi} layer {lay.name!r}: TFLite int8 weights are "
                    "symmetric (zero point 0); this layer has non-zero weight zero points"
                )
            if p.bias is not None and np.any(p.bias != 0):
                raise ModelError(
                    f"{net.source}: module {mi} layer {lay.name!r} has a non-zero bias, which "
                    "hwsim does not model; export a bias-free model"
                )


def export_tflite(net: QuantizedNetwork, path: str | os.PathLike[str], batch: int = 1) -> Path:
    """Write ``net`` as an int8 TFLite model with a float input (see module doc)."""
    _check_exportable(net)
    if not isinstance(batch, int) or batch < 1:
        raise ModelError(f"--batch {batch!r}: the graph's batch dimension must be >= 1")
    sch = schema()
    k = net.in_features
    buffers: list[Any] = [sch.BufferT()]  # buffer 0: the empty sentinel
    tensors: list[Any] = []

    def tensor(name: str, shape: list[int], ttype: int, scale: Any = None, zp: Any = None,
               data: np.ndarray | None = None, axis: int = 0) -> int:
        t = sch.TensorT()
        t.name = name
        t.shape = np.asarray(shape, dtype=np.int32)
        t.type = ttype
        t.buffer = 0
        if data is not None:
            b = sch.BufferT()
            b.data = np.ascontiguousarray(data).view(np.uint8).ravel()
            buffers.append(b)
            t.buffer = len(buffers) - 1
        if scale is not None:
            q = sch.QuantizationParametersT()
            q.scale = np.asarray(scale, dtype=np.float32).ravel()
            q.zeroPoint = np.asarray(zp, dtype=np.int64).ravel()
            q.quantizedDimension = axis
            t.quantization = q
        tensors.append(t)
        return len(tensors) - 1

    codes = []
    for op in (sch.BuiltinOperator.QUANTIZE, sch.BuiltinOperator.FULLY_CONNECTED):
        oc = sch.OperatorCodeT()
        oc.builtinCode = op
        oc.deprecatedBuiltinCode = op  # < 127: the deprecated field must hold it too
        oc.version = 1
        codes.append(oc)
    i8, f32 = sch.TensorType.INT8, sch.TensorType.FLOAT32
    x = tensor("spikes", [batch, k], f32)
    ops: list[Any] = []
    outputs: list[int] = []
    for mi, mod in enumerate(net.modules):
        prev = tensor(f"module{mi}/input_codes", [batch, k], i8, [mod.input_scale],
                      [mod.input_zero_point - ACTIVATION_OFFSET])
        qop = sch.OperatorT()
        qop.opcodeIndex = 0
        qop.inputs = np.asarray([x], dtype=np.int32)
        qop.outputs = np.asarray([prev], dtype=np.int32)
        qop.builtinOptionsType = sch.BuiltinOptions.QuantizeOptions
        qop.builtinOptions = sch.QuantizeOptionsT()
        ops.append(qop)
        for lay in mod.layers:
            p = lay.paths[0]
            n = lay.out_features
            w = tensor(f"module{mi}/{lay.name}/weight", [n, lay.in_features], i8, p.scale,
                       np.zeros(n, np.int64), data=p.weight.astype(np.int8), axis=0)
            name = f"places_{mi}" if lay.name == "output" else f"module{mi}/{lay.name}/codes"
            y = tensor(name, [batch, n], i8, [lay.output_scale],
                       [lay.output_zero_point - ACTIVATION_OFFSET])
            fc = sch.OperatorT()
            fc.opcodeIndex = 1
            fc.inputs = np.asarray([prev, w, -1], dtype=np.int32)
            fc.outputs = np.asarray([y], dtype=np.int32)
            fc.builtinOptionsType = sch.BuiltinOptions.FullyConnectedOptions
            opts = sch.FullyConnectedOptionsT()
            opts.fusedActivationFunction = sch.ActivationFunctionType.NONE
            fc.builtinOptions = opts
            ops.append(fc)
            prev = y
        outputs.append(prev)
    sg = sch.SubGraphT()
    sg.name = "vprtempo"
    sg.tensors = tensors
    sg.inputs = np.asarray([x], dtype=np.int32)
    sg.outputs = np.asarray(outputs, dtype=np.int32)
    sg.operators = ops
    model = sch.ModelT()
    model.version = SCHEMA_VERSION
    model.description = "tempo-hwsim export of a VPRTempo network"
    model.operatorCodes = codes
    model.subgraphs = [sg]
    model.buffers = buffers
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
    out = Path(path)
    out.write_bytes(bytes(builder.Output()))
    return out


# --- import ------------------------------------------------------------------------------------


def _fail(path: Path, what: str) -> ModelError:
    return ModelError(f"{path}: {what}")


def import_tflite(path: str | os.PathLike[str]) -> QuantizedNetwork:
    """Read a TFLite graph of the exported form into the uint8-form network (see module doc)."""
    p = Path(path)
    sch = schema()
    blob = p.read_bytes()
    if len(blob) < 8 or blob[4:8] != FILE_IDENTIFIER:
        raise _fail(p, "not a TFLite flatbuffer (no 'TFL3' identifier); give a .tflite model")
    try:
        model = sch.ModelT.InitFromPackedBuf(bytearray(blob), 0)
    except Exception as exc:  # a corrupt flatbuffer raises anything from struct to Index errors
        raise _fail(p, f"corrupt TFLite flatbuffer ({type(exc).__name__}); re-export it") from None
    if not model.subgraphs or len(model.subgraphs) != 1:
        raise _fail(p, "hwsim imports single-subgraph models; this one has "
                    f"{len(model.subgraphs or [])}")
    sg = model.subgraphs[0]
    names = {v: k for k, v in vars(sch.BuiltinOperator).items() if not k.startswith("_")}
    opnames = []
    for oc in model.operatorCodes or []:
        code = max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode))
        opnames.append(names.get(code, f"builtin {code}") if not oc.customCode
                       else f"custom {oc.customCode!r}")
    tensors = sg.tensors
    producer: dict[int, Any] = {}
    for i, op in enumerate(sg.operators or []):
        kind = opnames[op.opcodeIndex]
        if kind not in ("QUANTIZE", "FULLY_CONNECTED"):
            raise _fail(p, f"operator {i} is {kind}; hwsim imports only QUANTIZE followed by two "
                        "int8 FULLY_CONNECTED layers per module (export with hwsim export)")
        for o in op.outputs:
            producer[int(o)] = (i, kind, op)

    def tname(t: int) -> str:
        n = tensors[t].name
        return n.decode() if isinstance(n, bytes) else str(n)

    def quant(t: int, per_channel: int = 0) -> tuple[np.ndarray, np.ndarray]:
        q = tensors[t].quantization
        if q is None or q.scale is None or len(q.scale) == 0:
            raise _fail(p, f"tensor {tname(t)!r} is not quantized; hwsim needs int8 tensors "
                        "with scales and zero points")
        s = np.asarray(q.scale, dtype=np.float32).astype(np.float64)
        z = np.asarray(q.zeroPoint if q.zeroPoint is not None else [0] * s.size, dtype=np.int64)
        if per_channel:
            if s.size == 1:
                s, z = np.full(per_channel, s[0]), np.full(per_channel, z[0])
            elif s.size != per_channel or int(q.quantizedDimension) != 0:
                raise _fail(p, f"tensor {tname(t)!r}: {s.size} scales on axis "
                            f"{q.quantizedDimension} do not fit its {per_channel} output "
                            "channels; quantize the weights per tensor or per output channel "
                            "(axis 0)")
        elif s.size != 1:
            raise _fail(p, f"tensor {tname(t)!r}: activations need one scale (per tensor), "
                        f"found {s.size}; re-quantize the activations per tensor")
        return s, z

    def act(t: int) -> tuple[float, int]:
        if tensors[t].type != sch.TensorType.INT8:
            raise _fail(p, f"tensor {tname(t)!r} is not int8; hwsim imports int8 activations")
        s, z = quant(t)
        return float(s[0]), int(z[0]) + ACTIVATION_OFFSET

    def fc_layer(i: int, op: Any, lname: str) -> tuple[Layer, int]:
        ins = [int(v) for v in op.inputs]
        opts = op.builtinOptions
        if opts is not None and int(opts.fusedActivationFunction) != 0:
            raise _fail(p, f"operator {i} ({tname(op.outputs[0])!r}) fuses an activation "
                        f"function ({int(opts.fusedActivationFunction)}); VPRTempo layers have "
                        "none: remove it")
        if len(ins) > 2 and ins[2] >= 0:
            b = tensors[ins[2]]
            data = model.buffers[b.buffer].data
            if data is not None and np.any(np.asarray(data) != 0):
                raise _fail(p, f"tensor {tname(ins[2])!r} is a non-zero bias; hwsim models "
                            "bias-free VPRTempo layers: retrain or export without a bias")
        wt = tensors[ins[1]]
        if wt.type != sch.TensorType.INT8 or wt.buffer == 0:
            raise _fail(p, f"tensor {tname(ins[1])!r}: FULLY_CONNECTED weights must be a "
                        "constant int8 tensor")
        shape = [int(v) for v in wt.shape]
        if len(shape) != 2:
            raise _fail(p, f"tensor {tname(ins[1])!r}: weights must be 2-D (out, in), "
                        f"found shape {shape}")
        raw = np.asarray(model.buffers[wt.buffer].data, dtype=np.uint8)
        if raw.size != shape[0] * shape[1]:
            raise _fail(p, f"tensor {tname(ins[1])!r}: {raw.size} bytes of data for shape {shape}")
        w = raw.view(np.int8).reshape(shape)
        sw, zw = quant(ins[1], per_channel=shape[0])
        if np.any(zw != 0):
            raise _fail(p, f"tensor {tname(ins[1])!r}: weight zero points must be 0 (symmetric "
                        "int8), as TFLite's int8 FULLY_CONNECTED requires")
        sy, zy = act(int(op.outputs[0]))
        path = WeightPath("combined", w.copy(), sw, np.zeros(shape[0], np.int64))
        return Layer(lname, (path,), sy, zy), ins[0]

    modules = []
    graph_in = [int(v) for v in sg.inputs]
    for oi, out in enumerate(int(v) for v in sg.outputs):
        chain = []
        t = out
        for lname in ("output", "feature"):
            if t not in producer or producer[t][1] != "FULLY_CONNECTED":
                raise _fail(p, f"output {oi} ({tname(out)!r}): expected two FULLY_CONNECTED "
                            "layers (feature, output) before it; hwsim imports two-layer "
                            "VPRTempo modules")
            i, _, op = producer[t]
            lay, t = fc_layer(i, op, lname)
            chain.append(lay)
        if t not in producer or producer[t][1] != "QUANTIZE":
            raise _fail(p, f"tensor {tname(t)!r}: expected a QUANTIZE of the float input before "
                        "the feature layer (float spikes in, int8 codes out)")
        qin = int(producer[t][2].inputs[0])
        if qin not in graph_in or tensors[qin].type != sch.TensorType.FLOAT32:
            raise _fail(p, f"tensor {tname(qin)!r}: the QUANTIZE must read the float32 graph "
                        "input")
        sx, zx = act(t)
        modules.append(Module(sx, zx, (chain[1], chain[0])))
    if not modules:
        raise _fail(p, "the graph has no outputs")
    net = QuantizedNetwork(
        "combined", tuple(modules),
        {"format": "tflite", "activation_offset": ACTIVATION_OFFSET, "engine_dtype": "int8"},
        str(p),
    )
    net.validate()
    return net
