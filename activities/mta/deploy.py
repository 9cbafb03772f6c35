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
import datetime as dt
import difflib
import posixpath
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.mta.base import MANAGED_DIR, CommandResult, MtaBackendImpl, RenderedConfig, Target, backend_for
from activities.mta.ssh import HostKeyMismatch, SshEndpoint, SshLoginRefused, SshTarget, safe_remote_path
from models import names
from models.deploys import HostDeployRequest, HostDeployResult, UnsafePath, relative_path, release_name
from models.settings import get_settings
from models.snapshot import FleetSnapshot, MtaHostView

STATE_DIR = ".email-engine"


class DeployConfigError(Exception):
    """The target is in a state the deployer will not touch (never retried)."""


class DeployBusy(Exception):
    """Another deploy holds the host's deploy lock (retryable)."""


class ReleaseTarget(Target, Protocol):
    async def makedirs(self, path: str) -> None: ...
    async def try_mkdir(self, path: str) -> bool: ...
    async def age(self, path: str) -> float | None: ...
    async def readlink(self, path: str) -> str | None: ...
    async def kind(self, path: str) -> str: ...
    async def symlink_replace(self, link_target: str, path: str) -> None: ...
    async def rename(self, src: str, dst: str) -> None: ...
    async def rmtree(self, path: str) -> None: ...
    async def list_dir(self, path: str) -> list[str]: ...
    def describe(self) -> str: ...


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


LOCK_STALE_AFTER = 900.0  # seconds: a lock older than any deploy can take was left by a crashed deployer


async def deploy_release(target: ReleaseTarget, backend: MtaBackendImpl, rendered: RenderedConfig, *,
                         keep_releases: int = 5, now: Callable[[], dt.datetime] | None = None,
                         lock_wait: float = 60.0) -> DeployReport:
    """Deploy `rendered` to `target` (see the module docstring). Never raises for a failed validation,
    reload or verification: those roll back and return ok=False. Raises for unusable input or target.

    Deploys to one host are serialized by MtaDeployWorkflow; a lock directory on the host
    (`.email-engine/lock`) also keeps out a concurrent `mta deploy --direct` or a second engine."""
    config_dir = safe_remote_path(rendered.config_dir)
    state = posixpath.join(config_dir, STATE_DIR)
    lock = posixpath.join(state, "lock")
    await target.makedirs(state)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + lock_wait
    while not await target.try_mkdir(lock):
        age = await target.age(lock)
        if age is not None and age > LOCK_STALE_AFTER:
            await target.rmtree(lock)
            continue
        if loop.time() >= deadline:
            raise DeployBusy(f"another deploy holds {lock} on {target.describe()} "
                             f"(for {age or 0:.0f}s; removed automatically after {LOCK_STALE_AFTER:.0f}s)")
        await asyncio.sleep(1.0)
    try:
        return await _deploy_locked(target, backend, rendered, keep_releases=keep_releases, now=now)
    finally:
        await target.rmtree(lock)


async def _deploy_locked(target: ReleaseTarget, backend: MtaBackendImpl, rendered: RenderedConfig, *,
                         keep_releases: int, now: Callable[[], dt.datetime] | None) -> DeployReport:
    config_dir = safe_remote_path(rendered.config_dir)
    for path in rendered.files:
        relative_path(path)
    for merged in backend.merged_files:
        relative_path(merged)
    managed = posixpath.join(config_dir, MANAGED_DIR)
    state = posixpath.join(config_dir, STATE_DIR)
    releases = posixpath.join(state, "releases")
    report = DeployReport(ok=False, changed=False, digest=rendered.digest, message="", target=target.describe())
    steps = report.steps

    expected = backend.expected_read_back(rendered)
    before = await backend.read_back(target, config_dir)
    # `loaded` names the digest the MTA was last reloaded with; it is removed before a switch and written
    # after a verified reload, so a deployer that died between the two never leaves a "no-op" behind.
    loaded_path = posixpath.join(state, "loaded")
    loaded_before = await target.read_text(loaded_path)
    if before == expected and (loaded_before or "").split()[-1:] == [rendered.digest]:
        report.ok, report.message = True, f"unchanged: {target.describe()} already runs digest {rendered.digest[:12]}"
        steps.append("read back: identical to the render and loaded; nothing to do")
        return report
    steps.append(f"read back: differs in {_summary(expected, before)}" if before != expected
                 else "read back: files match the render but were never confirmed loaded")

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
    await target.rename(staging, posixpath.join(releases, release))
    steps.append(f"uploaded {len(rendered.files)} files as release {release}")

    async def rollback(reason: str, result: CommandResult | None) -> DeployReport:
        detail = f"{reason}: {_short(result.describe(), 1000)}" if result else reason
        steps.append(f"FAILED {detail}; rolling back")
        if previous is not None:
            await target.symlink_replace(previous, managed)
        else:
            await target.remove(managed)
        for m, old in existing.items():
            if old is None:
                await target.remove(posixpath.join(config_dir, m))
            elif new_merged.get(m) != old:
                await target.write_text(posixpath.join(config_dir, m), old)
        steps.append(f"restored {'release ' + posixpath.basename(previous) if previous else 'no managed config'}"
                     f" and {', '.join(existing) or 'no merged files'}")
        reload_problems = []
        for argv in backend.reload_commands(config_dir):
            res = await target.run(argv)
            steps.append(f"reload after rollback: {_short(res.describe())}")
            if not res.ok:
                reload_problems.append(_short(res.describe()))
        restored = await backend.read_back(target, config_dir)
        restored_ok = restored == before
        if restored_ok and not reload_problems and loaded_before is not None:
            await target.write_text(loaded_path, loaded_before)
        report.rolled_back = True
        report.message = (f"{detail}. The previous configuration was restored"
                          + (" and reloaded." if not reload_problems else
                             f", but reloading it failed too: {'; '.join(reload_problems)}.")
                          + ("" if restored_ok else " WARNING: the restored files differ from the previous ones: "
                             + _summary(before, restored)))
        return report

    # Switch: one atomic rename of the symlink, then the merged files (each written atomically).
    await target.remove(loaded_path)
    await target.symlink_replace(f"{STATE_DIR}/releases/{release}", managed)
    for m, text in sorted(new_merged.items()):
        if existing.get(m) != text:
            await target.write_text(posixpath.join(config_dir, m), text)
    steps.append(f"switched {managed} to release {release}")
    report.changed = True

    for label, commands in (("validation failed", backend.validate_commands(config_dir)),
                            ("reload failed", backend.reload_commands(config_dir)),
                            ("verification failed", backend.verify_commands(config_dir))):
        for argv in commands:
            res = await target.run(argv)
            steps.append(_short(res.describe()))
            if not res.ok:
                return await rollback(label, res)

    after = await backend.read_back(target, config_dir)
    if after != expected:
        return await rollback(f"verification failed: deployed files differ from the render in "
                              f"{_summary(expected, after)}", None)
    steps.append(f"verified: read back equals the render (digest {rendered.digest[:12]})")
    await target.write_text(loaded_path, f"{release} {rendered.digest}\n")

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


def record_deploy(req: HostDeployRequest, result: HostDeployResult) -> None:
    from activities.db import session_scope
    from models.deploy_history import MtaDeployRecord

    with session_scope(req.url) as s:
        s.add(MtaDeployRecord(
            host=result.host, generation=result.generation, digest=result.digest, ok=result.ok,
            changed=result.changed, rolled_back=result.rolled_back, message=result.message[:4000],
            target=result.target[:1024], reason=req.reason[:1024], actor=req.actor[:255]))


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
    if not host.enabled:
        out = local_render_dir(host.name)
        changed = await asyncio.to_thread(write_local_render, backend, rendered, out)
        result = HostDeployResult(
            host=host.name, generation=req.generation, ok=True, changed=changed, digest=rendered.digest,
            target=str(out),
            message=(f"{host.name} is disabled: rendered to {out} only (the host is not contacted)"
                     + ("" if changed else "; unchanged")))
    elif host.name in {h.strip() for h in settings.mta_local_hosts.split(",")}:
        from activities.mta.local import DeployError, deploy_local

        try:
            local = await deploy_local(backend, rendered)
            result = HostDeployResult(host=host.name, generation=req.generation, ok=True, changed=local.changed,
                                      digest=rendered.digest, message=local.message, target=rendered.config_dir)
        except DeployError as err:
            result = HostDeployResult(host=host.name, generation=req.generation, ok=False, changed=True,
                                      digest=rendered.digest, message=_short(str(err), 1000),
                                      target=rendered.config_dir,
                                      rolled_back=True)
    else:
        try:
            async with SshTarget(SshEndpoint.for_host(host, settings)) as target:
                report = await deploy_release(target, backend, rendered, keep_releases=settings.mta_keep_releases)
        except (HostKeyMismatch, SshLoginRefused, DeployConfigError, UnsafePath, names.NameError_) as err:
            raise ApplicationError(str(err), type=type(err).__name__, non_retryable=True) from None
        result = HostDeployResult(
            host=host.name, generation=req.generation, ok=report.ok, changed=report.changed,
            digest=rendered.digest, message=report.message, target=report.target,
            rolled_back=report.rolled_back, steps=report.steps)
    await asyncio.to_thread(record_deploy, req, result)
    return result


@activity.defn(name="deploy_mta_host")
async def deploy_mta_host(req: HostDeployRequest) -> HostDeployResult:
    """Render the newest inventory for one MTA host and deploy it (enabled: SSH with rollback;
    disabled: <var_dir>/mta/<host>/ only). A rolled-back deploy returns ok=False."""
    return await deploy_host(req)
