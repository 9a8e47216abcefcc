"""The benchmark scenarios. Each returns a dict of results (raw figures for the JSON file)."""

from __future__ import annotations

import time
from typing import Any

import orjson

from bench.harness import (
    Proc,
    component,
    create_subscriptions,
    fresh,
    get_json,
    module,
    percentiles,
    produce_webhooks,
    wait_count,
    wait_http,
)
from webhookmaster.settings import Settings

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def _run_json(proc: Proc, timeout: float) -> dict[str, Any]:
    proc.popen.wait(timeout)
    text = proc.log.read_bytes()
    return orjson.loads(text[text.index(b"{"):])


def ingest(settings: Settings, seconds: float, concurrencies: list[int]) -> dict[str, Any]:
    """Signed ~1 KB bodies against one gateway process vs. a bare aiohttp 202 handler."""
    s = fresh(settings)
    [sub] = create_subscriptions(s, ["http://127.0.0.1:9/unused"], secret=SECRET)
    gateway, gport = component("gateway", s, "WM_GATEWAY_PORT")
    floor_port = _port()
    floor = module("floor_server", "--port", str(floor_port))
    try:
        wait_http(f"http://127.0.0.1:{gport}/readyz", proc=gateway)
        wait_http(f"http://127.0.0.1:{floor_port}/readyz", proc=floor)
        results: dict[str, Any] = {"runs": []}
        for conc in concurrencies:
            for target, url in (("gateway", f"http://127.0.0.1:{gport}/api/ingest/{sub}/"
                                            "?event_type=bench"),
                                ("bare-aiohttp", f"http://127.0.0.1:{floor_port}/ingest")):
                gen = module("loadgen", "--url", url, "--secret", SECRET,
                             "--concurrency", str(conc), "--seconds", str(seconds))
                out = _run_json(gen, seconds + 120)
                lat = percentiles(out["latencies"])
                results["runs"].append({
                    "target": target, "concurrency": conc, "seconds": seconds,
                    "accepted": out["accepted"], "rate": out["accepted"] / out["elapsed"],
                    "errors": len(out["errors"]), "latency_s": lat,
                    "finished": out["finished"]})
        results["rss_mb"] = {"gateway": gateway.peak_rss_mb()}
        return results
    finally:
        gateway.stop()
        floor.stop()


def direct_produce(settings: Settings, count: int) -> dict[str, Any]:
    s = fresh(settings)
    rate = produce_webhooks(s, ["00000000-0000-4000-8000-000000000000"], count)
    return {"count": count, "rate": rate}


def delivery(settings: Settings, count: int, concurrency: int = 256,
             subscriptions: int = 16) -> dict[str, Any]:
    """``count`` webhooks already in the ingest topic; one agent, then two, vs. a bare client."""
    receiver_port = _port()
    receiver = module("receiver", "--port", str(receiver_port))
    results: dict[str, Any] = {"count": count, "concurrency": concurrency}
    try:
        wait_http(f"http://127.0.0.1:{receiver_port}/count", proc=receiver)
        for agents in (1, 2):
            _post(f"http://127.0.0.1:{receiver_port}/reset")
            s = fresh(settings, max_in_flight=concurrency)
            subs = create_subscriptions(
                s, [f"http://127.0.0.1:{receiver_port}/hook/{k}" for k in range(subscriptions)])
            produce_webhooks(s, subs, count)
            procs = [component("agent", s, "WM_AGENT_PORT") for _ in range(agents)]
            try:
                started = time.time()
                wait_count(receiver_port, count, timeout=600)
                arrivals = get_json(f"http://127.0.0.1:{receiver_port}/stats",
                                    timeout=60)["arrivals"]
                times = sorted(a[1] for a in arrivals)
                results[f"agents_{agents}"] = {
                    "rate": count / (times[-1] - times[0]),
                    "from_start_s": times[-1] - started,
                    "arrivals": len(arrivals), "unique": len({a[0] for a in arrivals}),
                    "rss_mb": [p.peak_rss_mb() for p, _ in procs],
                    "timeline": times[:: max(1, len(times) // 2000)]}
            finally:
                for proc, _ in procs:
                    proc.stop()
        _post(f"http://127.0.0.1:{receiver_port}/reset")
        bare = module("bare_client", "--url", f"http://127.0.0.1:{receiver_port}/bare",
                      "--count", str(count), "--concurrency", str(concurrency))
        results["bare_client"] = _run_json(bare, 600)
        results["ratio_1_agent"] = results["agents_1"]["rate"] / results["bare_client"]["rate"]
        return results
    finally:
        receiver.stop()


def _port() -> int:
    from bench.harness import free_port

    return free_port()


def _post(url: str) -> None:
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=5).read()


def retry_timing(settings: Settings, webhooks: int, ladder: str) -> dict[str, Any]:
    """A receiver that fails the first two attempts of every webhook: the observed gaps against
    the first two tiers, and each retry's lateness (next attempt start minus its due time)."""
    from bench.harness import read_topic

    receiver_port = _port()
    receiver = module("receiver", "--port", str(receiver_port), "--fail-first", "2")
    s = fresh(settings, retry_ladder=ladder)
    delays = [float(d) for d in ladder.split(",")[:2]]
    procs = []
    try:
        wait_http(f"http://127.0.0.1:{receiver_port}/count", proc=receiver)
        subs = create_subscriptions(s, [f"http://127.0.0.1:{receiver_port}/retry"])
        procs = [component("agent", s, "WM_AGENT_PORT"), component("scheduler", s,
                                                                    "WM_SCHEDULER_PORT")]
        for proc, port in procs:
            wait_http(f"http://127.0.0.1:{port}/readyz", proc=proc)
        produce_webhooks(s, subs, webhooks)
        wait_count(receiver_port, webhooks * 3, timeout=sum(delays) + 120, key="arrivals")
        events = read_topic(s, "attempts", webhooks * 3)
        rss = {"agent": procs[0][0].peak_rss_mb(), "scheduler": procs[1][0].peak_rss_mb()}
    finally:
        for proc, _ in procs:
            proc.stop()
        receiver.stop()
    by_id: dict[str, dict[int, dict]] = {}
    for event in events:
        by_id.setdefault(event["webhook_id"], {})[event["attempt_number"]] = event
    from schemas.records import parse_time

    gaps: dict[str, list[float]] = {"tier1": [], "tier2": []}
    late: dict[str, list[float]] = {"tier1": [], "tier2": []}
    for attempts in by_id.values():
        for k, tier in ((1, "tier1"), (2, "tier2")):
            if k in attempts and k + 1 in attempts:
                start_k = parse_time(attempts[k]["started_at"]).timestamp()
                start_next = parse_time(attempts[k + 1]["started_at"]).timestamp()
                due = parse_time(attempts[k]["next_attempt_at"]).timestamp()
                gaps[tier].append(start_next - start_k)
                late[tier].append(start_next - due)
    return {"webhooks": webhooks, "ladder": ladder, "gaps_s": gaps, "lateness_s": late,
            "gap_percentiles": {t: percentiles(v) for t, v in gaps.items()},
            "lateness_percentiles": {t: percentiles(v) for t, v in late.items()},
            "rss_mb": rss}
