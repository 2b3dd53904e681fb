"""``hwsim bench``: the simulator against torch's fbgemm quantized inference, same process.

Builds a deterministic full-size VPRTempoQuant-shaped network (default 3136 -> 6272 -> 500, one
module, combined int8 layout, per-channel weight scales), runs 500 queries through

* torch: ``quantize_per_tensor`` (what QuantStub does) then two ``torch.ao.nn.quantized.Linear``
  layers holding the same int8 weights and scales, on the fbgemm engine;
* the simulator: ``simulate`` on the ``pytorch_fbgemm`` preset with 32-bit *saturating*
  accumulators and full per-layer overflow accounting, once with the best installed
  ``exact_matmul`` backend and once numpy-only (``HWSIM_MATMUL=numpy``);

checks that both give the same codes, and prints the best-of-N wall times. The last line is
``ratio_vs_fbgemm <x>`` (best simulator backend / torch). Numbers: docs/performance.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .network import QuantizedNetwork, make_combined_network

OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
_REEXEC_FLAG = "HWSIM_BENCH_REEXEC"


@dataclass
class BenchResult:
    """Median wall times (seconds), ratios and the agreement checks of one benchmark run."""

    shape: tuple[int, int, int]
    queries: int
    torch_s: float
    sim_s: dict[str, float]
    codes_compared: int
    codes_differing: int
    feature_codes_differing: int
    overflow: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    ratios: dict[str, float] = field(default_factory=dict)
    torch_arithmetic: bool = True
    reference_differences: list[str] = field(default_factory=list)
    reference_queries: int = 0
    peak_rss_mib: float = 0.0

    @property
    def failed(self) -> bool:
        """True when the results disagree with whichever reference applies."""
        if self.torch_arithmetic and (self.codes_differing or self.feature_codes_differing):
            return True
        return bool(self.reference_differences)

    @property
    def primary(self) -> str:
        """The backend the last line reports: the first one timed (the default, 'auto')."""
        return next(iter(self.sim_s))

    def ratio(self, backend: str | None = None) -> float:
        """Median of per-round simulator / torch time ratios for ``backend`` (default: the
        primary one); simulator / torch median times when no rounds were recorded."""
        be = backend or self.primary
        if be in self.ratios:
            return self.ratios[be]
        return self.sim_s[be] / self.torch_s


# --- the model --------------------------------------------------------------------------------


def _f32(v: float) -> float:
    return float(np.float32(v))


def _vprtempo_int8(rng: np.random.Generator, n_out: int, n_in: int) -> np.ndarray:
    """int8 weights shaped like VPRTempo's: ~10% excitatory, ~50% inhibitory, rest zero."""
    u = rng.random((n_out, n_in), dtype=np.float32)
    mag = rng.integers(1, 128, (n_out, n_in), dtype=np.int16)
    w = np.where(u < 0.1, mag, np.where(u < 0.6, -(mag // 2 + 1), 0)).astype(np.int8)
    w[:, 0] = 127  # every channel reaches the int8 range, as per-channel max scaling gives
    return w


def _output_qparams(acc: np.ndarray, sx: float, sw: np.ndarray) -> tuple[float, int]:
    """MinMax quint8 output quantizer for real values acc * sx * sw (float32-representable)."""
    real = acc.astype(np.float64) * sx * sw[None, :]
    lo, hi = min(float(real.min()), 0.0), max(float(real.max()), 0.0)
    scale = _f32(max(hi - lo, 1e-12) / 255.0)
    return scale, int(np.clip(round(-lo / scale), 0, 255))


def bench_network(
    k: int = 3136, n1: int = 6272, places: int = 500, seed: int = 0, calib_queries: int = 64
) -> QuantizedNetwork:
    """A deterministic one-module combined-layout network, output quantizers calibrated."""
    from .kernels import exact_matmul
    from .units.requantizer import requantize

    rng = np.random.default_rng(seed)
    w1 = _vprtempo_int8(rng, n1, k)
    w2 = _vprtempo_int8(rng, places, n1)
    s1 = rng.uniform(5e-4, 2e-3, n1).astype(np.float32).astype(np.float64)
    s2 = rng.uniform(5e-4, 2e-3, places).astype(np.float32).astype(np.float64)
    sx, zx = _f32(1.0 / 255.0), 0
    codes = rng.integers(0, 256, (calib_queries, k))
    acc1 = exact_matmul(codes - zx, w1)
    sy1, zy1 = _output_qparams(acc1, sx, s1)
    f, _, _ = requantize(acc1, "fbgemm", sx, s1, sy1, zy1, "half_even", (0, 255))
    acc2 = exact_matmul(f - zy1, w2)
    sy2, zy2 = _output_qparams(acc2, sy1, s2)
    mod = {
        "input_scale": sx,
        "input_zero_point": zx,
        "feature": {"weight": w1, "scale": s1, "output_scale": sy1, "output_zero_point": zy1},
        "output": {"weight": w2, "scale": s2, "output_scale": sy2, "output_zero_point": zy2},
    }
    meta = {"made_by": "simulator.bench.bench_network", "seed": seed}
    return make_combined_network([mod], meta, source=f"<bench {k}-{n1}-{places} seed {seed}>")


def bench_inputs(queries: int, k: int, seed: int = 1) -> np.ndarray:
    """Float32 spikes in [0, 1] with ~10% exact zeros (patch-normalised images look so)."""
    rng = np.random.default_rng(seed)
    x = rng.random((queries, k), dtype=np.float32)
    x[rng.random((queries, k)) < 0.1] = 0.0
    return x


# --- the two engines --------------------------------------------------------------------------


def _import_torch() -> Any:
    try:
        import torch
    except ImportError:
        raise RuntimeError(
            "hwsim bench needs torch for the fbgemm reference: pip install 'tempo-hwsim[torch]'"
        ) from None
    return torch


def torch_runner(net: QuantizedNetwork) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """fbgemm inference of ``net`` (module 0): spikes -> (feature codes, output codes)."""
    torch = _import_torch()
    import warnings

    from torch.ao.nn.quantized import Linear

    if "fbgemm" not in torch.backends.quantized.supported_engines:
        raise RuntimeError("this torch build has no fbgemm quantized engine")
    torch.backends.quantized.engine = "fbgemm"
    mod = net.modules[0]
    layers = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lay in mod.layers:
            p = lay.paths[0]
            lin = Linear(lay.in_features, lay.out_features, bias_=False, dtype=torch.qint8)
            qw = torch._make_per_channel_quantized_tensor(
                torch.from_numpy(np.ascontiguousarray(p.weight)),
                torch.from_numpy(p.scale.astype(np.float64)),
                torch.from_numpy(p.zero_point.astype(np.int64)),
                0,
            )
            lin.set_weight_bias(qw, None)
            lin.scale = float(lay.output_scale)
            lin.zero_point = int(lay.output_zero_point)
            layers.append(lin)
    sx, zx = float(mod.input_scale), int(mod.input_zero_point)

    def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            q = torch.quantize_per_tensor(torch.from_numpy(x), sx, zx, torch.quint8)
            f = layers[0](q)
            y = layers[1](f)
            return f.int_repr().numpy(), y.int_repr().numpy()

    return run


def host_torch_preset() -> str:
    """The preset whose arithmetic equals torch fbgemm's on this host.

    fbgemm sums products exactly only with AVX512-VNNI; on AVX2 (or AVX-512 without VNNI) it
    saturates int16 pairs (VPMADDUBSW), which the ``x86_avx2_fbgemm`` preset models.
    """
    try:
        text = open("/proc/cpuinfo", encoding="utf-8", errors="replace").read()
    except OSError:
        text = ""
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    return "pytorch_fbgemm" if "avx512_vnni" in flags else "x86_avx2_fbgemm"


def bench_config(overrides: Sequence[str] = (), preset: str = "pytorch_fbgemm") -> Any:
    """The benchmark's hardware config: ``preset`` with ``overrides`` (``--set``)."""
    from .config import load_config

    return load_config(preset, list(overrides))


_ARITH_SECTIONS = ("spikes", "accumulator", "mac", "requant", "combiner")
_ARITH_SKIP = {("mac", "lanes"), ("requant", "throughput"), ("requant", "latency")}


def _arithmetic(cfg: Any) -> list[Any]:
    """The parts of a config that decide output values (not timing, lanes or reports)."""
    import dataclasses

    out = []
    for lname in ("feature", "output"):
        hw = cfg.for_layer(lname)
        for sec in _ARITH_SECTIONS:
            part = getattr(hw, sec, None)
            if part is None:
                continue
            d = dataclasses.asdict(part)
            out.append((lname, sec, sorted((k, repr(v)) for k, v in d.items()
                                           if (sec, k) not in _ARITH_SKIP)))
        out.append((lname, "mode", hw.schedule.mode))
    return out


@contextlib.contextmanager
def matmul_backend(name: str) -> Iterator[None]:
    """Select the exact_matmul backend (HWSIM_MATMUL) for the duration of the block."""
    old = os.environ.get("HWSIM_MATMUL")
    os.environ["HWSIM_MATMUL"] = name
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("HWSIM_MATMUL", None)
        else:
            os.environ["HWSIM_MATMUL"] = old


def _blas_info() -> str:
    """numpy's BLAS and, with threadpoolctl installed, the kernel it runs and its threads."""
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        text = f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # the layout of show_config differs between numpy versions
        text = "unknown"
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return text
    for info in threadpool_info():
        if info.get("user_api") == "blas":
            return f"{text} ({info.get('architecture')}, {info.get('num_threads')} threads)"
    return text


def available_backends() -> list[str]:
    """['auto', 'numpy'] when ``auto`` differs from numpy here (torch's int8 matmul used on a
    VNNI host, or ONNX Runtime's uint8 product, each proven exact here), else ['numpy']."""
    from . import kernels, kernels_ort

    usable = kernels._mm_torch_fast() and kernels._mm_torch_fn() is not None
    return ["auto", "numpy"] if usable or kernels_ort.available() else ["numpy"]


def _peak_rss_reset() -> None:
    """Reset this process's peak RSS (Linux: clear_refs 5), so each scenario has its own."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def peak_rss_mib() -> float:
    """Peak resident memory of this process in MiB (since the last reset, on Linux)."""
    try:
        for line in open("/proc/self/status", encoding="ascii").read().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_bench(
    k: int = 3136,
    n1: int = 6272,
    places: int = 500,
    queries: int = 500,
    repeats: int = 5,
    batch: int | None = None,
    backends: Sequence[str] | None = None,
    overrides: Sequence[str] = (),
    out: Callable[[str], None] = print,
    preset: str = "pytorch_fbgemm",
    check_queries: int = 8,
) -> BenchResult:
    """Build, time torch and the simulator interleaved, check the results, print the ratio.

    Each of ``repeats`` rounds times torch then the simulator (per backend); the reported
    ratio is the median of the per-round ratios, so load on a shared machine moves both
    sides alike. Codes are compared with torch when the config's arithmetic is torch's on
    this host (:func:`host_torch_preset`); otherwise the first ``check_queries`` queries are
    checked against a plain step loop (:func:`reference_check`).
    """
    from .config import load_config
    from .engine import simulate
    from .report import build_report, overflow_lines

    _peak_rss_reset()
    t0 = time.perf_counter()
    cfg = bench_config(overrides, preset)
    net = bench_network(k, n1, places)
    x = bench_inputs(queries, k)
    trun = torch_runner(net)
    torch = _import_torch()
    host = host_torch_preset()
    torch_arith = _arithmetic(cfg) == _arithmetic(load_config(host))
    out(
        f"hwsim bench: {k} -> {n1} -> {places}, 1 module, {queries} queries; config "
        f"{cfg.name}{' ' + ' '.join(overrides) if overrides else ''} "
        f"(accumulator.bits={cfg.accumulator.bits} overflow={cfg.accumulator.overflow} "
        f"headroom={cfg.report.headroom}); setup {time.perf_counter() - t0:.1f} s"
    )
    backends = list(backends or available_backends())
    env = [f"{v}={os.environ[v]}" for v in OPENBLAS_VARS if v in os.environ]
    from .units.chunk_stepper import numba_enabled

    out(
        f"threads: torch {torch.get_num_threads()}, cpus {os.cpu_count()}; numpy BLAS "
        f"{_blas_info()}; exact_matmul backends timed: {', '.join(backends)}; numba "
        f"{'on' if numba_enabled() else 'off'}; torch arithmetic here: {host}"
        + (f"; {' '.join(env)}" if env else "")
    )
    kw: dict[str, Any] = {} if batch is None else {"batch": batch}

    def sim() -> Any:
        return simulate(net, cfg, x, **kw)

    tf, ty = trun(x)  # warm-up: torch packing, the matmul self-test, numba, page faults
    differ = fdiff = 0
    ref_diffs: list[str] = []
    first_outputs = None
    rep: dict[str, Any] = {}
    for be in backends:  # checks on the warm-up results, then let them go before timing
        with matmul_backend(be):
            r = sim()
        differ += int((r.outputs != ty).sum())
        fdiff += int((r.layer(0, "feature").codes != tf).sum())
        if first_outputs is None:
            first_outputs = r.outputs
            rep = build_report(r, net, cfg, {})
            if not torch_arith:
                from .engine.reference import reference_check

                ref_diffs = reference_check(net, cfg, r, check_queries)
        elif not np.array_equal(r.outputs, first_outputs):
            ref_diffs.append(f"the exact_matmul backends disagree ({be})")
        del r
    t_torch: list[float] = []
    t_sim: dict[str, list[float]] = {be: [] for be in backends}
    ratios: dict[str, list[float]] = {be: [] for be in backends}
    for _ in range(repeats):
        for be in backends:
            t1 = time.perf_counter()
            trun(x)
            tt = time.perf_counter() - t1
            with matmul_backend(be):
                t1 = time.perf_counter()
                sim()
                ts = time.perf_counter() - t1
            t_torch.append(tt)
            t_sim[be].append(ts)
            ratios[be].append(ts / tt)
    med = float(np.median(t_torch))
    res = BenchResult(
        (k, n1, places), queries, med, {be: float(np.median(v)) for be, v in t_sim.items()},
        int(ty.size), differ, fdiff, rep["overflow"],
    )
    res.ratios = {be: float(np.median(v)) for be, v in ratios.items()}
    res.torch_arithmetic = torch_arith
    res.reference_differences = ref_diffs
    res.reference_queries = 0 if torch_arith else min(check_queries, queries)
    res.peak_rss_mib = peak_rss_mib()
    out(f"torch fbgemm (quantize_per_tensor + 2 quantized Linear): {med * 1e3:.1f} ms (median)")
    for be in backends:
        out(
            f"simulator, exact_matmul={be}: {res.sim_s[be] * 1e3:.1f} ms (median; median of "
            f"per-round ratios x{res.ratio(be):.2f})"
        )
    for line in overflow_lines(rep):
        out(line)
    if torch_arith:
        out(
            f"outputs: {res.codes_compared} codes per backend, {differ} differ from torch "
            f"(feature layer: {fdiff} differ)"
        )
    else:
        out(
            f"outputs: the config's arithmetic differs from torch's on this host ({host}); "
            f"{differ} of {res.codes_compared * len(backends)} output codes ({len(backends)} "
            f"backend(s)) differ from torch (expected); plain step loop on the first "
            f"{res.reference_queries} queries: {len(ref_diffs)} differences"
        )
        for line in ref_diffs[:10]:
            out(f"  {line}")
    out(f"peak RSS {res.peak_rss_mib:.0f} MiB")
    if "numpy" in res.sim_s:
        out(f"ratio_vs_fbgemm_numpy_only {res.ratio('numpy'):.2f}")
    out(f"{repeats} interleaved rounds (torch, simulator); reported backend: {res.primary}")
    out(f"ratio_vs_fbgemm {res.ratio():.2f}")
    return res


# --- command line -----------------------------------------------------------------------------


def _configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--inputs", type=int, default=3136, help="input spikes K (default 3136)")
    p.add_argument("--features", type=int, default=6272, help="feature neurons (default 6272)")
    p.add_argument("--places", type=int, default=500, help="places of the module (default 500)")
    p.add_argument("--queries", type=int, default=500, help="queries (default 500)")
    p.add_argument("--repeats", type=int, default=5,
                   help="interleaved rounds (torch, simulator); the median ratio is reported "
                   "(default 5)")
    p.add_argument("--batch", type=int, default=None, help="simulate() batch size")
    p.add_argument("--config", default="pytorch_fbgemm", metavar="PRESET",
                   help="preset or config file to time (default pytorch_fbgemm)")
    p.add_argument("--check-queries", type=int, default=8, metavar="N",
                   help="queries checked against a plain step loop when the config's "
                   "arithmetic is not torch's (default 8)")
    p.add_argument("--scenarios", action="store_true",
                   help="run every scenario of docs/performance.md's table (ignores --config "
                   "and --set) and print the table")
    p.add_argument("--backend", action="append",
                   choices=("auto", "torch", "onnxruntime", "numpy", "float64"),
                   help="exact_matmul backend(s) to time (default: auto when it uses torch "
                   "or onnxruntime here, and numpy)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the benchmark config")
    p.add_argument("--keep-openblas-env", action="store_true",
                   help="do not restart without OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE")


def add_bench_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``hwsim bench`` on an argparse subparsers object."""
    p = subparsers.add_parser(
        "bench",
        help="time the simulator against torch fbgemm on the full-size network",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    _configure(p)
    p.set_defaults(func=cmd_bench)
    return p


def _reexec_without_openblas_env(args: argparse.Namespace) -> None:
    """Restart this benchmark with the OpenBLAS overrides unset (they slow a current numpy).

    The machine notes set OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE on some processors; OpenBLAS
    reads them when numpy loads, so only a fresh process can drop them. Tests never do this.
    """
    if args.keep_openblas_env or os.environ.get(_REEXEC_FLAG):
        return
    if not any(v in os.environ for v in OPENBLAS_VARS):
        return
    env = {k: v for k, v in os.environ.items() if k not in OPENBLAS_VARS}
    env[_REEXEC_FLAG] = "1"
    rest = sys.argv[1:]
    if rest and rest[0] == "bench":  # started as ``hwsim bench ...``
        rest = rest[1:]
    argv = [sys.executable, "-m", "simulator.bench", *rest]
    print(f"hwsim bench: restarting without {', '.join(OPENBLAS_VARS)}", flush=True)
    os.execve(sys.executable, argv, env)


def _validate(args: argparse.Namespace) -> str | None:
    """The first bad option as 'option: problem and fix', or None. Nothing is computed."""
    for name in ("inputs", "features", "places", "queries", "repeats", "check_queries"):
        v = getattr(args, name)
        if v < 1:
            return f"--{name.replace('_', '-')}: must be >= 1 (got {v})"
    if args.batch is not None and args.batch < 1:
        return f"--batch: must be >= 1 (got {args.batch}); leave it out for the default (512)"
    if args.scenarios and (args.set or args.config != "pytorch_fbgemm"):
        return "--scenarios: runs fixed configurations; drop --config / --set, or drop " \
               "--scenarios to time one configuration"
    from .config import ConfigError, load_config

    if not args.scenarios:
        try:
            load_config(args.config, list(args.set))
        except ConfigError as exc:
            return str(exc)
    return None


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the benchmark from parsed arguments; exit 1 if any check fails, 2 on bad options."""
    bad = _validate(args)
    if bad is not None:
        print(f"hwsim: error: {bad}", file=sys.stderr)
        return 2
    _reexec_without_openblas_env(args)
    try:
        if args.scenarios:
            from .bench_scenarios import run_scenarios

            rows = run_scenarios(args.inputs, args.features, args.places, args.queries,
                                 args.repeats, args.batch, args.backend, args.check_queries)
            failed = any(res.failed for _, res in rows)
            print(f"ratio_vs_fbgemm {max(res.ratio() for _, res in rows):.2f}")
            return 1 if failed else 0
        res = run_bench(
            args.inputs, args.features, args.places, args.queries, args.repeats, args.batch,
            args.backend, args.set, preset=args.config, check_queries=args.check_queries,
        )
    except RuntimeError as exc:
        print(f"hwsim: error: {exc}", file=sys.stderr)
        return 2
    return 1 if res.failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m simulator.bench`` / benchmarks/run_bench.py entry point."""
    from . import _process_env  # noqa: F401  (the process settings of ``hwsim``, applied once)

    p = argparse.ArgumentParser(prog="hwsim bench", description=__doc__)
    _configure(p)
    return cmd_bench(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
