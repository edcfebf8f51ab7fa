"""docker-compose.yml must run the same processes as the Procfile, on the same queues."""
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _procfile():
    processes = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, command = line.partition(":")
        argv = shlex.split(command)
        # Every line runs under scripts/respawn.py, named after its process (docs/architecture.md, Processes).
        assert argv[:4] == ["python", "scripts/respawn.py", name.strip(), "--"], line
        processes[name.strip()] = argv[4:]
    return processes


def _argv(command):
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def _option(argv, flag):
    """The value given to `flag` (as `flag value` or `flag=value`), or None."""
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def _is_worker(argv):
    return argv[:1] == ["celery"] and "worker" in argv


PROCFILE = _procfile()
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
WORKERS = sorted(name for name, argv in PROCFILE.items() if _is_worker(argv))
APP_SERVICES = sorted(PROCFILE)


def test_the_procfile_is_what_we_think_it_is():
    assert set(PROCFILE) == {
        "api", "orchestrator", "inventory", "payments", "shipping", "notifications", "beat", "deadletters",
        "projections", "webhooks", "flower",
    }
    assert WORKERS == ["inventory", "notifications", "orchestrator", "payments", "shipping"]


def test_every_procfile_process_has_a_compose_service_of_the_same_name():
    assert set(PROCFILE) <= set(SERVICES), sorted(set(PROCFILE) - set(SERVICES))


@pytest.mark.parametrize("name", APP_SERVICES)
def test_a_process_that_exits_is_restarted_under_compose_as_under_make_run(name):
    assert SERVICES[name]["restart"] == "unless-stopped", name


@pytest.mark.parametrize("name", WORKERS)
def test_workers_are_scalable(name):
    service = SERVICES[name]
    assert "container_name" not in service
    assert "ports" not in service


@pytest.mark.parametrize("name", WORKERS)
def test_worker_consumes_the_same_queues_as_the_procfile(name):
    procfile, compose = PROCFILE[name], _argv(SERVICES[name]["command"])
    assert _is_worker(compose)
    assert _option(compose, "-Q") == _option(procfile, "-Q")
    # Each copy needs its own node name: a container's hostname (%h) differs per replica; under
    # honcho every copy of a process gets its own $PORT.
    assert _option(compose, "-n") == f"{name}@%h"
    assert _option(procfile, "-n") == f"{name}.${{PORT:-0}}@%h"
    assert _option(compose, "-P") == _option(procfile, "-P") == "solo"


def test_orchestrator_consumes_saga_replies_and_control():
    assert _option(_argv(SERVICES["orchestrator"]["command"]), "-Q") == "saga.replies,saga.control,saga.ticks"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_share_the_image_and_wait_for_setup_and_infrastructure(name):
    service = SERVICES[name]
    assert service["image"] == SERVICES["setup"]["image"]
    assert service["environment"]["ORDERHUB_DB_HOST"] == "postgres"
    depends_on = service["depends_on"]
    assert depends_on["setup"]["condition"] == "service_completed_successfully"
    for infrastructure in ("postgres", "rabbitmq", "redis"):
        assert depends_on[infrastructure]["condition"] == "service_healthy"


def test_setup_prepares_databases_and_topology_and_seeding_is_never_part_of_up():
    command = " ".join(_argv(SERVICES["setup"]["command"]))
    for step in ("setup_databases", "declare_topology"):
        assert f"manage.py {step}" in command
    assert "seed_demo" not in command
    assert "setup" not in SERVICES["setup"]["depends_on"]
    # Seeding resets the operator's password: only by `docker compose --profile demo run --rm seed`.
    seed = SERVICES["seed"]
    assert seed["profiles"] == ["demo"] and "seed_demo" in _argv(seed["command"])
    assert [name for name, service in SERVICES.items() if "seed_demo" in " ".join(_argv(service.get("command", [])))
            and "profiles" not in service] == []
    for name in APP_SERVICES:
        assert "ORDERHUB_OPERATOR_PASSWORD" not in SERVICES[name]["environment"], name


def test_infrastructure_has_healthchecks():
    for name in ("rabbitmq", "postgres", "redis"):
        assert SERVICES[name]["healthcheck"]["test"]
    assert "rabbitmq-diagnostics" in SERVICES["rabbitmq"]["healthcheck"]["test"]
    assert "pg_isready" in SERVICES["postgres"]["healthcheck"]["test"]


def test_rabbitmq_has_the_management_plugin_and_a_non_guest_user():
    rabbitmq = SERVICES["rabbitmq"]
    assert "management" in rabbitmq["image"]
    assert rabbitmq["environment"]["RABBITMQ_DEFAULT_USER"]
    assert rabbitmq["environment"]["RABBITMQ_DEFAULT_PASS"]


def test_flower_requires_basic_auth_and_uses_the_management_api_with_no_secret_on_its_command_line():
    argv = _argv(SERVICES["flower"]["command"])
    assert not [arg for arg in argv if "basic-auth" in arg or "broker-api" in arg or "@" in arg], argv
    environment = SERVICES["flower"]["environment"]
    assert ":" in environment["FLOWER_BASIC_AUTH"]
    assert "@rabbitmq:15672/api/" in environment["FLOWER_BROKER_API"]
    assert environment["ORDERHUB_DB_HOST"] == "postgres"  # the app's environment, not only Flower's
    procfile = (ROOT / "Procfile").read_text()
    assert "basic-auth" not in procfile and "broker-api" not in procfile


def test_redis_has_a_password_that_no_command_line_shows():
    redis = SERVICES["redis"]
    assert "$$REDIS_PASSWORD" in " ".join(redis["command"]) and redis["environment"]["REDISCLI_AUTH"]
    assert SERVICES["api"]["environment"]["ORDERHUB_REDIS_URL"].startswith("redis://:${ORDERHUB_REDIS_PASSWORD")


def test_two_orchestrators_run_by_default_as_make_run_starts_them():
    assert SERVICES["orchestrator"]["deploy"]["replicas"] == 2
    assert "CONCURRENCY ?= orchestrator=2,payments=2" in (ROOT / "Makefile").read_text()


def test_every_process_has_a_healthcheck_that_names_it():
    for name in APP_SERVICES:
        check = SERVICES[name].get("healthcheck")
        assert check and check.get("test"), f"{name} has no healthcheck"
        argv = _argv(check["test"][1:] if check["test"][0] in ("CMD", "CMD-SHELL") else check["test"])
        if name in WORKERS:
            node = _option(_argv(SERVICES[name]["command"]), "-n").split("@")[0]
            assert argv[-3:] == ["healthcheck", "worker", node], (name, argv)


def test_two_beats_run_and_only_the_lease_holder_ticks():
    assert SERVICES["beat"]["deploy"]["replicas"] == 2
    assert "LeasedScheduler" in (ROOT / "orderhub" / "celeryconfig.py").read_text()


def test_the_cluster_profile_adds_two_rabbitmq_nodes_that_join_the_first_and_the_app_waits_for_them():
    nodes = ["rabbitmq", "rabbitmq-2", "rabbitmq-3"]
    for name in nodes[1:]:
        node = SERVICES[name]
        assert node["profiles"] == ["cluster"] and node["hostname"] == name
        assert node["image"] == SERVICES["rabbitmq"]["image"]
        assert f"{name}-data" in COMPOSE["volumes"] and any(v.startswith(f"{name}-data:") for v in node["volumes"])
    cookies = {SERVICES[name]["environment"]["RABBITMQ_ERLANG_COOKIE"] for name in nodes}
    assert len(cookies) == 1 and cookies.pop().startswith("${ORDERHUB_RABBITMQ_COOKIE")
    conf_mount = "./deploy/rabbitmq/cluster.conf:/etc/rabbitmq/conf.d/20-cluster.conf:ro"
    assert all(conf_mount in SERVICES[name]["volumes"] for name in nodes)
    conf = (ROOT / "deploy" / "rabbitmq" / "cluster.conf").read_text()
    for n, name in enumerate(nodes, 1):
        assert f"cluster_formation.classic_config.nodes.{n} = rabbit@{name}" in conf
    # Every app process and setup (which declares the queues) wait for the extra nodes when they
    # run, and only then: a queue declared before a node joined has no replica there.
    for name in [*APP_SERVICES, "setup"]:
        for node in nodes[1:]:
            assert SERVICES[name]["depends_on"][node] == {"condition": "service_healthy", "required": False}, name
    # The broker URL can list every node (docs/deployment.md, Scaling out), and defaults to the one node.
    assert SERVICES["api"]["environment"]["ORDERHUB_BROKER_URL"].startswith("${ORDERHUB_BROKER_URL:-amqp://")
