"""``make bench``: start the benchmark stack, run every scenario, print a table, write the raw
results (``bench/results/<timestamp>.json``) and PNG plots (``bench/results/*.png``).

``--quick`` runs small versions of each scenario (a smoke check of a few minutes); ``--only``
names the scenarios to run; ``--baseline REF`` is the git ref whose components the
``subscriptions`` and ``fanout`` scenarios also run, side by side (none when it is this code).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import confluent_kafka

from bench import harness, plots, scale, scenarios
from webhookmaster.settings import PROJECT_ROOT

RESULTS = PROJECT_ROOT / "bench" / "results"
ALL = (
    "ingest",
    "direct",
    "delivery",
    "e2e",
    "retry",
    "projection",
    "isolation",
    "punctual",
    "burst",
    "fifo",
    "subscriptions",
    "fanout",
)


def conditions(settings: Any) -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "kafka": settings.kafka_version,
        "confluent_kafka": importlib.metadata.version("confluent-kafka"),
        "librdkafka": confluent_kafka.libversion()[0],
        "aiohttp": aiohttp.__version__,
        "partitions": settings.topic_partitions,
        "load_average_at_start": os.getloadavg(),
    }


def run(selected: list[str], quick: bool, baseline_ref: str = "") -> dict[str, Any]:
    settings = harness.base_settings()
    out: dict[str, Any] = {"quick": quick, "conditions": conditions(settings)}
    out["conditions"]["commit"] = harness.git_commit()
    needs_baseline = {"subscriptions", "fanout"} & set(selected)
    with harness.baseline_tree(baseline_ref if needs_baseline else "") as base:
        if base is not None:
            out["conditions"]["baseline"] = harness.git_commit(baseline_ref)
        _run(settings, selected, quick, base, out)
    return out


def _run(
    settings: Any, selected: list[str], quick: bool, base: Path | None, out: dict[str, Any]
) -> None:
    plan = {
        "ingest": lambda: scenarios.ingest(
            settings, 3 if quick else 20, [32] if quick else [32, 64]
        ),
        "direct": lambda: scenarios.direct_produce(settings, 5_000 if quick else 100_000),
        "delivery": lambda: scenarios.delivery(settings, 2_000 if quick else 20_000),
        "e2e": lambda: scenarios.end_to_end(
            settings, [200] if quick else [500, 1000], 3 if quick else 30
        ),
        "retry": lambda: scenarios.retry_timing(
            settings, 20 if quick else 200, "1,2,5,5,5" if quick else "10,30,60,300,900"
        ),
        "projection": lambda: scenarios.projection(settings, 2_000 if quick else 25_000),
        "isolation": lambda: scenarios.isolation(
            settings, 1_000 if quick else 10_000, 200, 3 if quick else 20, 10 if quick else 50
        ),
        "punctual": lambda: scenarios.punctual(
            settings, 5_000 if quick else 100_000, 20 if quick else 200
        ),
        "burst": lambda: scenarios.burst(settings, 2_000 if quick else 100_000),
        "fifo": lambda: scenarios.fifo_neighbour(settings, 2_000 if quick else 20_000),
        "subscriptions": lambda: scale.subscriptions(
            settings, 2_000 if quick else 100_000, 200 if quick else 1_000, 3 if quick else 10, base
        ),
        "fanout": lambda: scale.fanout(
            settings,
            2_000 if quick else 100_000,
            (10, 100) if quick else (10, 100, 1_000),
            20,
            3 if quick else 10,
            baseline=base,
        ),
    }
    for name in selected:
        started = time.monotonic()
        print(f"bench: {name} …", file=sys.stderr, flush=True)
        out[name] = plan[name]()
        out[name]["wall_s"] = round(time.monotonic() - started, 1)


def table(results: dict[str, Any]) -> str:
    rows = ["| scenario | figure | value |", "| --- | --- | --- |"]

    def add(scenario: str, figure: str, value: str) -> None:
        rows.append(f"| {scenario} | {figure} | {value} |")

    if "ingest" in results:
        runs = results["ingest"]["runs"]
        for run in runs:
            lat = run["latency_s"]
            add(
                "ingest",
                f"{run['target']} c={run['concurrency']}",
                f"{run['rate']:,.0f}/s, p50 {lat['p50'] * 1000:.1f} ms, p99 {lat['p99'] * 1000:.1f}"
                f" ms, max {lat['max'] * 1000:.0f} ms, errors {run['errors']}",
            )
        for conc in sorted({r["concurrency"] for r in runs}):
            ours = next(r for r in runs if r["target"] == "gateway" and r["concurrency"] == conc)
            floor = next(
                r for r in runs if r["target"] == "bare-aiohttp" and r["concurrency"] == conc
            )
            add("ingest", f"ratio to bare aiohttp c={conc}", f"{ours['rate'] / floor['rate']:.2f}")
    if "direct" in results:
        add("direct produce", "records/s", f"{results['direct']['rate']:,.0f}")
    if "delivery" in results:
        d = results["delivery"]
        add("delivery", "1 agent", f"{d['agents_1']['rate']:,.0f}/s")
        add("delivery", "2 agents", f"{d['agents_2']['rate']:,.0f}/s")
        add("delivery", "bare aiohttp client (asyncio loop)", f"{d['bare_client']['rate']:,.0f}/s")
        add("delivery", "bare aiohttp client (uvloop)", f"{d['bare_client_uvloop']['rate']:,.0f}/s")
        add("delivery", "ratio 1 agent / bare client (uvloop)", f"{d['ratio_1_agent']:.2f}")
    if "e2e" in results:
        for run in results["e2e"]["runs"]:
            lat = run["latency_s"]
            add(
                "end to end",
                f"{run['offered_rate']:.0f}/s offered",
                f"p50 {lat['p50'] * 1000:.1f} ms, p99 {lat['p99'] * 1000:.1f} ms, max "
                f"{lat['max'] * 1000:.0f} ms; accepted {run['accepted']}, lost {run['lost']}, "
                f"duplicates {run['duplicates']}",
            )
            proj, lag = run["projection_events_per_s"], run["projection_lag_s"]
            add(
                "projection under load",
                f"{run['offered_rate']:.0f}/s offered",
                f"{proj['p50']:,.0f} events/s (p50 of 0.5 s samples), lag p99 {lag['p99']:.2f} s",
            )
    if "retry" in results:
        r = results["retry"]
        for tier in ("tier1", "tier2"):
            gap, late = r["gap_percentiles"][tier], r["lateness_percentiles"][tier]
            add(
                "retry timing",
                f"{tier} ({r['ladder'].split(',')[int(tier[-1]) - 1]} s)",
                f"gap p50 {gap['p50']:.3f} s; lateness p50 {late['p50'] * 1000:.1f} ms, "
                f"p99 {late['p99'] * 1000:.1f} ms, max {late['max'] * 1000:.1f} ms",
            )
    if "projection" in results:
        p = results["projection"]
        add("projection", "events/s into PostgreSQL", f"{p['events_per_s']:,.0f}")
    if "isolation" in results:
        iso = results["isolation"]
        for mode in ("solo", "with_slow"):
            run = iso[mode]
            add(
                "isolation",
                "healthy alone"
                if mode == "solo"
                else f"beside {iso['slow_subscriptions']} endpoints taking {iso['delay_s']:.0f} s",
                f"drain {run['drain_rate']:,.0f}/s; at {run['offered_healthy_per_s']:.0f}/s "
                f"offered p50 {run['latency_s']['p50'] * 1000:.1f} ms, p99 "
                f"{run['latency_s']['p99'] * 1000:.1f} ms ({run['delivered']} of {run['sent']})",
            )
        add(
            "isolation",
            "ratios beside slow / alone",
            f"deliveries/s {iso['rate_ratio']:.2f}, p99 {iso['p99_ratio']:.2f}",
        )
    if "punctual" in results:
        pr = results["punctual"]
        late = pr["lateness_s"]
        add(
            "punctual retries",
            f"{pr['retries']} due {pr['delay_s']} s after failing, {pr['backlog']:,} queued behind",
            f"lateness p50 {late['p50'] * 1000:.0f} ms, p99 {late['p99'] * 1000:.0f} ms, max "
            f"{late['max'] * 1000:.0f} ms ({pr['measured']} measured); backlog delivered by then "
            f"{pr['backlog_delivered_when_retries_done']:,}",
        )
        rx = pr["lateness_at_receiver_s"]
        add(
            "punctual retries",
            "lateness at the receiver (upper bound)",
            f"p50 {rx['p50'] * 1000:.0f} ms, p99 {rx['p99'] * 1000:.0f} ms",
        )
    if "burst" in results:
        b = results["burst"]
        curve = b["deliveries_per_s"]
        add(
            "burst drain",
            f"{b['accepted']:,} accepted ({b['errors']} errors) in {b['accept_s']:.0f} s",
            f"drained (last arrival) {b['drain_s']:.0f} s after the first POST; "
            f"{b['delivered']:,} delivered; peak {max(curve, default=0):,}/s",
        )
        add(
            "burst drain",
            "peak RSS (VmHWM)",
            ", ".join(f"{k} {v:.0f} MB" for k, v in sorted(b["rss_mb"].items())),
        )
    if "fifo" in results:
        f = results["fifo"]
        labels = {
            "solo": "neighbour alone",
            "with_failing_fifo": "beside a failing FIFO subscription (1 in 5 records)",
            "solo_again": "neighbour alone, again",
        }
        for mode, label in labels.items():
            run = f[mode]
            add(
                "fifo neighbour (1 partition)",
                label,
                f"drain {run['drain_rate']:,.0f}/s ({run['delivered']:,} delivered; the failing "
                f"endpoint saw {run['fifo_requests']} requests)",
            )
        add(
            "fifo neighbour (1 partition)",
            "ratio beside / alone (mean of both)",
            f"{f['rate_ratio']:.2f}",
        )
        for keys in (1, 10):
            run = f.get(f"fifo_{keys}_keys")
            if run:
                add(
                    "fifo subscription, healthy endpoint",
                    f"{keys} ordering key(s), {run['count']:,} webhooks",
                    f"drain {run['drain_rate']:,.0f}/s",
                )
    for row in scale.rows(results):
        add(*row)
    rss: dict[str, float] = {}
    for key in ("ingest", "e2e", "retry"):
        for name, value in (results.get(key, {}).get("rss_mb") or {}).items():
            rss[name] = max(rss.get(name, 0.0), value)
    if "delivery" in results:
        rss["agent"] = max([rss.get("agent", 0.0), *results["delivery"]["agents_1"]["rss_mb"]])
    for name, value in sorted(rss.items()):
        add("peak RSS", name, f"{value:.0f} MB")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="*", choices=ALL, default=list(ALL))
    parser.add_argument(
        "--baseline", default="main", help="git ref to run beside this code ('': none)"
    )
    args = parser.parse_args()
    results = run(args.only, args.quick, args.baseline)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{stamp}{'-quick' if args.quick else ''}.json"
    path.write_text(json.dumps(results, indent=1, default=str))
    text = table(results)
    (RESULTS / f"{stamp}{'-quick' if args.quick else ''}.md").write_text(text + "\n")
    print(text)
    print(f"\nraw results: {path}")
    for png in plots.draw(results, RESULTS, "quick-" if args.quick else ""):
        print(f"plot: {png}")


if __name__ == "__main__":
    main()
