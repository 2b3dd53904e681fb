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
    """Best wall times (seconds) and the agreement check of one benchmark run."""

    shape: tuple[int, int, int]
    queries: int
    torch_s: float
    sim_s: dict[str, float]
    codes_compared: int
    codes_differing: int
    feature_codes_differing: int
    overflow: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def primary(self) -> str:
        """The backend the last line reports: the first one timed (the default, 'auto')."""
        return next(iter(self.sim_s))

    def ratio(self, backend: str | None = None) -> float:
        """Simulator time / torch time for ``backend`` (default: the primary one)."""
        return self.sim_s[backend or self.primary] / self.torch_s


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


def bench_config(overrides: Sequence[str] = ()) -> Any:
    """The benchmark's hardware config: pytorch_fbgemm with 32-bit saturating accumulators.

    Event accounting is exact; ``report.headroom = "bound"`` because the exact widest partial
    sum needs step-ordered evaluation (``--set report.headroom=exact`` times that too).
    """
    from .config import load_config

    return load_config(
        "pytorch_fbgemm",
        ["accumulator.bits=32", 'accumulator.overflow="saturate"', 'report.headroom="bound"',
         *overrides],
    )


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


def _best_of(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def available_backends() -> list[str]:
    """['auto', 'numpy'] when torch's int8 matmul is usable (proven exact here), else ['numpy']."""
    from . import kernels

    usable = kernels._mm_torch_fast() and kernels._mm_torch_fn() is not None
    return ["auto", "numpy"] if usable else ["numpy"]


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
) -> BenchResult:
    """Build, run each engine ``repeats`` times, compare codes, print best times."""
    from .engine import simulate
    from .report import build_report, overflow_lines

    t0 = time.perf_counter()
    net = bench_network(k, n1, places)
    x = bench_inputs(queries, k)
    cfg = bench_config(overrides)
    trun = torch_runner(net)
    torch = _import_torch()
    out(
        f"hwsim bench: {k} -> {n1} -> {places}, 1 module, {queries} queries; config "
        f"{cfg.name} with accumulator.bits={cfg.accumulator.bits} "
        f"overflow={cfg.accumulator.overflow} headroom={cfg.report.headroom}; "
        f"setup {time.perf_counter() - t0:.1f} s"
    )
    backends = list(backends or available_backends())
    env = [f"{v}={os.environ[v]}" for v in OPENBLAS_VARS if v in os.environ]
    out(
        f"threads: torch {torch.get_num_threads()}, cpus {os.cpu_count()}; numpy BLAS "
        f"{_blas_info()}; exact_matmul backends timed: {', '.join(backends)}"
        + (f"; {' '.join(env)}" if env else "")
    )
    kw: dict[str, Any] = {} if batch is None else {"batch": batch}

    def sim() -> Any:
        return simulate(net, cfg, x, **kw)

    # warm-up: torch import and packing, the matmul self-test, page faults
    tf, ty = trun(x)
    results = {}
    for be in backends:
        with matmul_backend(be):
            results[be] = sim()
    # each engine timed in its own block of repeats, so each runs with warm caches
    t_torch = _best_of(lambda: trun(x), repeats)[0]
    times: dict[str, float] = {}
    for be in backends:
        with matmul_backend(be):
            times[be] = _best_of(sim, repeats)[0]
    ref = results[backends[0]]
    differ = int(sum(int((r.outputs != ty).sum()) for r in results.values()))
    fdiff = int(sum(int((r.layer(0, "feature").codes != tf).sum()) for r in results.values()))
    rep = build_report(ref, net, cfg, {})
    res = BenchResult(
        (k, n1, places), queries, t_torch, times, int(ty.size), differ, fdiff, rep["overflow"]
    )
    out(f"torch fbgemm (quantize_per_tensor + 2 quantized Linear): {t_torch * 1e3:.1f} ms")
    for be in backends:
        out(
            f"simulator, exact_matmul={be}: {times[be] * 1e3:.1f} ms "
            f"(x{res.ratio(be):.2f} of fbgemm)"
        )
    for line in overflow_lines(rep):
        out(line)
    out(
        f"outputs: {res.codes_compared} codes per backend, {differ} differ from torch "
        f"(feature layer: {fdiff} differ)"
    )
    if "numpy" in times:
        out(f"ratio_vs_fbgemm_numpy_only {res.ratio('numpy'):.2f}")
    out(f"best of {repeats} repeats per engine; reported backend: {res.primary}")
    out(f"ratio_vs_fbgemm {res.ratio():.2f}")
    return res


# --- command line -----------------------------------------------------------------------------


def _configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--inputs", type=int, default=3136, help="input spikes K (default 3136)")
    p.add_argument("--features", type=int, default=6272, help="feature neurons (default 6272)")
    p.add_argument("--places", type=int, default=500, help="places of the module (default 500)")
    p.add_argument("--queries", type=int, default=500, help="queries (default 500)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats, best kept (default 5)")
    p.add_argument("--batch", type=int, default=None, help="simulate() batch size")
    p.add_argument("--backend", action="append", choices=("auto", "torch", "numpy", "float64"),
                   help="exact_matmul backend(s) to time (default: torch if usable, numpy)")
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


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the benchmark from parsed arguments; exit 1 if the engines disagree."""
    for name in ("inputs", "features", "places", "queries", "repeats"):
        if getattr(args, name) < 1:
            print(f"hwsim: error: --{name} must be >= 1", file=sys.stderr)
            return 2
    _reexec_without_openblas_env(args)
    try:
        res = run_bench(
            args.inputs, args.features, args.places, args.queries, args.repeats, args.batch,
            args.backend, args.set,
        )
    except RuntimeError as exc:
        print(f"hwsim: error: {exc}", file=sys.stderr)
        return 2
    return 1 if res.codes_differing or res.feature_codes_differing else 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m simulator.bench`` / benchmarks/run_bench.py entry point."""
    p = argparse.ArgumentParser(prog="hwsim bench", description=__doc__)
    _configure(p)
    return cmd_bench(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
