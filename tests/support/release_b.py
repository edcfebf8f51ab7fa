"""Release B, for the rolling-deploy test (tests/integration/test_rolling_deploy.py): what a next
release could change, loaded into a process with ORDERHUB_EXTENSIONS=tests.support.release_b.

- `shipping.create` v2 renames the payload's `shipping_address` to `address`. B reads v1 and v2
  (a v1 payload is upcast), and its orchestrator writes v2: a worker of release A cannot read it.
- `place_order` v2 inserts a step before the shipment, `check_address` (a new command,
  `shipping.check_address`, that refuses the countries the carrier does not serve).
"""
import dataclasses

from contracts.envelope import mapping, register, uuid_text
from sagas.definitions.place_order import PLACE_ORDER
from sagas.engine import Saga, Step
from workers.messaging import BusinessRejection, handles
from workers.shipping import handlers as release_a


def _rename(payload):
    payload["address"] = payload.pop("shipping_address")
    return payload


register("shipping.create", version=2, order_id=uuid_text, address=mapping, upcast=_rename,
         writer=lambda context: {"order_id": context["order_id"], "address": context["shipping_address"]})
register("shipping.check_address", order_id=uuid_text, shipping_address=mapping)


@handles("shipping.create", replace=True)
def create(cmd):
    """B's handler reads `address` (every payload it sees is v2, upcast where it came as v1)."""
    address = cmd.payload["address"]
    return release_a.create(dataclasses.replace(cmd, payload={"order_id": cmd.payload["order_id"],
                                                              "shipping_address": address}))


@handles("shipping.check_address")
def check_address(cmd):
    country = str(cmd.payload["shipping_address"].get("country", "")).upper()
    if country in release_a.UNSUPPORTED_COUNTRIES:
        raise BusinessRejection("address_unsupported", f"no delivery to {country}")
    return cmd.succeed(checked=country)


steps = {step.name: step for step in PLACE_ORDER.steps}
PLACE_ORDER_V2 = Saga(
    "place_order",
    steps["reserve_stock"], steps["authorize"],
    Step("check_address", "shipping.check_address"),
    steps["create_shipment"], steps["capture"], steps["notify"],
    version=2,
)
