"""Admin logins are throttled (django-axes): after the failure limit, that username from that
address is refused, the right password included; other users are not."""
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client

pytestmark = pytest.mark.django_db(databases="__all__")


def login(username, password):
    client = Client()
    client.get("/admin/login/")
    return client.post("/admin/login/?next=/admin/", {"username": username, "password": password})


def test_repeated_wrong_passwords_lock_that_username_out_and_nobody_else():
    User = get_user_model()
    User.objects.create_user("ops-throttled", password="the-right-one-123", is_staff=True)
    User.objects.create_user("ops-other", password="the-right-one-123", is_staff=True)

    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert login("ops-throttled", "guess").status_code == 200  # the form again, with its error
    assert login("ops-throttled", "guess").status_code == 429
    assert login("ops-throttled", "the-right-one-123").status_code == 429  # locked, even when right

    assert login("ops-other", "the-right-one-123").status_code == 302  # into the admin


def test_a_success_resets_the_count():
    get_user_model().objects.create_user("ops-forgetful", password="the-right-one-123", is_staff=True)
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        login("ops-forgetful", "guess")
    assert login("ops-forgetful", "the-right-one-123").status_code == 302
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert login("ops-forgetful", "guess").status_code == 200
