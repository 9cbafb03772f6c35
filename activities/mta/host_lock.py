"""The deploy lock on an MTA host (`<config_dir>/.email-engine/lock/`), with an owner and the server's clock.

MtaDeployWorkflow already serializes deploys per host; this lock also keeps out a concurrent
`mta deploy --direct` or a second engine. Only atomic server-side operations are used:

* acquire: `mkdir lock` (fails if it exists), then create the owner's token file `lock/<owner id>`
  (the owner id is a hash of the owner string; the file holds the owner's description);
* refresh: the holder rewrites its token file in place (never re-creating it), so the file's
  modification time, set by the SERVER's clock, says when the holder was last alive;
* staleness: a lock is stale when its newest token is older than `stale_after` by the server's
  clock (read by writing a probe file and reading its mtime), never by comparing with our own clock;
  a token-less lock (left by an older engine, or a holder that died between mkdir and its token)
  is stale after `legacy_stale_after`;
* breaking a stale lock: rename `lock` to `lock.broken-<our id>` (only one breaker can win), check the
  renamed directory holds exactly the stale tokens that were judged (else it was a fresh lock taken
  meanwhile: it is put back), then remove it;
* release: remove OUR token file first; only if it was still there, `rmdir lock` (which fails on a
  non-empty directory). A deployer whose lock was broken finds its token gone and touches nothing,
  so it never deletes its successor's lock.

The same owner string acquiring again (a retried activity attempt) reclaims its own lock at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import posixpath
import socket
from collections.abc import AsyncIterator, Callable
from typing import Protocol

LOCK_STALE_AFTER = 180.0  # seconds without a refresh by the server's clock (the holder refreshes every 30 s)
LEGACY_STALE_AFTER = 900.0  # a lock without a token cannot be refreshed: wait as long as a deploy may take
REFRESH_EVERY = 30.0


class DeployBusy(Exception):
    """Another deploy holds the host's deploy lock (retryable)."""


class LockLost(DeployBusy):
    """Our lock was broken by another deployer (we stalled past the stale limit); stop before switching."""


class LockTarget(Protocol):
    async def makedirs(self, path: str) -> None: ...
    async def try_mkdir(self, path: str, mode: int = 0o755) -> bool: ...
    async def try_rmdir(self, path: str) -> bool: ...
    async def try_rename(self, src: str, dst: str) -> bool: ...
    async def try_remove(self, path: str) -> bool: ...
    async def touch_existing(self, path: str, data: bytes) -> bool: ...
    async def write_bytes(self, path: str, data: bytes, mode: int = 0o644) -> None: ...
    async def read_text(self, path: str) -> str | None: ...
    async def mtime(self, path: str) -> float | None: ...
    async def server_time(self, probe: str) -> float: ...
    async def list_dir(self, path: str) -> list[str]: ...
    async def rmtree(self, path: str) -> None: ...
    def describe(self) -> str: ...


def owner_id(owner: str) -> str:
    """A file-name-safe id of an owner string (stable: the same owner gets the same id)."""
    return "owner-" + hashlib.sha256(owner.encode()).hexdigest()[:32]


def describe_owner(owner: str) -> bytes:
    return f"{owner} (pid {os.getpid()} on {socket.gethostname()})\n".encode()


class HostLock:
    def __init__(self, target: LockTarget, state_dir: str, owner: str, *,
                 stale_after: float = LOCK_STALE_AFTER, legacy_stale_after: float = LEGACY_STALE_AFTER):
        self.target, self.state_dir, self.owner = target, state_dir, owner
        self.path = posixpath.join(state_dir, "lock")
        self.id = owner_id(owner)
        self.token = posixpath.join(self.path, self.id)
        self.stale_after, self.legacy_stale_after = stale_after, legacy_stale_after
        self.notes: list[str] = []  # what happened to other deployers' locks (for the deploy report)

    async def acquire(self, wait: float = 60.0) -> None:
        """Take the lock, waiting up to `wait` seconds for another holder; DeployBusy after that."""
        t = self.target
        await t.makedirs(self.state_dir)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            if await t.try_mkdir(self.path, 0o700):
                await t.write_bytes(self.token, describe_owner(self.owner), 0o600)
                return
            tokens = [n for n in await t.list_dir(self.path) if n.startswith("owner-")]
            if self.id in tokens and await t.touch_existing(self.token, describe_owner(self.owner)):
                self.notes.append("reclaimed our own lock from an earlier attempt")
                return
            now = await t.server_time(posixpath.join(self.state_dir, "clock"))
            stamps = [m for m in [await t.mtime(posixpath.join(self.path, n)) for n in tokens] if m is not None]
            last = max(stamps) if stamps else await t.mtime(self.path)
            if last is None:  # released meanwhile
                continue
            age, limit = now - last, (self.stale_after if stamps else self.legacy_stale_after)
            if age > limit:
                await self._break(tokens, age)
                continue
            if loop.time() >= deadline:
                holder = await self._holder(tokens)
                raise DeployBusy(f"another deploy holds {self.path} on {t.describe()} ({holder}, last alive "
                                 f"{age:.0f}s ago by the host's clock; broken after {limit:.0f}s without a refresh)")
            await asyncio.sleep(1.0)

    async def _holder(self, tokens: list[str]) -> str:
        for n in tokens:
            text = await self.target.read_text(posixpath.join(self.path, n))
            if text:
                return "held by " + " ".join(text.split())[:200]
        return "no owner recorded"

    async def _break(self, judged: list[str], age: float) -> None:
        t = self.target
        broken = f"{self.path}.broken-{self.id}"
        await t.rmtree(broken)
        holder = await self._holder(judged)
        if not await t.try_rename(self.path, broken):
            return  # someone else broke or released it first
        found = [n for n in await t.list_dir(broken)]
        if set(found) <= set(judged):
            await t.rmtree(broken)
            self.notes.append(f"broke a stale lock ({holder}, silent for {age:.0f}s by the host's clock)")
        elif not await t.try_rename(broken, self.path):  # a fresh lock was taken meanwhile: give it back
            await t.rmtree(broken)

    async def still_held(self) -> bool:
        return await self.target.touch_existing(self.token, describe_owner(self.owner))

    async def release(self) -> bool:
        """Remove the lock if it is still ours; False (nothing touched) if it was broken meanwhile."""
        if not await self.target.try_remove(self.token):
            return False
        await self.target.try_rmdir(self.path)
        return True

    @contextlib.asynccontextmanager
    async def kept_fresh(self, every: float = REFRESH_EVERY,
                         tick: Callable[[], None] | None = None) -> AsyncIterator[None]:
        """Refresh the token every `every` seconds (and call `tick`, e.g. an activity heartbeat) while held."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(every)
                if tick is not None:
                    tick()
                with contextlib.suppress(Exception):  # a lost connection surfaces in the deploy itself
                    await self.still_held()

        task = asyncio.create_task(loop())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
