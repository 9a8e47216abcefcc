"""The benchmark scenarios. Each returns a dict of results (raw figures for the JSON file)."""

from __future__ import annotations

import itertools
import random
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
    read_topic,
    wait_count,
    wait_http,
    webhook_producer,
)
from schemas.topics import ATTEMPTS, INGEST
from webhookmaster.components import COMPONENTS
from webhookmaster.kafka_clients import PARTITIONER, client_config
from webhookmaster.settings import Settings

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def _run_json(proc: Proc, timeout: float) -> dict[str, Any]:
    proc.popen.wait(timeout)
    text = proc.log.read_bytes()
    return orjson.loads(text[text.index(b"{") :])


def _load(url: str, seconds: float, *args: str) -> dict[str, Any]:
    """The load generator against ``url`` for ``seconds`` with ``args``; its JSON report."""
    gen = module("loadgen", "--url", url, "--secret", SECRET, "--seconds", str(seconds), *args)
    return _run_json(gen, seconds + 120)


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
            for target, url in (
                ("gateway", f"http://127.0.0.1:{gport}/api/ingest/{sub}/?event_type=bench"),
                ("bare-aiohttp", f"http://127.0.0.1:{floor_port}/ingest"),
            ):
                out = _load(url, seconds, "--concurrency", str(conc))
                lat = percentiles(out["latencies"])
                results["runs"].append(
                    {
                        "target": target,
                        "concurrency": conc,
                        "seconds": seconds,
                        "accepted": out["accepted"],
                        "rate": out["accepted"] / out["elapsed"],
                        "errors": len(out["errors"]),
                        "latency_s": lat,
                        "finished": out["finished"][:: max(1, len(out["finished"]) // 5000)],
                        "finished_step": max(1, len(out["finished"]) // 5000),
                    }
                )
        results["rss_mb"] = {"gateway": gateway.peak_rss_mb()}
        return results
    finally:
        gateway.stop()
        floor.stop()


def direct_produce(settings: Settings, count: int) -> dict[str, Any]:
    s = fresh(settings)
    rate = produce_webhooks(s, ["00000000-0000-4000-8000-000000000000"], count)
    return {"count": count, "rate": rate}


def delivery(
    settings: Settings, count: int, concurrency: int = 256, subscriptions: int = 16
) -> dict[str, Any]:
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
                s, [f"http://127.0.0.1:{receiver_port}/hook/{k}" for k in range(subscriptions)]
            )
            produce_webhooks(s, subs, count)
            procs = [component("agent", s, "WM_AGENT_PORT") for _ in range(agents)]
            try:
                started = time.time()
                wait_count(receiver_port, count, timeout=600)
                arrivals = get_json(f"http://127.0.0.1:{receiver_port}/stats", timeout=60)[
                    "arrivals"
                ]
                times = sorted(a[1] for a in arrivals)
                results[f"agents_{agents}"] = {
                    "rate": count / (times[-1] - times[0]),
                    "from_start_s": times[-1] - started,
                    "arrivals": len(arrivals),
                    "unique": len({a[0] for a in arrivals}),
                    "rss_mb": [p.peak_rss_mb() for p, _ in procs],
                    "timeline": times[:: max(1, len(times) // 2000)],
                }
            finally:
                for proc, _ in procs:
                    proc.stop()
        for key, extra in (("bare_client", []), ("bare_client_uvloop", ["--uvloop"])):
            _post(f"http://127.0.0.1:{receiver_port}/reset")
            bare = module(
                "bare_client",
                "--url",
                f"http://127.0.0.1:{receiver_port}/bare",
                "--count",
                str(count),
                "--concurrency",
                str(concurrency),
                *extra,
            )
            results[key] = _run_json(bare, 600)
        # the stricter floor: the same event loop the agent runs on
        results["ratio_1_agent"] = (
            results["agents_1"]["rate"] / results["bare_client_uvloop"]["rate"]
        )
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
    receiver_port = _port()
    receiver = module("receiver", "--port", str(receiver_port), "--fail-first", "2")
    s = fresh(settings, retry_ladder=ladder)
    delays = [float(d) for d in ladder.split(",")[:2]]
    procs = []
    try:
        wait_http(f"http://127.0.0.1:{receiver_port}/count", proc=receiver)
        # eight subscriptions: the per-subscription in-flight cap is not what this measures
        subs = create_subscriptions(
            s, [f"http://127.0.0.1:{receiver_port}/retry/{k}" for k in range(8)]
        )
        procs = [
            component("agent", s, "WM_AGENT_PORT"),
            component("scheduler", s, "WM_SCHEDULER_PORT"),
        ]
        for proc, port in procs:
            wait_http(f"http://127.0.0.1:{port}/readyz", proc=proc)
        produce_webhooks(s, subs, webhooks)
        wait_count(receiver_port, webhooks * 3, timeout=sum(delays) + 120, key="arrivals")
        events = read_topic(s, ATTEMPTS, webhooks * 3)
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
    return {
        "webhooks": webhooks,
        "ladder": ladder,
        "gaps_s": gaps,
        "lateness_s": late,
        "gap_percentiles": {t: percentiles(v) for t, v in gaps.items()},
        "lateness_percentiles": {t: percentiles(v) for t, v in late.items()},
        "rss_mb": rss,
    }


class MetricSampler:
    """Scrapes a component's /metrics every ``every`` seconds in a thread."""

    def __init__(self, port: int, names: tuple[str, ...], every: float = 0.5) -> None:
        import threading

        self.port, self.names, self.every = port, names, every
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import urllib.request

        while not self._stop.wait(self.every):
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.port}/metrics", timeout=2
                ) as resp:
                    text = resp.read().decode()
            except OSError:
                continue
            values: dict[str, float] = {}
            for line in text.splitlines():
                for name in self.names:
                    if line.startswith(name) and not line.startswith("#"):
                        values[name] = values.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
            self.samples.append((time.time(), values))

    def __enter__(self) -> MetricSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


PROJECTED = "webhookmaster_projector_events_total"
LAG = "webhookmaster_projector_lag_seconds"


def end_to_end(settings: Settings, rates: list[float], seconds: float) -> dict[str, Any]:
    """Offered load through the gateway to a receiver: ingest-to-arrival latency, lost and
    duplicated webhooks; the projector's rate and lag under that load; each process's RSS."""
    receiver_port = _port()
    receiver = module("receiver", "--port", str(receiver_port))
    s = fresh(settings)
    procs: dict[str, tuple[Proc, int]] = {}
    results: dict[str, Any] = {"runs": []}
    try:
        wait_http(f"http://127.0.0.1:{receiver_port}/count", proc=receiver)
        [sub] = create_subscriptions(s, [f"http://127.0.0.1:{receiver_port}/e2e"], secret=SECRET)
        _start_every_component(s, procs)
        gport = procs["gateway"][1]
        url = f"http://127.0.0.1:{gport}/api/ingest/{sub}/?event_type=bench"
        for rate in rates:
            _post(f"http://127.0.0.1:{receiver_port}/reset")
            with MetricSampler(procs["projector"][1], (PROJECTED, LAG)) as sampler:
                out = _load(url, seconds, "--rate", str(rate), "--keep-ids")
                accepted = set(out["ids"])
                try:
                    wait_count(receiver_port, len(accepted), timeout=120)
                except TimeoutError:
                    pass
                arrivals = get_json(f"http://127.0.0.1:{receiver_port}/stats", timeout=60)[
                    "arrivals"
                ]
            arrived = {a[0] for a in arrivals}
            latencies = [a[1] - a[2] for a in arrivals if a[2]]
            lags = [v.get(LAG, 0.0) for _, v in sampler.samples]
            projected = [(t, v.get(PROJECTED, 0.0)) for t, v in sampler.samples]
            proj_rates = [
                (b[1] - a[1]) / (b[0] - a[0])
                for a, b in itertools.pairwise(projected)
                if b[0] > a[0]
            ]
            results["runs"].append(
                {
                    "offered_rate": rate,
                    "seconds": seconds,
                    "accepted": len(accepted),
                    "errors": len(out["errors"]),
                    "arrivals": len(arrivals),
                    "lost": len(accepted - arrived),
                    "duplicates": len(arrivals) - len(arrived),
                    "latency_s": percentiles(latencies),
                    "ingest_latency_s": percentiles(out["latencies"]),
                    "projection_events_per_s": percentiles(proj_rates, (50, 99)),
                    "projection_lag_s": percentiles(lags, (50, 99)),
                    "latencies_sample": latencies[:: max(1, len(latencies) // 3000)],
                }
            )
        results["rss_mb"] = {name: proc.peak_rss_mb() for name, (proc, _) in procs.items()}
        return results
    finally:
        for proc, _ in procs.values():
            proc.stop()
        receiver.stop()


def projection(settings: Settings, count: int) -> dict[str, Any]:
    """Attempt events already in the topic: how fast one projector writes them to PostgreSQL."""
    import uuid as uuid_mod

    from confluent_kafka import Producer

    from schemas import records

    s = fresh(settings)
    producer = Producer(
        client_config(
            s,
            {
                "partitioner": PARTITIONER,
                "acks": "all",
                "linger.ms": 5,
                "queue.buffering.max.messages": 500_000,
            },
        )
    )
    sub = str(uuid_mod.uuid4())
    now = records.now_iso()
    for i in range(count):
        webhook_id = str(uuid_mod.uuid4())
        hook = records.Webhook(
            webhook_id=webhook_id,
            subscription_id=sub,
            event_type="bench",
            body=orjson.dumps({"i": i}),
            received_at=now,
        )
        producer.produce(s.topic(INGEST), hook.body, sub, headers=hook.headers())
        producer.produce(
            s.topic(ATTEMPTS),
            orjson.dumps(
                {
                    "webhook_id": webhook_id,
                    "subscription_id": sub,
                    "event_type": "bench",
                    "target_url": "http://127.0.0.1:9/",
                    "attempt_number": 1,
                    "started_at": now,
                    "duration_ms": 1.0,
                    "status_code": 200,
                    "error": None,
                    "response_excerpt": "ok",
                    "outcome": "delivered",
                    "next_attempt_at": None,
                    "received_at": now,
                }
            ),
            webhook_id,
        )
        producer.poll(0)
    assert producer.flush(60) == 0
    proc, port = component("projector", s, "WM_PROJECTOR_PORT")
    try:
        with MetricSampler(port, (PROJECTED,), every=0.25) as sampler:
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                if sampler.samples and sampler.samples[-1][1].get(PROJECTED, 0) >= 2 * count:
                    break
                time.sleep(0.25)
        points = [(t, v.get(PROJECTED, 0.0)) for t, v in sampler.samples if v.get(PROJECTED)]
        total = points[-1][1] if points else 0
        elapsed = points[-1][0] - points[0][0] if len(points) > 1 else float("nan")
        return {
            "records": 2 * count,
            "projected": total,
            "events_per_s": (total - points[0][1]) / elapsed if elapsed else float("nan"),
            "rss_mb": proc.peak_rss_mb(),
        }
    finally:
        proc.stop()


def arrival_times(port: int, count: int) -> list[float]:
    """Wait (at most 600 s) until the receiver on ``port`` counted ``count`` arrivals; their
    arrival times, sorted."""
    wait_count(port, count, timeout=600)
    return sorted(a[1] for a in get_json(f"http://127.0.0.1:{port}/stats", timeout=60)["arrivals"])


def _produce_mix(settings: Settings, plan: list[str], count: int, rate: float = 0.0) -> None:
    """Produce ``count`` webhooks cycling through ``plan`` (subscription ids, repeated for a
    share), at ``rate`` records/s (0: as fast as possible)."""
    if not rate:
        produce_webhooks(settings, plan, count)
        return
    producer = webhook_producer(settings)
    started = time.monotonic()
    step = max(1, int(rate / 20))  # 20 batches a second
    for done in range(0, count, step):
        wait = started + done / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        offset = done % len(plan)
        produce_webhooks(settings, plan[offset:] + plan[:offset], min(step, count - done), producer)
    assert producer.flush(60) == 0


def isolation(
    settings: Settings, backlog: int, rate: float, seconds: float, slow: int = 50, delay: float = 10
) -> dict[str, Any]:
    """One healthy subscription alone, then beside ``slow`` subscriptions whose endpoint answers
    after ``delay`` s: the healthy one's drain rate of a ``backlog`` (slow records interleaved,
    one in five), and its ingest-to-arrival latency at ``rate``/s offered for ``seconds`` (each
    slow subscription offered 1/s meanwhile)."""
    healthy_port, slow_port = _port(), _port()
    receiver = module("receiver", "--port", str(healthy_port))
    slow_receiver = module("receiver", "--port", str(slow_port), "--delay", str(delay))
    results: dict[str, Any] = {"slow_subscriptions": slow, "delay_s": delay, "backlog": backlog}
    try:
        wait_http(f"http://127.0.0.1:{healthy_port}/count", proc=receiver)
        wait_http(f"http://127.0.0.1:{slow_port}/count", proc=slow_receiver)
        for mode in ("solo", "with_slow"):
            s = fresh(settings)
            [healthy] = create_subscriptions(s, [f"http://127.0.0.1:{healthy_port}/healthy"])
            slow_subs = (
                create_subscriptions(
                    s, [f"http://127.0.0.1:{slow_port}/slow/{k}" for k in range(slow)]
                )
                if mode == "with_slow"
                else []
            )
            drain_plan = [healthy]
            for sub in slow_subs:
                drain_plan += [healthy] * 4 + [sub]
            _post(f"http://127.0.0.1:{healthy_port}/reset")
            total = backlog * len(drain_plan) // drain_plan.count(healthy)
            _produce_mix(s, drain_plan, total)
            agent, _ = component("agent", s, "WM_AGENT_PORT")
            try:
                times = arrival_times(healthy_port, backlog)
                drain_rate = len(times) / (times[-1] - times[0])
                # steady load: healthy at ``rate``/s, each slow subscription at 1/s
                _post(f"http://127.0.0.1:{healthy_port}/reset")
                load_plan = [healthy] * max(1, int(rate)) + slow_subs
                random.Random(1).shuffle(load_plan)
                offered = len(load_plan)
                _produce_mix(s, load_plan, int(offered * seconds), offered)
                sent = int(int(offered * seconds) * load_plan.count(healthy) / len(load_plan))
                try:
                    wait_count(healthy_port, sent, timeout=120)
                except TimeoutError:
                    pass
                arrivals = get_json(f"http://127.0.0.1:{healthy_port}/stats", timeout=60)[
                    "arrivals"
                ]
                latencies = [a[1] - a[2] for a in arrivals if a[2]]
                results[mode] = {
                    "drain_rate": drain_rate,
                    "latency_s": percentiles(latencies),
                    "offered_healthy_per_s": rate,
                    "delivered": len(arrivals),
                    "sent": sent,
                    "slow_arrivals": get_json(f"http://127.0.0.1:{slow_port}/count")["arrivals"],
                    "rss_mb": agent.peak_rss_mb(),
                    "latencies_sample": latencies[:: max(1, len(latencies) // 2000)],
                }
                _post(f"http://127.0.0.1:{slow_port}/reset")
            finally:
                agent.stop()
        results["rate_ratio"] = results["with_slow"]["drain_rate"] / results["solo"]["drain_rate"]
        results["p99_ratio"] = (
            results["with_slow"]["latency_s"]["p99"] / results["solo"]["latency_s"]["p99"]
        )
        return results
    finally:
        receiver.stop()
        slow_receiver.stop()


class RssSampler:
    """Samples the resident set (VmRSS) of processes every ``every`` seconds in a thread."""

    def __init__(self, procs: dict[str, Proc], every: float = 0.5) -> None:
        import threading

        self.procs, self.every = procs, every
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from pathlib import Path

        while not self._stop.wait(self.every):
            values: dict[str, float] = {}
            for name, proc in self.procs.items():
                try:
                    status = Path(f"/proc/{proc.popen.pid}/status").read_text()
                except OSError:
                    continue
                for line in status.splitlines():
                    if line.startswith("VmRSS:"):
                        values[name] = int(line.split()[1]) / 1024
            self.samples.append((time.time(), values))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def burst(settings: Settings, count: int, generators: int = 4) -> dict[str, Any]:
    """``count`` webhooks POSTed to the gateway as fast as it accepts them (``generators``
    closed-loop load generators, one subscription each) while the agent, scheduler and
    projector run: the drain time (first acceptance to last arrival), the deliveries/s curve
    and every component's RSS, sampled throughout (and its peak, VmHWM)."""
    receiver_port = _port()
    receiver = module("receiver", "--port", str(receiver_port))
    s = fresh(settings)
    procs: dict[str, tuple[Proc, int]] = {}
    try:
        wait_http(f"http://127.0.0.1:{receiver_port}/count", proc=receiver)
        subs = create_subscriptions(
            s,
            [f"http://127.0.0.1:{receiver_port}/burst/{k}" for k in range(generators)],
            secret=SECRET,
        )
        _start_every_component(s, procs)
        gport = procs["gateway"][1]
        with RssSampler({name: proc for name, (proc, _) in procs.items()}) as rss:
            gens = [
                module(
                    "loadgen",
                    "--url",
                    f"http://127.0.0.1:{gport}/api/ingest/{sub}/?event_type=bench",
                    "--secret",
                    SECRET,
                    "--concurrency",
                    "16",
                    "--seconds",
                    "900",
                    "--count",
                    str(count // generators),
                )
                for sub in subs
            ]
            outs = [_run_json(gen, 960) for gen in gens]
            accepted = sum(o["accepted"] for o in outs)
            accept_end = max(o["started"] + o["elapsed"] for o in outs)
            try:
                wait_count(receiver_port, accepted, timeout=900)
            except TimeoutError:
                pass
        arrivals = get_json(f"http://127.0.0.1:{receiver_port}/stats", timeout=120)["arrivals"]
        started = min(o["started"] for o in outs)
        times = sorted(a[1] for a in arrivals)
        per_second = [0] * (int(times[-1] - started) + 1 if times else 0)
        for t in times:
            per_second[int(t - started)] += 1
        peaks: dict[str, float] = {}
        samples = rss.samples
        for _, values in samples:
            for name, value in values.items():
                peaks[name] = max(peaks.get(name, 0.0), value)
        return {
            "count": count,
            "accepted": accepted,
            "errors": sum(len(o["errors"]) for o in outs),
            "accept_s": accept_end - started,
            "accepted_per_s": accepted / (accept_end - started),
            "drain_s": (times[-1] - started) if times else float("nan"),
            "delivered": len({a[0] for a in arrivals}),
            "arrivals": len(arrivals),
            "deliveries_per_s": per_second,
            "rss_mb": {name: proc.peak_rss_mb() for name, (proc, _) in procs.items()},
            "rss_sampled_peak_mb": peaks,
            "rss_timeline": [(t - started, v) for t, v in samples[:: 1 + len(samples) // 400]],
        }
    finally:
        for proc, _ in procs.values():
            proc.stop()
        receiver.stop()


def punctual(
    settings: Settings, backlog: int, retries: int, delay: int = 5, subs: int = 16
) -> dict[str, Any]:
    """Retries falling due while a ``backlog`` is queued: ``retries`` webhooks whose first
    attempt fails (8 subscriptions), then at once ``backlog`` webhooks to ``subs`` healthy
    subscriptions, one agent and the scheduler running; each retry's lateness (its attempt's
    start minus its due time, ``delay`` s after the first) and how much of the backlog was
    still queued when the last retry was delivered. The lateness is the second attempt's start
    minus the due time the first attempt's event gives (``next_attempt_at``), from the attempts
    topic; at the receiver, second arrival minus (first arrival + ``delay``), an upper bound
    (the due time is set only once the first attempt's answer is in)."""

    healthy_port, failing_port = _port(), _port()
    receiver = module("receiver", "--port", str(healthy_port))
    failing = module("receiver", "--port", str(failing_port), "--fail-first", "1")
    s = fresh(settings, retry_ladder=",".join([str(delay)] * 5))
    procs: list[tuple[Proc, int]] = []
    try:
        wait_http(f"http://127.0.0.1:{healthy_port}/count", proc=receiver)
        wait_http(f"http://127.0.0.1:{failing_port}/count", proc=failing)
        retry_subs = create_subscriptions(
            s, [f"http://127.0.0.1:{failing_port}/retry/{k}" for k in range(8)]
        )
        healthy = create_subscriptions(
            s, [f"http://127.0.0.1:{healthy_port}/backlog/{k}" for k in range(subs)]
        )
        procs = [
            component("agent", s, "WM_AGENT_PORT"),
            component("scheduler", s, "WM_SCHEDULER_PORT"),
        ]
        for proc, port in procs:
            wait_http(f"http://127.0.0.1:{port}/readyz", proc=proc)
        produce_webhooks(s, retry_subs, retries)
        wait_count(failing_port, retries, timeout=60, key="arrivals")
        first_done = time.time()
        produce_webhooks(s, healthy, backlog)
        produced = time.time()
        wait_count(failing_port, 2 * retries, timeout=delay + 300, key="arrivals")
        backlog_delivered = get_json(f"http://127.0.0.1:{healthy_port}/count")["arrivals"]
        retried = time.time()
        arrivals = get_json(f"http://127.0.0.1:{failing_port}/stats", timeout=60)["arrivals"]
        wanted = set(retry_subs)
        events = _read_matching(s, ATTEMPTS, lambda e: e["subscription_id"] in wanted, 2 * retries)
        rss = {"agent": procs[0][0].peak_rss_mb(), "scheduler": procs[1][0].peak_rss_mb()}
    finally:
        for proc, _ in procs:
            proc.stop()
        receiver.stop()
        failing.stop()
    by_id: dict[str, list[float]] = {}
    for webhook_id, at, _ in arrivals:
        by_id.setdefault(webhook_id, []).append(at)
    at_receiver = [sorted(ts)[1] - sorted(ts)[0] - delay for ts in by_id.values() if len(ts) >= 2]
    from schemas.records import parse_time

    attempts: dict[str, dict[int, dict]] = {}
    for event in events:
        attempts.setdefault(event["webhook_id"], {})[event["attempt_number"]] = event
    late = [
        parse_time(a[2]["started_at"]).timestamp() - parse_time(a[1]["next_attempt_at"]).timestamp()
        for a in attempts.values()
        if 1 in a and 2 in a
    ]
    return {
        "backlog": backlog,
        "retries": retries,
        "delay_s": delay,
        "produce_backlog_s": produced - first_done,
        "retries_done_after_s": retried - first_done,
        "backlog_delivered_when_retries_done": backlog_delivered,
        "measured": len(late),
        "lateness_s": percentiles(late),
        "lateness_sample": late,
        "lateness_at_receiver_s": percentiles(at_receiver),
        "rss_mb": rss,
    }


def _start_every_component(settings: Settings, procs: dict[str, tuple[Proc, int]]) -> None:
    """Start one process of every component in the registry into ``procs`` (name -> process
    and port; the caller stops them) and wait until each is ready."""
    for registered in COMPONENTS:
        procs[registered.name] = component(registered.name, settings, registered.port_env)
    for proc, port in procs.values():
        wait_http(f"http://127.0.0.1:{port}/readyz", proc=proc, timeout=120)


def _read_matching(
    settings: Settings, suffix: str, match: Any, count: int, timeout: float = 120
) -> list[dict]:
    """The first ``count`` JSON records of a topic for which ``match(record)`` holds."""
    return read_topic(settings, suffix, count, timeout, match)


def fifo_neighbour(settings: Settings, backlog: int, fifo_share: int = 5) -> dict[str, Any]:
    """A plain subscription's drain rate of a ``backlog`` on a one-partition ingest topic, alone
    and beside a FIFO subscription whose endpoint always fails (one webhook in ``fifo_share`` is
    the FIFO one's, interleaved on the same partition): its head retries on the ladder, the
    webhooks behind it are parked, and the neighbour should not notice."""
    healthy_port, failing_port = _port(), _port()
    receiver = module("receiver", "--port", str(healthy_port))
    failing = module("receiver", "--port", str(failing_port), "--fail-first", "1000000")
    results: dict[str, Any] = {"backlog": backlog, "fifo_share": fifo_share, "partitions": 1}
    try:
        wait_http(f"http://127.0.0.1:{healthy_port}/count", proc=receiver)
        wait_http(f"http://127.0.0.1:{failing_port}/count", proc=failing)
        for mode in ("solo", "with_failing_fifo", "solo_again"):
            s = fresh(settings, topic_partitions=1)
            [healthy] = create_subscriptions(s, [f"http://127.0.0.1:{healthy_port}/healthy"])
            plan = [healthy]
            if mode == "with_failing_fifo":
                [fifo] = create_subscriptions(
                    s, [f"http://127.0.0.1:{failing_port}/fifo"], ordering="fifo"
                )
                plan = [healthy] * (fifo_share - 1) + [fifo]
            _post(f"http://127.0.0.1:{healthy_port}/reset")
            _post(f"http://127.0.0.1:{failing_port}/reset")
            _produce_mix(s, plan, backlog * len(plan) // plan.count(healthy))
            agent, _ = component("agent", s, "WM_AGENT_PORT")
            try:
                times = arrival_times(healthy_port, backlog)
                results[mode] = {
                    "drain_rate": len(times) / (times[-1] - times[0]),
                    "delivered": len(times),
                    "fifo_requests": get_json(f"http://127.0.0.1:{failing_port}/count")["arrivals"],
                    "rss_mb": agent.peak_rss_mb(),
                }
            finally:
                agent.stop()
        solo = (results["solo"]["drain_rate"] + results["solo_again"]["drain_rate"]) / 2
        results["rate_ratio"] = results["with_failing_fifo"]["drain_rate"] / solo
        # what order costs: a healthy FIFO subscription's drain rate on 1 and on 10 keys
        for keys in (1, 10):
            s = fresh(settings, topic_partitions=1)
            [fifo] = create_subscriptions(
                s, [f"http://127.0.0.1:{healthy_port}/fifo"], ordering="fifo"
            )
            _post(f"http://127.0.0.1:{healthy_port}/reset")
            count = max(200, backlog // 10)
            produce_webhooks(s, [fifo], count, ordering_keys=keys)
            agent, _ = component("agent", s, "WM_AGENT_PORT")
            try:
                times = arrival_times(healthy_port, count)
                results[f"fifo_{keys}_keys"] = {
                    "count": count,
                    "drain_rate": len(times) / (times[-1] - times[0]),
                }
            finally:
                agent.stop()
        return results
    finally:
        receiver.stop()
        failing.stop()
