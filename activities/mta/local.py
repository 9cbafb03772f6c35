"""Local deploys: the MTA runs on this machine (Postfix in tests, or a single-box install).

`LocalTarget` implements base.Target with the local file system and subprocesses. `deploy_local`
writes a render in place, validates, reloads and verifies; on any failure it restores the previous
files (and reloads again once a reload had happened) and raises DeployError naming the failed step.
An unchanged config (read back == expected) is a no-op. The SSH deployer (deploy.py) does the same
over SSH with staging and a kept previous version; this one is for a local MTA.
"""

from __future__ import annotations

import asyncio
import os
import posixpath
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from activities.mta.base import DKIM_SUBDIR, MANAGED_DIR, CommandResult, MtaBackendImpl, RenderedConfig, Target

if TYPE_CHECKING:
    from activities.mta.deploy import DkimKeys

_KEYS_PREFIX = f"{MANAGED_DIR}/{DKIM_SUBDIR}/"


class LocalTarget:
    """base.Target on the local machine. `env` is added to every command's environment."""

    def __init__(self, env: dict[str, str] | None = None, timeout: float = 60.0):
        self.env = env or {}
        self.timeout = timeout

    async def run(self, argv: Sequence[str]) -> CommandResult:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env={**os.environ, **self.env}, cwd="/")
        except FileNotFoundError as exc:
            return CommandResult(tuple(argv), 127, "", str(exc))
        try:
            out, err = await asyncio.wait_for(proc.communicate(), self.timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return CommandResult(tuple(argv), 124, "", f"timed out after {self.timeout:.0f}s")
        return CommandResult(tuple(argv), proc.returncode or 0, out.decode(errors="replace"),
                             err.decode(errors="replace"))

    async def read_text(self, path: str) -> str | None:
        try:
            return Path(path).read_text()
        except FileNotFoundError:
            return None

    async def write_text(self, path: str, text: str, mode: int = 0o644) -> None:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.chmod(tmp, mode)
            os.replace(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    async def list_files(self, directory: str) -> list[str]:
        root = Path(directory)
        if not root.is_dir():
            return []
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()
                      and not p.name.startswith("."))

    async def remove(self, path: str) -> None:
        Path(path).unlink(missing_ok=True)


class DeployError(RuntimeError):
    """A deploy failed at `step` and the previous files were restored."""

    def __init__(self, step: str, detail: str):
        super().__init__(f"{step} failed: {detail} (previous configuration restored)")
        self.step = step
        self.detail = detail


@dataclass(frozen=True)
class LocalDeployResult:
    changed: bool
    digest: str
    message: str


async def _snapshot_files(target: Target, config_dir: str, backend: MtaBackendImpl) -> dict[str, str | None]:
    root = posixpath.join(config_dir, MANAGED_DIR)
    files: dict[str, str | None] = {}
    for rel in await target.list_files(root):
        if not f"{MANAGED_DIR}/{rel}".startswith(_KEYS_PREFIX):  # keys: handled by _put_keys (mode 0600)
            files[f"{MANAGED_DIR}/{rel}"] = await target.read_text(posixpath.join(root, rel))
    for merged in backend.merged_files:
        files[merged] = await target.read_text(posixpath.join(config_dir, merged))
    return files


async def _put(target: Target, config_dir: str, files: dict[str, str | None]) -> None:
    """Make the managed dir and merged files exactly `files` (None = absent)."""
    root = posixpath.join(config_dir, MANAGED_DIR)
    keep = {p for p, t in files.items() if t is not None}
    for rel in await target.list_files(root):
        if f"{MANAGED_DIR}/{rel}" not in keep and not f"{MANAGED_DIR}/{rel}".startswith(_KEYS_PREFIX):
            await target.remove(posixpath.join(root, rel))
    for rel, text in sorted(files.items()):
        if text is None:
            await target.remove(posixpath.join(config_dir, rel))
        else:
            await target.write_text(posixpath.join(config_dir, rel), text)


async def _run_all(target: Target, commands: list[list[str]]) -> CommandResult | None:
    """First failing command's result, None when all succeed."""
    for argv in commands:
        res = await target.run(argv)
        if not res.ok:
            return res
    return None


def _read_keys(directory: Path) -> dict[str, bytes]:
    if not directory.is_dir():
        return {}
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file() and not p.name.startswith(".")}


def _keys_in_place(directory: Path, files: dict[str, bytes], owner: str | None) -> bool:
    import pwd

    if _read_keys(directory) != files:
        return False
    uid = pwd.getpwnam(owner).pw_uid if owner else os.geteuid()
    return all((st := (directory / n).stat()).st_mode & 0o7777 == 0o600 and st.st_uid == uid for n in files)


def _put_keys(directory: Path, files: dict[str, bytes], owner: str | None) -> None:
    """Make `directory` hold exactly `files`, each mode 0600 (from creation) and owned by `owner`."""
    import pwd

    ids = (pwd.getpwnam(owner).pw_uid, pwd.getpwnam(owner).pw_gid) if owner else None
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    for stale in set(_read_keys(directory)) - set(files):
        (directory / stale).unlink()
    for name, data in files.items():
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.")  # mkstemp creates it 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(tmp, 0o600)
            if ids is not None:
                os.chown(tmp, *ids)
            os.replace(tmp, directory / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    if ids is not None:
        os.chown(directory, *ids)


async def deploy_local(backend: MtaBackendImpl, rendered: RenderedConfig,
                       target: Target | None = None, keys: DkimKeys | None = None) -> LocalDeployResult:
    """Put `rendered` (and `keys`, into <config_dir>/email-engine/dkim/) in place under
    rendered.config_dir, validate, reload, verify; roll back on failure (keys included)."""
    from activities.dkim_keys import public_fingerprint
    from activities.mta.deploy import DkimKeyChangeRefused

    target = target or LocalTarget()
    cdir = rendered.config_dir
    key_dir = Path(cdir) / MANAGED_DIR / DKIM_SUBDIR
    new_keys = dict(keys.files) if keys else None
    owner = keys.owner if keys else None
    old_keys = _read_keys(key_dir)
    if keys is not None and new_keys is not None:
        changed = sorted(n for n in set(old_keys) & set(new_keys)
                         if old_keys[n] != new_keys[n] and public_fingerprint(old_keys[n]) != keys.fingerprints[n])
        if changed and not keys.replace:
            raise DkimKeyChangeRefused(
                f"refusing to replace the DKIM key(s) {', '.join(changed)} in {key_dir}: the engine's key differs "
                "from the deployed one. Nothing was changed. If the key change is intended, deploy with "
                "`email-engine mta deploy --replace-dkim-keys`.")
    keys_ok = new_keys is None or _keys_in_place(key_dir, new_keys, owner)
    if keys_ok and await backend.read_back(target, cdir) == backend.expected_read_back(rendered):
        return LocalDeployResult(False, rendered.digest, "unchanged: nothing to deploy")
    previous = await _snapshot_files(target, cdir, backend)
    existing = {m: previous.get(m) for m in backend.merged_files}
    new: dict[str, str | None] = {**rendered.files, **backend.materialize(rendered, existing)}
    if new_keys is not None:
        _put_keys(key_dir, new_keys, owner)
    await _put(target, cdir, new)
    reloaded = False
    step = "validate"
    failed = await _run_all(target, backend.validate_commands(cdir))
    if failed is None:
        step, reloaded = "reload", True
        failed = await _run_all(target, backend.reload_commands(cdir))
    if failed is None:
        step = "verify"
        failed = await _run_all(target, backend.verify_commands(cdir))
    if failed is not None:
        await _put(target, cdir, previous)
        if new_keys is not None:
            _put_keys(key_dir, old_keys, owner)
        if reloaded:
            await _run_all(target, backend.reload_commands(cdir))
        raise DeployError(step, failed.describe())
    return LocalDeployResult(True, rendered.digest, f"deployed {len(rendered.files)} files to {cdir}, reloaded")
