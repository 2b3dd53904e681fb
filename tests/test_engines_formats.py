"""Export/import of engine graphs: refusals name the op/tensor and the fix (one line), the
export command writes one file atomically, and --compare-with / the hidden reference run."""

from __future__ import annotations

import argparse
from pathlib import Path

import engine_oracle as E
import numpy as np
import pytest

from simulator.commands.export import add_export_parser, non_float32_scales
from simulator.commands.run import add_compare_with_argument
from simulator.compare import compare_external, load_external_codes, reference_run
from simulator.config import ConfigError, load_config
from simulator.engine import InputError, simulate
from simulator.formats import export_model, import_model
from simulator.loaders import load_model, save_npz
from simulator.network import ModelError

pytest.importorskip("flatbuffers", reason="the TFLite format needs the engines extra")


@pytest.fixture(scope="module")
def net():
    return E.random_network(3, k=16, places=10, modules=2)


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def _edit_tflite(src: Path, dst: Path, edit) -> Path:
    import flatbuffers

    from simulator.formats.tflite import FILE_IDENTIFIER, schema

    sch = schema()
    model = sch.ModelT.InitFromPackedBuf(bytearray(src.read_bytes()), 0)
    edit(sch, model)
    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=FILE_IDENTIFIER)
    dst.write_bytes(bytes(b.Output()))
    return dst


def test_tflite_round_trip_and_refusals(net, tmp_path: Path) -> None:
    src = export_model(net, tmp_path / "n.tflite", "tflite", batch=2)
    back = load_model(src)  # the load_model hook
    assert back.metadata["activation_offset"] == 128
    for a, b in zip(net.modules, back.modules, strict=True):
        assert (a.input_scale, a.input_zero_point) == (b.input_scale, b.input_zero_point)
        for la, lb in zip(a.layers, b.layers, strict=True):
            assert np.array_equal(la.paths[0].weight, lb.paths[0].weight)
            assert np.array_equal(la.paths[0].scale, lb.paths[0].scale)
            assert (la.output_scale, la.output_zero_point) == (lb.output_scale,
                                                                 lb.output_zero_point)

    def relu(sch, m):
        m.subgraphs[0].operators[1].builtinOptions.fusedActivationFunction = 1

    def bias(sch, m):
        sg = m.subgraphs[0]
        t = sch.TensorT()
        t.name, t.type, t.shape = "fc_bias", sch.TensorType.INT32, np.array([32], np.int32)
        buf = sch.BufferT()
        buf.data = np.arange(32, dtype=np.int32).view(np.uint8)
        m.buffers.append(buf)
        t.buffer = len(m.buffers) - 1
        sg.tensors.append(t)
        sg.operators[1].inputs[2] = len(sg.tensors) - 1

    def add_op(sch, m):
        oc = sch.OperatorCodeT()
        oc.builtinCode = oc.deprecatedBuiltinCode = sch.BuiltinOperator.RELU
        m.operatorCodes.append(oc)
        m.subgraphs[0].operators[2].opcodeIndex = len(m.operatorCodes) - 1

    def scales(sch, m):
        sg = m.subgraphs[0]
        sg.tensors[sg.operators[1].inputs[1]].quantization.scale = np.ones(3, np.float32)
        sg.tensors[sg.operators[1].inputs[1]].quantization.zeroPoint = np.zeros(3, np.int64)

    for edit, want in ((relu, "fuses an activation"), (bias, "'fc_bias' is a non-zero bias"),
                       (add_op, "operator 2 is RELU"), (scales, "3 scales on axis 0")):
        bad = _edit_tflite(src, tmp_path / f"{edit.__name__}.tflite", edit)
        with pytest.raises(ModelError) as exc:
            import_model(bad)
        assert want in _one_line(exc)
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\0" * 64)
    with pytest.raises(ModelError, match="not a TFLite flatbuffer"):
        import_model(junk)


def test_onnx_refusals(net, tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx", reason="onnx not installed (engines extra)")
    from onnx import helper, numpy_helper

    src = export_model(net, tmp_path / "n.onnx", "onnx")
    m = onnx.load(str(src))
    for i, t in enumerate(m.graph.initializer):
        if t.name == "m0/feature/weight":  # hwsim's (out, in) layout given to ONNX
            w = numpy_helper.to_array(t)
            m.graph.initializer[i].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(w.T),
                                                                    t.name))
    onnx.save(m, str(tmp_path / "t.onnx"))
    with pytest.raises(ModelError) as exc:
        import_model(tmp_path / "t.onnx")
    assert "looks transposed" in _one_line(exc)
    m = onnx.load(str(src))
    m.graph.node.append(helper.make_node("Relu", ["places_0"], ["r"], name="act"))
    onnx.save(m, str(tmp_path / "r.onnx"))
    with pytest.raises(ModelError) as exc:
        import_model(tmp_path / "r.onnx")
    assert "'act' is Relu" in _one_line(exc)
    m = onnx.load(str(src))
    onnx.save(m, str(tmp_path / "ext.onnx"), save_as_external_data=True,
              all_tensors_to_one_file=True, location="ext.data", size_threshold=0)
    with pytest.raises(ModelError) as exc:
        import_model(tmp_path / "ext.onnx")
    assert "external file" in _one_line(exc)
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x01garbage")
    with pytest.raises(ModelError):
        import_model(tmp_path / "junk.onnx")


def test_export_command(net, tmp_path: Path, capsys) -> None:
    parser = argparse.ArgumentParser()
    add_export_parser(parser.add_subparsers())
    model = tmp_path / "m.npz"
    save_npz(net, model)
    args = parser.parse_args(["export", "--format", "tflite", "--model", str(model),
                              "--out", str(tmp_path / "g.tflite"), "--batch", "4"])
    assert args.func(args) == 0
    assert "2 module(s)" in capsys.readouterr().out
    assert import_model(tmp_path / "g.tflite").places == net.places
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.tflite", "m.npz"]  # no temp left
    for argv, want in (
        (["--format", "onnx", "--out", str(tmp_path / "g.tflite")], "'.onnx' file"),
        (["--format", "tflite", "--out", str(tmp_path / "x.tflite"), "--form", "qlinear"],
         "only the onnx format"),
        (["--format", "onnx", "--out", str(tmp_path / "no" / "x.onnx")], "does not exist"),
    ):
        a = parser.parse_args(["export", "--model", str(model)] + argv)
        with pytest.raises(ModelError) as exc:
            a.func(a)
        assert want in _one_line(exc)
    assert non_float32_scales(net) == 0
    import dataclasses

    mod = dataclasses.replace(net.modules[0], input_scale=0.1)  # not a float32 number
    assert non_float32_scales(dataclasses.replace(net, modules=(mod,) + net.modules[1:])) == 1
    link = tmp_path / "l.tflite"
    link.symlink_to(tmp_path / "elsewhere.tflite")
    a = parser.parse_args(["export", "--model", str(model), "--format", "tflite",
                           "--out", str(link)])
    assert a.func(a) == 0  # a link at --out is replaced by the graph, never followed
    assert not (tmp_path / "elsewhere.tflite").exists()
    assert link.is_file() and not link.is_symlink()
    (tmp_path / "d.tflite").mkdir()
    a = parser.parse_args(["export", "--model", str(model), "--format", "tflite",
                           "--out", str(tmp_path / "d.tflite")])
    with pytest.raises(ModelError, match="not a regular file"):
        a.func(a)


def test_compare_with_codes(net, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_compare_with_argument(parser)
    assert parser.parse_args(["--compare-with", "c.npy"]).compare_with == "c.npy"
    imported = import_model(export_model(net, tmp_path / "n.tflite", "tflite", batch=1))
    x = E.make_inputs(4, 20, imported)
    cfg = load_config("litert_reference")
    res = simulate(imported, cfg, x)
    engine = (res.outputs - 128).astype(np.int8)  # what the engine would hand back
    engine[3, 4] += 1
    f = tmp_path / "codes.npy"
    np.save(f, engine)
    codes = load_external_codes(f, imported, 20)
    block = compare_external(res, imported, cfg, codes, str(f))
    assert block["codes_differing"] == 1 and block["code_offset"] == 128
    # int8 input codes of a TFLite model are taken as the engine's (+128), like its outputs
    one = import_model(export_model(E.random_network(4, k=16, places=10), tmp_path / "o.tflite",
                                    "tflite"))
    ref = simulate(one, cfg, x)
    int8_in = simulate(one, cfg, (ref.input_codes[0] - 128).astype(np.int8))
    assert np.array_equal(int8_in.input_codes[0], ref.input_codes[0])
    assert np.array_equal(int8_in.outputs, ref.outputs)
    assert block["first_difference"] == {"query": 3, "place": 4,
                                         "hwsim": int(res.outputs[3, 4]),
                                         "external": int(res.outputs[3, 4]) + 1}
    with pytest.raises(InputError, match="does not fit this run's outputs"):
        load_external_codes(f, imported, 21)
    np.save(f, engine.astype(np.int16) - 100)
    with pytest.raises(InputError, match="add 128"):
        load_external_codes(f, net, 20)


def test_hidden_reference_run_names_itself(net) -> None:
    x = E.make_inputs(4, 5, net)
    cfg = load_config("int8_fixed_point", ["schedule.mode=event_driven"])
    res, ref_cfg, applied, skipped = reference_run(
        net, cfg, x, ["schedule.mode=event_driven", "requant.rounding=half_up",
                      "report.compare_with=''"])
    assert ref_cfg.schedule.mode == "event_driven"  # pytorch_fbgemm does not pin it
    assert skipped == ["requant.rounding=half_up", "report.compare_with=''"]
    assert applied == ["schedule.mode=event_driven"]
    assert res.outputs.shape == (5, net.places)
    cfg = load_config("int8_fixed_point", ["weights.capacity_kib=1"])  # too small for the ref?
    with pytest.raises((ConfigError, ModelError)) as exc:
        reference_run(net, cfg, x, ["weights.capacity_kib=1", "mac.lanes=0"])
    assert "hidden reference run 'pytorch_fbgemm'" in _one_line(exc)


def test_int8_codes_and_signed_registers_say_what_to_do(net) -> None:
    cfg = load_config("litert_xnnpack")
    with pytest.raises(InputError) as exc:
        simulate(net, cfg, np.full((2, net.in_features), -5, dtype=np.int8))
    msg = _one_line(exc)
    assert "add 128" in msg and "widen" not in msg
    with pytest.raises(InputError, match="widen spikes.bits"):  # too large: widen is right
        simulate(net, load_config("litert_xnnpack", ["layers.feature.spikes.bits=4"]),
                 np.full((2, net.in_features), 200, dtype=np.uint8))
    x = E.make_inputs(1, 3, net)
    assert simulate(net, cfg, x).notes == []
    notes = simulate(net, load_config("litert_xnnpack", ["layers.feature.spikes.signed=true"]),
                     x).notes
    assert len(notes) == 1 and "spikes.signed = true" in notes[0] and "uint8" in notes[0]
