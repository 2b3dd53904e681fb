"""Proof: litert_* and tflm_reference presets equal LiteRT / TFLite Micro on every code.

Random VPRTempo-shaped networks (one and several modules) are exported with ``hwsim export``'s
TFLite writer, run by the engines themselves (ai-edge-litert with each op resolver, the
tflite-micro Python interpreter), imported back by ``hwsim run --model F.tflite`` with the
matching preset, and every output code is compared: >= 100,000 codes per preset, inputs with
exact rounding ties and clamps at both ends. Each test also checks that the data tells the
presets apart (another preset disagrees with the engine), so a wrong formula cannot pass.
"""

from __future__ import annotations

from pathlib import Path

import engine_oracle as E
import numpy as np
import pytest

from simulator.config import load_config
from simulator.engine import simulate
from simulator.formats import export_model, import_model

pytest.importorskip("flatbuffers", reason="the TFLite format needs the engines extra")
# (seed, K, places, modules, queries): 4 graphs, 101,760 output codes per preset, and one
# 28x28-input graph (K = 784, rows of large weights: accumulators above 2^24)
CASES = [(11, 48, 40, 2, 336), (12, 64, 100, 1, 336), (13, 32, 25, 3, 336), (14, 96, 60, 1, 336),
         (16, 784, 50, 1, 32)]
PRESETS = ("litert_xnnpack", "litert_optimized", "litert_reference", "tflm_reference")


def _graphs(tmp: Path):
    for seed, k, places, modules, q in CASES:
        net = E.random_network(seed, k=k, places=places, modules=modules)
        x = E.make_inputs(seed + 100, q, net)
        path = export_model(net, tmp / f"net{seed}.tflite", "tflite", batch=q)
        yield net, x, path


def sim_acc_max(path: Path, x: np.ndarray, preset: str) -> int:
    """The largest |accumulator| of the feature layers (the wide case must pass 2^24)."""
    res = simulate(import_model(path), load_config(preset), x[:4])
    return max(int(np.abs(lr.acc["combined"]).max()) for lr in res.layers)


def _prove(tmp: Path, preset: str, run_engine) -> None:
    total = 0
    others = {p: 0 for p in PRESETS if p != preset}
    for net, x, path in _graphs(tmp):
        ref = run_engine(path, x, net)
        sim = E.hwsim_run(tmp, path, x, preset)
        assert sim.shape == ref.shape
        assert not E.mismatch_line(f"{preset} on {path.name}", sim, ref), \
            E.mismatch_line(f"{preset} on {path.name}", sim, ref)
        assert (ref == 0).any() and (ref == 255).any(), "inputs must clamp at both ends"
        total += ref.size
        if net.in_features > 256:
            assert np.abs(sim_acc_max(path, x, preset)) >= 1 << 24
            continue  # a slow graph: the small ones show the presets apart
        for other in others:
            others[other] += int((E.hwsim_run(tmp, path, x, other) != ref).sum())
    assert total >= 100_000
    tied = [p for p, n in others.items() if n == 0]
    assert not tied, f"the data does not tell {preset} apart from {tied}"


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["litert_xnnpack", "litert_optimized", "litert_reference"])
def test_litert_presets(preset: str, tmp_path: Path) -> None:
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert not installed (engines extra)")
    _prove(tmp_path, preset, lambda p, x, net: E.run_litert(p, x, preset))


@pytest.mark.slow
def test_tflm_preset(tmp_path: Path) -> None:
    pytest.importorskip("tflite_micro", reason="tflite-micro not installed (engines extra)")
    _prove(tmp_path, "tflm_reference", lambda p, x, net: E.run_tflm(p, x, len(net.modules)))
