"""Corner-case stimulus (``hwsim vectors --corners``): directed words on a synthetic layer.

Real weights rarely reach the corners of a datapath (a run of 166,800 requantizations held no
rounding tie). This module builds a small synthetic *feature* layer whose every output neuron
is one directed corner, runs it through the simulator like any model, and writes it as a
vectors set (one layer folder per accumulator policy: ``c_saturate/``, ``c_wrap/``).

Construction, for the layer's registers (spike register lo..hi, weights w_lo..w_hi limited to
int8, accumulator A bits, multiplier M bits, output clamp [c_lo, c_hi]):

* input zero point zx = clip(lo, 0, 255); input codes: ``n_big`` inputs at the code farthest
  from zx (x' = x - zx = X, |X| maximal) then ``n_one`` inputs at zx + 1 (x' = 1); query 1 has
  every input at zx (all-zero products: in event_driven mode it has no step at all);
* neuron j reaches its target exact sum T_j: the big inputs carry trunc(T_j / X) * X and the
  unit inputs the remainder, every weight of one sign, so partial sums move monotonically
  towards T_j (no intermediate overflow unless |T_j| itself leaves the register);
* the requantizer multiplier of neuron j is M0_j * 2^-shift_j exactly (input and output scale
  1, weight scale M0_j * 2^-shift_j); the output zero point zy is mid clamp range.

The corners (``CORNER_NAMES``): the seven rounding modes pairwise told apart (+-1/4, +-1/2,
+-3/4, +-3/2 of an output step), both clamp edges (at the edge and one past it), the
most-negative accumulator value (with the widest shift A + M - 1, a tie at -1/2, and with unit
multiplier), the largest positive value with the largest M0, sums one step past both rails
(saturation rails with ``saturate``, wraps in both directions with ``wrap``), shift 0, and an
all-zero query. The pre-add stage is switched off and the operand mode is ``offset`` (corners
target the accumulator and the requantizer); ``requant.shift`` is ``auto``.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import HwConfig, requant_clamp
from ..fixedpoint import ROUNDING_MODES, multiply_shift, quantize_multiplier
from ..network import QuantizedNetwork, make_combined_network
from .encoding import VectorsError, register_range

CORNER_POLICIES: tuple[str, ...] = ("saturate", "wrap")


@dataclass(frozen=True)
class Corner:
    """One directed word: exact accumulator sum ``acc_exact``, multiplier M0 * 2^-shift."""

    name: str
    acc_exact: int
    m0: int
    shift: int
    covers: tuple[str, ...]


@dataclass
class CornerLayer:
    """The synthetic network, its input codes and the corner of each neuron."""

    net: QuantizedNetwork
    cfg: HwConfig
    codes: np.ndarray  # uint/int (2, K) input codes: query 0 directed, query 1 all at zx
    corners: list[Corner]
    description: dict[str, Any]


def corner_config(cfg: HwConfig, policy: str) -> HwConfig:
    """The feature layer's hardware with ``policy``, no pre-add, offset operands, shift auto,
    applied to every layer (the synthetic output layer only carries the feature codes)."""
    hw = cfg.for_layer("feature")
    if hw.requant.scheme != "fixed_point":
        raise VectorsError(
            f"--corners: {cfg.source}: requant.scheme = {hw.requant.scheme!r} has no integer "
            "requantizer to corner; use a fixed_point config, e.g. --config int8_fixed_point"
        )
    lo, hi = requant_clamp(hw.requant)
    if hi - lo < 8:
        raise VectorsError(f"--corners: {cfg.source}: the output clamp range {lo}..{hi} is "
                           "narrower than 8 codes; widen requant.output_bits or the clamp")
    return dataclasses.replace(
        cfg,
        spikes=hw.spikes,
        accumulator=dataclasses.replace(hw.accumulator, overflow=policy),
        mac=dataclasses.replace(hw.mac, pre_add_width=1, operand="offset"),
        requant=dataclasses.replace(hw.requant, shift="auto"),
        combiner=hw.combiner,
        schedule=hw.schedule,
        layer_overrides={},
    )


def corner_list(acc_bits: int, m_bits: int, clamp: tuple[int, int], zy: int) -> list[Corner]:
    """The directed corners for an ``acc_bits`` accumulator and an ``m_bits`` M0."""
    one = (1 << (m_bits - 1), m_bits - 1)  # multiplier 1.0
    quarter = (1 << (m_bits - 1), m_bits + 1)  # multiplier 1/4
    widest = acc_bits + m_bits - 1
    amin, amax = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1
    lo, hi = clamp
    c: list[Corner] = []
    for t, label in ((1, "plus_quarter"), (-1, "minus_quarter"), (2, "plus_half_tie"),
                     (-2, "minus_half_tie"), (3, "plus_three_quarters"),
                     (-3, "minus_three_quarters"), (6, "plus_one_and_half_tie"),
                     (-6, "minus_one_and_half_tie")):
        c.append(Corner(f"round_{label}", t, *quarter, ("rounding",)))
    c += [
        Corner("clamp_low_edge", lo - zy, *one, ("clamp_low_edge",)),
        Corner("clamp_low_past", lo - zy - 1, *one, ("clamp_low",)),
        Corner("clamp_high_edge", hi - zy, *one, ("clamp_high_edge",)),
        Corner("clamp_high_past", hi - zy + 1, *one, ("clamp_high",)),
        Corner("acc_most_negative_widest_shift", amin, 1 << (m_bits - 1), widest,
               ("most_negative_acc", "widest_shift", "rounding")),
        Corner("acc_most_negative_unit", amin, *one, ("most_negative_acc", "clamp_low")),
        Corner("acc_max_widest_shift_max_m0", amax, (1 << m_bits) - 1, widest,
               ("max_positive_acc", "widest_shift", "max_m0")),
        Corner("acc_past_max", amax + 3, (1 << m_bits) - 1, widest,
               ("saturate_high", "wrap_positive_to_negative")),
        Corner("acc_past_min", amin - 3, (1 << m_bits) - 1, widest,
               ("saturate_low", "wrap_negative_to_positive")),
        Corner("shift_zero", 0, 1 << (m_bits - 1), 0, ("shift_zero",)),
        Corner("shift_zero_plus_one", 1, 1 << (m_bits - 1), 0, ("shift_zero", "clamp_high")),
        Corner("shift_zero_minus_one", -1, 1 << (m_bits - 1), 0, ("shift_zero", "clamp_low")),
    ]
    return c


def _fill(total: int, count: int, w_lo: int, w_hi: int) -> np.ndarray:
    """``count`` weights of one sign summing to ``total`` (greedy, largest first)."""
    out = np.zeros(count, np.int64)
    rem = total
    for i in range(count):
        if rem == 0:
            break
        out[i] = min(rem, w_hi) if rem > 0 else max(rem, w_lo)
        rem -= int(out[i])
    if rem:
        raise RuntimeError("internal error: corner weights do not reach the target")
    return out


def build_corner_layer(cfg: HwConfig) -> CornerLayer:
    """Synthetic network + inputs for the corners on ``cfg`` (see :func:`corner_config`)."""
    hw = cfg.for_layer("feature")
    rq = hw.requant
    x_lo, x_hi = register_range(hw.spikes.bits, hw.spikes.signed)
    zx = int(np.clip(x_lo, 0, 255))
    if zx + 1 > x_hi:
        raise VectorsError(f"--corners: {cfg.source}: the spike register {x_lo}..{x_hi} has "
                           "no code above the zero point; widen spikes.bits")
    x_big = x_hi if abs(x_hi - zx) >= abs(x_lo - zx) else x_lo
    big = x_big - zx
    r_lo, r_hi = register_range(cfg.weights.bits, cfg.weights.signed)
    w_lo, w_hi = max(r_lo, -128), min(r_hi, 127)
    if w_lo >= 0 or w_hi <= 0:
        raise VectorsError(f"--corners: {cfg.source}: corners need signed weights "
                           "(weights.signed = true)")
    w_mag = min(-w_lo, w_hi)
    clamp = requant_clamp(rq)
    zy = int(np.clip((clamp[0] + clamp[1] + 1) // 2, 0, 255))
    zy = int(np.clip(zy, clamp[0], clamp[1]))
    corners = corner_list(hw.accumulator.bits, rq.multiplier_bits, clamp, zy)
    # big part trunc(T / X) * X, unit part the rest (same sign as T: monotonic partial sums)
    units_big = [int(np.trunc(c.acc_exact / big)) if abs(c.acc_exact) < (1 << 52)
                 else _trunc_div(c.acc_exact, big) for c in corners]
    rests = [c.acc_exact - u * big for c, u in zip(corners, units_big, strict=True)]
    n_big = max(1, max(-(-abs(u) // w_mag) for u in units_big))
    n_one = max(1, max(-(-abs(r) // w_mag) for r in rests))
    k = n_big + n_one
    w = np.zeros((len(corners), k), np.int64)
    for j, (u, r) in enumerate(zip(units_big, rests, strict=True)):
        w[j, :n_big] = _fill(u, n_big, w_lo, w_hi)
        w[j, n_big:] = _fill(r, n_one, w_lo, w_hi)
    codes = np.full((2, k), zx, np.int64)
    codes[0, :n_big] = x_big
    codes[0, n_big:] = zx + 1
    m0 = np.array([c.m0 for c in corners], np.int64)
    shift = np.array([c.shift for c in corners], np.int64)
    sw = np.ldexp(m0.astype(np.float64), -shift)
    got_m0, got_shift = quantize_multiplier(sw, rq.multiplier_bits)
    if not (np.array_equal(got_m0, m0) and np.array_equal(got_shift, shift)):
        raise RuntimeError("internal error: corner multipliers are not exactly representable")
    n = len(corners)
    mod = {
        "input_scale": 1.0, "input_zero_point": zx,
        "feature": {"weight": w.astype(np.int8), "scale": sw, "output_scale": 1.0,
                    "output_zero_point": zy},
        "output": {"weight": np.zeros((1, n), np.int8), "scale": 1.0, "output_scale": 1.0,
                   "output_zero_point": zy},
    }
    net = make_combined_network([mod], {"synthetic": "hwsim vectors --corners"},
                                source="<corners>")
    dtype = np.uint8 if zx >= 0 and x_lo >= 0 and x_hi <= 255 else np.int64
    description = {
        "what": "synthetic feature layer: one directed corner per output neuron (query 0); "
                "query 1 has every input at the zero point",
        "inputs": k, "neurons": n, "input_zero_point": zx, "output_zero_point": zy,
        "input_code_big": int(x_big), "inputs_big": n_big, "input_code_unit": zx + 1,
        "inputs_unit": n_one,
        "weight_scale": "M0_j * 2^-shift_j (input and output scale 1.0)",
        "forced": {"mac.pre_add_width": 1, "mac.operand": "offset", "requant.shift": "auto"},
    }
    return CornerLayer(net, cfg, codes.astype(dtype), corners, description)


def _trunc_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def rounding_coverage(corners: list[Corner], acc: np.ndarray, zy: int,
                      clamp: tuple[int, int]) -> list[tuple[str, str]]:
    """Pairs of rounding modes that give the same code on every word (should be none)."""
    m0 = np.array([c.m0 for c in corners], np.int64)
    shift = np.array([c.shift for c in corners], np.int64)
    codes = {}
    for mode in ROUNDING_MODES:
        v = multiply_shift(acc, m0, shift, mode) + zy
        codes[mode] = np.clip(v, clamp[0], clamp[1])
    return [(a, b) for a, b in itertools.combinations(ROUNDING_MODES, 2)
            if np.array_equal(codes[a], codes[b])]
