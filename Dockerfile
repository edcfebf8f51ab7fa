# One image for every OrderHub process (api, orchestrator, domain workers, beat, flower);
# docker-compose.yml picks the process with `command:`. Default: the REST API under gunicorn.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# pg_dump, pg_restore and psql for `manage.py backup` and `restore`, at the major version of the
# server they talk to (docker-compose.yml's postgres image; tests/unit/test_compose_production.py
# keeps the two equal): from PostgreSQL's own Debian repository, as Debian ships only one version.
ARG PG_MAJOR=16
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && install -d /usr/share/postgresql-common/pgdg \
    && curl -fsSL -o /usr/share/postgresql-common/pgdg/apt.postgresql.org.asc \
         https://www.postgresql.org/media/keys/ACCC4CF8.asc \
    && . /etc/os-release \
    && echo "deb [signed-by=/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc] https://apt.postgresql.org/pub/repos/apt ${VERSION_CODENAME}-pgdg main" \
         > /etc/apt/sources.list.d/pgdg.list \
    && apt-get update \
    && apt-get install -y --no-install-recommends "postgresql-client-${PG_MAJOR}" \
    && apt-get purge -y curl && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*

# Dependencies first, so code changes do not invalidate this layer.
COPY requirements.txt .
RUN pip install -r requirements.txt

# The code stays owned by root (read-only for the app user); only var/ (beat's schedule,
# collected static files) is writable.
COPY . .
RUN useradd --system --uid 10001 --user-group --home-dir /app --no-create-home orderhub \
    && mkdir -p /app/var \
    && chown orderhub:orderhub /app/var

# The admin's CSS and JS, served by WhiteNoise.
RUN python manage.py collectstatic --noinput --verbosity 0 && chown -R orderhub:orderhub /app/var

USER orderhub

EXPOSE 8000
CMD ["gunicorn", "orderhub.wsgi", "--bind", "0.0.0.0:8000", "--workers", "2", "--access-logfile", "-"]
