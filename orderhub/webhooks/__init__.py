"""Client webhooks: a subscriber of the domain events (orderhub/events.py) that POSTs each of a
client's orders' final state to the URLs the client registered, signed with HMAC-SHA256.

- The `webhooks` process consumes `webhooks.events` and writes one delivery row per registered
  endpoint of the order's client (idempotent by event id), then sends the due rows.
- A delivery that fails (no answer, or anything but a 2xx) is tried again with exponential backoff
  and jitter, WEBHOOK_MAX_ATTEMPTS times in all; past that it is `dead`: dead-lettered onto
  `webhooks.events.dlq`, archived with its reason like any dead letter, and replaying the letter
  gives it a fresh budget.
- Delivery is at least once: a receiver deduplicates by the event id (OrderHub-Event-Id), and
  refuses a timestamp older than its tolerance (signing.py) so a captured request cannot be
  replayed later.
- Where the URLs may point is addresses.py: in production never loopback, and never a private
  address unless ORDERHUB_WEBHOOK_ALLOW_PRIVATE_URLS says so.
"""
