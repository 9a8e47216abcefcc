"""Opt-in OpenTelemetry tracing (``WM_TRACING``) on the real pipeline: the gateway, an agent and
the scheduler run as processes and export OTLP/HTTP to a real collector endpoint on loopback;
one trace runs from the producer's ``traceparent`` through ingest, the failed attempt, the retry
hand-off and hand-back to the delivered attempt, and every POST carries the trace. Off, nothing
of OpenTelemetry is even imported."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from schemas import records
from schemas.topics import INGEST
from tests.support.fixtures_processes import MakeComponent
from tests.support.pipeline import create_subscription
from tests.support.receiver import Receiver, Reply, serve
from tests.support.records import produce
from webhookmaster import signing
from webhookmaster.settings import PROJECT_ROOT, Settings

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PRODUCER_SPAN = "00f067aa0ba902b7"
WAIT_S = 90.0


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    kind: int  # OTLP SpanKind: 2 server, 3 client, 4 producer, 5 consumer
    trace_id: str
    span_id: str
    parent: str


class Collector:
    """An OTLP/HTTP traces endpoint on 127.0.0.1 that keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> Collector:
        self._runner, port = await serve(self._export, "POST")
        self.url = f"http://127.0.0.1:{port}/v1/traces"
        return self

    async def stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _export(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        export = ExportTraceServiceRequest.FromString(body)
        for resource_spans in export.resource_spans:
            service = next(
                a.value.string_value
                for a in resource_spans.resource.attributes
                if a.key == "service.name"
            )
            for scope in resource_spans.scope_spans:
                for s in scope.spans:
                    self.spans.append(
                        Span(
                            service,
                            s.name,
                            s.kind,
                            s.trace_id.hex(),
                            s.span_id.hex(),
                            s.parent_span_id.hex(),
                        )
                    )
        async with self._changed:
            self._changed.notify_all()
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def wait_for(self, check: Callable[[], bool], timeout: float = WAIT_S) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(check), timeout)

    def of_trace(self, trace_id: str) -> list[Span]:
        return [s for s in self.spans if s.trace_id == trace_id]


@pytest.fixture
async def collector() -> AsyncIterator[Collector]:
    found = await Collector().start()
    yield found
    await found.stop()


def _one(spans: list[Span], **where: object) -> Span:
    found = [s for s in spans if all(getattr(s, k) == v for k, v in where.items())]
    assert len(found) == 1, (where, spans)
    return found[0]


async def test_one_trace_from_the_producer_through_a_retry_to_the_delivery(
    settings: Settings, receiver: Receiver, collector: Collector, make_component: MakeComponent
) -> None:
    settings = dataclasses.replace(settings, tracing=True, otlp_endpoint=collector.url)
    receiver.script("/hook", Reply(500), then=Reply(200))
    secret = signing.new_secret()
    sub = create_subscription(settings, receiver.url("/hook"), secret=secret)
    direct_sub = create_subscription(settings, receiver.url("/direct"))
    # OTEL_BSP_SCHEDULE_DELAY: export spans within 0.1 s
    started = [
        make_component(name, settings, OTEL_BSP_SCHEDULE_DELAY="100")
        for name in ("gateway", "agent", "scheduler")
    ]
    gateway = started[0]
    try:
        await asyncio.gather(*(c.wait_ready() for c in started))

        url = f"http://127.0.0.1:{gateway.port}/api/ingest/{sub}/?event_type=order.created"
        body = b'{"n": 1}'
        headers = {
            "traceparent": f"00-{TRACE_ID}-{PRODUCER_SPAN}-01",
            "X-Hub-Signature-256": signing.hub_signature(secret, body),
        }
        async with (
            aiohttp.ClientSession() as http,
            http.post(url, data=body, headers=headers) as reply,
        ):
            assert reply.status == 202, await reply.text()

        # A direct Kafka record continues the trace of its traceparent header as well.
        direct_trace = "0af7651916cd43dd8448eb211c80319c"
        record = records.Webhook(
            webhook_id="direct-1",
            subscription_id=direct_sub,
            event_type="order.created",
            body=b'{"n": 2}',
            received_at=records.now_iso(),
            traceparent=f"00-{direct_trace}-b7ad6b7169203331-01",
        )
        produce(settings, [(INGEST, direct_sub, record.body)], headers=record.headers())

        assert await receiver.wait_for(
            lambda: len(receiver.on("/hook")) == 2 and len(receiver.on("/direct")) == 1, WAIT_S
        ), receiver.hits
        first, second = receiver.on("/hook")
        for hit in (first, second):
            assert hit.headers["traceparent"].split("-")[1] == TRACE_ID
        assert receiver.on("/direct")[0].headers["traceparent"].split("-")[1] == direct_trace

        def complete() -> bool:
            names = [s.name for s in collector.of_trace(TRACE_ID)]
            return names.count("POST") == 2 and names.count("publish outcome") == 2

        await collector.wait_for(complete)
        await collector.wait_for(lambda: bool(collector.of_trace(direct_trace)))
    finally:
        for component in started:
            await component.terminate()

    spans = collector.of_trace(TRACE_ID)
    server = _one(spans, kind=2, service="webhookmaster-gateway")
    assert server.parent == PRODUCER_SPAN
    assert server.name == "POST /api/ingest/{subscription_id}/"
    publish = _one(spans, name=f"publish {settings.topic(INGEST)}")
    assert publish.parent == server.span_id
    handback = _one(spans, service="webhookmaster-scheduler")
    delivers = sorted((s for s in spans if s.kind == 5), key=lambda s: s.parent != publish.span_id)
    assert [d.parent for d in delivers] == [publish.span_id, handback.span_id]
    for deliver, hit in zip(delivers, (first, second), strict=True):
        post = _one(spans, name="POST", parent=deliver.span_id)
        assert post.kind == 3 and post.service == "webhookmaster-agent"
        assert hit.headers["traceparent"].split("-")[2] == post.span_id
    outcome = _one(spans, name="publish outcome", parent=delivers[0].span_id)
    assert handback.parent == outcome.span_id
    assert handback.name.startswith("hand back ")
    direct = _one(collector.of_trace(direct_trace), kind=5)
    assert direct.parent == "b7ad6b7169203331"


def test_tracing_off_imports_nothing_of_opentelemetry() -> None:
    code = (
        "import sys\n"
        "from webhookmaster import tracing\n"
        "import ingest_gateway.app, delivery_agents.agent, retry_scheduler.scheduler\n"
        "with tracing.span('x', 'server', '00-' + '1' * 32 + '-' + '2' * 16 + '-01') as t:\n"
        "    assert t is None\n"
        "tracing.annotate({'a': 1})\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=PROJECT_ROOT
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("header", "kept"),
    [
        (b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", True),
        (b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", False),  # upper case
        (b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", False),  # no flags
        (b"not a traceparent", False),
        (b"\xff\xfe", False),
    ],
)
def test_a_record_keeps_a_well_formed_traceparent_and_drops_a_bad_one(
    header: bytes, kept: bool
) -> None:
    source = records.Webhook("w-1", None, "order.created", b"{}", records.now_iso())
    headers = [*source.headers(), (records.H_TRACEPARENT, header)]
    parsed = records.parse_webhook(b"{}", headers, "x", "y")
    assert parsed.traceparent == (header.decode() if kept else None)
    assert parsed.replace(traceparent=None) == source  # nothing else changes
    if kept:
        assert (records.H_TRACEPARENT, header) in parsed.headers()
