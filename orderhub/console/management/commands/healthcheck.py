"""A container's health check for each kind of process (docker-compose.yml): exit 0 when it is
doing its job, 1 (with the reason) when not.

    healthcheck worker NAME     the Celery worker NAME (NAME@this host unless NAME has an @) answers a ping
    healthcheck beat            beat's tick reached an orchestrator within BEAT_TICK_MAX seconds
    healthcheck archiver        every dead-letter queue has a consumer (the deadletters process)
    healthcheck projections     projections.sales has a consumer (the projections process)
    healthcheck webhooks        webhooks.events has a consumer (the webhooks process)
    healthcheck flower [URL]    Flower answers its /healthcheck
"""
import socket
import sys
import urllib.request

from django.core.management.base import BaseCommand

from orderhub import health

BEAT_TICK_MAX = 60.0  # generous: a tick is noted by an orchestrator, which may be restarting


class Command(BaseCommand):
    help = "Exit 0 if this kind of process is healthy: worker NAME | beat | archiver | projections | webhooks | flower [URL]"

    def add_arguments(self, parser):
        parser.add_argument("kind", choices=["worker", "beat", "archiver", "projections", "webhooks", "flower"])
        parser.add_argument("target", nargs="?", help="worker: its node name; flower: its base URL")
        parser.add_argument("--timeout", type=float, default=5.0)

    def handle(self, *args, kind, target=None, timeout=5.0, **options):
        problem = getattr(self, f"_{kind}")(target, timeout)
        if problem:
            self.stderr.write(f"unhealthy: {problem}")
            sys.exit(1)
        self.stdout.write("ok")

    def _worker(self, name, timeout):
        from orderhub.celery import app

        if not name:
            return "give the worker's node name"
        node = name if "@" in name else f"{name}@{socket.gethostname()}"
        replies = app.control.ping(destination=[node], timeout=timeout) or []
        return None if any(node in reply for reply in replies) else f"{node} did not answer a ping"

    def _beat(self, target, timeout):
        age = health._beat_last_tick_age()
        if age is None:
            return "no tick from beat seen yet"
        return f"beat's last tick was {age:.0f} s ago" if age > BEAT_TICK_MAX else None

    def _archiver(self, target, timeout):
        idle = sorted(name for name, count in health._dlq_consumers().items() if not count)
        return f"nobody consumes {', '.join(idle)}" if idle else None

    def _projections(self, target, timeout):
        return self._consumed("projections.sales", timeout)

    def _webhooks(self, target, timeout):
        return self._consumed("webhooks.events", timeout)

    def _consumed(self, queue, timeout):
        from orderhub import rabbitmq_api

        response = rabbitmq_api.get(f"queues/{rabbitmq_api.vhost_path()}?columns=name,consumers", timeout=timeout)
        response.raise_for_status()
        consumers = {queue["name"]: queue.get("consumers", 0) for queue in response.json()}
        return None if consumers.get(queue) else f"nobody consumes {queue}"

    def _flower(self, target, timeout):
        url = (target or "http://127.0.0.1:5555").rstrip("/") + "/healthcheck"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return None if response.status == 200 else f"{url} answered {response.status}"
        except Exception as exc:
            return f"{url}: {exc}"
