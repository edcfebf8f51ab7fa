"""The command and reply envelopes: what passes validation and what is dead-lettered as malformed."""
import json
import uuid

import pytest

from contracts import UnreadableVersion, Command, MalformedMessage, Reply


def authorize_command(**overrides) -> Command:
    fields = {
        "type": "payments.authorize",
        "saga_id": str(uuid.uuid4()),
        "step": "authorize",
        "attempt": 2,
        "payload": {"order_id": str(uuid.uuid4()), "total": "37.50", "payment_token": "tok_visa"},
        "correlation_id": "order-1",
        "causation_id": str(uuid.uuid4()),
        "deadline": "2030-01-01T00:00:30+00:00",
    }
    return Command(**(fields | overrides))


def over_the_wire(message) -> dict:
    return json.loads(json.dumps(message.to_dict()))


def command_body(**changes) -> dict:
    return over_the_wire(authorize_command()) | changes


def payload_with(**changes) -> dict:
    return authorize_command().payload | changes


def reply_body(**changes) -> dict:
    return over_the_wire(authorize_command().succeed(payment_id="pay-1")) | changes


# --- commands ---------------------------------------------------------------------------------
def test_command_survives_a_json_round_trip_unchanged():
    command = authorize_command()

    assert Command.from_dict(over_the_wire(command)) == command


def test_command_with_every_registered_type_round_trips():
    order_id = str(uuid.uuid4())
    payloads = {
        "inventory.reserve": {"order_id": order_id, "items": [{"sku": "BOOK-1", "quantity": 1}]},
        "inventory.release": {"order_id": order_id},
        "payments.authorize": {"order_id": order_id, "total": "10.00", "payment_token": "tok"},
        "payments.void": {"order_id": order_id},
        "payments.capture": {"order_id": order_id},
        "shipping.create": {"order_id": order_id, "shipping_address": {"country": "GB"}},
        "shipping.cancel": {"order_id": order_id},
        "notifications.send": {"order_id": order_id},
    }
    for message_type, payload in payloads.items():
        command = Command(type=message_type, saga_id=str(uuid.uuid4()), step="step", payload=payload)
        assert Command.from_dict(over_the_wire(command)) == command


@pytest.mark.parametrize("missing", ["type", "saga_id", "step", "payload", "message_id", "attempt"])
def test_command_missing_a_required_field_is_malformed(missing):
    body = command_body()
    del body[missing]

    with pytest.raises(MalformedMessage, match=rf"missing \['{missing}'\]"):
        Command.from_dict(body)


def test_command_with_an_unknown_field_is_malformed():
    with pytest.raises(MalformedMessage, match=r"unknown \['priority'\]"):
        Command.from_dict(command_body(priority="high"))


def test_command_that_is_not_an_object_is_malformed():
    with pytest.raises(MalformedMessage, match="expected an object"):
        Command.from_dict(["payments.authorize"])


def test_command_of_an_unknown_type_is_malformed():
    with pytest.raises(MalformedMessage, match="unknown message type 'payments.refund'"):
        Command.from_dict(command_body(type="payments.refund"))


@pytest.mark.parametrize("field", ["saga_id", "message_id"])
def test_command_with_a_bad_uuid_is_malformed(field):
    with pytest.raises(MalformedMessage, match=f"{field}: expected a UUID"):
        Command.from_dict(command_body(**{field: "not-a-uuid"}))


@pytest.mark.parametrize("attempt", [0, -1, "1", True], ids=["zero", "negative", "string", "bool"])
def test_command_with_an_attempt_that_is_not_a_positive_integer_is_malformed(attempt):
    with pytest.raises(MalformedMessage, match="attempt: expected a positive integer"):
        Command.from_dict(command_body(attempt=attempt))


def test_command_of_a_payload_version_this_release_does_not_read_is_refused_by_name():
    with pytest.raises(UnreadableVersion, match=r"v2: this release reads v1$"):
        Command.from_dict(command_body(version=2))
    with pytest.raises(MalformedMessage, match="version: expected a positive integer"):
        Command.from_dict(command_body(version="1"))


@pytest.mark.parametrize("payload", [["order_id"], "order_id", None], ids=["list", "string", "null"])
def test_command_whose_payload_is_not_an_object_is_malformed(payload):
    with pytest.raises(MalformedMessage, match="payload: expected an object"):
        Command.from_dict(command_body(payload=payload))


def test_command_whose_payload_lacks_a_contract_field_is_malformed():
    payload = payload_with()
    del payload["payment_token"]

    with pytest.raises(MalformedMessage, match="payload.payment_token: expected a non-empty string"):
        Command.from_dict(command_body(payload=payload))


def test_command_with_a_bad_uuid_in_its_payload_is_malformed():
    with pytest.raises(MalformedMessage, match="payload.order_id: expected a UUID"):
        Command.from_dict(command_body(payload=payload_with(order_id="order-1")))


@pytest.mark.parametrize(
    "total",
    ["10.005", 10.5, 10, "-1.00", "NaN", "ten"],
    ids=["three-decimals", "float", "int", "negative", "nan", "not-a-number"],
)
def test_command_with_money_that_is_not_a_two_place_decimal_string_is_malformed(total):
    with pytest.raises(MalformedMessage, match="payload.total"):
        Command.from_dict(command_body(payload=payload_with(total=total)))


@pytest.mark.parametrize("total", ["0", "10", "10.5", "10.50"])
def test_command_with_money_of_at_most_two_places_is_accepted(total):
    assert Command.from_dict(command_body(payload=payload_with(total=total))).payload["total"] == total


@pytest.mark.parametrize(
    "items",
    [[], [{"sku": "BOOK-1"}], [{"sku": "", "quantity": 1}], [{"sku": "BOOK-1", "quantity": 0}], ["BOOK-1"]],
    ids=["empty", "no-quantity", "blank-sku", "zero-quantity", "not-an-object"],
)
def test_reserve_command_with_bad_lines_is_malformed(items):
    body = over_the_wire(
        Command(
            type="inventory.reserve",
            saga_id=str(uuid.uuid4()),
            step="reserve_stock",
            payload={"order_id": str(uuid.uuid4()), "items": items},
        )
    )

    with pytest.raises(MalformedMessage, match="payload.items"):
        Command.from_dict(body)


# --- replies ----------------------------------------------------------------------------------
def test_success_reply_survives_a_json_round_trip_unchanged():
    reply = authorize_command().succeed(payment_id="pay-1")

    assert Reply.from_dict(over_the_wire(reply)) == reply


def test_failure_reply_survives_a_json_round_trip_unchanged():
    reply = authorize_command().fail("payment_declined", detail="insufficient funds")

    assert Reply.from_dict(over_the_wire(reply)) == reply
    assert not reply.succeeded


def test_reply_answers_the_command_it_was_built_from():
    command = authorize_command()

    reply = command.fail("payment_declined")

    assert (reply.in_reply_to, reply.saga_id, reply.step, reply.attempt) == (
        command.message_id, command.saga_id, command.step, command.attempt,
    )
    assert reply.message_id != command.message_id


@pytest.mark.parametrize("missing", ["in_reply_to", "saga_id", "step", "attempt", "outcome", "message_id"])
def test_reply_missing_a_required_field_is_malformed(missing):
    body = reply_body()
    del body[missing]

    with pytest.raises(MalformedMessage, match=rf"missing \['{missing}'\]"):
        Reply.from_dict(body)


def test_reply_with_an_unknown_field_is_malformed():
    with pytest.raises(MalformedMessage, match=r"unknown \['retry_after'\]"):
        Reply.from_dict(reply_body(retry_after=5))


def test_reply_that_is_not_an_object_is_malformed():
    with pytest.raises(MalformedMessage, match="expected an object"):
        Reply.from_dict("succeeded")


def test_reply_with_an_unknown_outcome_is_malformed():
    with pytest.raises(MalformedMessage, match="outcome"):
        Reply.from_dict(reply_body(outcome="maybe"))


@pytest.mark.parametrize("field", ["in_reply_to", "saga_id", "message_id"])
def test_reply_with_a_bad_uuid_is_malformed(field):
    with pytest.raises(MalformedMessage, match=f"{field}: expected a UUID"):
        Reply.from_dict(reply_body(**{field: "12345"}))


@pytest.mark.parametrize("reason", [None, ""], ids=["null", "blank"])
def test_failed_reply_without_a_reason_is_malformed(reason):
    with pytest.raises(MalformedMessage, match="reason: expected a non-empty string"):
        Reply.from_dict(reply_body(outcome="failed", reason=reason))


def test_failed_reply_with_the_reason_left_out_entirely_is_malformed():
    body = reply_body(outcome="failed")
    del body["reason"]

    with pytest.raises(MalformedMessage, match="reason"):
        Reply.from_dict(body)


def test_reply_whose_data_is_not_an_object_is_malformed():
    with pytest.raises(MalformedMessage, match="data: expected an object"):
        Reply.from_dict(reply_body(data=["pay-1"]))


def test_reply_of_an_unsupported_envelope_version_is_malformed():
    with pytest.raises(MalformedMessage, match="version"):
        Reply.from_dict(reply_body(version=2))
