"""The readout joins modules as VPRTempoQuant's quantized torch.cat does: zero mismatches.

torch.cat re-expresses each module's quint8 codes on module 0's output grid; the argmax of
the dequantized result is VPRTempoQuant's prediction. Oracle: torch 2.13 on both engines,
each against the preset describing this host (``O.host_preset``); on an AVX2 host
``pytorch_fbgemm`` is checked too on the queries that no saturating int16 pair reaches.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch_oracle as O  # noqa: E402

from simulator.config import load_config  # noqa: E402
from simulator.engine import simulate  # noqa: E402
from simulator.loaders.vprtempo_pth import load_vprtempo_pth  # noqa: E402


@pytest.mark.parametrize("engine", O.ENGINES)
def test_joined_scores_and_predictions_match_torch_cat(engine: str, tmp_path) -> None:
    host, nominal = O.host_preset(engine), O.PRESET_OF_ENGINE[engine]
    mismatches = {host: 0, nominal: 0}
    compared = {host: 0, nominal: 0}
    requantized = 0
    for seed in range(24):
        rng = np.random.default_rng(1000 + seed)
        k = int(rng.integers(1, 40))
        n_mod = int(rng.integers(2, 4))
        mods = [
            O.qat_module(
                k, int(rng.integers(1, 30)), int(rng.integers(1, 12)), rng, qconfig=engine,
                input_range=(0.0, float(rng.uniform(0.3, 4.0))),
            )
            for _ in range(n_mod)
        ]
        path = O.save_pth(mods, tmp_path / f"m{seed}.pth")
        x = rng.random((int(rng.integers(1, 40)), k)).astype(np.float32)
        ref = O.run_torch(path, x, engine)
        net = load_vprtempo_pth(path)
        # VPRTempoQuant's prediction: argmax of dequant(cat) == argmax of the cat codes
        torch_pred = ref.cat_codes.argmax(axis=1)
        res = simulate(net, load_config(host), x)
        assert np.array_equal(res.outputs, ref.codes), (host, seed)
        mismatches[host] += int((res.scores != ref.cat_codes).sum())
        mismatches[host] += int((res.predictions != torch_pred).sum())
        compared[host] += ref.cat_codes.size
        requantized += int((ref.cat_codes != ref.codes).sum())
        if nominal != host:  # pytorch_fbgemm on an AVX2 host: queries with no saturated pair
            rows = O.unsaturated(ref).rows
            res = simulate(net, load_config(nominal), x)
            assert np.array_equal(res.outputs[rows], ref.codes[rows]), (nominal, seed)
            mismatches[nominal] += int((res.scores[rows] != ref.cat_codes[rows]).sum())
            mismatches[nominal] += int((res.predictions[rows] != torch_pred[rows]).sum())
            compared[nominal] += ref.cat_codes[rows].size
    print(f"\n[readout] {engine}: joined codes compared per preset {compared}")
    assert compared[host] > 1000
    assert compared[nominal] > 500
    assert requantized > 0, "no case exercised the requantizing join"
    assert mismatches == {host: 0, nominal: 0}


def test_codes_mode_keeps_each_module_codes(tmp_path) -> None:
    rng = np.random.default_rng(7)
    mods = [O.qat_module(6, 10, 4, rng, input_range=(0.0, r)) for r in (1.0, 3.0)]
    path = O.save_pth(mods, tmp_path / "m.pth")
    x = rng.random((16, 6)).astype(np.float32)
    net = load_vprtempo_pth(path)
    res = simulate(net, load_config("pytorch_fbgemm", ["readout.concat='codes'"]), x)
    assert np.array_equal(res.scores, res.outputs)
    assert np.array_equal(res.predictions, res.outputs.argmax(axis=1))
