"""scripts/ensure-services.sh on a machine where the services are not installed: it installs them
with apt-get on Debian, and elsewhere says what to install. Run for real, on ports nothing
listens on, with a PATH that holds no PostgreSQL, Redis or RabbitMQ (and, in the Debian case, an
apt-get that records what it was asked and fails, so nothing is installed)."""
import os
import shutil
import socket
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "ensure-services.sh"
TOOLS = ["bash", "id", "seq", "sleep", "ls", "sort", "tail", "cat", "printf", "tee", "chmod", "rm", "env", "sed"]


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again once the socket is


def run(tmp_path, apt_get=None):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        os.symlink(shutil.which(tool), bin_dir / tool)
    if apt_get:
        (bin_dir / "apt-get").write_text(apt_get)
        (bin_dir / "apt-get").chmod(0o755)
    env = {"PATH": str(bin_dir), "ENSURE_PG_PORT": str(closed_port()), "ENSURE_REDIS_PORT": str(closed_port()),
           "ENSURE_RABBITMQ_PORT": str(closed_port()), "HOME": str(tmp_path)}
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)


def test_without_apt_get_it_names_what_to_install_and_docker_compose_and_fails(tmp_path):
    result = run(tmp_path)

    assert result.returncode == 1
    assert "postgresql not installed here" in result.stderr
    assert "install PostgreSQL, RabbitMQ (with its management plugin) and Redis" in result.stderr
    assert "docker compose up" in result.stderr


def test_on_debian_it_installs_the_missing_service_with_apt_get(tmp_path):
    calls = tmp_path / "apt-calls"
    result = run(tmp_path, apt_get=f"#!/bin/bash\necho \"$*\" >> {calls}\n[ \"$3\" = update ] && exit 0\nexit 100\n")

    assert result.returncode == 1  # the fake apt-get installs nothing
    asked = calls.read_text().splitlines()
    assert asked[0].endswith("update -qq")
    assert asked[1].endswith("install -y -qq --no-install-recommends postgresql"), asked
    assert "installing postgresql (apt-get)" in result.stdout
