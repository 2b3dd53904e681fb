"""Loihi-class LIF neuron as Lava 0.10's bit-accurate model (PyLifModelBitAcc) computes it.

Per time step, with du, dv 12-bit decays, a_in the Dense output (int32):

* u' = sign(u(4096 - du - 1)) (|u(4096 - du - 1)| >> 12) + (a_in << 6), all int32 (the
  << 6 and the add wrap modulo 2^32: events ``act_shift_wrap`` and ``u_add_wrap``);
  if u' > 2^23 subtract 2^24 once, if u' <= -2^23 add 2^24 once (event ``u_correction``).
  This is not a modulo: a value can stay outside a 24-bit register afterwards (event
  ``u_outside_24bit``: u outside [-2^23, 2^23 - 1], including Lava's own +2^23).
  du = 0 still decays u by 1/4096 per step.
* v' = sign(v(4096 - dv)) (|v(4096 - dv)| >> 12) + u' + (bias_mant << bias_exp), int32
  (event ``v_add_wrap``), then clamped to [-(2^23 - 1), 2^23 - 1] (events ``v_clamp_low``,
  ``v_clamp_high``).
* spike where v' > vth << 6; spiking neurons reset v to 0 (u is not reset).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..fixedpoint import Register, wrap

INT32 = Register(32, True)
UV_MAX = 1 << 23
DECAY_SHIFT = 12
DECAY_UNITY = 1 << DECAY_SHIFT
ACT_SHIFT = 6
VTH_SHIFT = 6
LIF_EVENTS = ("act_shift_wrap", "u_add_wrap", "u_correction", "u_outside_24bit", "v_add_wrap",
              "v_clamp_low", "v_clamp_high")


@dataclass(frozen=True)
class LifParams:
    """du, dv: 0..4095; vth: 0..2^17 - 1 (scaled by 2^6); bias = bias_mant << bias_exp."""

    du: int
    dv: int
    vth: int
    bias_mant: np.ndarray  # int64 (N,)
    bias_exp: int

    @property
    def effective_bias(self) -> np.ndarray:
        m = np.asarray(self.bias_mant, dtype=np.int64)
        e = self.bias_exp
        return m << e if e >= 0 else m >> -e

    @property
    def effective_vth(self) -> int:
        return self.vth << VTH_SHIFT


def _decay(x: np.ndarray, factor: int) -> np.ndarray:
    """sign(x * factor) * (|x * factor| >> 12), x int32 values held in int64."""
    p = x * factor
    return np.sign(p) * (np.abs(p) >> DECAY_SHIFT)


@dataclass
class LifStep:
    """New state (int64 (Q, N)), spikes (bool) and event masks by name."""

    u: np.ndarray
    v: np.ndarray
    spikes: np.ndarray
    events: dict[str, np.ndarray]


def lif_step(u: np.ndarray, v: np.ndarray, a_in: np.ndarray, p: LifParams) -> LifStep:
    """One LIF update for a batch; u, v, a_in int64 (Q, N) holding int32 values."""
    du_u = _decay(u, DECAY_UNITY - p.du - 1)
    act_exact = np.asarray(a_in, dtype=np.int64) << ACT_SHIFT
    act = wrap(act_exact, INT32)
    s = du_u + act
    u_sum = wrap(s, INT32)
    hi = u_sum > UV_MAX
    lo = u_sum <= -UV_MAX
    u_new = np.where(hi, u_sum - 2 * UV_MAX, np.where(lo, u_sum + 2 * UV_MAX, u_sum))
    dv_v = _decay(v, DECAY_UNITY - p.dv)
    t = dv_v + u_new + p.effective_bias[None, :]
    v_sum = wrap(t, INT32)
    v_lim = UV_MAX - 1
    v_new = np.clip(v_sum, -v_lim, v_lim)
    spikes = v_new > p.effective_vth
    v_new = np.where(spikes, 0, v_new)
    events = {
        "act_shift_wrap": act != act_exact,
        "u_add_wrap": u_sum != s,
        "u_correction": hi | lo,
        "u_outside_24bit": (u_new < -UV_MAX) | (u_new > UV_MAX - 1),
        "v_add_wrap": v_sum != t,
        "v_clamp_low": v_sum < -v_lim,
        "v_clamp_high": v_sum > v_lim,
    }
    return LifStep(u_new, v_new, spikes, events)
