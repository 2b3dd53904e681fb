"""The quantized VPRTempo network as the simulator sees it.

A :class:`QuantizedNetwork` is a list of :class:`Module` objects (VPRTempo splits the places
into modules of at most ``max_module`` output neurons; every module sees the same input and
their outputs are concatenated).  Each module has an input quantizer (quint8: scale, zero
point) and two :class:`Layer` objects, ``feature`` (K0 -> 2*K0) and ``output`` (2*K0 -> places).

A layer holds one or two :class:`WeightPath` objects:

* ``layout == "combined"`` (VPRTempoQuant 1.1.x / torch fbgemm QAT): one signed int8 matrix
  ``combined`` with per-output-channel scales and zero points; the layer output is quint8
  with ``output_scale`` / ``output_zero_point``.
* ``layout == "split"`` (the seed tutorial): an ``excitatory`` (>= 0) and an ``inhibitory``
  (<= 0) int8 matrix, each with the seed's four scale factors (``factors``); the combining
  add's constants live in the hardware config.

All weights are ``int8`` arrays of shape ``(out_features, in_features)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

LAYER_NAMES: tuple[str, str] = ("feature", "output")
Layout = Literal["combined", "split"]
PATHS_BY_LAYOUT: dict[str, tuple[str, ...]] = {
    "combined": ("combined",),
    "split": ("excitatory", "inhibitory"),
}


class ModelError(ValueError):
    """A model file or in-memory model that the simulator cannot execute as given."""


@dataclass(frozen=True)
class WeightPath:
    """One int8 weight memory image and its quantization parameters.

    weight:      int8, shape (out, in), row j = fan-in of output neuron j.
    scale:       float64, shape (out,), per-output-channel weight scale (combined layout);
                 for the split layout unused (all ones).
    zero_point:  int64, shape (out,), weight zero point per channel (0 for symmetric qint8).
    bias:        float32, shape (out,) or None (VPRTempo layers have no bias).
    """

    name: str
    weight: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    bias: np.ndarray | None = None

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[0])

    @property
    def in_features(self) -> int:
        return int(self.weight.shape[1])


@dataclass(frozen=True)
class Layer:
    """One fully connected layer of a module.

    output_scale / output_zero_point: the quint8 output quantizer (combined layout).
    factors: float64 (4,) scale factors of the split (seed) layout, in the seed's order
             [per-slice exc, per-slice inh, per-channel exc, per-channel inh]; None otherwise.
    requant_m0 / requant_shift: int64 (out,) an engine's own multipliers m_j = M0_j * 2**-shift_j,
             used with ``requant.multipliers = "model"`` (fixed_point, two_stage); None otherwise.
    requant_multiplier: float64 (out,) an engine's own float multiplier (``requant.multipliers =
             "model"`` with fbgemm, qnnpack, float64); None otherwise.
    """

    name: str
    paths: tuple[WeightPath, ...]
    output_scale: float = 1.0
    output_zero_point: int = 0
    factors: np.ndarray | None = None
    requant_m0: np.ndarray | None = None
    requant_shift: np.ndarray | None = None
    requant_multiplier: np.ndarray | None = None

    @property
    def in_features(self) -> int:
        return self.paths[0].in_features

    @property
    def out_features(self) -> int:
        return self.paths[0].out_features

    def path(self, name: str) -> WeightPath:
        for p in self.paths:
            if p.name == name:
                return p
        raise KeyError(f"layer {self.name!r} has no weight path {name!r}")


@dataclass(frozen=True)
class Module:
    """One VPRTempo module: input quantizer, feature layer, output layer."""

    input_scale: float
    input_zero_point: int
    layers: tuple[Layer, ...]

    @property
    def in_features(self) -> int:
        return self.layers[0].in_features

    @property
    def places(self) -> int:
        return self.layers[-1].out_features

    def layer(self, name: str) -> Layer:
        for lay in self.layers:
            if lay.name == name:
                return lay
        raise KeyError(f"module has no layer {name!r}")


@dataclass(frozen=True)
class QuantizedNetwork:
    """A whole quantized VPRTempo network (all modules)."""

    layout: Layout
    modules: tuple[Module, ...]
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str = "<memory>"

    @property
    def in_features(self) -> int:
        return self.modules[0].in_features

    @property
    def places(self) -> int:
        return sum(m.places for m in self.modules)

    def weight_bytes(self, module_index: int, weight_bits: int = 8) -> int:
        """Bytes one module's weights occupy at ``weight_bits`` per weight."""
        n = sum(p.weight.size for lay in self.modules[module_index].layers for p in lay.paths)
        return (n * weight_bits + 7) // 8

    def validate(self) -> None:
        """Check shapes, dtypes and quantization parameters; raise ModelError naming the part."""
        src = self.source
        if self.layout not in PATHS_BY_LAYOUT:
            raise ModelError(f"{src}: layout must be 'combined' or 'split', not {self.layout!r}")
        if not self.modules:
            raise ModelError(f"{src}: the model has no modules")
        k0 = self.modules[0].in_features
        for mi, mod in enumerate(self.modules):
            where = f"{src}: module {mi}"
            check_scales(mod.input_scale, f"{where} input scale", f"m{mi}.input.scale")
            _check_zero_point(mod.input_zero_point, f"{where} input zero point", 0, 255)
            names = tuple(lay.name for lay in mod.layers)
            if names != LAYER_NAMES:
                raise ModelError(f"{where}: layers must be {LAYER_NAMES}, found {names}")
            if mod.in_features != k0:
                raise ModelError(
                    f"{where}: takes {mod.in_features} inputs but module 0 takes {k0}; "
                    "every module must see the same input"
                )
            prev_out = None
            for lay in mod.layers:
                lwhere = f"{where} layer {lay.name!r}"
                want = PATHS_BY_LAYOUT[self.layout]
                got = tuple(p.name for p in lay.paths)
                if got != want:
                    raise ModelError(f"{lwhere}: weight paths must be {want}, found {got}")
                shape = lay.paths[0].weight.shape
                for p in lay.paths:
                    pw = f"{lwhere} {p.name} weight"
                    key = f"m{mi}.{lay.name}.{p.name}"
                    if p.weight.dtype != np.int8:
                        raise ModelError(f"{pw}: dtype must be int8, not {p.weight.dtype}")
                    _check_weight_shape(p.weight.shape, shape, lay.paths[0].name, pw)
                    if p.scale.shape != (shape[0],) or p.zero_point.shape != (shape[0],):
                        transposed = p.scale.shape == (shape[1],) != (shape[0],)
                        raise ModelError(
                            f"{pw}: needs {shape[0]} per-channel scales and zero points, "
                            f"found {p.scale.shape} and {p.zero_point.shape}"
                            + (f"; the weight {shape} looks transposed (ONNX MatMul stores "
                               "(in, out)): store it as (out, in)" if transposed else "")
                        )
                    if self.layout == "combined":
                        check_scales(p.scale, f"{pw} scales", f"{key}.scale")
                        _check_zero_point(p.zero_point, f"{pw} zero points", -128, 127)
                    if p.bias is not None and p.bias.shape != (shape[0],):
                        raise ModelError(f"{pw}: bias shape {p.bias.shape}, expected ({shape[0]},)")
                    if p.bias is not None and not np.all(np.isfinite(p.bias)):
                        raise ModelError(f"{pw}: bias has NaN or infinite values")
                if prev_out is not None and lay.in_features != prev_out:
                    raise ModelError(
                        f"{lwhere}: takes {lay.in_features} inputs but the previous layer "
                        f"gives {prev_out}"
                    )
                prev_out = lay.out_features
                lkey = f"m{mi}.{lay.name}"
                if self.layout == "combined":
                    check_scales(lay.output_scale, f"{lwhere} output scale", f"{lkey}.output.scale")
                    _check_zero_point(lay.output_zero_point, f"{lwhere} output zero point", 0, 255)
                else:
                    if lay.factors is None or lay.factors.shape != (4,):
                        raise ModelError(f"{lwhere}: split layout needs 4 scale factors")
                    check_scales(lay.factors, f"{lwhere} scale factors", f"{lkey}.factors")
                    _check_factor_products(lay.factors, f"{lwhere} scale factors",
                                           f"{lkey}.factors")
            if self.layout == "combined":
                sx = mod.input_scale
                for lay in mod.layers:
                    check_multipliers(sx, lay.paths[0].scale, lay.output_scale,
                                      f"{src}: m{mi}.{lay.name}.{lay.paths[0].name}")
                    sx = lay.output_scale
        self._freeze()

    def _freeze(self) -> None:
        """Make the weight memory images read-only: the network is immutable, and the engine
        caches per-matrix facts (abs bounds, float copies) by identity."""
        for mod in self.modules:
            for lay in mod.layers:
                for p in lay.paths:
                    for arr in (p.weight, p.scale, p.zero_point):
                        arr.flags.writeable = False


F32_MIN_NORMAL = float(np.finfo(np.float32).tiny)  # 2**-126
F32_MAX = float(np.finfo(np.float32).max)
MIN_REQUANT_MULTIPLIER = F32_MIN_NORMAL
"""The smallest normal float32 (torch's fbgemm forms the multiplier in float32; torch gives an
all-zero channel the scale eps = 2**-23, so multipliers near 1e-10 occur in real models)."""
MAX_REQUANT_MULTIPLIER = 2.0**31
"""A 31-bit M0 with shift 0 reaches it (the corner-case layers use 2**30); above it a product
f32(acc) * m (or acc * M0) of a 32-bit accumulator can leave int64."""


def check_scales(value: float | np.ndarray, where: str, key: str = "") -> None:
    """Each scale must be a finite, normal float32 number > 0, as must its reciprocal.

    ``where`` says where (``file: module 0 layer 'feature' combined weight scales``), ``key``
    names the value (``m0.feature.combined.scale``); an array element is named with its index,
    e.g. ``m0.feature.combined.scale[17]``.
    """
    arr = np.asarray(value, dtype=np.float64)
    flat = arr.ravel()
    with np.errstate(all="ignore"):
        ok = np.isfinite(flat) & (flat >= F32_MIN_NORMAL) & (flat <= F32_MAX)
        inv = np.float32(1.0) / flat.astype(np.float32)
        ok &= np.isfinite(inv) & (inv >= F32_MIN_NORMAL)
    if ok.all():
        return
    j = int(np.flatnonzero(~ok)[0])
    name = f"{where}: {key}" if key else where
    name = f"{name}[{j}]" if arr.ndim else name
    v = float(flat[j])
    raise ModelError(
        f"{name} = {v!r}: {'' if np.isfinite(v) else 'NaN or infinite value; '}"
        "scales must be finite and > 0, normal float32 numbers with normal float32 "
        "reciprocals (1.2e-38 .. 8.5e37)"
    )


def check_multipliers(sx: float, sw: np.ndarray, sy: float, key: str) -> None:
    """Requantizer multipliers sx * sw_j / sy (float32 as fbgemm forms them, and float64) must
    lie in [MIN_REQUANT_MULTIPLIER, MAX_REQUANT_MULTIPLIER] so that every requantizer scheme
    represents them (a normal float32 that keeps f32(acc) * m, or acc * M0 >> shift, inside the
    int64 range for 32-bit accumulators)."""
    f32 = np.float32
    sw64 = np.asarray(sw, dtype=np.float64)
    with np.errstate(all="ignore"):
        m32 = (f32(sx) * sw64.astype(f32)) / f32(sy)
        m64 = np.float64(sx) * sw64 / np.float64(sy)
    ok = np.ones(sw64.shape, dtype=bool)
    for m in (m32.astype(np.float64), m64):
        ok &= np.isfinite(m) & (m >= MIN_REQUANT_MULTIPLIER) & (m <= MAX_REQUANT_MULTIPLIER)
    if ok.all():
        return
    j = int(np.flatnonzero(~ok)[0])
    raise ModelError(
        f"{key}.scale[{j}]: the requantizer multiplier input scale {sx!r} x weight scale "
        f"{float(sw64[j])!r} / output scale {sy!r} = {float(m64[j]):.6g} lies outside "
        f"[2^-126, 2^31]; no requantizer represents it (check the model's scales)"
    )


def _check_factor_products(factors: np.ndarray, where: str, key: str) -> None:
    """The seed divides by products of two scale factors, formed in the factors' float type."""
    f = np.asarray(factors)
    t = f.dtype.type if f.dtype.kind == "f" else np.float64
    with np.errstate(all="ignore"):
        for i in range(f.size):
            for k in range(i, f.size):
                prod = float(t(f[i]) * t(f[k]))
                if not (np.isfinite(prod) and F32_MIN_NORMAL <= prod <= F32_MAX):
                    raise ModelError(
                        f"{where}: {key}[{i}] x {key}[{k}] = {prod!r}: the seed divides by "
                        "products of scale factors; this one is not a normal float32 number"
                    )


def _check_weight_shape(
    got: tuple[int, ...], first: tuple[int, ...], first_name: str, what: str
) -> None:
    """A weight memory image is a non-empty (out, in) matrix; both paths share one shape."""
    if len(got) != 2:
        raise ModelError(f"{what}: shape {got}; expected a 2-D (out_features, in_features) matrix")
    if 0 in got:
        raise ModelError(
            f"{what}: shape {got} has an empty dimension; expected (out_features, in_features) "
            "with at least one output neuron and one input"
        )
    if got != first:
        raise ModelError(
            f"{what}: shape {got} differs from the {first_name} weight's {first}; both paths "
            "of a layer have the same (out_features, in_features) shape"
        )


def _check_zero_point(value: int | np.ndarray, what: str, lo: int, hi: int) -> None:
    arr = np.asarray(value)
    if np.any(arr < lo) or np.any(arr > hi):
        raise ModelError(f"{what}: must lie in [{lo}, {hi}], found {arr.min()}..{arr.max()}")


def make_combined_network(
    modules: list[dict[str, Any]], metadata: dict[str, Any] | None = None, source: str = "<memory>"
) -> QuantizedNetwork:
    """Build a combined-layout network from plain arrays.

    Each module dict has ``input_scale``, ``input_zero_point`` and, for ``feature`` and
    ``output``, a dict with ``weight`` (int8 (out, in)), ``scale`` (float (out,) or scalar),
    optional ``zero_point`` and ``bias``, ``output_scale``, ``output_zero_point``.
    """
    mods = []
    for m in modules:
        layers = []
        for name in LAYER_NAMES:
            d = m[name]
            w = np.array(d["weight"])  # a copy: the network freezes its arrays
            n = w.shape[0] if w.ndim == 2 else 0
            scale = np.broadcast_to(np.asarray(d["scale"], dtype=np.float64), (n,)).copy()
            zp = np.broadcast_to(np.asarray(d.get("zero_point", 0), dtype=np.int64), (n,)).copy()
            bias = d.get("bias")
            path = WeightPath(
                "combined",
                w,
                scale,
                zp,
                None if bias is None else np.asarray(bias, dtype=np.float32),
            )
            layers.append(
                Layer(
                    name,
                    (path,),
                    output_scale=float(d["output_scale"]),
                    output_zero_point=int(d["output_zero_point"]),
                )
            )
        mods.append(Module(float(m["input_scale"]), int(m["input_zero_point"]), tuple(layers)))
    net = QuantizedNetwork("combined", tuple(mods), dict(metadata or {}), source)
    net.validate()
    return net
