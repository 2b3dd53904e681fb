"""The pytorch_fbgemm / pytorch_qnnpack presets against torch 2.13 itself: zero mismatches.

Every case builds VPRTempoQuant-shaped modules with torch (QAT + ``convert``, or crafted
weights and scales), saves them in VPRTempo's ``.pth`` layout, runs torch on the model
*loaded back* from that file, and compares the simulator's codes element by element: the
quantized inputs, the feature layer's codes and the final output codes.

Random cases cover K from 1 to 3136, N from 1 to 6272, 1-3 modules, both qconfigs, float32,
float64 and uint8 inputs; crafted cases put exact ties, accumulators above 2^24 and
single-vs-double rounding differences in front of both presets, and check that each crafted
case really separates the right formula from the wrong ones.

Engine fbgemm is compared with the preset that describes this host (``O.host_preset``): on an
AVX512-VNNI host ``pytorch_fbgemm`` (exact int32 sums), on an AVX2 host ``x86_avx2_fbgemm``
(raw pairs saturated to int16) -- every code, every case. On an AVX2 host ``pytorch_fbgemm``
is compared as well, on every code that no saturating pair reaches (``O.unsaturated``); the
crafted cases keep their pairs inside int16, so they prove ``pytorch_fbgemm`` in full there.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch_oracle as O  # noqa: E402

from simulator.config import load_config  # noqa: E402
from simulator.engine import simulate  # noqa: E402
from simulator.loaders.vprtempo_pth import load_vprtempo_pth  # noqa: E402

N_RANDOM = 200
STYLES = ("normal", "positive", "vprtempo", "uniform")
# per preset: cases, codes compared, codes of those cases left out (AVX2 pairs saturated there)
COMPARED: dict[str, dict[str, int]] = {}
LAST: dict[str, Any] = {}


@cache
def _cfg(preset: str) -> Any:
    return load_config(preset)


def _count(preset: str, compared: int, skipped: int = 0) -> None:
    c = COMPARED.setdefault(preset, {"cases": 0, "codes": 0, "skipped": 0})
    c["cases"] += 1
    c["codes"] += compared
    c["skipped"] += skipped


@pytest.fixture(autouse=True, scope="module")
def _two_threads_and_summary() -> Any:
    old = torch.get_num_threads()
    torch.set_num_threads(min(2, old))
    yield
    torch.set_num_threads(old)
    host = "exact int32 (VNNI)" if O.fbgemm_host_is_exact() else "AVX2 pairs"
    for preset, c in sorted(COMPARED.items()):
        print(f"\n[oracle] host fbgemm {host}: {preset}: {c['cases']} cases, {c['codes']} codes "
              f"compared, 0 mismatches ({c['skipped']} codes behind saturated pairs left out)")


def _diff(name: str, sim: np.ndarray, ref: np.ndarray, what: str) -> str:
    if sim.shape != ref.shape:
        return f"{name}: shape {sim.shape} != torch {ref.shape} ({what})"
    bad = np.argwhere(sim != ref)
    if not len(bad):
        return ""
    show = ", ".join(f"[{q},{j}] sim {sim[q, j]} torch {ref[q, j]}" for q, j in bad[:6])
    return f"{name}: {len(bad)} of {sim.size} codes differ ({what}): {show}"


def _diff_where(name: str, sim: np.ndarray, ref: np.ndarray, ok: np.ndarray, what: str) -> str:
    """Like :func:`_diff`, only on the codes where ``ok`` (bool, same shape) holds."""
    if sim.shape != ref.shape:
        return f"{name}: shape {sim.shape} != torch {ref.shape} ({what})"
    bad = np.argwhere((sim != ref) & ok)
    if not len(bad):
        return ""
    show = ", ".join(f"[{q},{j}] sim {sim[q, j]} torch {ref[q, j]}" for q, j in bad[:6])
    return f"{name}: {len(bad)} of {int(ok.sum())} unsaturated codes differ ({what}): {show}"


def _pre_add_events(res: Any, mi: int, layer: str) -> np.ndarray:
    """int64 (N,): the simulator's saturated-pair count per neuron of one layer, all queries."""
    return np.sum([s.pre_add_events for s in res.layer(mi, layer).mac.values()], axis=0)


def _compare_unsaturated(
    net: Any, x: np.ndarray, ref: O.TorchRun, host_res: Any, preset: str, what: str
) -> None:
    """On an AVX2 host: ``preset`` (exact int32) against torch on every code that no
    saturating pair reaches; the AVX2 run ``host_res`` must count exactly those pairs."""
    un = O.unsaturated(ref)
    for mi, (p1, p2) in enumerate(un.per_layer):
        for layer, p in (("feature", p1), ("output", p2)):
            sim_pairs = _pre_add_events(host_res, mi, layer)
            assert np.array_equal(sim_pairs, p.sum(axis=0)), (what, mi, layer, "pair counts")
    res = simulate(net, _cfg(preset), x)
    errors, compared = [], 0
    for mi in range(len(net.modules)):
        n_in = ref.input_codes[mi].size
        errors.append(_diff(f"{preset} module {mi} input", res.input_codes[mi],
                            ref.input_codes[mi], what))
        fc = res.layer(mi, "feature").codes
        errors.append(_diff_where(f"{preset} module {mi} feature", fc, ref.feature_codes[mi],
                                  un.feature[mi], what))
        compared += n_in + int(un.feature[mi].sum())
    out_ok = np.concatenate(un.output, axis=1)
    errors.append(_diff_where(f"{preset} outputs", res.outputs, ref.codes, out_ok, what))
    errors = [e for e in errors if e]
    assert not errors, "\n".join(errors)
    torch_pred = np.argmax(ref.cat_codes, axis=1)
    assert np.array_equal(res.predictions[un.rows], torch_pred[un.rows])
    compared += int(out_ok.sum())
    total = sum(f.size for f in ref.feature_codes) + ref.codes.size
    total += sum(c.size for c in ref.input_codes)
    _count(preset, compared, total - compared)


def compare(path: Path, x: np.ndarray, engine: str, what: str) -> O.TorchRun:
    """Simulate ``path`` on ``x`` with the preset of this host's ``engine`` and assert torch's
    codes exactly (input, feature and output codes, predictions); on an AVX2 host assert
    ``pytorch_fbgemm`` too wherever no pair saturates.

    Returns torch's run; the simulator's result (host preset) is kept in ``LAST["sim"]``.
    """
    ref = O.run_torch(path, x, engine)
    net = load_vprtempo_pth(path)
    preset = O.host_preset(engine)
    res = simulate(net, _cfg(preset), x)
    label = f"{preset}: {what}"
    errors = []
    for mi in range(len(net.modules)):
        errors.append(_diff(f"module {mi} input", res.input_codes[mi], ref.input_codes[mi], label))
        fc = res.layer(mi, "feature").codes
        errors.append(_diff(f"module {mi} feature", fc, ref.feature_codes[mi], label))
    errors.append(_diff("outputs", res.outputs, ref.codes, label))
    errors = [e for e in errors if e]
    assert not errors, "\n".join(errors)
    assert np.array_equal(res.predictions, np.argmax(ref.cat_codes, axis=1)), label
    LAST["sim"] = res
    _count(preset, ref.codes.size + sum(f.size + c.size for f, c in
                                        zip(ref.feature_codes, ref.input_codes, strict=True)))
    if preset != O.PRESET_OF_ENGINE[engine]:
        _compare_unsaturated(net, x, ref, res, O.PRESET_OF_ENGINE[engine], what)
    return ref


# --- random QAT models ------------------------------------------------------------------------


def random_case(i: int) -> dict[str, Any]:
    """Deterministic case ``i``: sizes, engine, qconfig, weights, calibration and inputs."""
    rng = np.random.default_rng(1000 + i)
    if rng.random() < 0.75:
        k = int(rng.integers(1, 49))
        n1 = 2 * k if rng.random() < 0.7 else int(rng.integers(1, 97))
        n2 = int(rng.integers(1, 41))
    else:
        k = int(rng.integers(49, 801))
        n1 = 2 * k if rng.random() < 0.7 else int(rng.integers(1, 1601))
        n2 = int(rng.integers(1, 501))
    n_mod = 1 if rng.random() < 0.6 else int(rng.integers(2, 4))
    lo = 0.0 if rng.random() < 0.5 else float(rng.uniform(-0.5, 0.0))
    u = rng.random()
    return {
        "rng": rng,
        "k": k,
        "n1": n1,
        "n2s": [n2] * (n_mod - 1) + [int(rng.integers(1, n2 + 1))],
        "engine": O.ENGINES[i % 2],
        "qconfig": "fbgemm" if rng.random() < 0.75 else "qnnpack",
        "style": str(rng.choice(STYLES)),
        "range": (lo, float(rng.uniform(0.2, 2.5))),
        "passes": int(rng.integers(1, 5)),
        "queries": int(rng.integers(1, 13)),
        "input": "float32" if u < 0.7 else ("uint8" if u < 0.9 else "float64"),
    }


def make_inputs(rng: np.random.Generator, q: int, k: int, kind: str) -> np.ndarray:
    if kind == "uint8":
        return rng.integers(0, 256, (q, k)).astype(np.uint8)
    x = rng.random((q, k))
    x[rng.random((q, k)) < 0.1] = 0.0
    x[rng.random((q, k)) < 0.03] = 1.0
    return x.astype(np.float32) if kind == "float32" else x


@pytest.mark.parametrize("i", range(N_RANDOM))
def test_random_qat_model(i: int, tmp_path: Path) -> None:
    c = random_case(i)
    rng = c["rng"]
    mods = [
        O.qat_module(c["k"], c["n1"], n2, rng, c["qconfig"], c["style"], c["range"], c["passes"])
        for n2 in c["n2s"]
    ]
    path = O.save_pth(mods, tmp_path / f"case{i}.pth")
    x = make_inputs(rng, c["queries"], c["k"], c["input"])
    what = {k: v for k, v in c.items() if k != "rng"}
    compare(path, x, c["engine"], f"case {i} {what}")


LARGE = [
    # (k, n1, n2s, engine, style, input range): the paper's 3136 -> 6272 -> 500 and friends
    (3136, 6272, [500], "fbgemm", "positive", (0.0, 0.5)),
    (3136, 6272, [200, 37], "qnnpack", "vprtempo", (0.0, 1.0)),
    (784, 1568, [6272], "fbgemm", "normal", (-0.2, 1.0)),
    (1, 6272, [3], "qnnpack", "positive", (0.0, 0.3)),
    (784, 1568, [500, 500, 123], "fbgemm", "vprtempo", (0.0, 0.8)),  # the seed's 28x28 size
    (3136, 6272, [500], "qnnpack", "positive", (0.0, 0.5)),
]


@pytest.mark.slow
@pytest.mark.parametrize("case", LARGE, ids=lambda c: f"{c[0]}x{c[1]}x{c[2]}-{c[3]}")
def test_large_qat_model(case: tuple[Any, ...], tmp_path: Path) -> None:
    k, n1, n2s, engine, style, rng_in = case
    rng = np.random.default_rng(k + n1 + sum(n2s))
    mods = [O.qat_module(k, n1, n2, rng, "fbgemm", style, rng_in, passes=2) for n2 in n2s]
    path = O.save_pth(mods, tmp_path / "large.pth")
    compare(path, make_inputs(rng, 3, k, "float32"), engine, f"large {case}")
    max_acc = max(np.abs(lr.acc["combined"]).max() for lr in LAST["sim"].layers)
    if style == "positive" and k > 1:
        assert max_acc > 2**24  # natural (not crafted) accumulators beyond float32's 2^24


# --- crafted: exact ties, accumulators above 2^24, input rounding ----------------------------


def _save_crafted(
    tmp_path: Path, sx: float, zx: int, feature: O.LayerSpec, output: O.LayerSpec, name: str
) -> Path:
    m = O.crafted_module(sx, zx, feature, output)
    return O.save_pth([m], tmp_path / f"{name}.pth")


def _pick_accumulators(
    rng: np.random.Generator, m: np.ndarray, zy: int, lo: int, hi: int, *, wrong: dict[str, Any]
) -> np.ndarray:
    """For each channel multiplier m_j, an accumulator in [lo, hi] where the reference and
    the ``wrong`` variant of :func:`torch_oracle.requantize` disagree (if one exists nearby)."""
    out = np.zeros(len(m), dtype=np.int64)
    for j, mj in enumerate(m):
        best = 0
        for _ in range(40):
            n = int(rng.integers(0, 255 - zy)) * (1 if lo >= 0 else -1)
            centre = int((n + 0.5) / float(mj))
            cand = np.arange(centre - 300, centre + 301, dtype=np.int64)
            cand = cand[(cand >= lo) & (cand <= hi)]
            if not len(cand):
                continue
            mm = np.full(1, mj, dtype=np.float32)
            good = O.requantize(cand[:, None], mm, zy)[:, 0]
            bad = O.requantize(cand[:, None], mm, zy, **wrong)[:, 0]
            hit = cand[good != bad]
            if len(hit):
                best = int(rng.choice(hit))
                break
            best = int(rng.choice(cand))
        out[j] = best
    return out


def _discriminates(ref: np.ndarray, wrong: np.ndarray) -> int:
    return int(np.sum(ref != wrong))


@pytest.mark.parametrize("engine", O.ENGINES)
def test_requant_exact_ties(engine: str, tmp_path: Path) -> None:
    """m_j = 2^-e_j exactly and acc_j an odd multiple of 2^(e_j-1): v = n + 0.5 exactly."""
    rng = np.random.default_rng(21)
    n, k, q = 48, 40, 6
    sx, zx, sy, zy = 2.0**-7, 9, 2.0**-6, 128
    e = rng.integers(1, 6, n)
    sw = sy * 2.0 ** -e.astype(np.float64) / sx  # m_j = sx * sw_j / sy = 2^-e_j
    assert np.all(O.multipliers(sx, sw, sy, engine) == 2.0 ** -e.astype(np.float64))
    codes = zx + rng.integers(-5, 6, (q, k))
    codes[:, 0] = zx + 1  # (x_0 - zx) = 1: w[:, 0] tunes each row's accumulator
    w = rng.integers(-1, 2, (n, k))
    tie_query = int(rng.integers(0, q))
    half = 2 ** (e - 1)
    acc = O.accumulate(codes, zx, w)[tie_query]
    w[:, 0] += (half - acc % (2 * half)) % (2 * half)
    w = w.astype(np.int8)
    acc = O.accumulate(codes, zx, w)[tie_query]
    assert np.all(acc % (2 * half) == half)  # every row of tie_query is an exact tie
    feature = O.LayerSpec(w, sw, sy, zy)
    output = O.passthrough_layer(n, sy, zy)
    path = _save_crafted(tmp_path, sx, zx, feature, output, f"ties-{engine}")
    ref = compare(path, codes.astype(np.uint8), engine, f"exact ties {engine}")
    assert O.unsaturated(ref).pairs == 0  # the same case for exact and AVX2-pair kernels
    away = O.reference_layer(codes, zx, sx, feature, engine, half_even=False)
    assert _discriminates(ref.feature_codes[0], away) >= n // 4, "too few ties exercised"


@pytest.mark.parametrize("engine", O.ENGINES)
@pytest.mark.parametrize("where", ["feature", "output"])
def test_accumulators_above_2_24(engine: str, where: str, tmp_path: Path) -> None:
    """|acc| above 2^24: f32(acc) drops low bits before the multiply; torch does that.

    Pairs stay inside int16 (see ``O.rows_with_accumulators``), so both fbgemm kernels sum
    exactly and ``pytorch_fbgemm`` is proven in full on AVX2 hosts too."""
    rng = np.random.default_rng(31 if where == "feature" else 32)
    n = 24
    k = 3136 if where == "feature" else 6272
    sx = float(np.float32(1 / 255))
    sw = rng.uniform(0.004, 0.02, n).astype(np.float32).astype(np.float64)
    # one output scale, chosen so that accumulators of ~2^25..2^26 map into 0..255
    sy = float(np.float32(sx * float(sw.mean()) * 2.0**26 / 250))
    zy = int(rng.integers(0, 8))
    m = O.multipliers(sx, sw, sy, engine)
    lo, hi = 2**24 + 1, min(2**27, 64 * 255 * (k - 2) - 1000)
    targets = _pick_accumulators(rng, m, zy, lo, hi, wrong={"acc_to_f32": False})
    targets[: n // 3] *= -1  # negative ones too (they clamp at 0 or land just above it)
    xk, wk = O.rows_with_accumulators(targets, k - 2)
    assert np.all(np.abs(targets) > 2**24)
    crafted = O.LayerSpec(wk, sw, sy, zy)
    if where == "feature":
        feature, output = crafted, O.passthrough_layer(n, sy, zy)
    else:  # the feature layer copies the k = 6272 input codes into the crafted output layer
        feature, output = O.passthrough_layer(k, sx, 0), crafted
    layer_in = np.tile(xk, (2, 1))
    x = layer_in.astype(np.uint8)
    path = _save_crafted(tmp_path, sx, 0, feature, output, f"big-{where}-{engine}")
    ref = compare(path, x, engine, f"acc > 2^24 in {where}, {engine}")
    assert O.unsaturated(ref).pairs == 0
    got = ref.feature_codes[0] if where == "feature" else ref.codes
    assert np.array_equal(O.reference_layer(layer_in, 0, sx, crafted, engine), got)
    exact = O.reference_layer(layer_in, 0, sx, crafted, engine, acc_to_f32=False)
    assert _discriminates(got, exact) >= 2, "no case where f32(acc) mattered"


@pytest.mark.parametrize("engine", O.ENGINES)
def test_input_quantizer_single_rounding(engine: str, tmp_path: Path) -> None:
    """Floats at and next to half-integer codes, where an FMA and mul-then-add disagree."""
    rng = np.random.default_rng(41)
    # a power-of-two scale gives exact ties x * (1/s) + zp = c + 0.5
    sx, zx = 2.0**-8, 17
    ties = ((np.arange(0, 238) + 0.5) * sx).astype(np.float32)
    # arbitrary scales: search floats one or two ulps around the decision points
    sx2 = float(np.float32(rng.uniform(0.002, 0.0039)))
    zx2 = int(rng.integers(0, 60))
    inv = np.float32(1.0) / np.float32(sx2)
    cands = []
    for c in range(0, 255 - zx2):
        centre = np.float32((c + 0.5) / float(inv))
        up = down = centre
        cands.append(centre)
        for _ in range(3):
            up = np.nextafter(up, np.float32(np.inf))
            down = np.nextafter(down, np.float32(-np.inf))
            cands += [up, down]
    cands_a = np.unique(np.clip(np.array(cands, dtype=np.float32), 0, 1))
    fused = O.quantize_input(cands_a, sx2, zx2, fused=True)
    plain = O.quantize_input(cands_a, sx2, zx2, fused=False)
    assert np.any(fused != plain), "no float where one rounding differs from two"
    for sx_, zx_, arr in ((sx, zx, ties), (sx2, zx2, cands_a)):
        k = len(arr)
        q = (k + 63) // 64
        padded = np.zeros(q * 64, dtype=np.float32)
        padded[:k] = arr
        x = padded.reshape(q, 64)
        ident = O.passthrough_layer(64, sx_, zx_)
        path = _save_crafted(tmp_path, sx_, zx_, ident, O.passthrough_layer(64, sx_, zx_), "inq")
        ref = compare(path, x, engine, f"input quantizer sx={sx_} zx={zx_}")
        assert O.unsaturated(ref).pairs == 0
        assert np.array_equal(ref.codes, ref.input_codes[0])  # passthrough layers are exact
        two = O.quantize_input(x, sx_, zx_, fused=False)
        if sx_ == sx:
            away = np.clip(np.floor(x.astype(np.float64) / sx_ + zx_ + 0.5), 0, 255)
            assert _discriminates(ref.input_codes[0], away.astype(np.int64)) > 100
        else:
            assert _discriminates(ref.input_codes[0], two) >= 1


def test_engines_differ_and_each_preset_matches(tmp_path: Path) -> None:
    """Multipliers f32(sx*sw)/sy (fbgemm) vs f32(sw*sx)*f32(1/sy) (qnnpack) on the same model."""
    rng = np.random.default_rng(51)
    n, k = 64, 600
    sx = float(np.float32(rng.uniform(0.003, 0.01)))
    sy = float(np.float32(rng.uniform(0.05, 0.5)))
    zy = int(rng.integers(0, 100))
    sw = rng.uniform(0.001, 0.01, 40 * n)  # float64 scales, not float32-representable
    differ = O.multipliers(sx, sw, sy, "fbgemm") != O.multipliers(sx, sw, sy, "qnnpack")
    sw = np.concatenate([sw[differ][: n - 8], sw[~differ][:8]])  # mostly differing channels
    mf = O.multipliers(sx, sw, sy, "fbgemm")
    mq = O.multipliers(sx, sw, sy, "qnnpack")
    targets = np.zeros(n, dtype=np.int64)
    for j in range(n):
        mj_f, mj_q = mf[j], mq[j]
        cand = np.arange(1, 255 - zy) + 0.5
        accs = np.rint(cand / float(mj_f)).astype(np.int64)
        accs = (accs[:, None] + np.arange(-40, 41)[None, :]).ravel()
        a = O.requantize(accs[:, None], np.array([mj_f], np.float32), zy)[:, 0]
        b = O.requantize(accs[:, None], np.array([mj_q], np.float32), zy)[:, 0]
        hit = accs[a != b]
        targets[j] = int(rng.choice(hit)) if len(hit) else int(rng.choice(accs))
    xk, wk = O.rows_with_accumulators(targets, k - 2, bulk_code=200, tune_code=1)
    feature = O.LayerSpec(wk, sw, sy, zy)
    path = _save_crafted(tmp_path, sx, 0, feature, O.passthrough_layer(n, sy, zy), "engines")
    x = np.tile(xk, (2, 1)).astype(np.uint8)
    refs = {e: compare(path, x, e, f"engine multipliers {e}") for e in O.ENGINES}
    assert O.unsaturated(refs["fbgemm"]).pairs == 0
    outs = {e: r.codes for e, r in refs.items()}
    assert _discriminates(outs["fbgemm"], outs["qnnpack"]) >= 2


def test_multi_module_shared_input_quantizer(tmp_path: Path) -> None:
    """VPRTempoQuant quantizes once with models[0].quant even if modules calibrated apart."""
    rng = np.random.default_rng(61)
    ranges = [(0.0, 0.4), (-0.3, 1.5), (0.0, 2.0)]
    mods = [O.qat_module(20, 40, 7, rng, input_range=r) for r in ranges]
    path = O.save_pth(mods, tmp_path / "shared.pth")
    scales = {float(m.quant.scale) for m in mods}
    assert len(scales) == 3
    x = make_inputs(rng, 9, 20, "float32")
    for engine in O.ENGINES:
        ref = compare(path, x, engine, f"shared quant {engine}")
        own = O.run_torch(path, x, engine, input_quantizer="per_module")
        assert _discriminates(ref.codes, own.codes) > 0  # the choice matters here


def test_uint8_codes_equal_dequantized_floats(tmp_path: Path) -> None:
    """uint8 input codes give the same torch answer as floats that quantize to those codes."""
    rng = np.random.default_rng(71)
    mods = [O.qat_module(33, 66, 12, rng, weight_style="vprtempo")]
    path = O.save_pth(mods, tmp_path / "u8.pth")
    codes = rng.integers(0, 256, (8, 33)).astype(np.uint8)
    sx = float(mods[0].quant.scale)
    zx = int(mods[0].quant.zero_point)
    as_float = ((codes.astype(np.float64) - zx) * sx).astype(np.float32)
    for engine in O.ENGINES:
        a = compare(path, codes, engine, f"uint8 {engine}")
        b = O.run_torch(path, as_float, engine)
        assert np.array_equal(b.input_codes[0], codes.astype(np.int64))
        assert np.array_equal(a.codes, b.codes)


# --- the command line: hwsim run --------------------------------------------------------------

CLI_CASES = [
    # (seed, engine, k, n1, n2s, input kind)
    (81, "fbgemm", 12, 24, [5], "float32"),
    (82, "qnnpack", 30, 60, [9, 9, 4], "float32"),
    (83, "fbgemm", 7, 14, [3, 2], "uint8"),
    (84, "qnnpack", 1, 2, [1], "float64"),
    (85, "fbgemm", 3136, 6272, [500], "float32"),
]


@pytest.mark.parametrize("case", CLI_CASES, ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}-{c[5]}")
def test_cli_run_matches_torch(case: tuple[Any, ...], tmp_path: Path) -> None:
    from simulator.cli import main

    seed, engine, k, n1, n2s, kind = case
    rng = np.random.default_rng(seed)
    mods = [O.qat_module(k, n1, n2, rng, input_range=(0.0, 0.6), passes=2) for n2 in n2s]
    pth = O.save_pth(mods, tmp_path / "model.pth")
    x = make_inputs(rng, 5, k, kind)
    npy = tmp_path / "x.npy"
    np.save(npy, x)
    ref = O.run_torch(pth, x, engine)
    host, nominal = O.host_preset(engine), O.PRESET_OF_ENGINE[engine]
    for preset in dict.fromkeys([host, nominal]):
        out = tmp_path / f"run-{preset}"
        argv = ["run", "--config", preset, "--model", str(pth), "--input", str(npy)]
        assert main([*argv, "--out", str(out)]) in (0, None)
        outputs = np.load(out / "outputs.npy")
        predictions = np.load(out / "predictions.npy")
        assert outputs.dtype.kind == "i" and outputs.shape == (5, sum(n2s))
        outputs = outputs.astype(np.int64)
        torch_pred = np.argmax(ref.cat_codes, axis=1)
        if preset == host:  # every code
            msg = _diff(f"{preset} outputs.npy", outputs, ref.codes, str(case))
            assert not msg, msg
            assert np.array_equal(predictions, torch_pred)
            _count(preset, ref.codes.size)
        else:  # pytorch_fbgemm on an AVX2 host: where no pair saturates
            un = O.unsaturated(ref)
            ok = np.concatenate(un.output, axis=1)
            msg = _diff_where(f"{preset} outputs.npy", outputs, ref.codes, ok, str(case))
            assert not msg, msg
            assert np.array_equal(predictions[un.rows], torch_pred[un.rows])
            _count(preset, int(ok.sum()), int(ok.size - ok.sum()))
