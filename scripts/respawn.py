"""Run one process and start it again whenever it exits on its own, with a back-off.

    python scripts/respawn.py NAME [--min-delay S] [--max-delay S] [--healthy S] -- COMMAND [ARG ...]

Every line of the Procfile runs under it, so `make run` (honcho) restarts a process that exits
instead of leaving the system half up: honcho itself stops every process when one exits. The
compose file's `restart: unless-stopped` does the same for containers. The child stays in the
wrapper's process group, so whatever stops the group stops both (honcho signals the group; a
SIGKILL of the group leaves no orphan). A stop (SIGTERM, SIGINT, SIGHUP) means no restart: the
wrapper passes a SIGTERM sent to it alone on to the child (a second one is harmless to Celery,
gunicorn and the consumers) and exits with the child's code. SIGINT and SIGHUP come from the
terminal to the whole group, so they are not passed on (a second SIGINT is Celery's cold
shutdown).

Each restart is one log line on stderr, which the chaos harness counts:

    respawn: NAME exited with code C after S s; restart N in D s

The delay starts at --min-delay and doubles with each exit in a row, up to --max-delay; a child
that ran for --healthy seconds starts the count over.
"""
import argparse
import signal
import subprocess
import sys
import threading
import time

RESTART_LINE = "respawn: {name} exited with code {code} after {ran:.0f} s; restart {count} in {delay:.1f} s"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="what the log line calls the process")
    parser.add_argument("--min-delay", type=float, default=1.0)
    parser.add_argument("--max-delay", type=float, default=30.0)
    parser.add_argument("--healthy", type=float, default=60.0,
                        help="seconds of running after which an exit is the first in a row again")
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        parser.error("give the command after --")
    split = argv.index("--")
    args = parser.parse_args(argv[:split])
    args.command = argv[split + 1:]
    return args


def delay_after(in_a_row: int, min_delay: float, max_delay: float) -> float:
    """The wait before the restart that follows `in_a_row` exits in a row (1, 2, ...)."""
    return min(max_delay, min_delay * 2 ** (in_a_row - 1))


class Respawner:
    def __init__(self, args):
        self.args = args
        self.child: subprocess.Popen | None = None
        self.stopping = threading.Event()
        self.restarts = 0

    def on_signal(self, signum, frame):
        self.stopping.set()
        if signum == signal.SIGTERM and self.child is not None and self.child.poll() is None:
            self.child.send_signal(signum)

    def run(self) -> int:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self.on_signal)
        in_a_row = 0
        while True:
            started = time.monotonic()
            try:
                self.child = subprocess.Popen(self.args.command)
            except OSError as exc:
                print(f"respawn: {self.args.name}: cannot start {self.args.command[0]!r}: {exc}", file=sys.stderr,
                      flush=True)
                return 127
            code = self.child.wait()
            if self.stopping.is_set():
                return 128 - code if code < 0 else code  # killed by a signal: the shell's 128 + N
            ran = time.monotonic() - started
            in_a_row = 1 if ran >= self.args.healthy else in_a_row + 1
            delay = delay_after(in_a_row, self.args.min_delay, self.args.max_delay)
            self.restarts += 1
            print(RESTART_LINE.format(name=self.args.name, code=code, ran=ran, count=self.restarts, delay=delay),
                  file=sys.stderr, flush=True)
            if self.stopping.wait(delay):
                return code


def main(argv=None) -> int:
    return Respawner(parse_args(argv)).run()


if __name__ == "__main__":
    sys.exit(main())
