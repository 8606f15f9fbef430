""".ci/run keeps install chatter in log files: one line per step that works, the log of one that fails."""
import shutil
import subprocess

import pytest

from conftest import REPO


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_step_is_quiet_on_success_and_shows_the_log_on_failure(tmp_path):
    script = f"""
        set -euo pipefail
        CI_LOGS={tmp_path}
        . {REPO / '.ci' / 'step.sh'}
        step chatty sh -c 'for i in $(seq 500); do echo "Setting up package$i"; done'
        step broken sh -c 'echo "Unpacking x"; echo "E: Unable to locate package nope" >&2; exit 3' || echo "rc=$?"
        echo "=== 1 passed in 0.01s ==="
    """
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("ci: chatty ok (") and "Setting up" not in out.stdout
    assert (tmp_path / "chatty.log").read_text().count("Setting up") == 500
    assert lines[1].startswith("ci: broken FAILED (exit 3")
    assert "  | E: Unable to locate package nope" in lines and "rc=3" in lines
    assert lines[-1] == "=== 1 passed in 0.01s ==="  # what follows the steps ends the log


def test_ci_run_sends_every_install_through_step():
    """Any pip/apt/debootstrap call in .ci/run runs under 'step' (its chatter in a log file)."""
    text = (REPO / ".ci" / "run").read_text()
    calls = [ln.strip() for ln in text.splitlines() if not ln.lstrip().startswith("#")
             and any(w in ln for w in ("pip install", "apt-get", "debootstrap", "-deps.sh"))]
    assert calls and all(ln.startswith("step ") for ln in calls), calls
    assert text.rstrip().splitlines()[-1] == "python -m pytest -q"  # the log ends with its summary
