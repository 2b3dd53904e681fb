"""The sweep table: one row per point, its columns, the Pareto fronts, and the files.

Columns (docs/sweeps.md): the swept keys by dotted name, then ``point``, ``status``, ``error``,
``recall@1/5/10`` (with ground truth), the overflow counts, the baseline comparison, cycles,
weight memory, energy and ``seconds``.
"""

from __future__ import annotations

import io
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

RECALL_COLUMNS = ("recall@1", "recall@5", "recall@10")
INT_COLUMNS = (
    "acc_events", "acc_wrap", "acc_saturate", "pre_add_overflow", "requant_clamps",
    "min_safe_acc_bits", "codes_differ", "argmax_differ", "weight_memory_bits",
)
FLOAT_COLUMNS = ("cycles_per_query", "energy_uj_per_query", "seconds")
METRIC_COLUMNS = (*INT_COLUMNS[:6], "codes_differ", "argmax_differ", "cycles_per_query",
                  "weight_memory_bits", "energy_uj_per_query", "seconds")


def columns(swept: list[str], with_recall: bool) -> list[str]:
    """The table's columns in order."""
    return [*swept, "point", "status", "error",
            *(RECALL_COLUMNS if with_recall else ()), *METRIC_COLUMNS]


def metrics_from_report(report: dict[str, Any], weight_memory_bits: int) -> dict[str, Any]:
    """The per-point numbers of a run report (everything but the baseline comparison)."""
    ov = report["overflow"].values()
    wrap = sum(int(o["acc_wrap"]) for o in ov)
    sat = sum(int(o["acc_saturate"]) for o in ov)
    row: dict[str, Any] = {
        "acc_events": wrap + sat,
        "acc_wrap": wrap,
        "acc_saturate": sat,
        "pre_add_overflow": sum(int(o["pre_add_overflow"]) for o in ov),
        "requant_clamps": sum(int(o["requant_clamp_low"]) + int(o["requant_clamp_high"])
                              for o in ov),
        "min_safe_acc_bits": max(int(o["min_safe_acc_bits"]) for o in ov),
        "cycles_per_query": report["cycles"]["total"] / max(int(report["queries"]), 1),
        "weight_memory_bits": int(weight_memory_bits),
        "energy_uj_per_query": float(report["energy"]["per_query_uj"]),
    }
    if "readout" in report:
        rec = report["readout"]["recall"]
        for n in (1, 5, 10):
            row[f"recall@{n}"] = float(rec[f"R@{n}"])
    return row


def make_frame(rows: list[dict[str, Any]], swept: list[str], with_recall: bool) -> Any:
    """A pandas DataFrame with the table's columns and dtypes (nullable ints for errors)."""
    import pandas as pd

    cols = columns(swept, with_recall)
    df = pd.DataFrame([{c: r.get(c) for c in cols} for r in rows], columns=cols)
    for c in INT_COLUMNS:
        df[c] = pd.array([None if v is None or v != v else int(v) for v in df[c]], dtype="Int64")
    for c in (*FLOAT_COLUMNS, *(RECALL_COLUMNS if with_recall else ())):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
    df["error"] = df["error"].fillna("").astype(str)
    for c in swept:  # one type per column for Parquet; points without the key: missing
        raw = [r.get(c) for r in rows]
        vals = [v for v in raw if v is not None]
        if vals and all(isinstance(v, bool) for v in vals):
            df[c] = pd.array(raw, dtype="boolean")
        elif vals and all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
            df[c] = pd.array(raw, dtype="Int64")
        elif vals and all(isinstance(v, int | float) and not isinstance(v, bool) for v in vals):
            df[c] = pd.array([None if v is None else float(v) for v in raw], dtype="Float64")
        else:
            df[c] = pd.array([None if v is None else str(v) for v in raw], dtype="string")
    return df


# --- Pareto fronts ---------------------------------------------------------------------------


def pareto_front(df: Any, cost: str, gain: str) -> Any:
    """Rows of ``df`` (status ok) not dominated in (lower ``cost``, higher ``gain``), by cost."""
    ok = df[(df["status"] == "ok") & df[cost].notna() & df[gain].notna()]
    ok = ok.sort_values([cost, gain], ascending=[True, False], kind="stable")
    keep = []
    best = -np.inf
    for idx, row in ok.iterrows():
        if float(row[gain]) > best:
            keep.append(idx)
            best = float(row[gain])
    return ok.loc[keep]


def accuracy_column(df: Any) -> tuple[str, str, Any]:
    """(column shown, direction, gain values) of the accuracy axis: Recall@1 (higher is
    better), or without ground truth ``argmax_differ`` against the baseline (lower is better)."""
    if "recall@1" in df.columns:
        return "recall@1", "higher", df["recall@1"].astype("float64")
    return "argmax_differ", "lower", -df["argmax_differ"].astype("float64")


def format_table(df: Any, cols: list[str]) -> str:
    """Plain aligned text table (numbers right-aligned, floats to 4 significant digits)."""
    import pandas as pd

    def cell(v: Any) -> str:
        if v is None or v is pd.NA or (isinstance(v, float) and v != v):
            return "-"
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    body = [[cell(v) for v in row] for row in df[cols].itertuples(index=False)]
    widths = [max(len(c), *(len(r[i]) for r in body)) if body else len(c)
              for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in body]
    return "\n".join(lines)


# --- files ------------------------------------------------------------------------------------


class OutputError(OSError):
    """The output folder cannot be written safely."""


def safe_dir(path: Path) -> Path:
    """Create ``path`` (one level) as a real folder; refuse a symlink or a file in its place."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        path.mkdir()
        return path
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise OutputError(f"{path}: exists and is not a folder (a link or a file); remove it")
    return path


def _umask() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def write_atomic(directory: Path, name: str, data: bytes) -> Path:
    """Write ``directory/name`` through an unpredictable temp file in ``directory`` and
    os.replace it over the final name (a link planted at the name is replaced, never
    followed). The one place sweep files are written (the lead swaps in the shared writer)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; results are ordinary files
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, directory / name)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return directory / name


def table_bytes(df: Any) -> tuple[bytes, bytes]:
    """(parquet, csv) encodings of the table."""
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue(), df.to_csv(index=False).encode()
