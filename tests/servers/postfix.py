"""A real, isolated Postfix instance on loopback plus an SMTP sink that records source addresses.

API (reusable, e.g. by the failover end-to-end test):

    from tests.servers.postfix import PostfixInstance, postfix_instance   # fixture import

    def test_x(postfix_instance: PostfixInstance):
        pf = postfix_instance
        pf.config_dir      # Path: the instance's config_directory (render/deploy Postfix config here)
        pf.smtpd_port      # int: smtpd on 127.0.0.1:<port> (SMTP injection, mynetworks = 127.0.0.0/8)
        pf.sink            # SmtpSink: every message Postfix delivers, with the connection's source IP
        pf.send(sender, recipient, count=1, source="127.0.10.200")  # SMTP injection from a loopback IP
        pf.sink.wait_for(n, timeout=30)           # wait until n messages arrived in total
        pf.sink.by_source()                        # Counter {source IP: messages}
        pf.postfix("reload")                       # run `postfix -c <config_dir> reload`
        pf.log()                                   # the instance's maillog text (maillog_file)
        pf.target                                  # activities.mta.local.LocalTarget for deploy_local

Isolation: own config_directory, queue_directory and data_directory under a temp dir, smtpd only on
127.0.0.1:<free port>, every delivery ends in the sink: FILTER transports (the engine's per-IP
transports) go to `default_filter_nexthop = [127.0.0.1]:<sink port>`, anything else to
`relayhost = [127.0.0.1]:<sink port>` (so a leak shows up in the sink as a message from 127.0.0.1,
never as a connection to the outside). No DNS lookups (`smtp_dns_support_level = disabled`).

Running as root: Postfix drops privileges to `mail_owner = postfix`, so the temp dir is created
outside pytest's 0700 tmp tree and made world-searchable (0755), and data_directory is chowned to
the postfix user. Postfix logs to `maillog_file` (no syslog here), hence `maillog_file_prefixes`.
The instance's master.cf is minimal (no chroot) and the engine adds its managed block to it.
"""

from __future__ import annotations

import collections
import os
import pwd
import shutil
import signal
import smtplib
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from activities.mta.local import LocalTarget
from tests.support import free_port, require_tool, unavailable

BASE_MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

BASE_MAIN_CF = """\
# isolated test instance (tests/servers/postfix.py)
compatibility_level = 3.6
config_directory = {root}/etc
queue_directory = {root}/spool
data_directory = {root}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mta.test.example
mydomain = test.example
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
smtputf8_enable = no
in_flow_delay = 0s
alias_maps =
alias_database =
biff = no
append_dot_mydomain = no
smtp_dns_support_level = disabled
relayhost = [127.0.0.1]:{sink}
default_filter_nexthop = [127.0.0.1]:{sink}
"""


@dataclass(frozen=True)
class Delivery:
    source: str
    helo: str
    mail_from: str
    rcpt_tos: tuple[str, ...]
    #: the message as received (headers and body, CRLF line ends)
    data: bytes = b""


@dataclass
class SmtpSink:
    """aiosmtpd server on 127.0.0.1:<port> recording each message with its connection's source IP."""

    port: int
    deliveries: list[Delivery] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _controller: Controller | None = None

    async def handle_DATA(self, server, session, envelope):
        with self._lock:
            self.deliveries.append(Delivery(session.peer[0], session.host_name or "", envelope.mail_from,
                                            tuple(envelope.rcpt_tos), bytes(envelope.original_content or b"")))
        return "250 2.0.0 OK"

    def start(self) -> None:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller:
            self._controller.stop()

    def snapshot(self) -> list[Delivery]:
        with self._lock:
            return list(self.deliveries)

    def clear(self) -> None:
        with self._lock:
            self.deliveries.clear()

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Delivery]:
        """Block until at least `count` messages arrived; AssertionError (with the count) on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.snapshot()
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError(f"sink received {len(self.snapshot())} of {count} messages in {timeout}s")

    def by_source(self, sender_domain_suffix: str | None = None) -> collections.Counter[str]:
        return collections.Counter(d.source for d in self.snapshot()
                                   if sender_domain_suffix is None or d.mail_from.endswith(sender_domain_suffix))


@dataclass
class PostfixInstance:
    root: Path
    smtpd_port: int
    sink: SmtpSink
    postfix_bin: str

    @property
    def config_dir(self) -> Path:
        return self.root / "etc"

    @property
    def target(self) -> LocalTarget:
        return LocalTarget()

    def postfix(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([self.postfix_bin, "-c", str(self.config_dir), *args], capture_output=True,
                              text=True, timeout=60, cwd="/")
        if check and proc.returncode != 0:
            raise AssertionError(f"postfix {' '.join(args)} exited {proc.returncode}: {proc.stderr}\n"
                                 f"{self.log()[-3000:]}")
        return proc

    def log(self) -> str:
        try:
            return (self.root / "maillog").read_text()
        except FileNotFoundError:
            return ""

    def send(self, sender: str, recipient: str = "rcpt@dest.example", count: int = 1,
             source: str | None = None) -> None:
        """Inject `count` messages over one SMTP connection (from loopback address `source`, e.g. a
        tenant's feeder IP); SMTPException if Postfix refuses one."""
        with smtplib.SMTP("127.0.0.1", self.smtpd_port, timeout=30,
                          source_address=(source, 0) if source else None) as smtp:
            for i in range(count):
                smtp.sendmail(sender, [recipient], f"From: {sender}\r\nTo: {recipient}\r\nSubject: t{i}\r\n\r\nx\r\n")

    def wait_listening(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with smtplib.SMTP("127.0.0.1", self.smtpd_port, timeout=5) as smtp:
                    smtp.noop()
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"Postfix smtpd did not listen on 127.0.0.1:{self.smtpd_port}\n{self.log()}")

    def stop(self) -> None:
        if self.postfix("stop", check=False).returncode == 0:
            return
        pid_file = self.root / "spool" / "pid" / "master.pid"
        try:  # kill only the master this instance started
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            pass


@pytest.fixture
def postfix_instance() -> Iterator[PostfixInstance]:
    """A started, isolated Postfix with an empty sink; stopped and removed afterwards."""
    postfix_bin = require_tool("postfix", "/usr/sbin/postfix")
    require_tool("postconf", "/usr/sbin/postconf")
    if os.geteuid() != 0:
        unavailable("the isolated Postfix instance needs root (master binds and drops to mail_owner)")
    try:
        pw = pwd.getpwnam("postfix")
    except KeyError:
        unavailable("no postfix user (install the postfix package)")
    root = Path(tempfile.mkdtemp(prefix="ee-postfix-"))
    root.chmod(0o755)
    for sub in ("etc", "spool", "data"):
        (root / sub).mkdir()
        (root / sub).chmod(0o755)
    os.chown(root / "data", pw.pw_uid, pw.pw_gid)
    sink = SmtpSink(port=free_port())
    port = free_port()
    (root / "etc" / "main.cf").write_text(BASE_MAIN_CF.format(root=root, sink=sink.port))
    (root / "etc" / "master.cf").write_text(BASE_MASTER_CF.format(port=port))
    sink.start()
    inst = PostfixInstance(root=root, smtpd_port=port, sink=sink, postfix_bin=postfix_bin)
    try:
        inst.postfix("start")
        inst.wait_listening()
        yield inst
    finally:
        inst.stop()
        sink.stop()
        shutil.rmtree(root, ignore_errors=True)
