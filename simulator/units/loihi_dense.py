"""Loihi-class Dense synapses as Lava 0.10's bit-accurate model computes them.

Weight memory (once, when the weights are loaded), for sign mode mixed / excitatory /
inhibitory (``auto`` = from the weights' signs, as Lava's ``determine_sign_mode``):

* clip: mixed [-256, 255], excitatory [0, 255], inhibitory [-255, 0];
* truncate: ``w = (w >> t) << t`` with ``t = 8 - num_weight_bits + (1 if mixed)``: floor for
  mixed and excitatory weights, toward zero for inhibitory ones (Lava negates, floors,
  negates). At 8 bits odd mixed-sign weights lose their last bit; 2w with weight_exp -1 keeps
  int8 weights exact.

Per time step: the output is the *previous* step's sum (one step of delay), then

* graded input (``num_message_bits > 0``): ``a = W . s`` as an int32 dot (wraps modulo 2^32),
  then ``a << weight_exp`` in int32 (wraps) or ``a >> -weight_exp`` (floor);
* binary input (``num_message_bits = 0``): the weights of the inputs != 0 are summed exactly,
  shifted, and the int32 output port wraps the result.

Every wrap is an event (``dense_dot_wrap``, ``dense_shift_wrap``); Lava reports none.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..fixedpoint import Register, wrap

SIGN_MODES = ("auto", "mixed", "excitatory", "inhibitory")
INT32 = Register(32, True)
EXACT_F64 = float(1 << 53)


@dataclass(frozen=True)
class DenseWeights:
    """A weight matrix after Lava's load rules.

    weights: int64 (N, K) values the synapses hold; sign_mode: the mode applied;
    clipped / truncated: int64 (N,) weights per neuron changed by the clip / the truncation.
    """

    weights: np.ndarray
    sign_mode: str
    clipped: np.ndarray
    truncated: np.ndarray

    @cached_property
    def as_f64_t(self) -> np.ndarray:
        """float64 (K, N) copy for exact BLAS products (see exact_dot)."""
        return np.ascontiguousarray(self.weights.T.astype(np.float64))

    @cached_property
    def max_abs_row_sum(self) -> int:
        return int(np.abs(self.weights).sum(axis=1).max(initial=0))


def sign_mode_of(w: np.ndarray) -> str:
    """Lava's determine_sign_mode: excitatory if min >= 0, inhibitory if max <= 0, else mixed."""
    if w.size == 0 or int(w.min()) >= 0:
        return "excitatory"
    if int(w.max()) <= 0:
        return "inhibitory"
    return "mixed"


def load_weights(w: np.ndarray, num_weight_bits: int = 8, sign_mode: str = "auto") -> DenseWeights:
    """Apply Lava's clip (to 8 bits + sign) and floor-to-``num_weight_bits`` truncation."""
    if sign_mode not in SIGN_MODES:
        raise ValueError(f"sign_mode must be one of {', '.join(SIGN_MODES)}, not {sign_mode!r}")
    x = wrap(np.asarray(w, dtype=np.int64), INT32)  # Lava casts to int32 first
    mode = sign_mode_of(x) if sign_mode == "auto" else sign_mode
    mixed = mode == "mixed"
    neg = mode == "inhibitory"
    y = -x if neg else x
    y = np.clip(y, -256 if mixed else 0, 255)
    clipped = ((-y if neg else y) != x).sum(axis=1).astype(np.int64)
    t = 8 - num_weight_bits + (1 if mixed else 0)
    z = (y >> t) << t if t > 0 else y
    truncated = (z != y).sum(axis=1).astype(np.int64)
    out = -z if neg else z
    return DenseWeights(out.astype(np.int64), mode, clipped, truncated)


def exact_dot(s: np.ndarray, w: DenseWeights | np.ndarray) -> np.ndarray:
    """Exact int64 (Q, N) = s (Q, K) . w (N, K)^T; float64 BLAS when every sum < 2^53."""
    s = np.asarray(s, dtype=np.int64)
    if not isinstance(w, DenseWeights):
        w = DenseWeights(np.asarray(w, dtype=np.int64), "", np.zeros(0), np.zeros(0))
    bound = float(np.abs(s).max(initial=0)) * float(w.max_abs_row_sum)
    if bound < EXACT_F64:  # every partial sum of integers below 2^53 is exact in float64
        return (s.astype(np.float64) @ w.as_f64_t).astype(np.int64)
    return s @ w.weights.T


@dataclass
class DenseStep:
    """One Dense evaluation for a batch: output int64 (Q, N) (int32 values) and event masks."""

    out: np.ndarray
    exact: np.ndarray
    dot_wrap: np.ndarray
    shift_wrap: np.ndarray


def dense_forward(
    s: np.ndarray, w: DenseWeights | np.ndarray, weight_exp: int, graded: bool = True
) -> DenseStep:
    """The value a Dense sends one step after receiving spikes ``s`` (int64 (Q, K))."""
    x = np.asarray(s, dtype=np.int64)
    if not graded:
        x = (x != 0).astype(np.int64)
    exact = exact_dot(x, w)
    if graded:
        a = wrap(exact, INT32)
        dot_wrap = a != exact
        if weight_exp > 0:
            shifted = a << weight_exp
            out = wrap(shifted, INT32)
            shift_wrap = out != shifted
        else:
            out = a >> -weight_exp
            shift_wrap = np.zeros_like(dot_wrap)
    else:  # int64 sum and shift, wrapped by the int32 output port
        shifted = exact << weight_exp if weight_exp > 0 else exact >> -weight_exp
        out = wrap(shifted, INT32)
        bad = out != shifted
        dot_wrap = bad if weight_exp <= 0 else np.zeros_like(bad)
        shift_wrap = bad if weight_exp > 0 else np.zeros_like(bad)
    return DenseStep(out, exact, dot_wrap, shift_wrap)
