"""Scale scenarios (issue 13): many subscriptions, and wide fan-out.

``subscriptions``: N subscription records (100,000; secrets encrypted, one event type each out of
1,000, ten take a fan-out type, distinct target URLs on a loopback receiver) in the
subscriptions topic; then a gateway and an agent: start time to ``/readyz``, RSS once ready,
list latency (``GET /api/subscriptions/`` pages of 50 walking the cursor), sequential fan-out
acknowledgements to 10 subscribers, and the ingest rate alone and with four clients listing
as fast as they can (with the list pages/s they got) while the agent delivers what is
ingested; last, for every tree, the same with a gateway and no agent (the cores are not shared
with deliveries, so what the listing takes from ingest is the gateway's own doing).

``fanout``: the same kind of base, where ``width`` subscriptions take the event type
``bench.fan.<width>`` for each width (10, 100, 1,000); ``POST /api/events/`` at a fixed rate
(20 events/s) for each width in turn, one agent process and then two: the acknowledgement
latency, and at the loopback receiver (by the event key in the payload and distinct
``webhook-id`` headers, not the response's ids) the deliveries/s and each event's first and
last delivery after it was sent; the gateway's and agents' RSS.

Both run this tree and, when a baseline git ref is given and differs, that ref's components
(``git archive``) against the same kind of topics, in the same run.
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from bench import harness
from bench.harness import Proc, fresh, get_json, module, percentiles, wait_http
from bench.scenarios import RssSampler
from schemas import records
from schemas.topics import INGEST, SUBSCRIPTIONS
from webhookmaster import secret_box
from webhookmaster.kafka_clients import client_config
from webhookmaster.settings import PROJECT_ROOT, Settings

SECRET = "bench-secret"  # the first subscription's secret: ingest is signed for it
OTHER_TYPES = 1000


def fanout_type(width: int) -> str:
    return f"bench.fan.{width}"


def event_types(count: int, widths: Sequence[int]) -> list[str]:
    """The event type of each of ``count`` subscriptions: ``width`` of them take
    ``bench.fan.<width>`` for each width (the first ones), the others one of 1,000 types."""
    if sum(widths) > count:
        raise ValueError(f"{count} subscriptions cannot hold fan-outs of {list(widths)}")
    out = [fanout_type(w) for w in widths for _ in range(w)]
    out += [f"bench.type.{i % OTHER_TYPES}" for i in range(len(out), count)]
    return out


def load(settings: Settings, count: int, receiver_port: int, widths: Sequence[int]) -> str:
    """``count`` subscription records (see :func:`event_types`), each to its own path on the
    receiver; returns the id of the first, whose secret is :data:`SECRET`."""
    box = secret_box.from_settings(settings)
    producer = Producer(client_config(settings, {"acks": "all", "linger.ms": 20}))
    topic = settings.topic(SUBSCRIPTIONS)
    first = ""
    for i, event_type in enumerate(event_types(count, widths)):
        sub_id = str(uuid.uuid4())
        now = records.now_iso()
        secret = SECRET if i == 0 else f"whsec_{uuid.uuid4().hex}{uuid.uuid4().hex[:11]}"
        first = first or sub_id
        value = orjson.dumps(
            {
                "id": sub_id,
                "target_url": f"http://127.0.0.1:{receiver_port}/hook/{i}",
                "secret_key_encrypted": box.encrypt(secret),
                "event_types": [event_type],
                "is_active": True,
                "created_at": now,
                "updated_at": now,
            }
        )
        while True:
            try:
                producer.produce(topic, value, sub_id)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(120) == 0
    return first


def trees(baseline: Path | None) -> dict[str, Path]:
    """The checkouts to measure: the baseline's first (when there is one), then this tree."""
    return ({"baseline": baseline} if baseline else {}) | {"this": PROJECT_ROOT}


def _ready_after(proc: Proc, port: int) -> float:
    wait_http(f"http://127.0.0.1:{port}/readyz", timeout=600, proc=proc)
    return time.monotonic() - proc.started


def _timed(conn: http.client.HTTPConnection, method: str, path: str, body: bytes = b"") -> Any:
    started = time.perf_counter()
    headers = {"Content-Type": "application/json"} if body else {}
    conn.request(method, path, body=body or None, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    elapsed = time.perf_counter() - started
    assert resp.status in (200, 202), (resp.status, data[:300])
    return elapsed, json.loads(data)


def list_walk(port: int, requests: int, stop: threading.Event | None = None) -> list[float]:
    """Latencies of ``requests`` list pages (50 each), following the cursor, from the start
    again at the end; until ``stop`` is set when one is given."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    latencies: list[float] = []
    cursor = None
    while (stop is None and len(latencies) < requests) or (stop is not None and not stop.is_set()):
        path = "/api/subscriptions/?limit=50" + (f"&cursor={cursor}" if cursor else "")
        elapsed, page = _timed(conn, "GET", path)
        latencies.append(elapsed)
        cursor = page["next_cursor"]
    conn.close()
    return latencies


def sequential_fanout(port: int, requests: int, width: int) -> list[float]:
    """Acknowledgement latencies of ``requests`` sequential events to ``width`` subscribers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    latencies = []
    for i in range(requests):
        body = orjson.dumps({"event_type": fanout_type(width), "payload": {"i": i}})
        elapsed, _ = _timed(conn, "POST", "/api/events/", body)
        latencies.append(elapsed)
    conn.close()
    return latencies


def _loadgen(url: str, seconds: float, *args: str) -> dict[str, Any]:
    gen = module("loadgen", "--url", url, "--seconds", str(seconds), *args)
    gen.popen.wait(seconds + 180)
    text = gen.log.read_bytes()
    return dict(orjson.loads(text[text.index(b"{") :]))


def ingest_rate(port: int, sub_id: str, seconds: float, event_type: str) -> float:
    """Accepted/s of signed ingest to ``sub_id`` (whose filter takes ``event_type``), c=32."""
    url = f"http://127.0.0.1:{port}/api/ingest/{sub_id}/?event_type={event_type}"
    out = _loadgen(url, seconds, "--secret", SECRET, "--concurrency", "32")
    return float(out["accepted"]) / float(out["elapsed"])


def ingest_beside_listers(port: int, sub_id: str, seconds: float) -> dict[str, float]:
    """Ingest accepted/s alone, then beside four clients walking the list as fast as they
    can, and the list pages/s those clients got meanwhile."""
    solo = ingest_rate(port, sub_id, seconds, fanout_type(10))
    stop = threading.Event()
    pages: list[int] = []

    def lister() -> None:
        pages.append(len(list_walk(port, 0, stop)))

    listers = [threading.Thread(target=lister) for _ in range(4)]
    started = time.monotonic()
    for thread in listers:
        thread.start()
    try:
        busy = ingest_rate(port, sub_id, seconds, fanout_type(10))
    finally:
        stop.set()
        for thread in listers:
            thread.join(120)
    return {
        "solo": solo,
        "with_4_listers": busy,
        "ratio": busy / solo if solo else float("nan"),
        "list_pages_per_s": sum(pages) / (time.monotonic() - started),
    }


def agents_lag(settings: Settings) -> int:
    """Ingest records beyond the agents group's committed offsets (all, before any commit)."""
    topic = settings.topic(INGEST)
    consumer = Consumer(client_config(settings, {"group.id": settings.group("agents")}))
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        committed = consumer.committed([TopicPartition(topic, p) for p in parts], timeout=10)
        lag = 0
        for tp in committed:
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            lag += high - (tp.offset if tp.offset >= 0 else low)
        return lag
    finally:
        consumer.close()


def wait_drained(settings: Settings, timeout: float = 180) -> float:
    """Wait until the agents delivered (committed) everything ingested, so that the next
    tree's agent, in the same group, starts without a backlog; returns the seconds waited."""
    started = time.monotonic()
    while agents_lag(settings) > 0:
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"the agents did not drain the ingest topic within {timeout} s")
        time.sleep(0.5)
    return time.monotonic() - started


def measure_subscriptions(
    settings: Settings, tree: Path, sub_id: str, requests: int, ingest_s: float
) -> dict[str, Any]:
    """One gateway and one agent from ``tree`` over the loaded subscriptions."""
    gateway, gport = harness.registered("gateway", settings, tree)
    agent, aport = harness.registered("agent", settings, tree)
    try:
        out: dict[str, Any] = {
            "start_s": {
                "gateway": _ready_after(gateway, gport),
                "agent": _ready_after(agent, aport),
            }
        }
        time.sleep(3)
        out["rss_ready_mb"] = {"gateway": gateway.rss_mb(), "agent": agent.rss_mb()}
        list_walk(gport, 20)  # warm-up
        out["list_s"] = percentiles(list_walk(gport, requests))
        out["fanout_10_ack_s"] = percentiles(sequential_fanout(gport, requests // 2, 10))
        out["ingest_per_s"] = ingest_beside_listers(gport, sub_id, ingest_s)
        out["rss_end_mb"] = {"gateway": gateway.rss_mb(), "agent": agent.rss_mb()}
        out["rss_peak_mb"] = {"gateway": gateway.peak_rss_mb(), "agent": agent.peak_rss_mb()}
        out["drained_after_s"] = wait_drained(settings)  # no backlog for the next tree
        return out
    finally:
        gateway.stop()
        agent.stop()


def gateway_alone(settings: Settings, tree: Path, sub_id: str, ingest_s: float) -> dict[str, float]:
    """Ingest beside listing with a gateway from ``tree`` and no agent: the cores are not
    shared with deliveries, so what listing takes from ingest is the gateway's own doing."""
    gateway, gport = harness.registered("gateway", settings, tree)
    try:
        _ready_after(gateway, gport)
        list_walk(gport, 20)  # warm-up
        return ingest_beside_listers(gport, sub_id, ingest_s)
    finally:
        gateway.stop()


def subscriptions(
    settings: Settings,
    count: int,
    requests: int,
    ingest_s: float,
    baseline: Path | None = None,
) -> dict[str, Any]:
    """The ``subscriptions`` scenario (see the module's docstring)."""
    receiver_port = harness.free_port()
    receiver = module("receiver", "--port", str(receiver_port))
    results: dict[str, Any] = {"subscriptions": count, "requests": requests}
    try:
        wait_http(f"http://127.0.0.1:{receiver_port}/count", proc=receiver)
        s = fresh(settings)
        started = time.monotonic()
        sub_id = load(s, count, receiver_port, (10,))
        results["load_s"] = time.monotonic() - started
        for label, tree in trees(baseline).items():
            harness.apply_topics(s, tree)
            results[label] = measure_subscriptions(s, tree, sub_id, requests, ingest_s)
            print(f"bench: subscriptions, {label}: {json.dumps(results[label])}", file=sys.stderr)
        # last, for every tree: no agent runs after these, so what they ingest is never delivered
        # (run before the next tree's agent, it would be that agent's backlog)
        for label, tree in trees(baseline).items():
            results[label]["gateway_alone_ingest_per_s"] = gateway_alone(s, tree, sub_id, ingest_s)
            print(
                f"bench: subscriptions, {label}, gateway alone: "
                f"{json.dumps(results[label]['gateway_alone_ingest_per_s'])}",
                file=sys.stderr,
            )
    finally:
        receiver.stop()
    return results


def summarise_fanout(
    events: dict[str, list[float]], width: int, ack: dict[str, Any]
) -> dict[str, Any]:
    """Figures of one fan-out run from the receiver's per-event ``[sent, first arrival, last
    arrival, distinct webhook ids]`` of this run's events and the load generator's report
    ``ack`` (``accepted``, ``latencies``, ``errors``, ``started``, ``finished``)."""
    accepted = int(ack["accepted"])
    delivered = sum(int(e[3]) for e in events.values())
    first = min((e[1] for e in events.values()), default=float("nan"))
    last = max((e[2] for e in events.values()), default=float("nan"))
    span = last - first
    acked = max(ack["finished"], default=float("nan"))
    return {
        "width": width,
        "events_accepted": accepted,
        "errors": len(ack["errors"]),
        "ack_s": percentiles(list(ack["latencies"])),
        "expected_deliveries": accepted * width,
        "delivered": delivered,
        "complete_events": sum(1 for e in events.values() if e[3] >= width),
        "deliveries_per_s": delivered / span if span > 0 else float("nan"),
        "first_delivery_s": percentiles([e[1] - e[0] for e in events.values()]),
        "last_delivery_s": percentiles([e[2] - e[0] for e in events.values()]),
        "all_acked_after_s": acked - ack["started"],
        "all_delivered_after_s": last - ack["started"],
    }


def _tagged(receiver_port: int, tag: str) -> dict[str, list[float]]:
    events = get_json(f"http://127.0.0.1:{receiver_port}/events", timeout=60)
    return {k: v for k, v in events.items() if k.startswith(tag + ":")}


def wait_deliveries(receiver_port: int, tag: str, expected: int, stall_s: float = 60) -> None:
    """Wait until ``expected`` distinct deliveries of this run's events arrived, or none came
    for ``stall_s`` seconds (the figures then say how many did)."""
    seen, progress = -1, time.monotonic()
    while True:
        done = sum(int(e[3]) for e in _tagged(receiver_port, tag).values())
        if done >= expected:
            return
        if done > seen:
            seen, progress = done, time.monotonic()
        elif time.monotonic() - progress > stall_s:
            return
        time.sleep(0.5)


def wait_assigned(agent_ports: Sequence[int], timeout: float = 120) -> None:
    """Wait until every agent owns ingest partitions (``webhookmaster_assigned_partitions`` > 0):
    the group has settled, so no rebalance falls into the measurement."""
    deadline = time.monotonic() + timeout
    while True:
        owned = [_gauge(port, "webhookmaster_assigned_partitions") for port in agent_ports]
        if all(n > 0 for n in owned):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"agents' partitions after {timeout} s: {owned}")
        time.sleep(0.5)


def _gauge(port: int, name: str) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def warm_up(gateway_port: int, receiver_port: int, width: int, events: int = 5) -> None:
    """A few events to ``width`` subscribers, delivered before the measurement starts (the
    agents' group has its partitions, the broker and the processes are warm)."""
    tag = "warm-" + uuid.uuid4().hex[:8]
    conn = http.client.HTTPConnection("127.0.0.1", gateway_port, timeout=60)
    for i in range(events):
        payload = {"t": time.time(), "ev": f"{tag}:{i}"}
        _timed(
            conn,
            "POST",
            "/api/events/",
            orjson.dumps({"event_type": fanout_type(width), "payload": payload}),
        )
    conn.close()
    wait_deliveries(receiver_port, tag, events * width)


def fanout_run(
    settings: Settings,
    tree: Path,
    agents: int,
    count: int,
    widths: Sequence[int],
    rate: float,
    seconds: float,
    receiver_port: int,
) -> dict[str, Any]:
    """A gateway and ``agents`` agents from ``tree`` over ``count`` fresh subscriptions; each
    width in turn at ``rate`` events/s for ``seconds``."""
    s = fresh(settings)
    harness.apply_topics(s, tree)
    load(s, count, receiver_port, widths)
    procs = {"gateway": harness.registered("gateway", s, tree)}
    for k in range(agents):
        procs[f"agent{k + 1}"] = harness.registered("agent", s, tree)
    out: dict[str, Any] = {"agents": agents, "widths": []}
    try:
        out["start_s"] = {name: _ready_after(proc, port) for name, (proc, port) in procs.items()}
        gport = procs["gateway"][1]
        wait_assigned([port for name, (_, port) in procs.items() if name != "gateway"])
        warm_up(gport, receiver_port, min(widths))
        for width in widths:
            harness.post(f"http://127.0.0.1:{receiver_port}/reset")
            tag = uuid.uuid4().hex[:8]
            with RssSampler({name: proc for name, (proc, _) in procs.items()}) as rss:
                ack = _loadgen(
                    f"http://127.0.0.1:{gport}/api/events/",
                    seconds,
                    "--rate",
                    str(rate),
                    "--fanout",
                    fanout_type(width),
                    "--tag",
                    tag,
                )
                wait_deliveries(receiver_port, tag, int(ack["accepted"]) * width)
            run = summarise_fanout(_tagged(receiver_port, tag), width, ack)
            run["rate"] = rate
            run["seconds"] = seconds
            run["rss_peak_mb"] = peak_by_process(rss.samples)
            run["rss_after_mb"] = rss.samples[-1][1] if rss.samples else {}
            out["widths"].append(run)
            print(
                f"bench: fan-out N={width}, {agents} agent(s): {_fanout_value(run)}",
                file=sys.stderr,
                flush=True,
            )
        return out
    finally:
        for proc, _ in procs.values():
            proc.stop()


def peak_by_process(samples: list[tuple[float, dict[str, float]]]) -> dict[str, float]:
    """The highest sampled value of each process."""
    peaks: dict[str, float] = {}
    for _, values in samples:
        for name, value in values.items():
            peaks[name] = max(peaks.get(name, 0.0), value)
    return peaks


def fanout(
    settings: Settings,
    count: int,
    widths: Sequence[int],
    rate: float,
    seconds: float,
    agent_counts: Sequence[int] = (1, 2),
    baseline: Path | None = None,
) -> dict[str, Any]:
    """The ``fanout`` scenario (see the module's docstring)."""
    receiver_port = harness.free_port()
    receiver = module("receiver", "--port", str(receiver_port))
    results: dict[str, Any] = {"subscriptions": count, "rate": rate, "seconds": seconds}
    try:
        wait_http(f"http://127.0.0.1:{receiver_port}/count", proc=receiver)
        for label, tree in trees(baseline).items():
            results[label] = [
                fanout_run(settings, tree, k, count, widths, rate, seconds, receiver_port)
                for k in agent_counts
            ]
    finally:
        receiver.stop()
    return results


def _ms(value: float) -> str:
    return f"{value * 1000:,.1f} ms" if value < 1 else f"{value:,.2f} s"


def rows(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Report rows ``(scenario, figure, value)`` of the ``subscriptions`` and ``fanout``
    results present in ``results`` (a run's whole results)."""
    out: list[tuple[str, str, str]] = []
    if results.get("subscriptions"):
        out += _subscription_rows(results["subscriptions"])
    if results.get("fanout"):
        out += _fanout_rows(results["fanout"])
    return out


NO_BASELINE = "none in this run (same code or none asked)"


def _beside(ing: dict[str, float]) -> str:
    pages = f"; list pages {ing['list_pages_per_s']:,.0f}/s" if "list_pages_per_s" in ing else ""
    return f"{ing['solo']:,.0f} → {ing['with_4_listers']:,.0f}/s (ratio {ing['ratio']:.2f}{pages})"


def _subscription_rows(subs: dict[str, Any]) -> list[tuple[str, str, str]]:
    n = f"{subs['subscriptions']:,} subscriptions"
    out = []
    for label in ("baseline", "this"):
        m = subs.get(label)
        if m is None:
            continue
        start, ready, lst = m["start_s"], m["rss_ready_mb"], m["list_s"]
        ack, ing = m["fanout_10_ack_s"], m["ingest_per_s"]
        out += [
            (
                f"{label}: ready after (gateway / agent)",
                f"{start['gateway']:.1f} / {start['agent']:.1f} s",
            ),
            (
                f"{label}: RSS once ready (gateway / agent)",
                f"{ready['gateway']:.0f} / {ready['agent']:.0f} MB",
            ),
            (f"{label}: list page of 50 p50 / p99", f"{_ms(lst['p50'])} / {_ms(lst['p99'])}"),
            (
                f"{label}: fan-out to 10 ack p50 / p99 (sequential)",
                f"{_ms(ack['p50'])} / {_ms(ack['p99'])}",
            ),
            (f"{label}: ingest alone → with 4 listing (agent delivering)", _beside(ing)),
        ]
        if "gateway_alone_ingest_per_s" in m:
            out.append(
                (
                    f"{label}: ingest alone → with 4 listing (gateway alone)",
                    _beside(m["gateway_alone_ingest_per_s"]),
                )
            )
    if "baseline" not in subs:
        out.append(("baseline", NO_BASELINE))
    return [(n, figure, value) for figure, value in out]


def _fanout_rows(fan: dict[str, Any]) -> list[tuple[str, str, str]]:
    n = f"fan-out at {fan['rate']:g} events/s, {fan['seconds']:g} s"
    n += f", base {fan['subscriptions']:,}"
    out = []
    for label in ("baseline", "this"):
        for run in fan.get(label, []):
            agents = run["agents"]
            for w in run["widths"]:
                figure = f"{label}: N={w['width']:,}, {agents} agent{'s' * (agents > 1)}"
                out.append((n, figure, _fanout_value(w)))
    if "baseline" not in fan:
        out.append((n, "baseline", NO_BASELINE))
    return out


def _fanout_value(w: dict[str, Any]) -> str:
    rss = w["rss_peak_mb"]
    agent_rss = "/".join(f"{v:.0f}" for k, v in sorted(rss.items()) if k != "gateway")
    ack, last = w["ack_s"], w["last_delivery_s"]
    return (
        f"ack p50 {_ms(ack['p50'])}, p99 {_ms(ack['p99'])} ({w['errors']} errors); "
        f"{w['delivered']:,} of {w['expected_deliveries']:,} delivered, "
        f"{w['deliveries_per_s']:,.0f}/s; event → last delivery p50 {_ms(last['p50'])}, "
        f"p99 {_ms(last['p99'])}; all acked after {w['all_acked_after_s']:.1f} s, delivered "
        f"after {w['all_delivered_after_s']:.1f} s; peak RSS gateway "
        f"{rss.get('gateway', float('nan')):.0f} MB (after: "
        f"{w.get('rss_after_mb', {}).get('gateway', float('nan')):.0f} MB), agents {agent_rss} MB"
    )
