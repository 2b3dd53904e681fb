"""Time Lava 0.10 and hwsim per query on the same layers, in one run (docs/neuromorphic.md).

    /work/lava-venv/bin/python tools/lava_speed.py --hwsim-python python3

Lava (this interpreter, Python 3.10 with lava-nc) runs the bundled demo model's two layers
(784 -> 1568 -> 100, weights from simulator/data/default_model.npz) as
* the ProdNeuron pipeline (one query per time step): wall time of Q + 2 steps / Q;
* Dense -> LIF -> Dense -> LIF for T steps per query: wall time of T * Q steps / Q;
then the given hwsim interpreter (Python >= 3.11, this repository on its path) runs the
loihi2_prodneuron and loihi2_lif presets on the same number of queries (engine.simulate, the
same random codes). Lava's weights here are the raw int8 matrices (2W for the pipeline), so
its arithmetic work equals hwsim's; values are not compared (tests/golden/lava does that).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "simulator" / "data" / "default_model.npz"

HWSIM_SNIPPET = """
import json, sys, time
import numpy as np
from simulator.config import load_config
from simulator.engine import simulate
from simulator.loaders import load_npz
net = load_npz(sys.argv[1])
x = np.load(sys.argv[2])
out = {}
for preset in ("loihi2_prodneuron", "loihi2_lif"):
    cfg = load_config(preset, [f"neuromorphic.timesteps={int(sys.argv[3])}"])
    simulate(net, cfg, x[:2])  # warm-up (imports, weight preparation caches)
    t0 = time.perf_counter()
    simulate(net, cfg, x)
    out[preset] = (time.perf_counter() - t0) / x.shape[0]
print(json.dumps(out))
"""


def lava_prod(w1: np.ndarray, w2: np.ndarray, x: np.ndarray) -> float:
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import Dense
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.prodneuron.process import ProdNeuron

    q = x.shape[0]
    n1, n2 = w1.shape[0], w2.shape[0]
    stim = np.zeros((x.shape[1], q + 2), np.int64)
    stim[:, :q] = x.T
    src = Source(data=stim)
    d1 = Dense(weights=2 * w1, weight_exp=-1, num_message_bits=24)
    c1 = Source(data=np.full((n1, 1), 200))
    p1 = ProdNeuron(shape=(n1,), vth=0, exp=19)
    d2 = Dense(weights=2 * w2, weight_exp=-1, num_message_bits=24)
    c2 = Source(data=np.full((n2, 1), 150))
    p2 = ProdNeuron(shape=(n2,), vth=0, exp=18)
    sink = Sink(shape=(n2,), buffer=q + 2)
    src.s_out.connect(d1.s_in)
    d1.a_out.connect(p1.a_in1)
    c1.s_out.connect(p1.a_in2)
    p1.s_out.connect(d2.s_in)
    d2.a_out.connect(p2.a_in1)
    c2.s_out.connect(p2.a_in2)
    p2.s_out.connect(sink.a_in)
    cfg = Loihi2SimCfg(select_tag="fixed_pt")
    src.run(condition=RunSteps(num_steps=1), run_cfg=cfg)  # compile and start outside the clock
    t0 = time.perf_counter()
    src.run(condition=RunSteps(num_steps=q + 1), run_cfg=cfg)
    dt = time.perf_counter() - t0
    src.stop()
    return dt / q


def lava_lif(w1: np.ndarray, w2: np.ndarray, x: np.ndarray, t_steps: int) -> float:
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import Dense
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.lif.process import LIF

    q = x.shape[0]
    stim = np.repeat(x.T, t_steps, axis=1)  # each query for t_steps steps
    src = Source(data=stim)
    d1 = Dense(weights=2 * w1, weight_exp=-7, num_message_bits=24)
    l1 = LIF(shape=(w1.shape[0],), du=4095, dv=0, vth=4940, bias_mant=0, bias_exp=0)
    d2 = Dense(weights=2 * w2, weight_exp=0)
    l2 = LIF(shape=(w2.shape[0],), du=4095, dv=0, vth=5209, bias_mant=0, bias_exp=0)
    sink = Sink(shape=(w2.shape[0],), buffer=q * t_steps)
    src.s_out.connect(d1.s_in)
    d1.a_out.connect(l1.a_in)
    l1.s_out.connect(d2.s_in)
    d2.a_out.connect(l2.a_in)
    l2.s_out.connect(sink.a_in)
    cfg = Loihi2SimCfg(select_tag="fixed_pt")
    src.run(condition=RunSteps(num_steps=1), run_cfg=cfg)
    t0 = time.perf_counter()
    src.run(condition=RunSteps(num_steps=q * t_steps - 1), run_cfg=cfg)
    dt = time.perf_counter() - t0
    src.stop()
    return dt / q


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--lif-queries", type=int, default=10, help="Lava LIF queries (slow)")
    ap.add_argument("--timesteps", type=int, default=32)
    ap.add_argument("--hwsim-python", default="", help="Python >= 3.11 that imports simulator")
    args = ap.parse_args(argv)
    with np.load(MODEL, allow_pickle=False) as f:
        w1 = f["m0.feature.combined.weight"].astype(np.int64)
        w2 = f["m0.output.combined.weight"].astype(np.int64)
    x = np.random.default_rng(0).integers(0, 256, (args.queries, w1.shape[1]))
    res = {"lava_prodneuron_ms": 1e3 * lava_prod(w1, w2, x),
           "lava_lif_ms": 1e3 * lava_lif(w1, w2, x[: args.lif_queries], args.timesteps)}
    if args.hwsim_python:
        path = Path("/tmp") / f"lava_speed_{id(res)}.npy"
        np.save(path, x.astype(np.uint8))
        try:
            out = subprocess.run(
                [args.hwsim_python, "-c", HWSIM_SNIPPET, str(MODEL), str(path),
                 str(args.timesteps)], check=True, capture_output=True, text=True, cwd=ROOT,
                env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
        finally:
            path.unlink(missing_ok=True)
        hw = json.loads(out.stdout.strip().splitlines()[-1])
        res["hwsim_prodneuron_ms"] = 1e3 * hw["loihi2_prodneuron"]
        res["hwsim_lif_ms"] = 1e3 * hw["loihi2_lif"]
    for key, val in res.items():
        print(f"{key:>22}: {val:8.2f} ms per query")
    return 0


if __name__ == "__main__":
    sys.exit(main())
