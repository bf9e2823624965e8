"""The benchmark figure: grid intensity per region, where greenmodel placed the work, and
cumulative emissions per policy. matplotlib is imported lazily (the `bench` extra)."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Sequence

import numpy as np

from greenmodel.bench.metrics import PolicyRun, hourly_grams

if TYPE_CHECKING:  # pragma: no cover
    from greenmodel.bench.simulator import Scenario


def _smooth(values: np.ndarray, hours: int) -> np.ndarray:
    """Daily means for runs longer than two weeks, so a year stays readable; else hourly."""
    if hours <= 24 * 14:
        return values
    n = hours // 24 * 24
    return values[:n].reshape(-1, 24).mean(axis=1)


TRUTH_PLOTTED = ("static", "best-fixed", "best-fixed-autoscaled", "greenmodel", "relaxed-oracle")


def write_plot(path, scenario: "Scenario", runs: Sequence[PolicyRun], focus: str = "greenmodel",
               policies: dict | None = None) -> None:
    """The figure; with ``policies`` (the result's, judged by the ground truth) a fourth panel plots each judged
    hour's ground-truth p95 inter-token latency of the main policies against the SLO."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError("--plot needs matplotlib: pip install 'greenmodel-operator[bench]'") from exc

    hours = scenario.hours
    t = [scenario.start + timedelta(hours=h) for h in range(hours)]
    daily = hours > 24 * 14
    td = t[::24][: hours // 24] if daily else t
    regions = scenario.regions
    colours = {r: plt.cm.tab10(i % 10) for i, r in enumerate(regions)}

    truth = {n: (policies or {}).get(n, {}).get("groundTruth") for n in TRUTH_PLOTTED}
    truth = {n: g for n, g in truth.items() if g and g.get("hourly", {}).get("hours")}
    rows = 4 if truth else 3
    fig, axes = plt.subplots(rows, 1, figsize=(11, 8.5 + 2.5 * (rows - 3)), sharex=True,
                             gridspec_kw={"height_ratios": [3, 2, 3, 3][:rows]})
    ax = axes[0]
    for i, r in enumerate(regions):
        ax.plot(td, _smooth(scenario.intensity[i], hours), lw=0.9, color=colours[r], label=r)
    ax.set_ylabel("gCO2e/kWh" + (" (daily mean)" if daily else ""))
    ax.set_title("Grid carbon intensity per region (Electricity Maps, direct)")
    ax.legend(ncol=len(regions), fontsize=8, loc="upper right")
    ax.grid(alpha=0.3)

    ax = axes[1]
    focus_run = next((r for r in runs if r.name == focus), None)
    if focus_run is not None:
        idx = np.array([regions.index(r) for r in focus_run.region])
        variants = sorted(set(focus_run.variant))
        vcol = {v: plt.cm.Set1(j % 9) for j, v in enumerate(variants)}
        # one thin lane per variant inside each region's row, coloured by variant
        lane = {v: (j - (len(variants) - 1) / 2) * (0.6 / max(1, len(variants))) for j, v in enumerate(variants)}
        tt = np.array([x.replace(tzinfo=None) for x in t], dtype="datetime64[s]")
        for v in variants:
            m = np.array([x == v for x in focus_run.variant])
            ax.scatter(tt[m], idx[m] + lane[v], s=3, marker="s", color=vcol[v], label=v, rasterized=True, linewidths=0)
        ax.set_yticks(range(len(regions)), regions)
        ax.set_ylim(-0.5, len(regions) - 0.5)
        ax.legend(fontsize=7, loc="upper right", markerscale=3, ncol=min(3, len(variants)))
        ax.set_title(f"Where {focus} served the workload (row = region, colour = variant; "
                     f"{sum(focus_run.switched)} switches)")
    ax.grid(alpha=0.3)

    ax = axes[2]
    styles = ["-", "--", "-", ":", "-."]
    floor = []
    for k, run in enumerate(runs):
        cum = np.cumsum(hourly_grams(run, with_embodied=True)) / 1000.0
        ax.plot(t, cum, lw=1.6, ls=styles[k % len(styles)], label=f"{run.name} ({cum[-1]:,.0f} kg)")
        floor.append(cum[min(23, len(cum) - 1)])  # start the log axis at the first day's emissions
    ax.set_yscale("log")
    if floor and min(floor) > 0:
        ax.set_ylim(bottom=min(floor))
    ax.set_ylabel("kgCO2e, log scale (Scope 2 + embodied)")
    ax.set_title("Cumulative emissions per policy")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)

    if truth:
        ax = axes[3]
        for k, (name, g) in enumerate(truth.items()):
            hh = g["hourly"]
            pts = [(t[h], v) for h, v in zip(hh["hours"], hh["p95ItlMilliseconds"]) if v is not None]
            if pts:
                ax.plot([a for a, _ in pts], [b for _, b in pts], marker="o", ms=3, lw=1.0,
                        ls=styles[k % len(styles)], label=f"{name} ({100 * g['sloAttainment']:.0f} % of hours in SLO)")
        slo = scenario.spec.latency.inter_token_p95_milliseconds
        ax.axhline(slo, color="black", lw=1.2, ls="--", label=f"SLO {slo:g} ms")
        ax.set_yscale("log")
        ax.set_ylabel("p95 ITL, ms (ground truth)")
        ax.set_title("Ground truth: p95 inter-token latency of each judged hour against the SLO")
        ax.legend(fontsize=7, loc="upper left", ncol=2)
        ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=80, format="png")
    plt.close(fig)
