"""Saga definitions are versioned, and an instance is pinned to the version it started with: a
newer version loaded beside it changes nothing for it; it is moved only by `sagas move`, and only
where that is safe; a version that live sagas are pinned to cannot be dropped unnoticed."""
import io
import uuid

import pytest
from django.core.management import call_command

from orderhub.console import actions
from sagas import engine
from sagas.engine import Saga, Step
from sagas.models import SagaInstance
from tests.unit.sagas.saga_harness import given, place_order_context

pytestmark = pytest.mark.django_db(databases="__all__")
ADA = actions.Actor("ada", "admin")


def steps(*names):
    table = {
        "reserve_stock": Step("reserve_stock", "inventory.reserve", compensate="inventory.release"),
        "authorize": Step("authorize", "payments.authorize", compensate="payments.void"),
        "create_shipment": Step("create_shipment", "shipping.create", compensate="shipping.cancel"),
        "capture": Step("capture", "payments.capture", pivot=True),
        "notify": Step("notify", "notifications.send", retriable=True),
    }
    return [table[name] for name in names]


@pytest.fixture
def versions(monkeypatch):
    """v1 without a shipment, v2 with one inserted before the capture, v3 without the authorize."""
    monkeypatch.setattr(engine, "VERSIONS", dict(engine.VERSIONS))
    monkeypatch.setattr(engine, "REGISTRY", dict(engine.REGISTRY))
    name = f"versioned_{uuid.uuid4().hex[:8]}"
    v1 = Saga(name, *steps("reserve_stock", "authorize", "capture", "notify"), version=1)
    v2 = Saga(name, *steps("reserve_stock", "authorize", "create_shipment", "capture", "notify"), version=2)
    v3 = Saga(name, *steps("reserve_stock", "create_shipment", "capture", "notify"), version=3)
    return v1, v2, v3


def test_new_sagas_start_with_the_newest_version_unless_a_setting_pins_another(versions, settings):
    v1, _, v3 = versions
    assert engine.starting_definition(v1.name) is v3
    settings.SAGA_START_VERSIONS = {v1.name: 1}
    assert engine.starting_definition(v1.name) is v1
    settings.SAGA_START_VERSIONS = {v1.name: 7}
    with pytest.raises(engine.DefinitionNotLoaded, match="v7"):
        engine.starting_definition(v1.name)


def test_a_saga_is_driven_by_the_version_it_started_with(versions):
    v1, v2, _ = versions
    old = given(v1, place_order_context()).succeed("inventory.reserve", "payments.authorize")
    new = given(v2, place_order_context()).succeed("inventory.reserve", "payments.authorize")

    old.expect_command("payments.capture").reply_success().succeed("notifications.send").expect_status("completed")
    new.expect_command("shipping.create")
    assert (old.saga.definition_version, new.saga.definition_version) == (1, 2)


def test_a_compensation_follows_the_sagas_own_version(versions):
    v1, _, _ = versions
    given(v1, place_order_context()).succeed("inventory.reserve") \
        .expect_command("payments.authorize").reply_failure("payment_declined") \
        .expect_command("inventory.release").reply_success() \
        .expect_status("compensated", failure_reason="payment_declined")


def test_a_saga_moves_to_a_version_that_only_adds_steps_ahead_of_it(versions):
    v1, _, _ = versions
    scenario = given(v1, place_order_context()).succeed("inventory.reserve").expect_command("payments.authorize")

    result = actions.move_saga(ADA, scenario.saga_id, 2, "ship with v2")

    assert result.changed and "v1 to v2" in result.message
    moved = scenario
    moved.definition = engine.definition_of(moved.saga)
    moved.reply_success().expect_command("shipping.create").reply_success() \
        .expect_command("payments.capture").reply_success().succeed("notifications.send").expect_status("completed")
    assert [s.name for s in moved.saga.steps.order_by("index")] == [s.name for s in versions[1].steps]


def test_a_move_is_refused_where_the_current_step_is_gone(versions):
    v1, _, _ = versions
    scenario = given(v1, place_order_context()).succeed("inventory.reserve").expect_command("payments.authorize")
    with pytest.raises(actions.ActionRefused, match="at step 'authorize', which .* v3 no longer has"):
        actions.move_saga(ADA, scenario.saga_id, 3, "drop authorize")
    assert SagaInstance.objects.get(id=scenario.saga_id).definition_version == 1


def test_a_move_is_refused_where_a_step_before_the_current_one_would_be_skipped(versions):
    v1, _, _ = versions
    scenario = given(v1, place_order_context()).succeed("inventory.reserve", "payments.authorize") \
        .expect_command("payments.capture")
    with pytest.raises(actions.ActionRefused, match=r"\['create_shipment'\] before 'capture'.*would be skipped"):
        actions.move_saga(ADA, scenario.saga_id, 2, "ship")
    with pytest.raises(actions.ActionRefused, match="is not loaded"):
        actions.move_saga(ADA, scenario.saga_id, 9, "nowhere")
    assert SagaInstance.objects.get(id=scenario.saga_id).definition_version == 1


def test_live_sagas_pinned_to_a_version_not_loaded_are_named_and_counted(versions):
    v1, _, _ = versions
    given(v1, place_order_context()).expect_command("inventory.reserve")
    assert engine.unloaded_versions_in_use() == []
    SagaInstance.objects.filter(saga_type=v1.name).update(definition_version=42)

    assert engine.unloaded_versions_in_use() == [f"{v1.name} v42: 1 live saga pinned to it, not loaded by this release"]
    out = io.StringIO()
    with pytest.raises(SystemExit):
        call_command("sagas", "versions", stdout=out)
    assert f"NOT LOADED: {v1.name} v42" in out.getvalue()


def test_a_reply_to_a_saga_of_a_version_not_loaded_is_refused_by_name(versions):
    v1, _, _ = versions
    scenario = given(v1, place_order_context()).expect_command("inventory.reserve")
    SagaInstance.objects.filter(id=scenario.saga_id).update(definition_version=42)
    with pytest.raises(engine.DefinitionNotLoaded, match=f"pinned to {v1.name} v42"):
        scenario.reply_success()


def test_the_command_line_lists_versions_and_moves_by_version(versions):
    v1, _, _ = versions
    ready = given(v1, place_order_context()).succeed("inventory.reserve").expect_command("payments.authorize")
    late = given(v1, place_order_context()).succeed("inventory.reserve", "payments.authorize") \
        .expect_command("payments.capture")
    out = io.StringIO()
    call_command("sagas", "move", "--type", v1.name, "--from-version", "1", "--to", "2", "--reason", "roll", stdout=out)
    assert "1 moved, 1 refused" in out.getvalue()
    assert SagaInstance.objects.get(id=ready.saga_id).definition_version == 2
    assert SagaInstance.objects.get(id=late.saga_id).definition_version == 1

    listing = io.StringIO()
    call_command("sagas", "list", "--version", "2", stdout=listing)
    assert str(ready.saga_id) in listing.getvalue() and " v2 " in listing.getvalue()
    assert str(late.saga_id) not in listing.getvalue()
