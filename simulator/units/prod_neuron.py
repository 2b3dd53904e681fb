"""Lava's ProdNeuron (fixed-point model): a graded product neuron.

v = (a_in1 * a_in2) >> exp, the product held in a ``product_bits`` register (Lava: int32,
wraps silently) and shifted right arithmetically (floor); the graded output is v where
|v| > vth and 0 elsewhere. Used here as the requantizer of the graded-spike pipeline:
a_in1 = the Dense sum, a_in2 = a per-neuron multiplier M0_j, exp = one shift per layer.
Events: ``product_wrap`` / ``product_saturate`` (the product left the register) and
``below_vth`` (a non-zero v suppressed by the threshold).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..fixedpoint import Register, fit


@dataclass
class ProdStep:
    """out int64 (Q, N) graded output; v before the threshold; event masks (Q, N)."""

    out: np.ndarray
    v: np.ndarray
    product_overflow: np.ndarray
    below_vth: np.ndarray


def prod_neuron(
    a_in1: np.ndarray,
    a_in2: np.ndarray,
    exp: int,
    vth: int,
    product_bits: int = 32,
    product_overflow: str = "wrap",
) -> ProdStep:
    """One ProdNeuron update for a batch (a_in2 broadcast per neuron)."""
    prod = np.asarray(a_in1, dtype=np.int64) * np.asarray(a_in2, dtype=np.int64)
    reg = Register(product_bits, True)
    held, _ = fit(prod, reg, product_overflow, "ProdNeuron product")
    over = held != prod
    v = held >> exp
    keep = np.abs(v) > vth
    return ProdStep(np.where(keep, v, 0), v, over, (v != 0) & ~keep)
