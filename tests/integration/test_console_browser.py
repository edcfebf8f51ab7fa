"""The operator's console in a real browser (Playwright driving Debian's chromium, installed by
scripts/install-test-tools.sh; nothing is downloaded): against a real gunicorn, workers, RabbitMQ
and PostgreSQL. Screenshots go to var/screenshots/."""
import os
import re
import uuid

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import call_command

from orderhub.console.models import AuditEntry
from orderhub.deadletters.models import DeadLetter
from orderhub.orders.models import Order
from tests.conftest import eventually
from tests.integration.helpers import api_client, place, product, wait_ended
from tests.support.cluster import ROOT
from workers.payments.models import Inbox as PaymentsInbox
from workers.payments.models import ProviderCharge, SandboxFault

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, databases="__all__")]

CHROMIUM = "/usr/bin/chromium"
SHOTS = ROOT / "var" / "screenshots"
# Playwright's sync API runs an event loop in this thread; the test's own ORM calls are synchronous.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in requirements.txt")


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: scripts/install-test-tools.sh installs it (make test runs it)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--disable-dev-shm-usage"])
        yield browser
        browser.close()


@pytest.fixture
def site(api_process):
    call_command("collectstatic", "--noinput", verbosity=0)  # the admin's styles, served by whitenoise
    SHOTS.mkdir(parents=True, exist_ok=True)
    return api_process().base


def staff(group):
    password = uuid.uuid4().hex
    user = User.objects.create_user(f"{group}-{uuid.uuid4().hex[:6]}", password=password, is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    return user.username, password


def log_in(browser, site, who):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(15_000)
    page.goto(f"{site}/admin/login/")
    page.fill("#id_username", who[0])
    page.fill("#id_password", who[1])
    page.click("input[type=submit]")
    page.wait_for_selector("#user-tools")
    return page


def act(page, button, reason, **fields):
    """Click a console button on a record's page, give the reason (and fields), confirm."""
    page.click(f"a.console-action:text-is('{button}')")
    for name, value in fields.items():
        page.fill(f"#id_{name}", str(value))
    page.fill("#id_reason", reason)
    page.click("input[name=confirm]")
    return message(page)


def message(page) -> str:
    """The first message the admin shows (lower case: its style capitalises the first letter)."""
    return page.locator("ul.messagelist li").first.inner_text().lower()


def needs_attention(sku):
    return place(api_client(), sku=sku, token="tok_void_broken")["id"]


def test_an_operator_recovers_orders_and_replays_a_dead_letter_a_viewer_only_reads(live, site, browser):
    sku = product(stock=10)
    first, second = needs_attention(sku), needs_attention(sku)
    for order_id in (first, second):
        assert wait_ended(order_id, timeout=40).status == "needs_attention"
    # The first order's exhausted void (replaying the second's would resume that saga by itself).
    first_saga = str(Order.objects.get(id=first).saga_id)
    letter = eventually(lambda: DeadLetter.objects.filter(message_type="payments.void", status="archived",
                                                          body__contains=first_saga).first(),
                        timeout=20, message="the first order's exhausted void in the archive")
    operator = staff("operators")
    page = log_in(browser, site, operator)

    # One order, one screen: the saga's timeline, what is still to come, the rows in each domain.
    page.goto(f"{site}/admin/orders/order/{first}/change/")
    timeline = page.locator("#saga-timeline").inner_text()
    assert "send inventory.reserve" in timeline and "compensate payments.void" in timeline
    assert "compensation_failed" in timeline
    assert "nothing: the saga is compensation_failed" in page.locator("#steps-to-come").inner_text()
    assert "reservation:" in page.locator("#domain-records").inner_text()
    page.screenshot(path=str(SHOTS / "1-order-timeline.png"), full_page=True)

    # Lift the sandbox fault, then retry the saga from its order's page.
    page.goto(f"{site}/admin/payments/sandboxfault/")
    page.click("text=lift:tok_void_broken")
    assert "lifted" in act(page, "Lift fault", "provider fixed, ticket 7")
    assert SandboxFault.objects.get(key="lift:tok_void_broken").lifted
    page.goto(f"{site}/admin/orders/order/{first}/change/")
    assert "resumed" in act(page, "Retry", "provider fixed, ticket 7")
    assert wait_ended(first, timeout=30).status == "failed"
    page.goto(f"{site}/admin/orders/order/{first}/change/")
    assert page.locator(".field-status .readonly").inner_text().lower() == "failed"
    audit = page.locator("#audit-trail").inner_text()
    assert operator[0] in audit and "provider fixed, ticket 7" in audit
    assert page.locator("a.console-action:text-is('Retry')").count() == 0  # nothing left to retry
    page.screenshot(path=str(SHOTS / "2-order-retried-audit.png"), full_page=True)

    # Replay a dead letter: filter the list, select, a dry-run count, a reason; applied once.
    page.goto(f"{site}/admin/deadletters/deadletter/?status__exact=archived&queue=payments.commands")
    page.screenshot(path=str(SHOTS / "3-dead-letters-filtered.png"), full_page=True)
    page.check(f"input.action-select[value='{letter.id}']")
    page.select_option("select[name=action]", "replay_selected")
    page.click("button[name=index]")
    assert re.search(r"Dry run: 1 archived dead letter", page.locator("#console-dry-run").inner_text())
    page.fill("#id_reason", "void fault lifted")
    page.click("input[name=apply]")
    assert "replayed 1 dead letter" in message(page)
    eventually(lambda: PaymentsInbox.objects.filter(message_id=letter.message_key).count() == 1, timeout=15,
               message="the replayed void to be handled")
    page.goto(f"{site}/admin/deadletters/deadletter/{letter.id}/change/")
    assert page.locator("a.console-action:text-is('Replay')").count() == 0  # replayed: no second click
    page.goto(f"{site}/admin/deadletters/deadletter/{letter.id}/act/replay/")
    page.fill("#id_reason", "again")
    page.click("input[name=confirm]")
    assert message(page).startswith("nothing to do")
    assert PaymentsInbox.objects.filter(message_id=letter.message_key).count() == 1
    assert AuditEntry.objects.filter(action="replay_dead_letter", target_id=str(letter.id)).count() == 1

    # Mark the other order resolved: a final state that keeps its reason.
    reason_before = Order.objects.get(id=second).failure_reason
    page.goto(f"{site}/admin/orders/order/{second}/change/")
    assert "resolved" in act(page, "Mark resolved", "voided at the provider by hand")
    order = Order.objects.get(id=second)
    assert (order.status, order.failure_reason) == ("resolved", reason_before)
    page.goto(f"{site}/admin/orders/order/{second}/act/resolve/")
    page.fill("#id_reason", "double click")
    page.click("input[name=confirm]")
    assert message(page).startswith("nothing to do")
    assert AuditEntry.objects.filter(action="resolve_saga").count() == 1
    page.goto(f"{site}/admin/console/auditentry/")
    page.screenshot(path=str(SHOTS / "4-audit-trail.png"), full_page=True)
    page.close()

    # A viewer reads everything and can act on nothing.
    viewer = log_in(browser, site, staff("viewers"))
    viewer.goto(f"{site}/admin/orders/order/{first}/change/")
    assert "send inventory.reserve" in viewer.locator("#saga-timeline").inner_text()
    assert viewer.locator("a.console-action").count() == 0
    viewer.goto(f"{site}/admin/deadletters/deadletter/")
    assert "replay_selected" not in viewer.content()
    csrf = next(c["value"] for c in viewer.context.cookies() if c["name"] == "csrftoken")
    for path in [f"/admin/orders/order/{second}/act/retry/", f"/admin/deadletters/deadletter/{letter.id}/act/discard/",
                 f"/admin/sagas/sagainstance/{first_saga}/act/resolve/"]:
        assert viewer.goto(site + path).status == 403
        # A form posted with a valid CSRF token: refused for want of the permission, not the token.
        posted = viewer.request.post(site + path, form={"reason": "sneaky", "csrfmiddlewaretoken": csrf},
                                     headers={"Referer": site + path})
        assert posted.status == 403
    viewer.screenshot(path=str(SHOTS / "5-viewer-no-actions.png"), full_page=True)
    assert AuditEntry.objects.filter(operator__startswith="viewers-").count() == 0
    assert DeadLetter.objects.get(id=letter.id).status == "replayed"
    assert ProviderCharge.objects.filter(status="captured").count() == 0
    # gunicorn's access log went through OrderHub's formatter: a request is a line of fields, with
    # the request id the response carried (orderhub/request_id.py).
    api_log = (live.log_dir / "api-1.log").read_text(errors="replace")
    assert re.search(r"logger='gunicorn.access' event='request' request_id='[0-9a-f]{32}' method='POST' "
                     r"path='/admin/login/' .*status='302'", api_log)
