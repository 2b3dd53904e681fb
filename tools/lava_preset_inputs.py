"""Inputs for the preset goldens: a random VPRTempo-shaped network mapped by each loihi2_* preset.

    PYTHONPATH=. python tools/lava_preset_inputs.py     # writes tests/golden/lava/preset_*_in.npz

Each file holds the quantized network (to rebuild it in the tests), input codes, and the
constants the preset's mapping gives Lava (Dense weights, weight_exp, ProdNeuron M0 and shift,
LIF thresholds and biases). tools/lava_golden.py then runs Lava on exactly those constants
(preset_*.npz); tests/test_neuromorphic_lava.py checks that the mapping still gives them and
that the engine equals Lava on every output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from simulator.config import load_config
from simulator.engine.neuromorphic import lava_constants
from simulator.network import make_combined_network

OUT = Path(__file__).resolve().parent.parent / "tests" / "golden" / "lava"


def network_arrays(seed: int, q: int) -> dict[str, np.ndarray]:
    """A 64 -> 128 -> 10 quantized module with trained-looking scales, and input codes."""
    rng = np.random.default_rng(seed)
    return {
        "w1": rng.integers(-128, 128, (128, 64)).astype(np.int8),
        "w2": rng.integers(-128, 128, (10, 128)).astype(np.int8),
        "sw1": rng.uniform(0.002, 0.01, 128), "sw2": rng.uniform(0.002, 0.01, 10),
        "sx": np.float64(1 / 255), "zx": np.int64(0),
        "sy1": np.float64(rng.uniform(0.02, 0.05)), "zy1": np.int64(rng.integers(60, 140)),
        "sy2": np.float64(rng.uniform(0.05, 0.2)), "zy2": np.int64(rng.integers(60, 140)),
        "x": rng.integers(0, 256, (q, 64)).astype(np.uint8),
    }


def build_network(a: dict[str, np.ndarray]):
    def layer(w: str, sw: str, sy: str, zy: str) -> dict:
        return dict(weight=np.asarray(a[w], np.int8), scale=a[sw], output_scale=float(a[sy]),
                    output_zero_point=int(a[zy]))

    return make_combined_network([dict(
        input_scale=float(a["sx"]), input_zero_point=int(a["zx"]),
        feature=layer("w1", "sw1", "sy1", "zy1"), output=layer("w2", "sw2", "sy2", "zy2"))])


def mapping(preset: str, a: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The constants the preset's mapping hands to Lava (engine.neuromorphic.lava_constants)."""
    return lava_constants(build_network(a), load_config(preset))


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for preset, seed, q in (("loihi2_prodneuron", 31, 12), ("loihi2_lif", 32, 3)):
        a = network_arrays(seed, q)
        a.update(mapping(preset, a))
        path = OUT / f"preset_{preset}_in.npz"
        np.savez_compressed(path, **a)
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
