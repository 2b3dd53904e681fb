"""``hwsim report DIR``: report.json as readable tables, and ``--plot`` PNGs.

Every field is described in docs/reports.md. Reports written before a field existed print
``-`` for it. :func:`load_report` reads a report back (every field the tables and plots use is
type-checked against :data:`REPORT_SPEC`) and :func:`report_text` prints it; the report itself
is built by simulator/report.py. ``simulator.report_cli`` re-exports these names.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPORT_NAME = "report.json"
MAX_REPORT_BYTES = 256 << 20


class ReportError(ValueError):
    """A report folder or file that cannot be read."""


# --- schema check on read ------------------------------------------------------------------------
# Every field the tables and plots use, with its type; a field may be missing (older reports
# print "-") but never of another type. Checked before anything is printed or plotted.

Spec = Any
_INT = "int"
_NUM = "number"
_STR = "string"
_BOOL = "bool"
_PAIR = "pair"


def _list(item: Spec) -> Spec:
    return ("list", item)


def _map(value: Spec) -> Spec:
    return ("map", value)


def _opt(inner: Spec) -> Spec:
    return ("nullable", inner)


_OVERFLOW: dict[str, Spec] = {
    "acc_bits": _INT, "acc_wrap": _INT, "acc_saturate": _INT, "pre_add_overflow": _INT,
    "requant_clamp_low": _INT, "requant_clamp_high": _INT, "max_abs_acc": _INT,
    "min_safe_acc_bits": _INT, "min_safe_acc_bits_exact": _BOOL,
    "min_safe_acc_bits_upper": _opt(_INT), "headroom_bits": _INT,
    "neurons_with_acc_events": _INT, "partial_sum_range": _opt(_PAIR),
    "acc_register_range": _opt(_PAIR), "acc_abs_percentiles": _opt(_map(_NUM)),
    "first": _opt({"cycle": _opt(_INT), "query": _opt(_INT), "neuron": _opt(_INT),
                   "step": _opt(_INT), "kind": _opt(_STR)}),
    "per_neuron": _map(_list(_PAIR)),
}
REPORT_SPEC: dict[str, Spec] = {
    "schema": {"name": _STR, "version": _INT},
    "tool": {"name": _STR, "version": _STR},
    "config": {"name": _STR, "source": _opt(_STR), "sha256": _opt(_STR)},
    "model": {"source": _opt(_STR), "layout": _STR, "modules": _INT, "in_features": _INT,
              "places": _INT},
    "input": {"source": _opt(_STR), "dtype": _STR, "clamp_low": _INT, "clamp_high": _INT},
    "queries": _INT,
    "layers": _map({"in_features": _INT, "out_features": _INT, "paths": _list(_STR),
                    "macs": _INT, "weight_bytes_read": _INT, "ordered_pairs": _INT,
                    "output_code_range": _opt(_PAIR), "acc_bits": _INT}),
    "overflow": _map(_OVERFLOW),
    "cycles": {"total": _INT, "per_query": _list(_INT), "stall": _INT,
               "clock_mhz": _opt(_NUM), "time_us": _opt(_NUM),
               "per_layer": _map({"total": _INT, "per_query_mean": _NUM, "stall": _INT})},
    "memory": {"weight_capacity_bytes": _INT, "weight_bytes_per_module": _list(_INT),
               "weights_per_cycle": _INT, "weight_bytes_read": _INT},
    "energy": {"macs": _INT, "requantizations": _INT, "total_uj": _NUM, "per_query_uj": _NUM},
    "comparison": _opt({"reference": _STR, "codes_total": _INT, "codes_differing": _INT,
                        "max_abs_code_difference": _opt(_INT), "argmax_differing": _INT,
                        "queries": _INT, "overrides_applied": _list(_STR),
                        "overrides_not_applied": _list(_STR)}),
    "compare_with_codes": _opt({"source": _opt(_STR), "sha256": _opt(_STR),
                                "code_offset": _INT, "codes_total": _INT,
                                "codes_differing": _INT, "max_abs_code_difference": _opt(_INT),
                                "argmax_differing": _INT, "queries": _INT,
                                "first_difference": _opt({"query": _INT, "place": _INT,
                                                          "hwsim": _INT, "external": _INT})}),
    "requantized": _opt(_map({"bits": _INT, "from_bits": _INT, "rule": _STR,
                              "paths": _opt(_list(dict)), "quantizers": _opt(_list(dict))})),
    "notes": _list(_STR),
    "files": _list(_STR),
    "readout": _opt(dict),
}


def _type_error(where: str, want: str, v: Any) -> ReportError:
    return ReportError(f"field {where!r} should be {want}, not {type(v).__name__} "
                       f"{json.dumps(v)[:40]}; the report is damaged - run hwsim again")


def check_schema(v: Any, spec: Spec, where: str) -> None:
    """Raise ReportError naming the first field whose value has the wrong type."""
    is_int = isinstance(v, int) and not isinstance(v, bool)
    if spec is dict:
        if not isinstance(v, dict):
            raise _type_error(where, "an object", v)
    elif isinstance(spec, dict):
        if not isinstance(v, dict):
            raise _type_error(where, "an object", v)
        for key, sub in spec.items():
            if key in v:
                check_schema(v[key], sub, f"{where}.{key}" if where else key)
    elif spec == _INT:
        if not is_int:
            raise _type_error(where, "an integer", v)
    elif spec == _NUM:
        if not (is_int or isinstance(v, float)):
            raise _type_error(where, "a number", v)
    elif spec == _STR:
        if not isinstance(v, str):
            raise _type_error(where, "a string", v)
    elif spec == _BOOL:
        if not isinstance(v, bool):
            raise _type_error(where, "true or false", v)
    elif spec == _PAIR:
        if not (isinstance(v, list) and len(v) == 2
                and all(isinstance(x, int) and not isinstance(x, bool) for x in v)):
            raise _type_error(where, "a pair of integers [lo, hi]", v)
    elif spec[0] == "nullable":
        if v is not None:
            check_schema(v, spec[1], where)
    elif spec[0] == "list":
        if not isinstance(v, list):
            raise _type_error(where, "a list", v)
        for i, x in enumerate(v):
            check_schema(x, spec[1], f"{where}[{i}]")
    elif spec[0] == "map":
        if not isinstance(v, dict):
            raise _type_error(where, "an object", v)
        for key, x in v.items():
            check_schema(x, spec[1], f"{where}.{key}")
    elif spec[0] == "scalar":
        if isinstance(v, dict | list):
            raise _type_error(where, "a number or string", v)


def load_report(path: str | Path) -> tuple[dict[str, Any], Path]:
    """Read DIR/report.json (or a report.json path); return (report, folder)."""
    p = Path(path)
    f = p / REPORT_NAME if p.is_dir() else p
    if not f.is_file():
        where = f"{p}: no {REPORT_NAME} here" if p.is_dir() else f"{f}: no such file"
        if p.is_dir() and any(c.name.startswith(".hwsim-stage-") for c in p.iterdir()):
            raise ReportError(f"{where}: a run is publishing into it, or one was killed while "
                              "publishing (the next run into this folder completes or removes "
                              "it); try again")
        raise ReportError(f"{where}; give the --out folder of an 'hwsim run'")
    try:
        if f.stat().st_size > MAX_REPORT_BYTES:
            raise ReportError(f"{f}: larger than {MAX_REPORT_BYTES >> 20} MiB; not a report "
                              "written by hwsim")
        rep = json.loads(f.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ReportError(f"{f}: not a JSON report ({' '.join(str(exc).split())[:80]})") from None
    except OSError as exc:
        raise ReportError(f"{f}: cannot read ({exc.strerror or exc})") from None
    sch = rep.get("schema") if isinstance(rep, dict) else None
    if not isinstance(sch, dict) or sch.get("name") != "tempo-hwsim-report":
        raise ReportError(f"{f}: not a tempo-hwsim report (schema.name missing)")
    try:
        check_schema(rep, REPORT_SPEC, "")
    except ReportError as exc:
        raise ReportError(f"{f}: {exc}") from None
    return rep, f.parent


# --- tables -----------------------------------------------------------------------------------


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e6 else f"{v:,.0f}"
    if isinstance(v, list | tuple):
        if len(v) == 2 and all(isinstance(x, int) for x in v):
            return f"{_cell(v[0])} .. {_cell(v[1])}"  # a range lo .. hi
        return "[" + "; ".join(_cell(x) for x in v) + "]"
    return str(v)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str = "") -> str:
    """A plain-text table: text columns left-aligned, numbers right-aligned."""
    cells = [[_cell(v) for v in r] for r in rows]

    def is_num(v: Any) -> bool:
        return v is None or (isinstance(v, int | float) and not isinstance(v, bool))

    numeric = [bool(rows) and all(is_num(r[i]) for r in rows) for i in range(len(headers))]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(vals: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(vals, widths, numeric, strict=True)
        ).rstrip()

    out = [title] if title else []
    out.append(line(list(headers)))
    out.append("  ".join("-" * w for w in widths))
    out.extend(line(r) for r in cells)
    return "\n".join(out)


def _first_text(first: dict[str, Any] | None) -> str:
    """'cycle C q Q n N [step S] KIND' for a report's ``first`` event, '-' for none."""
    if not first:
        return "-"
    cyc = first.get("cycle")
    parts = [f"cycle {cyc:,}" if isinstance(cyc, int) else f"cycle {cyc}",
             f"q {first.get('query')}", f"n {first.get('neuron')}"]
    if first.get("step") is not None:
        parts.append(f"step {first['step']}")
    if first.get("kind"):
        parts.append(str(first["kind"]))
    return " ".join(parts)


def overflow_table(rep: dict[str, Any]) -> str:
    """Per layer: events, clamps, accumulator range, headroom, min safe bits, first event."""
    rows = []
    for key, ov in rep.get("overflow", {}).items():
        rows.append([
            key,
            ov.get("acc_bits"),
            ov.get("acc_wrap"),
            ov.get("acc_saturate"),
            ov.get("pre_add_overflow"),
            ov.get("requant_clamp_low"),
            ov.get("requant_clamp_high"),
            ov.get("max_abs_acc"),
            ov.get("min_safe_acc_bits") if ov.get("min_safe_acc_bits_exact", True)
            else f"{ov.get('min_safe_acc_bits')}..{ov.get('min_safe_acc_bits_upper')}",
            ov.get("headroom_bits"),
            ov.get("neurons_with_acc_events"),
        ])
    t1 = format_table(
        ["layer", "acc bits", "wrap", "saturate", "pre-add", "clamp lo", "clamp hi",
         "max |acc|", "min safe bits", "headroom", "neurons w/ events"],
        rows, "overflow and saturation (event counts over the run)",
    )
    rows2 = []
    for key, ov in rep.get("overflow", {}).items():
        pct = ov.get("acc_abs_percentiles") or {}
        rows2.append([
            key,
            ov.get("partial_sum_range"),
            ov.get("acc_register_range"),
            pct.get("50"),
            pct.get("99"),
            _first_text(ov.get("first")),
        ])
    t2 = format_table(
        ["layer", "partial-sum range", "register range", "|acc| p50", "|acc| p99",
         "first event"],
        rows2,
    )
    return t1 + "\n\n" + t2


def layers_table(rep: dict[str, Any]) -> str:
    rows = [
        [key, la.get("in_features"), la.get("out_features"), ",".join(la.get("paths", [])),
         la.get("macs"), la.get("weight_bytes_read"), la.get("ordered_pairs"),
         la.get("output_code_range")]
        for key, la in rep.get("layers", {}).items()
    ]
    return format_table(
        ["layer", "in", "out", "paths", "MACs", "weight bytes read", "ordered pairs",
         "output codes"],
        rows, "layers",
    )


def cycles_table(rep: dict[str, Any]) -> str:
    cyc = rep.get("cycles", {})
    rows = [
        [key, c.get("total"), c.get("per_query_mean"), c.get("stall")]
        for key, c in cyc.get("per_layer", {}).items()
    ]
    per_q = cyc.get("per_query") or []
    rows.append(["all", cyc.get("total"),
                 (sum(per_q) / len(per_q)) if per_q else None, cyc.get("stall")])
    t = format_table(["layer", "cycles", "per query (mean)", "stall cycles"], rows, "cycles")
    extra = []
    if per_q:
        extra.append(f"per query: min {min(per_q):,}  max {max(per_q):,}")
    if cyc.get("clock_mhz") is not None:
        extra.append(f"time {cyc.get('time_us', 0):,.1f} us at {cyc['clock_mhz']:g} MHz")
    return t + ("\n" + "   ".join(extra) if extra else "")


def memory_energy_tables(rep: dict[str, Any]) -> str:
    mem = rep.get("memory", {})
    en = rep.get("energy", {})
    t1 = format_table(
        ["quantity", "value"],
        [
            ["weight capacity (bytes)", mem.get("weight_capacity_bytes")],
            ["weights per module (bytes)", mem.get("weight_bytes_per_module")],
            ["weights delivered per cycle", mem.get("weights_per_cycle")],
            ["weight bytes read", mem.get("weight_bytes_read")],
        ],
        "memory",
    )
    t2 = format_table(
        ["quantity", "value"],
        [
            ["MACs", en.get("macs")],
            ["requantizations", en.get("requantizations")],
            ["total (uJ)", en.get("total_uj")],
            ["per query (uJ)", en.get("per_query_uj")],
        ],
        "energy (estimate from the config's energy.* costs)",
    )
    return t1 + "\n\n" + t2


def _value(v: Any) -> Any:
    """Lists print as comma-separated items ('-' when empty), objects as k=v pairs."""
    if isinstance(v, list):
        return ", ".join(str(x) for x in v) if v else "-"
    if isinstance(v, dict):
        return " ".join(f"{k}={x}" for k, x in v.items())
    return v


def comparison_table(rep: dict[str, Any]) -> str:
    """The hidden reference run (``comparison``) and ``--compare-with`` codes, if present."""
    out = []
    c = rep.get("comparison")
    if c:
        rows = [[k, _value(v)] for k, v in c.items()]
        out.append(format_table(["quantity", "value"], rows,
                                f"comparison with {c.get('reference')}"))
    e = rep.get("compare_with_codes")
    if e:
        rows = [[k, _value(v)] for k, v in e.items()]
        out.append(format_table(["quantity", "value"], rows,
                                f"comparison with codes from {e.get('source')}"))
    return "\n\n".join(out)


def requantized_table(rep: dict[str, Any]) -> str:
    """Weights or spikes narrower than the model (``requantized``): one row per weight path."""
    rq = rep.get("requantized") or {}
    rows = []
    for what, block in rq.items():
        for p in block.get("paths") or []:
            rows.append([what, f"{block.get('from_bits')} -> {block.get('bits')}",
                         f"{p.get('module', '-')}/{p.get('layer', '-')}/{p.get('path', '-')}",
                         p.get("channels_rescaled"), p.get("channels"),
                         p.get("max_abs_code_before"), p.get("max_abs_code_after")])
        for a in block.get("quantizers") or []:  # spikes: one row per activation register
            rows.append([what, f"{block.get('from_bits')} -> {a.get('bits')}",
                         a.get("register"), None, None, None, None])
    if not rows:
        return ""
    return format_table(["what", "bits", "path", "rescaled", "channels", "max |code| before",
                         "after"], rows, "re-quantized to narrower widths") + \
        "".join(f"\nrule ({w}): {b.get('rule')}" for w, b in rq.items())


def report_text(rep: dict[str, Any]) -> str:
    """The whole report as text tables."""
    model = rep.get("model", {})
    cfg = rep.get("config", {})
    inp = rep.get("input", {})
    sch = rep.get("schema", {})
    head = [
        f"report {sch.get('name')} v{sch.get('version')}  tool "
        f"{rep.get('tool', {}).get('version', '?')}",
        f"config {cfg.get('name')} ({cfg.get('source')}, sha256 {str(cfg.get('sha256'))[:12]})",
        f"model  {model.get('source')} ({model.get('layout')}, {model.get('modules')} module(s),"
        f" {model.get('in_features')} inputs, {model.get('places')} places)",
        f"input  {inp.get('source')} ({inp.get('dtype')}), {rep.get('queries')} queries, "
        f"input clamps low/high {inp.get('clamp_low')}/{inp.get('clamp_high')}",
    ]
    parts = ["\n".join(head), overflow_table(rep), layers_table(rep), cycles_table(rep),
             memory_energy_tables(rep)]
    for extra in (requantized_table(rep), comparison_table(rep)):
        if extra:
            parts.append(extra)
    notes = rep.get("notes") or []
    if notes:
        parts.append("notes:\n" + "\n".join(f"  - {n}" for n in notes))
    return "\n\n".join(parts)


# --- command line -----------------------------------------------------------------------------


def cmd_report(args: argparse.Namespace) -> int:
    """Print DIR/report.json as tables; with --plot also write PNGs into DIR."""
    try:
        rep, folder = load_report(args.dir)
        if args.plot:
            from ..outputs import check_out_dir
            from ..plots import check_plottable

            check_plottable(rep)
            check_out_dir(args.plot_dir if args.plot_dir is not None else folder,
                          "--plot-dir")
    except (ReportError, ValueError, RuntimeError) as exc:
        print(f"hwsim: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(rep, indent=2))
    else:
        print(report_text(rep))
    if args.plot:
        from ..outputs import OutputError
        from ..plots import PlotError, plot_report

        try:
            paths = plot_report(rep, Path(args.plot_dir) if args.plot_dir else folder)
        except (PlotError, OutputError) as exc:
            print(f"hwsim: error: {exc}", file=sys.stderr)
            return 2
        for p in paths:
            print(f"wrote {p}")
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``hwsim report DIR [--plot] [--json]`` on an argparse subparsers object."""
    p = subparsers.add_parser(
        "report", help="print a run's report.json as tables (and --plot PNGs)",
        description="Print DIR/report.json as tables; --plot writes PNG plots into DIR "
        "(needs matplotlib: pip install 'tempo-hwsim[plot]').",
    )
    p.add_argument("dir", help="the --out folder of a run (or a report.json file)")
    p.add_argument("--plot", action="store_true",
                   help="write events-per-neuron and accumulator-range PNGs into DIR")
    p.add_argument("--plot-dir", help="write the PNGs here instead of DIR")
    p.add_argument("--json", action="store_true", help="print the raw JSON instead of tables")
    p.set_defaults(func=cmd_report)
    return p


add_report_parser = add_parser  # the name simulator/report_cli.py has always exported


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m simulator.commands.report DIR [--plot]`` (or ``simulator.report_cli``)."""
    parser = argparse.ArgumentParser(prog="hwsim")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["report", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


__all__ = ["MAX_REPORT_BYTES", "REPORT_NAME", "REPORT_SPEC", "ReportError", "add_parser",
           "add_report_parser", "check_schema", "cmd_report", "comparison_table",
           "cycles_table", "format_table", "layers_table", "load_report", "main",
           "memory_energy_tables", "overflow_table", "report_text", "requantized_table"]


if __name__ == "__main__":
    sys.exit(main())
