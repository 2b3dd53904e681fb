"""Proof: the onnxruntime presets equal ONNX Runtime on every output code.

Random VPRTempo-shaped networks (one and several modules) are exported by hwsim's ONNX writer
in each form (QLinearMatMul; MatMulInteger -> Cast -> Mul -> QuantizeLinear; QDQ MatMul,
which onnxruntime fuses into QLinearMatMul), run by
onnxruntime itself on float spikes (its QuantizeLinear quantizes them), imported back by
``hwsim run --model F.onnx`` with the preset for this host's ISA, and every output code is
compared: >= 100,000 codes per preset, with exact rounding ties and clamps at both ends.
"""

from __future__ import annotations

from pathlib import Path

import engine_oracle as E
import numpy as np
import pytest

from simulator.formats import export_model, import_model

pytest.importorskip("onnx", reason="onnx not installed (engines extra)")
# 4 graphs, 101,760 output codes per form, and one 28x28-input graph (K = 784, rows of large
# weights: accumulators above 2^24, int16 pair saturation on AVX2)
CASES = [(21, 48, 40, 2, 336), (22, 64, 100, 1, 336), (23, 32, 25, 3, 336), (24, 96, 60, 1, 336),
         (16, 784, 50, 1, 32)]
FORMS = ("qlinear", "matmulinteger", "qdq", "qgemm")


@pytest.mark.slow
@pytest.mark.parametrize("form", FORMS)
def test_onnxruntime_preset(form: str, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed (engines extra)")
    preset, why = E.ort_preset(form)
    if preset is None:
        pytest.skip(why)
    other = E.ort_preset("qlinear" if form == "matmulinteger" else "matmulinteger")[0]
    total = wrong = 0
    for seed, k, places, modules, q in CASES:
        net = E.random_network(seed, k=k, places=places, modules=modules)
        x = E.make_inputs(seed + 100, q, net)
        path = export_model(net, tmp_path / f"net{seed}_{form}.onnx", "onnx", form=form)
        ref = E.run_onnxruntime(path, x)
        sim = E.hwsim_run(tmp_path, path, x, preset)
        line = E.mismatch_line(f"{preset} ({why}) on {path.name}", sim, ref)
        assert not line, line
        assert (ref == 0).any() and (ref == 255).any(), "inputs must clamp at both ends"
        total += ref.size
        if net.in_features > 256:
            continue  # a slow graph: the small ones show the presets apart
        wrong += int((E.hwsim_run(tmp_path, path, x, str(other)) != ref).sum())
    assert total >= 100_000
    assert wrong > 0, f"the data does not tell {preset} apart from {other}"


def test_onnx_round_trip_keeps_the_network(tmp_path: Path) -> None:
    net = E.random_network(5, k=16, places=12, modules=2)
    for form in FORMS:
        back = import_model(export_model(net, tmp_path / f"n_{form}.onnx", "onnx", form=form))
        for a, b in zip(net.modules, back.modules, strict=True):
            assert (a.input_scale, a.input_zero_point) == (b.input_scale, b.input_zero_point)
            for la, lb in zip(a.layers, b.layers, strict=True):
                pa, pb = la.paths[0], lb.paths[0]
                assert np.array_equal(pa.weight, pb.weight)
                if form != "matmulinteger":
                    assert np.array_equal(pa.scale, pb.scale)
                else:  # the graph stores f32(sx * sw): that product must survive
                    sx = np.float32(a.input_scale if la.name == "feature"
                                    else a.layer("feature").output_scale)
                    f32 = np.float32
                    assert np.array_equal((sx * pa.scale.astype(f32)).astype(f32),
                                          (sx * pb.scale.astype(f32)).astype(f32))
                assert (la.output_scale, la.output_zero_point) == \
                    (lb.output_scale, lb.output_zero_point)
