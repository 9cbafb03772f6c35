"""A real OpenSSH server on loopback, with a fake `pmta` command, for deploy and SFTP tests.

PowerMTA itself cannot be installed here (proprietary, licensed): the `pmta` on the SSH session's
PATH is a small shell script that records every call and fails on request. The `nft` on that PATH is a
recording wrapper of the real nft that runs it inside a throwaway network namespace (`unshare --net`,
plus a user namespace when not root): a host firewall deployed in a test must never reach this
machine's own namespace (it would cut everyone off), so `nft -c -f` is the kernel's real check and
`nft -f` really loads the file, into a namespace discarded right after. Everything else is real:
Debian's /usr/sbin/sshd, its own host key and config in a temporary directory, public-key login of the
current user (root in CI) with a generated client key, SFTP (internal-sftp).

API (reuse it; e.g. the warmup helper fetches accounting files over SFTP, the failover e2e deploys):

    from tests.servers.sshd import SshServer, start_sshd, sshd  # `sshd`: a function-scoped fixture

    with start_sshd(tmp_path, address="127.0.11.1") as server:   # or use the `sshd` fixture
        server.address, server.port, server.user        # where to connect
        server.client_key, server.known_hosts           # paths: private key, known_hosts (OpenSSH)
        server.host_key_fingerprint                     # "SHA256:..."
        server.settings_env()                           # EMAIL_ENGINE_SSH_KNOWN_HOSTS / _KEY_PATH values
        server.config_dir                               # <root>/etc/pmta: the fake PowerMTA config dir
        server.files_dir                                # <root>/files: a scratch dir (e.g. accounting CSVs)
        server.fail("test-config") / server.fail("reload", times=1)   # fail until fail(.., False) / N times
        server.hang("test-config") / server.wait_hanging("test-config") / server.hang("test-config", False)
                                                        # block that pmta call until released
        server.kill_sessions()                          # SIGTERM every session's sshd child: connections drop
        server.pmta_calls()                             # [PmtaCall(at, args, digest)] in call order
        server.nft_calls()                              # [PmtaCall(at, args, sha256 of the file given)]
        server.fail("nft-check") / server.fail("nft-apply")   # make `nft -c -f` / `nft -f` fail
        server.stop_listener_on_nft_apply() / server.resume_listener()  # new logins hang after `nft -f`
        server.clear_calls()
        server.known_hosts_with_wrong_key(path)         # a known_hosts naming another key for this host

`PmtaCall.digest` is a sha256 over the config tree as `pmta` saw it at that moment (files under
config_dir, symlinks followed, the deployer's `.email-engine*` state excluded), so a test can tell
which configuration a reload loaded. `pmta test config` also checks that the main file `config`
exists and that every `include` path in it matches at least one file.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import pytest

from tests.support import free_port, require_tool

FAKE_PMTA = r"""#!/bin/sh
# Fake PowerMTA command for tests (PowerMTA cannot be installed here). Records each call.
state='@STATE@'
conf="${PMTA_CONFIG_DIR:-/etc/pmta}"
# (one sha256sum for all files: a release with thousands of DKIM keys must not cost a process per file)
digest=$(cd "$conf" 2>/dev/null && find -L . -path './.email-engine*' -prune -o -type f -print0 2>/dev/null \
  | LC_ALL=C sort -z | xargs -0 -r sha256sum -- | sha256sum | cut -c1-64)
printf '%s\t%s\t%s\n' "$(date +%s.%N)" "$*" "$digest" >> "$state/pmta.log"
# fail-<what> marker: empty = fail every time; a number N = fail the next N calls.
should_fail() {
  m="$state/fail-$1"; [ -e "$m" ] || return 1
  n=$(cat "$m"); [ -z "$n" ] && return 0
  if [ "$n" -le 1 ]; then rm -f "$m"; else echo $((n - 1)) > "$m"; fi; return 0
}
# hang-<what> marker: block (as a hung MTA command would) until the marker is removed.
hang() {
  [ -e "$state/hang-$1" ] || return 0
  : > "$state/hanging-$1"
  while [ -e "$state/hang-$1" ]; do sleep 0.05; done
  rm -f "$state/hanging-$1"
}
case "$*" in
  "test config")
    hang test-config
    if should_fail test-config; then
      echo "Error in line 11 of $conf/config: argument missing (fake pmta: failure requested)" >&2; exit 1
    fi
    [ -f "$conf/config" ] || { echo "Error: cannot open $conf/config" >&2; exit 1; }
    grep -E '^[[:space:]]*include[[:space:]]' "$conf/config" | awk '{print $2}' | while read -r pattern; do
      set -- $pattern
      [ -e "$1" ] || { echo "Error in $conf/config: include $pattern matches no file" >&2; exit 1; }
    done || exit 1
    echo "fake pmta: configuration OK";;
  reload)
    hang reload
    if should_fail reload; then echo "fake pmta: reload failed (failure requested)" >&2; exit 1; fi
    echo "Configuration reloaded.";;
  *) echo "fake pmta: $*";;
esac
"""


FAKE_NFT = r"""#!/bin/sh
# nft for tests: never this machine's network namespace. Records each call, then runs the real nft in a
# throwaway network namespace (unshare): `-c -f FILE` is the real check, `-f FILE` a real load into a
# namespace that is discarded when the command ends.
state='@STATE@'
file=""; for a in "$@"; do file="$a"; done
digest=""; [ -f "$file" ] && digest=$(sha256sum < "$file" | cut -c1-64)
printf '%s	%s	%s
' "$(date +%s.%N)" "$*" "$digest" >> "$state/nft.log"
should_fail() {
  m="$state/fail-$1"; [ -e "$m" ] || return 1
  n=$(cat "$m"); [ -z "$n" ] && return 0
  if [ "$n" -le 1 ]; then rm -f "$m"; else echo $((n - 1)) > "$m"; fi; return 0
}
case "$1" in
  -c) if should_fail nft-check; then echo "Error: fake nft: check failure requested" >&2; exit 1; fi;;
  -f) if should_fail nft-apply; then echo "Error: fake nft: load failure requested" >&2; exit 1; fi
      # what a ruleset dropping new SSH connections does to the next login: stop the sshd listener (once)
      if [ -e "$state/stop-listener-on-apply" ]; then
        rm -f "$state/stop-listener-on-apply"; kill -STOP "$(cat "$state/listener.pid")"
      fi;;
  *) echo "fake nft: only '-c -f FILE' and '-f FILE' are supported here" >&2; exit 2;;
esac
# as root a new network namespace is enough; otherwise a user namespace too (unshare -rn)
if [ "$(id -u)" = 0 ]; then exec unshare --net -- '@NFT@' "$@"; fi
exec unshare --user --map-root-user --net -- '@NFT@' "$@"
"""


@dataclass(frozen=True)
class PmtaCall:
    at: float
    args: str
    digest: str


@dataclass
class SshServer:
    address: str
    port: int
    user: str
    root: Path
    client_key: Path
    known_hosts: Path
    host_key_fingerprint: str
    host_public_key: str
    config_dir: Path
    files_dir: Path
    state_dir: Path
    #: Process id of the listening sshd (its children are the sessions).
    pid: int = 0

    def settings_env(self) -> dict[str, str]:
        return {"EMAIL_ENGINE_SSH_KNOWN_HOSTS": str(self.known_hosts),
                "EMAIL_ENGINE_SSH_KEY_PATH": str(self.client_key)}

    def fail(self, what: str, on: bool = True, times: int | None = None) -> None:
        """Make `pmta test config` ("test-config") or `pmta reload` ("reload") fail: every call until
        fail(what, False), or only the next `times` calls."""
        if what not in ("test-config", "reload", "nft-check", "nft-apply"):
            raise ValueError(f"unknown failure {what!r}")
        marker = self.state_dir / f"fail-{what}"
        if on:
            marker.write_text("" if times is None else str(times))
        else:
            marker.unlink(missing_ok=True)

    def hang(self, what: str, on: bool = True) -> None:
        """Make `pmta test config` ("test-config") or `pmta reload` ("reload") block until hang(what, False)."""
        if what not in ("test-config", "reload"):
            raise ValueError(f"unknown hang {what!r}")
        marker = self.state_dir / f"hang-{what}"
        if on:
            marker.write_text("")
        else:
            marker.unlink(missing_ok=True)

    def wait_hanging(self, what: str, timeout: float = 30.0) -> None:
        """Wait until a `pmta` call is blocked by hang(what)."""
        deadline = time.monotonic() + timeout
        while not (self.state_dir / f"hanging-{what}").exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no pmta call blocked on {what!r} within {timeout}s")
            time.sleep(0.02)

    def stop_listener_on_nft_apply(self) -> None:
        """At the next `nft -f`, SIGSTOP the listening sshd: open sessions go on, a new login gets no
        banner (as when a ruleset drops new SSH connections). `resume_listener` undoes it."""
        (self.state_dir / "listener.pid").write_text(str(self.pid))
        (self.state_dir / "stop-listener-on-apply").write_text("")

    def resume_listener(self) -> None:
        (self.state_dir / "stop-listener-on-apply").unlink(missing_ok=True)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGCONT)

    def kill_sessions(self) -> int:
        """Terminate the sshd child process of every open session (the listener stays): each client
        sees its connection drop, as on a network failure or a host reboot. Returns how many."""
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(child), signal.SIGTERM)
        return len(children)

    def pmta_calls(self) -> list[PmtaCall]:
        return self._calls("pmta.log")

    def nft_calls(self) -> list[PmtaCall]:
        """Calls of the host's `nft`; `digest` is the sha256 of the file it was given."""
        return self._calls("nft.log")

    def _calls(self, name: str) -> list[PmtaCall]:
        log = self.state_dir / name
        if not log.exists():
            return []
        calls = []
        for line in log.read_text().splitlines():
            at, args, digest = line.split("\t")
            calls.append(PmtaCall(float(at), args, digest))
        return calls

    def clear_calls(self) -> None:
        (self.state_dir / "pmta.log").unlink(missing_ok=True)
        (self.state_dir / "nft.log").unlink(missing_ok=True)

    def known_hosts_line(self, public_key: str | None = None) -> str:
        host = self.address if self.port == 22 else f"[{self.address}]:{self.port}"
        return f"{host} {public_key or self.host_public_key}\n"

    def known_hosts_with_wrong_key(self, path: Path) -> Path:
        other = asyncssh.generate_private_key("ssh-ed25519").export_public_key("openssh").decode().strip()
        path.write_text(self.known_hosts_line(other))
        return path


def _wait_port(address: str, port: int, proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise RuntimeError(f"sshd exited with {proc.returncode}: {out}")
        with contextlib.suppress(OSError), socket.create_connection((address, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"sshd did not listen on {address}:{port} within {timeout}s")


@contextlib.contextmanager
def start_sshd(root: Path, address: str = "127.0.0.1") -> Iterator[SshServer]:
    """Start sshd on `address`:<free port> with everything under `root`; stop it on exit."""
    sshd_bin = require_tool("sshd", "/usr/sbin/sshd")
    root.mkdir(parents=True, exist_ok=True)
    user = getpass.getuser()
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    host_key_path = root / "ssh_host_ed25519_key"
    host_key.write_private_key(str(host_key_path))
    host_key_path.chmod(0o600)
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key_path = root / "id_ed25519"
    client_key.write_private_key(str(client_key_path))
    client_key_path.chmod(0o600)
    (root / "authorized_keys").write_bytes(client_key.export_public_key("openssh"))
    bin_dir, state_dir, config_dir, files_dir = root / "bin", root / "state", root / "etc" / "pmta", root / "files"
    for d in (bin_dir, state_dir, config_dir, files_dir):
        d.mkdir(parents=True, exist_ok=True)
    pmta = bin_dir / "pmta"
    pmta.write_text(FAKE_PMTA.replace("@STATE@", str(state_dir)))
    pmta.chmod(0o755)
    nft = bin_dir / "nft"
    real_nft = shutil.which("nft") or "/usr/sbin/nft"
    nft.write_text(FAKE_NFT.replace("@STATE@", str(state_dir)).replace("@NFT@", real_nft))
    nft.chmod(0o755)
    port = free_port(address)
    (root / "sshd_config").write_text(f"""\
Port {port}
ListenAddress {address}
HostKey {host_key_path}
PidFile {root / 'sshd.pid'}
AuthorizedKeysFile {root / 'authorized_keys'}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowUsers {user}
UsePAM no
StrictModes no
MaxStartups 100:30:200
MaxSessions 64
LogLevel ERROR
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
PermitUserRC no
Subsystem sftp internal-sftp
SetEnv PATH={bin_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin PMTA_CONFIG_DIR={config_dir}
""")
    proc = subprocess.Popen([sshd_bin, "-D", "-e", "-f", str(root / "sshd_config")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        _wait_port(address, port, proc)
        public = host_key.export_public_key("openssh").decode().strip()
        server = SshServer(
            address=address, port=port, user=user, root=root, client_key=client_key_path,
            known_hosts=root / "known_hosts", host_key_fingerprint=host_key.get_fingerprint("sha256"),
            host_public_key=public, config_dir=config_dir, files_dir=files_dir, state_dir=state_dir,
            pid=proc.pid,
        )
        server.known_hosts.write_text(server.known_hosts_line())
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)  # a listener stopped by a test still terminates
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


@pytest.fixture
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    """A fresh sshd on 127.0.0.1 (own host key, fake pmta) for one test."""
    with start_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server
