"""PNG plots of a sweep table (matplotlib, the ``plot`` extra).

* ``sweep_<key>.png`` for every swept numeric key: Recall@1 (or, without ground truth, the
  queries whose argmax differs from the baseline) and overflow events (accumulator + pre-add)
  against the key, one line per combination of the other swept keys;
* ``pareto_energy.png``: accuracy (Recall@1, or without ground truth the argmax differences
  from the baseline) against energy per query, every ok point grey, the Pareto front marked,
  joined and labelled with its points' values.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ..plots import _pyplot
from .table import accuracy_column, pareto_front, write_atomic

PARETO_PNG = "pareto_energy.png"


def _is_numeric(df: Any, key: str) -> bool:
    import pandas as pd

    col = df[key]
    return bool(col.notna().any()) and pd.api.types.is_numeric_dtype(col) and not (
        pd.api.types.is_bool_dtype(col))


def _save(fig: Any, out_dir: Path, name: str) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return write_atomic(out_dir, name, buf.getvalue())


def short_names(keys: list[str]) -> dict[str, str]:
    """Each dotted key shortened to its fewest trailing parts that still tell it apart
    (``accumulator.bits`` -> ``bits``; ``weights.bits`` / ``spikes.bits`` stay whole)."""
    out = {}
    for k in keys:
        parts = k.split(".")
        for n in range(1, len(parts) + 1):
            tail = ".".join(parts[-n:])
            if not any(o != k and (o == tail or o.endswith("." + tail)) for o in keys):
                break
        out[k] = tail
    return out


def _label(row: Any, swept: list[str]) -> str:
    if not swept:
        return str(row["point"])
    short = short_names(swept)
    parts = [f"{short[k]}={row[k]}" for k in swept if not _missing(row[k])]
    return ", ".join(parts) or str(row["point"])


def _missing(v: Any) -> bool:
    import pandas as pd

    return v is None or v is pd.NA or (isinstance(v, float) and v != v)


def write_plots(df: Any, swept: list[str], out_dir: Path) -> list[Path]:
    """Write the PNGs into ``out_dir``; returns their paths."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    ok = df[df["status"] == "ok"].copy()
    ok["events"] = (ok["acc_events"].astype("float64")
                    + ok["pre_add_overflow"].astype("float64"))
    acc_col, acc_label = (("recall@1", "Recall@1") if "recall@1" in ok.columns
                          else ("argmax_differ", "queries whose argmax differs from baseline"))
    written = []
    short = short_names(swept)
    for key in swept:
        if not _is_numeric(ok, key):
            continue
        have = ok[ok[key].notna()]  # points that set this key (named points may not)
        others = [k for k in swept if k != key]
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        groups = have.groupby(others, dropna=False, sort=True) if others else [((), have)]
        for gkey, grp in groups:
            gkey = gkey if isinstance(gkey, tuple) else (gkey,)
            lab = ", ".join(f"{short[k]}={v}" for k, v in zip(others, gkey, strict=True)
                            if not _missing(v)) or "as configured"
            grp = grp.sort_values(key)
            xs = grp[key].astype("float64")
            axes[0].plot(xs, grp[acc_col].astype("float64"), marker="o", ms=3, label=lab)
            axes[1].plot(xs, grp["events"], marker="o", ms=3, label=lab)
        axes[0].set_ylabel(acc_label)
        axes[1].set_ylabel("overflow events (accumulator + pre-add)")
        ev = have["events"]
        if (ev > 0).any() and (ev.min() == 0 or ev.max() / max(ev.min(), 1) > 100):
            axes[1].set_yscale("symlog", linthresh=1)  # zeros and orders of magnitude
        elif not (ev > 0).any():
            axes[1].set_ylim(-0.5, 10)  # no event anywhere: a flat line at 0
        integer_x = str(have[key].dtype) == "Int64"
        for ax in axes:
            ax.set_xlabel(key)
            ax.grid(alpha=0.3)
            if integer_x:
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes[0].legend(fontsize=7)
        fig.suptitle(f"sweep over {key}")
        fig.tight_layout()
        written.append(_save(fig, out_dir, f"sweep_{key}.png"))
        plt.close(fig)
    if len(ok):
        _, direction, gain = accuracy_column(ok)
        ok["_gain"] = gain
        ys = ok[acc_col].astype("float64")
        fig, ax = plt.subplots(figsize=(8, 5))
        ax.scatter(ok["energy_uj_per_query"], ys, c="0.7", s=18, label="points")
        front = pareto_front(ok, "energy_uj_per_query", "_gain")
        fy = front[acc_col].astype("float64")
        ax.plot(front["energy_uj_per_query"], fy, "-o", c="tab:red", ms=6, label="Pareto front")
        for n, ((_, row), y) in enumerate(zip(front.iterrows(), fy, strict=True)):
            below = n % 2 == 0  # alternate sides so neighbouring labels do not collide
            ax.annotate(_label(row, swept), (row["energy_uj_per_query"], y),
                        textcoords="offset points", xytext=(6, -12) if below else (-6, 7),
                        ha="left" if below else "right", fontsize=7,
                        bbox={"boxstyle": "round,pad=0.15", "fc": "white", "alpha": 0.8,
                              "lw": 0})
        ax.margins(x=0.15, y=0.1)  # room for the labels inside the axes
        ax.set_xlabel("energy per query (uJ)")
        ax.set_ylabel(f"{acc_label} ({direction} is better)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
        ax.set_title("accuracy against energy")
        fig.tight_layout()
        written.append(_save(fig, out_dir, PARETO_PNG))
        plt.close(fig)
    return written
