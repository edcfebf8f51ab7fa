"""The console in Django admin, through Django's test client: buttons and list actions only for
those who may act, 403 for the rest, one audit row per real change."""
import uuid

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from orderhub.console.models import AuditEntry
from orderhub.deadletters.models import DeadLetter
from tests.unit.console.test_actions import letter, parked_order

pytestmark = pytest.mark.django_db(databases="__all__")


def logged_in(group):
    user = User.objects.create_user(f"{group}-{uuid.uuid4().hex[:6]}", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    client = Client()
    client.force_login(user)
    return client


def test_an_operator_sees_the_buttons_and_resolves_once_a_viewer_gets_403():
    order, scenario = parked_order()
    operator, viewer = logged_in("operators"), logged_in("viewers")
    page = f"/admin/orders/order/{order.id}/change/"
    act = f"/admin/orders/order/{order.id}/act/resolve/"

    shown = operator.get(page).content.decode()
    assert "Mark resolved" in shown and "saga-timeline" in shown and "send inventory.reserve" in shown
    seen = viewer.get(page).content.decode()
    assert "saga-timeline" in seen and "console-action" not in seen
    assert viewer.get(act).status_code == 403
    assert viewer.post(act, {"reason": "sneaky"}).status_code == 403
    assert not AuditEntry.objects.exists()

    assert operator.get(act).status_code == 200
    assert operator.post(act, {"reason": ""}).status_code == 200  # the form again: a reason is required
    assert not AuditEntry.objects.exists()
    first = operator.post(act, {"reason": "refunded by hand"}, follow=True)
    again = operator.post(act, {"reason": "refunded by hand"}, follow=True)
    assert "resolved" in [str(m) for m in first.context["messages"]][0]
    assert [str(m) for m in again.context["messages"]][0].startswith("nothing to do")
    assert AuditEntry.objects.count() == 1
    assert "refunded by hand" in operator.get(page).content.decode()  # the audit trail on its page


def test_list_actions_are_offered_to_operators_only():
    letter()
    operator, viewer = logged_in("operators"), logged_in("viewers")
    assert "replay_selected" in operator.get("/admin/deadletters/deadletter/").content.decode()
    listed = viewer.get("/admin/deadletters/deadletter/")
    assert listed.status_code == 200 and "replay_selected" not in listed.content.decode()
    dead = DeadLetter.objects.get()
    refused = viewer.post("/admin/deadletters/deadletter/", {"action": "replay_selected", "_selected_action": [dead.id],
                                                               "apply": "1", "reason": "sneaky"})
    assert refused.status_code in (200, 302, 403)
    assert DeadLetter.objects.get().status == "archived" and not AuditEntry.objects.exists()


def test_the_replay_list_action_counts_first_then_replays_once():
    dead = [letter(queue="orderhub_test_replay_nowhere") for _ in range(2)]
    operator = logged_in("operators")
    form = {"action": "replay_selected", "_selected_action": [d.id for d in dead], "index": "0"}
    preview = operator.post("/admin/deadletters/deadletter/", form)
    assert b"Dry run: <strong>2</strong> archived dead letter" in preview.content
    assert DeadLetter.objects.filter(status="archived").count() == 2
    done = operator.post("/admin/deadletters/deadletter/", form | {"apply": "1", "reason": "fixed"}, follow=True)
    assert "replayed 2 dead letter" in [str(m) for m in done.context["messages"]][0]
    assert AuditEntry.objects.filter(action="replay_dead_letter").count() == 2


def test_a_restock_form_submitted_twice_restocks_once():
    from decimal import Decimal

    from orderhub.orders.models import Product
    from sagas.models import OutboxMessage
    from workers.inventory.models import StockItem

    Product.objects.create(sku="SKU-MUG", name="Mug", price=Decimal("12.50"))
    StockItem.objects.using("inventory").create(sku="SKU-MUG", available=5)
    operator = logged_in("operators")
    url = "/admin/inventory/stockitem/SKU-MUG/act/restock/"
    form = {"quantity": "10", "reason": "supplier delivery", "request_id": str(uuid.uuid4())}
    operator.post(url, form)
    operator.post(url, form)
    assert OutboxMessage.objects.filter(message_type="inventory.restock").count() == 1
    assert AuditEntry.objects.filter(action="restock").count() == 1
    assert operator.post(url, form | {"quantity": "0"}).status_code == 200  # the form again, with its error
    assert logged_in("viewers").post(url, form).status_code == 403


def test_api_keys_are_never_shown_in_the_admin():
    from orderhub.apikeys.services import key_create

    user = User.objects.create_superuser("root", password="pw")
    key, raw = key_create(client=User.objects.create(username="client"), name="shop backend")
    client = Client()
    client.force_login(user)
    listing = client.get("/admin/apikeys/clientapikey/").content.decode()
    assert "shop backend" in listing and key.prefix in listing
    page = client.get(f"/admin/apikeys/clientapikey/{key.pk}/change/").content.decode()
    for shown in (listing, page):
        # Not the key, nor its secret part. (Its SHA-512 is in the change page's links: the library
        # makes it part of the row's primary key; a hash of 32 random characters gives nothing away.)
        assert raw not in shown
        assert raw.partition(".")[2] not in shown
    assert client.get("/admin/authtoken/tokenproxy/").status_code == 404  # the clear tokens are gone


def test_orders_cannot_be_deleted_from_the_admin():
    order, _ = parked_order()
    root = Client()
    root.force_login(User.objects.create_superuser("root", password="pw"))
    assert root.get(f"/admin/orders/order/{order.id}/delete/").status_code in (302, 403)
    assert type(order).objects.filter(id=order.id).exists()
