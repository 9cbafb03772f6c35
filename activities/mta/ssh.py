"""SSH to an MTA host (asyncssh): host key checked against the configured known_hosts, key auth, SFTP.

`SshTarget` implements activities.mta.base.Target (run / read_text / write_text / list_files / remove)
plus the few file operations an atomic release switch needs (symlink, rename, readlink, rmtree).
Commands are run without a shell on our side; the argv is joined with shlex.join, so every argument
reaches the remote shell quoted. Paths are validated before use.

A host key that is not in known_hosts, or differs from it, is refused with HostKeyMismatch naming the
host and the fingerprint it presented; nothing is uploaded or run.
"""

from __future__ import annotations

import asyncio
import posixpath
import shlex
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import asyncssh

from activities.mta.base import CommandResult
from models import names
from models.settings import Settings, get_settings
from models.snapshot import MtaHostView


class HostKeyMismatch(Exception):
    """The MTA host presented a key that known_hosts does not trust (never retried)."""


class SshLoginRefused(Exception):
    """The MTA host refused our key, or the key file is missing (never retried)."""


class SshUnavailable(Exception):
    """The SSH connection could not be set up (retryable: the host may be back soon)."""


@dataclass(frozen=True)
class SshEndpoint:
    name: str
    address: str
    port: int
    user: str
    known_hosts: Path
    key_path: Path
    connect_timeout: float = 15.0
    command_timeout: float = 120.0

    @classmethod
    def for_host(cls, host: MtaHostView, settings: Settings | None = None) -> SshEndpoint:
        s = settings or get_settings()
        return cls(
            name=names.token(host.name, "MTA host name"),
            address=names.ip_address(host.address),
            port=int(host.ssh_port),
            user=names.token(host.ssh_user, "SSH user"),
            known_hosts=Path(s.ssh_known_hosts or s.var_dir / "ssh" / "known_hosts"),
            key_path=Path(s.ssh_key_path or s.var_dir / "ssh" / "id_ed25519"),
            connect_timeout=s.ssh_connect_timeout,
            command_timeout=s.ssh_command_timeout,
        )

    def describe(self) -> str:
        return f"ssh://{self.user}@{self.address}:{self.port}"


def safe_remote_path(path: str) -> str:
    """An absolute, normalized remote path of safe characters (no '..', no whitespace or quotes)."""
    if posixpath.normpath(path) != path:
        raise ValueError(f"remote path {path!r} is not normalized")
    return names.key_path(path)


async def _presented_fingerprint(ep: SshEndpoint) -> str:
    try:
        key = await asyncio.wait_for(asyncssh.get_server_host_key(ep.address, ep.port, config=None),
                                     ep.connect_timeout)
    except (TimeoutError, OSError, asyncssh.Error) as err:
        return f"(could not read the presented key: {err})"
    if key is None:
        return "(no key presented)"
    return f"{key.get_algorithm()} {key.get_fingerprint('sha256')}"


async def connect(ep: SshEndpoint) -> asyncssh.SSHClientConnection:
    if not ep.known_hosts.is_file():
        raise HostKeyMismatch(
            f"known_hosts file {ep.known_hosts} does not exist: add the host key of {ep.name} "
            f"({ep.address}:{ep.port}) there (EMAIL_ENGINE_SSH_KNOWN_HOSTS) before deploying")
    if not ep.key_path.is_file():
        raise SshLoginRefused(f"SSH private key {ep.key_path} does not exist (EMAIL_ENGINE_SSH_KEY_PATH)")
    try:
        return await asyncio.wait_for(asyncssh.connect(
            ep.address, ep.port, username=ep.user, known_hosts=str(ep.known_hosts),
            client_keys=[str(ep.key_path)], agent_path=None, config=None, password=None,
            kbdint_auth=False, gss_auth=False, login_timeout=ep.connect_timeout,
        ), ep.connect_timeout + 5)
    except asyncssh.HostKeyNotVerifiable as err:
        presented = await _presented_fingerprint(ep)
        raise HostKeyMismatch(
            f"host key of MTA host {ep.name} ({ep.address}:{ep.port}) does not match {ep.known_hosts}: "
            f"it presented {presented}; refusing to connect ({err.reason})") from None
    except asyncssh.PermissionDenied as err:
        raise SshLoginRefused(f"SSH login as {ep.user} on {ep.name} ({ep.address}:{ep.port}) was refused: "
                              f"{err.reason} (key {ep.key_path})") from None
    except (TimeoutError, OSError, asyncssh.Error) as err:
        raise SshUnavailable(f"cannot reach MTA host {ep.name} at {ep.address}:{ep.port}: "
                             f"{err or type(err).__name__}") from None


class SshTarget:
    """An MTA host over SSH. Use as `async with SshTarget(endpoint) as t:`."""

    def __init__(self, endpoint: SshEndpoint):
        self.endpoint = endpoint
        self._conn: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None
        self._dirs: set[str] = set()  # directories known to exist (write_text skips makedirs)

    async def __aenter__(self) -> SshTarget:
        self._conn = await connect(self.endpoint)
        try:
            self._sftp = await self._conn.start_sftp_client()
        except BaseException:
            self._conn.close()
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._sftp is not None:
            self._sftp.exit()
        if self._conn is not None:
            self._conn.close()
            await self._conn.wait_closed()

    @property
    def sftp(self) -> asyncssh.SFTPClient:
        assert self._sftp is not None, "SshTarget used outside `async with`"
        return self._sftp

    def describe(self) -> str:
        return self.endpoint.describe()

    # --- Target protocol ---------------------------------------------------------------------------

    async def run(self, argv: Sequence[str]) -> CommandResult:
        assert self._conn is not None, "SshTarget used outside `async with`"
        command = shlex.join(argv)
        try:
            res = await asyncio.wait_for(self._conn.run(command, check=False), self.endpoint.command_timeout)
        except TimeoutError:
            return CommandResult(tuple(argv), 124, "", f"timed out after {self.endpoint.command_timeout:g}s")

        def text(v: object) -> str:
            return v.decode(errors="replace") if isinstance(v, bytes) else str(v or "")

        status = res.exit_status if res.exit_status is not None else 255
        return CommandResult(tuple(argv), status, text(res.stdout), text(res.stderr))

    async def read_text(self, path: str) -> str | None:
        path = safe_remote_path(path)
        try:
            async with self.sftp.open(path, "rb") as f:
                data = await f.read()
        except asyncssh.SFTPNoSuchFile:
            return None
        except asyncssh.SFTPFailure as err:  # a directory, or unreadable
            raise OSError(f"cannot read {path} on {self.endpoint.name}: {err.reason}") from None
        return data.decode() if isinstance(data, bytes) else str(data)

    async def write_text(self, path: str, text: str, mode: int = 0o644) -> None:
        path = safe_remote_path(path)
        parent = posixpath.dirname(path)
        if parent not in self._dirs:
            await self.sftp.makedirs(parent, exist_ok=True)
            self._dirs.add(parent)
        tmp = posixpath.join(parent, f".{posixpath.basename(path)}.email-engine-tmp")
        async with self.sftp.open(tmp, "wb", asyncssh.SFTPAttrs(permissions=mode)) as f:
            await f.write(text.encode())
        await self.sftp.chmod(tmp, mode)  # the umask applied at open
        await self.sftp.posix_rename(tmp, path)

    async def write_many(self, files: dict[str, str], parallel: int = 16) -> None:
        """write_text for many files, `parallel` SFTP requests in flight (one round trip each is slow)."""
        sem = asyncio.Semaphore(parallel)
        for parent in sorted({posixpath.dirname(safe_remote_path(p)) for p in files}):
            if parent not in self._dirs:
                await self.sftp.makedirs(parent, exist_ok=True)
                self._dirs.add(parent)

        async def one(path: str, text: str) -> None:
            async with sem:
                await self.write_text(path, text)

        await asyncio.gather(*(one(p, t) for p, t in files.items()))

    async def list_files(self, directory: str) -> list[str]:
        directory = safe_remote_path(directory)
        if not await self.sftp.exists(directory):
            return []
        out: list[str] = []

        async def walk(d: str, rel: str) -> None:
            for entry in await self.sftp.readdir(d):
                name = entry.filename if isinstance(entry.filename, str) else entry.filename.decode()
                if name.startswith("."):  # ".", "..", temp files; rendered names are never hidden
                    continue
                full, sub = posixpath.join(d, name), posixpath.join(rel, name) if rel else name
                kind = stat.S_IFMT(entry.attrs.permissions or 0)
                if kind == stat.S_IFDIR or (kind == stat.S_IFLNK and await self.sftp.isdir(full)):
                    await walk(full, sub)  # symlinks followed, like reading the file would
                else:
                    out.append(sub)

        await walk(directory, "")
        return sorted(out)

    async def remove(self, path: str) -> None:
        path = safe_remote_path(path)
        try:
            await self.sftp.remove(path)
        except asyncssh.SFTPNoSuchFile:
            pass

    # --- release switching -------------------------------------------------------------------------

    async def makedirs(self, path: str) -> None:
        await self.sftp.makedirs(safe_remote_path(path), exist_ok=True)

    async def readlink(self, path: str) -> str | None:
        """Target of a symlink, None if `path` is not a symlink (or does not exist)."""
        path = safe_remote_path(path)
        if not await self.sftp.islink(path):
            return None
        link = await self.sftp.readlink(path)
        return link.decode() if isinstance(link, bytes) else str(link)

    async def kind(self, path: str) -> str:
        """"link", "dir", "file" or "missing" (no symlink following)."""
        path = safe_remote_path(path)
        if await self.sftp.islink(path):
            return "link"
        if await self.sftp.isdir(path):
            return "dir"
        return "file" if await self.sftp.exists(path) else "missing"

    async def symlink_replace(self, link_target: str, path: str) -> None:
        """Point `path` at `link_target` atomically (new symlink beside it, then rename over it)."""
        path = safe_remote_path(path)
        if not link_target.startswith("/"):
            names.key_path("/" + link_target)
        tmp = posixpath.join(posixpath.dirname(path), f".{posixpath.basename(path)}.email-engine-link")
        try:
            await self.sftp.remove(tmp)
        except asyncssh.SFTPNoSuchFile:
            pass
        # OpenSSH's sftp-server swaps the symlink arguments (a long-standing quirk); asyncssh compensates
        # for OpenSSH servers itself, so (target, link) order is right here.
        await self.sftp.symlink(link_target, tmp)
        await self.sftp.posix_rename(tmp, path)

    async def try_mkdir(self, path: str) -> bool:
        """Create a directory; False if it already exists (an atomic test-and-set on the server)."""
        path = safe_remote_path(path)
        try:
            await self.sftp.mkdir(path)
        except asyncssh.SFTPFailure:
            if await self.sftp.isdir(path):
                return False
            raise
        return True

    async def age(self, path: str) -> float | None:
        """Seconds since `path` was last modified (server clock vs ours), None if it does not exist."""
        import time

        try:
            attrs = await self.sftp.stat(safe_remote_path(path))
        except asyncssh.SFTPNoSuchFile:
            return None
        return time.time() - float(attrs.mtime or 0)

    async def rename(self, src: str, dst: str) -> None:
        self._dirs.clear()
        await self.sftp.posix_rename(safe_remote_path(src), safe_remote_path(dst))

    async def rmtree(self, path: str) -> None:
        path = safe_remote_path(path)
        self._dirs.clear()
        if await self.sftp.islink(path):
            await self.sftp.remove(path)
        elif await self.sftp.exists(path):
            await self.sftp.rmtree(path, ignore_errors=True)

    async def list_dir(self, path: str) -> list[str]:
        path = safe_remote_path(path)
        if not await self.sftp.isdir(path):
            return []
        return sorted(n for n in (x if isinstance(x, str) else x.decode() for x in await self.sftp.listdir(path))
                      if n not in (".", ".."))
