"""A real rbldnsd (Debian, /usr/sbin/rbldnsd) on 127.0.0.1:<free port> serving test copies of blocklist zones.

Used by the blocklist tests, the end-to-end failover test and bench/blocklists.py.

    from tests.servers.rbldnsd import Rbldnsd

    with Rbldnsd.for_catalog(load_catalog()) as bl:          # every catalogued zone, RFC 5782 entries seeded
        monkeypatch.setenv("EMAIL_ENGINE_DNS_RESOLVERS", bl.resolver)   # "127.0.0.1:<port>"
        get_settings.cache_clear()
        bl.list("spamhaus-zen", "127.0.30.7")                 # code: the zone's first listing code
        bl.list("spamhaus-zen", "127.0.30.8", ["127.0.0.2", "127.0.0.9"])   # several A records (SBL + DROP)
        bl.unlist("spamhaus-zen", "127.0.30.7")
        ...                                                  # scan: activities.blocklists.scan(...)

Zones are addressed by catalogue name ("spamhaus-zen") or DNS zone ("zen.spamhaus.org"). The real zone
names are served on loopback only: nothing is sent anywhere else, since the scanner asks the configured
resolver (this server) directly. Extra zones: `ServedZone(zone, kind, entries, acl=...)`, where acl
"ignore" makes rbldnsd drop every query of that zone (the client sees a timeout) and "refuse" answers
REFUSED. Leave out a zone's test entry (`seed_tests=False` or `unlist`) to make its self-test fail.

Reloads: rbldnsd re-reads a data file when its mtime changed, on SIGHUP or every `-c` interval (default
1 minute; 0 disables the timer). The server runs with `-c 0` and every change (list/unlist/set_entries)
writes the file atomically, moves its mtime strictly forward (rbldnsd compares whole seconds, two writes
in one second would otherwise be missed), sends SIGHUP and waits until rbldnsd answers with the new
data: when list()/unlist() return, the change is served.

IPv4-mapped IPv6 queries (the RFC 5782 IPv6 test entry ::ffff:7f00:2 in nibble form) are answered from
the zone's IPv4 data: list 127.0.0.2 to list ::ffff:127.0.0.2.

rbldnsd refuses to run as root: as root it runs with `-u rbldns`, so the data directory is created
world-readable under /tmp (pytest's tmp_path is not readable by that user).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode

from models.blocklist import Catalog, Effect, Kind, Zone, query_name, self_test_entries
from tests.support import free_port, require_tool

LAYERS = 3  # an entry can answer up to this many A records (one dataset per layer)


@dataclass
class ServedZone:
    zone: str
    kind: str = "ip"  # "ip" | "domain"
    entries: dict[str, list[str]] = field(default_factory=dict)  # value -> A codes
    acl: str | None = None  # None | "ignore" | "refuse"


def seed_code(zone: Zone) -> list[str]:
    """The code a test copy answers for the positive test entry (and the default for list())."""
    if zone.test_codes:
        return [zone.test_codes[0]]
    if zone.bits:
        return [f"127.0.0.{sum(zone.bits)}"]
    for effect in (Effect.LISTED, Effect.REPUTATION):
        for code, spec in zone.codes.items():
            if spec.effect is effect:
                return [code]
    return ["127.0.0.2"]


class Rbldnsd:
    def __init__(self, zones: Iterable[ServedZone], aliases: Mapping[str, str] | None = None,
                 host: str = "127.0.0.1"):
        self.binary = require_tool("rbldnsd", "/usr/sbin/rbldnsd")
        self.zones = {z.zone: z for z in zones}
        self.aliases = dict(aliases or {})
        self.defaults: dict[str, list[str]] = {}
        self.host = host
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.dir = Path(tempfile.mkdtemp(prefix="rbldnsd-"))
        os.chmod(self.dir, 0o755)
        self._mtime = int(time.time()) - 10

    # ------------------------------------------------------------------------------ construction
    @classmethod
    def for_catalog(cls, catalog: Catalog, extra: Iterable[ServedZone] = (), seed_tests: bool = True,
                    dqs_key: str | None = None) -> Rbldnsd:
        """Test copies of every catalogue zone (their query zones, DQS-rewritten if a key is given), each
        with its RFC 5782 positive test entry unless seed_tests is False."""
        zones, aliases, defaults = [], {}, {}
        for az in catalog.active(dqs_key):
            z = az.spec
            entries = {pos: seed_code(z) for pos, _neg in self_test_entries(z)} if seed_tests else {}
            zones.append(ServedZone(az.query_zone, z.kind.value, entries))
            aliases[z.name] = az.query_zone
            defaults[az.query_zone] = seed_code(z)
        server = cls([*zones, *extra], aliases)
        server.defaults = defaults
        return server

    @property
    def resolver(self) -> str:
        """The value for EMAIL_ENGINE_DNS_RESOLVERS."""
        return f"{self.host}:{self.port}"

    def zone_of(self, name: str) -> ServedZone:
        return self.zones[self.aliases.get(name, name)]

    # ------------------------------------------------------------------------------ data files
    def _files(self, z: ServedZone) -> list[tuple[str, Path]]:
        base = z.zone.replace(".", "_")
        out = []
        for layer in range(LAYERS):
            if z.kind == Kind.DOMAIN:
                out.append(("dnset", self.dir / f"{base}.{layer}.dnset"))
            else:
                out.append(("ip4set", self.dir / f"{base}.{layer}.ip4"))
                out.append(("ip6trie", self.dir / f"{base}.{layer}.ip6"))
        return out

    def _write(self, z: ServedZone) -> None:
        for dtype, path in self._files(z):
            layer = int(path.suffixes[0][1:])
            lines = ["$SOA 60 ns.rbldnsd.test. admin.rbldnsd.test. 0 60 60 600 60"]
            for value, codes in sorted(z.entries.items()):
                if layer >= len(codes):
                    continue
                is6 = ":" in value
                if (dtype == "ip4set" and is6) or (dtype == "ip6trie" and not is6):
                    continue
                lines.append(f"{value} :{codes[layer]}:listed in {z.zone}: $")
            tmp = path.with_suffix(path.suffix + ".tmp")
            tmp.write_text("\n".join(lines) + "\n")
            os.chmod(tmp, 0o644)
            self._mtime += 2
            os.utime(tmp, (self._mtime, self._mtime))
            os.replace(tmp, path)
        if z.acl:
            acl = self.dir / f"{z.zone.replace('.', '_')}.acl"
            acl.write_text(f"0.0.0.0/0 :{z.acl}\n::/0 :{z.acl}\n")
            os.chmod(acl, 0o644)

    def _args(self) -> list[str]:
        args = []
        for z in self.zones.values():
            for dtype, path in self._files(z):
                args.append(f"{z.zone}:{dtype}:{path}")
            if z.acl:
                args.append(f"{z.zone}:acl:{self.dir / (z.zone.replace('.', '_') + '.acl')}")
        return args

    # ------------------------------------------------------------------------------ process
    def start(self) -> Rbldnsd:
        for z in self.zones.values():
            self._write(z)
        user = ["-u", "rbldns"] if os.geteuid() == 0 else []
        log_path = self.dir / "rbldnsd.log"
        probe = next((z.zone for z in self.zones.values() if not z.acl), "")
        if not probe:
            raise ValueError("at least one zone without an acl is needed")
        last = ""
        for _ in range(5):  # the free port may be taken between free_port() and bind
            self.port = free_port(self.host)
            with open(log_path, "wb") as log:
                self.proc = subprocess.Popen(
                    [self.binary, "-n", *user, "-b", f"{self.host}/{self.port}", "-c", "0", "-t", "60",
                     *self._args()], stdout=log, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                if self._ask(probe) is not None:
                    return self
                time.sleep(0.02)
            last = log_path.read_text(errors="replace")
            self._kill()
        raise RuntimeError(f"rbldnsd did not start: {last[-2000:]}")

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def stop(self) -> None:
        self._kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Rbldnsd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------------------ queries
    def _ask(self, qname: str, timeout: float = 0.5) -> list[str] | None:
        """A codes, [] for NXDOMAIN/no data, None for no answer (or REFUSED)."""
        try:
            reply = dns.query.udp(dns.message.make_query(qname, "A"), self.host, timeout=timeout, port=self.port)
        except (dns.exception.Timeout, OSError):
            return None
        if reply.rcode() == dns.rcode.REFUSED:
            return None
        return sorted(rd.address for rrset in reply.answer for rd in rrset if rrset.rdtype == 1)

    def lookup(self, zone: str, value: str) -> list[str] | None:
        z = self.zone_of(zone)
        return self._ask(query_name(z.zone, z.kind, value))

    # ------------------------------------------------------------------------------ changes
    def set_entries(self, zone: str, entries: Mapping[str, Iterable[str]]) -> None:
        """Replace a zone's whole data and wait until it is served."""
        z = self.zone_of(zone)
        z.entries = {v: list(c) for v, c in entries.items()}
        self._apply(z)

    def list(self, zone: str, value: str, codes: str | Iterable[str] | None = None) -> None:
        z = self.zone_of(zone)
        if codes is None:
            codes = self.defaults.get(z.zone, ["127.0.0.2"])
        code_list = [codes] if isinstance(codes, str) else list(codes)
        if not 0 < len(code_list) <= LAYERS:
            raise ValueError(f"between 1 and {LAYERS} codes per entry")
        z.entries[value] = code_list
        self._apply(z, probe=value)

    def unlist(self, zone: str, value: str) -> None:
        z = self.zone_of(zone)
        z.entries.pop(value, None)
        self._apply(z, probe=value)

    def _apply(self, z: ServedZone, probe: str | None = None) -> None:
        self._write(z)
        self.reload()
        if z.acl == "ignore" or z.acl == "refuse":
            return
        probes = [probe] if probe is not None else list(z.entries)[:1]
        deadline = time.monotonic() + 10
        for value in probes:
            want = sorted(z.entries.get(value, []))
            while self._ask(query_name(z.zone, z.kind, value)) != want:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"rbldnsd did not reload {z.zone} ({value} should answer {want})")
                time.sleep(0.02)

    def reload(self) -> None:
        """SIGHUP: rbldnsd re-reads the data files whose mtime changed."""
        if self.proc is None:
            raise RuntimeError("rbldnsd is not running")
        self.proc.send_signal(signal.SIGHUP)


@contextmanager
def running(zones: Iterable[ServedZone]) -> Iterator[Rbldnsd]:
    server = Rbldnsd(zones)
    with server:
        yield server
