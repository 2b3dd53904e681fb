"""Engine oracles for the onnxruntime / litert_* / tflm_reference presets.

* :func:`random_network` builds a random VPRTempo-shaped combined network (K -> 2K -> places,
  one or more modules) whose scales are float32 numbers chosen so that many requantized values
  land exactly on a rounding tie (multipliers c * 2^-e) or next to one (multipliers 2^-e / 3,
  2^-e / 5, where a float64 multiplier and a 31-bit M0 disagree), and whose output codes clamp
  at both ends of the int8 / uint8 range.
* :func:`make_inputs` gives float spikes including exact input-quantizer ties, float32 edges
  and values far outside [0, 1] (input clamps at both ends).
* ``run_*`` run the engines themselves (onnxruntime, ai-edge-litert with each op resolver,
  tflite-micro) on an exported graph and return each module's output codes as hwsim's uint8
  codes (int8 engine codes + 128).

The truth is always the engine; nothing here computes expected codes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from simulator.network import QuantizedNetwork, make_combined_network

LITERT_RESOLVERS: dict[str, str] = {
    "litert_xnnpack": "AUTO",
    "litert_optimized": "BUILTIN_WITHOUT_DEFAULT_DELEGATES",
    "litert_reference": "BUILTIN_REF",
}


def _f32(v: float) -> float:
    return float(np.float32(v))


def _layer(rng: np.random.Generator, n_out: int, n_in: int, sx: float, in_span: float,
           out_zp: int) -> dict[str, Any]:
    """One layer: int8 weights, per-channel weight scales, an output scale that spreads the
    requantized values over about 1.3x the code range (so both ends clamp)."""
    w = rng.integers(-128, 128, size=(n_out, n_in), dtype=np.int64)
    w[rng.random(w.shape) < 0.1] = 0
    w[:, : max(1, n_in // 16)] = rng.choice([-128, 127], size=(n_out, max(1, n_in // 16)))
    w = w.astype(np.int8)
    # accumulator spread ~ in_span * 74 * sqrt(n_in); target |acc * m| ~ 160
    acc_sd = in_span * 74.0 * np.sqrt(n_in)
    target = 100.0 / acc_sd
    kinds = rng.integers(0, 5, size=n_out)
    e = np.floor(np.log2(target)).astype(int)
    m = np.empty(n_out)
    for j in range(n_out):
        if kinds[j] == 0:  # exact dyadic: ties whenever acc is an odd multiple of 2^(e-1)
            m[j] = rng.choice([1.0, 1.5, 1.25]) * 2.0 ** (e + rng.integers(-1, 2))
        elif kinds[j] == 1:  # 2^e / 3, 2^e / 5: exact ties in real arithmetic, inexact floats
            m[j] = 2.0 ** (e + 2 + rng.integers(-1, 2)) / rng.choice([3.0, 5.0, 6.0])
        elif kinds[j] == 4:  # sparse small weights, m = 1/6, 1/10, 1/12: a tie every few accs,
            # decided by the multiplier's representation error (float64 vs a 31-bit M0)
            w[j] = 0
            w[j, rng.choice(n_in, size=4, replace=False)] = rng.integers(-2, 3, size=4)
            m[j] = 1.0 / rng.choice([6.0, 10.0, 12.0])
        else:  # any float
            m[j] = target * rng.uniform(0.5, 2.0)
        if n_in >= 512 and j % 8 == 7:  # wide layers: rows of large weights, |acc| > 2^24
            w[j] = rng.integers(100, 128, size=n_in) * rng.choice([-1, 1])
            m[j] = 100.0 / (n_in * 255 * 113) * (1.5 if kinds[j] % 2 else rng.uniform(0.7, 1.4))
    sy = _f32(rng.choice([1.0, 3.0, 0.75, 1.2345678]) * 2.0 ** rng.integers(-6, 0))
    sw = np.array([_f32(mj * sy / sx) for mj in m])
    return {"weight": w, "scale": sw, "output_scale": sy, "output_zero_point": out_zp}


def random_network(seed: int, k: int = 48, places: int = 40, modules: int = 1) -> QuantizedNetwork:
    """A random VPRTempo-shaped network (float32-exact scales; see module doc)."""
    rng = np.random.default_rng(seed)
    mods = []
    for mi in range(modules):
        sx = _f32([1.0 / 256.0, 1.0 / 255.0, 0.0037, 1.0 / 200.0][(seed + mi) % 4])
        zx = [0, 3, 128, 77][(seed + 2 * mi) % 4]
        z1 = int(rng.integers(20, 236))
        z2 = int(rng.integers(20, 236))
        feat = _layer(rng, 2 * k, k, sx, 255.0 / 2, z1)
        out = _layer(rng, places, 2 * k, float(feat["output_scale"]), 255.0 / 2, z2)
        mods.append({"input_scale": sx, "input_zero_point": zx, "feature": feat, "output": out})
    return make_combined_network(mods, source=f"random_network(seed={seed})")


def make_inputs(seed: int, q: int, net: QuantizedNetwork) -> np.ndarray:
    """Float32 spikes (q, K): uniform, exact quantizer ties, float32 edges, clamps."""
    rng = np.random.default_rng(seed)
    k = net.in_features
    x = rng.random((q, k)).astype(np.float32)
    sx = np.float32(net.modules[0].input_scale)
    n = rng.integers(0, 255, size=(q, k)).astype(np.float32)
    ties = ((n + np.float32(0.5)) * sx).astype(np.float32)  # exact: x / sx = n + 1/2 if dyadic
    pick = rng.random((q, k))
    x = np.where(pick < 0.3, ties, x)
    # float32 neighbours of ties: where f32(x / s), f32(x * f32(1/s)) and fmaf disagree
    nb = np.nextafter(ties, np.where(rng.random((q, k)) < 0.5, np.inf, -np.inf).astype(np.float32))
    x = np.where((pick >= 0.3) & (pick < 0.45), nb, x)
    x = np.where((pick >= 0.45) & (pick < 0.5), rng.choice([-3.0, 7.0], size=(q, k)), x)
    # some queries bright or dark overall: feature codes clamp at both ends
    x[: q // 8] = np.clip(x[: q // 8] * 3, -1, 4)
    x[q // 8 : q // 4] *= np.float32(0.05)
    return x.astype(np.float32)


def as_hwsim_codes(codes: np.ndarray) -> np.ndarray:
    """Engine output codes (int8 or uint8) as hwsim's uint8 codes, int64."""
    c = np.asarray(codes)
    return c.astype(np.int64) + (128 if c.dtype == np.int8 else 0)


def run_litert(path: Path, x: np.ndarray, preset: str) -> np.ndarray:
    """Run ai-edge-litert with the op resolver of ``preset``; (Q, places) hwsim codes."""
    from ai_edge_litert import interpreter as lit

    res = getattr(lit.OpResolverType, LITERT_RESOLVERS[preset])
    it = lit.Interpreter(model_path=str(path), experimental_op_resolver_type=res, num_threads=1)
    inp = it.get_input_details()[0]
    it.resize_tensor_input(inp["index"], list(x.shape))
    it.allocate_tensors()
    it.set_tensor(inp["index"], x)
    it.invoke()
    outs = sorted(it.get_output_details(), key=lambda d: int(d["name"].rsplit("_", 1)[1]))
    return np.concatenate([as_hwsim_codes(it.get_tensor(d["index"])) for d in outs], axis=1)


def run_tflm(path: Path, x: np.ndarray, n_outputs: int) -> np.ndarray:
    """Run the tflite-micro Python interpreter (graph exported with batch = len(x))."""
    from tflite_micro.python.tflite_micro import runtime

    blob = path.read_bytes()
    it = runtime.Interpreter.from_bytes(blob, arena_size=len(blob) * 4 + x.nbytes * 64 + 65536)
    it.set_input(x, 0)
    it.invoke()
    return np.concatenate([as_hwsim_codes(it.get_output(i)) for i in range(n_outputs)], axis=1)


def run_onnxruntime(path: Path, x: np.ndarray) -> np.ndarray:
    """Run onnxruntime (CPU, one thread); (Q, places) hwsim codes."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    outs = sess.run(None, {name: x})
    return np.concatenate([as_hwsim_codes(o) for o in outs], axis=1)


def cpu_flags() -> set[str]:
    """The host's x86 ISA flags (/proc/cpuinfo), empty where unknown."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def ort_preset(form: str) -> tuple[str | None, str]:
    """The onnxruntime preset for this host's MLAS u8s8 kernel, or (None, why not)."""
    flags = cpu_flags()
    base = "onnxruntime_matmulinteger" if form == "matmulinteger" else "onnxruntime"
    if flags & {"avx512_vnni", "avx_vnni"}:
        return base, "VNNI host: VPDPBUSD sums products exactly"
    if "avx2" in flags and "avx512bw" not in flags:
        return base + "_avx2", "AVX2 host: VPMADDUBSW saturates pairs to int16"
    return None, (f"no onnxruntime preset measured for this host's ISA (flags "
                  f"{sorted(flags & {'avx2', 'avx512bw', 'avx512_vnni', 'avx_vnni'})}); "
                  "presets exist for AVX2 without AVX-512 and for VNNI hosts")


def hwsim_run(tmp: Path, model: Path, x: np.ndarray, preset: str,
              sets: tuple[str, ...] = ()) -> np.ndarray:
    """``hwsim run --config preset --model model --input x.npy``; its outputs.npy (int64)."""
    from simulator.cli import main

    xin = tmp / f"x_{preset}.npy"
    np.save(xin, x)
    out = tmp / f"run_{preset}_{model.stem}"
    argv = ["run", "--config", preset, "--model", str(model), "--input", str(xin),
            "--out", str(out), "--quiet"]
    for s in sets:
        argv += ["--set", s]
    rc = main(argv)
    assert rc == 0, f"hwsim run {preset} on {model} exited {rc}"
    return np.load(out / "outputs.npy").astype(np.int64)


def mismatch_line(name: str, sim: np.ndarray, ref: np.ndarray) -> str:
    """A short description of where hwsim and an engine disagree ('' when they do not)."""
    diff = sim != ref
    if not diff.any():
        return ""
    q, j = np.argwhere(diff)[0]
    return (f"{name}: {int(diff.sum())} of {diff.size} codes differ; first at query {q} "
            f"place {j}: hwsim {int(sim[q, j])}, engine {int(ref[q, j])}")
