"""The `projections` process: consumes projections.sales (order events) and applies each one to
the sales projection. A message is acked after its transaction commits; an event it cannot apply
as it is goes to projections.sales.dlq (and so to the archive, with its reason); with the database
down it is put back and tried again (orderhub/subscriber.py)."""
import structlog

from orderhub.reports import projection
from orderhub.subscriber import EventSubscriber

log = structlog.get_logger(__name__)


class Projector(EventSubscriber):
    queue = projection.QUEUE

    def receive(self, message):
        event = projection.decode(message.body)
        applied = projection.apply(event)
        log.debug("event applied" if applied else "event changed nothing", type=event["type"], id=event["id"])
