"""Message contracts are versioned: a worker reads the current payload version of a type and the
one before it (the older one upcast to the current shape), refuses any other by name, and the
orchestrator writes the current version unless a pin holds it back."""
import json
import uuid

import pytest

from contracts import Command, MalformedMessage, UnreadableVersion, envelope
from contracts.envelope import mapping, register, uuid_text

TYPE = "shipping.versioned_test"


@pytest.fixture(autouse=True)
def own_registry(monkeypatch):
    for name in ("_PAYLOADS", "_UPCASTS", "_WRITERS", "_WRITE_PINS"):
        monkeypatch.setattr(envelope, name, dict(getattr(envelope, name)))


def rename(payload):
    payload["address"] = payload.pop("shipping_address")
    return payload


def body(version, payload):
    return json.loads(json.dumps(Command(type=TYPE, saga_id=str(uuid.uuid4()), step="ship", payload=payload,
                                         version=version).to_dict()))


ORDER = str(uuid.uuid4())
V1 = {"order_id": ORDER, "shipping_address": {"country": "GB"}}
V2 = {"order_id": ORDER, "address": {"country": "GB"}}


def two_versions():
    register(TYPE, order_id=uuid_text, shipping_address=mapping)
    register(TYPE, version=2, order_id=uuid_text, address=mapping, upcast=rename,
             writer=lambda context: {"order_id": context["order_id"], "address": context["shipping_address"]})


def test_a_worker_reads_the_version_before_upcast_to_the_current_shape():
    two_versions()
    assert envelope.readable_versions(TYPE) == [1, 2]
    old = Command.from_dict(body(1, V1))
    assert (old.version, old.payload) == (2, V2)
    assert Command.from_dict(body(2, V2)).payload == V2


def test_each_version_is_checked_against_its_own_fields():
    two_versions()
    with pytest.raises(MalformedMessage, match="payload.address: expected an object"):
        Command.from_dict(body(2, V1))
    with pytest.raises(MalformedMessage, match="payload.shipping_address: expected an object"):
        Command.from_dict(body(1, V2))


def test_a_version_two_behind_or_ahead_is_refused_by_name():
    two_versions()
    register(TYPE, version=3, order_id=uuid_text, address=mapping)
    with pytest.raises(UnreadableVersion, match=rf"{TYPE} v1: this release reads v2 and v3"):
        Command.from_dict(body(1, V1))
    with pytest.raises(UnreadableVersion, match=rf"{TYPE} v4: this release reads v2 and v3"):
        Command.from_dict(body(4, V2))


def test_the_orchestrator_writes_the_current_version_unless_pinned_to_the_one_before():
    two_versions()
    context = {"order_id": ORDER, "shipping_address": {"country": "GB"}, "total": "1.00"}
    assert envelope.payload_for(TYPE, context) == (2, V2)
    envelope.pin_write_versions({TYPE: 1})
    assert envelope.payload_for(TYPE, context) == (1, context)
    with pytest.raises(ValueError, match="not registered"):
        envelope.pin_write_versions({TYPE: 5})


def test_a_version_is_registered_once():
    two_versions()
    with pytest.raises(ValueError, match="already registered"):
        register(TYPE, version=2, order_id=uuid_text)
