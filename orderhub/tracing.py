"""Distributed tracing (OpenTelemetry): one trace per order, from the API request through the
outbox, RabbitMQ and each worker, to the saga's end.

Off by default, and then nothing is set up: `span()` is a null context and `carrier()` None, so
tracing costs a function call. It is on when the standard variables ask for an exporter:
`OTEL_TRACES_EXPORTER` (`otlp`, the default when `OTEL_EXPORTER_OTLP_ENDPOINT` or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set, or `console`), unless `OTEL_SDK_DISABLED=true`. The
OTLP exporter (HTTP/protobuf) reads its endpoint, headers and timeouts from `OTEL_EXPORTER_OTLP_*`,
the batch processor from `OTEL_BSP_*`, the service name from `OTEL_SERVICE_NAME` (else
`orderhub-<process>`).

How the trace holds together:
- The maintained instrumentations make the spans of the API request (Django), of each Celery
  publish and task run (Celery, which carries the context in the message headers) and of every
  SQL statement (psycopg2).
- The W3C trace context also travels in the message envelope (`trace`, contracts/envelope.py),
  so it is stored with each outbox row: the relay sweep, publishing a row many seconds later
  from another process, starts its `outbox publish` span under the span that wrote the row.
- A saga records the context of the request that started it. A command the saga sends from
  another trace (an operator's retry, a cancel, a deadline) joins the order's trace, with a link
  to the trace that caused it.
"""
from __future__ import annotations

import contextlib
import os
import re

import structlog

log = structlog.get_logger(__name__)

ENABLED = False
_tracer = None


def wanted(environ=os.environ) -> bool:
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def service_name(process: str) -> str:
    """`orchestrator` from a Celery node name such as `orchestrator.8001@host` or `payments-2@host`."""
    return "orderhub-" + re.split(r"[.@-]", process, maxsplit=1)[0]


def configure(process: str) -> bool:
    """Set tracing up for this process, once, if the environment asks for it; True when on."""
    global ENABLED, _tracer
    if ENABLED or not wanted():
        return ENABLED
    from opentelemetry import trace
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.psycopg2 import Psycopg2Instrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": service_name(process)}
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(_exporter()))
    trace.set_tracer_provider(provider)
    # The standard switch for instrumentations: OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=psycopg2 drops
    # the SQL spans (most of a saga's spans, and of tracing's cost: make bench).
    disabled = {name.strip() for name in os.environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "").split(",")}
    for name, instrumentor, options in [("django", DjangoInstrumentor, {}), ("celery", CeleryInstrumentor, {}),
                                        ("psycopg2", Psycopg2Instrumentor, {"skip_dep_check": True})]:
        if name not in disabled:
            instrumentor().instrument(**options)
    _tracer = trace.get_tracer("orderhub")
    ENABLED = True
    log.info("tracing on", service=provider.resource.attributes.get("service.name"))
    return True


def _exporter():
    kind = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
    if kind == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if kind != "otlp":
        raise ValueError(f"OTEL_TRACES_EXPORTER={kind!r}: OrderHub ships the otlp and console exporters")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def carrier() -> dict | None:
    """The current span's W3C trace context (`traceparent`, `tracestate`), for an envelope."""
    if not ENABLED:
        return None
    from opentelemetry.propagate import inject

    headers: dict = {}
    inject(headers)
    return headers or None


def _trace_id(context) -> int:
    from opentelemetry import trace

    return trace.get_current_span(context).get_span_context().trace_id


def carrier_for(saga_trace: dict | None) -> dict | None:
    """The context a saga's new command carries: the current one when it belongs to the saga's
    trace (a reply being applied), else the saga's own (an operator's action, a deadline), so
    every command of an order stays in the order's trace."""
    if not ENABLED:
        return None
    from opentelemetry.propagate import extract

    current = carrier()
    if saga_trace and (current is None or _trace_id(None) != _trace_id(extract(saga_trace))):
        return dict(saga_trace)
    return current


@contextlib.contextmanager
def span(name: str, envelope_trace: dict | None = None, *, kind: str = "internal", **attributes):
    """A span of our own. Its parent is the current span when that is in the envelope's trace (a
    task run under the context its message headers carried); else the envelope's context (a relay
    publishing a row written long ago, a message whose headers lost the context), with a link to
    the current span."""
    if not ENABLED:
        yield None
        return
    from opentelemetry import trace
    from opentelemetry.propagate import extract

    parent = None
    links = []
    if isinstance(envelope_trace, dict) and envelope_trace:
        stored = extract({k: v for k, v in envelope_trace.items() if isinstance(v, str)})
        stored_id = _trace_id(stored)
        current = trace.get_current_span().get_span_context()
        if stored_id and stored_id != current.trace_id:
            parent = stored
            if current.is_valid:
                links.append(trace.Link(current))
    span_kind = {"producer": trace.SpanKind.PRODUCER, "consumer": trace.SpanKind.CONSUMER}.get(
        kind, trace.SpanKind.INTERNAL)
    with _tracer.start_as_current_span(name, context=parent, kind=span_kind, links=links,
                                       attributes={k: v for k, v in attributes.items() if v is not None}) as current:
        yield current
