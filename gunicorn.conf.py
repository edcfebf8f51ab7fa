"""gunicorn's settings, read from the working directory by every `gunicorn` started there (make run,
docker-compose, the tests): its error and access logs go through OrderHub's log formatter, so an
access line has fields (method, path, status, duration) like every other line."""
import os
import shutil
import tempfile

logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"structured": {"()": "orderhub.logs.formatter",
                                  "renderer": os.environ.get("ORDERHUB_LOG_FORMAT", "keyvalue")}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured",
                             "stream": "ext://sys.stdout"}},
    "loggers": {
        "gunicorn.error": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "gunicorn.access": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}


# The API's request metrics (orderhub/request_metrics.py) from every worker process: prometheus_client's
# multiprocess mode, in a directory of this server's own unless one is given; GET /metrics adds
# them up. Set here, in the master, before any worker imports prometheus_client.
_own_metrics_dir = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
if _own_metrics_dir:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="orderhub-api-metrics-")


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _own_metrics_dir:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
