"""A client developer's path: generate a Python client from /api/schema/ (openapi-python-client)
and get typed models for the order, its saga and the error, which read real answers."""
import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from orderhub.apikeys.services import key_create
from orderhub.orders.models import Product
from tests.integration.helpers import ADDRESS

pytestmark = pytest.mark.django_db(databases="__all__")


def test_a_generated_client_has_typed_models_that_read_real_answers(client, django_user_model, tmp_path,
                                                                   monkeypatch):
    Product.objects.get_or_create(sku="SKU-GEN", defaults={"name": "Generated mug", "price": "4.00"})
    _, key = key_create(client=django_user_model.objects.create(username="generated-client"), name="generated")
    auth = {"HTTP_AUTHORIZATION": f"Token {key}"}
    (tmp_path / "schema.json").write_bytes(client.get("/api/schema/?format=json", **auth).content)

    generator = Path(sys.executable).with_name("openapi-python-client")
    done = subprocess.run([str(generator), "generate", "--path", "schema.json", "--output-path", "client",
                           "--meta", "none"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    [package] = [p for p in (tmp_path / "client").iterdir() if (p / "models").is_dir()] or [tmp_path / "client"]
    models_dir = package / "models"
    order_source = (models_dir / "order.py").read_text()
    assert "status: OrderStatusEnum" in order_source and "saga: None | Saga" in order_source
    assert "error: str" in (models_dir / "error.py").read_text()

    monkeypatch.syspath_prepend(str(package.parent))
    models = importlib.import_module(f"{package.name}.models")
    placed = client.post("/api/orders/", {"items": [{"sku": "SKU-GEN", "quantity": 1}], "payment_token": "tok_ok",
                                          "shipping_address": ADDRESS}, content_type="application/json", **auth)
    order = models.Order.from_dict(client.get(placed["Location"], **auth).json())
    assert order.status == models.OrderStatusEnum.PENDING and isinstance(order.saga, models.Saga)
    assert order.saga.steps[0].name == "reserve_stock"
    error = models.Error.from_dict(client.post("/api/orders/", {}, content_type="application/json", **auth).json())
    assert error.error == "invalid"
    shutil.rmtree(tmp_path / "client", ignore_errors=True)
