"""Float VPRTempo weights -> the int8 "combined" network the simulator runs.

What torch's fbgemm QAT + ``convert`` produce, reproduced in numpy:

* weights: per-output-channel symmetric qint8. ``scale_j = f32(max(|min_j|, |max_j|) / 127.5)``
  (at least float32 eps; ``min_j <= 0 <= max_j`` as the observer widens to include 0),
  ``w_q = clamp(rint(f32(w) * f32(1 / scale_j)), -128, 127)``, zero point 0. torch's
  ``quantize_per_channel`` multiplies by the float32 reciprocal; dividing by the scale instead
  differs in about 4 of 10,000 weights (at .5 boundaries) - checked against torch 2.13.
* activations (the input quantizer and each layer's output): per-tensor affine quint8 from a
  MinMax observer over calibration data: ``min' = min(min, 0)``, ``max' = max(max, 0)``,
  ``scale = f32((max' - min') / (qmax - qmin))`` (at least eps),
  ``zero_point = clamp(qmin - rint(min' / scale), qmin, qmax)`` with qmin..qmax = 0..255
  (0..127 with ``reduce_range``, as QAT observers use; the converted kernels still clamp to
  0..255).

:func:`reference_forward` is a small numpy model of the fbgemm integer arithmetic
(docs/DESIGN section 2) used when :mod:`simulator.engine` is not available.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..network import QuantizedNetwork, make_combined_network

F32_EPS = float(np.finfo(np.float32).eps)


@dataclass(frozen=True)
class QParams:
    """Per-tensor affine quantization parameters (quint8): scale (float32 value), zero point."""

    scale: float
    zero_point: int


def minmax_qparams(
    lo: float, hi: float, qmin: int = 0, qmax: int = 255, reduce_range: bool = False
) -> QParams:
    """torch ``MinMaxObserver`` (per-tensor affine) parameters for observed range [lo, hi]."""
    if reduce_range:
        qmax = qmin + (qmax - qmin + 1) // 2 - 1
    f = np.float32
    lo_n = min(f(lo), f(0.0))
    hi_p = max(f(hi), f(0.0))
    scale = f((f(hi_p) - f(lo_n)) / f(qmax - qmin))
    scale = max(scale, f(F32_EPS))
    zp = qmin - int(np.rint(f(lo_n) / scale))
    zp = int(min(max(zp, qmin), qmax))
    return QParams(float(scale), zp)


def quantize_weights(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float (out, in) -> (int8 (out, in), float64 (out,) scales of float32 values).

    Per-output-channel symmetric qint8, zero point 0, ``rint(w * f32(1 / scale))`` in float32
    exactly as ``torch.quantize_per_channel``.
    """
    w32 = np.asarray(w, dtype=np.float32)
    if w32.ndim != 2:
        raise ValueError(f"weights must be 2-D (out, in), got shape {w32.shape}")
    lo = np.minimum(w32.min(axis=1), np.float32(0))
    hi = np.maximum(w32.max(axis=1), np.float32(0))
    amax = np.maximum(-lo, hi).astype(np.float32)
    scale = (amax / np.float32(127.5)).astype(np.float32)
    scale = np.maximum(scale, np.float32(F32_EPS))
    inv = (np.float32(1.0) / scale).astype(np.float32)
    q = np.rint((w32 * inv[:, None]).astype(np.float32))
    return np.clip(q, -128, 127).astype(np.int8), scale.astype(np.float64)


def quantize_activations(x: np.ndarray, qp: QParams) -> np.ndarray:
    """float32 values -> int64 quint8 codes ``clamp(rint(fma(x, f32(1/s), z)), 0, 255)``.

    The product and the add are rounded once to float32 (a fused multiply-add, as torch's
    QuantStub); float64 computes ``x * inv + z`` exactly for float32 inputs.
    """
    inv = np.float64(np.float32(1.0) / np.float32(qp.scale))
    v = (np.asarray(x, dtype=np.float32).astype(np.float64) * inv + qp.zero_point).astype(
        np.float32
    )
    return np.clip(np.rint(v), 0, 255).astype(np.int64)


def dequantize(q: np.ndarray, qp: QParams) -> np.ndarray:
    """int codes -> float64 ``(q - z) * s``."""
    return (np.asarray(q, dtype=np.float64) - qp.zero_point) * qp.scale


def requantize(
    acc: np.ndarray, sx: float, sw: np.ndarray, out: QParams
) -> np.ndarray:
    """fbgemm requantization of exact int accumulators (N, out) -> int64 codes 0..255.

    ``m_j = f32(f32(sx * sw_j) / sy)``, ``v = f32(f32(acc) * m_j)``, ``clamp(rint(v) + zy)``.
    """
    f = np.float32
    m = (np.asarray(sw, dtype=np.float32) * f(sx)).astype(f) / f(out.scale)
    m = m.astype(f)
    v = (np.asarray(acc, dtype=np.float64).astype(f) * m[None, :]).astype(f)
    return np.clip(np.rint(v).astype(np.int64) + out.zero_point, 0, 255)


def _layer_int(codes: np.ndarray, zx: int, wq: np.ndarray) -> np.ndarray:
    """Exact integer accumulators sum_k (x_k - zx) * w_jk, via float64 (every sum < 2^53)."""
    xs = codes.astype(np.float64) - zx
    return xs @ wq.astype(np.float64).T


def reference_forward(net: QuantizedNetwork, spikes: np.ndarray) -> np.ndarray:
    """numpy model of the fbgemm quantized network: float32 (N, K) spikes -> int64 (N, places)."""
    x = np.asarray(spikes, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    outs = []
    for mod in net.modules:
        qin = QParams(mod.input_scale, mod.input_zero_point)
        codes = quantize_activations(x, qin)
        sx, zx = qin.scale, qin.zero_point
        for lay in mod.layers:
            path = lay.paths[0]
            acc = _layer_int(codes, zx, path.weight)
            oq = QParams(lay.output_scale, lay.output_zero_point)
            codes = requantize(acc, sx, path.scale, oq)
            sx, zx = oq.scale, oq.zero_point
        outs.append(codes)
    return np.concatenate(outs, axis=1).astype(np.int64)


def quantize_network(
    modules: Sequence[tuple[np.ndarray, np.ndarray]],
    calibration: np.ndarray,
    metadata: dict[str, Any] | None = None,
    reduce_range: bool = False,
    source: str = "<trained>",
) -> QuantizedNetwork:
    """Quantize float modules [(w_feature (F, K), w_output (P_m, F)), ...] -> QuantizedNetwork.

    ``calibration``: float32 (N, K) spikes (the database images); every module's observers see
    all of them. Each layer's output observer sees the fake-quantized forward pass
    (dequantized int8 weights, dequantized quint8 inputs), as in QAT.
    """
    cal = np.asarray(calibration, dtype=np.float32)
    if cal.ndim != 2 or cal.shape[0] == 0:
        raise ValueError(f"calibration must be (N, K) with N >= 1, got shape {cal.shape}")
    qin = minmax_qparams(float(cal.min()), float(cal.max()), reduce_range=reduce_range)
    mods: list[dict[str, Any]] = []
    for w1, w2 in modules:
        mod: dict[str, Any] = {"input_scale": qin.scale, "input_zero_point": qin.zero_point}
        x_deq = dequantize(quantize_activations(cal, qin), qin)
        for name, w in (("feature", w1), ("output", w2)):
            wq, sw = quantize_weights(w)
            y = x_deq @ (wq.astype(np.float64) * sw[:, None]).T
            oq = minmax_qparams(float(y.min()), float(y.max()), reduce_range=reduce_range)
            mod[name] = {
                "weight": wq,
                "scale": sw,
                "zero_point": 0,
                "output_scale": oq.scale,
                "output_zero_point": oq.zero_point,
            }
            x_deq = dequantize(quantize_activations(y.astype(np.float32), oq), oq)
        mods.append(mod)
    return make_combined_network(mods, metadata=metadata, source=source)


def run_quantized(
    net: QuantizedNetwork,
    spikes: np.ndarray,
    engine: str = "auto",
    hwconfig: str = "pytorch_fbgemm",
) -> tuple[np.ndarray, str]:
    """Run ``net`` on float32 (N, K) spikes -> (int64 (N, places) output codes, engine used).

    ``engine``: ``"simulator"`` (simulator.engine.simulate with ``hwconfig``), ``"reference"``
    (:func:`reference_forward`) or ``"auto"`` (the simulator when it is installed).
    """
    x = np.ascontiguousarray(spikes, dtype=np.float32)
    if engine not in ("auto", "simulator", "reference"):
        raise ValueError(f"engine must be 'auto', 'simulator' or 'reference', not {engine!r}")
    if engine in ("auto", "simulator"):
        try:
            from ..config import load_config  # type: ignore[attr-defined]
            from ..engine import simulate  # type: ignore[attr-defined]
        except ImportError:
            if engine == "simulator":
                raise
        else:
            result = simulate(net, load_config(hwconfig), x)
            return np.asarray(result.outputs, dtype=np.int64), f"simulator.engine ({hwconfig})"
    return reference_forward(net, x), "numpy reference (fbgemm arithmetic)"
