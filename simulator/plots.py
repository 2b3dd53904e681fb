"""PNG plots of a run report (matplotlib, an optional extra: ``pip install 'tempo-hwsim[plot]'``).

* ``events_per_neuron.png``: per layer, accumulator / pre-add events and requantizer clamps
  per output neuron (from the report's ``overflow.<layer>.per_neuron`` lists);
* ``acc_range.png``: per layer, the accumulator register's range against the range the
  partial sums really took and percentiles of |final accumulator|, on a symmetric log axis.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

from .outputs import ResultSet, owned_by_patterns

EVENTS_PNG = "events_per_neuron.png"
RANGE_PNG = "acc_range.png"


class PlotError(RuntimeError):
    """Plotting is impossible (matplotlib missing, or the report lacks the data)."""


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise PlotError(
            "--plot needs matplotlib, which is not installed: pip install 'tempo-hwsim[plot]'"
        ) from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


_SERIES = (
    ("acc", "accumulator events", "tab:red"),
    ("pre_add", "pre-add events", "tab:orange"),
    ("clamp_low", "requant clamp low", "tab:blue"),
    ("clamp_high", "requant clamp high", "tab:green"),
)


def check_plottable(report: dict[str, Any]) -> None:
    """Raise PlotError (before anything is printed or written) if a plot cannot be drawn."""
    _pyplot()
    ov = report.get("overflow", {})
    if not ov:
        raise PlotError("the report has no 'overflow' section to plot")
    missing = [k for k, v in ov.items() if "per_neuron" not in v]
    if missing:
        raise PlotError(
            f"the report has no per-neuron counts for {', '.join(missing)} (written by an "
            "older hwsim); run it again to plot events per neuron"
        )


def plot_events_per_neuron(report: dict[str, Any], path: Path | IO[bytes]) -> Path | IO[bytes]:
    """One panel per layer: event counts against output neuron index."""
    plt = _pyplot()
    ov = report.get("overflow", {})
    if not ov:
        raise PlotError("the report has no 'overflow' section to plot")
    missing = [k for k, v in ov.items() if "per_neuron" not in v]
    if missing:
        raise PlotError(
            f"the report has no per-neuron counts for {', '.join(missing)} (written by an "
            "older hwsim); run it again to plot events per neuron"
        )
    keys = list(ov)
    fig, axes = plt.subplots(len(keys), 1, figsize=(10, 2.6 * len(keys)), squeeze=False)
    for ax, key in zip(axes[:, 0], keys, strict=True):
        per = ov[key]["per_neuron"]
        n_out = report.get("layers", {}).get(key, {}).get("out_features")
        drawn = False
        for field, label, color in _SERIES:
            pairs = per.get(field) or []
            if not pairs:
                continue
            xs = [p[0] for p in pairs]
            ys = [p[1] for p in pairs]
            total = sum(ys)
            ax.vlines(xs, 0, ys, colors=color, linewidth=1.0, alpha=0.8)
            ax.plot(xs, ys, ".", color=color, markersize=3,
                    label=f"{label}: {total:,} in {len(xs):,} neurons")
            drawn = True
        if not drawn:
            ax.text(0.5, 0.5, "no events", transform=ax.transAxes, ha="center", va="center",
                    color="grey")
        if n_out:
            ax.set_xlim(-0.5, n_out - 0.5)
        ax.set_ylim(bottom=0)
        ax.set_title(f"layer {key}", fontsize=10, loc="left")
        ax.set_ylabel("events (run)")
        if drawn:
            ax.legend(fontsize=8, loc="upper right")
    axes[-1, 0].set_xlabel("output neuron")
    fig.suptitle(f"events per neuron - {report.get('config', {}).get('name', '')}, "
                 f"{report.get('queries', '?')} queries", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
    return path


def plot_acc_range(report: dict[str, Any], path: Path | IO[bytes]) -> Path | IO[bytes]:
    """Per layer: register range, partial-sum range and |acc| percentiles (symlog axis)."""
    plt = _pyplot()
    ov = report.get("overflow", {})
    if not ov:
        raise PlotError("the report has no 'overflow' section to plot")
    keys = list(ov)
    fig, ax = plt.subplots(figsize=(10, 2.0 + 1.0 * len(keys)))
    lim = 1.0
    for i, key in enumerate(keys):
        o = ov[key]
        bits = int(o.get("acc_bits", 0))
        reg = o.get("acc_register_range") or [-(1 << (bits - 1)), (1 << (bits - 1)) - 1]
        part = o.get("partial_sum_range") or [0, 0]
        y = len(keys) - 1 - i
        ax.barh(y, reg[1] - reg[0], left=reg[0], height=0.7, color="lightgrey",
                edgecolor="grey", label="register range" if i == 0 else None)
        events = o.get("acc_wrap", 0) + o.get("acc_saturate", 0)
        ax.barh(y, part[1] - part[0], left=part[0], height=0.35,
                color="tab:red" if events else "tab:blue",
                label="partial sums (run)" if i == 0 else None)
        pct = o.get("acc_abs_percentiles") or {}
        for name, marker in (("50", "|"), ("99", "x"), ("100", "d")):
            if name in pct:
                v = pct[name]
                ax.plot([v, -v], [y, y], marker, color="black", markersize=7,
                        label=f"|final acc| p{name}" if i == 0 else None)
        ax.text(reg[1], y + 0.38, f" {bits} bits, needs {o.get('min_safe_acc_bits', '?')} "
                f"(headroom {o.get('headroom_bits', 0):+d}), events {events:,}",
                fontsize=8, va="bottom", ha="right")
        lim = max(lim, abs(reg[0]), abs(reg[1]), abs(part[0]), abs(part[1]))
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlim(-lim * 2, lim * 2)
    ax.set_ylim(-0.6, len(keys) - 0.2)
    ax.set_yticks(range(len(keys)), list(reversed(keys)))
    ax.set_xlabel("accumulator value (symmetric log scale)")
    ax.axvline(0, color="black", linewidth=0.5)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=5)
    name = report.get("config", {}).get("name", "")
    ax.set_title(f"accumulator range vs register range - {name}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
    return path


def plot_report(report: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Write both PNGs into ``out_dir`` together (staged, then published; a symlink planted
    at either name is replaced, never followed); return their paths."""
    check_plottable(report)  # fail before touching the folder
    with ResultSet(out_dir, owned=owned_by_patterns([]), option="--plot-dir") as rs:
        for name, plot in ((EVENTS_PNG, plot_events_per_neuron), (RANGE_PNG, plot_acc_range)):
            with rs.open_file(name) as fh:
                plot(report, fh)
        return rs.commit()
