"""A real OpenDKIM signing milter on 127.0.0.1:<free port>, reading the engine's KeyTable/SigningTable.

API:
    from tests.servers.opendkim import OpenDkim, start_opendkim
    with start_opendkim(workdir, key_table, signing_table) as odk:
        odk.port        # milter socket: add `smtpd_milters = inet:127.0.0.1:<port>` to Postfix's main.cf

Runs in the foreground (`opendkim -f`) with Mode s and InternalHosts 127.0.0.0/8 (every loopback
feeder is signed). `RequireSafeKeys no` only because the temp dir sits under the world-writable /tmp
(OpenDKIM refuses keys whose parent directories others can write); keys are still mode 0600.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support import free_port, require_tool


@dataclass(frozen=True)
class OpenDkim:
    port: int
    conf: Path


@contextmanager
def start_opendkim(workdir: Path, key_table: Path, signing_table: Path) -> Iterator[OpenDkim]:
    binary = require_tool("opendkim", "/usr/sbin/opendkim")
    port = free_port()
    conf = workdir / "opendkim.conf"
    conf.write_text(
        "Mode s\n"
        f"KeyTable file:{key_table}\n"
        f"SigningTable file:{signing_table}\n"
        f"Socket inet:{port}@127.0.0.1\n"
        f"PidFile {workdir}/opendkim.pid\n"
        "InternalHosts 127.0.0.0/8\n"
        "RequireSafeKeys no\n"
        "Syslog no\n"
        "UserID root\n")
    proc = subprocess.Popen([binary, "-f", "-x", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                raise AssertionError(f"opendkim exited {proc.returncode}: {out}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"opendkim did not listen on 127.0.0.1:{port}") from None
                time.sleep(0.05)
        yield OpenDkim(port=port, conf=conf)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
