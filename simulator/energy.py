"""Width-aware energy estimate of a run (the report's ``energy`` block).

Per layer (widths from that layer's hardware, counts from the engine)::

    E_mac   = macs * (mult_pj_per_bit2 * spikes.bits * weights.bits
                      + add_pj_per_bit * accumulator.bits)
    E_mem   = weight_bits_read * sram_read_pj_per_bit
    E_rq    = requantizations * E_one_requant
    E_one_requant = mult_pj_per_bit2 * accumulator.bits * requant.multiplier_bits
                    + add_pj_per_bit * requant.output_bits            (fixed_point)
                  = float32_mult_pj + add_pj_per_bit * requant.output_bits   (fbgemm, qnnpack)
                  = float32_mult_pj * (divisions + 1)
                    + add_pj_per_bit * requant.output_bits            (seed_floor_divide)

``macs``: products the MAC array really performed (an event-driven schedule skips inputs equal
to the zero point; those products are not counted), per weight path. ``weight_bits_read``:
whole weight-memory words read (``weights.word_bits`` each). ``requantizations``: output
neurons x queries per layer. The multiplier's operand widths are the two registers it reads
(``spikes.bits`` and ``weights.bits``); one addition at the accumulator's width per product
stands for the adder tree and the accumulator register update. Pre-add registers, the spike
buffer, control and leakage are not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import HwConfig, LayerHw
from .engine.fast import SimResult
from .units.weight_memory import WeightMemory

ENERGY_SOURCE = (
    "M. Horowitz, 'Computing's energy problem (and what we can do about it)', ISSCC 2014, "
    "45 nm, 0.9 V"
)


@dataclass(frozen=True)
class LayerEnergy:
    """Activity and energy (pJ) of one layer of one module over a whole run."""

    key: str
    macs: int
    weight_bits_read: int
    requantizations: int
    mac_pj: float
    memory_pj: float
    requant_pj: float

    @property
    def total_pj(self) -> float:
        return self.mac_pj + self.memory_pj + self.requant_pj


def requant_op_pj(hw: LayerHw, cfg: HwConfig) -> float:
    """Energy (pJ) of one requantization on this layer's requantizer."""
    en, rq = cfg.energy, hw.requant
    zp_add = en.add_pj_per_bit * rq.output_bits
    if rq.scheme == "fixed_point":
        return en.mult_pj_per_bit2 * hw.accumulator.bits * rq.multiplier_bits + zp_add
    if rq.scheme == "seed_floor_divide":
        divisions = len(rq.exc_divisors) + len(rq.inh_divisors)
        return en.float32_mult_pj * (divisions + 1) + zp_add
    return en.float32_mult_pj + zp_add


def mac_op_pj(hw: LayerHw, cfg: HwConfig) -> float:
    """Energy (pJ) of one multiply-accumulate on this layer's MAC lanes."""
    en = cfg.energy
    return (
        en.mult_pj_per_bit2 * hw.spikes.bits * cfg.weights.bits
        + en.add_pj_per_bit * hw.accumulator.bits
    )


def layer_energies(result: SimResult, cfg: HwConfig) -> list[LayerEnergy]:
    """Activity and energy of every (module, layer) of a run, in run order."""
    wmem = WeightMemory(cfg.weights)
    out = []
    for lr in result.layers:
        hw = cfg.for_layer(lr.layer)
        n_out = int(lr.codes.shape[1])
        paths = len(lr.mac)
        k_total = int(np.asarray(lr.k_active, dtype=np.int64).sum())
        macs = paths * n_out * k_total
        words_bytes = paths * int(wmem.bytes_read(n_out * lr.k_active).sum())
        bits_read = 8 * words_bytes
        requants = n_out * int(lr.codes.shape[0])
        out.append(LayerEnergy(
            lr.key, macs, bits_read, requants,
            macs * mac_op_pj(hw, cfg),
            bits_read * cfg.energy.sram_read_pj_per_bit,
            requants * requant_op_pj(hw, cfg),
        ))
    return out


def energy_block(result: SimResult, cfg: HwConfig) -> dict[str, Any]:
    """The report's ``energy`` block (docs/reports.md)."""
    parts = layer_energies(result, cfg)
    q = int(result.outputs.shape[0])
    total = sum(p.total_pj for p in parts)
    return {
        "model": "width-aware: macs * (mult*spikes.bits*weights.bits + add*acc.bits) + "
                 "weight bits read * sram + requantizations * requantizer (docs/hwconfig.md)",
        "source": ENERGY_SOURCE,
        "macs": sum(p.macs for p in parts),
        "weight_bits_read": sum(p.weight_bits_read for p in parts),
        "requantizations": sum(p.requantizations for p in parts),
        "mac_uj": sum(p.mac_pj for p in parts) * 1e-6,
        "memory_uj": sum(p.memory_pj for p in parts) * 1e-6,
        "requant_uj": sum(p.requant_pj for p in parts) * 1e-6,
        "per_layer_uj": {p.key: p.total_pj * 1e-6 for p in parts},
        "total_uj": total * 1e-6,
        "per_query_uj": total * 1e-6 / max(q, 1),
    }
