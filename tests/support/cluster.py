"""Real OrderHub processes as subprocesses, for integration tests and the chaos suite: they can be
started, killed (SIGKILL) and restarted, and each writes its own log."""
import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CELERY = [sys.executable, "-m", "celery", "-A", "orderhub"]
WORKERS = {
    "orchestrator": "saga.replies,saga.control,saga.ticks",
    "inventory": "inventory.commands",
    "payments": "payments.commands",
    "shipping": "shipping.commands",
    "notifications": "notifications.commands",
}


RESPAWN = [sys.executable, str(ROOT / "scripts" / "respawn.py")]


class Cluster:
    """`respawn`: each process runs under scripts/respawn.py, as the Procfile runs it (a kill
    here SIGKILLs the wrapper's whole process group, so the harness's own restarts are not the
    wrapper's)."""

    def __init__(self, env, log_dir: Path, *, respawn=False):
        self.env = env
        self.log_dir = log_dir
        self.respawn = respawn
        self.procs: dict[str, subprocess.Popen] = {}
        log_dir.mkdir(parents=True, exist_ok=True)

    def command(self, name, key):
        if name in WORKERS:
            return CELERY + ["worker", "-Q", WORKERS[name], "-P", "solo", "-n", f"{key}@%h",
                             "--without-gossip", "--without-mingle", "-l", "INFO"]
        if name == "beat":
            return CELERY + ["beat", "-s", str(self.log_dir / "celerybeat-schedule"), "--pidfile=", "-l", "INFO"]
        if name == "deadletters":
            return [sys.executable, "manage.py", "deadletters", "consume"]
        if name == "projections":
            return [sys.executable, "manage.py", "projections", "consume"]
        if name == "webhooks":
            return [sys.executable, "manage.py", "webhooks", "run"]
        if name == "api":
            return [sys.executable, "-m", "gunicorn", "orderhub.wsgi", "--bind", self.env["ORDERHUB_API_BIND"],
                    "--workers", self.env.get("ORDERHUB_API_WORKERS", "2"), "--timeout", "60"]
        raise ValueError(f"unknown process {name}")

    def start(self, name, *, index=1) -> str:
        key = f"{name}-{index}"
        log = open(self.log_dir / f"{key}.log", "ab")
        command = self.command(name, key)
        if self.respawn:
            command = [*RESPAWN, key, "--", *command]
        self.procs[key] = subprocess.Popen(
            command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return key

    def log_lines(self, marker):
        """Every line of every log here that starts with or holds `marker`, as (log name, line)."""
        return [(log.stem, line) for log in sorted(self.log_dir.glob("*.log"))
                for line in log.read_text(errors="replace").splitlines() if marker in line]

    def worker_names(self, keys):
        return {f"{key}@{os.uname().nodename}" for key in keys if key.rsplit("-", 1)[0] in WORKERS}

    def answering(self, app, keys) -> bool:
        replies = app.control.ping(timeout=0.5) or []
        return self.worker_names(keys) <= {name for reply in replies for name in reply}

    def pids(self) -> dict[str, int]:
        """The PID of every process still running, by key."""
        return {key: proc.pid for key, proc in self.procs.items() if proc.poll() is None}

    def kill(self, key, sig=signal.SIGKILL):
        proc = self.procs.pop(key)
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)

    def restart(self, key) -> str:
        name, index = key.rsplit("-", 1)
        self.kill(key)
        return self.start(name, index=int(index))

    def stop_all(self):
        for key in list(self.procs):
            proc = self.procs.pop(key)
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=15)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
