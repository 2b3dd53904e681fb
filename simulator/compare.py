"""Comparisons written into report.json: against codes produced elsewhere and against the
hidden reference run of ``report.compare_with``.

* :func:`load_external_codes` reads and checks a ``CODES.npy`` (an engine's or an RTL
  simulation's output codes, (queries, places), every module's codes side by side) *before*
  anything is computed; int8 codes of a TFLite graph become hwsim's uint8 form (+128).
* :func:`compare_external` counts differing codes and argmaxes (the argmax uses the same
  readout join as hwsim's own predictions).
* :func:`reference_run` runs ``report.compare_with`` on the same model and inputs, with the
  user's ``--set`` items that the reference config does not pin itself; any error it raises
  says that it came from this hidden reference run.
"""

from __future__ import annotations

import hashlib
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .config import ConfigError, HwConfig, load_config, resolve_config_path
from .engine import InputError, SimResult, simulate
from .fixedpoint import RegisterOverflowError
from .network import ModelError, QuantizedNetwork
from .units.readout import join_modules
from .units.weight_requant import narrow_network


def load_external_codes(path: str | Path, net: QuantizedNetwork, queries: int) -> np.ndarray:
    """Read ``CODES.npy`` (queries, places) of integer codes as int64 in hwsim's code domain.

    uint8 codes are taken as they are; int8 codes are shifted by +128 when the model came from
    a TFLite graph (``activation_offset`` metadata), else refused (they cannot be uint8 codes).
    Raises InputError naming the file and the fix.
    """
    p = Path(path)
    where = f"--compare-with {p}"
    if not p.is_file():
        raise InputError(f"{where}: no such file; give a .npy of output codes (queries, places)")
    try:
        arr = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"{where}: not a readable .npy array ({exc})") from None
    if isinstance(arr, np.lib.npyio.NpzFile):
        arr.close()
        raise InputError(f"{where}: is an .npz archive; give one .npy array (queries, places)")
    want = (queries, net.places)
    if arr.ndim != 2 or arr.shape != want:
        raise InputError(
            f"{where}: shape {arr.shape} does not fit this run's outputs {want} (queries, "
            "places; every module's codes side by side, modules in order)"
        )
    if arr.dtype.kind not in "iu":
        raise InputError(f"{where}: dtype {arr.dtype}; give integer output codes (uint8/int8)")
    codes = arr.astype(np.int64)
    offset = int(net.metadata.get("activation_offset", 0))
    if arr.dtype == np.int8 and offset:
        codes = codes + offset
    elif arr.dtype.kind == "i" and codes.size and int(codes.min()) < 0:
        raise InputError(
            f"{where}: has negative codes (min {int(codes.min())}) but this model's outputs are "
            "uint8; int8 engine codes are uint8 codes - 128: add 128 (or import the engine's "
            ".tflite, which records the offset)"
        )
    return codes


def compare_external(
    result: SimResult, net: QuantizedNetwork, cfg: HwConfig, codes: np.ndarray, source: str
) -> dict[str, Any]:
    """The ``compare_with_codes`` block of report.json: hwsim's outputs against ``codes``."""
    sim = result.outputs
    diff = sim != codes
    first = None
    if diff.any():
        q, j = (int(v) for v in np.argwhere(diff)[0])
        first = {"query": q, "place": j, "hwsim": int(sim[q, j]), "external": int(codes[q, j])}
    splits = np.cumsum([m.places for m in net.modules])[:-1]
    parts = np.split(codes, splits, axis=1)
    concat = cfg.readout.concat if net.layout == "combined" else "codes"
    scores = join_modules(
        parts,
        [m.layer("output").output_scale for m in net.modules],
        [m.layer("output").output_zero_point for m in net.modules],
        concat,
    )
    pred = np.argmax(scores, axis=1)
    digest = hashlib.sha256(Path(source).read_bytes()).hexdigest() if Path(source).is_file() \
        else ""
    return {
        "source": str(source),
        "sha256": digest,
        "code_offset": int(net.metadata.get("activation_offset", 0)),
        "codes_total": int(sim.size),
        "codes_differing": int(diff.sum()),
        "max_abs_code_difference": int(np.abs(sim - codes).max(initial=0)),
        "argmax_differing": int((pred != result.predictions).sum()),
        "queries": int(sim.shape[0]),
        "first_difference": first,
    }


# keys that change timing, capacity or the readout but not a single output code: a reference
# run takes them from --set even where its own file sets them
SHARED_KEYS: tuple[str, ...] = (
    "schedule.", "clock.", "energy.", "readout.", "report.headroom", "weights.capacity_kib",
    "weights.banks", "weights.word_bits", "weights.read_ports", "mac.lanes",
    "requant.throughput", "requant.latency",
)


def _sets_key(raw: dict[str, Any], parts: list[str]) -> bool:
    node: Any = raw
    for part in parts:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return bool(parts)


def reference_overrides(reference: str, overrides: list[str] | tuple[str, ...]) -> tuple[
    list[str], list[str]
]:
    """Split ``--set`` items into (applied to the reference run, skipped).

    Applied: keys that do not change output codes (:data:`SHARED_KEYS`: schedule, clock,
    energy, readout, memory organisation, lanes, requantizer timing) and keys the reference
    config file does not set itself. Skipped: ``report.compare_with`` and any arithmetic key
    the reference pins (its own arithmetic is what is being compared against).
    """
    path = resolve_config_path(reference)
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    applied, skipped = [], []
    for item in overrides:
        key = item.partition("=")[0].strip()
        parts = key.split(".")
        # a per-layer key (layers.output.requant.rounding) is pinned where the reference sets
        # it for that layer or for every layer (requant.rounding)
        pinned = _sets_key(raw, parts) or (parts[0] == "layers" and _sets_key(raw, parts[2:]))
        shared = key.startswith(SHARED_KEYS) or (
            parts[0] == "layers" and ".".join(parts[2:]).startswith(SHARED_KEYS))
        if key == "report.compare_with" or (pinned and not shared):
            skipped.append(item)
        else:
            applied.append(item)
    return applied, skipped


def reference_run(
    net: QuantizedNetwork,
    cfg: HwConfig,
    inputs: np.ndarray,
    overrides: list[str] | tuple[str, ...] = (),
    source: str = "input",
) -> tuple[SimResult, HwConfig, list[str], list[str]]:
    """Run ``cfg.report.compare_with`` on the same model and inputs.

    Returns (result, reference config, --set items applied, skipped). Every error names the
    hidden reference run, e.g. ``hidden reference run 'pytorch_fbgemm' (report.compare_with
    of int8_fixed_point): ...``.
    """
    ref = cfg.report.compare_with
    note = f"hidden reference run {ref!r} (report.compare_with of {cfg.name})"
    try:
        applied, skipped = reference_overrides(ref, overrides)
        ref_cfg = load_config(ref, applied)
        result = simulate(narrow_network(net, ref_cfg)[0], ref_cfg, inputs, source=source)
    except RegisterOverflowError as exc:
        raise RegisterOverflowError(f"{note}: {exc}; set report.compare_with = '' to skip it",
                                    exc.flat_index, exc.value) from None
    except (ConfigError, ModelError, InputError) as exc:
        raise type(exc)(f"{note}: {exc}; set report.compare_with = '' to skip it") from None
    return result, ref_cfg, applied, skipped
