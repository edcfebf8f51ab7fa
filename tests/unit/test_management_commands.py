"""Management commands an operator runs by hand."""
import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db(databases="__all__")


def create_api_client(name) -> str:
    out = io.StringIO()
    call_command("create_api_client", name, stdout=out)
    return out.getvalue()


def test_create_api_client_prints_only_the_key():
    output = create_api_client("acme")

    # An API key: its public prefix, a dot, its secret (orderhub/apikeys).
    assert re.fullmatch(r"[A-Za-z0-9]{8}\.[A-Za-z0-9]{32}\n", output), repr(output)


def test_the_printed_token_authenticates_the_new_client():
    token = create_api_client("acme").strip()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")

    response = api.get("/api/orders/")

    assert response.status_code == 200
    assert response.wsgi_request.user.username == "acme"


def test_the_new_client_cannot_log_in_with_a_password():
    create_api_client("acme")

    assert not get_user_model().objects.get(username="acme").has_usable_password()


def test_creating_a_client_with_a_name_already_taken_fails():
    create_api_client("acme")

    with pytest.raises(CommandError, match="a client named 'acme' already exists"):
        create_api_client("acme")

    assert get_user_model().objects.filter(username="acme").count() == 1
