"""The shipped trained model (simulator/data/default_model.npz, 28x28 -> 1568 -> 100) through
every engine and its preset: zero differing codes on real weights and spikes."""

from __future__ import annotations

from pathlib import Path

import engine_oracle as E
import numpy as np
import pytest

from simulator.config import load_config
from simulator.engine import simulate
from simulator.formats import export_model, import_model
from simulator.loaders import load_model

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "simulator" / "data" / "default_model.npz"
pytest.importorskip("flatbuffers", reason="the TFLite format needs the engines extra")


@pytest.fixture(scope="module")
def spikes() -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.random((40, 784)).astype(np.float32)
    x[:8] = np.round(x[:8] * 255) / np.float32(255)  # image-like: codes / 255
    return x


@pytest.mark.slow
def test_default_model_tflite_engines(spikes: np.ndarray, tmp_path: Path) -> None:
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert not installed (engines extra)")
    pytest.importorskip("tflite_micro", reason="tflite-micro not installed (engines extra)")
    path = export_model(load_model(DEFAULT_MODEL), tmp_path / "d.tflite", "tflite",
                        batch=len(spikes))
    net = import_model(path)
    refs = {p: E.run_litert(path, spikes, p) for p in E.LITERT_RESOLVERS}
    refs["tflm_reference"] = E.run_tflm(path, spikes, 1)
    for preset, ref in refs.items():
        line = E.mismatch_line(preset, simulate(net, load_config(preset), spikes).outputs, ref)
        assert not line, line


@pytest.mark.slow
@pytest.mark.parametrize("form", ["qlinear", "matmulinteger", "qdq", "qgemm"])
def test_default_model_onnxruntime(form: str, spikes: np.ndarray, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed (engines extra)")
    preset, why = E.ort_preset(form)
    if preset is None:
        pytest.skip(why)
    path = export_model(load_model(DEFAULT_MODEL), tmp_path / "d.onnx", "onnx", form=form)
    sim = simulate(import_model(path), load_config(preset), spikes).outputs
    line = E.mismatch_line(f"{preset} ({why})", sim, E.run_onnxruntime(path, spikes))
    assert not line, line
