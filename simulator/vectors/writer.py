"""Writing a vectors folder as one result set: files, tb_top.v, manifest.json."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..config import load_config, requant_clamp
from ..engine import SimResult, simulate
from ..loaders import ModelLimits, load_model
from ..outputs import ResultSet, owned_by_patterns
from ..outputs import check_out_dir as outputs_check_out_dir
from ..ranges import inclusive_notice
from ..runner import load_input, sha256_file
from .corners import (
    CORNER_POLICIES,
    CornerLayer,
    build_corner_layer,
    corner_config,
    rounding_coverage,
)
from .encoding import (
    VectorsError,
    coe_bytes,
    hex_digits,
    mif_bytes,
    npy_bytes,
    npy_dtype,
    readmemh_bytes,
)
from .layer import LayerVectors, Vector, layer_vectors, parse_range

# version 2: every range in the manifest is inclusive [first, last] (version 1: [start, stop))
VECTORS_SCHEMA: dict[str, Any] = {"name": "tempo-hwsim-vectors", "version": 2}
MANIFEST = "manifest.json"
TB_FILE = "tb_layer.v"
TB_TOP = "tb_top.v"
STREAM_TOP = "tb_stream_top.v"
RTL_DIR = "rtl"
#: the clocked datapath and its bench, copied to <out>/rtl/
RTL_FILES: tuple[str, ...] = ("hwsim_lane.v", "hwsim_requant.v", "hwsim_datapath.v", "tb_stream.v")
FORMATS: tuple[str, ...] = ("readmemh", "coe", "mif", "npy")
EXTENSIONS: dict[str, str] = {"readmemh": ".hex", "coe": ".coe", "mif": ".mif", "npy": ".npy"}
# --- writing ------------------------------------------------------------------------------


def _vlog_value(name: str, value: int | str) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "/").replace('"', "") + '"'
    if name in ("ZX", "ZY", "CLAMP_LO", "CLAMP_HI", "EXP_ACC_EVENTS", "EXP_PRE_EVENTS",
                "COMPARISONS", "T_COMPARISONS"):
        return f"64'sd{value}" if value >= 0 else f"-64'sd{-value}"
    return str(int(value))


def tb_command(layer_dir: str) -> str:
    """Shell command (run in the vectors folder) that compiles and runs one layer's bench."""
    return (f"iverilog -g2005 -o {layer_dir}.vvp {TB_FILE} {layer_dir}/{TB_TOP} && "
            f"vvp -n {layer_dir}.vvp")


STREAM_PARAMS = ("Q", "N", "K", "N0", "N_OUT", "LANES", "TREE", "X_BITS", "X_SIGNED", "W_BITS",
                 "ACC_BITS", "OVERFLOW", "EV_BITS", "M0_BITS", "SHIFT_BITS", "ROUNDING", "Y_BITS",
                 "Y_SIGNED", "EVENT_DRIVEN", "THROUGHPUT", "LATENCY", "ZX", "ZY", "CLAMP_LO",
                 "CLAMP_HI")
#: parameters of tb_stream.v / hwsim_datapath.v only (tb_layer.v does not take them)
STREAM_ONLY_PARAMS = ("N_OUT", "THROUGHPUT", "LATENCY")
#: define that connects the timing ports (in_lanes, acc_we, rq_issue, out_word_valid)
TIMING_DEFINE = "HWSIM_TIMING"


def timing_vectors(lv: LayerVectors) -> Vector | None:
    """The layer's t_accw vector (None without --timing)."""
    return next((v for v in lv.vectors if v.name == "t_accw"), None)


def timing_reason(lv: LayerVectors) -> str:
    """Why tb_stream.v cannot check this layer's cycles ("" = it can, or no --timing)."""
    if timing_vectors(lv) is None:
        return ""
    why = []
    if int(lv.tb_params["LATENCY"]) < 1:
        why.append("requant.latency 0 (the datapath registers its output words: latency >= 1)")
    steps = lv.info.get("timing", {}).get("steps_per_query", [])
    if not any(int(s) > 0 for s in steps):
        why.append("no query has any step (event_driven, every input at the zero point): "
                   "nothing to time but the drains")
    return "; ".join(why)


def cycle_comparisons(lv: LayerVectors) -> int:
    """Cycle comparisons of tb_stream.v: one per accumulator write, two per word (0: none)."""
    ta = timing_vectors(lv)
    if ta is None or timing_reason(lv):
        return 0
    return int((ta.values != -1).sum()) + 2 * lv.q * lv.n


def stream_comparisons(lv: LayerVectors) -> int:
    """All comparisons tb_stream.v makes on the shipped datapath (4 per word + cycles)."""
    return 4 * lv.q * lv.n + cycle_comparisons(lv)


def stream_reason(lv: LayerVectors) -> str:
    """Why the clocked datapath (hwsim_datapath.v) cannot run this layer ("" = it can)."""
    p = lv.tb_params
    why = []
    if not lv.checks_codes:
        why.append("no fixed_point requantizer")
    if p["PRE"] != 1 or p["RAW"] != 0:
        why.append("pre-add stage or raw operands")
    shift = next((v.values for v in lv.vectors if v.name == "shift"), None)
    pb = int(p["ACC_BITS"]) + int(p["M0_BITS"]) + 1
    if shift is not None and (int(shift.min()) < 0 or int(shift.max()) > pb - 2):
        why.append(f"shifts outside 0..{pb - 2}")
    if int(p["ACC_BITS"]) > 64 or int(p["X_BITS"]) > 32 or int(p["W_BITS"]) > 32:
        why.append("registers wider than the bench's 64-bit compare")
    return "; ".join(why)


def stream_top_text(lv: LayerVectors, files: dict[str, str]) -> str:
    """A Verilog top instantiating tb_stream (clocked bench) for this layer."""
    params: dict[str, int | str] = {k: lv.tb_params[k] for k in STREAM_PARAMS}
    params["LANES"] = int(params["LANES"])
    params["COMPARISONS"] = 4 * lv.q * lv.n
    for key, stem in (("X_FILE", "x"), ("W_FILE", "w"), ("WZP_FILE", "wzp"),
                      ("M0_FILE", "m0"), ("SHIFT_FILE", "shift"), ("ACC_FILE", "acc"),
                      ("Y_FILE", "y"), ("ACC_EV_FILE", "acc_ev"), ("PRE_EV_FILE", "pre_ev"),
                      ("FLAGS_FILE", "flags")):
        params[key] = files[stem]
    ta = timing_vectors(lv)
    if ta is not None and not timing_reason(lv) and "t_accw" in files:
        params.update({
            "TIMING": 1, "T_TILES": int(ta.values.shape[1]), "T_STEPS": int(ta.values.shape[2]),
            "T_BITS": ta.bits, "T_COMPARISONS": cycle_comparisons(lv),
            "T_ACCW_FILE": files["t_accw"], "T_ISSUE_FILE": files["t_issue"],
            "T_OUT_FILE": files["t_out"],
        })
    body = ",\n".join(f"        .{k}({_vlog_value(k, v)})" for k, v in params.items())
    return (
        f"// generated by hwsim vectors (tempo-hwsim {__version__}): module {lv.module} layer "
        f"{lv.layer}: the clocked bench tb_stream.v around hwsim_datapath (or -DHWSIM_DUT=...)\n"
        "// run in the vectors folder, e.g.\n"
        f"//   {stream_command(lv.dir)}\n"
        "`timescale 1ns / 1ps\n\n"
        "module tb_stream_top;\n"
        "    tb_stream #(\n"
        f"{body}\n"
        "    ) bench ();\n"
        "endmodule\n"
    )


def stream_command(layer_dir: str) -> str:
    """Icarus command (in the vectors folder) for the clocked bench of one layer."""
    return (f"iverilog -g2005 -D{TIMING_DEFINE} -s tb_stream_top -o {layer_dir}_stream.vvp "
            f"{RTL_DIR}/*.v {layer_dir}/{STREAM_TOP} && vvp -n {layer_dir}_stream.vvp")


def tb_top_text(lv: LayerVectors, files: dict[str, str]) -> str:
    """A Verilog top instantiating tb_layer with this layer's parameters and file paths."""
    params = {k: v for k, v in lv.tb_params.items() if k not in STREAM_ONLY_PARAMS}
    for key, stem in (("X_FILE", "x"), ("W_FILE", "w"), ("WZP_FILE", "wzp"),
                      ("M0_FILE", "m0"), ("SHIFT_FILE", "shift"), ("ACC_FILE", "acc"),
                      ("Y_FILE", "y"), ("ACC_EV_FILE", "acc_ev"), ("PRE_EV_FILE", "pre_ev"),
                      ("FLAGS_FILE", "flags")):
        if stem in files:
            params[key] = files[stem]
    body = ",\n".join(f"        .{k}({_vlog_value(k, v)})" for k, v in params.items())
    return (
        f"// generated by hwsim vectors (tempo-hwsim {__version__}): module {lv.module} layer "
        f"{lv.layer}\n"
        f"// queries {lv.queries[0]}:{lv.queries[1] - 1}, neurons {lv.neurons[0]}:"
        f"{lv.neurons[1] - 1} (inclusive); "
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


def rtl_source(name: str) -> bytes:
    """One file of simulator/rtl/ (package data)."""
    try:
        return resources.files("simulator").joinpath("rtl", name).read_bytes()
    except (FileNotFoundError, OSError):
        raise VectorsError(f"simulator/rtl/{name}: missing from the installed package; "
                           "reinstall tempo-hwsim (pip install -e .)") from None


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
    for name, data, what in lv.dumps:
        rel = f"{lv.dir}/{name}"
        entries.append({"path": rel, "format": "csv", "module": lv.module, "layer": lv.layer,
                        "description": what, "sha256": _write(root, rel, data)})
    lv.stream_reason = lv.tb_reason or stream_reason(lv)
    if not lv.stream_reason:
        rel = f"{lv.dir}/{STREAM_TOP}"
        entries.append({"path": rel, "format": "verilog", "module": lv.module,
                        "layer": lv.layer,
                        "description": "clocked bench top (tb_stream.v + hwsim_datapath.v)",
                        "sha256": _write(root, rel, stream_top_text(lv, hexes).encode())})
    if not lv.tb_reason:
        rel = f"{lv.dir}/{TB_TOP}"
        data = tb_top_text(lv, hexes).encode()
        entries.append({"path": rel, "format": "verilog", "module": lv.module,
                        "layer": lv.layer, "description": "test bench top for tb_layer.v",
                        "sha256": _write(root, rel, data)})
    lv.files = [e["path"] for e in entries]
    return entries


def _vectors_manifest(path: Path) -> dict[str, Any] | None:
    try:
        man = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(man, dict) and man.get("schema", {}).get("name") == VECTORS_SCHEMA["name"]
    return man if ok else None


def _is_vectors_folder(path: Path) -> bool:
    return _vectors_manifest(path) is not None


def foreign_entries(out: Path) -> list[str]:
    """Files and folders in an earlier vectors folder that its manifest does not list."""
    man = _vectors_manifest(out)
    if man is None:
        return []
    listed = {MANIFEST} | {str(f.get("path", "")) for f in man.get("files", [])
                           if isinstance(f, dict)}
    dirs = {p.split("/")[0] for p in listed if "/" in p}
    found = []
    for p in sorted(out.iterdir()):
        if p.name.startswith(".hwsim"):
            continue
        if p.name in dirs:  # a planted symlink there is replaced, never followed
            if p.is_dir() and not p.is_symlink():
                found += [f"{p.name}/{q.name}" for q in sorted(p.iterdir())
                          if f"{p.name}/{q.name}" not in listed]
        elif p.name not in listed:
            found.append(p.name)
    return found


def check_out_dir(out: Path, force: bool = False) -> None:
    """Refuse an --out that is a file or a non-empty folder not written by hwsim vectors, or
    an earlier vectors folder holding files it did not write (unless ``force``)."""
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
        extra = [] if force else foreign_entries(out)
        if extra:
            more = f" and {len(extra) - 3} more" if len(extra) > 3 else ""
            raise VectorsError(
                f"{out}: holds {', '.join(extra[:3])}{more}, not written by hwsim vectors; "
                "regenerating would replace the folders they are in - move them away or pass "
                "--force"
            )
    outputs_check_out_dir(out)


#: entries of an earlier vectors set that a new one replaces (besides those its manifest lists)
VECTORS_OWNED = owned_by_patterns([r"m\d+_(feature|output)", r"c_(saturate|wrap)",
                                   re.escape(TB_FILE), RTL_DIR])


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
    timing: bool = False,
    cycles: str | None = None,
    force: bool = False,
    inputs: np.ndarray | None = None,
    note: Callable[[str], None] | None = None,
) -> VectorsJob:
    """Simulate and write the vectors folder ``out_dir`` atomically; return the manifest.

    ``inputs``: the input array itself (e.g. preprocessed images); ``input_path`` then only
    names it in the manifest. ``force``: replace an earlier vectors folder even if it holds
    files hwsim vectors did not write. Ranges are inclusive (simulator/ranges.py); ``note``
    receives the one-line notice for each range given with an explicit end (``A:B``, ``:B``),
    whose end hwsim vectors used to exclude.
    """
    if not str(out_dir).strip():
        raise VectorsError("--out '': an empty path; give a vectors folder, e.g. vectors/run1")
    out = Path(out_dir)
    check_out_dir(out, force)
    fmts = _check_formats(formats)
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
    x_all = load_input(input_path) if inputs is None else inputs
    q0, q1 = parse_range(queries, x_all.shape[0], "--queries")
    if q1 > x_all.shape[0]:
        raise VectorsError(f"--queries {queries}: {input_path} has {x_all.shape[0]} queries "
                           f"(0..{x_all.shape[0] - 1}); choose a range inside it")
    nsel = parse_range(neurons, 1 << 62, "--neurons")
    csel = None if cycles is None else parse_range(cycles, 1 << 62, "--cycles")
    for option, text, noun in (("--queries", queries, "queries"), ("--neurons", neurons, "neurons"),
                               ("--cycles", cycles, "cycles")):
        notice = None if text is None else inclusive_notice(option, text, noun)
        if notice and note is not None:
            note(notice)

    with ResultSet(out, index=MANIFEST, owned=VECTORS_OWNED) as rs:
        res = simulate(net, cfg, x_all[q0:q1], source=str(input_path))
        names = ["feature", "output"] if layer == "all" else [layer]
        lvs = [layer_vectors(net, cfg, res, m, name, nsel, q0, timing, csel) for m in mods
               for name in names]
        head = {
            "config": {"name": cfg.name, "source": cfg.source, "sha256": cfg.sha256,
                       "overrides": list(overrides)},
            "model": {"path": str(model), "sha256": sha256_file(model)},
            "input": {"path": str(input_path),
                      "sha256": sha256_file(input_path) if inputs is None else
                      hashlib.sha256(np.ascontiguousarray(x_all).tobytes()).hexdigest(),
                      "dtype": str(x_all.dtype), "queries": [q0, q1 - 1]},
            "ranges": {"convention": "inclusive: [first, last], both written (docs/traces.md"
                                     "#ranges)",
                       "queries": {"given": queries, "written": [q0, q1 - 1]},
                       "neurons": {"given": neurons,
                                   "written": {lv.dir: inclusive(lv.neurons) for lv in lvs}},
                       "cycles": None if csel is None else
                       {"given": cycles, "written": inclusive(csel)}},
        }
        manifest = _publish(rs, head, lvs, fmts)
    return VectorsJob(out, manifest, lvs)


def inclusive(span: tuple[int, int]) -> list[int]:
    """An internal slice (start, stop) as the inclusive [first, last] the manifest records."""
    return [int(span[0]), int(span[1]) - 1]


def _check_formats(formats: list[str] | tuple[str, ...]) -> list[str]:
    fmts = list(dict.fromkeys(formats))
    bad = [f for f in fmts if f not in FORMATS]
    if bad or not fmts:
        raise VectorsError(
            f"--format {' '.join(bad) or '(none)'}: choose from {', '.join(FORMATS)}"
        )
    return fmts


def _publish(rs: ResultSet, head: dict[str, Any], lvs: list[LayerVectors],
             fmts: list[str]) -> dict[str, Any]:
    """Stage the bench, every layer's files and the manifest; commit the set."""
    files: list[dict[str, Any]] = []
    tb = testbench_source()
    tb_sha = _write(rs, TB_FILE, tb)
    files.append({"path": TB_FILE, "format": "verilog",
                  "description": "reference test bench (Verilog-2001)", "sha256": tb_sha})
    for name in RTL_FILES:
        rel = f"{RTL_DIR}/{name}"
        files.append({"path": rel, "format": "verilog",
                      "description": "clocked reference datapath and bench (docs/vectors.md)",
                      "sha256": _write(rs, rel, rtl_source(name))})
    for lv in lvs:
        files += write_layer(rs, lv, fmts)
    manifest = {
        "schema": dict(VECTORS_SCHEMA),
        "tool": {"name": "tempo-hwsim", "version": __version__},
        **head,
        "formats": fmts,
        "testbench": {"path": TB_FILE, "sha256": tb_sha, "top": TB_TOP,
                      "simulator": "iverilog -g2005 (Icarus 11) or any Verilog-2001 tool "
                                   "with $fatal"},
        "layers": [_layer_entry(lv) for lv in lvs],
        "files": files,
    }
    rs.commit(manifest)
    return manifest


def generate_corners(
    config: str | Path,
    out_dir: str | Path,
    formats: list[str] | tuple[str, ...] = FORMATS,
    overrides: list[str] | tuple[str, ...] = (),
    timing: bool = False,
    policies: tuple[str, ...] = CORNER_POLICIES,
    force: bool = False,
) -> VectorsJob:
    """Write the corner-case vectors of ``config`` (one folder per accumulator policy)."""
    if not str(out_dir).strip():
        raise VectorsError("--out '': an empty path; give a vectors folder, e.g. vectors/corners")
    out = Path(out_dir)
    check_out_dir(out, force)
    fmts = _check_formats(formats)
    cfg = load_config(config, list(overrides))
    layers = []
    for policy in policies:
        ccfg = corner_config(cfg, policy)
        layers.append((policy, ccfg, build_corner_layer(ccfg)))
    with ResultSet(out, index=MANIFEST, owned=VECTORS_OWNED) as rs:
        lvs = []
        for policy, ccfg, cl in layers:
            res = simulate(cl.net, ccfg, cl.codes, source="<corners>")
            lv = layer_vectors(cl.net, ccfg, res, 0, "feature", (0, len(cl.corners)), 0, timing)
            lv.name = f"c_{policy}"
            lv.extra = _corner_entry(cl, res, policy)
            lvs.append(lv)
        head = {
            "config": {"name": cfg.name, "source": cfg.source, "sha256": cfg.sha256,
                       "overrides": list(overrides)},
            "model": {"synthetic": "hwsim vectors --corners (see layers[].synthetic_layer)"},
            "input": {"synthetic": "layers[].synthetic_layer",
                      "queries": inclusive(lvs[0].queries)},
            "corners": True,
        }
        manifest = _publish(rs, head, lvs, fmts)
    return VectorsJob(out, manifest, lvs)


def _corner_entry(cl: CornerLayer, res: SimResult, policy: str) -> dict[str, Any]:
    lr = res.layer(0, "feature")
    acc = lr.acc["combined"]
    zy = cl.description["output_zero_point"]
    clamp = requant_clamp(cl.cfg.for_layer("feature").requant)
    same = rounding_coverage(cl.corners, acc[0], zy, clamp)
    if same:
        raise RuntimeError(f"internal error: corners do not tell rounding modes {same} apart")
    n = len(cl.corners)
    words = [{"word": j, "query": 0, "neuron": j, "corner": c.name, "covers": list(c.covers),
              "acc_exact": c.acc_exact, "m0": c.m0, "shift": c.shift,
              "acc": int(acc[0, j]), "code": int(lr.codes[0, j])}
             for j, c in enumerate(cl.corners)]
    words += [{"word": n + j, "query": 1, "neuron": j, "corner": "all_inputs_at_zero_point",
               "covers": ["zero_input"], "acc_exact": 0, "m0": c.m0, "shift": c.shift,
               "acc": int(acc[1, j]), "code": int(lr.codes[1, j])}
              for j, c in enumerate(cl.corners)]
    covered = sorted({cv for c in cl.corners for cv in c.covers} | {"zero_input"})
    return {"policy": policy, "synthetic_layer": cl.description, "corner_words": words,
            "covers": covered, "rounding_modes_told_apart": "every pair"}


def _layer_entry(lv: LayerVectors) -> dict[str, Any]:
    supported = not lv.tb_reason
    return {
        "module": lv.module, "layer": lv.layer, "dir": lv.dir,
        "queries": inclusive(lv.queries), "neurons": inclusive(lv.neurons),
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
        "datapath": {
            "supported": not lv.stream_reason,
            "reason": lv.stream_reason,
            "top": None if lv.stream_reason else f"{lv.dir}/{STREAM_TOP}",
            "rtl": [f"{RTL_DIR}/{n}" for n in RTL_FILES],
            "comparisons": 0 if lv.stream_reason else stream_comparisons(lv),
            "cycle_checks": {
                "checked": bool(not lv.stream_reason and cycle_comparisons(lv)),
                "reason": ("no --timing vectors" if timing_vectors(lv) is None
                           else timing_reason(lv)),
                "comparisons": 0 if lv.stream_reason else cycle_comparisons(lv),
                "define": TIMING_DEFINE,
            },
            "command": None if lv.stream_reason else stream_command(lv.dir),
        },
        "files": lv.files,
        **lv.extra,
    }

