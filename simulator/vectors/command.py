"""``hwsim vectors``: the command-line front end."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .bench import (
    EXIT_RTL_FAILED,
    SIMULATORS,
    run_stream_bench,
    run_testbench,
    simulator_missing,
)
from .encoding import VectorsError
from .writer import FORMATS, MANIFEST, TB_FILE, TB_TOP, check_out_dir, generate, generate_corners

# --- command line -------------------------------------------------------------------------


def images_input(model: str, data_dir: str, query: str, config: str = "int8_fixed_point",
                 overrides: list[str] | tuple[str, ...] = ()) -> tuple[np.ndarray, str]:
    """Float spikes (Q, K) of traversal ``query`` in ``data_dir`` with the model's
    preprocessing (image size and patch from its metadata, as ``hwsim run --data-dir``); the
    model is read within ``config``'s weight-memory limit."""
    from ..config import load_config
    from ..loaders import ModelLimits, load_model
    from ..vpr.model_inputs import traversal_spikes

    net = load_model(model, ModelLimits.for_config(load_config(config, overrides)))
    return traversal_spikes(net, model, data_dir, query)


def _note(line: str) -> None:
    print(line, file=sys.stderr)


def cmd_vectors(args: argparse.Namespace) -> int:
    """``hwsim vectors``: write the folder, optionally run the bench; 0 ok, 1 bench failed."""
    if args.check_rtl:
        for tool in ("iverilog", "vvp"):
            if shutil.which(tool) is None:
                raise VectorsError(f"{tool}: not found on PATH; install Icarus Verilog "
                                   "(apt-get install iverilog) or drop --check-rtl")
        why = simulator_missing(args.simulator)
        if why:
            raise VectorsError(f"--simulator {args.simulator}: {why}")
    fmts = args.formats or list(FORMATS)
    if args.corners:
        for opt, value in (("--model", args.model), ("--input", args.input),
                           ("--cycles", args.cycles)):
            if value is not None:
                raise VectorsError(f"{opt}: --corners builds its own synthetic layer; drop "
                                   f"{opt} (or drop --corners for the model's vectors)")
        if args.data_dir is not None:
            raise VectorsError("--data-dir: --corners builds its own synthetic layer; drop it")
        job = generate_corners(args.config, args.out, fmts, args.set, args.timing,
                               force=args.force)
    else:
        if args.model is None:
            raise VectorsError("--model: required (or give --corners for corner-case "
                               "vectors without a model)")
        if (args.input is None) == (args.data_dir is None):
            raise VectorsError("--input: give either --input FILE.npy or --data-dir DIR "
                               "--query NAME (or --corners)")
        inputs, label = None, args.input
        if args.data_dir is not None:
            if not args.query:
                raise VectorsError("--query: give the traversal of --data-dir to use, e.g. "
                                   "--query summer")
            check_out_dir(Path(args.out), args.force)  # before the images are read
            inputs, label = images_input(args.model, args.data_dir, args.query, args.config,
                                          args.set)
        job = generate(args.config, args.model, label, args.out, args.module, args.layer,
                       args.queries, args.neurons, fmts, args.set, args.timing, args.cycles,
                       force=args.force, inputs=inputs, note=_note)
    status = 0
    for lv in job.layers:
        ev = lv.info["overflow_events"]
        bench = (f"bench {lv.dir}/{TB_TOP} ({lv.comparisons} comparisons"
                 f"{'' if lv.checks_codes else ', accumulators only'})"
                 if not lv.tb_reason else f"no bench: {lv.tb_reason}")
        print(f"{lv.dir}: queries {lv.queries[0]}:{lv.queries[1] - 1} neurons "
              f"{lv.neurons[0]}:{lv.neurons[1] - 1} inputs {lv.k}; overflow events acc "
              f"{ev['accumulator']} pre-add {ev['pre_add']}; {len(lv.files)} files; {bench}")
        if args.check_rtl and not lv.tb_reason:
            br = run_testbench(job.out_dir, lv.dir)
            verdict = "PASS" if br.ok else "FAIL"
            print(f"{lv.dir}: RTL bench {verdict}: {br.passed} passed, {br.failed} failed")
            if not br.ok:
                print(br.output.rstrip())
                status = EXIT_RTL_FAILED
        if args.check_rtl and not lv.stream_reason:
            br = run_stream_bench(job.out_dir, lv.dir, args.simulator)
            verdict = "PASS" if br.ok else "FAIL"
            cyc = ("" if br.cycles is None else
                   f" (cycles: {br.cycles[0]} passed, {br.cycles[1]} failed)")
            print(f"{lv.dir}: clocked datapath ({args.simulator}) {verdict}: {br.passed} passed, "
                  f"{br.failed} failed{cyc}")
            if not br.ok:
                print(br.output.rstrip())
                status = EXIT_RTL_FAILED
    print(f"wrote {job.out_dir}/ ({MANIFEST}, {TB_FILE}, rtl/, "
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
    p.add_argument("--model", default=None,
                   help=".npz or VPRTempo .pth (combined layout); not with --corners")
    p.add_argument("--input", default=None,
                   help=".npy (queries, inputs): float spikes in [0, 1] or uint8 codes")
    p.add_argument("--data-dir", default=None,
                   help="images instead of --input: a VPRTempo-layout dataset (as hwsim run)")
    p.add_argument("--query", default=None, help="traversal name in --data-dir, e.g. summer")
    p.add_argument("--force", action="store_true",
                   help="replace an earlier vectors folder even if it holds files hwsim "
                   "vectors did not write")
    p.add_argument("--out", required=True, help="vectors folder (new, empty or earlier vectors)")
    p.add_argument("--module", default="0", help="module index or 'all' (default 0)")
    p.add_argument("--layer", default="all", choices=("feature", "output", "all"),
                   help="layer(s) to write (default all)")
    p.add_argument("--queries", default=":", metavar="FIRST:LAST",
                   help="queries of --input, both ends included (default all), e.g. 0:7 "
                   "for 8 queries; also N, A: or :B (docs/traces.md#ranges)")
    p.add_argument("--neurons", default=":", metavar="FIRST:LAST",
                   help="output neurons of each layer, both ends included, clipped to its "
                   "size (default all)")
    p.add_argument("--format", dest="formats", nargs="+", action="extend", choices=FORMATS,
                   default=None, help="file formats (default: readmemh coe mif npy)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set accumulator.bits=16")
    p.add_argument("--check-rtl", action="store_true",
                   help="also run each layer's benches: tb_layer.v (Icarus) and the clocked "
                   "datapath tb_stream.v (--simulator)")
    p.add_argument("--simulator", default="icarus", choices=SIMULATORS,
                   help="simulator for the clocked datapath bench (default icarus)")
    p.add_argument("--corners", action="store_true",
                   help="write corner-case vectors of a synthetic layer instead (rounding ties, "
                   "clamp edges, rails, wraps, widest shift; one folder per overflow policy)")
    p.add_argument("--timing", action="store_true",
                   help="also write the cycle of every accumulator write, requantizer issue "
                   "and output word (t_accw, t_issue, t_out)")
    p.add_argument("--cycles", default=None, metavar="FIRST:LAST",
                   help="also dump every lane's accumulator writes in cycles FIRST..LAST "
                   "(both included, cycles as in report.json) to <layer>/lanes_FIRST_LAST.csv")
    p.set_defaults(func=cmd_vectors)
    return p

