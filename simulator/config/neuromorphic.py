"""Schema of the neuromorphic (Loihi-2 class, as Lava 0.10's bit-accurate models) datapath
sections: neuromorphic, dense, prodneuron, neuron (docs/neuromorphic.md).

Widths in bits; weight mantissas, bias mantissa (13-bit) and products are signed."""

from __future__ import annotations

from dataclasses import dataclass

from ..fixedpoint import OVERFLOW_POLICIES
from .sections import _f


@dataclass(frozen=True)
class NeuromorphicConfig:
    """Which datapath runs: the MAC array (off) or a Loihi-class time-stepped pipeline."""

    datapath: str = _f(
        "off",
        "off: the MAC-array datapath; prodneuron: graded spikes, Dense -> ProdNeuron "
        "(x M0_j >> shift) per layer, one query per time step; lif: Dense -> LIF per layer, "
        "spiking, timesteps steps per query, readout = output spike counts",
        choices=("off", "prodneuron", "lif"),
    )
    timesteps: int = _f(32, "lif: time steps per query (u, v and Dense buffers reset between "
                        "queries)", range=(1, 1 << 20))
    readout: str = _f(
        "spike_count",
        "lif: scores = output spike counts (spike_count) or counts with ties broken by the "
        "final v (spike_count_then_v: count * 2^24 + v)",
        choices=("spike_count", "spike_count_then_v"),
    )
    emit: str = _f(
        "offset",
        "prodneuron: what a layer sends to the next Dense: offset = ProdNeuron's unclamped v "
        "(as Lava does); code = clamp(v + zy) - zy (the output register's clamp applied)",
        choices=("offset", "code"),
    )


@dataclass(frozen=True)
class DenseConfig:
    """Loihi-class Dense synapses: Lava's weight rules and int32 sums."""

    weight_bits: int = _f(8, "num_weight_bits: weights floored to this many bits (+ sign)",
                          range=(1, 8))
    sign_mode: str = _f("auto", "weight sign mode (auto = from the weights' signs, as Lava)",
                        choices=("auto", "mixed", "excitatory", "inhibitory"))
    double_weights: bool = _f(
        False, "store 2w and add -1 to weight_exp: odd int8 weights stay exact at 8 bits"
    )
    fold_scales: bool = _f(
        False,
        "lif: fold the per-channel requantization multipliers into the weights, "
        "w' = rint(w * m_j / max(m) * g) with g putting max |w'| at 127 (lossy)",
    )
    weight_exp: int | str = _f(
        "auto",
        "shared weight exponent: sum << e (e > 0) or >> -e (floor); 'auto' = -1 with "
        "double_weights for prodneuron, else the smallest right shift for which no input can "
        "take a_in << 6 past 24 bits",
    )


@dataclass(frozen=True)
class ProdNeuronConfig:
    """ProdNeuron as requantizer: v = (a * M0_j) >> shift, |v| <= vth sent as 0."""

    multiplier_bits: int = _f(8, "width of the per-neuron multiplier M0_j (bits, unsigned)",
                              range=(1, 31))
    shift: int | str = _f(
        "auto", "one right shift per layer (floor); 'auto' = the largest with every M0_j "
        "within multiplier_bits"
    )
    product_bits: int = _f(32, "product register width (bits, signed; Lava: int32)",
                           range=(2, 64))
    product_overflow: str = _f("wrap", "product register overflow policy (Lava wraps)",
                               choices=OVERFLOW_POLICIES)
    vth: int = _f(0, "graded output threshold: |v| <= vth is sent as 0", range=(0, 1 << 31))


@dataclass(frozen=True)
class NeuronConfig:
    """LIF neuron (Lava PyLifModelBitAcc): 24-bit u and v, 12-bit decays."""

    du: int = _f(4095, "current decay (4095 = u holds only this step's input)", range=(0, 4095))
    dv: int = _f(0, "voltage decay (0 = no leak)", range=(0, 4095))
    vth: int | str = _f(
        "auto",
        "threshold mantissa (spike when v > vth << 6); 'auto' = one spike per spike_code "
        "output-code units (needs the model's scales)",
    )
    spike_code: float = _f(255.0, "vth = 'auto': output-code units per spike (255 = a neuron at "
                           "code 255 spikes every step)", range=(1e-3, 1e9))
    bias: str = _f(
        "fixed",
        "fixed: bias_mant << bias_exp for every neuron; zero_point: per neuron from the model "
        "(a hidden layer's output zero point, minus the previous layer's zero point times the "
        "weight row sum at its spike rate)",
        choices=("fixed", "zero_point"),
    )
    bias_mant: int = _f(0, "bias mantissa (signed 13-bit)", range=(-4096, 4095))
    bias_exp: int = _f(0, "bias exponent (bias = bias_mant << bias_exp)", range=(0, 7))
