"""torch oracle for the pytorch_* presets: VPRTempoQuant-shaped models built with torch QAT.

A module here has exactly the attribute names of VPRTempoQuant 1.1.x (``quant``, ``dequant``,
``feature_layer.w``, ``output_layer.w``; Linear without bias; ``SNNLayer.thr`` as an extra
parameter) so its converted state dict has the keys of a real VPRTempoQuant ``.pth``.

* :func:`qat_module` builds one with ``prepare_qat`` + random observer passes + ``convert``;
* :func:`crafted_module` sets int8 weights, scales and zero points directly (exact ties,
  accumulators above 2^24);
* :func:`save_pth` writes ``{"model_0": sd, ...}``; :func:`run_torch` loads the file back into
  fresh modules (as VPRTempoQuant does) and runs torch inference on a chosen engine.
* :func:`host_preset` names the preset that describes *this* host's torch engine: fbgemm sums
  u8*s8 products exactly in int32 on AVX512-VNNI hosts (``pytorch_fbgemm``) but saturates
  adjacent raw pairs to int16 on AVX2 hosts (``x86_avx2_fbgemm``); :func:`fbgemm_host_is_exact`
  decides by running torch on a probe whose pairs saturate. :func:`unsaturated` marks the codes
  where the two presets must agree, so ``pytorch_fbgemm`` is still proven on an AVX2 host.

A small numpy model of DESIGN.md section 2 (:func:`reference_codes`) is used only to *pick*
discriminating cases and to show that a case really separates candidate formulas; the
truth is always torch.
"""

from __future__ import annotations

import contextlib
import functools
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.ao.quantization as tq
from torch import nn

ENGINES: tuple[str, str] = ("fbgemm", "qnnpack")
# the presets modelling each engine on an exact-int32 (AVX512-VNNI) host; see host_preset()
PRESET_OF_ENGINE: dict[str, str] = {"fbgemm": "pytorch_fbgemm", "qnnpack": "pytorch_qnnpack"}
AVX2_FBGEMM = "x86_avx2_fbgemm"
INT16 = (-(1 << 15), (1 << 15) - 1)

_QUIET = (
    r".*torch\.ao\.quantization is deprecated.*",
    r".*reduce_range will be deprecated.*",
    r".*quantized tensor creation functions.*",
    r".*TypedStorage is deprecated.*",
    r".*must share the same quantization parameters.*",
    r".*_make_per_(tensor|channel)_quantized_tensor.*",
    r".*must run observer before calling calculate_qparams.*",
)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence torch's deprecation chatter about eager-mode quantization."""
    with warnings.catch_warnings():
        for pat in _QUIET:
            warnings.filterwarnings("ignore", message=pat)
        yield


class SNNLayer(nn.Module):
    """VPRTempo's inference ``SNNLayer``: a bias-free Linear ``w`` and thresholds ``thr``."""

    def __init__(self, n_in: int, n_out: int, bias: bool = False) -> None:
        super().__init__()
        self.w: Any = nn.Linear(n_in, n_out, bias=bias)  # nnq.Linear after convert
        self.thr = nn.Parameter(torch.rand(1, n_out) * 0.5)


class VPRTempoQuantModule(nn.Module):
    """One VPRTempoQuant module: QuantStub -> feature Linear -> output Linear -> DeQuantStub."""

    def __init__(self, k: int, n1: int, n2: int, bias: bool = False) -> None:
        super().__init__()
        self.quant: Any = tq.QuantStub()  # nnq.Quantize after convert
        self.dequant: Any = tq.DeQuantStub()
        self.feature_layer = SNNLayer(k, n1, bias)
        self.output_layer = SNNLayer(n1, n2, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dequant(self.output_layer.w(self.feature_layer.w(self.quant(x))))


@contextlib.contextmanager
def quant_engine(engine: str) -> Iterator[None]:
    """Temporarily select torch's quantized engine (packing happens under it)."""
    if engine not in torch.backends.quantized.supported_engines:
        raise RuntimeError(f"torch has no quantized engine {engine!r}")
    old = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        with quiet():
            yield
    finally:
        torch.backends.quantized.engine = old


# probe: acc = 8 * 255 * -128 = -261120 exactly; 4 pairs of -65280 saturated to -32768 give
# -131072. Output scale 2000, zero point 200: rint(-130.56) + 200 = 69 vs rint(-65.536) + 200 = 134.
# Row 1 (weights 1, no saturation anywhere) must give rint(1.02) + 200 = 201 on both.
_PROBE_K = 8
_PROBE_CODES = {69: True, 134: False}


@functools.cache
def fbgemm_host_is_exact() -> bool:
    """True if this host's torch fbgemm sums u8*s8 products exactly in int32 (AVX512-VNNI),
    False if it saturates adjacent raw pairs to int16 first (AVX2, VPMADDUBSW).

    Decided by experiment (cpuinfo can disagree: ``FBGEMM_ENABLE_INSTRUCTIONS=AVX2`` forces the
    AVX2 kernels on a VNNI host): inputs 255 and weights -128, whose pairs saturate.
    """
    from torch.ao.nn import quantized as nnq

    with quant_engine("fbgemm"):
        lin = nnq.Linear(_PROBE_K, 2, bias_=False)
        w = torch.full((2, _PROBE_K), -128, dtype=torch.int8)
        w[1] = 1
        lin.set_weight_bias(torch._make_per_tensor_quantized_tensor(w, 1.0, 0), None)
        lin.scale, lin.zero_point = 2000.0, 200
        x = torch._make_per_tensor_quantized_tensor(
            torch.full((3, _PROBE_K), 255, dtype=torch.uint8), 1.0, 0
        )
        got = lin(x).int_repr().numpy()
    sat, plain = {int(v) for v in got[:, 0]}, {int(v) for v in got[:, 1]}
    if plain != {201} or len(sat) != 1 or next(iter(sat)) not in _PROBE_CODES:
        raise RuntimeError(f"torch fbgemm probe gave {got.tolist()}: neither exact nor AVX2 pairs")
    return _PROBE_CODES[next(iter(sat))]


def host_preset(engine: str) -> str:
    """The preset that is bit-exact with ``engine`` on this host (fbgemm: see above)."""
    if engine == "fbgemm" and not fbgemm_host_is_exact():
        return AVX2_FBGEMM
    return PRESET_OF_ENGINE[engine]


def _float_weights(rng: np.random.Generator, n_out: int, n_in: int, style: str) -> np.ndarray:
    if style == "normal":
        w = rng.normal(0.0, 1.0, (n_out, n_in)) * rng.uniform(0.01, 2.0)
    elif style == "positive":  # same-sign rows: large accumulators
        w = rng.uniform(0.0, 1.0, (n_out, n_in))
    elif style == "vprtempo":  # sparse excitatory (p=.1) + inhibitory (p=.5), L1-normalised
        exc = np.clip(rng.normal(0.5, 1 / 6, (n_out, n_in)), 0, None)
        exc[rng.random((n_out, n_in)) > 0.1] = 0
        inh = np.clip(rng.normal(-0.5, 1 / 6, (n_out, n_in)), None, 0)
        inh[rng.random((n_out, n_in)) > 0.5] = 0
        w = exc / np.maximum(np.abs(exc).sum(0), 1e-12) + inh / np.maximum(
            np.abs(inh).sum(0), 1e-12
        )
    elif style == "uniform":
        w = rng.uniform(-1.0, 1.0, (n_out, n_in)) * 10.0 ** rng.uniform(-3, 1)
    else:
        raise ValueError(style)
    if n_out > 2 and rng.random() < 0.2:  # an all-zero row: per-channel scale hits eps
        w[rng.integers(n_out)] = 0.0
    return w.astype(np.float32)


def observer_batch(rng: np.random.Generator, k: int, q: int, lo: float, hi: float) -> np.ndarray:
    """Random float spikes in [lo, hi] with some exact zeros (as patch-normalised images)."""
    x = lo + (hi - lo) * rng.random((q, k))
    x[rng.random((q, k)) < 0.1] = 0.0
    return x.astype(np.float32)


def qat_module(
    k: int,
    n1: int,
    n2: int,
    rng: np.random.Generator,
    qconfig: str = "fbgemm",
    weight_style: str = "normal",
    input_range: tuple[float, float] = (0.0, 1.0),
    passes: int = 3,
    bias: bool = False,
) -> VPRTempoQuantModule:
    """Build, calibrate (``passes`` QAT forward passes) and ``convert`` one module."""
    torch.manual_seed(int(rng.integers(2**31)))
    m = VPRTempoQuantModule(k, n1, n2, bias)
    with torch.no_grad():
        for lay, (o, i) in ((m.feature_layer, (n1, k)), (m.output_layer, (n2, n1))):
            lay.w.weight.copy_(torch.from_numpy(_float_weights(rng, o, i, weight_style)))
            if bias:
                lay.w.bias.copy_(torch.from_numpy(rng.normal(0, 0.1, o).astype(np.float32)))
    m.train()
    m.qconfig = tq.get_default_qat_qconfig(qconfig)
    with quant_engine(qconfig):
        tq.prepare_qat(m, inplace=True)
        with torch.no_grad():
            for _ in range(passes):
                lo, hi = input_range
                m(torch.from_numpy(observer_batch(rng, k, int(rng.integers(1, 9)), lo, hi)))
        m.eval()
        tq.convert(m, inplace=True)
    return m


@dataclass
class LayerSpec:
    """Exact parameters of one quantized Linear."""

    weight: np.ndarray  # int8 (out, in)
    scale: np.ndarray | float  # per-channel (out,) or per-tensor
    output_scale: float
    output_zero_point: int
    bias: np.ndarray | None = None


def _skeleton(k: int, n1: int, n2: int, qconfig: str, bias: bool = False) -> VPRTempoQuantModule:
    """An uncalibrated converted module, as VPRTempoQuant builds before ``load_state_dict``."""
    m = VPRTempoQuantModule(k, n1, n2, bias)
    m.eval()
    m.qconfig = tq.get_default_qat_qconfig(qconfig)
    with quant_engine(qconfig):
        tq.prepare(m, inplace=True)
        tq.convert(m, inplace=True)
    return m


def _qweight(spec: LayerSpec) -> torch.Tensor:
    w = torch.from_numpy(np.ascontiguousarray(spec.weight, dtype=np.int8))
    if np.ndim(spec.scale) == 0:
        return torch._make_per_tensor_quantized_tensor(w, float(spec.scale), 0)
    sc = torch.from_numpy(np.asarray(spec.scale, dtype=np.float64))
    zp = torch.zeros(len(sc), dtype=torch.long)
    return torch._make_per_channel_quantized_tensor(w, sc, zp, 0)


def crafted_module(
    input_scale: float,
    input_zero_point: int,
    feature: LayerSpec,
    output: LayerSpec,
    engine: str = "fbgemm",
) -> VPRTempoQuantModule:
    """A converted module whose int8 weights and (float32-representable) scales are given."""
    n1, k = feature.weight.shape
    n2 = output.weight.shape[0]
    has_bias = feature.bias is not None or output.bias is not None
    m = _skeleton(k, n1, n2, "fbgemm", has_bias)
    m.quant.scale = torch.tensor([input_scale], dtype=torch.float32)
    m.quant.zero_point = torch.tensor([input_zero_point], dtype=torch.long)
    with quant_engine(engine):
        for lay, spec in ((m.feature_layer, feature), (m.output_layer, output)):
            b = None if spec.bias is None else torch.from_numpy(spec.bias.astype(np.float32))
            lay.w.set_weight_bias(_qweight(spec), b)
            lay.w.scale = float(spec.output_scale)
            lay.w.zero_point = int(spec.output_zero_point)
    return m


def save_pth(modules: Sequence[nn.Module], path: str | os.PathLike[str]) -> Path:
    """Save in VPRTempoQuant's layout ``{"model_i": state_dict}``."""
    path = Path(path)
    with quiet():
        torch.save({f"model_{i}": m.state_dict() for i, m in enumerate(modules)}, path)
    return path


def load_pth(path: str | os.PathLike[str], engine: str) -> list[VPRTempoQuantModule]:
    """Load a ``.pth`` into fresh converted modules under ``engine`` (VPRTempoQuant.load_model)."""
    with quiet():
        sds = torch.load(path, map_location="cpu", weights_only=True)
    mods = []
    for i in range(len(sds)):
        sd = sds[f"model_{i}"]
        w1 = sd["feature_layer.w._packed_params._packed_params"]
        w2 = sd["output_layer.w._packed_params._packed_params"]
        n1, k = w1[0].shape
        n2 = w2[0].shape[0]
        with quant_engine(engine):
            m = _skeleton(k, n1, n2, engine, w1[1] is not None or w2[1] is not None)
            m.load_state_dict(sd)
        mods.append(m)
    return mods


@dataclass
class TorchRun:
    """torch's answer for one model and input batch."""

    codes: np.ndarray  # int64 (queries, places): each module's final quint8 codes, concatenated
    cat_codes: np.ndarray  # codes after VPRTempoQuant's torch.cat (requantised to module 0)
    feature_codes: list[np.ndarray]  # per module, the feature layer's quint8 codes
    input_codes: list[np.ndarray]  # per module, the quantized input codes
    weights: list[tuple[np.ndarray, np.ndarray]]  # per module, int8 (feature, output) weights


def run_torch(
    path: str | os.PathLike[str],
    x: np.ndarray,
    engine: str = "fbgemm",
    input_quantizer: str = "shared",
) -> TorchRun:
    """Run the model in ``path`` on ``x`` like ``VPRTempoQuant.forward`` does.

    Float ``x`` goes through module 0's ``quant`` (``input_quantizer="shared"``, as
    VPRTempoQuant) or each module's own; uint8 ``x`` are input codes with that scale/zp.
    """
    mods = load_pth(path, engine)
    with quant_engine(engine), torch.no_grad():
        outs, feats, ins, ws = [], [], [], []
        for m in mods:
            qm = mods[0].quant if input_quantizer == "shared" else m.quant
            if x.dtype == np.uint8:
                q = torch._make_per_tensor_quantized_tensor(
                    torch.from_numpy(np.ascontiguousarray(x)),
                    float(qm.scale.item()),
                    int(qm.zero_point.item()),
                )
            else:
                q = qm(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
            f = m.feature_layer.w(q)
            y = m.output_layer.w(f)
            ins.append(q.int_repr().numpy().astype(np.int64))
            feats.append(f.int_repr().numpy().astype(np.int64))
            outs.append(y)
            w1, w2 = (
                lay.w.weight().int_repr().numpy().astype(np.int64)
                for lay in (m.feature_layer, m.output_layer)
            )
            ws.append((w1, w2))
        codes = np.concatenate([o.int_repr().numpy().astype(np.int64) for o in outs], axis=1)
        cat = torch.cat(outs, dim=1).int_repr().numpy().astype(np.int64)
    return TorchRun(codes, cat, feats, ins, ws)


# --- where fbgemm's AVX2 pairs saturate -------------------------------------------------------


def pair_saturations(codes: np.ndarray, w: np.ndarray) -> np.ndarray:
    """int64 (Q, N): per (query, neuron), how many adjacent pairs k = 2i, 2i+1 of raw uint8
    ``codes`` (Q, K) times int8 ``w`` (N, K) leave int16 (K padded with a zero column)."""
    k = codes.shape[1]
    kk = k + k % 2
    xe = np.zeros((codes.shape[0], kk), dtype=np.int32)
    xe[:, :k] = codes
    we = np.zeros((w.shape[0], kk), dtype=np.int32)
    we[:, :k] = w
    out = np.zeros((codes.shape[0], w.shape[0]), dtype=np.int64)
    for q in range(codes.shape[0]):  # (N, K/2) int32 temporaries: at most ~40 MB at 6272 x 3136
        s = we[:, 0::2] * xe[q, 0::2] + we[:, 1::2] * xe[q, 1::2]
        out[q] = np.count_nonzero((s < INT16[0]) | (s > INT16[1]), axis=1)
    return out


@dataclass
class Unsaturated:
    """Where exact int32 and AVX2-pair accumulation give the same codes, for one torch run.

    feature / output: per module, bool (Q, N): that layer's code has no saturating pair
    upstream (the output layer's inputs are the feature codes of the same query);
    rows: bool (Q,), every code of the query in every module; pairs: saturated pairs in all.
    """

    feature: list[np.ndarray]
    output: list[np.ndarray]
    rows: np.ndarray
    pairs: int
    per_layer: list[tuple[np.ndarray, np.ndarray]]  # (Q, N) pair counts, (feature, output)


def unsaturated(run: TorchRun) -> Unsaturated:
    """Mark the codes of ``run`` that no saturating AVX2 pair can reach (numpy, from torch's
    own input codes, feature codes and weights)."""
    feature, output, per_layer = [], [], []
    rows = np.ones(run.codes.shape[0], dtype=bool)
    for mi, (w1, w2) in enumerate(run.weights):
        p1 = pair_saturations(run.input_codes[mi], w1)
        p2 = pair_saturations(run.feature_codes[mi], w2)
        f_ok = p1 == 0
        row_ok = f_ok.all(axis=1)
        o_ok = row_ok[:, None] & (p2 == 0)
        feature.append(f_ok)
        output.append(o_ok)
        per_layer.append((p1, p2))
        rows &= o_ok.all(axis=1)
    pairs = int(sum(int(a.sum() + b.sum()) for a, b in per_layer))
    return Unsaturated(feature, output, rows, pairs, per_layer)


# --- numpy model of DESIGN.md section 2 (used to pick cases, never as the truth) ------------

f32 = np.float32


def quantize_input(x: np.ndarray, scale: float, zp: int, fused: bool = True) -> np.ndarray:
    """QuantStub: clamp(rint(x * f32(1/s) + zp)); ``fused`` = one rounding (FMA)."""
    inv = f32(1.0) / f32(scale)
    x32 = np.asarray(x, dtype=f32)
    if fused:  # exact in float64 (24+24-bit product plus a small integer), then one f32 rounding
        v = (x32.astype(np.float64) * np.float64(inv) + zp).astype(f32)
    else:
        v = (x32 * inv).astype(f32) + f32(zp)
    return np.clip(np.rint(v), 0, 255).astype(np.int64)


def multipliers(sx: float, sw: np.ndarray, sy: float, engine: str) -> np.ndarray:
    """Per-channel requantization multiplier m_j as float32."""
    sw32 = np.asarray(sw, dtype=f32)
    if engine == "qnnpack":
        return (sw32 * f32(sx)).astype(f32) * (f32(1.0) / f32(sy))
    return ((f32(sx) * sw32).astype(f32) / f32(sy)).astype(f32)


def requantize(
    acc: np.ndarray, m: np.ndarray, zy: int, acc_to_f32: bool = True, half_even: bool = True
) -> np.ndarray:
    """clamp(round(f32(acc) * m) + zy); the switches give the candidate wrong formulas."""
    if acc_to_f32:
        v = acc.astype(f32) * m.astype(f32)
    else:
        v = (acc.astype(np.float64) * m.astype(np.float64)).astype(f32)
    r = np.rint(v) if half_even else np.sign(v) * np.floor(np.abs(v) + 0.5)
    return np.clip(r + zy, 0, 255).astype(np.int64)


def accumulate(codes: np.ndarray, zp: int, w: np.ndarray) -> np.ndarray:
    """Exact integer accumulation sum_k (x_k - zp) * w_jk (float64 is exact below 2^53)."""
    return np.rint((codes.astype(np.float64) - zp) @ w.astype(np.float64).T).astype(np.int64)


def reference_layer(
    codes: np.ndarray,
    zx: int,
    sx: float,
    spec: LayerSpec,
    engine: str,
    **kw: Any,
) -> np.ndarray:
    """One bias-free layer with the DESIGN.md formulas (``kw`` selects candidate variants)."""
    sw = np.broadcast_to(np.asarray(spec.scale, dtype=np.float64), (spec.weight.shape[0],))
    m = multipliers(sx, sw, spec.output_scale, engine)
    return requantize(accumulate(codes, zx, spec.weight), m, spec.output_zero_point, **kw)


# --- crafting helpers -----------------------------------------------------------------------


def rows_with_accumulators(
    targets: np.ndarray, n_bulk: int, bulk_code: int = 255, tune_code: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Input codes and int8 rows so that row j accumulates exactly ``targets[j]`` (zp 0).

    Inputs: ``n_bulk`` codes of ``bulk_code`` then two of ``tune_code``; row j puts its bulk
    weights (one sign) so that the total hits the target. Bulk weights are capped at 127 on
    even and 1 on odd positions, so every adjacent pair k = 2i, 2i+1 stays within
    255 * 128 < 2^15: no pair saturates int16, and fbgemm's AVX2 kernel sums exactly as well.
    Row j can reach up to 64 * n_bulk * bulk_code (n_bulk even).
    """
    k = n_bulk + 2
    x = np.full(k, bulk_code, dtype=np.int64)
    x[n_bulk:] = tune_code
    caps = np.where(np.arange(n_bulk) % 2 == 0, 127, 1)
    before = np.cumsum(caps) - caps
    w = np.zeros((len(targets), k), dtype=np.int64)
    for j, t in enumerate(np.asarray(targets, dtype=np.int64)):
        sign = 1 if t >= 0 else -1
        mag = abs(int(t))
        b, r = divmod(mag, bulk_code)
        while r > 2 * 127 * tune_code or r % tune_code:
            b -= 1
            r += bulk_code
        if b > int(caps.sum()):
            raise ValueError(f"target {t} needs more than {n_bulk} bulk inputs")
        w[j, :n_bulk] = np.clip(b - before, 0, caps)
        t1 = min(127, r // tune_code)
        w[j, n_bulk] = t1
        w[j, n_bulk + 1] = r // tune_code - t1
        w[j] *= sign
    assert np.array_equal(w @ x, np.asarray(targets, dtype=np.int64))
    assert not pair_saturations(x[None, :], w).any()
    return x, w.astype(np.int8)


def passthrough_layer(n: int, in_scale: float, zp: int) -> LayerSpec:
    """An output layer copying its n input codes (identity weights 127, zero point kept)."""
    w = np.eye(n, dtype=np.int8) * 127
    return LayerSpec(w, np.full(n, 1.0 / 127.0), float(f32(in_scale)), zp)
