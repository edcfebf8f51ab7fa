"""The `projections` process: consumes projections.sales (order events) and applies them to the
sales projection, a batch of what has arrived in one transaction. The events are acked after it
commits; an event it cannot apply as it is goes to projections.sales.dlq (and so to the archive,
with its reason); with the database down they are put back and tried again
(orderhub/subscriber.py)."""
import structlog

from orderhub.reports import projection
from orderhub.subscriber import EventSubscriber

log = structlog.get_logger(__name__)


class Projector(EventSubscriber):
    queue = projection.QUEUE

    def read(self, message):
        return projection.decode(message.body)

    def apply(self, items):
        applied = projection.apply_many(items)
        log.debug("events applied", events=len(items), changed=sum(applied))
