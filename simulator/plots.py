"""PNG plots of a run report (matplotlib, an optional extra: ``pip install 'tempo-hwsim[plot]'``).

* ``events_per_neuron.png``: per layer, accumulator / pre-add events and requantizer clamps
  per output neuron (from the report's ``overflow.<layer>.per_neuron`` lists), series side
  by side, the hottest neurons labelled;
* ``acc_range.png``: per layer, on an axis in bits (sign * log2(|v| + 1)), the register's rails
  at +-2^(bits-1), the range the exact partial sums took (red beyond a rail) and percentiles
  of |final accumulator|;
* ``events_over_time.png``: per layer, events per query and the cycle of the first event.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import IO, Any

from .outputs import ResultSet, owned_by_patterns

EVENTS_PNG = "events_per_neuron.png"
RANGE_PNG = "acc_range.png"
TIME_PNG = "events_over_time.png"


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
    # (report key, label, colour, marker, x offset): offsets keep series side by side
    ("acc", "accumulator events", "tab:red", "o", -0.27),
    ("pre_add", "pre-add events", "tab:orange", "s", -0.09),
    ("clamp_low", "requant clamp low", "tab:blue", "v", 0.09),
    ("clamp_high", "requant clamp high", "tab:green", "^", 0.27),
)
HOTTEST = 3  # neurons labelled per layer


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
    """One panel per layer: event counts against output neuron index.

    The four series sit side by side (a fixed x offset each, own marker), so no series hides
    another at the same neuron; the ``HOTTEST`` neurons by total events are labelled.
    """
    plt = _pyplot()
    check_plottable(report)
    from matplotlib.ticker import MaxNLocator
    ov = report["overflow"]
    keys = list(ov)
    fig, axes = plt.subplots(len(keys), 1, figsize=(10, 2.8 * len(keys)), squeeze=False)
    for ax, key in zip(axes[:, 0], keys, strict=True):
        per = ov[key]["per_neuron"]
        n_out = report.get("layers", {}).get(key, {}).get("out_features")
        drawn = False
        totals: dict[int, int] = {}
        top = 0
        for field, label, color, marker, dx in _SERIES:
            pairs = per.get(field) or []
            if not pairs:
                continue
            xs = [p[0] + dx for p in pairs]
            ys = [p[1] for p in pairs]
            for p in pairs:
                totals[p[0]] = totals.get(p[0], 0) + p[1]
            top = max(top, max(ys))
            ax.vlines(xs, 0, ys, colors=color, linewidth=1.2)
            ax.plot(xs, ys, marker, color=color, markersize=4, linestyle="none",
                    label=f"{label}: {sum(ys):,} in {len(xs):,} neurons")
            drawn = True
        hot = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:HOTTEST]
        for j, total in hot:
            height = max(p[1] for f, *_ in _SERIES for p in (per.get(f) or []) if p[0] == j)
            ax.annotate(f"n{j}: {total:,}", (j, height), textcoords="offset points",
                        xytext=(0, 6), ha="center", fontsize=8, fontweight="bold")
        if not drawn:
            ax.text(0.5, 0.5, "no events", transform=ax.transAxes, ha="center", va="center",
                    color="grey")
        if n_out:
            ax.set_xlim(-0.5, n_out - 0.5)
        ax.set_ylim(0, max(1.0, top * 1.3))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"layer {key}" + (f" - hottest: {', '.join(f'n{j}' for j, _ in hot)}"
                                       if hot else ""), fontsize=10, loc="left")
        ax.set_ylabel("events (run)")
        if drawn:
            ax.legend(fontsize=7, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=4,
                      frameon=False)
    axes[-1, 0].set_xlabel("output neuron")
    fig.suptitle(f"events per neuron - {report.get('config', {}).get('name', '')}, "
                 f"{report.get('queries', '?')} queries", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
    return path


def signed_bits(v: float) -> float:
    """Axis position of a value in bits: sign(v) * log2(|v| + 1) (0 at 0, ~+-k at +-2^k)."""
    return math.copysign(math.log2(abs(v) + 1.0), v)


def plot_acc_range(report: dict[str, Any], path: Path | IO[bytes]) -> Path | IO[bytes]:
    """Per layer, on an axis in bits (sign(v) * log2(|v|+1)): the register's rails at
    +-2^(bits-1), the range the exact (unbounded) partial sums took - red beyond a rail - and
    percentiles of |final accumulator|."""
    plt = _pyplot()
    ov = report.get("overflow", {})
    if not ov:
        raise PlotError("the report has no 'overflow' section to plot")
    keys = list(ov)
    fig, ax = plt.subplots(figsize=(10, 2.2 + 1.0 * len(keys)))
    lim = 1.0
    red_labelled = False
    for i, key in enumerate(keys):
        o = ov[key]
        bits = int(o.get("acc_bits", 0))
        reg = o.get("acc_register_range") or [-(1 << (bits - 1)), (1 << (bits - 1)) - 1]
        part = o.get("partial_sum_range") or [0, 0]
        y = len(keys) - 1 - i
        lo_r, hi_r = signed_bits(reg[0]), signed_bits(reg[1])
        ax.barh(y, hi_r - lo_r, left=lo_r, height=0.7, color="whitesmoke", edgecolor="grey",
                label="register range" if i == 0 else None)
        for rail in (lo_r, hi_r):
            ax.plot([rail, rail], [y - 0.4, y + 0.4], color="black", linewidth=2,
                    label="register rails +-2^(bits-1)" if i == 0 and rail == lo_r else None)
        lo_p, hi_p = signed_bits(part[0]), signed_bits(part[1])
        inside = (max(lo_p, lo_r), min(hi_p, hi_r))
        ax.barh(y, inside[1] - inside[0], left=inside[0], height=0.3, color="tab:blue",
                label="exact partial sums, inside" if i == 0 else None)
        for a, b in ((lo_p, min(lo_r, hi_p)), (max(hi_r, lo_p), hi_p)):
            if b > a:
                ax.barh(y, b - a, left=a, height=0.3, color="tab:red",
                        label=None if red_labelled else "exact partial sums, beyond the register")
                red_labelled = True
        pct = o.get("acc_abs_percentiles") or {}
        for name, marker in (("50", "|"), ("99", "x"), ("100", "d")):
            if name in pct:
                v = signed_bits(pct[name])
                ax.plot([v, -v], [y, y], marker, color="black", markersize=7,
                        label=f"|final acc| p{name}" if i == 0 else None)
        events = o.get("acc_wrap", 0) + o.get("acc_saturate", 0)
        ax.text(0, y + 0.4, f"{key}: {bits} bits, needs {o.get('min_safe_acc_bits', '?')} "
                f"(headroom {o.get('headroom_bits', 0):+d}), {events:,} accumulator events",
                fontsize=8, va="bottom", ha="center")
        lim = max(lim, abs(lo_r), hi_r, abs(lo_p), hi_p)
    top = math.ceil(lim) + 1
    ax.set_xlim(-top, top)
    ax.set_ylim(-0.6, len(keys) - 0.1)
    ax.set_yticks(range(len(keys)), list(reversed(keys)))
    step = max(1, top // 8)
    ticks = [k for k in range(-top + 1, top) if k % step == 0]
    ax.set_xticks(ticks, [("-" if k < 0 else "") + (f"2^{abs(k)}" if k else "0") for k in ticks],
                  fontsize=8)
    ax.set_xlabel("accumulator value, in bits: sign * log2(|value| + 1)")
    ax.axvline(0, color="black", linewidth=0.5)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=3)
    name = report.get("config", {}).get("name", "")
    ax.set_title(f"accumulator range vs register range - {name}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
    return path


def plot_events_over_time(report: dict[str, Any], path: Path | IO[bytes]) -> Path | IO[bytes]:
    """Per layer, events per query (report ``overflow.<layer>.per_query``) and the cycle of the
    layer's first event: when in the run the overflows happen."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    ov = report.get("overflow", {})
    keys = list(ov)
    fig, axes = plt.subplots(len(keys), 1, figsize=(10, 2.6 * len(keys)), squeeze=False)
    queries = int(report.get("queries", 0) or 0)
    for ax, key in zip(axes[:, 0], keys, strict=True):
        per = ov[key].get("per_query")
        if per is None:
            ax.text(0.5, 0.5, "no per-query counts (report written by an older hwsim)",
                    transform=ax.transAxes, ha="center", va="center", color="grey")
            continue
        drawn = False
        for (field, label, color, marker), dx in zip(
                (("acc", "accumulator events", "tab:red", "o"),
                 ("pre_add", "pre-add events", "tab:orange", "s"),
                 ("clamp", "requant clamps", "tab:blue", "v")), (-0.2, 0.0, 0.2), strict=True):
            pairs = per.get(field) or []
            if pairs:
                xs = [p[0] + dx for p in pairs]
                ys = [p[1] for p in pairs]
                ax.vlines(xs, 0, ys, colors=color, linewidth=1.2)
                ax.plot(xs, ys, marker, color=color, markersize=4, linestyle="none",
                        label=f"{label}: {sum(ys):,} in {len(xs):,} queries")
                drawn = True
        first = ov[key].get("first")
        title = f"layer {key}"
        if first:
            title += (f" - first event: {first.get('kind')} at cycle {first.get('cycle'):,} "
                      f"(query {first.get('query')}, neuron {first.get('neuron')})")
            ax.axvline(first.get("query", 0), color="grey", linestyle=":", linewidth=1)
        if not drawn:
            ax.text(0.5, 0.5, "no events", transform=ax.transAxes, ha="center", va="center",
                    color="grey")
        else:
            ax.legend(fontsize=7, loc="lower right", bbox_to_anchor=(1.0, 1.07), ncol=3,
                      frameon=False)
        if queries:
            ax.set_xlim(-0.5, queries - 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(0, max(1.0, ax.get_ylim()[1] * 1.1))
        ax.set_title(title, fontsize=10, loc="left")
        ax.set_ylabel("events")
    axes[-1, 0].set_xlabel("query (in run order; query q starts at cycles.per_query[:q] summed)")
    fig.suptitle(f"when events happen - {report.get('config', {}).get('name', '')}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
    return path


def plot_report(report: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Write both PNGs into ``out_dir`` together (staged, then published; a symlink planted
    at either name is replaced, never followed); return their paths."""
    check_plottable(report)  # fail before touching the folder
    with ResultSet(out_dir, owned=owned_by_patterns([]), option="--plot-dir") as rs:
        for name, plot in ((EVENTS_PNG, plot_events_per_neuron), (RANGE_PNG, plot_acc_range),
                           (TIME_PNG, plot_events_over_time)):
            with rs.open_file(name) as fh:
                plot(report, fh)
        return rs.commit()
