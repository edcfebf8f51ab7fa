"""scripts/respawn.py, the wrapper every Procfile line runs under, as real processes."""
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import eventually

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "respawn.py"

sys.path.insert(0, str(ROOT / "scripts"))
import respawn  # noqa: E402


def wrapper(tmp_path, child_code, *options):
    """respawn.py around a child that appends a line to a file each time it starts, then runs `child_code`."""
    starts = tmp_path / "starts"
    child = f"open({str(starts)!r}, 'a').write('start\\n'); {child_code}"
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "demo", *options, "--", sys.executable, "-c", child],
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    return proc, starts


def started(starts):
    return len(starts.read_text().splitlines()) if starts.exists() else 0


def test_a_child_that_exits_is_started_again_with_a_growing_delay_and_a_log_line(tmp_path):
    proc, starts = wrapper(tmp_path, "raise SystemExit(3)", "--min-delay", "0.2", "--max-delay", "0.4")
    eventually(lambda: started(starts) >= 4, timeout=20, message="four starts")
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)
    lines = [line for line in proc.stderr.read().splitlines() if line.startswith("respawn:")]
    assert lines[0].startswith("respawn: demo exited with code 3 after 0 s; restart 1 in 0.2 s"), lines
    assert lines[1].endswith("restart 2 in 0.4 s"), lines
    assert lines[2].endswith("restart 3 in 0.4 s"), lines  # capped at --max-delay


def test_a_sigterm_stops_the_child_and_nothing_is_restarted(tmp_path):
    proc, starts = wrapper(tmp_path, "import time; time.sleep(60)", "--min-delay", "0.1")
    eventually(lambda: started(starts) == 1, timeout=10, message="the child to start")
    time.sleep(0.2)  # the child's interpreter is past its start-up, in its sleep
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 128 + signal.SIGTERM  # the child's own end, as a shell reports it
    assert started(starts) == 1
    assert "respawn: demo exited" not in proc.stderr.read()


def test_a_sigkill_of_the_group_leaves_no_child_behind(tmp_path):
    import os

    pidfile = tmp_path / "pid"
    proc, starts = wrapper(tmp_path, f"import os, time; open({str(pidfile)!r}, 'w').write(str(os.getpid())); "
                                     "time.sleep(60)")
    eventually(lambda: pidfile.exists() and pidfile.read_text(), timeout=10, message="the child's pid")
    child = int(pidfile.read_text())
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)

    def gone():
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return True
        # A zombie until init reaps it: gone all the same.
        return Path(f"/proc/{child}/stat").read_text().split()[2] == "Z"

    eventually(gone, timeout=10, message="the child to be gone")


@pytest.mark.parametrize("in_a_row, expected", [(1, 1.0), (2, 2.0), (3, 4.0), (6, 30.0), (40, 30.0)])
def test_the_delay_doubles_up_to_the_cap(in_a_row, expected):
    assert respawn.delay_after(in_a_row, 1.0, 30.0) == expected


def test_a_command_is_required():
    with pytest.raises(SystemExit):
        respawn.parse_args(["demo"])
