"""Opt-in OpenTelemetry tracing (``WM_TRACING=true``), exported over OTLP/HTTP.

A trace starts at ingest, or continues from the producer's W3C ``traceparent`` (HTTP header, or
Kafka record header on a direct record). Each hop opens a span with :func:`span`, which yields
the ``traceparent`` of that span for the next hop to carry (the Kafka record it produces, the
delivery POST). Off (the default), nothing of OpenTelemetry is imported: :func:`span` returns
one shared do-nothing context that yields None, and :func:`annotate` returns at once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, Literal

from schemas.records import H_TRACEPARENT, valid_traceparent
from webhookmaster.settings import Settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Tracer

HEADER = H_TRACEPARENT  # the W3C header, on HTTP requests and Kafka records
Kind = Literal["server", "client", "producer", "consumer", "internal"]  # OpenTelemetry SpanKind

_OFF: AbstractContextManager[str | None] = nullcontext(None)
_tracer: Tracer | None = None
_provider: TracerProvider | None = None


def enabled() -> bool:
    return _tracer is not None


def setup(settings: Settings, component: str) -> None:
    """Start exporting this process's spans when ``settings.tracing`` is on; else do nothing."""
    global _tracer, _provider
    if not settings.tracing:
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    from webhookmaster import __version__

    _provider = TracerProvider(
        resource=Resource.create(
            {"service.name": f"webhookmaster-{component}", "service.version": __version__}
        ),
        sampler=ParentBased(TraceIdRatioBased(settings.tracing_sample_ratio)),
    )
    exporter = OTLPSpanExporter(endpoint=settings.otlp_endpoint or None)
    _provider.add_span_processor(BatchSpanProcessor(exporter))
    _tracer = _provider.get_tracer("webhookmaster")


def shutdown() -> None:
    """Flush and stop the exporter (at process exit)."""
    global _tracer, _provider
    if _provider is not None:
        _provider.shutdown()
    _tracer = _provider = None


def span(
    name: str,
    kind: Kind = "internal",
    parent: str | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> AbstractContextManager[str | None]:
    """A span named ``name``, child of the current span or of ``parent`` (a traceparent);
    yields the traceparent that the next hop should carry (None when tracing is off)."""
    if _tracer is None:
        return _OFF
    return _span(_tracer, name, kind, parent, attributes)


@contextmanager
def _span(
    tracer: Tracer,
    name: str,
    kind: Kind,
    parent: str | None,
    attributes: Mapping[str, Any] | None,
) -> Iterator[str | None]:
    from opentelemetry.trace import SpanKind
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    propagator = TraceContextTextMapPropagator()
    context = propagator.extract({HEADER: parent}) if valid_traceparent(parent) else None
    with tracer.start_as_current_span(
        name, context=context, kind=SpanKind[kind.upper()], attributes=attributes
    ):
        carrier: dict[str, str] = {}
        propagator.inject(carrier)
        yield carrier.get(HEADER)


def annotate(attributes: Mapping[str, Any]) -> None:
    """Set ``attributes`` (None values skipped) on the current span; nothing when off."""
    if _tracer is None:
        return
    from opentelemetry import trace

    current = trace.get_current_span()
    for key, value in attributes.items():
        if value is not None:
            current.set_attribute(key, value)
