"""VPRTempo training in numpy, then quantization to the simulator's int8 network.

Learning rules (VPRTempo paper, Hines et al. 2024, and its public ``blitnet.py``):

* Weights: each layer starts from an excitatory matrix (N(0.5, 1/6) clipped >= 0, kept with
  probability ``p_exc``) plus an inhibitory one (N(-0.5, 1/6) clipped <= 0, kept with
  ``p_inh``), each divided by the L1 norm of its last row; they are added into one signed
  matrix, and each weight keeps its sign for ever (excitatory in [1e-6, 10], inhibitory in
  [-10, -1e-6]).
* Neurons: ``x = clip(W x_pre - theta, 0, 0.9)``.
* Feature layer (unsupervised): STDP ``dW_ji = eta * (0.5 - x_j) * [x_i > 0] * [x_j > 0]``
  (sign-flipped for inhibitory weights); intrinsic threshold plasticity
  ``d theta_j = eta_ip * ([x_j > 0] - f_j)`` with target rates f_j spread over [0.2, 0.9],
  theta >= 0.
* Output layer (supervised spike forcing): one neuron per place; ``dW_ji = eta * (x_i / f_i) *
  (0.5 [j = place] - x_j)`` for both signs; fully connected (p = 1.0, 1.0) as in
  ``VPRTempoQuantTrain.py`` (the float trainer uses 0.25, 0.75: ``TrainConfig.output_p``).
* Both layers: inhibitory homeostasis ``W_ji <- W_ji * (1 + 50 eta * (W x_pre)_j)`` for
  W_ji < 0; learning rates annealed every 100 steps by ``((T - t) / T)^2``.
* Layer by layer, module by module; each module (at most ``max_module`` places) has its own
  feature and output layer and is trained only on its places; samples are shuffled each epoch.

Inference (float and quantized) is VPRTempo's: ``out = W_out (W_feat x)`` per module, with no
thresholds, modules concatenated.

Deliberate differences from the public code are listed in docs/training.md (ITP uses the
neuron's own spike, as in the paper; the code's ``layer.x`` is never set for the feature layer).
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..network import QuantizedNetwork
from .datasets import (
    DatasetError,
    Traversal,
    list_traversals,
    load_codes,
    load_traversal,
    require_places,
)
from .preprocess import PreprocessConfig, codes_to_spikes
from .quantize import quantize_network, run_quantized
from .readout import ground_truth, recalls

TRAINER_VERSION = 1
RECALL_NS: tuple[int, ...] = (1, 5, 10)
MAX_QUANT_DROP = 0.03


@dataclass(frozen=True)
class TrainConfig:
    """All training hyper-parameters (defaults: VPRTempo's)."""

    dims: tuple[int, int] = (28, 28)
    patch: int = 15
    places: int = 100
    max_module: int = 500
    epochs: int = 4
    seed: int = 0
    database: tuple[str, ...] = ("spring", "fall")
    filter: int = 1
    skip: int = 0
    resize: Literal["torch", "cv2"] = "torch"
    feature_thr_range: tuple[float, float] = (0.0, 0.5)
    feature_fire_rate: tuple[float, float] = (0.2, 0.9)
    feature_p: tuple[float, float] = (0.1, 0.5)
    output_p: tuple[float, float] = (1.0, 1.0)  # VPRTempoQuantTrain; VPRTempoTrain: 0.25, 0.75
    ip_rate: float = 0.15
    stdp_rate: float = 0.005
    homeostasis_gain: float = 50.0
    anneal_every: int = 100
    itp_rule: Literal["paper", "vprtempo-code"] = "paper"
    reduce_range: bool = False

    def validate(self) -> None:
        """Raise ValueError naming the first bad field."""
        PreprocessConfig(self.dims, self.patch, self.resize).validate()
        if self.places < 1:
            raise ValueError(f"places must be >= 1, got {self.places}")
        if self.max_module < 1:
            raise ValueError(f"max_module must be >= 1, got {self.max_module}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if not self.database:
            raise ValueError("at least one database traversal is needed")
        if self.itp_rule not in ("paper", "vprtempo-code"):
            raise ValueError(f"itp_rule must be 'paper' or 'vprtempo-code', not {self.itp_rule!r}")
        for name in ("feature_p", "output_p"):
            lo, hi = getattr(self, name)
            if not (0 < lo <= 1 and 0 < hi <= 1):
                raise ValueError(f"{name} probabilities must lie in (0, 1], got {(lo, hi)}")

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_json` (lists back to tuples, unknown keys rejected)."""
        known = {f.name for f in fields(cls)}
        extra = set(data) - known
        if extra:
            raise ValueError(f"unknown training settings: {sorted(extra)}")
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**kw)


@dataclass
class FloatModule:
    """One trained float module.

    w_feature: float32 (F, K); thr_feature: float32 (F,); fire_rate: float32 (F,) targets;
    w_output: float32 (P_m, F); first_place: index of the module's first place.
    """

    w_feature: np.ndarray
    thr_feature: np.ndarray
    fire_rate: np.ndarray
    w_output: np.ndarray
    first_place: int

    @property
    def places(self) -> int:
        return int(self.w_output.shape[0])


@dataclass
class FloatNetwork:
    """The trained float network: modules, each ``out = W_out (W_feat x)``."""

    modules: list[FloatModule] = field(default_factory=list)

    @property
    def places(self) -> int:
        return sum(m.places for m in self.modules)

    def forward(self, spikes: np.ndarray) -> np.ndarray:
        """float (N, K) spikes -> float64 (N, places): VPRTempo inference, no thresholds."""
        x = np.asarray(spikes, dtype=np.float64)
        outs = []
        for m in self.modules:
            feat = x @ m.w_feature.astype(np.float64).T
            outs.append(feat @ m.w_output.astype(np.float64).T)
        return np.concatenate(outs, axis=1)


@dataclass(frozen=True)
class QueryRecall:
    """Recall@N of one held-out query traversal, float model vs quantized model."""

    traversal: str
    queries: int
    float_recall: dict[int, float]
    quant_recall: dict[int, float]

    @property
    def drop(self) -> float:
        """Float Recall@1 minus quantized Recall@1."""
        return self.float_recall[1] - self.quant_recall[1]


@dataclass
class TrainReport:
    """What :func:`train` did and how well the result recognises held-out traversals."""

    config: TrainConfig
    command: str
    data_dir: str
    queries: tuple[str, ...]
    modules: int
    tolerance: int
    recalls: list[QueryRecall]
    engine: str
    seconds: dict[str, float]
    warnings: list[str]

    def summary(self) -> str:
        """A small text table of the recalls (and any warnings)."""
        cfg = self.config
        lines = [
            f"trained {cfg.places} places x {len(cfg.database)} database traversals "
            f"({', '.join(cfg.database)}), {cfg.dims[0]}x{cfg.dims[1]} -> "
            f"{2 * cfg.dims[0] * cfg.dims[1]} -> {cfg.places}, {self.modules} module(s), "
            f"seed {cfg.seed}",
            f"quantized outputs from {self.engine}; ground-truth tolerance {self.tolerance}",
            f"{'query':<10} {'model':<6} " + " ".join(f"R@{n:<5}" for n in RECALL_NS),
        ]
        for r in self.recalls:
            for label, rec in (("float", r.float_recall), ("int8", r.quant_recall)):
                vals = " ".join(f"{rec[n]:<7.3f}" for n in RECALL_NS)
                lines.append(f"{r.traversal:<10} {label:<6} {vals}")
        times = ", ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items())
        lines.append(f"time: {times}")
        lines.extend(f"WARNING: {w}" for w in self.warnings)
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "config": self.config.to_json(),
            "queries": list(self.queries),
            "modules": self.modules,
            "tolerance": self.tolerance,
            "engine": self.engine,
            "recalls": {
                r.traversal: {
                    "queries": r.queries,
                    "float": {str(k): v for k, v in r.float_recall.items()},
                    "int8": {str(k): v for k, v in r.quant_recall.items()},
                }
                for r in self.recalls
            },
            "seconds": self.seconds,
            "warnings": self.warnings,
        }


# --------------------------------------------------------------------------------------------
# Layers


def _init_weights(
    rng: np.random.Generator, n_out: int, n_in: int, p_exc: float, p_inh: float
) -> np.ndarray:
    """VPRTempo ``addWeights`` for exc + inh, added: float32 (n_out, n_in)."""
    mats = []
    for lo, hi, p in ((0.0, 1.0, p_exc), (-1.0, 0.0, p_inh)):
        w = rng.normal((lo + hi) / 2.0, (hi - lo) / 6.0, size=(n_out, n_in))
        w = np.maximum(w, 0.0) if hi != 0 else np.minimum(w, 0.0)
        w[rng.random((n_out, n_in)) > p] = 0.0
        nrm = float(np.abs(w[-1]).sum())
        mats.append(w / (nrm if nrm != 0.0 else 1.0))
    return (mats[0] + mats[1]).astype(np.float32)


@dataclass
class _Plastic:
    """A plastic layer's state during training (float32)."""

    w: np.ndarray
    lo: np.ndarray  # clamp bounds per weight: exc [1e-6, 10], inh [-10, -1e-6], none [0, 0]
    hi: np.ndarray
    inh: np.ndarray  # float32 1.0 where inhibitory
    sign: np.ndarray  # float32 +1 exc, -1 inh, 0 none

    @classmethod
    def create(cls, w: np.ndarray) -> _Plastic:
        exc = w > 0
        inh = w < 0
        f = np.float32
        lo = np.where(exc, f(1e-6), np.where(inh, f(-10.0), f(0.0))).astype(f)
        hi = np.where(exc, f(10.0), np.where(inh, f(-1e-6), f(0.0))).astype(f)
        sign = (exc.astype(f) - inh.astype(f)).astype(f)
        return cls(w, lo, hi, inh.astype(f), sign)

    def clamp(self) -> None:
        # np.maximum + np.minimum: same result as np.clip, 3-4x faster with array bounds
        np.maximum(self.w, self.lo, out=self.w)
        np.minimum(self.w, self.hi, out=self.w)

    def homeostasis(self, noclp: np.ndarray, eta: float, gain: float) -> None:
        """W_ji <- W_ji (1 + gain * eta * noclp_j) for inhibitory W_ji."""
        if eta == 0.0:
            return
        factor = (np.float32(gain * eta) * noclp.astype(np.float32))[:, None]
        tmp = self.w * factor
        tmp *= self.inh
        self.w += tmp


def _matvec(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """float32 W @ x without BLAS: single-threaded and the same on any thread count.

    (A multi-threaded BLAS gemv is 10-30x slower than this on a busy 2-core machine.)
    """
    return np.einsum("ij,j->i", w, x)


def _anneal(step: int, total: int, every: int) -> float | None:
    if step % every == 0:
        return ((total - step) / total) ** 2
    return None


def _progress(total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", leave=False)


def _train_feature(
    x: np.ndarray, cfg: TrainConfig, rng: np.random.Generator, desc: str, progress: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """STDP + ITP + homeostasis on float32 (S, K) samples -> (W (F, K), theta (F,), f (F,))."""
    n_in = x.shape[1]
    n_out = 2 * n_in
    w = _init_weights(rng, n_out, n_in, *cfg.feature_p)
    lay = _Plastic.create(w)
    has_weights = bool(lay.sign.any())  # clamped weights are never 0 where connected
    thr = rng.uniform(*cfg.feature_thr_range, size=n_out).astype(np.float32)
    f0, f1 = cfg.feature_fire_rate
    rate = (f0 + (f1 - f0) / n_out * (np.arange(n_out) + 1)).astype(np.float32)
    total = x.shape[0] * cfg.epochs
    eta, eta_ip = cfg.stdp_rate, cfg.ip_rate
    bar = _progress(total, desc, progress)
    step = 0
    for _ in range(cfg.epochs):
        for s in rng.permutation(x.shape[0]):
            pre = x[s]
            noclp = _matvec(lay.w, pre)
            post = np.clip(noclp - thr, 0.0, 0.9)
            fired = post > 0
            rows = np.flatnonzero(fired)
            if rows.size:
                d = (np.float32(eta) * (np.float32(0.5) - post[rows]))[:, None]
                on = pre > 0
                upd = lay.sign[rows] if on.all() else lay.sign[rows] * on.astype(np.float32)
                upd *= d
                lay.w[rows] += upd
            lay.clamp()
            if eta_ip > 0.0:
                spiked = fired.astype(np.float32) if cfg.itp_rule == "paper" else 0.0
                thr += np.float32(eta_ip) * (spiked - rate)
                np.maximum(thr, 0.0, out=thr)
            if has_weights:
                lay.homeostasis(noclp, eta, cfg.homeostasis_gain)
            pt = _anneal(step, total, cfg.anneal_every)
            if pt is not None:
                eta, eta_ip = cfg.stdp_rate * pt, cfg.ip_rate * pt
            step += 1
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return lay.w, thr, rate


def _train_output(
    feat: np.ndarray, labels: np.ndarray, n_places: int, rate: np.ndarray, cfg: TrainConfig,
    rng: np.random.Generator, desc: str, progress: bool,
) -> np.ndarray:
    """Spike forcing on clamped feature spikes float32 (S, F) -> W (P_m, F)."""
    n_in = feat.shape[1]
    w = _init_weights(rng, n_places, n_in, *cfg.output_p)
    lay = _Plastic.create(w)
    connected = (lay.sign != 0).astype(np.float32)
    has_weights = bool(connected.any())
    total = feat.shape[0] * cfg.epochs
    eta = cfg.stdp_rate
    bar = _progress(total, desc, progress)
    step = 0
    inv_rate = (np.float32(1.0) / rate).astype(np.float32)
    for _ in range(cfg.epochs):
        for s in rng.permutation(feat.shape[0]):
            pre = feat[s]
            noclp = _matvec(lay.w, pre)
            post = np.clip(noclp, 0.0, 0.9)  # output thresholds are 0 in VPRTempo
            target = np.zeros(n_places, dtype=np.float32)
            target[labels[s]] = 0.5
            xdiff = target - post
            lay.w += np.float32(eta) * np.outer(xdiff, pre * inv_rate) * connected
            lay.clamp()
            if has_weights:
                lay.homeostasis(noclp, eta, cfg.homeostasis_gain)
            pt = _anneal(step, total, cfg.anneal_every)
            if pt is not None:
                eta = cfg.stdp_rate * pt
            step += 1
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return lay.w


def module_ranges(places: int, max_module: int) -> list[tuple[int, int]]:
    """[(first, stop), ...] place ranges of the modules (at most ``max_module`` places each)."""
    return [(a, min(a + max_module, places)) for a in range(0, places, max_module)]


def train_float(
    database_spikes: Sequence[np.ndarray], cfg: TrainConfig, progress: bool = False
) -> FloatNetwork:
    """Train on float32 spikes, one (places, K) array per database traversal (row i = place i).

    Deterministic for a given ``cfg.seed`` (module m uses ``default_rng([seed, m])``).
    """
    cfg.validate()
    arrays = [np.asarray(a, dtype=np.float32) for a in database_spikes]
    if not arrays:
        raise ValueError("no database traversals given")
    n, k = arrays[0].shape
    for a in arrays:
        if a.shape != (n, k):
            raise ValueError(f"database arrays differ in shape: {a.shape} vs {(n, k)}")
    if n < cfg.places:
        raise ValueError(f"database has {n} places, config asks for {cfg.places}")
    net = FloatNetwork()
    for mi, (a, b) in enumerate(module_ranges(cfg.places, cfg.max_module)):
        rng = np.random.default_rng([cfg.seed, mi])
        x = np.concatenate([arr[a:b] for arr in arrays])
        labels = np.tile(np.arange(b - a), len(arrays))
        tag = f"module {mi + 1}"
        w1, thr, rate = _train_feature(x, cfg, rng, f"{tag} feature", progress)
        feat = np.clip(x @ w1.T - thr, 0.0, 0.9).astype(np.float32)
        w2 = _train_output(feat, labels, b - a, rate, cfg, rng, f"{tag} output", progress)
        net.modules.append(FloatModule(w1, thr, rate, w2, a))
    return net


# --------------------------------------------------------------------------------------------
# End to end


def _route_info(data_dir: Path) -> dict[str, Any] | None:
    p = data_dir / "route.json"
    try:
        return json.loads(p.read_text()) if p.is_file() else None
    except (OSError, ValueError):
        return None


def _cv2_version() -> str:
    import cv2

    return str(cv2.__version__)


def default_command(data_dir: str | Path, cfg: TrainConfig, out: str | None = None) -> str:
    """The ``hwsim train`` command line equivalent to ``cfg``."""
    parts = [
        "hwsim", "train", "--data-dir", str(data_dir),
        "--database", ",".join(cfg.database), "--places", str(cfg.places),
        "--dims", f"{cfg.dims[0]},{cfg.dims[1]}", "--patch", str(cfg.patch),
        "--seed", str(cfg.seed), "--max-module", str(cfg.max_module),
        "--epochs", str(cfg.epochs),
    ]
    if out:
        parts += ["--out", out]
    return shlex.join(parts)


def _load_places(
    data_dir: Path, name: str, cfg: TrainConfig, dataset: str | None
) -> Traversal:
    trav = load_traversal(data_dir, name, dataset=dataset, filter=cfg.filter, skip=cfg.skip)
    return require_places(trav, cfg.places)


def train(
    data_dir: str | Path,
    database: Sequence[str] = ("spring", "fall"),
    places: int = 100,
    dims: tuple[int, int] = (28, 28),
    patch: int = 15,
    seed: int = 0,
    max_module: int = 500,
    progress: bool = True,
    *,
    queries: Sequence[str] | None = None,
    epochs: int = 4,
    tolerance: int = 0,
    dataset: str | None = None,
    filter: int = 1,  # noqa: A002 - VPRTempo's name
    skip: int = 0,
    engine: str = "auto",
    command: str | None = None,
    config: TrainConfig | None = None,
) -> tuple[QuantizedNetwork, TrainReport]:
    """Train VPRTempo on ``database`` traversals of ``data_dir``, quantize, evaluate.

    Returns the int8 combined :class:`QuantizedNetwork` (metadata: command, seed, config,
    recalls) and a :class:`TrainReport` with float vs quantized Recall@1/5/10 on each held-out
    query traversal (``queries``; default: every other traversal in ``data_dir``). ``config``,
    when given, overrides all the individual hyper-parameter arguments.
    Raises DatasetError for unusable data (naming the file).
    """
    t_start = time.perf_counter()
    root = Path(data_dir)
    cfg = config or TrainConfig(
        dims=(int(dims[0]), int(dims[1])), patch=int(patch), places=int(places),
        max_module=int(max_module), epochs=int(epochs), seed=int(seed),
        database=tuple(database), filter=int(filter), skip=int(skip),
    )
    cfg.validate()
    db_travs = [_load_places(root, name, cfg, dataset) for name in cfg.database]
    if queries is None:
        queries = [t for t in list_traversals(root) if t not in cfg.database]
    q_travs = [_load_places(root, name, cfg, dataset) for name in queries]
    db_codes = [load_codes(t, cfg.dims, cfg.patch, cfg.resize, progress) for t in db_travs]
    q_codes = [load_codes(t, cfg.dims, cfg.patch, cfg.resize, progress) for t in q_travs]
    t_loaded = time.perf_counter()

    db_spikes = [codes_to_spikes(c) for c in db_codes]
    fnet = train_float(db_spikes, cfg, progress)
    t_trained = time.perf_counter()

    cmd = command if command is not None else default_command(root, cfg)
    metadata: dict[str, Any] = {
        "producer": f"tempo-hwsim simulator.vpr.training v{TRAINER_VERSION}",
        "command": cmd,
        "seed": cfg.seed,
        "train_config": cfg.to_json(),
        "preprocess": {"dims": list(cfg.dims), "patch": cfg.patch, "resize": cfg.resize},
        "dims": list(cfg.dims),
        "patch": cfg.patch,
        "database": list(cfg.database),
        "places": cfg.places,
        "modules": len(fnet.modules),
        "calibration": "MinMax observers over the database images (all modules)",
        "versions": {"numpy": np.__version__, "opencv": _cv2_version()},
        "quantization": {
            "weights": "per-channel symmetric qint8, scale=max(|min|,|max|)/127.5 (float32)",
            "activations": "per-tensor affine quint8, MinMax, "
            + ("reduce_range 0..127" if cfg.reduce_range else "0..255"),
        },
    }
    route = _route_info(root)
    if route is not None:
        metadata["route"] = route
    calib = np.concatenate(db_spikes)
    qnet = quantize_network(
        [(m.w_feature, m.w_output) for m in fnet.modules], calib, metadata, cfg.reduce_range
    )
    t_quant = time.perf_counter()

    results: list[QueryRecall] = []
    engine_used = "none (no query traversals)"
    warnings: list[str] = []
    for trav, codes in zip(q_travs, q_codes, strict=True):
        spikes = codes_to_spikes(codes)
        gt = ground_truth(len(trav), cfg.places, tolerance)
        fr = recalls(fnet.forward(spikes), gt, RECALL_NS)
        out, engine_used = run_quantized(qnet, spikes, engine)
        qr = recalls(out, gt, RECALL_NS)
        rec = QueryRecall(trav.name, len(trav), fr, qr)
        results.append(rec)
        if rec.drop > MAX_QUANT_DROP:
            warnings.append(
                f"{trav.name}: quantized Recall@1 {qr[1]:.3f} is {rec.drop:.3f} below the float "
                f"model's {fr[1]:.3f} (more than {MAX_QUANT_DROP})"
            )
    if not q_travs:
        warnings.append(f"{root}: no held-out query traversal to evaluate on")
    t_end = time.perf_counter()
    report = TrainReport(
        config=cfg, command=cmd, data_dir=str(root), queries=tuple(t.name for t in q_travs),
        modules=len(fnet.modules), tolerance=tolerance, recalls=results, engine=engine_used,
        seconds={
            "load": t_loaded - t_start, "train": t_trained - t_loaded,
            "quantize": t_quant - t_trained, "evaluate": t_end - t_quant,
        },
        warnings=warnings,
    )
    meta = dict(qnet.metadata)
    meta["recall"] = report.to_json()["recalls"]
    meta["quant_engine"] = engine_used
    meta["tolerance"] = tolerance
    qnet = replace(qnet, metadata=meta)
    return qnet, report


def retrain_from_metadata(
    metadata: dict[str, Any], data_dir: str | Path, progress: bool = False, engine: str = "auto"
) -> tuple[QuantizedNetwork, TrainReport]:
    """Train again with the settings a model's metadata records (``train_config``, seed).

    The query traversals are those recorded under ``recall``.
    """
    if "train_config" not in metadata:
        raise DatasetError("the model's metadata has no 'train_config'; it was not trained here")
    cfg = TrainConfig.from_json(metadata["train_config"])
    queries = list(metadata.get("recall", {}).keys()) or None
    return train(
        data_dir, progress=progress, queries=queries, tolerance=int(metadata.get("tolerance", 0)),
        engine=engine, command=metadata.get("command"), config=cfg,
    )
