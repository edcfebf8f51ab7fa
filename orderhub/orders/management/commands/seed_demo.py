"""Seed demo data: catalogue with stock, an operator and a viewer account, a demo client and its token."""
import os
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand

from orderhub.console.roles import OPERATORS, VIEWERS, setup_roles
from orderhub.orders.models import Product
from workers.inventory.models import StockItem

CATALOGUE = [
    ("SKU-MUG", "Enamel mug", "12.50", 500),
    ("SKU-TEE", "Organic cotton tee", "24.00", 500),
    ("SKU-CAP", "Canvas cap", "18.90", 300),
    ("SKU-BAG", "Tote bag", "9.99", 1000),
    ("SKU-LAMP", "Desk lamp", "79.00", 50),
    ("SKU-RARE", "Signed print (one left)", "250.00", 1),
]


class Command(BaseCommand):
    help = "Seed the catalogue, stock, an operator and a demo client; print credentials."

    def add_arguments(self, parser):
        parser.add_argument("--token-file", default=".demo-token")

    def handle(self, *args, token_file, **options):
        for sku, name, price, stock in CATALOGUE:
            Product.objects.update_or_create(sku=sku, defaults={"name": name, "price": Decimal(price)})
            StockItem.objects.get_or_create(sku=sku, defaults={"available": stock})
        users = get_user_model()
        operator_name = os.environ.get("ORDERHUB_OPERATOR_USER", "operator")
        operator_password = os.environ.get("ORDERHUB_OPERATOR_PASSWORD", "operator-local-only")
        roles = setup_roles()
        # The operator acts through the console's permissions (the `operators` group), not as a
        # superuser: it cannot edit users, tokens or records the console does not act on.
        operator, _ = users.objects.get_or_create(username=operator_name, defaults={"is_staff": True})
        operator.is_staff, operator.is_superuser = True, False
        operator.set_password(operator_password)
        operator.save()
        operator.groups.add(Group.objects.get(name=OPERATORS))
        viewer_name = os.environ.get("ORDERHUB_VIEWER_USER", "viewer")
        viewer_password = os.environ.get("ORDERHUB_VIEWER_PASSWORD", "viewer-local-only")
        viewer, _ = users.objects.get_or_create(username=viewer_name, defaults={"is_staff": True})
        viewer.is_staff, viewer.is_superuser = True, False
        viewer.set_password(viewer_password)
        viewer.save()
        viewer.groups.add(Group.objects.get(name=VIEWERS))
        client, _ = users.objects.get_or_create(username="demo-client")
        key = _demo_key(client, token_file)
        with open(token_file, "w") as fh:
            fh.write(key + "\n")
        self.stdout.write(f"catalogue: {len(CATALOGUE)} products with stock")
        self.stdout.write(f"operator (Django admin, group operators: {roles[OPERATORS]} permissions): "
                          f"{operator_name} / {operator_password}")
        self.stdout.write(f"viewer (Django admin, read only): {viewer_name} / {viewer_password}")
        self.stdout.write(f"demo client API key: {key}  (also in {token_file})")


def _demo_key(client, token_file) -> str:
    """The demo client's key: the one in the token file while it still works (keys are stored
    hashed, so it cannot be read back from the database), else a new one."""
    from orderhub.apikeys.services import key_create, key_find

    try:
        with open(token_file) as fh:
            kept = fh.read().strip()
    except OSError:
        kept = ""
    found = key_find(kept) if kept else None
    if found is not None and found.client_id == client.id and not found.has_expired:
        return kept
    return key_create(client=client, name="demo")[1]
