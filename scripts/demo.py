"""Place a mixed batch of orders through the REST API of a running OrderHub and print the outcomes.

Usage: make demo   (after `make run`; reads the demo client's token from .demo-token)
Environment: ORDERHUB_API_URL (default http://127.0.0.1:8000), ORDERHUB_API_TOKEN.
"""
import os
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import requests

API = os.environ.get("ORDERHUB_API_URL", "http://127.0.0.1:8000").rstrip("/")
ADDRESS = {"name": "Grace Hopper", "line1": "1 Navy Way", "city": "Arlington", "postal_code": "22202", "country": "US"}

SCENARIOS = [
    ("approved", {"items": [{"sku": "SKU-MUG", "quantity": 2}], "payment_token": "tok_ok"}),
    ("approved, two lines", {"items": [{"sku": "SKU-TEE", "quantity": 1}, {"sku": "SKU-CAP", "quantity": 1}],
                             "payment_token": "tok_ok"}),
    ("card declined", {"items": [{"sku": "SKU-BAG", "quantity": 1}], "payment_token": "tok_declined"}),
    ("insufficient funds", {"items": [{"sku": "SKU-LAMP", "quantity": 1}], "payment_token": "tok_insufficient_funds"}),
    ("out of stock", {"items": [{"sku": "SKU-RARE", "quantity": 5}], "payment_token": "tok_ok"}),
    ("ships to Antarctica", {"items": [{"sku": "SKU-MUG", "quantity": 1}], "payment_token": "tok_ok",
                             "country": "AQ"}),
    ("cancelled by the client", {"items": [{"sku": "SKU-TEE", "quantity": 1}], "payment_token": "tok_ok",
                                 "cancel": True}),
    ("flaky provider", {"items": [{"sku": "SKU-BAG", "quantity": 2}], "payment_token": "tok_flaky"}),
    ("answer lost once", {"items": [{"sku": "SKU-CAP", "quantity": 1}], "payment_token": "tok_ambiguous"}),
    ("void fails, then works", {"items": [{"sku": "SKU-MUG", "quantity": 1}], "payment_token": "tok_void_fails"}),
    ("void always fails", {"items": [{"sku": "SKU-MUG", "quantity": 1}], "payment_token": "tok_void_broken"}),
    ("provider too slow", {"items": [{"sku": "SKU-BAG", "quantity": 1}], "payment_token": "tok_slow"}),
]


def token():
    if os.environ.get("ORDERHUB_API_TOKEN"):
        return os.environ["ORDERHUB_API_TOKEN"]
    path = Path(__file__).resolve().parent.parent / ".demo-token"
    if not path.exists():
        sys.exit("no token: run `make run` first (it writes .demo-token) or set ORDERHUB_API_TOKEN")
    return path.read_text().strip()


def main():
    session = requests.Session()
    session.headers["Authorization"] = f"Token {token()}"
    placed = []
    for label, scenario in SCENARIOS:
        body = {"items": scenario["items"], "payment_token": scenario["payment_token"],
                "shipping_address": ADDRESS | {"country": scenario.get("country", "US")}}
        response = session.post(f"{API}/api/orders/", json=body, headers={"Idempotency-Key": str(uuid.uuid4())})
        if response.status_code != 202:
            sys.exit(f"{label}: the API answered {response.status_code}: {response.text}")
        order = response.json()
        if scenario.get("cancel"):
            session.post(f"{API}/api/orders/{order['id']}/cancel/")
        placed.append((label, order["id"]))
    deadline = time.monotonic() + 60
    results = {}
    while time.monotonic() < deadline and len(results) < len(placed):
        for label, order_id in placed:
            order = session.get(f"{API}/api/orders/{order_id}/").json()
            if order["status"] != "pending":
                results[order_id] = order
        time.sleep(0.3)
    print(f"{'scenario':26} {'status':16} {'reason':22} {'total':>8}  steps")
    for label, order_id in placed:
        order = results.get(order_id) or session.get(f"{API}/api/orders/{order_id}/").json()
        steps = " ".join(f"{s['name']}={s['status']}" for s in order["saga"]["steps"] if s["status"] != "pending")
        print(f"{label:26} {order['status']:16} {order['failure_reason'] or '-':22} {order['total']:>8}  {steps}")
    print(dict(Counter(order["status"] for order in results.values())))
    if any(order["status"] == "needs_attention" for order in results.values()):
        print("needs_attention: see `manage.py sagas list --status compensation_failed`; lift the fault with "
              "`manage.py sandbox lift tok_void_broken`, then `manage.py sagas retry ID --reason WHY`")
    if len(results) < len(placed):
        sys.exit("some orders did not end within 60 s: is every worker running?")


if __name__ == "__main__":
    main()
