"""A real authoritative DNS server (NSD) on a loopback port, for DNS authentication tests.

Own config, zone, pid and state files in a temporary directory; no chroot, no remote control,
no privilege drop (username ""), foreground (-d) so the test owns the process.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

import dns.message
import dns.query
import dns.rcode

from tests.support import free_port, require_tool


def zone_text(origin: str, records: Iterable[str], serial: int = 1) -> str:
    """A zone file: SOA and NS added; each record a line relative to `origin` (or absolute)."""
    origin = origin.rstrip(".") + "."
    head = [
        f"$ORIGIN {origin}",
        "$TTL 60",
        f"@ IN SOA ns.{origin} hostmaster.{origin} {serial} 3600 600 86400 60",
        f"@ IN NS ns.{origin}",
        "ns IN A 127.0.0.1",
    ]
    return "\n".join([*head, *records]) + "\n"


def txt(value: str) -> str:
    """TXT rdata: `value` split into quoted strings of at most 255 bytes (RFC 1035 §3.3)."""
    parts = [value[i:i + 250] for i in range(0, len(value), 250)] or [""]
    return " ".join('"' + p.replace("\\", "\\\\").replace('"', '\\"') + '"' for p in parts)


class NsdServer:
    def __init__(self, workdir: Path, zones: dict[str, str], host: str = "127.0.0.1") -> None:
        self.nsd = require_tool("nsd", "/usr/sbin/nsd")
        self.dir = workdir
        self.host = host
        self.port = free_port(host)
        self.zones = zones
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def resolvers_setting(self) -> str:
        """The value for EMAIL_ENGINE_DNS_RESOLVERS that points at this server."""
        return f"{self.host}:{self.port}"

    def _write(self) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        conf = [
            "server:",
            f"  ip-address: {self.host}@{self.port}",
            f"  port: {self.port}",
            '  username: ""',
            '  chroot: ""',
            f'  zonesdir: "{self.dir}"',
            '  database: ""',
            f'  pidfile: "{self.dir}/nsd.pid"',
            f'  xfrdfile: "{self.dir}/xfrd.state"',
            f'  zonelistfile: "{self.dir}/zone.list"',
            f'  logfile: "{self.dir}/nsd.log"',
            "  server-count: 1",
            "  verbosity: 1",
            "  do-ip6: no",
            "  hide-version: yes",
            "remote-control:",
            "  control-enable: no",
        ]
        for i, (name, text) in enumerate(sorted(self.zones.items())):
            path = self.dir / f"zone{i}.zone"
            path.write_text(text)
            conf += ["zone:", f"  name: {name}", f'  zonefile: "{path}"']
        conf_path = self.dir / "nsd.conf"
        conf_path.write_text("\n".join(conf) + "\n")
        return conf_path

    def start(self, timeout: float = 10.0) -> NsdServer:
        conf = self._write()
        self.proc = subprocess.Popen([self.nsd, "-d", "-c", str(conf)], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        probe_zone = sorted(self.zones)[0]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode(errors="replace") if self.proc.stdout else ""
                log = (self.dir / "nsd.log").read_text() if (self.dir / "nsd.log").exists() else ""
                raise RuntimeError(f"nsd exited with {self.proc.returncode}: {out}\n{log}")
            try:
                reply = dns.query.udp(dns.message.make_query(probe_zone, "SOA"), self.host, port=self.port,
                                      timeout=0.3)
                if reply.rcode() == dns.rcode.NOERROR and reply.answer:
                    return self
            except (dns.exception.Timeout, OSError):
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nsd did not answer on {self.host}:{self.port} within {timeout}s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()
        self.proc = None


def dead_port(host: str = "127.0.0.1") -> int:
    """A UDP/TCP port on loopback where nothing listens (a resolver that never answers)."""
    port = free_port(host)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, port))  # free for UDP too
    return port
