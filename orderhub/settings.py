"""One settings module, read from the environment; the defaults are for local development only."""
from datetime import timedelta
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

DEBUG = env.bool("ORDERHUB_DEBUG", default=False)
# Production refuses to start while a secret is missing or a local default (the end of this file).
ORDERHUB_ENV = env("ORDERHUB_ENV", default="local")
PRODUCTION = ORDERHUB_ENV == "production"
SECRET_KEY = env("ORDERHUB_SECRET_KEY", default="local-dev-only-insecure-key")
ALLOWED_HOSTS = env.list("ORDERHUB_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",  # only for the migration that hashed its tokens into API keys
    "rest_framework_api_key",
    "orderhub.apikeys",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and Redoc served from here: /api/docs/ works offline
    "orderhub.orders",
    "orderhub.deadletters",
    "orderhub.reports",
    "orderhub.webhooks",
    "sagas",
    "workers.inventory",
    "workers.payments",
    "workers.shipping",
    "workers.notifications",
    "axes",  # admin login throttling (below)
    "orderhub.console",  # last: its post_migrate sets up the roles once every app's permissions exist
]

MIDDLEWARE = [
    # Counts every request by route and status, the 500s of every other middleware included.
    "orderhub.request_metrics.RequestMetricsMiddleware",
    # X-Request-ID in and out, on every log line, and into the saga of an order placed.
    "orderhub.request_id.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Serves the admin's static files from gunicorn (https://whitenoise.readthedocs.io/).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as django-axes asks
]

# Admin logins are throttled (django-axes, https://django-axes.readthedocs.io/): after
# ORDERHUB_LOGIN_FAILURE_LIMIT failed passwords for one username from one address, that pair is
# refused (429) for ORDERHUB_LOGIN_COOLOFF_MINUTES; a success resets the count. API clients use
# tokens, which never pass through here.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env.int("ORDERHUB_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("ORDERHUB_LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_DISABLE_ACCESS_LOG = True

ROOT_URLCONF = "orderhub.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
WSGI_APPLICATION = "orderhub.wsgi.application"

# --- Databases: one PostgreSQL server, one database per service (DESIGN §2) ---------------------
DB_HOST = env("ORDERHUB_DB_HOST", default="127.0.0.1")
DB_PORT = env.int("ORDERHUB_DB_PORT", default=5432)
DB_USER = env("ORDERHUB_DB_USER", default="postgres")
DB_PASSWORD = env("ORDERHUB_DB_PASSWORD", default="")
# Integration tests point worker subprocesses at pytest-django's databases with "test_".
DB_PREFIX = env("ORDERHUB_DB_PREFIX", default="")
SERVICE_DATABASES = ("inventory", "payments", "shipping", "notifications")


def _database(name):
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": DB_PREFIX + name,
        "USER": DB_USER,
        "PASSWORD": DB_PASSWORD,
        "HOST": DB_HOST,
        "PORT": DB_PORT,
        # Long-lived worker processes reuse connections; health checks drop dead ones
        # (https://docs.djangoproject.com/en/5.2/ref/databases/#persistent-connections).
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": {"connect_timeout": 5},
    }


DATABASES = {"default": _database("orderhub")} | {name: _database(name) for name in SERVICE_DATABASES}
# The sandbox payment provider keeps its ledger in the payments database but on its own
# connection, so its records survive a rollback of the payments service's transaction.
DATABASES["provider"] = _database("payments") | {"TEST": {"MIRROR": "payments"}}
DATABASE_ROUTERS = ["orderhub.routers.ServiceRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache (Redis): throttling and health ------------------------------------------------------
REDIS_URL = env("ORDERHUB_REDIS_URL", default="redis://127.0.0.1:6379/0")
# Short socket timeouts: a Redis that is down or hung costs a request half a second, not a hang.
REDIS_TIMEOUT = env.float("ORDERHUB_REDIS_TIMEOUT", default=0.5)
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "OPTIONS": {"socket_connect_timeout": REDIS_TIMEOUT, "socket_timeout": REDIS_TIMEOUT,
                    # JSON, not pickle: writing to Redis must not run code here (orderhub/cache.py).
                    "serializer": "orderhub.cache.JSONSerializer"},
    }
}

# --- Broker (RabbitMQ) and Celery; read by orderhub/celery.py ---------------------------------
BROKER_URL = env("ORDERHUB_BROKER_URL", default="amqp://guest:guest@127.0.0.1:5672//")
RABBITMQ_MANAGEMENT_URL = env("ORDERHUB_RABBITMQ_MANAGEMENT_URL", default="http://guest:guest@127.0.0.1:15672/api/")
# How often beat's relay sweep publishes outbox rows that missed their after-commit publish.
OUTBOX_RELAY_INTERVAL = env.float("ORDERHUB_OUTBOX_RELAY_INTERVAL", default=2.0)
# A row younger than this is left to the after-commit publish of the process that wrote it.
OUTBOX_RELAY_GRACE = env.float("ORDERHUB_OUTBOX_RELAY_GRACE", default=1.0)
# Celery task events for monitoring (Flower turns them on live whatever this says).
TASK_EVENTS = env.bool("ORDERHUB_TASK_EVENTS", default=False)
# How often beat's sweep looks for steps past their deadline (deadlines live in the database).
DEADLINE_SWEEP_INTERVAL = env.float("ORDERHUB_DEADLINE_SWEEP_INTERVAL", default=1.0)
# The orchestrator applies up to this many replies in one transaction, one commit (sagas/consumer.py):
# what has arrived, never waiting for more. 0: Celery's consumer applies one reply per task.
REPLY_BATCH = env.int("ORDERHUB_REPLY_BATCH", default=50)
# Commands a domain worker takes at once (workers/batches.py; 0: one Celery task per command), and
# how long one of its transactions may run handlers (an outside party's calls, for payments) before
# it commits what it has.
COMMAND_BATCH = env.int("ORDERHUB_COMMAND_BATCH", default=32)
COMMAND_BATCH_SECONDS = env.float("ORDERHUB_COMMAND_BATCH_SECONDS", default=0.25)
# How long a domain worker retries its own unreachable database (or a lock, or the broker while
# replying) before it answers "outcome unknown": attempts in all, backoff from 1 s doubling up to
# the maximum delay. The defaults ride out about 18 s; the step's own retry policy is apart.
INFRASTRUCTURE_RETRY_ATTEMPTS = env.int("ORDERHUB_INFRASTRUCTURE_RETRY_ATTEMPTS", default=6)
INFRASTRUCTURE_RETRY_MAX_DELAY = env.float("ORDERHUB_INFRASTRUCTURE_RETRY_MAX_DELAY", default=4.0)

# Admission control (orderhub/orders/admission.py): a new order is refused with 503 and a
# Retry-After when the wait it would meet (sagas in flight / sagas ended per second over the last
# RATE_WINDOW seconds) passes TARGET_SECONDS; below MIN_IN_FLIGHT it is not predicted. Whatever the
# prediction, no more than MAX_IN_FLIGHT sagas run or compensate at once (0 turns either off);
# RETRY_AFTER is the Retry-After while nothing drains (an outage).
ADMISSION_TARGET_SECONDS = env.float("ORDERHUB_ADMISSION_TARGET_SECONDS", default=5.0)
ADMISSION_RATE_WINDOW = env.float("ORDERHUB_ADMISSION_RATE_WINDOW", default=10.0)
ADMISSION_MIN_IN_FLIGHT = env.int("ORDERHUB_ADMISSION_MIN_IN_FLIGHT", default=10)
ADMISSION_MAX_IN_FLIGHT = env.int("ORDERHUB_ADMISSION_MAX_IN_FLIGHT", default=300)
ADMISSION_RETRY_AFTER = env.int("ORDERHUB_ADMISSION_RETRY_AFTER", default=2)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["orderhub.apikeys.authentication.ClientKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["orderhub.api.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "orderhub.api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "orderhub.api.errors.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["orderhub.api.throttling.UserRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"user": env("ORDERHUB_THROTTLE_RATE", default="6000/min"),
                               "reads": env("ORDERHUB_READ_THROTTLE_RATE", default="60000/min")},
}
# The schema and its docs need a login (a token, or the admin's session) unless
# ORDERHUB_API_DOCS_PUBLIC says they are public.
API_DOCS_PUBLIC = env.bool("ORDERHUB_API_DOCS_PUBLIC", default=False)
SPECTACULAR_SETTINGS = {
    "TITLE": "OrderHub API",
    "VERSION": "1.0.0",
    "DESCRIPTION": "Orders placed here are fulfilled by a saga across inventory, payments, shipping and "
                   "notifications. Authenticate with `Authorization: Token <key>`. Every error has the `Error` "
                   "shape. `POST /api/orders/` takes an `Idempotency-Key`: the same key with the same body answers "
                   "the same order again (`Idempotent-Replayed: true`), with another body 422.",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_AUTHENTICATION": ["orderhub.apikeys.authentication.ClientKeyAuthentication",
                             "rest_framework.authentication.SessionAuthentication"],
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny" if API_DOCS_PUBLIC
                          else "rest_framework.permissions.IsAuthenticated"],
}

LOG_LEVEL = env("ORDERHUB_LOG_LEVEL", default="INFO")
LOG_FORMAT = env("ORDERHUB_LOG_FORMAT", default="keyvalue")  # or "json"
LOG_EVERY_TASK = env.bool("ORDERHUB_LOG_EVERY_TASK", default=False)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"structured": {"()": "orderhub.logs.formatter", "renderer": LOG_FORMAT}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "WARNING"}, "amqp": {"level": "WARNING"}} | (
        {} if LOG_EVERY_TASK else {
            # Celery's "Task ... received" and "... succeeded" lines, two per message: under load
            # a measurable share of a worker's CPU (make bench). Failures still log at WARNING and
            # ERROR, and our own code logs every retry; ORDERHUB_LOG_EVERY_TASK=1 brings them back.
            "celery.worker.strategy": {"level": "WARNING"}, "celery.app.trace": {"level": "WARNING"}}),
}

# The operator's console (orderhub/console): dead letters replayed at most this many a second, and at
# most this many in one admin request (the rest: run it again).
REPLAY_RATE = env.float("ORDERHUB_REPLAY_RATE", default=20.0)
REPLAY_MAX_PER_REQUEST = env.int("ORDERHUB_REPLAY_MAX_PER_REQUEST", default=100)

# GET /metrics (orderhub/metrics.py): when set, Prometheus must send `Authorization: Bearer <token>`.
METRICS_TOKEN = env("ORDERHUB_METRICS_TOKEN", default="")

# Retention (orderhub/retention.py): days each kind of row is kept, purged by beat every
# RETENTION_INTERVAL seconds in batches of RETENTION_BATCH rows, at most RETENTION_RUN_SECONDS a run.
RETENTION_OUTBOX_DAYS = env.float("ORDERHUB_RETENTION_OUTBOX_DAYS", default=7)
RETENTION_SAGA_EVENTS_DAYS = env.float("ORDERHUB_RETENTION_SAGA_EVENTS_DAYS", default=30)
RETENTION_DEAD_LETTER_DAYS = env.float("ORDERHUB_RETENTION_DEAD_LETTER_DAYS", default=30)
RETENTION_INBOX_DAYS = env.float("ORDERHUB_RETENTION_INBOX_DAYS", default=90)
RETENTION_IDEMPOTENCY_KEY_DAYS = env.float("ORDERHUB_RETENTION_IDEMPOTENCY_KEY_DAYS", default=1)
# The purge runs in an orchestrator (a tick), which applies no reply meanwhile: short runs, often.
RETENTION_INTERVAL = env.float("ORDERHUB_RETENTION_INTERVAL", default=60.0)
RETENTION_BATCH = env.int("ORDERHUB_RETENTION_BATCH", default=500)
RETENTION_RUN_SECONDS = env.float("ORDERHUB_RETENTION_RUN_SECONDS", default=3.0)
if RETENTION_INBOX_DAYS < RETENTION_DEAD_LETTER_DAYS:
    # A replayed dead letter must still find its inbox row, or its command would run a second time.
    raise RuntimeError("ORDERHUB_RETENTION_INBOX_DAYS must be at least ORDERHUB_RETENTION_DEAD_LETTER_DAYS")

# The payment provider's circuit breaker (workers/payments/circuit.py): it opens when, over the
# last WINDOW seconds, at least MIN_CALLS distinct charges were called and FAILURE_RATE of them
# timed out (with no success since). Open for RESET seconds. MIN_CALLS=0 turns it off. Counting
# charges, not calls: a few charges whose calls always time out, retried again and again at the
# end of a chaos run, are not an outage (docs/api.md, Circuit breaker).
PROVIDER_CIRCUIT_MIN_CALLS = env.int("ORDERHUB_PROVIDER_CIRCUIT_MIN_CALLS", default=10)
PROVIDER_CIRCUIT_FAILURE_RATE = env.float("ORDERHUB_PROVIDER_CIRCUIT_FAILURE_RATE", default=0.5)
PROVIDER_CIRCUIT_WINDOW_SECONDS = env.float("ORDERHUB_PROVIDER_CIRCUIT_WINDOW_SECONDS", default=10.0)
PROVIDER_CIRCUIT_RESET_SECONDS = env.float("ORDERHUB_PROVIDER_CIRCUIT_RESET_SECONDS", default=30.0)

# Client webhooks (orderhub/webhooks): each delivery is tried WEBHOOK_MAX_ATTEMPTS times, waiting
# BACKOFF * 2^(n-1) seconds (at most BACKOFF_MAX, with 20% jitter) after the n-th failure: about
# 2.5 hours with the defaults; then it is dead-lettered. TIMEOUT bounds one request, CONCURRENCY the
# requests in flight per webhooks process. After a secret's rotation the old one also signs for
# SECRET_OVERLAP seconds. Private (RFC 1918, link-local) addresses are refused in production unless
# ALLOW_PRIVATE_URLS; loopback always is there (orderhub/webhooks/addresses.py).
WEBHOOK_MAX_ATTEMPTS = env.int("ORDERHUB_WEBHOOK_MAX_ATTEMPTS", default=12)
WEBHOOK_BACKOFF_SECONDS = env.float("ORDERHUB_WEBHOOK_BACKOFF_SECONDS", default=5.0)
WEBHOOK_BACKOFF_MAX_SECONDS = env.float("ORDERHUB_WEBHOOK_BACKOFF_MAX_SECONDS", default=3600.0)
WEBHOOK_TIMEOUT_SECONDS = env.float("ORDERHUB_WEBHOOK_TIMEOUT_SECONDS", default=5.0)
WEBHOOK_CONCURRENCY = env.int("ORDERHUB_WEBHOOK_CONCURRENCY", default=8)
WEBHOOK_SECRET_OVERLAP_SECONDS = env.float("ORDERHUB_WEBHOOK_SECRET_OVERLAP_SECONDS", default=86_400.0)
WEBHOOK_ENDPOINTS_PER_CLIENT = env.int("ORDERHUB_WEBHOOK_ENDPOINTS_PER_CLIENT", default=10)
WEBHOOK_ALLOW_PRIVATE_URLS = env.bool("ORDERHUB_WEBHOOK_ALLOW_PRIVATE_URLS", default=not PRODUCTION)
RETENTION_WEBHOOK_DAYS = env.float("ORDERHUB_RETENTION_WEBHOOK_DAYS", default=30)

# Saga definition versions (docs/upgrading.md): new sagas start with the newest version loaded, or
# the one named here, e.g. "place_order=1" (while rolling back a release that added a version).
SAGA_START_VERSIONS = {name.strip(): int(version) for name, _, version in (
    pair.partition("=") for pair in env("ORDERHUB_SAGA_START_VERSIONS", default="").split(",") if pair.strip())}

# Messages: the orchestrator writes each command type's newest payload version, or the one named
# here, e.g. "shipping.create=1" (a release that reads a new version but must not write it yet).
CONTRACT_WRITE_VERSIONS = {name.strip(): int(version) for name, _, version in (
    pair.partition("=") for pair in env("ORDERHUB_CONTRACT_WRITE_VERSIONS", default="").split(",") if pair.strip())}
# Modules imported in every process once the built-in sagas and contracts are: your own saga
# definitions (and new versions of ours), contract versions and their handlers.
EXTENSIONS = [name.strip() for name in env("ORDERHUB_EXTENSIONS", default="").split(",") if name.strip()]

# /health/ (orderhub/health.py): its details for `Authorization: Bearer <token>` (staff see them anyway).
HEALTH_TOKEN = env("ORDERHUB_HEALTH_TOKEN", default="")

# --- Production (ORDERHUB_ENV=production) ------------------------------------------------------
# The sandbox provider's fault tokens (tok_slow, tok_void_broken, ...) act only while this is on:
# the local default; off in production, where every token is an ordinary card.
SANDBOX = env.bool("ORDERHUB_SANDBOX", default=not PRODUCTION)
if PRODUCTION:
    import os

    from orderhub.production import refuse_defaults

    refuse_defaults({
        "ORDERHUB_SECRET_KEY": SECRET_KEY,
        "ORDERHUB_DB_PASSWORD": DB_PASSWORD,
        "ORDERHUB_BROKER_URL": BROKER_URL,
        "ORDERHUB_RABBITMQ_MANAGEMENT_URL": RABBITMQ_MANAGEMENT_URL,
        "ORDERHUB_REDIS_URL": REDIS_URL,
        "ORDERHUB_METRICS_TOKEN": METRICS_TOKEN,
        # Read by the processes that use them (Flower, seeding), checked wherever they are set.
        **{name: os.environ[name].rpartition(":")[2] if name == "FLOWER_BASIC_AUTH" else os.environ[name]
           for name in ("FLOWER_BASIC_AUTH", "ORDERHUB_OPERATOR_PASSWORD") if name in os.environ},
    })
    # Behind a TLS-terminating proxy that sets X-Forwarded-Proto (`manage.py check --deploy` is silent).
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("ORDERHUB_SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^health/", r"^metrics$"]  # probes and scrapes inside the network
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("ORDERHUB_HSTS_SECONDS", default=31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    CSRF_TRUSTED_ORIGINS = env.list("ORDERHUB_CSRF_TRUSTED_ORIGINS", default=[])
