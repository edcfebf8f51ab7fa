"""gunicorn's settings, read from the working directory by every `gunicorn` started there (make run,
docker-compose, the tests): its error and access logs go through OrderHub's log formatter, so an
access line has fields (method, path, status, duration) like every other line."""
import os

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
