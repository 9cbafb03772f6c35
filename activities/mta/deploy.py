"""Deploying a rendered MTA config: atomic release switch, validate, reload, verify, roll back.

Layout on the target (config_dir is the host's, e.g. /etc/pmta):

    <config_dir>/email-engine            -> .email-engine/releases/<release>   (symlink, swapped atomically)
    <config_dir>/.email-engine/releases/<stamp>-<digest12>/...               (one dir per deployed render)
    <config_dir>/<merged file>           operator's main file (PowerMTA `config`); the engine owns a block

A deploy: read back what is deployed and compare with the render (equal: no-op, nothing uploaded,
no reload); upload the files into a staging dir and publish it as a new release (rename); swap the
`email-engine` symlink to it (rename over the old link: atomic) and write the merged files (temp file
+ rename); run the backend's validation (`pmta test config`), reload (`pmta reload`) and verify
commands; read back and compare. On any failure: point the symlink back at the previous release,
restore the merged files' previous content, reload again, and report what failed.
`.email-engine/loaded` holds the digest last reloaded and verified: it is removed before a switch, so
a deploy interrupted between switch and reload is redone (not taken for a no-op) by the retry.

The activity `deploy_mta_host` renders from the database when it executes (never a stale render) and
deploys: over SSH for an enabled host; a disabled host is only rendered to <var_dir>/mta/<host>/
(an MTA host is contacted only once an operator enables it).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import difflib
import hashlib
import json
import logging
import posixpath
import shutil
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.mta.base import DKIM_SUBDIR, MANAGED_DIR, MtaBackendImpl, RenderedConfig, Target, backend_for
from activities.mta.host_lock import DeployBusy as DeployBusy  # re-exported: callers catch it from here
from activities.mta.host_lock import HostLock, LockLost, LockTarget
from activities.mta.ssh import (
    HostKeyMismatch,
    SshConnectionLost,
    SshEndpoint,
    SshLoginRefused,
    SshTarget,
    SshUnavailable,
    safe_remote_path,
)
from models import firewall as fw
from models import names
from models.deploys import (
    HostDeployRequest,
    HostDeployResult,
    SwitchJournal,
    UnsafePath,
    relative_path,
    release_name,
)
from models.settings import get_settings
from models.snapshot import FleetSnapshot, MtaHostView

STATE_DIR = ".email-engine"
log = logging.getLogger(__name__)


class DeployConfigError(Exception):
    """The target is in a state the deployer will not touch (never retried)."""


class ReleaseTarget(LockTarget, Target, Protocol):
    async def read_bytes(self, path: str) -> bytes | None: ...
    async def file_status(self, path: str) -> tuple[int, int, int] | None: ...
    async def dir_status(self, path: str) -> dict[str, tuple[int, int, int, int, int]]: ...
    async def hardlink(self, existing: str, new: str) -> bool: ...
    async def chown(self, path: str, uid: int, gid: int) -> None: ...
    async def chmod(self, path: str, mode: int) -> None: ...
    async def readlink(self, path: str) -> str | None: ...
    async def kind(self, path: str) -> str: ...
    async def symlink_replace(self, link_target: str, path: str) -> None: ...
    async def rename(self, src: str, dst: str) -> None: ...


@dataclass
class DeployReport:
    ok: bool
    changed: bool
    digest: str
    message: str
    target: str
    rolled_back: bool = False
    release: str = ""
    steps: list[str] = field(default_factory=list)


def _stamp(now: dt.datetime) -> str:
    return now.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def drift(expected: Mapping[str, str], deployed: Mapping[str, str]) -> str:
    """Unified diff deployed -> rendered, file by file ('' when equal)."""
    out: list[str] = []
    for path in sorted(set(expected) | set(deployed)):
        old, new = deployed.get(path), expected.get(path)
        if old == new:
            continue
        out += difflib.unified_diff(
            (old or "").splitlines(keepends=True), (new or "").splitlines(keepends=True),
            fromfile=f"deployed/{path}" if old is not None else "/dev/null",
            tofile=f"rendered/{path}" if new is not None else "/dev/null")
        if out and not out[-1].endswith("\n"):
            out[-1] += "\n"
    return "".join(out)


def _short(text: str, limit: int = 400) -> str:
    """Command output kept in results (workflow state, history rows) stays small."""
    text = " ".join(text.split()) if len(text) > limit else text
    return text if len(text) <= limit else text[:limit - 15] + f" ... [{len(text)} chars]"


def _summary(expected: Mapping[str, str], deployed: Mapping[str, str]) -> str:
    changed = sorted(p for p in set(expected) | set(deployed) if expected.get(p) != deployed.get(p))
    return ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")


class SwitchInterrupted(Exception):
    """The connection to the host was lost after the release switch, before the deploy was verified or
    rolled back. The switch journal stays on the host: reconnect and call `repair_interrupted`, or let
    the next deploy restore the previous release first (it always does before anything else)."""

    def __init__(self, message: str, owner: str):
        super().__init__(message)
        self.owner = owner


class DkimKeyChangeRefused(DeployConfigError):
    """A deploy would replace a DKIM key on the host with a different key (never retried)."""


class FirewallRefused(DeployConfigError):
    """The host firewall ruleset would cut the deploy's own SSH session, or the session cannot be
    checked: refused before anything is written (never retried)."""


FIREWALL_RULESET = f"{MANAGED_DIR}/{fw.RULESET_FILE}"
FIREWALL_REMOVE = "firewall-remove.nft"  # in STATE_DIR: loaded to take the table away on a rollback


async def check_session(target: ReleaseTarget, rendered: RenderedConfig) -> list[str]:
    """Refuse a ruleset that would drop this very SSH session or the next deploy's connection, judged
    with the nftables model against the session as the host sees it ($SSH_CONNECTION). Read-only: runs
    before the lock is taken, so a refusal changes nothing on the host. Returns the steps."""
    text = rendered.files.get(FIREWALL_RULESET)
    if text is None:
        raise FirewallRefused(f"the release has no {FIREWALL_RULESET}; nothing was changed")
    res = await target.run(["printenv", "SSH_CONNECTION"])
    if not res.ok or not res.stdout.strip():
        raise FirewallRefused(f"cannot tell this deploy's SSH session on {target.describe()} (SSH_CONNECTION "
                              f"is not set: {_short(res.describe())}); the firewall ruleset is not applied "
                              "without that check. Nothing was changed.")
    try:
        session = fw.SshSession.parse(res.stdout)
    except fw.FirewallError as err:
        raise FirewallRefused(f"{err}; the firewall ruleset is not applied. Nothing was changed.") from None
    problems = fw.session_problems(text, session)
    if problems:
        raise FirewallRefused(
            f"refusing the firewall ruleset for {target.describe()}: it would lock this deploy out: "
            + "; ".join(problems) + f". Nothing was changed. Add the address the engine connects from "
            f"({session.client}) to firewall.engine_addresses, or connect from a listed one.")
    return [f"firewall: this session ({session.client} -> {session.server}:{session.server_port}) and a new "
            "one from the same address stay accepted (nftables model)"]


@dataclass(frozen=True)
class DkimKeys:
    """DKIM private keys shipped in the release (`email-engine/dkim/<domain>.<selector>.key`).

    `files` holds secrets: never printed, logged or put in a result (repr shows names only)."""

    files: Mapping[str, bytes] = field(default_factory=dict, repr=False)
    #: file name -> sha256 fingerprint of the public key (safe to show).
    fingerprints: Mapping[str, str] = field(default_factory=dict)
    #: User on the MTA host that owns the key files (None: the SSH login user).
    owner: str | None = None
    #: Operator's explicit go-ahead to replace a deployed key by a different one (`--replace-dkim-keys`).
    replace: bool = False


async def deploy_release(target: ReleaseTarget, backend: MtaBackendImpl, rendered: RenderedConfig, *,
                         keep_releases: int = 5, now: Callable[[], dt.datetime] | None = None,
                         lock_wait: float = 60.0, owner: str | None = None, keys: DkimKeys | None = None,
                         heartbeat: Callable[[], None] | None = None, firewall: bool = False,
                         probe: Callable[[], Awaitable[None]] | None = None) -> DeployReport:
    """Deploy `rendered` (and `keys`) to `target` (see the module docstring). Never raises for a failed
    validation, reload or verification: those roll back and return ok=False. Raises for unusable input
    or target, DkimKeyChangeRefused before anything is written, and SwitchInterrupted when the
    connection dropped after the switch (the journal on the host says how to undo it).

    Deploys to one host are serialized by MtaDeployWorkflow; the host lock (activities/mta/host_lock.py,
    owned by `owner`) also keeps out a concurrent `mta deploy --direct` or a second engine.

    `firewall`: the release carries the host's nftables ruleset (FIREWALL_RULESET). Before anything is
    written, the ruleset is judged against this SSH session (`check_session`: FirewallRefused); the
    published release's ruleset is checked with `nft -c -f` before the switch; after the MTA reload it is
    applied with `nft -f`; then `probe` (a fresh SSH connection) must succeed, or everything is rolled back
    over the open session. A rollback loads the previous release's ruleset again (or removes the table)."""
    config_dir = safe_remote_path(rendered.config_dir)
    owner = owner or f"deployer-{uuid.uuid4()}"
    session_steps = await check_session(target, rendered) if firewall else []
    lock = HostLock(target, posixpath.join(config_dir, STATE_DIR), owner)
    await lock.acquire(lock_wait)
    try:
        async with lock.kept_fresh(tick=heartbeat):
            report = await _deploy_locked(target, backend, rendered, lock, keep_releases=keep_releases, now=now,
                                          keys=keys or DkimKeys(), firewall=firewall, probe=probe)
            report.steps[:0] = [*lock.notes, *session_steps]
            return report
    finally:
        with contextlib.suppress(SshConnectionLost):
            if not await lock.release():
                log.warning("deploy lock on %s was broken by another deployer while held by %s; "
                            "left its successor's lock alone", target.describe(), owner)


JOURNAL = "switch"
BACKUP_DIR = "backup"
KEY_PARALLEL = 64  # SFTP requests in flight for key files (one round trip each is slow)


async def _restore(target: ReleaseTarget, backend: MtaBackendImpl, config_dir: str, journal: SwitchJournal,
                   steps: list[str]) -> list[str]:
    """Put back what the journal recorded (symlink, merged files) and reload. Returns reload problems."""
    managed = posixpath.join(config_dir, MANAGED_DIR)
    state = posixpath.join(config_dir, STATE_DIR)
    if journal.previous is not None:
        await target.symlink_replace(journal.previous, managed)
    else:
        await target.remove(managed)
    for m, present in sorted(journal.merged_present.items()):
        if m not in backend.merged_files:
            raise UnsafePath(f"switch journal names {m!r}, which is not one of the backend's merged files")
        path = posixpath.join(config_dir, m)
        if present:
            old = await target.read_text(posixpath.join(state, BACKUP_DIR, m))
            if old is None:
                raise DeployConfigError(f"the backup of {m} for the interrupted switch is missing on "
                                        f"{target.describe()}: restore {path} by hand")
            await target.write_text(path, old)
        else:
            await target.remove(path)
    previous = posixpath.basename(journal.previous) if journal.previous else None
    steps.append(f"restored {'release ' + previous if previous else 'no managed config'}"
                 f" and {', '.join(journal.merged_present) or 'no merged files'}")
    problems = []
    for argv in backend.reload_commands(config_dir):
        res = await target.run(argv)
        steps.append(f"reload after rollback: {_short(res.describe())}")
        if not res.ok:
            problems.append(_short(res.describe()))
    if journal.firewall:
        problems += await _restore_firewall(target, config_dir, journal, steps)
    return problems


async def _restore_firewall(target: ReleaseTarget, config_dir: str, journal: SwitchJournal,
                            steps: list[str]) -> list[str]:
    """The restored release's ruleset loaded again (`nft -f` replaces the engine's table as a whole), or
    the table removed when that release had none. Harmless when the new one was never applied."""
    ruleset = posixpath.join(config_dir, FIREWALL_RULESET)
    if journal.previous is not None and await target.file_status(ruleset) is not None:
        argv, what = ["nft", "-f", ruleset], "previous ruleset loaded again"
    else:
        remove = posixpath.join(config_dir, STATE_DIR, FIREWALL_REMOVE)
        await target.write_text(remove, fw.REMOVE_TABLE)
        argv, what = ["nft", "-f", remove], f"table {fw.FAMILY} {fw.TABLE} removed (the previous release had none)"
    res = await target.run(argv)
    steps.append(f"firewall after rollback: {what if res.ok else 'FAILED ' + _short(res.describe())}")
    return [] if res.ok else [_short(res.describe())]


async def _finish_journal(target: ReleaseTarget, config_dir: str) -> None:
    state = posixpath.join(config_dir, STATE_DIR)
    await target.remove(posixpath.join(state, JOURNAL))
    await target.rmtree(posixpath.join(state, BACKUP_DIR))


async def _repair_leftover(target: ReleaseTarget, backend: MtaBackendImpl, config_dir: str,
                           steps: list[str]) -> bool:
    """Undo a switch a deployer left unfinished (journal on the host). True if there was one."""
    state = posixpath.join(config_dir, STATE_DIR)
    text = await target.read_text(posixpath.join(state, JOURNAL))
    if text is None:
        return False
    journal = SwitchJournal.loads(text)
    steps.append(f"found an interrupted switch to release {journal.release} ({journal.owner}): "
                 "restoring the previous release first")
    problems = await _restore(target, backend, config_dir, journal, steps)
    if not problems and journal.loaded_before is not None:
        await target.write_text(posixpath.join(state, "loaded"), journal.loaded_before)
    await _finish_journal(target, config_dir)
    if problems:
        steps.append("WARNING: reloading the restored release failed: " + "; ".join(problems))
    return True


async def repair_interrupted(target: ReleaseTarget, backend: MtaBackendImpl, config_dir: str, owner: str,
                             lock_wait: float = 60.0) -> list[str]:
    """After SwitchInterrupted: reconnected, take the lock (ours: reclaimed) and restore the previous
    release from the journal. Returns the steps taken."""
    config_dir = safe_remote_path(config_dir)
    lock = HostLock(target, posixpath.join(config_dir, STATE_DIR), owner)
    await lock.acquire(lock_wait)
    steps = list(lock.notes)
    try:
        if not await _repair_leftover(target, backend, config_dir, steps):
            steps.append("no interrupted switch left on the host")
    finally:
        await lock.release()
    return steps


KEY_MANIFEST = ".manifest"  # in each release's dkim/: {name: [sha256 of the file, size, mtime]} (no key material)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def _deployed_keys(target: ReleaseTarget, config_dir: str, keys: DkimKeys,
                         uid_gid: tuple[int, int] | None) -> dict[str, str]:
    """Verdict per key file on the host: "same" (our bytes, mode 0600, right owner), "redo" (the same
    key in other bytes or with other attributes), "different" (another key), "stale" (not ours any
    more). A file whose size and mtime match the release's manifest is taken at the manifest's hash
    (thousands of keys need not be read back on every deploy); any other is read and compared by
    content and public key. Never shown."""
    from activities.dkim_keys import public_fingerprint

    directory = posixpath.join(config_dir, MANAGED_DIR, DKIM_SUBDIR)
    on_host = await target.dir_status(directory)
    manifest: dict[str, list[object]] = {}
    if on_host:
        with contextlib.suppress(ValueError, TypeError):
            manifest = dict(json.loads(await target.read_text(posixpath.join(directory, KEY_MANIFEST)) or "{}"))
    sem = asyncio.Semaphore(KEY_PARALLEL)

    async def one(name: str) -> str:
        mode, uid, gid, size, mtime = on_host[name]
        attrs_ok = mode == 0o600 and (uid_gid is None or (uid, gid) == uid_gid)
        entry = manifest.get(name)
        if isinstance(entry, list) and entry[1:] == [size, mtime] and entry[0] == _sha256(keys.files[name]):
            return "same" if attrs_ok else "redo"
        async with sem:
            data = await target.read_bytes(posixpath.join(directory, name))
        if data == keys.files[name]:
            return "same" if attrs_ok else "redo"
        same_key = data is not None and public_fingerprint(data) == keys.fingerprints[name]
        return "redo" if same_key else "different"

    common = sorted(set(on_host) & set(keys.files))
    verdicts = dict(zip(common, await asyncio.gather(*(one(n) for n in common)), strict=True))
    verdicts.update(dict.fromkeys(set(on_host) - set(keys.files), "stale"))
    return verdicts


async def _owner_ids(target: ReleaseTarget, user: str) -> tuple[int, int]:
    ids = []
    for flag in ("-u", "-g"):
        res = await target.run(["id", flag, "--", user])
        if not res.ok or not res.stdout.strip().isdigit():
            raise DeployConfigError(f"MTA user {user!r} (mta_user) does not exist on {target.describe()}: "
                                    f"{_short(res.describe())}")
        ids.append(int(res.stdout.strip()))
    return ids[0], ids[1]


async def _stage_keys(target: ReleaseTarget, staging: str, config_dir: str, keys: DkimKeys,
                      uid_gid: tuple[int, int] | None, unchanged: set[str]) -> None:
    """Keys into the staging dir: created 0600 (never readable by others, not even for a moment),
    chowned to the MTA's user; the directory 0700. A key already deployed as is (bytes, mode, owner)
    is hard-linked from the current release instead of uploaded again."""
    directory = posixpath.join(staging, DKIM_SUBDIR)
    current = posixpath.join(config_dir, MANAGED_DIR, DKIM_SUBDIR)
    await target.makedirs(directory)
    await target.chmod(directory, 0o700)
    sem = asyncio.Semaphore(KEY_PARALLEL)

    async def one(name: str, data: bytes) -> None:
        path = posixpath.join(directory, relative_path(name))
        async with sem:
            if name in unchanged and await target.hardlink(posixpath.join(current, name), path):
                return
            await target.write_bytes(path, data, 0o600)
            if uid_gid is not None:
                await target.chown(path, *uid_gid)

    await asyncio.gather(*(one(n, d) for n, d in sorted(keys.files.items())))
    listing = await target.dir_status(directory)
    manifest = {n: [_sha256(d), listing[n][3], listing[n][4]] for n, d in sorted(keys.files.items())}
    await target.write_bytes(posixpath.join(directory, KEY_MANIFEST), json.dumps(manifest).encode(), 0o600)
    if uid_gid is not None:
        await target.chown(directory, *uid_gid)


async def _deploy_locked(target: ReleaseTarget, backend: MtaBackendImpl, rendered: RenderedConfig,
                         lock: HostLock, *, keep_releases: int, now: Callable[[], dt.datetime] | None,
                         keys: DkimKeys, firewall: bool = False,
                         probe: Callable[[], Awaitable[None]] | None = None) -> DeployReport:
    config_dir = safe_remote_path(rendered.config_dir)
    for path in rendered.files:
        relative_path(path)
    for merged in backend.merged_files:
        relative_path(merged)
    for name in keys.files:
        relative_path(name)
    managed = posixpath.join(config_dir, MANAGED_DIR)
    state = posixpath.join(config_dir, STATE_DIR)
    releases = posixpath.join(state, "releases")
    report = DeployReport(ok=False, changed=False, digest=rendered.digest, message="", target=target.describe())
    steps = report.steps
    await _repair_leftover(target, backend, config_dir, steps)

    uid_gid = await _owner_ids(target, keys.owner) if keys.owner and keys.files else None
    verdicts = await _deployed_keys(target, config_dir, keys, uid_gid)
    changed_keys = sorted(n for n, v in verdicts.items() if v == "different")
    unchanged_keys = {n for n, v in verdicts.items() if v == "same"}
    keys_in_place = unchanged_keys == set(keys.files) and len(verdicts) == len(keys.files)
    if changed_keys and not keys.replace:
        raise DkimKeyChangeRefused(
            f"refusing to replace the DKIM key{'s' if len(changed_keys) > 1 else ''} "
            f"{', '.join(changed_keys)} on {target.describe()}: the engine's key differs from the deployed one "
            f"(new public key {', '.join(keys.fingerprints[n] for n in changed_keys)}); mail signed with the "
            "old key fails DKIM until DNS publishes the new one. Nothing was changed. If the key change is "
            "intended, deploy with `email-engine mta deploy --replace-dkim-keys`.")
    expected = backend.expected_read_back(rendered)
    before = await backend.read_back(target, config_dir)
    # `loaded` names the digest the MTA was last reloaded with; it is removed before a switch and written
    # after a verified reload, so a deployer that died between the two never leaves a "no-op" behind.
    loaded_path = posixpath.join(state, "loaded")
    loaded_before = await target.read_text(loaded_path)
    if before == expected and keys_in_place and (loaded_before or "").split()[-1:] == [rendered.digest]:
        report.ok, report.message = True, f"unchanged: {target.describe()} already runs digest {rendered.digest[:12]}"
        steps.append("read back: identical to the render and loaded; nothing to do")
        return report
    steps.append(f"read back: differs in {_summary(expected, before)}" if before != expected
                 else "read back: DKIM keys differ from the engine's" if not keys_in_place
                 else "read back: files match the render but were never confirmed loaded")
    if changed_keys:
        steps.append(f"replacing DKIM keys {', '.join(changed_keys)} (operator flag --replace-dkim-keys)")

    existing = {m: await target.read_text(posixpath.join(config_dir, m)) for m in backend.merged_files}
    new_merged = backend.materialize(rendered, existing)
    for m in new_merged:
        if m not in backend.merged_files:
            raise UnsafePath(f"backend materialized {m!r}, which is not one of its merged files")

    kind = await target.kind(managed)
    stamp = _stamp((now or (lambda: dt.datetime.now(dt.UTC)))())
    await target.makedirs(releases)
    previous: str | None
    if kind == "link":
        previous = await target.readlink(managed)
    elif kind == "dir":  # a directory written by hand or by an older deploy: adopt it as a release
        adopted = f"{stamp.replace('.', '')}-adopted"
        await target.rename(managed, posixpath.join(releases, adopted))
        previous = f"{STATE_DIR}/releases/{adopted}"
        await target.symlink_replace(previous, managed)
        steps.append(f"adopted the existing {managed} as release {adopted}")
    elif kind == "missing":
        previous = None
    else:
        raise DeployConfigError(f"{managed} on {target.describe()} is a file; move it away before deploying")

    release = release_name(stamp, rendered.digest)
    report.release = release
    staging = posixpath.join(state, f"staging-{release}")
    await target.rmtree(staging)
    prefix = MANAGED_DIR + "/"
    uploads = {posixpath.join(staging, path[len(prefix):]): text for path, text in rendered.files.items()}
    write_many = getattr(target, "write_many", None)
    if write_many is not None:
        await write_many(uploads)
    else:
        for path, text in sorted(uploads.items()):
            await target.write_text(path, text)
    await target.makedirs(staging)  # an empty render still publishes an (empty) release
    if keys.files:
        await _stage_keys(target, staging, config_dir, keys, uid_gid, unchanged_keys)
    await target.rename(staging, posixpath.join(releases, release))
    steps.append(f"uploaded {len(rendered.files)} files"
                 + (f" and {len(keys.files)} DKIM keys (0600)" if keys.files else "") + f" as release {release}")
    if firewall:  # the kernel's own check of the new ruleset, before anything is switched
        published = posixpath.join(releases, release, fw.RULESET_FILE)
        check = await target.run(["nft", "-c", "-f", published])
        steps.append(_short(check.describe()))
        if not check.ok:
            await target.rmtree(posixpath.join(releases, release))
            steps.append(f"FAILED nft -c refused the firewall ruleset; removed release {release}")
            report.message = (f"firewall check failed: {_short(check.describe(), 1000)}. Nothing was switched; "
                              "the running configuration and firewall are unchanged.")
            return report

    journal = SwitchJournal(owner=lock.owner, release=release, previous=previous,
                            merged_present={m: existing[m] is not None for m in backend.merged_files},
                            loaded_before=loaded_before, firewall=firewall)

    async def rollback(detail: str) -> DeployReport:
        steps.append(f"FAILED {detail}; rolling back")
        reload_problems = await _restore(target, backend, config_dir, journal, steps)
        restored = await backend.read_back(target, config_dir)
        restored_ok = restored == before
        if restored_ok and not reload_problems and loaded_before is not None:
            await target.write_text(loaded_path, loaded_before)
        await _finish_journal(target, config_dir)
        report.rolled_back = True
        report.message = (f"{detail}. The previous configuration was restored"
                          + (" and reloaded." if not reload_problems else
                             f", but reloading it failed too: {'; '.join(reload_problems)}.")
                          + ("" if restored_ok else " WARNING: the restored files differ from the previous ones: "
                             + _summary(before, restored)))
        return report

    try:
        # The journal (and the merged files' backups) go to the host BEFORE the switch: whoever holds the
        # lock next can undo a switch whose deployer vanished.
        for m, old in existing.items():
            if old is not None:
                await target.write_text(posixpath.join(state, BACKUP_DIR, m), old)
        await target.write_text(posixpath.join(state, JOURNAL), journal.dumps())
        if not await lock.still_held():
            await _finish_journal(target, config_dir)
            raise LockLost(f"the deploy lock on {target.describe()} was broken by another deployer before the "
                           f"switch to {release}; nothing was switched")
        # Switch: one atomic rename of the symlink, then the merged files (each written atomically).
        await target.remove(loaded_path)
        await target.symlink_replace(f"{STATE_DIR}/releases/{release}", managed)
        report.changed = True
        for m, text in sorted(new_merged.items()):
            if existing.get(m) != text:
                await target.write_text(posixpath.join(config_dir, m), text)
        steps.append(f"switched {managed} to release {release}")

        phases = [("validation failed", backend.validate_commands(config_dir)),
                  ("reload failed", backend.reload_commands(config_dir))]
        if firewall:
            phases.append(("firewall apply failed", [["nft", "-f", posixpath.join(config_dir, FIREWALL_RULESET)]]))
        phases.append(("verification failed", backend.verify_commands(config_dir)))
        for label, commands in phases:
            for argv in commands:
                res = await target.run(argv)
                steps.append(_short(res.describe()))
                if not res.ok:
                    return await rollback(f"{label}: {_short(res.describe(), 1000)}")

        after = await backend.read_back(target, config_dir)
        if after != expected:
            return await rollback(f"verification failed: deployed files differ from the render in "
                                  f"{_summary(expected, after)}")
        steps.append(f"verified: read back equals the render (digest {rendered.digest[:12]})")
        if probe is not None:
            try:
                await probe()
            except (SshUnavailable, DeployBusy, OSError) as err:
                return await rollback(f"a new SSH connection to the host failed after the firewall was applied "
                                      f"({_short(str(err))}); rolled back over the open session")
            steps.append("firewall: a new SSH connection to the host was accepted")
        await target.write_text(loaded_path, f"{release} {rendered.digest}\n")
        await _finish_journal(target, config_dir)
    except SshConnectionLost as err:  # the journal stays on the host: a reconnect (or the next deploy) repairs
        raise SwitchInterrupted(str(err), lock.owner) from None
    except LockLost:
        raise
    except asyncio.CancelledError:
        # Cancelled (heartbeat timeout, worker shutdown): put the previous release back, then stop.
        await asyncio.shield(rollback("the deploy was cancelled after the switch"))
        raise
    except Exception as err:
        log.exception("unexpected error after the switch to %s on %s", release, target.describe())
        return await rollback(f"unexpected error after the switch: {type(err).__name__}: {_short(str(err))}")

    # Keep the newest releases (and always the current and previous one).
    keep = {release, posixpath.basename(previous) if previous else ""}
    all_releases = await target.list_dir(releases)
    for old in sorted(set(all_releases) - keep)[:-max(keep_releases - 2, 0) or None]:
        await target.rmtree(posixpath.join(releases, old))
    report.ok = True
    report.message = f"deployed release {release} (digest {rendered.digest[:12]}) to {target.describe()}"
    return report


# --- disabled hosts: render into var/ only -----------------------------------------------------------

def local_render_dir(host: str) -> Path:
    return get_settings().var_dir / "mta" / names.token(host, "MTA host name")


def _read_tree(root: Path) -> dict[str, str]:
    if not root.is_dir():
        return {}
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def expected_local_files(backend: MtaBackendImpl, rendered: RenderedConfig,
                         existing: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """What a local render directory holds: the rendered files plus the merged files materialized
    (from their current content in that directory, else from nothing)."""
    existing = existing or {m: None for m in backend.merged_files}
    return {**rendered.files, **backend.materialize(rendered, existing)}


def write_local_render(backend: MtaBackendImpl, rendered: RenderedConfig, out_dir: Path) -> bool:
    """Write the render to `out_dir` (replaced as a whole: new dir, then renames). False: unchanged."""
    current = _read_tree(out_dir)
    files = expected_local_files(backend, rendered, {m: current.get(m) for m in backend.merged_files})
    if current == files:
        return False
    for path in files:
        relative_path(path)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    new, old = out_dir.with_name(f".{out_dir.name}.new"), out_dir.with_name(f".{out_dir.name}.old")
    shutil.rmtree(new, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    for path, text in files.items():
        dest = new / path
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text)
    new.mkdir(parents=True, exist_ok=True)
    if out_dir.exists():
        out_dir.rename(old)
    new.rename(out_dir)
    shutil.rmtree(old, ignore_errors=True)
    return True


# --- the activity ------------------------------------------------------------------------------------

def _load(host_name: str, url: str | None) -> tuple[MtaHostView, FleetSnapshot]:
    from activities.snapshot import load_snapshot

    snapshot = load_snapshot(url)
    return snapshot.host(host_name), snapshot.for_host(host_name)


def add_firewall(rendered: RenderedConfig, host: MtaHostView, snapshot: FleetSnapshot, url: str | None,
                   local: bool) -> tuple[RenderedConfig, bool]:
    """The render plus the host's ruleset when the inventory's [firewall] opts in (never for a host in
    EMAIL_ENGINE_MTA_LOCAL_HOSTS: this machine). Also used for disabled hosts (rendered to var/ only)."""
    from activities.firewall import deploys_firewall, load_firewall, with_ruleset

    fleet = load_firewall(url, snapshot)
    if fleet is None or not deploys_firewall(fleet, host, local):
        return rendered, False
    return with_ruleset(rendered, fleet, host), True


def record_deploy(req: HostDeployRequest, result: HostDeployResult) -> None:
    from activities.db import session_scope
    from models.deploy_history import MtaDeployRecord

    with session_scope(req.url) as s:
        s.add(MtaDeployRecord(
            host=result.host, generation=result.generation, digest=result.digest, ok=result.ok,
            changed=result.changed, rolled_back=result.rolled_back, message=result.message[:4000],
            target=result.target[:1024], reason=req.reason[:1024], actor=req.actor[:255]))


def load_dkim_keys(snapshot: FleetSnapshot, host: MtaHostView, replace: bool = False,
                   missing_ok: bool = False) -> tuple[DkimKeys, list[str]]:
    """Read the engine's copy of every DKIM key the render names (inventory dkim_key_path).
    Returns the keys and the missing ones; missing keys are a DeployConfigError unless `missing_ok`.
    The error names paths and domains only, never key material."""
    from activities.dkim_keys import public_fingerprint
    from models.mta_render.dkim_paths import keys_to_ship

    files: dict[str, bytes] = {}
    fingerprints: dict[str, str] = {}
    missing: list[str] = []
    for name, source in sorted(keys_to_ship(snapshot).items()):
        try:
            data = Path(source).read_bytes()
        except FileNotFoundError:
            missing.append(f"{name.removesuffix('.key')} ({source})")
            continue
        except OSError as err:
            raise DeployConfigError(f"cannot read the DKIM key {source}: {err.strerror or err}") from None
        fingerprint = public_fingerprint(data)
        if fingerprint == "unreadable":
            raise DeployConfigError(f"{source} is not an unencrypted PEM private key (DKIM key {name}); "
                                    "nothing was deployed")
        files[name], fingerprints[name] = data, fingerprint
    if missing and not missing_ok:
        raise DeployConfigError(
            f"{len(missing)} DKIM private key(s) the config names are missing on the engine: "
            f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}; run `email-engine dkim generate` "
            "(and publish them with `email-engine dns records`). Nothing was deployed.")
    owner = names.unix_user(host.mta_user) if host.mta_user else None
    return DkimKeys(files=files, fingerprints=fingerprints, owner=owner, replace=replace), missing


def _deployer_owner() -> str:
    """The lock owner: stable across the attempts of one activity (a retry reclaims its own lock and
    repairs what it left), unique otherwise."""
    try:
        info = activity.info()
    except RuntimeError:
        return f"cli-deploy-{uuid.uuid4()}"
    return f"{info.workflow_id or 'no-workflow'}/activity-{info.activity_id}"


async def deploy_over_ssh(endpoint: SshEndpoint, backend: MtaBackendImpl, rendered: RenderedConfig, *,
                          owner: str, keys: DkimKeys | None = None, keep_releases: int = 5,
                          heartbeat: Callable[[], None] | None = None, reconnect_attempts: int = 4,
                          reconnect_delay: float = 2.0, firewall: bool = False) -> DeployReport:
    """deploy_release over a fresh connection. A connection lost after the switch is repaired at once:
    reconnect (a few attempts, backing off) and restore the previous release from the host's journal.
    If the host stays unreachable, SshUnavailable says so; the next deploy repairs it first.
    With `firewall`, a second connection opened after the ruleset is applied proves new SSH connections
    still get in (else the deploy is rolled back over the first one)."""

    async def probe() -> None:
        async with SshTarget(endpoint) as fresh:
            res = await fresh.run(["true"])
            if not res.ok:
                raise SshUnavailable(f"a new session on {endpoint.describe()} could not run a command: "
                                     f"{res.describe()}")

    try:
        async with SshTarget(endpoint) as target:
            return await deploy_release(target, backend, rendered, keep_releases=keep_releases, owner=owner,
                                        keys=keys, heartbeat=heartbeat, firewall=firewall,
                                        probe=probe if firewall else None)
    except SwitchInterrupted as err:
        lost = err
    delay, last = reconnect_delay, ""
    for _ in range(reconnect_attempts):
        await asyncio.sleep(delay)
        if heartbeat is not None:
            heartbeat()
        try:
            async with SshTarget(endpoint) as target:
                steps = await repair_interrupted(target, backend, rendered.config_dir, owner)
        except (SshUnavailable, DeployBusy) as again:
            last, delay = str(again), delay * 2
            continue
        if "no interrupted switch left on the host" in steps:  # lost while writing the journal: not switched
            return DeployReport(ok=False, changed=False, digest=rendered.digest, target=endpoint.describe(),
                                message=f"connection lost before the switch: {lost}. Nothing was switched.",
                                steps=[f"FAILED connection lost before the switch: {lost}", *steps])
        return DeployReport(
            ok=False, changed=True, rolled_back=True, digest=rendered.digest, target=endpoint.describe(),
            message=(f"connection lost after the switch: {lost}. Reconnected: the previous configuration "
                     "was restored" + (" and reloaded." if not any("WARNING" in s for s in steps)
                                       else ", but reloading it failed: " + "; ".join(steps))),
            steps=[f"FAILED connection lost after the switch: {lost}", *steps])
    raise SshUnavailable(f"connection to {endpoint.name} lost after the switch ({lost}) and not back ({last}): "
                         "the host may run the new release unverified; the next deploy restores the previous "
                         "release first (journal .email-engine/switch on the host)")


async def deploy_host(req: HostDeployRequest) -> HostDeployResult:
    """Render the newest inventory for `req.host` and deploy it (see the module docstring)."""
    settings = get_settings()
    try:
        names.token(req.host, "MTA host name")
        host, snapshot = await asyncio.to_thread(_load, req.host, req.url)
    except (LookupError, names.NameError_) as err:
        raise ApplicationError(str(err), type="LookupError", non_retryable=True) from None
    backend = backend_for(host.backend)
    rendered = backend.render(snapshot, config_dir=host.config_dir)
    local_host = host.name in {h.strip() for h in settings.mta_local_hosts.split(",")}
    try:
        rendered, firewall = await asyncio.to_thread(add_firewall, rendered, host, snapshot, req.url, local_host)
    except fw.FirewallError as err:
        raise ApplicationError(f"{err}; nothing was deployed", type="FirewallError", non_retryable=True) from None
    if not host.enabled:
        out = local_render_dir(host.name)
        changed = await asyncio.to_thread(write_local_render, backend, rendered, out)
        result = HostDeployResult(
            host=host.name, generation=req.generation, ok=True, changed=changed, digest=rendered.digest,
            target=str(out),
            message=(f"{host.name} is disabled: rendered to {out} only (the host is not contacted)"
                     + ("" if changed else "; unchanged")))
    elif local_host:
        from activities.mta.local import DeployError, deploy_local

        try:
            # The MTA runs here: keys the engine does not hold yet are named, not fatal (as before keys shipped).
            keys, missing = await asyncio.to_thread(load_dkim_keys, snapshot, host, req.replace_dkim_keys, True)
            local = await deploy_local(backend, rendered, keys=keys)
            note = (f"; WARNING: {len(missing)} DKIM key(s) missing on the engine, those domains are not signed: "
                    f"{', '.join(missing[:5])} (run `email-engine dkim generate`)") if missing else ""
            result = HostDeployResult(host=host.name, generation=req.generation, ok=True, changed=local.changed,
                                      digest=rendered.digest, message=local.message + note,
                                      target=rendered.config_dir)
        except (DeployConfigError, names.NameError_) as err:
            raise ApplicationError(str(err), type=type(err).__name__, non_retryable=True) from None
        except DeployError as err:
            result = HostDeployResult(host=host.name, generation=req.generation, ok=False, changed=True,
                                      digest=rendered.digest, message=_short(str(err), 1000),
                                      target=rendered.config_dir,
                                      rolled_back=True)
    else:
        try:
            keys, _ = await asyncio.to_thread(load_dkim_keys, snapshot, host, req.replace_dkim_keys)
            report = await deploy_over_ssh(SshEndpoint.for_host(host, settings), backend, rendered,
                                           owner=_deployer_owner(), keep_releases=settings.mta_keep_releases,
                                           heartbeat=_heartbeat, keys=keys, firewall=firewall)
        except (HostKeyMismatch, SshLoginRefused, DeployConfigError, UnsafePath, names.NameError_) as err:
            raise ApplicationError(str(err), type=type(err).__name__, non_retryable=True) from None
        result = HostDeployResult(
            host=host.name, generation=req.generation, ok=report.ok, changed=report.changed,
            digest=rendered.digest, message=report.message, target=report.target,
            rolled_back=report.rolled_back, steps=report.steps)
    await asyncio.to_thread(record_deploy, req, result)
    return result


def _heartbeat(*details: object) -> None:
    with contextlib.suppress(RuntimeError):  # outside an activity (CLI --direct): nothing to tell
        activity.heartbeat(*details)


HEARTBEAT_EVERY = 5.0


@activity.defn(name="deploy_mta_host")
async def deploy_mta_host(req: HostDeployRequest) -> HostDeployResult:
    """Render the newest inventory for one MTA host and deploy it (enabled: SSH with rollback;
    disabled: <var_dir>/mta/<host>/ only). A rolled-back deploy returns ok=False.

    Heartbeats every few seconds while it runs (callers set a heartbeat_timeout), so a worker that
    dies mid-deploy is noticed in seconds; the retry reclaims the host lock and repairs first."""
    task = asyncio.ensure_future(deploy_host(req))
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=HEARTBEAT_EVERY)
            if done:
                return task.result()
            _heartbeat(f"deploying generation {req.generation} to {req.host}")
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
