"""SSH to an MTA host (asyncssh): host key checked against the configured known_hosts, key auth, SFTP.

`SshTarget` implements activities.mta.base.Target (run / read_text / write_text / list_files / remove)
plus the few file operations an atomic release switch needs (symlink, rename, readlink, rmtree).
Commands are run without a shell on our side; the argv is joined with shlex.join, so every argument
reaches the remote shell quoted. Paths are validated before use.

A host key that is not in known_hosts, or differs from it, is refused with HostKeyMismatch naming the
host and the fingerprint it presented; nothing is uploaded or run.

A dead peer must not hang a deploy: the connection sends keepalives (a silent host is dropped after
`keepalive_interval * keepalive_count_max` seconds), every SFTP request is bounded by `io_timeout` and
every command by `command_timeout`. A lost connection or an unanswered request raises SshConnectionLost
(retryable), so the deployer can tell "the host went away" from "a command failed".
"""

from __future__ import annotations

import asyncio
import posixpath
import shlex
import stat
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TypeVar

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


class SshConnectionLost(SshUnavailable):
    """The connection dropped, or the host stopped answering, in the middle of an operation (retryable)."""


T = TypeVar("T")


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
    #: Seconds one SFTP request (open, write, stat, rename, ...) may take.
    io_timeout: float = 60.0
    keepalive_interval: float = 10.0
    keepalive_count_max: int = 3

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
            io_timeout=s.ssh_io_timeout,
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
            keepalive_interval=ep.keepalive_interval, keepalive_count_max=ep.keepalive_count_max,
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


_LOST = (asyncssh.DisconnectError, asyncssh.ChannelOpenError, asyncssh.sftp.SFTPConnectionLost,
         asyncssh.sftp.SFTPNoConnection,
         ConnectionError, EOFError)


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
            self._sftp = await self._io(self._conn.start_sftp_client())
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
            try:
                await asyncio.wait_for(self._conn.wait_closed(), self.endpoint.io_timeout)
            except (TimeoutError, *_LOST):
                pass  # closing a connection that is already gone

    @property
    def sftp(self) -> asyncssh.SFTPClient:
        assert self._sftp is not None, "SshTarget used outside `async with`"
        return self._sftp

    def describe(self) -> str:
        return self.endpoint.describe()

    async def _io(self, aw: Awaitable[T], timeout: float | None = None) -> T:
        """One request to the host, bounded in time; a dropped or silent connection is SshConnectionLost."""
        limit = timeout or self.endpoint.io_timeout
        try:
            return await asyncio.wait_for(aw, limit)
        except TimeoutError:
            raise SshConnectionLost(f"{self.endpoint.name} ({self.endpoint.address}:{self.endpoint.port}) did "
                                    f"not answer within {limit:g}s") from None
        except _LOST as err:
            raise SshConnectionLost(f"connection to {self.endpoint.name} ({self.endpoint.address}:"
                                    f"{self.endpoint.port}) lost: {err or type(err).__name__}") from None

    # --- Target protocol ---------------------------------------------------------------------------

    async def run(self, argv: Sequence[str]) -> CommandResult:
        """Run a command; a non-zero exit or a command timeout is a result, a lost connection raises."""
        assert self._conn is not None, "SshTarget used outside `async with`"
        command = shlex.join(argv)
        try:
            res = await asyncio.wait_for(self._conn.run(command, check=False), self.endpoint.command_timeout)
        except TimeoutError:
            return CommandResult(tuple(argv), 124, "", f"timed out after {self.endpoint.command_timeout:g}s")
        except _LOST as err:
            raise SshConnectionLost(f"connection to {self.endpoint.name} lost while running "
                                    f"`{' '.join(argv)}`: {err or type(err).__name__}") from None

        def text(v: object) -> str:
            return v.decode(errors="replace") if isinstance(v, bytes) else str(v or "")

        if res.exit_status is None and res.exit_signal is None and self._conn.is_closed():
            raise SshConnectionLost(f"connection to {self.endpoint.name} lost while running `{' '.join(argv)}`")
        status = res.exit_status if res.exit_status is not None else 255
        return CommandResult(tuple(argv), status, text(res.stdout), text(res.stderr))

    async def read_bytes(self, path: str) -> bytes | None:
        path = safe_remote_path(path)

        async def read() -> bytes:
            async with self.sftp.open(path, "rb") as f:
                data = await f.read()
            return data if isinstance(data, bytes) else str(data).encode()

        try:
            return await self._io(read())
        except asyncssh.SFTPNoSuchFile:
            return None
        except asyncssh.SFTPFailure as err:  # a directory, or unreadable
            raise OSError(f"cannot read {path} on {self.endpoint.name}: {err.reason}") from None

    async def read_text(self, path: str) -> str | None:
        data = await self.read_bytes(path)
        return None if data is None else data.decode()

    async def write_bytes(self, path: str, data: bytes, mode: int = 0o644) -> None:
        """Write atomically (temp file with `mode` from the start, then rename over `path`)."""
        path = safe_remote_path(path)
        parent = posixpath.dirname(path)
        if parent not in self._dirs:
            await self._io(self.sftp.makedirs(parent, exist_ok=True))
            self._dirs.add(parent)
        tmp = posixpath.join(parent, f".{posixpath.basename(path)}.email-engine-tmp")

        async def write() -> None:
            async with self.sftp.open(tmp, "wb", asyncssh.SFTPAttrs(permissions=mode)) as f:
                await f.write(data)
            await self.sftp.chmod(tmp, mode)  # the umask applied at open
            await self.sftp.posix_rename(tmp, path)

        await self._io(write())

    async def write_text(self, path: str, text: str, mode: int = 0o644) -> None:
        await self.write_bytes(path, text.encode(), mode)

    async def write_many(self, files: dict[str, str], parallel: int = 16) -> None:
        """write_text for many files, `parallel` SFTP requests in flight (one round trip each is slow)."""
        sem = asyncio.Semaphore(parallel)
        for parent in sorted({posixpath.dirname(safe_remote_path(p)) for p in files}):
            if parent not in self._dirs:
                await self._io(self.sftp.makedirs(parent, exist_ok=True))
                self._dirs.add(parent)

        async def one(path: str, text: str) -> None:
            async with sem:
                await self.write_text(path, text)

        await asyncio.gather(*(one(p, t) for p, t in files.items()))

    async def list_files(self, directory: str) -> list[str]:
        directory = safe_remote_path(directory)
        if not await self._io(self.sftp.exists(directory)):
            return []
        out: list[str] = []

        async def walk(d: str, rel: str) -> None:
            for entry in await self._io(self.sftp.readdir(d)):
                name = entry.filename if isinstance(entry.filename, str) else entry.filename.decode()
                if name.startswith("."):  # ".", "..", temp files; rendered names are never hidden
                    continue
                full, sub = posixpath.join(d, name), posixpath.join(rel, name) if rel else name
                kind = stat.S_IFMT(entry.attrs.permissions or 0)
                if kind == stat.S_IFDIR or (kind == stat.S_IFLNK and await self._io(self.sftp.isdir(full))):
                    await walk(full, sub)  # symlinks followed, like reading the file would
                else:
                    out.append(sub)

        await walk(directory, "")
        return sorted(out)

    async def remove(self, path: str) -> None:
        path = safe_remote_path(path)
        try:
            await self._io(self.sftp.remove(path))
        except asyncssh.SFTPNoSuchFile:
            pass

    # --- release switching -------------------------------------------------------------------------

    async def makedirs(self, path: str) -> None:
        await self._io(self.sftp.makedirs(safe_remote_path(path), exist_ok=True))

    async def readlink(self, path: str) -> str | None:
        """Target of a symlink, None if `path` is not a symlink (or does not exist)."""
        path = safe_remote_path(path)
        if not await self._io(self.sftp.islink(path)):
            return None
        link = await self._io(self.sftp.readlink(path))
        return link.decode() if isinstance(link, bytes) else str(link)

    async def kind(self, path: str) -> str:
        """"link", "dir", "file" or "missing" (no symlink following)."""
        path = safe_remote_path(path)
        if await self._io(self.sftp.islink(path)):
            return "link"
        if await self._io(self.sftp.isdir(path)):
            return "dir"
        return "file" if await self._io(self.sftp.exists(path)) else "missing"

    async def symlink_replace(self, link_target: str, path: str) -> None:
        """Point `path` at `link_target` atomically (new symlink beside it, then rename over it)."""
        path = safe_remote_path(path)
        if not link_target.startswith("/"):
            names.key_path("/" + link_target)
        tmp = posixpath.join(posixpath.dirname(path), f".{posixpath.basename(path)}.email-engine-link")
        try:
            await self._io(self.sftp.remove(tmp))
        except asyncssh.SFTPNoSuchFile:
            pass
        # OpenSSH's sftp-server swaps the symlink arguments (a long-standing quirk); asyncssh compensates
        # for OpenSSH servers itself, so (target, link) order is right here.
        await self._io(self.sftp.symlink(link_target, tmp))
        await self._io(self.sftp.posix_rename(tmp, path))

    async def try_mkdir(self, path: str, mode: int = 0o755) -> bool:
        """Create a directory; False if it already exists (an atomic test-and-set on the server)."""
        path = safe_remote_path(path)
        try:
            await self._io(self.sftp.mkdir(path, asyncssh.SFTPAttrs(permissions=mode)))
        except asyncssh.SFTPFailure:
            if await self._io(self.sftp.isdir(path)):
                return False
            raise
        return True

    async def try_rmdir(self, path: str) -> bool:
        """Remove an EMPTY directory (atomic on the server); False if it is missing or not empty."""
        try:
            await self._io(self.sftp.rmdir(safe_remote_path(path)))
        except (asyncssh.SFTPNoSuchFile, asyncssh.SFTPFailure):
            return False
        return True

    async def try_rename(self, src: str, dst: str) -> bool:
        """Rename `src` to a name that must not exist (SFTP v3 rename); False if `src` is gone or `dst` exists."""
        self._dirs.clear()
        try:
            await self._io(self.sftp.rename(safe_remote_path(src), safe_remote_path(dst)))
        except (asyncssh.SFTPNoSuchFile, asyncssh.SFTPFailure):
            return False
        return True

    async def try_remove(self, path: str) -> bool:
        """Remove a file; False if it did not exist (so the caller learns whether it was still there)."""
        try:
            await self._io(self.sftp.remove(safe_remote_path(path)))
        except asyncssh.SFTPNoSuchFile:
            return False
        return True

    async def touch_existing(self, path: str, data: bytes) -> bool:
        """Rewrite an EXISTING file in place (its mtime becomes the server's now); False if it is gone.
        Never creates it, so a lock token that was broken is not brought back."""

        async def rewrite() -> None:
            async with self.sftp.open(safe_remote_path(path), asyncssh.FXF_WRITE, encoding=None) as f:
                await f.write(data, 0)

        try:
            await self._io(rewrite())
        except asyncssh.SFTPNoSuchFile:
            return False
        return True

    async def mtime(self, path: str) -> float | None:
        """Modification time of `path` by the SERVER's clock (no symlink following); None if missing."""
        try:
            attrs = await self._io(self.sftp.lstat(safe_remote_path(path)))
        except asyncssh.SFTPNoSuchFile:
            return None
        return float(attrs.mtime or 0)

    async def server_time(self, probe: str) -> float:
        """The server's clock: write a probe file and read its modification time (SFTP only, no shell)."""
        await self.write_bytes(probe, b"")
        return await self.mtime(probe) or 0.0

    async def file_status(self, path: str) -> tuple[int, int, int] | None:
        """(permission bits, uid, gid) of `path`; None if missing."""
        try:
            attrs = await self._io(self.sftp.lstat(safe_remote_path(path)))
        except asyncssh.SFTPNoSuchFile:
            return None
        return (attrs.permissions or 0) & 0o7777, attrs.uid or 0, attrs.gid or 0

    async def dir_status(self, path: str) -> dict[str, tuple[int, int, int, int, int]]:
        """{file name: (permission bits, uid, gid, size, mtime)} of the regular files in a directory, from
        one listing (a few round trips for thousands of files, not one stat each); {} if it does not exist."""
        path = safe_remote_path(path)
        try:
            entries = await self._io(self.sftp.readdir(path))
        except asyncssh.SFTPNoSuchFile:
            return {}
        out = {}
        for e in entries:
            name = e.filename if isinstance(e.filename, str) else e.filename.decode()
            if not name.startswith(".") and stat.S_ISREG(e.attrs.permissions or 0):
                a = e.attrs
                out[name] = ((a.permissions or 0) & 0o7777, a.uid or 0, a.gid or 0, a.size or 0, int(a.mtime or 0))
        return out

    async def hardlink(self, existing: str, new: str) -> bool:
        """A hard link `new` to `existing` (OpenSSH's hardlink@openssh.com); False if the server cannot."""
        try:
            await self._io(self.sftp.link(safe_remote_path(existing), safe_remote_path(new)))
        except (asyncssh.SFTPOpUnsupported, asyncssh.SFTPFailure, asyncssh.SFTPNoSuchFile):
            return False
        return True

    async def chown(self, path: str, uid: int, gid: int) -> None:
        await self._io(self.sftp.chown(safe_remote_path(path), uid, gid))

    async def chmod(self, path: str, mode: int) -> None:
        await self._io(self.sftp.chmod(safe_remote_path(path), mode))

    async def rename(self, src: str, dst: str) -> None:
        self._dirs.clear()
        await self._io(self.sftp.posix_rename(safe_remote_path(src), safe_remote_path(dst)))

    async def rmtree(self, path: str) -> None:
        path = safe_remote_path(path)
        self._dirs.clear()
        if await self._io(self.sftp.islink(path)):
            await self._io(self.sftp.remove(path))
        elif await self._io(self.sftp.exists(path)):
            await self._io(self.sftp.rmtree(path, ignore_errors=True), timeout=self.endpoint.io_timeout * 4)

    async def list_dir(self, path: str) -> list[str]:
        path = safe_remote_path(path)
        if not await self._io(self.sftp.isdir(path)):
            return []
        return sorted(n for n in (x if isinstance(x, str) else x.decode()
                                  for x in await self._io(self.sftp.listdir(path)))
                      if n not in (".", ".."))
