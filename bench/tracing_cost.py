"""What opt-in tracing costs per delivered record, side by side in one run: the hooks the agent
runs per record (a consumer span, a client span with the traceparent for the POST, an
attribute, a producer span for the outcome) with tracing off, against the same work with no
hooks at all (the baseline), and with tracing on (spans recorded, exported to nowhere: an
in-memory exporter, so only the recording is measured).

Run: ``.venv/bin/python -m bench.tracing_cost`` (CPU only, no broker).
"""

from __future__ import annotations

from collections.abc import Callable

from bench.timing import median_per_call
from webhookmaster import settings as settings_mod
from webhookmaster import tracing

REPEATS = 15
LOOPS = 20_000
PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def work() -> dict[str, str]:
    return {"webhook-id": "w-1"}  # stands for the delivery's own work


def baseline() -> None:
    work()


def hooked() -> None:
    """The agent's per-record tracing calls, in their order (delivery_agents/agent.py)."""
    if not tracing.enabled():
        return attempt()
    with tracing.span("deliver order.created", "consumer", PARENT, {"webhookmaster.attempt": 1}):
        attempt()


def attempt() -> None:
    with tracing.span("POST", "client", None, {"url.full": "http://x/"}) as trace:
        headers = work()
        if trace is not None:
            headers[tracing.HEADER] = trace
        tracing.annotate({"http.response.status_code": 200})
    with tracing.span("publish outcome", "producer"):
        tracing.annotate({"webhookmaster.outcome": "delivered"})


def per_call_ns(fn: Callable[[], None]) -> float:
    return median_per_call(fn, REPEATS, LOOPS) * 1e9


def tracing_on() -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    tracing.setup(settings_mod.load({}, tracing=True, otlp_endpoint="http://127.0.0.1:9/"), "b")
    assert tracing._provider is not None
    tracing._provider._active_span_processor._span_processors = ()  # drop the OTLP exporter
    tracing._provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))


def main() -> None:
    base = per_call_ns(baseline)
    off = per_call_ns(hooked)
    tracing_on()
    on = per_call_ns(hooked)
    tracing.shutdown()
    print(f"per record, median of {REPEATS} x {LOOPS:,} calls:")
    print(f"  no hooks (baseline) {base:10.0f} ns")
    print(f"  tracing off         {off:10.0f} ns  (+{off - base:.0f} ns)")
    print(f"  tracing on          {on:10.0f} ns  (+{on - base:.0f} ns)")


if __name__ == "__main__":
    main()
