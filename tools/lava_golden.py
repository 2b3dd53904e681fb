"""Golden vectors from Lava (lava-nc 0.10) for the neuromorphic datapath (tests/golden/lava/).

Runs in a Python 3.10 venv with lava-nc installed (it cannot share this project's interpreter):

    ~/.pyenv/versions/3.10.13/bin/python -m venv /work/lava-venv
    /work/lava-venv/bin/pip install lava-nc==0.10.0
    /work/lava-venv/bin/python tools/lava_golden.py                 # (re)write the goldens
    /work/lava-venv/bin/python tools/lava_golden.py --check         # fail if Lava disagrees

Every case builds small random VPRTempo-shaped layers (64 -> 128 -> 10) from a fixed seed with
Lava's own bit-accurate CPU process models (Loihi2SimCfg, select_tag="fixed_pt"):

* ``prod_*``: RingBuffer(graded x - zx) -> Dense(weights, weight_exp, graded) -> ProdNeuron(
  x M0_j, >> s) -> Dense -> ProdNeuron, one query per time step; the Dense outputs and the
  ProdNeuron outputs of every step are recorded.
* ``lif_*``: RingBuffer(graded input per step) -> Dense -> LIF -> Dense(binary spikes) -> LIF;
  the Dense outputs, spikes, u and v of both LIF populations are recorded after every step.
* ``net_*``: whole quantized networks; ``preset_*``: Lava on exactly the constants the
  loihi2_* presets' mapping produced (inputs ``preset_*_in.npz`` from
  tools/lava_preset_inputs.py, which needs the simulator and so Python >= 3.11).

Cases with large values drive Lava's silent corners: int32 dot wraps, weight-exponent shift
wraps, ProdNeuron int32 product wraps, u's one-sided 24-bit correction, the int32 wrap of
a_in << 6 and v's clamp at +-(2^23 - 1). Files are plain .npz (no pickles). Nothing here
imports the simulator: the tests (tests/test_neuromorphic_lava.py) compare against the files.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "tests" / "golden" / "lava"

# name: (kind, seed, params)
PROD_CASES = {
    # the mapped VPRTempo pipeline: 2W with weight_exp -1, offset codes, 8-bit multipliers
    "prod_typical": dict(seed=1, q=24, k=64, n1=128, n2=10, w_lo=-128, w_hi=127, double=True,
                         weight_exp=(-1, -1), weight_bits=(8, 8), x_lo=0, x_hi=255, zx=0,
                         m0_bits=(8, 8), shift=(16, 12), vth=(0, 0)),
    # odd weights given as they are (floor-to-even), 6-bit weights, a threshold, zx > 0
    "prod_rules": dict(seed=2, q=16, k=64, n1=128, n2=10, w_lo=-300, w_hi=300, double=False,
                       weight_exp=(0, 1), weight_bits=(8, 6), x_lo=0, x_hi=255, zx=37,
                       m0_bits=(12, 12), shift=(18, 16), vth=(3, 0)),
    # excitatory-only then inhibitory-only weights (clip to [0, 255] / [-255, 0], truncation
    # toward zero for inhibitory weights) at 7 and 5 weight bits
    "prod_signs": dict(seed=4, q=16, k=64, n1=128, n2=10, w_lo=0, w_hi=300, w2_lo=-300,
                       w2_hi=0, double=False, weight_exp=(0, 0), weight_bits=(7, 5), x_lo=0,
                       x_hi=255, zx=0, m0_bits=(10, 10), shift=(18, 16), vth=(0, 0)),
    # wide multipliers and graded inputs large enough for dot, shift and product wraps
    "prod_wrap": dict(seed=3, q=16, k=64, n1=128, n2=10, w_lo=-256, w_hi=255, double=False,
                      weight_exp=(2, 3), weight_bits=(8, 8), x_lo=-(1 << 20), x_hi=1 << 20,
                      zx=0, m0_bits=(16, 16), shift=(8, 4), vth=(0, 0)),
}
LIF_CASES = {
    "lif_typical": dict(seed=11, t=32, k=64, n1=128, n2=10, w_lo=-128, w_hi=127,
                        weight_exp=(-3, 0), x_lo=0, x_hi=255, du=4095, dv=0, vth=(2000, 40),
                        bias_mant=(0, 0), bias_exp=(0, 0)),
    "lif_leaky": dict(seed=12, t=32, k=64, n1=128, n2=10, w_lo=-256, w_hi=255,
                      weight_exp=(-4, 2), x_lo=-60, x_hi=255, du=512, dv=300, vth=(3000, 500),
                      bias_mant=(40, -7), bias_exp=(3, 1)),
    # u corrections, u left outside 24 bits, a_in << 6 int32 wraps, v clamps, int32 dot wraps
    "lif_overflow": dict(seed=13, t=24, k=64, n1=128, n2=10, w_lo=-256, w_hi=255,
                         weight_exp=(0, 21), x_lo=-(1 << 19), x_hi=1 << 20, du=17, dv=0,
                         vth=(131071, 100000), bias_mant=(4095, -4096), bias_exp=(7, 7)),
}

# whole quantized networks (per-channel weight scales, zero points) for engine-level tests:
# the test builds a QuantizedNetwork from the file and runs the loihi2_* preset on it
NET_CASES = {
    "net_prod": dict(seed=21, q=12, k=64, n1=128, n2=10, m0_bits=8, shift=(15, 14)),
    "net_lif": dict(seed=22, q=3, t=20, k=64, n1=128, n2=10, weight_exp=(-5, 0), du=4095,
                    dv=0, vth=(40, 30), bias_mant=(0, 0), bias_exp=(0, 0)),
}


def _net(p: dict) -> dict[str, np.ndarray]:
    """Random int8 layers with float scales shaped like a trained VPRTempoQuant module."""
    rng = _rng_case(p["seed"])
    k, n1, n2 = p["k"], p["n1"], p["n2"]
    return {
        "w1": rng.integers(-128, 128, size=(n1, k)).astype(np.int64),
        "w2": rng.integers(-128, 128, size=(n2, n1)).astype(np.int64),
        "sw1": rng.uniform(0.002, 0.01, size=n1), "sw2": rng.uniform(0.002, 0.01, size=n2),
        "sx": np.float64(1 / 255), "zx": np.int64(0),
        "sy1": np.float64(rng.uniform(0.02, 0.05)), "zy1": np.int64(rng.integers(60, 140)),
        "sy2": np.float64(rng.uniform(0.05, 0.2)), "zy2": np.int64(rng.integers(60, 140)),
        "x": rng.integers(0, 256, size=(p.get("q", 1), k)).astype(np.int64),
    }


def _m0(sx: float, sw: np.ndarray, sy: float, shift: int) -> np.ndarray:
    """M0_j = floor(m_j 2^shift + 1/2) with m_j = sx * sw_j / sy in float64."""
    real = np.float64(sx) * np.asarray(sw, dtype=np.float64) / np.float64(sy)
    return np.floor(np.ldexp(real, shift) + 0.5).astype(np.int64)


def run_net_prod(p: dict) -> dict[str, np.ndarray]:
    net = _net(p)
    s1, s2 = p["shift"]
    m1 = _m0(net["sx"], net["sw1"], net["sy1"], s1)
    m2 = _m0(net["sy1"], net["sw2"], net["sy2"], s2)
    assert m1.max() < 1 << p["m0_bits"] and m2.max() < 1 << p["m0_bits"], "shift too large"
    q = dict(q=p["q"], double=True, weight_exp=(-1, -1), weight_bits=(8, 8), zx=int(net["zx"]),
             shift=p["shift"], vth=(0, 0))
    out = _prod_pipeline(q, net["w1"], net["w2"], net["x"], m1, m2)
    out.update({"m0_1": m1, "m0_2": m2})
    out.update({k: v for k, v in net.items() if k not in out})
    return out


def run_net_lif(p: dict) -> dict[str, np.ndarray]:
    """Each query alone (fresh state) for t steps, its offset codes presented every step."""
    net = _net(p)
    per_q = []
    for qi in range(p["q"]):
        xq = np.repeat((net["x"][qi] - net["zx"])[None, :], p["t"], axis=0)
        c = dict(p, x_fixed=xq, w1=2 * net["w1"], w2=2 * net["w2"])
        per_q.append(run_lif(c))
    out = {k: v for k, v in net.items()}
    out.update({"weight_exp": np.asarray(p["weight_exp"], np.int64), "t": np.int64(p["t"]),
                "du": np.int64(p["du"]), "dv": np.int64(p["dv"]),
                "vth": np.asarray(p["vth"], np.int64),
                "bias_mant": np.asarray(p["bias_mant"], np.int64),
                "bias_exp": np.asarray(p["bias_exp"], np.int64)})
    for key in ("spikes1", "u1", "v1", "spikes2", "u2", "v2", "dense1", "dense2"):
        out[f"lava_{key}"] = np.stack([r[f"lava_{key}"] for r in per_q])  # (q, steps, n)
    return out


def _rng_case(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def run_prod(p: dict) -> dict[str, np.ndarray]:
    rng = _rng_case(p["seed"])
    q, k, n1, n2 = p["q"], p["k"], p["n1"], p["n2"]
    w1 = rng.integers(p["w_lo"], p["w_hi"] + 1, size=(n1, k)).astype(np.int64)
    w2 = rng.integers(p.get("w2_lo", p["w_lo"]), p.get("w2_hi", p["w_hi"]) + 1,
                      size=(n2, n1)).astype(np.int64)
    if p["double"]:
        w1 = np.clip(w1, -128, 127)
        w2 = np.clip(w2, -128, 127)
    x = rng.integers(p["x_lo"], p["x_hi"] + 1, size=(q, k)).astype(np.int64)
    b1, b2 = p["m0_bits"]
    m1 = rng.integers(1 << (b1 - 1), 1 << b1, size=n1).astype(np.int64)
    m2 = rng.integers(1 << (b2 - 1), 1 << b2, size=n2).astype(np.int64)
    out = _prod_pipeline(p, w1, w2, x, m1, m2)
    out.update({"w1": w1, "w2": w2, "x": x, "m0_1": m1, "m0_2": m2,
                "weight_bits": np.asarray(p["weight_bits"], np.int64)})
    return out


def _prod_pipeline(p: dict, w1: np.ndarray, w2: np.ndarray, x: np.ndarray, m1: np.ndarray,
                   m2: np.ndarray) -> dict[str, np.ndarray]:
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import Dense
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.prodneuron.process import ProdNeuron

    q, k = x.shape
    n1, n2 = w1.shape[0], w2.shape[0]
    steps = q + 2
    stim = np.zeros((k, steps), dtype=np.int64)
    stim[:, :q] = (x - p["zx"]).T
    dw1 = 2 * w1 if p["double"] else w1
    dw2 = 2 * w2 if p["double"] else w2
    src = Source(data=stim)
    d1 = Dense(weights=dw1, weight_exp=p["weight_exp"][0], num_weight_bits=p["weight_bits"][0],
               num_message_bits=24)
    c1 = Source(data=m1[:, None])
    p1 = ProdNeuron(shape=(n1,), vth=p["vth"][0], exp=p["shift"][0])
    d2 = Dense(weights=dw2, weight_exp=p["weight_exp"][1], num_weight_bits=p["weight_bits"][1],
               num_message_bits=24)
    c2 = Source(data=m2[:, None])
    p2 = ProdNeuron(shape=(n2,), vth=p["vth"][1], exp=p["shift"][1])
    sinks = {name: Sink(shape=(n,), buffer=steps) for name, n in
             (("dense1", n1), ("prod1", n1), ("dense2", n2), ("prod2", n2))}
    src.s_out.connect(d1.s_in)
    d1.a_out.connect(p1.a_in1)
    c1.s_out.connect(p1.a_in2)
    p1.s_out.connect(d2.s_in)
    d2.a_out.connect(p2.a_in1)
    c2.s_out.connect(p2.a_in2)
    d1.a_out.connect(sinks["dense1"].a_in)
    p1.s_out.connect(sinks["prod1"].a_in)
    d2.a_out.connect(sinks["dense2"].a_in)
    p2.s_out.connect(sinks["prod2"].a_in)
    src.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
    rec = {name: np.asarray(s.data.get()).T.astype(np.int64) for name, s in sinks.items()}
    src.stop()
    out = {
        "zx": np.int64(p["zx"]), "dense_weights_doubled": np.bool_(p["double"]),
        "weight_exp": np.asarray(p["weight_exp"], np.int64),
        "shift": np.asarray(p["shift"], np.int64), "vth": np.asarray(p["vth"], np.int64),
    }
    out.update({f"lava_{name}": v for name, v in rec.items()})  # (steps, neurons)
    return out


def run_lif(p: dict) -> dict[str, np.ndarray]:
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import Dense
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.lif.process import LIF

    rng = _rng_case(p["seed"])
    t, k, n1, n2 = p["t"], p["k"], p["n1"], p["n2"]
    if "x_fixed" in p:  # a whole network's case (run_net_lif)
        w1, w2, x = p["w1"], p["w2"], p["x_fixed"]
    else:
        w1 = rng.integers(p["w_lo"], p["w_hi"] + 1, size=(n1, k)).astype(np.int64)
        w2 = rng.integers(p["w_lo"], p["w_hi"] + 1, size=(n2, n1)).astype(np.int64)
        x = rng.integers(p["x_lo"], p["x_hi"] + 1, size=(t, k)).astype(np.int64)
    bm1 = rng.integers(min(0, p["bias_mant"][0]), max(0, p["bias_mant"][0]) + 1, size=n1)
    bm2 = rng.integers(min(0, p["bias_mant"][1]), max(0, p["bias_mant"][1]) + 1, size=n2)
    src = Source(data=x.T.copy())
    d1 = Dense(weights=w1, weight_exp=p["weight_exp"][0], num_message_bits=24)
    l1 = LIF(shape=(n1,), du=p["du"], dv=p["dv"], vth=p["vth"][0], bias_mant=bm1,
             bias_exp=p["bias_exp"][0])
    d2 = Dense(weights=w2, weight_exp=p["weight_exp"][1])
    l2 = LIF(shape=(n2,), du=p["du"], dv=p["dv"], vth=p["vth"][1], bias_mant=bm2,
             bias_exp=p["bias_exp"][1])
    sinks = {name: Sink(shape=(n,), buffer=t) for name, n in
             (("dense1", n1), ("spikes1", n1), ("dense2", n2), ("spikes2", n2))}
    src.s_out.connect(d1.s_in)
    d1.a_out.connect(l1.a_in)
    l1.s_out.connect(d2.s_in)
    d2.a_out.connect(l2.a_in)
    d1.a_out.connect(sinks["dense1"].a_in)
    l1.s_out.connect(sinks["spikes1"].a_in)
    d2.a_out.connect(sinks["dense2"].a_in)
    l2.s_out.connect(sinks["spikes2"].a_in)
    cfg = Loihi2SimCfg(select_tag="fixed_pt")
    u1, v1, u2, v2 = [], [], [], []
    for _ in range(t):
        src.run(condition=RunSteps(num_steps=1), run_cfg=cfg)
        u1.append(np.asarray(l1.u.get()))
        v1.append(np.asarray(l1.v.get()))
        u2.append(np.asarray(l2.u.get()))
        v2.append(np.asarray(l2.v.get()))
    rec = {name: np.asarray(s.data.get()).T.astype(np.int64) for name, s in sinks.items()}
    src.stop()
    out = {
        "w1": w1, "w2": w2, "x": x, "weight_exp": np.asarray(p["weight_exp"], np.int64),
        "du": np.int64(p["du"]), "dv": np.int64(p["dv"]),
        "vth": np.asarray(p["vth"], np.int64), "bias_mant_1": bm1.astype(np.int64),
        "bias_mant_2": bm2.astype(np.int64), "bias_exp": np.asarray(p["bias_exp"], np.int64),
    }
    out.update({f"lava_{name}": v for name, v in rec.items()})  # (steps, neurons)
    for name, seq in (("u1", u1), ("v1", v1), ("u2", u2), ("v2", v2)):
        out[f"lava_{name}"] = np.stack(seq).astype(np.int64)
    return out


def _lif_net_run(w1, w2, e1, e2, lif1: dict, lif2: dict, stim: np.ndarray) -> dict:
    """Dense(graded) -> LIF -> Dense(binary) -> LIF on ``stim`` (steps, K); per-step records."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import Dense
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.lif.process import LIF

    t = stim.shape[0]
    n1, n2 = w1.shape[0], w2.shape[0]
    src = Source(data=stim.T.copy())
    d1 = Dense(weights=w1, weight_exp=int(e1), num_message_bits=24)
    l1 = LIF(shape=(n1,), **lif1)
    d2 = Dense(weights=w2, weight_exp=int(e2))
    l2 = LIF(shape=(n2,), **lif2)
    sinks = {name: Sink(shape=(n,), buffer=t) for name, n in
             (("dense1", n1), ("spikes1", n1), ("dense2", n2), ("spikes2", n2))}
    src.s_out.connect(d1.s_in)
    d1.a_out.connect(l1.a_in)
    l1.s_out.connect(d2.s_in)
    d2.a_out.connect(l2.a_in)
    d1.a_out.connect(sinks["dense1"].a_in)
    l1.s_out.connect(sinks["spikes1"].a_in)
    d2.a_out.connect(sinks["dense2"].a_in)
    l2.s_out.connect(sinks["spikes2"].a_in)
    cfg = Loihi2SimCfg(select_tag="fixed_pt")
    rec: dict[str, list] = {"u1": [], "v1": [], "u2": [], "v2": []}
    for _ in range(t):
        src.run(condition=RunSteps(num_steps=1), run_cfg=cfg)
        rec["u1"].append(np.asarray(l1.u.get()))
        rec["v1"].append(np.asarray(l1.v.get()))
        rec["u2"].append(np.asarray(l2.u.get()))
        rec["v2"].append(np.asarray(l2.v.get()))
    out = {name: np.asarray(sk.data.get()).T.astype(np.int64) for name, sk in sinks.items()}
    src.stop()
    out.update({k: np.stack(v).astype(np.int64) for k, v in rec.items()})
    return out


def run_preset(inp: Path) -> dict[str, np.ndarray]:
    """Lava on the constants a loihi2_* preset's mapping produced (tools/lava_preset_inputs.py)."""
    with np.load(inp, allow_pickle=False) as f:
        a = {k: f[k] for k in f.files}
    x = a["x"].astype(np.int64)
    if "map_m0_1" in a:
        p = dict(double=False, weight_exp=(int(a["map_weight_exp1"]), int(a["map_weight_exp2"])),
                 weight_bits=(8, 8), zx=int(a["zx"]),
                 shift=(int(a["map_shift1"]), int(a["map_shift2"])),
                 vth=(int(a["map_vth1"]), int(a["map_vth2"])))
        out = _prod_pipeline(p, a["map_w1"], a["map_w2"], x, a["map_m0_1"], a["map_m0_2"])
        return {k: v for k, v in out.items() if k.startswith("lava_")}
    t = int(a["timesteps"])
    lifs = [dict(du=int(a[f"map_du{i}"]), dv=int(a[f"map_dv{i}"]), vth=int(a[f"map_vth{i}"]),
                 bias_mant=a[f"map_bias_mant{i}"], bias_exp=int(a[f"map_bias_exp{i}"]))
            for i in (1, 2)]
    runs = [_lif_net_run(a["map_w1"], a["map_w2"], a["map_weight_exp1"], a["map_weight_exp2"],
                         lifs[0], lifs[1], np.repeat((xq - int(a["zx"]))[None, :], t, axis=0))
            for xq in x]
    return {f"lava_{k}": np.stack([r[k] for r in runs]) for k in runs[0]}  # (q, steps, n)


def generate(out_dir: Path) -> list[Path]:
    import lava  # noqa: F401  (fail early with a clear message when lava-nc is missing)

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, p in PROD_CASES.items():
        path = out_dir / f"{name}.npz"
        np.savez_compressed(path, **run_prod(p))
        written.append(path)
    for name, p in LIF_CASES.items():
        path = out_dir / f"{name}.npz"
        np.savez_compressed(path, **run_lif(p))
        written.append(path)
    for name, p in NET_CASES.items():
        path = out_dir / f"{name}.npz"
        run = run_net_prod if name.startswith("net_prod") else run_net_lif
        np.savez_compressed(path, **run(p))
        written.append(path)
    for inp in sorted(OUT.glob("preset_*_in.npz")):  # inputs from tools/lava_preset_inputs.py
        path = out_dir / inp.name.replace("_in.npz", ".npz")
        np.savez_compressed(path, **run_preset(inp))
        written.append(path)
    return written


def compare(new: Path, old: Path) -> list[str]:
    """Differences between two golden folders (file set, array names, values)."""
    problems = []
    for f in sorted(new.glob("*.npz")):
        g = old / f.name
        if not g.is_file():
            problems.append(f"{g}: missing (Lava produced {f.name})")
            continue
        with np.load(f, allow_pickle=False) as a, np.load(g, allow_pickle=False) as b:
            if set(a.files) != set(b.files):
                problems.append(f"{g}: arrays {sorted(b.files)} != {sorted(a.files)}")
                continue
            for key in a.files:
                if a[key].shape != b[key].shape or not np.array_equal(a[key], b[key]):
                    n = int(np.sum(a[key] != b[key])) if a[key].shape == b[key].shape else -1
                    problems.append(f"{g}: {key} differs from Lava ({n} values)")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT, help="golden folder (default %(default)s)")
    ap.add_argument("--check", action="store_true",
                    help="regenerate into a temporary folder and fail if it differs from --out")
    args = ap.parse_args(argv)
    try:
        import lava  # noqa: F401
    except ImportError:
        print("lava_golden: error: lava-nc is not importable; run this with a Python 3.10 "
              "venv holding lava-nc==0.10.0 (see the module docstring)", file=sys.stderr)
        return 2
    if not args.check:
        for path in generate(args.out):
            print(f"wrote {path} ({path.stat().st_size:,} bytes)")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        problems = compare(Path(tmp), args.out)
    for line in problems:
        print(f"lava_golden: {line}", file=sys.stderr)
    if not problems:
        print(f"lava_golden: {args.out} equals Lava {_lava_version()} on every value")
    return 1 if problems else 0


def _lava_version() -> str:
    try:
        from importlib.metadata import version

        return version("lava-nc")
    except Exception:  # pragma: no cover - metadata missing
        return "(unknown version)"


if __name__ == "__main__":
    sys.exit(main())
