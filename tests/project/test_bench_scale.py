"""The scale scenarios' pure helpers (subscription plan, fan-out figures, report rows,
percentiles) and the receiver's count of deliveries per event."""

from __future__ import annotations

import asyncio
import math

import aiohttp
import orjson
import pytest
from aiohttp import web

from bench import harness, scale
from bench.receiver import build_app


def test_percentiles_pick_the_ranked_values() -> None:
    values = [float(v) for v in range(100, 0, -1)]  # 1 .. 100, unsorted
    out = harness.percentiles(values)
    assert (out["p50"], out["p90"], out["p99"], out["max"]) == (51.0, 91.0, 100.0, 100.0)
    assert harness.percentiles([0.5])["p99"] == 0.5
    assert all(math.isnan(v) for v in harness.percentiles([]).values())


def test_event_types_give_each_width_its_own_subscribers() -> None:
    types = scale.event_types(2_000, (10, 100, 1_000))
    assert len(types) == 2_000
    for width in (10, 100, 1_000):
        assert types.count(scale.fanout_type(width)) == width
    others = types[1_110:]
    assert all(t.startswith("bench.type.") for t in others)
    assert len(set(others)) == 890  # fewer than 1,000 left: each its own type
    with pytest.raises(ValueError):
        scale.event_types(100, (10, 100))


def test_summarise_fanout_from_receiver_events() -> None:
    # [sent, first arrival, last arrival, distinct webhook ids]
    events = {
        "t:0": [100.0, 100.5, 101.0, 3],
        "t:1": [100.05, 100.6, 102.0, 3],
        "t:2": [100.1, 100.7, 104.0, 2],  # one delivery missing
    }
    ack = {
        "accepted": 3,
        "errors": [],
        "latencies": [0.01, 0.02, 0.03],
        "started": 99.99,
        "finished": [100.01, 100.07, 100.2],
    }
    out = scale.summarise_fanout(events, 3, ack)
    assert out["expected_deliveries"] == 9
    assert out["delivered"] == 8
    assert out["complete_events"] == 2
    assert out["deliveries_per_s"] == pytest.approx(8 / 3.5)
    assert out["last_delivery_s"]["max"] == pytest.approx(3.9)
    assert out["last_delivery_s"]["p50"] == pytest.approx(1.95)
    assert out["first_delivery_s"]["p50"] == pytest.approx(0.55)
    assert out["ack_s"]["p99"] == 0.03
    assert out["all_acked_after_s"] == pytest.approx(0.21)
    assert out["all_delivered_after_s"] == pytest.approx(4.01)


def test_summarise_fanout_with_nothing_delivered() -> None:
    ack = {"accepted": 2, "errors": ["HTTP 503"], "latencies": [], "started": 1.0, "finished": []}
    out = scale.summarise_fanout({}, 10, ack)
    assert out["delivered"] == 0 and out["errors"] == 1
    assert math.isnan(out["deliveries_per_s"])


def _fanout_run(width: int) -> dict:
    run = scale.summarise_fanout(
        {"t:0": [0.0, 0.1, 0.2, width]},
        width,
        {"accepted": 1, "errors": [], "latencies": [0.004], "started": 0.0, "finished": [0.01]},
    )
    return run | {
        "rss_peak_mb": {"gateway": 80.0, "agent1": 90.0, "agent2": 95.0},
        "rss_after_mb": {"gateway": 70.0, "agent1": 85.0, "agent2": 90.0},
    }


def test_rows_report_every_run_and_say_when_there_is_no_baseline() -> None:
    results = {
        "fanout": {
            "subscriptions": 100_000,
            "rate": 20,
            "seconds": 10,
            "this": [
                {"agents": 1, "widths": [_fanout_run(10), _fanout_run(1_000)]},
                {"agents": 2, "widths": [_fanout_run(10)]},
            ],
        }
    }
    rows = scale.rows(results)
    figures = [figure for _, figure, _ in rows]
    assert figures == [
        "this: N=10, 1 agent",
        "this: N=1,000, 1 agent",
        "this: N=10, 2 agents",
        "baseline",
    ]
    assert "ack p50 4.0 ms" in rows[0][2]
    assert "1,000 of 1,000 delivered" in rows[1][2]
    assert "peak RSS gateway 80 MB (after: 70 MB), agents 90/95 MB" in rows[2][2]
    assert rows[0][0] == "fan-out at 20 events/s, 10 s, base 100,000"


def test_rows_of_the_subscriptions_scenario_side_by_side() -> None:
    measured = {
        "start_s": {"gateway": 2.0, "agent": 3.0},
        "rss_ready_mb": {"gateway": 140.0, "agent": 150.0},
        "list_s": {"p50": 0.0005, "p99": 0.002},
        "fanout_10_ack_s": {"p50": 0.007, "p99": 1.5},
        "ingest_per_s": {"solo": 1000.0, "with_4_listers": 800.0, "ratio": 0.8},
    }
    this = measured | {
        "gateway_alone_ingest_per_s": {
            "solo": 3000.0,
            "with_4_listers": 2700.0,
            "ratio": 0.9,
            "list_pages_per_s": 180.4,
        }
    }
    rows = scale.rows(
        {"subscriptions": {"subscriptions": 100_000, "this": this, "baseline": measured}}
    )
    assert len(rows) == 11  # results of an older bench have no gateway-alone figure
    assert rows[0][1].startswith("baseline:") and rows[5][1].startswith("this:")
    values = dict((figure, value) for _, figure, value in rows)
    assert values["this: list page of 50 p50 / p99"] == "0.5 ms / 2.0 ms"
    assert values["this: fan-out to 10 ack p50 / p99 (sequential)"] == "7.0 ms / 1.50 s"
    assert (
        values["this: ingest alone → with 4 listing (agent delivering)"]
        == "1,000 → 800/s (ratio 0.80)"
    )
    assert (
        values["this: ingest alone → with 4 listing (gateway alone)"]
        == "3,000 → 2,700/s (ratio 0.90; list pages 180/s)"
    )


def test_peak_by_process() -> None:
    samples = [(0.0, {"gateway": 1.0}), (1.0, {"gateway": 3.0, "agent1": 2.0})]
    assert scale.peak_by_process(samples) == {"gateway": 3.0, "agent1": 2.0}


def test_receiver_counts_distinct_deliveries_per_event() -> None:
    async def scenario() -> dict:
        runner = web.AppRunner(build_app(0))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        base = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession() as session:
                for webhook_id, event in (("a", "x:0"), ("b", "x:0"), ("a", "x:0"), ("c", "x:1")):
                    body = orjson.dumps({"t": 5.0, "ev": event})
                    headers = {"webhook-id": webhook_id}
                    async with session.post(f"{base}/hook/1", data=body, headers=headers) as r:
                        assert r.status == 200
                async with session.post(f"{base}/hook/2", data=b'{"t": 1}') as r:
                    assert r.status == 200
                async with session.get(f"{base}/events") as r:
                    return dict(await r.json())
        finally:
            await runner.cleanup()

    events = asyncio.run(scenario())
    assert set(events) == {"x:0", "x:1"}
    sent, first, last, distinct = events["x:0"]
    assert sent == 5.0 and first <= last and distinct == 2  # "a" twice counts once
    assert events["x:1"][3] == 1


def test_loadgen_fanout_bodies_carry_the_event_key() -> None:
    from bench import loadgen

    event = orjson.loads(loadgen.body(7, "bench.fan.10", "abc"))
    assert event["event_type"] == "bench.fan.10"
    assert event["payload"]["ev"] == "abc:7" and event["payload"]["i"] == 7
    assert isinstance(event["payload"]["t"], float)
    plain = orjson.loads(loadgen.body(3))
    assert set(plain) == {"i", "t", "pad"}
