"""Tracing's rules, with the SDK's in-memory exporter: when it is on, which parent our spans take;
when it is off, nothing. (The whole trace through real processes: tests/integration/test_tracing.py.)"""
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from contracts import Command
from contracts.envelope import trace_context
from orderhub import tracing

SAGA = "8d0f7a51-7c4f-4a57-9a38-5b0f0f7f6c11"


@pytest.fixture
def spans(monkeypatch):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "ENABLED", True)
    monkeypatch.setattr(tracing, "_tracer", provider.get_tracer("test"))
    yield exporter


@pytest.mark.parametrize("environ, on", [
    ({}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
    ({"OTEL_TRACES_EXPORTER": "console"}, True),
    ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, False),
    ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, False),
])
def test_tracing_is_on_only_when_the_standard_variables_ask_for_an_exporter(environ, on):
    assert tracing.wanted(environ) is on


@pytest.mark.parametrize("node, service", [("orchestrator.8001@host", "orderhub-orchestrator"),
                                           ("payments-2@host", "orderhub-payments"), ("api", "orderhub-api")])
def test_a_process_is_named_after_its_role(node, service):
    assert tracing.service_name(node) == service


def test_when_off_nothing_is_made_and_nothing_travels():
    assert not tracing.ENABLED  # the unit tests' process never configures it
    with tracing.span("handle inventory.reserve", {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}) as made:
        assert made is None
    assert tracing.carrier() is None and tracing.carrier_for({"traceparent": "x"}) is None


def test_a_span_under_its_envelopes_context_when_nothing_current_is_in_that_trace(spans):
    with tracing._tracer.start_as_current_span("the request") as request:
        stored = tracing.carrier()
    with tracing._tracer.start_as_current_span("a relay tick") as tick:
        with tracing.span("outbox publish inventory.reserve", stored, kind="producer"):
            pass
    [publish] = [s for s in spans.get_finished_spans() if s.name.startswith("outbox publish")]
    assert publish.context.trace_id == request.get_span_context().trace_id
    assert publish.parent.span_id == request.get_span_context().span_id
    assert [link.context.span_id for link in publish.links] == [tick.get_span_context().span_id]
    assert publish.kind == trace.SpanKind.PRODUCER


def test_a_span_under_the_current_one_when_that_is_already_in_the_envelopes_trace(spans):
    with tracing._tracer.start_as_current_span("the request"):
        stored = tracing.carrier()
        with tracing._tracer.start_as_current_span("celery run") as run:
            with tracing.span("handle inventory.reserve", stored):
                pass
    [handle] = [s for s in spans.get_finished_spans() if s.name.startswith("handle")]
    assert handle.parent.span_id == run.get_span_context().span_id and not handle.links


def test_a_command_sent_from_another_trace_joins_the_sagas(spans):
    with tracing._tracer.start_as_current_span("the order's request"):
        saga_trace = tracing.carrier()
    with tracing._tracer.start_as_current_span("an operator's retry"):
        assert tracing.carrier_for(saga_trace) == saga_trace
    with tracing._tracer.start_as_current_span("the order's request, later", context=trace.set_span_in_context(
            trace.NonRecordingSpan(trace.SpanContext(int(saga_trace["traceparent"].split("-")[1], 16), 1, False)))):
        here = tracing.carrier()
        assert tracing.carrier_for(saga_trace) == here  # the current span, in the saga's trace
    assert tracing.carrier_for({}) == tracing.carrier_for(None) is None  # no current span, no saga trace


@pytest.mark.parametrize("value, kept", [
    ({"traceparent": "00-abc-def-01", "tracestate": "k=v"}, {"traceparent": "00-abc-def-01", "tracestate": "k=v"}),
    ({"traceparent": "00-abc-def-01", "baggage": "secret"}, {"traceparent": "00-abc-def-01"}),
    ({"tracestate": "k=v"}, None),
    ({"traceparent": 7}, None),
    ({"traceparent": "x" * 600}, None),
    ("00-abc-def-01", None),
    (None, None),
])
def test_an_envelopes_trace_context_is_kept_only_as_w3c_strings_and_a_broken_one_is_dropped(value, kept):
    assert trace_context(value) == kept
    command = Command.from_dict(Command(type="inventory.release", saga_id=SAGA, step="reserve_stock",
                                        payload={"order_id": SAGA}).to_dict() | {"trace": value})
    assert command.trace == kept  # handled either way: tracing never refuses a message
