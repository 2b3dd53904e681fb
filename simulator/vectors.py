"""``hwsim vectors``: bit-exact test vectors for RTL test benches (docs/vectors.md).

For each selected layer of a module the simulator's own values are written as memory images:

======  ============  =========================  ===========================================
file    depth         word                       content
======  ============  =========================  ===========================================
x       Q*K           ``spikes.bits``, per        input codes, row-major [query][input]
                      ``spikes.signed``
w       N*K           ``weights.bits`` signed     weights, row-major [neuron][input]
wzp     N             ``weights.bits`` signed     weight zero points [neuron]
m0      N             ``multiplier_bits`` uns.    fixed_point: requantizer multiplier M0
shift   N             8 (or more) signed          fixed_point: right shift (v = acc*M0 / 2^s)
mult    N             32 unsigned                 fbgemm/qnnpack: float32 multiplier bits
acc     Q*N           ``accumulator.bits`` signed expected accumulator registers
y       Q*N           ``output_bits``, per        expected output codes, row-major
                      ``output_signed``           [query][neuron]
======  ============  =========================  ===========================================

in ``$readmemh`` (``.hex``: one word per line, two's complement hex at the register width,
ceil(bits/4) digits), Xilinx ``.coe``, Intel ``.mif`` and ``.npy`` (the values themselves in
the smallest numpy integer type of the register's width and signedness, natural shape), plus
``manifest.json`` (schema ``tempo-hwsim-vectors`` 1: provenance and, for every file, its
width, signedness, depth, layout and sha256), the reference bench ``tb_layer.v`` and, per
layer, a parameterised top ``tb_top.v``. The folder is one result set (simulator.outputs):
staged inside ``--out``, published under its lock with ``manifest.json`` last, replacing the
entries of an earlier vectors set; nothing is followed through a planted symlink.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .config import HwConfig, LayerHw, load_config, requant_clamp
from .engine import InputError, SimResult, simulate
from .loaders import ModelLimits, load_model
from .network import QuantizedNetwork
from .outputs import ResultSet, owned_by_patterns
from .outputs import check_out_dir as outputs_check_out_dir
from .runner import load_input, sha256_file
from .units.requantizer import fixed_point_multipliers, float_multiplier, requantize

VECTORS_SCHEMA: dict[str, Any] = {"name": "tempo-hwsim-vectors", "version": 1}
MANIFEST = "manifest.json"
TB_FILE = "tb_layer.v"
TB_TOP = "tb_top.v"
FORMATS: tuple[str, ...] = ("readmemh", "coe", "mif", "npy")
EXTENSIONS: dict[str, str] = {"readmemh": ".hex", "coe": ".coe", "mif": ".mif", "npy": ".npy"}
ROUNDING_CODES: dict[str, int] = {
    "floor": 0, "ceil": 1, "toward_zero": 2, "half_up": 3, "half_down": 4, "half_even": 5,
    "half_away": 6,
}
POLICY_CODES: dict[str, int] = {"wrap": 0, "saturate": 1, "error": 2}
MIN_SHIFT_BITS = 8
EXIT_RTL_FAILED = 1
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_TB_SUMMARY = re.compile(r"tb_layer: (\d+) passed, (\d+) failed")


class VectorsError(InputError):
    """A vectors job that cannot be done as asked (message names the file and the fix)."""


# --- word encoding ------------------------------------------------------------------------


def register_range(bits: int, signed: bool) -> tuple[int, int]:
    """[min, max] of a ``bits``-bit signed (two's complement) or unsigned register."""
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def hex_digits(bits: int) -> int:
    """Hex digits of one word of ``bits`` bits: ceil(bits / 4)."""
    return (bits + 3) // 4


def to_words(values: np.ndarray, bits: int, signed: bool, what: str = "values") -> np.ndarray:
    """Integer ``values`` as uint64 words of a ``bits``-bit register (1..64).

    Signed values become two's complement at ``bits`` bits (-1 at 8 bits -> 0xff); raises
    VectorsError if a value does not fit the register.
    """
    if not 1 <= bits <= 64 or (signed and bits < 2):
        raise VectorsError(f"{what}: register width {bits} bits is not supported (1..64)")
    v = np.asarray(values)
    if v.dtype.kind not in "iu":
        raise VectorsError(f"{what}: expected integers, got dtype {v.dtype}")
    lo, hi = register_range(bits, signed)
    if v.size:
        vmin, vmax = int(v.min()), int(v.max())
        if vmin < lo or vmax > hi:
            kind = "signed" if signed else "unsigned"
            raise VectorsError(
                f"{what}: values span {vmin}..{vmax} but the {bits}-bit {kind} register holds "
                f"{lo}..{hi}; widen the register in the config"
            )
    u = v.ravel().astype(np.uint64)  # two's complement modulo 2**64 for negative int64
    mask = np.uint64((1 << bits) - 1) if bits < 64 else np.uint64(0xFFFFFFFFFFFFFFFF)
    return u & mask


def _hex_matrix(words: np.ndarray, bits: int) -> np.ndarray:
    """uint8 (n, ceil(bits/4)) ASCII lower-case hex digits of uint64 ``words``, MSB first."""
    d = hex_digits(bits)
    shifts = np.arange(d - 1, -1, -1, dtype=np.uint64) * np.uint64(4)
    nibbles = (words[:, None] >> shifts[None, :]) & np.uint64(0xF)
    return _HEX[nibbles.astype(np.intp)]


def hex_words(values: np.ndarray, bits: int, signed: bool) -> list[str]:
    """The words as hex strings (as they appear in the .hex, .coe and .mif files)."""
    mat = _hex_matrix(to_words(values, bits, signed), bits)
    return [bytes(row).decode() for row in mat]


def readmemh_bytes(values: np.ndarray, bits: int, signed: bool, what: str = "values") -> bytes:
    """$readmemh image: one word per line, ceil(bits/4) hex digits, no comments or addresses."""
    mat = _hex_matrix(to_words(values, bits, signed, what), bits)
    nl = np.full((mat.shape[0], 1), ord("\n"), dtype=np.uint8)
    return np.ascontiguousarray(np.concatenate([mat, nl], axis=1)).tobytes()


def coe_bytes(
    values: np.ndarray, bits: int, signed: bool, comment: str = "", what: str = "values"
) -> bytes:
    """Xilinx .coe (radix 16): comment lines ';', one word per line, ',' between, ';' last."""
    mat = _hex_matrix(to_words(values, bits, signed, what), bits)
    if mat.shape[0] == 0:
        raise VectorsError(f"{what}: a .coe file cannot be empty")
    sep = np.empty((mat.shape[0], 2), dtype=np.uint8)
    sep[:, 0] = ord(",")
    sep[:, 1] = ord("\n")
    sep[-1, 0] = ord(";")
    body = np.ascontiguousarray(np.concatenate([mat, sep], axis=1)).tobytes()
    head = "".join(f"; {line}\n" for line in comment.splitlines() if line)
    head += "memory_initialization_radix=16;\nmemory_initialization_vector=\n"
    return head.encode() + body


def mif_bytes(
    values: np.ndarray, bits: int, signed: bool, comment: str = "", what: str = "values"
) -> bytes:
    """Intel .mif: WIDTH, DEPTH, unsigned decimal addresses, hex data, one word per line."""
    mat = _hex_matrix(to_words(values, bits, signed, what), bits)
    d = mat.shape[1]
    strs = np.ascontiguousarray(mat).view(f"S{d}").ravel()
    head = "".join(f"-- {line}\n" for line in comment.splitlines() if line)
    head += (
        f"WIDTH={bits};\nDEPTH={mat.shape[0]};\n\nADDRESS_RADIX=UNS;\nDATA_RADIX=HEX;\n\n"
        "CONTENT BEGIN\n"
    )
    body = b"".join(b"\t%d : %s;\n" % (i, s) for i, s in enumerate(strs))
    return head.encode() + body + b"END;\n"


def npy_dtype(bits: int, signed: bool) -> np.dtype:
    """Smallest numpy integer dtype holding a ``bits``-bit signed/unsigned register."""
    for width in (8, 16, 32, 64):
        if bits <= width:
            return np.dtype(f"{'i' if signed else 'u'}{width // 8}")
    raise VectorsError(f"{bits}-bit words do not fit a numpy integer type")


def npy_bytes(values: np.ndarray, bits: int, signed: bool, what: str = "values") -> bytes:
    """.npy of the values (natural shape) in :func:`npy_dtype`; range-checked like the text."""
    to_words(values, bits, signed, what)
    buf = io.BytesIO()
    np.save(buf, np.asarray(values).astype(npy_dtype(bits, signed)), allow_pickle=False)
    return buf.getvalue()


# --- what to write ------------------------------------------------------------------------


@dataclass(frozen=True)
class Vector:
    """One memory image: ``values`` (int64, natural shape) of a ``bits``-bit register."""

    name: str
    description: str
    values: np.ndarray
    bits: int
    signed: bool
    layout: str
    encoding: str = ""  # "" = twos_complement (signed) or unsigned_binary

    @property
    def word_encoding(self) -> str:
        return self.encoding or ("twos_complement" if self.signed else "unsigned_binary")


@dataclass
class LayerVectors:
    """The vectors, parameters and bench settings of one layer of one module."""

    module: int
    layer: str
    queries: tuple[int, int]
    neurons: tuple[int, int]
    k: int
    vectors: list[Vector]
    info: dict[str, Any]
    tb_params: dict[str, int | str]
    tb_reason: str = ""
    checks_codes: bool = True
    codes_note: str = ""
    comparisons: int = 0
    files: list[str] = field(default_factory=list)

    @property
    def dir(self) -> str:
        return f"m{self.module}_{self.layer}"

    @property
    def q(self) -> int:
        return self.queries[1] - self.queries[0]

    @property
    def n(self) -> int:
        return self.neurons[1] - self.neurons[0]


def parse_range(text: str, size: int, what: str) -> tuple[int, int]:
    """``START:STOP`` (stop exclusive, either side optional) or ``INDEX`` -> (start, stop)."""
    t = text.strip()
    try:
        if ":" in t:
            a, _, b = t.partition(":")
            start = int(a) if a.strip() else 0
            stop = int(b) if b.strip() else size
        else:
            start = int(t)
            stop = start + 1
    except ValueError:
        raise VectorsError(f"{what} {text!r}: expected START:STOP or INDEX, e.g. 0:8") from None
    if start < 0 or stop <= start:
        raise VectorsError(f"{what} {text!r}: need 0 <= START < STOP, e.g. 0:8")
    return start, stop


def _shift_bits(shift: np.ndarray) -> int:
    bits = MIN_SHIFT_BITS
    while not register_range(bits, True)[0] <= int(shift.min()) <= int(shift.max()) <= (
        register_range(bits, True)[1]
    ):
        bits *= 2
    return bits


def layer_vectors(
    net: QuantizedNetwork,
    cfg: HwConfig,
    res: SimResult,
    module: int,
    layer: str,
    neurons: tuple[int, int],
    query_offset: int = 0,
) -> LayerVectors:
    """Collect the vectors of one layer from a simulation result (neurons clipped to N)."""
    mod = net.modules[module]
    lay = mod.layer(layer)
    path = lay.paths[0]
    hw: LayerHw = cfg.for_layer(layer)
    lr = res.layer(module, layer)
    if layer == "feature":
        x = res.input_codes[module]
        zx, sx = mod.input_zero_point, mod.input_scale
    else:
        x = res.layer(module, "feature").codes
        feat = mod.layer("feature")
        zx, sx = feat.output_zero_point, feat.output_scale
    n_all = lay.out_features
    n0, n1 = neurons[0], min(neurons[1], n_all)
    where = f"module {module} layer {layer!r}"
    if n0 >= n1:
        raise VectorsError(
            f"--neurons {neurons[0]}:{neurons[1]}: {where} has {n_all} neurons "
            f"(0..{n_all - 1}); choose a range inside it"
        )
    q = x.shape[0]
    qs = (query_offset, query_offset + q)
    sel = slice(n0, n1)
    w = path.weight[sel].astype(np.int64)
    zw = path.zero_point[sel].astype(np.int64)
    sw = path.scale[sel]
    acc = lr.acc["combined"][:, sel]
    codes = lr.codes[:, sel]
    rq = hw.requant
    zy, sy = lay.output_zero_point, lay.output_scale
    clamp = requant_clamp(rq)
    # self-check: the exported parameters reproduce the engine's codes
    check, _, _ = requantize(acc, rq.scheme, sx, sw, sy, zy, rq.rounding, clamp,
                             rq.multiplier_bits, rq.shift)
    if not np.array_equal(check, codes):
        raise RuntimeError(f"internal error: {where}: requantizer parameters do not reproduce "
                           "the simulated codes; please report this")
    wb, ws = cfg.weights.bits, cfg.weights.signed
    vecs = [
        Vector("x", "input codes", x, hw.spikes.bits, hw.spikes.signed,
               "row-major [query][input]"),
        Vector("w", "weights", w, wb, ws, "row-major [neuron][input]"),
        Vector("wzp", "weight zero points", zw, wb, True, "[neuron]"),
    ]
    checks_codes, codes_note = True, ""
    rq_info: dict[str, Any] = {
        "scheme": rq.scheme, "rounding": rq.rounding, "clamp": list(clamp),
        "output_bits": rq.output_bits, "output_signed": rq.output_signed,
    }
    shift_bits = MIN_SHIFT_BITS
    if rq.scheme == "fixed_point":
        m0, shift = fixed_point_multipliers(sx, sw, sy, rq.multiplier_bits, rq.shift)
        shift_bits = _shift_bits(shift)
        vecs += [
            Vector("m0", "requantizer multiplier M0 (real = M0 * 2^-shift)", m0,
                   rq.multiplier_bits, False, "[neuron]"),
            Vector("shift", "requantizer right shift (negative = left shift)", shift,
                   shift_bits, True, "[neuron]"),
        ]
        rq_info["multiplier_bits"] = rq.multiplier_bits
        rq_info["shift_bits"] = shift_bits
        if int(shift.min()) < -32 or int(shift.max()) > 126:
            checks_codes = False
            codes_note = "shift outside -32..126: the bench checks accumulators only"
    elif rq.scheme in ("fbgemm", "qnnpack"):
        mult = float_multiplier(rq.scheme, sx, sw, sy).astype(np.float32)
        vecs.append(Vector("mult", "float32 requantizer multiplier (IEEE-754 binary32 bits)",
                           mult.view(np.uint32).astype(np.int64), 32, False, "[neuron]",
                           "ieee754_binary32"))
        checks_codes = False
        codes_note = f"requant.scheme {rq.scheme!r} is float32: the bench checks accumulators only"
    vecs += [
        Vector("acc", "expected accumulator registers", acc, hw.accumulator.bits, True,
               "row-major [query][neuron]"),
        Vector("y", "expected output codes", codes, rq.output_bits, rq.output_signed,
               "row-major [query][neuron]"),
    ]
    stats = lr.mac["combined"]
    ev = stats.pair_events
    in_sel = (ev[:, 1] >= n0) & (ev[:, 1] < n1)
    acc_events = int(ev[in_sel, 2].sum() + ev[in_sel, 3].sum())
    pre_events = int(ev[in_sel, 4].sum())
    mac, accu = hw.mac, hw.accumulator
    limits = []
    if hw.spikes.bits > 32 or wb > 32:
        limits.append("spike or weight registers wider than 32 bits")
    tb_reason = "; ".join(limits)
    info = {
        "input_scale": float(sx), "input_zero_point": int(zx),
        "output_scale": float(sy), "output_zero_point": int(zy),
        "hardware": {
            "accumulator": {"bits": accu.bits, "overflow": accu.overflow,
                            "adder_tree_width": accu.adder_tree_width},
            "mac": {"operand": mac.operand, "pre_add_width": mac.pre_add_width,
                    "pre_add_bits": mac.pre_add_bits, "pre_add_overflow": mac.pre_add_overflow},
            "schedule": {"mode": hw.schedule.mode},
            "spikes": {"bits": hw.spikes.bits, "signed": hw.spikes.signed},
            "weights": {"bits": wb, "signed": ws},
            "requant": rq_info,
        },
        "overflow_events": {"accumulator": acc_events, "pre_add": pre_events},
    }
    params: dict[str, int | str] = {
        "Q": q, "N": n1 - n0, "K": x.shape[1],
        "X_BITS": hw.spikes.bits, "X_SIGNED": int(hw.spikes.signed), "W_BITS": wb,
        "ACC_BITS": accu.bits, "OVERFLOW": POLICY_CODES[accu.overflow],
        "TREE": accu.adder_tree_width, "PRE": mac.pre_add_width, "PRE_BITS": mac.pre_add_bits,
        "PRE_OVERFLOW": POLICY_CODES[mac.pre_add_overflow],
        "RAW": int(mac.operand == "raw"),
        "EVENT_DRIVEN": int(hw.schedule.mode == "event_driven"),
        "CHECK_CODES": int(checks_codes),
        "M0_BITS": rq.multiplier_bits, "SHIFT_BITS": shift_bits,
        "ROUNDING": ROUNDING_CODES[rq.rounding],
        "Y_BITS": rq.output_bits, "Y_SIGNED": int(rq.output_signed),
        "ZX": int(zx), "ZY": int(zy), "CLAMP_LO": clamp[0], "CLAMP_HI": clamp[1],
        "EXP_ACC_EVENTS": acc_events, "EXP_PRE_EVENTS": pre_events,
    }
    comparisons = q * (n1 - n0) * (2 if checks_codes else 1) + 2
    params["COMPARISONS"] = comparisons
    return LayerVectors(module, layer, qs, (n0, n1), x.shape[1], vecs, info, params, tb_reason,
                        checks_codes, codes_note, comparisons)


# --- writing ------------------------------------------------------------------------------


def _vlog_value(name: str, value: int | str) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "/").replace('"', "") + '"'
    if name in ("ZX", "ZY", "CLAMP_LO", "CLAMP_HI", "EXP_ACC_EVENTS", "EXP_PRE_EVENTS",
                "COMPARISONS"):
        return f"64'sd{value}" if value >= 0 else f"-64'sd{-value}"
    return str(int(value))


def tb_command(layer_dir: str) -> str:
    """Shell command (run in the vectors folder) that compiles and runs one layer's bench."""
    return (f"iverilog -g2005 -o {layer_dir}.vvp {TB_FILE} {layer_dir}/{TB_TOP} && "
            f"vvp -n {layer_dir}.vvp")


def tb_top_text(lv: LayerVectors, files: dict[str, str]) -> str:
    """A Verilog top instantiating tb_layer with this layer's parameters and file paths."""
    params = dict(lv.tb_params)
    for key, stem in (("X_FILE", "x"), ("W_FILE", "w"), ("WZP_FILE", "wzp"),
                      ("M0_FILE", "m0"), ("SHIFT_FILE", "shift"), ("ACC_FILE", "acc"),
                      ("Y_FILE", "y")):
        if stem in files:
            params[key] = files[stem]
    body = ",\n".join(f"        .{k}({_vlog_value(k, v)})" for k, v in params.items())
    return (
        f"// generated by hwsim vectors (tempo-hwsim {__version__}): module {lv.module} layer "
        f"{lv.layer}\n"
        f"// queries {lv.queries[0]}:{lv.queries[1]}, neurons {lv.neurons[0]}:{lv.neurons[1]}; "
        "file paths are relative to the vectors folder; run there:\n"
        f"//   {tb_command(lv.dir)}\n"
        "`timescale 1ns / 1ps\n\n"
        "module tb_top;\n"
        "    tb_layer #(\n"
        f"{body}\n"
        "    ) dut ();\n"
        "endmodule\n"
    )


def _encode(vec: Vector, fmt: str, what: str, comment: str) -> bytes:
    if fmt == "readmemh":
        return readmemh_bytes(vec.values, vec.bits, vec.signed, what)
    if fmt == "coe":
        return coe_bytes(vec.values, vec.bits, vec.signed, comment, what)
    if fmt == "mif":
        return mif_bytes(vec.values, vec.bits, vec.signed, comment, what)
    return npy_bytes(vec.values, vec.bits, vec.signed, what)


def testbench_source() -> bytes:
    """The reference bench simulator/rtl/tb_layer.v (package data)."""
    try:
        return resources.files("simulator").joinpath("rtl", TB_FILE).read_bytes()
    except (FileNotFoundError, OSError):
        raise VectorsError(
            f"simulator/rtl/{TB_FILE}: missing from the installed package; reinstall "
            "tempo-hwsim (pip install -e .)"
        ) from None


def _write(root: ResultSet, rel: str, data: bytes) -> str:
    """Stage ``rel`` in the vectors set; return its sha256 (OSErrors name the final path)."""
    root.write_bytes(rel, data)
    return hashlib.sha256(data).hexdigest()


def write_layer(root: ResultSet, lv: LayerVectors, formats: list[str]) -> list[dict[str, Any]]:
    """Write one layer's files under root/<dir>; return their manifest entries."""
    entries: list[dict[str, Any]] = []
    hexes: dict[str, str] = {}
    for vec in lv.vectors:
        what = f"module {lv.module} layer {lv.layer!r} {vec.name} ({vec.description})"
        kind = "signed" if vec.signed else "unsigned"
        order = vec.layout
        comment = (f"tempo-hwsim vectors: {lv.dir}/{vec.name}: {vec.description}\n"
                   f"{vec.bits}-bit {kind} ({vec.word_encoding}), depth {vec.values.size}, {order}")
        for fmt in formats:
            rel = f"{lv.dir}/{vec.name}{EXTENSIONS[fmt]}"
            data = _encode(vec, fmt, what, comment)
            entry: dict[str, Any] = {
                "path": rel, "format": fmt, "module": lv.module, "layer": lv.layer,
                "vector": vec.name, "description": vec.description,
                "width_bits": vec.bits, "signed": vec.signed, "encoding": vec.word_encoding,
                "depth": int(vec.values.size), "shape": list(vec.values.shape),
                "layout": order,
            }
            if fmt == "npy":
                entry["dtype"] = str(npy_dtype(vec.bits, vec.signed))
            else:
                entry["hex_digits"] = hex_digits(vec.bits)
            entry["sha256"] = _write(root, rel, data)
            entries.append(entry)
            if fmt == "readmemh":
                hexes[vec.name] = rel
    if "readmemh" not in formats:
        lv.tb_reason = "; ".join(r for r in (lv.tb_reason, "no readmemh files (--format)") if r)
    if not lv.tb_reason:
        rel = f"{lv.dir}/{TB_TOP}"
        data = tb_top_text(lv, hexes).encode()
        entries.append({"path": rel, "format": "verilog", "module": lv.module,
                        "layer": lv.layer, "description": "test bench top for tb_layer.v",
                        "sha256": _write(root, rel, data)})
    lv.files = [e["path"] for e in entries]
    return entries


def _is_vectors_folder(path: Path) -> bool:
    try:
        man = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(man, dict) and man.get("schema", {}).get("name") == VECTORS_SCHEMA["name"]


def check_out_dir(out: Path) -> None:
    """Refuse an --out that is a file or a non-empty folder not written by hwsim vectors."""
    if not str(out).strip():
        raise VectorsError("--out '': an empty path; give a vectors folder, e.g. vectors/run1")
    if (out.exists() or out.is_symlink()) and not out.is_dir():
        raise VectorsError(f"{out}: exists and is not a folder; choose another --out")
    if out.is_dir():
        try:
            entries = [p for p in out.iterdir() if not p.name.startswith(".hwsim")]
        except OSError as exc:
            raise VectorsError(f"{out}: cannot list it ({exc.strerror or exc}); choose "
                               "another --out") from None
        if entries and not _is_vectors_folder(out):
            raise VectorsError(
                f"{out}: folder is not empty and holds no hwsim vectors {MANIFEST}; refusing "
                "to replace it - choose a new or empty --out"
            )
    outputs_check_out_dir(out)


#: entries of an earlier vectors set that a new one replaces (besides those its manifest lists)
VECTORS_OWNED = owned_by_patterns([r"m\d+_(feature|output)", re.escape(TB_FILE)])


@dataclass
class VectorsJob:
    """What ``hwsim vectors`` wrote: the manifest and each layer's vectors."""

    out_dir: Path
    manifest: dict[str, Any]
    layers: list[LayerVectors]


def generate(
    config: str | Path,
    model: str | Path,
    input_path: str | Path,
    out_dir: str | Path,
    modules: str = "0",
    layer: str = "all",
    queries: str = ":",
    neurons: str = ":",
    formats: list[str] | tuple[str, ...] = FORMATS,
    overrides: list[str] | tuple[str, ...] = (),
) -> VectorsJob:
    """Simulate and write the vectors folder ``out_dir`` atomically; return the manifest."""
    if not str(out_dir).strip():
        raise VectorsError("--out '': an empty path; give a vectors folder, e.g. vectors/run1")
    out = Path(out_dir)
    check_out_dir(out)
    fmts = list(dict.fromkeys(formats))
    bad = [f for f in fmts if f not in FORMATS]
    if bad or not fmts:
        raise VectorsError(
            f"--format {' '.join(bad) or '(none)'}: choose from {', '.join(FORMATS)}"
        )
    if layer not in ("feature", "output", "all"):
        raise VectorsError(f"--layer {layer!r}: choose feature, output or all")
    cfg = load_config(config, list(overrides))
    if cfg.neuromorphic.datapath != "off" or any(
            cfg.for_layer(n).schedule.order != "index" for n in ("feature", "output")):
        raise VectorsError(
            f"{config}: vectors describe the MAC-array datapath in index order; "
            "neuromorphic.datapath must be 'off' and schedule.order 'index' (the neuromorphic "
            "presets are proven against Lava instead: docs/neuromorphic.md)"
        )
    net = load_model(model, ModelLimits.for_config(cfg))
    if net.layout != "combined":
        raise VectorsError(
            f"{model}: the {net.layout!r} (seed) layout has two weight paths and a float "
            "combiner; vectors are written for combined-layout models (.npz or VPRTempo .pth)"
        )
    if modules.strip() == "all":
        mods = list(range(len(net.modules)))
    else:
        try:
            mods = [int(modules)]
        except ValueError:
            raise VectorsError(f"--module {modules!r}: give a module index or 'all'") from None
        if not 0 <= mods[0] < len(net.modules):
            raise VectorsError(f"--module {modules}: {model} has {len(net.modules)} module(s) "
                               f"(0..{len(net.modules) - 1})")
    x_all = load_input(input_path)
    q0, q1 = parse_range(queries, x_all.shape[0], "--queries")
    if q1 > x_all.shape[0]:
        raise VectorsError(f"--queries {queries}: {input_path} has {x_all.shape[0]} queries "
                           f"(0..{x_all.shape[0] - 1}); choose a range inside it")
    nsel = parse_range(neurons, 1 << 62, "--neurons")

    with ResultSet(out, index=MANIFEST, owned=VECTORS_OWNED) as rs:
        res = simulate(net, cfg, x_all[q0:q1], source=str(input_path))
        names = ["feature", "output"] if layer == "all" else [layer]
        lvs = [layer_vectors(net, cfg, res, m, name, nsel, q0) for m in mods for name in names]
        files: list[dict[str, Any]] = []
        tb = testbench_source()
        tb_sha = _write(rs, TB_FILE, tb)
        files.append({"path": TB_FILE, "format": "verilog",
                      "description": "reference test bench (Verilog-2001)", "sha256": tb_sha})
        for lv in lvs:
            files += write_layer(rs, lv, fmts)
        manifest = {
            "schema": dict(VECTORS_SCHEMA),
            "tool": {"name": "tempo-hwsim", "version": __version__},
            "config": {"name": cfg.name, "source": cfg.source, "sha256": cfg.sha256,
                       "overrides": list(overrides)},
            "model": {"path": str(model), "sha256": sha256_file(model)},
            "input": {"path": str(input_path), "sha256": sha256_file(input_path),
                      "dtype": str(x_all.dtype), "queries": [q0, q1]},
            "formats": fmts,
            "testbench": {"path": TB_FILE, "sha256": tb_sha, "top": TB_TOP,
                          "simulator": "iverilog -g2005 (Icarus 11) or any Verilog-2001 tool "
                                       "with $fatal"},
            "layers": [_layer_entry(lv) for lv in lvs],
            "files": files,
        }
        rs.commit(manifest)
    return VectorsJob(out, manifest, lvs)


def _layer_entry(lv: LayerVectors) -> dict[str, Any]:
    supported = not lv.tb_reason
    return {
        "module": lv.module, "layer": lv.layer, "dir": lv.dir,
        "queries": list(lv.queries), "neurons": list(lv.neurons),
        "shape": {"queries": lv.q, "neurons": lv.n, "inputs": lv.k},
        **lv.info,
        "testbench": {
            "supported": supported,
            "reason": lv.tb_reason,
            "checks_codes": lv.checks_codes and supported,
            "codes_note": lv.codes_note,
            "top": f"{lv.dir}/{TB_TOP}" if supported else None,
            "comparisons": lv.comparisons if supported else 0,
            "parameters": lv.tb_params if supported else {},
            "command": tb_command(lv.dir) if supported else None,
        },
        "files": lv.files,
    }


# --- running the bench --------------------------------------------------------------------


@dataclass
class BenchRun:
    """Result of compiling and running tb_layer for one layer."""

    layer_dir: str
    returncode: int
    passed: int
    failed: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.failed == 0 and "tb_layer: PASS" in self.output


def run_testbench(
    out_dir: str | Path, layer_dir: str, iverilog: str = "iverilog", vvp: str = "vvp",
    timeout: float = 3600.0,
) -> BenchRun:
    """Compile ``tb_layer.v`` + ``<layer_dir>/tb_top.v`` with Icarus and run it in out_dir."""
    root = Path(out_dir)
    for tool in (iverilog, vvp):
        if shutil.which(tool) is None:
            raise VectorsError(f"{tool}: not found on PATH; install Icarus Verilog "
                               "(apt-get install iverilog) or drop --check-rtl")
    top = root / layer_dir / TB_TOP
    if not top.is_file():
        raise VectorsError(f"{top}: no test bench top for this layer (see manifest.json "
                           "layers[].testbench.reason)")
    with tempfile.TemporaryDirectory(prefix="hwsim-tb-") as td:
        exe = str(Path(td) / "tb.vvp")
        comp = subprocess.run(
            [iverilog, "-g2005", "-o", exe, TB_FILE, f"{layer_dir}/{TB_TOP}"],
            cwd=root, capture_output=True, text=True, timeout=timeout,
        )
        if comp.returncode != 0:
            return BenchRun(layer_dir, comp.returncode, 0, 0, comp.stdout + comp.stderr)
        run = subprocess.run([vvp, "-n", exe], cwd=root, capture_output=True, text=True,
                             timeout=timeout)
    text = run.stdout + run.stderr
    m = _TB_SUMMARY.search(text)
    passed, failed = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
    return BenchRun(layer_dir, run.returncode, passed, failed, text)


# --- command line -------------------------------------------------------------------------


def cmd_vectors(args: argparse.Namespace) -> int:
    """``hwsim vectors``: write the folder, optionally run the bench; 0 ok, 1 bench failed."""
    if args.check_rtl:
        for tool in ("iverilog", "vvp"):
            if shutil.which(tool) is None:
                raise VectorsError(f"{tool}: not found on PATH; install Icarus Verilog "
                                   "(apt-get install iverilog) or drop --check-rtl")
    job = generate(args.config, args.model, args.input, args.out, args.module, args.layer,
                   args.queries, args.neurons, args.formats or list(FORMATS), args.set)
    status = 0
    for lv in job.layers:
        ev = lv.info["overflow_events"]
        bench = (f"bench {lv.dir}/{TB_TOP} ({lv.comparisons} comparisons"
                 f"{'' if lv.checks_codes else ', accumulators only'})"
                 if not lv.tb_reason else f"no bench: {lv.tb_reason}")
        print(f"{lv.dir}: queries {lv.queries[0]}:{lv.queries[1]} neurons "
              f"{lv.neurons[0]}:{lv.neurons[1]} inputs {lv.k}; overflow events acc "
              f"{ev['accumulator']} pre-add {ev['pre_add']}; {len(lv.files)} files; {bench}")
        if args.check_rtl and not lv.tb_reason:
            br = run_testbench(job.out_dir, lv.dir)
            verdict = "PASS" if br.ok else "FAIL"
            print(f"{lv.dir}: RTL bench {verdict}: {br.passed} passed, {br.failed} failed")
            if not br.ok:
                print(br.output.rstrip())
                status = EXIT_RTL_FAILED
    print(f"wrote {job.out_dir}/ ({MANIFEST}, {TB_FILE}, "
          f"{', '.join(lv.dir + '/' for lv in job.layers)})")
    return status


def add_vectors_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``hwsim vectors`` on the CLI's subparsers; sets ``func=cmd_vectors``."""
    p = subparsers.add_parser(
        "vectors",
        help="write RTL test vectors ($readmemh/.coe/.mif/.npy, manifest, Verilog bench)",
        description="Run the simulator and write, per layer, input codes, weights, requantizer "
        "parameters, expected accumulators and output codes as memory images, a manifest.json "
        "and a reference Verilog test bench (docs/vectors.md).",
    )
    p.add_argument("--config", required=True, help="preset name or TOML file")
    p.add_argument("--model", required=True, help=".npz or VPRTempo .pth (combined layout)")
    p.add_argument("--input", required=True,
                   help=".npy (queries, inputs): float spikes in [0, 1] or uint8 codes")
    p.add_argument("--out", required=True, help="vectors folder (new, empty or earlier vectors)")
    p.add_argument("--module", default="0", help="module index or 'all' (default 0)")
    p.add_argument("--layer", default="all", choices=("feature", "output", "all"),
                   help="layer(s) to write (default all)")
    p.add_argument("--queries", default=":", metavar="START:STOP",
                   help="queries of --input, stop exclusive (default all), e.g. 0:8")
    p.add_argument("--neurons", default=":", metavar="START:STOP",
                   help="output neurons of each layer, clipped to its size (default all)")
    p.add_argument("--format", dest="formats", nargs="+", action="extend", choices=FORMATS,
                   default=None, help="file formats (default: readmemh coe mif npy)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set accumulator.bits=16")
    p.add_argument("--check-rtl", action="store_true",
                   help="also compile and run tb_layer.v for each layer with Icarus Verilog")
    p.set_defaults(func=cmd_vectors)
    return p
