# One image for every OrderHub process (api, orchestrator, domain workers, beat, flower);
# docker-compose.yml picks the process with `command:`. Default: the REST API under gunicorn.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

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
