"""docker-compose.yml in production mode: each OrderHub service's environment, rendered as
`docker compose` renders it from an operator's .env, passes the settings' production guard (and
`check --deploy`); with a secret left out the guard refuses, naming it. The image's PostgreSQL
client tools are the server's major version. (No Docker engine here: the rendering is compose's
variable interpolation, done below; the guard is the real settings module in a real process.)"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
APP_SERVICES = sorted(name for name, service in SERVICES.items() if service.get("image") == "orderhub:local")

# What an operator puts in .env for production (docs/deployment.md, Running in containers).
DOTENV = {
    "ORDERHUB_ENV": "production",
    "ORDERHUB_SECRET_KEY": "q7V#n2f!Lx9@pR4s$Tz8^wK1&mB6*hY3(cJ0)dG5-eA_uN+iO=lQ",
    "ORDERHUB_DB_PASSWORD": "db-Zk38fh2",
    "ORDERHUB_RABBITMQ_PASSWORD": "mq-Xq92kd",
    "ORDERHUB_REDIS_PASSWORD": "rd-83jdK2",
    "ORDERHUB_METRICS_TOKEN": "mt-9dk2Lq",
    "ORDERHUB_HEALTH_TOKEN": "ht-4kd9Qp",
    "ORDERHUB_ALLOWED_HOSTS": "orders.example.com",
    "ORDERHUB_CSRF_TRUSTED_ORIGINS": "https://orders.example.com",
    "ORDERHUB_FLOWER_PASSWORD": "fl-7Hs2kq",
    "ORDERHUB_OPERATOR_PASSWORD": "op-2Lk9dX",
    "ORDERHUB_RABBITMQ_COOKIE": "ck-9Qm3sLk2",
}


def interpolate(value: str, env: dict) -> str:
    """Compose's interpolation: ${VAR}, ${VAR:-default}, ${VAR-default} (defaults may nest), $$."""
    out, i = [], 0
    while i < len(value):
        if value.startswith("$$", i):
            out.append("$")
            i += 2
        elif value.startswith("${", i):
            depth, j = 1, i + 2
            while depth:
                depth += {"{": 1, "}": -1}.get(value[j], 0) if value[j - 1] == "$" or value[j] == "}" else 0
                j += 1
            inner = value[i + 2:j - 1]
            match = re.fullmatch(r"(\w+)(?:(:?-)(.*))?", inner, re.S)
            assert match, f"unsupported interpolation ${{{inner}}}"
            name, op, default = match.groups()
            if op == ":-" and not env.get(name) or op == "-" and name not in env:
                out.append(interpolate(default, env))
            else:
                out.append(env.get(name, ""))
            i = j
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def test_the_interpolation_is_composes():
    env = {"A": "a", "EMPTY": ""}
    assert interpolate("${A}-${B:-x${A:-y}}-${EMPTY:-d}-${EMPTY-d}-$$HOME", env) == "a-xa-d--$HOME"


def environment(name, dotenv):
    return {key: interpolate(str(value), dotenv) for key, value in SERVICES[name]["environment"].items()}


def guard(env):
    """The settings' production guard and `check --deploy`, in a process whose environment is only
    the service's (as in its container)."""
    return subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=ROOT,
                          env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")} | env,
                          capture_output=True, text=True, timeout=120)


def test_every_orderhub_service_is_one_we_know():
    assert {"api", "orchestrator", "inventory", "payments", "shipping", "notifications", "beat", "deadletters",
            "projections", "webhooks", "flower", "setup", "seed"} == set(APP_SERVICES)


def test_every_service_starts_in_production_with_an_operators_env_file():
    # Services with the same environment are checked once.
    distinct = {}
    for name in APP_SERVICES:
        distinct.setdefault(tuple(sorted(environment(name, DOTENV).items())), []).append(name)
    for env, names in distinct.items():
        result = guard(dict(env))
        assert result.returncode == 0, (names, result.stdout[-1500:] + result.stderr[-1500:])
        assert "System check identified no issues" in result.stdout, names


@pytest.mark.parametrize("secret, variable", [
    ("ORDERHUB_METRICS_TOKEN", "ORDERHUB_METRICS_TOKEN"),
    ("ORDERHUB_RABBITMQ_PASSWORD", "ORDERHUB_BROKER_URL"),
    ("ORDERHUB_SECRET_KEY", "ORDERHUB_SECRET_KEY"),
])
def test_a_secret_left_out_of_the_env_file_stops_the_api_naming_it(secret, variable):
    result = guard(environment("api", {k: v for k, v in DOTENV.items() if k != secret}))

    assert result.returncode != 0 and "refuses to start" in result.stderr and variable in result.stderr


def test_the_api_answers_its_own_healthcheck_host_in_production():
    """The healthcheck fetches http://127.0.0.1:8000/health/: loopback must stay an allowed host
    whatever public name the operator sets."""
    hosts = environment("api", DOTENV)["ORDERHUB_ALLOWED_HOSTS"].split(",")
    assert "orders.example.com" in hosts and "127.0.0.1" in hosts
    assert "127.0.0.1:8000/health/" in " ".join(SERVICES["api"]["healthcheck"]["test"])


def test_the_images_postgresql_client_is_the_servers_major_version():
    server = re.fullmatch(r"postgres:(\d+)(?:[.-].*)?", SERVICES["postgres"]["image"])
    dockerfile = (ROOT / "Dockerfile").read_text()
    client = re.search(r"^ARG PG_MAJOR=(\d+)$", dockerfile, re.M)
    assert server and client and server.group(1) == client.group(1)
    assert '"postgresql-client-${PG_MAJOR}"' in dockerfile
