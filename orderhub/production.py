"""The production guard: with ORDERHUB_ENV=production a process refuses to start while any secret,
password or token is missing or still one of the local defaults (orderhub/settings.py calls it
before anything connects anywhere). It names the variables, never their values."""
from urllib.parse import urlsplit

# Every default a local machine, the Procfile or docker-compose.yml ships with.
LOCAL_DEFAULTS = {
    "", "local-dev-only-insecure-key", "compose-local-only-insecure-key", "postgres", "postgres-local-only",
    "guest", "orderhub-local-only", "operator-local-only", "redis-local-only", "changeme", "password", "secret",
}


class InsecureProduction(RuntimeError):
    pass


def _url_password(url: str) -> str:
    try:
        return urlsplit(url).password or ""
    except ValueError:
        return ""


def insecure(values: dict) -> list[str]:
    """The variables (of `values`: name -> value, as set) that are missing or a local default."""
    wrong = []
    for name, value in values.items():
        secret = _url_password(value) if name.endswith("_URL") else value
        if name == "ORDERHUB_SECRET_KEY" and (len(value) < 50 or value.startswith("django-insecure")):
            wrong.append(f"{name} (at least 50 random characters)")
        elif secret.strip().lower() in LOCAL_DEFAULTS:
            wrong.append(f"{name} (missing, or a local default{' password' if name.endswith('_URL') else ''})")
    return wrong


def refuse_defaults(values: dict):
    wrong = insecure(values)
    if wrong:
        raise InsecureProduction(
            "ORDERHUB_ENV=production refuses to start with these secrets missing or left at a local default: "
            + "; ".join(wrong) + ". Set each in the environment (see docs/operations.md, Configuration).")
