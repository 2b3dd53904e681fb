"""The x86_avx2_fbgemm preset against torch 2.13 forced onto fbgemm's AVX2 kernels.

torch runs in a subprocess with ``FBGEMM_ENABLE_INSTRUCTIONS=AVX2`` (on an AVX512-VNNI host
fbgemm's own kernels sum u8*s8 products exactly; on an AVX2 host, such as CI's, the variable
changes nothing and this is torch's default). fbgemm's AVX2 kernel multiplies the
*raw* uint8 codes, sums adjacent pairs k = 2i, 2i+1 with int16 saturation (VPMADDUBSW), adds
the two pair sums of each 4-byte group into int32 (VPMADDWD) and subtracts zx * colsum(w)
afterwards. Every case compares the feature-layer and output codes element by element;
zero mismatches is the only pass. The report must count every saturated pair.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch_oracle as O  # noqa: E402

from simulator.config import load_config  # noqa: E402
from simulator.engine import simulate  # noqa: E402
from simulator.engine.stepwise import compare_with_fast, simulate_stepwise  # noqa: E402
from simulator.loaders.vprtempo_pth import load_vprtempo_pth  # noqa: E402
from simulator.report import build_report  # noqa: E402

TESTS = Path(__file__).resolve().parent
N_RANDOM = 120  # on an AVX2 host 60: test_oracle_torch.py proves this preset there as well


def _n_random() -> int:
    return N_RANDOM if O.fbgemm_host_is_exact() else N_RANDOM // 2
I16 = (-(1 << 15), (1 << 15) - 1)

WORKER = r"""
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import torch
torch.set_num_threads(2)
import torch_oracle as O
for pth, xp, out in json.load(open(sys.argv[2])):
    r = O.run_torch(pth, np.load(xp), "fbgemm")
    np.savez(out, codes=r.codes, **{f"feature_{i}": f for i, f in enumerate(r.feature_codes)},
             **{f"input_{i}": c for i, c in enumerate(r.input_codes)})
"""


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {f for line in text.splitlines() if line.startswith("flags") for f in line.split()}


def _case(i: int) -> tuple[list[Any], np.ndarray, str]:
    """(modules, inputs, description) of random case i; case 0 has the paper's full size,
    case 1 the seed's; the rest are small or medium (odd K, K not a multiple of 4, N < 8)."""
    rng = np.random.default_rng(2024 + i)
    if i == 0:
        k, n1, n2 = 3136, 6272, 500
    elif i == 1:  # the seed's 28 x 28 size
        k, n1, n2 = 784, 1568, 500
    elif rng.random() < 0.85:
        k, n1, n2 = int(rng.integers(1, 65)), int(rng.integers(1, 129)), int(rng.integers(1, 33))
    else:
        k, n1, n2 = int(rng.integers(65, 801)), int(rng.integers(1, 601)), int(rng.integers(1, 200))
    n_mod = 1 if i == 0 or rng.random() < 0.7 else 2
    style = str(rng.choice(["normal", "positive", "uniform", "vprtempo"]))
    hi = float(rng.uniform(0.3, 1.0))
    mods = [O.qat_module(k, n1, n2, rng, "fbgemm", style, (0.0, hi), 2) for _ in range(n_mod)]
    q = 2 if i < 2 else int(rng.integers(1, 9))
    if rng.random() < 0.6:  # full-range codes: pairs with both codes > 127 saturate
        x: np.ndarray = rng.integers(0, 256, (q, k)).astype(np.uint8)
        kind = "uint8"
    else:  # float spikes beyond the calibration range: codes up to 255
        x = (rng.random((q, k)) * rng.uniform(1.0, 4.0) * hi).astype(np.float32)
        x[rng.random((q, k)) < 0.1] = 0.0
        kind = "float32"
    return mods, x, f"case {i}: k={k} n1={n1} n2={n2} modules={n_mod} {style} {kind} q={q}"


def _crafted(tmp: Path) -> list[tuple[Path, np.ndarray, str]]:
    """Pairs that saturate high and low, exactly at the int16 limits, odd K, zx > 0."""
    out = []
    rng = np.random.default_rng(77)
    k, n = 9, 12
    w = rng.choice(np.array([-128, -127, 127, 126, 0, 1, -1]), (n, k)).astype(np.int8)
    w[0] = 127
    w[1] = -128
    w[2, :2] = [127, 1]  # 255*127 + 255*1 = 32640: fits
    w[3, :2] = [-128, -1]  # -32895: saturates to -32768
    x = rng.integers(0, 256, (6, k))
    x[0] = 255
    x[1, :2] = [255, 255]
    for zx in (0, 37, 255):
        feature = O.LayerSpec(w, np.full(n, 0.01), 0.1, 128)
        m = O.crafted_module(1 / 255, zx, feature, O.passthrough_layer(n, 0.1, 128))
        p = O.save_pth([m], tmp / f"crafted{zx}.pth")
        out.append((p, x.astype(np.uint8), f"crafted zx={zx}"))
    return out


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Build every case, then run torch once on all of them in an AVX2-forced subprocess."""
    tmp = tmp_path_factory.mktemp("avx2")
    built: list[tuple[Path, np.ndarray, str]] = []
    for i in range(_n_random()):
        mods, x, what = _case(i)
        built.append((O.save_pth(mods, tmp / f"c{i}.pth"), x, what))
    built += _crafted(tmp)
    manifest = []
    for i, (p, x, _) in enumerate(built):
        np.save(tmp / f"x{i}.npy", x)
        manifest.append([str(p), str(tmp / f"x{i}.npy"), str(tmp / f"o{i}.npz")])
    (tmp / "manifest.json").write_text(json.dumps(manifest))
    env = {**os.environ, "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2"}
    r = subprocess.run(
        [sys.executable, "-c", WORKER, str(TESTS), str(tmp / "manifest.json")],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    res = []
    for (p, x, what), (_, _, o) in zip(built, manifest, strict=True):
        with np.load(o) as z:
            ref = {key: z[key] for key in z.files}
        res.append({"path": p, "x": x, "what": what, "torch": ref})
    return res


def _pairs_saturated(codes: np.ndarray, w: np.ndarray) -> int:
    """Independent count of int16-saturating adjacent pairs (k = 2i, 2i+1), raw codes."""
    k = codes.shape[1]
    xe = np.zeros((codes.shape[0], k + k % 2), dtype=np.int64)
    xe[:, :k] = codes
    we = np.zeros((w.shape[0], k + k % 2), dtype=np.int64)
    we[:, :k] = w
    s = xe[:, None, 0::2] * we[None, :, 0::2] + xe[:, None, 1::2] * we[None, :, 1::2]
    return int(((s < I16[0]) | (s > I16[1])).sum())


def test_env_var_selects_the_avx2_kernel(cases: list[dict[str, Any]]) -> None:
    """On the crafted probe AVX2 torch saturates pairs; this host's default kernel is the one
    ``O.fbgemm_host_is_exact`` found (exact int32 on VNNI hosts, the AVX2 pairs otherwise)."""
    probe = next(c for c in cases if c["what"] == "crafted zx=0")
    native = O.run_torch(probe["path"], probe["x"], "fbgemm").feature_codes[0]
    avx2 = probe["torch"]["feature_0"]
    net = load_vprtempo_pth(probe["path"])
    exact = simulate(net, load_config("pytorch_fbgemm"), probe["x"]).layer(0, "feature").codes
    assert not np.array_equal(avx2, exact), "FBGEMM_ENABLE_INSTRUCTIONS=AVX2 changed nothing"
    if O.fbgemm_host_is_exact():
        assert np.array_equal(native, exact)
        assert O.host_preset("fbgemm") == "pytorch_fbgemm"
    else:
        assert np.array_equal(native, avx2)
        assert O.host_preset("fbgemm") == "x86_avx2_fbgemm"
    flags = _cpu_flags()
    if flags and "FBGEMM_ENABLE_INSTRUCTIONS" not in os.environ:  # probe agrees with cpuinfo
        avx = sorted(f for f in flags if "avx" in f)
        if "avx512_vnni" in flags:
            assert O.fbgemm_host_is_exact(), avx
        if not any("vnni" in f for f in flags):
            assert not O.fbgemm_host_is_exact(), avx
    assert O.host_preset("qnnpack") == "pytorch_qnnpack"


def test_avx2_preset_matches_torch(cases: list[dict[str, Any]]) -> None:
    cfg = load_config("x86_avx2_fbgemm")
    ref_cfg = load_config("pytorch_fbgemm")
    errors = []
    compared = differ_from_vnni = pre_events = 0
    for c in cases:
        net = load_vprtempo_pth(c["path"])
        res = simulate(net, cfg, c["x"])
        t = c["torch"]
        for mi in range(len(net.modules)):
            for name, sim, ref in (
                ("input", res.input_codes[mi], t[f"input_{mi}"]),
                ("feature", res.layer(mi, "feature").codes, t[f"feature_{mi}"]),
            ):
                bad = int((sim != ref).sum())
                if bad:
                    errors.append(f"{c['what']}: module {mi} {name}: {bad} codes differ")
                compared += ref.size
        bad = int((res.outputs != t["codes"]).sum())
        if bad:
            errors.append(f"{c['what']}: outputs: {bad} of {res.outputs.size} codes differ")
        compared += res.outputs.size
        differ_from_vnni += int((simulate(net, ref_cfg, c["x"]).outputs != t["codes"]).sum())
        pre_events += sum(int(s.pre_add_events.sum()) for lr in res.layers
                          for s in lr.mac.values())
    assert not errors, "\n".join(errors[:20])
    print(f"\n[avx2 oracle] {len(cases)} cases, {compared} codes compared, 0 mismatches; "
          f"{pre_events} saturated pairs; {differ_from_vnni} output codes differ from VNNI")
    assert pre_events > 1000 and differ_from_vnni > 100  # the cases do exercise saturation


def test_report_counts_pair_saturations(cases: list[dict[str, Any]]) -> None:
    """report.json's overflow.pre_add_overflow = the saturating pairs, per layer."""
    cfg = load_config("x86_avx2_fbgemm")
    checked = 0
    for c in cases[:12] + cases[-3:]:
        net = load_vprtempo_pth(c["path"])
        res = simulate(net, cfg, c["x"])
        rep = build_report(res, net, cfg, {})
        for mi, mod in enumerate(net.modules):
            for lay in mod.layers:
                codes = res.input_codes[mi] if lay.name == "feature" else (
                    c["torch"][f"feature_{mi}"])
                want = _pairs_saturated(codes, lay.paths[0].weight)
                got = rep["overflow"][f"{mi}/{lay.name}"]
                assert got["pre_add_overflow"] == want, (c["what"], mi, lay.name)
                assert got["acc_wrap"] == 0 and got["acc_saturate"] == 0
                checked += want
    assert checked > 0


def test_avx2_stepwise_agrees(cases: list[dict[str, Any]]) -> None:
    """The cycle-by-cycle path gives the same bits and pair counts on the AVX2 preset."""
    cfg = load_config("x86_avx2_fbgemm")
    small = [c for c in cases if c["x"].shape[1] <= 64][:6] + cases[-3:]
    for c in small:
        net = load_vprtempo_pth(c["path"])
        diffs = compare_with_fast(simulate(net, cfg, c["x"]), simulate_stepwise(net, cfg, c["x"]))
        assert not diffs, (c["what"], diffs[:5])
