"""PNG plots of a benchmark run: throughput over time, latency percentiles, retry lateness."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def draw(results: dict[str, Any], folder: Path, prefix: str = "") -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []

    if "ingest" in results or "delivery" in results:
        fig, ax = plt.subplots(figsize=(8, 4))
        for run in results.get("ingest", {}).get("runs", []):
            if run["finished"]:
                start = min(run["finished"])
                step = run.get("finished_step", 1)
                ax.hist(
                    [t - start for t in run["finished"]],
                    bins=max(1, int(run["seconds"])),
                    weights=[step] * len(run["finished"]),
                    histtype="step",
                    label=f"ingest {run['target']} c={run['concurrency']}",
                )
        for key in ("agents_1", "agents_2"):
            times = results.get("delivery", {}).get(key, {}).get("timeline")
            if times:
                step = results["delivery"]["count"] / len(times)
                ax.hist(
                    [t - times[0] for t in times],
                    bins=max(1, int(times[-1] - times[0])),
                    weights=[step] * len(times),
                    histtype="step",
                    label=f"delivery {key}",
                )
        ax.set_xlabel("seconds into the run")
        ax.set_ylabel("per second")
        ax.set_title("Throughput over time")
        ax.legend(fontsize=7)
        written.append(_save(fig, folder / f"{prefix}throughput.png"))

    bars = []
    for run in results.get("ingest", {}).get("runs", []):
        bars.append((f"ingest {run['target']}\nc={run['concurrency']}", run["latency_s"]))
    for run in results.get("e2e", {}).get("runs", []):
        bars.append((f"end to end\n{run['offered_rate']:.0f}/s", run["latency_s"]))
    if bars:
        fig, ax = plt.subplots(figsize=(9, 4))
        for i, (_label, lat) in enumerate(bars):
            for j, key in enumerate(("p50", "p90", "p99")):
                ax.bar(
                    i + (j - 1) * 0.25,
                    lat[key] * 1000,
                    width=0.25,
                    color=("#4c72b0", "#dd8452", "#c44e52")[j],
                    label=key if i == 0 else None,
                )
        ax.set_xticks(range(len(bars)), [b[0] for b in bars], fontsize=7)
        ax.set_ylabel("ms")
        ax.set_yscale("log")
        ax.set_title("Latency percentiles")
        ax.legend()
        written.append(_save(fig, folder / f"{prefix}latency.png"))

    burst = results.get("burst")
    if burst and burst["deliveries_per_s"]:
        fig, ax = plt.subplots(figsize=(8, 4))
        curve = burst["deliveries_per_s"]
        ax.plot(range(len(curve)), curve, label="deliveries/s")
        ax.set_xlabel("seconds since the first POST")
        ax.set_ylabel("deliveries per second")
        ax.set_title(f"Burst of {burst['accepted']:,} webhooks: drain")
        rss_ax = ax.twinx()
        for name in sorted(burst["rss_sampled_peak_mb"]):
            points = [(t, v[name]) for t, v in burst["rss_timeline"] if name in v]
            rss_ax.plot(*zip(*points, strict=True), linestyle=":", label=f"{name} RSS")
        rss_ax.set_ylabel("RSS (MB)")
        ax.legend(loc="upper left", fontsize=7)
        rss_ax.legend(loc="upper right", fontsize=7)
        written.append(_save(fig, folder / f"{prefix}burst.png"))

    retry = results.get("retry")
    if retry:
        fig, ax = plt.subplots(figsize=(8, 4))
        for tier, values in retry["lateness_s"].items():
            if values:
                ordered = sorted(v * 1000 for v in values)
                ax.plot(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))], label=tier)
        ax.set_xlabel("lateness of the next attempt against its due time (ms)")
        ax.set_ylabel("fraction of retries")
        ax.set_title(f"Retry lateness, ladder {retry['ladder']}")
        ax.legend()
        written.append(_save(fig, folder / f"{prefix}retry_lateness.png"))
    return written


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
