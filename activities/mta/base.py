"""The one interface every MTA backend implements, and the registry that finds a backend.

Contract (used by the deployers in activities/mta/deploy.py and activities/mta/local.py, the CLI and
the bootstrap hook; keep it stable):

* ``backend.render(snapshot, config_dir=None) -> RenderedConfig`` is PURE: no I/O, no clock, no
  randomness. The same snapshot (and config_dir) gives byte-identical files and the same digest.
  ``snapshot`` is already narrowed to what should be rendered (``FleetSnapshot.for_host(name)`` for a
  deploy, ``.for_tenant(t)`` for a preview). ``config_dir`` is the MTA's config directory on the
  target (absolute; rendered into include lines and file paths); None means the host's
  ``config_dir`` when the snapshot has exactly one host of this backend, else ``default_config_dir``.
* ``RenderedConfig.files`` maps paths RELATIVE to config_dir (posix, no ``..``) to file text. All of
  them live under ``MANAGED_DIR`` ("email-engine/"): the engine owns that directory entirely, so a
  deployer may replace it as a whole (a tenant fragment that disappeared from the render must
  disappear from the host).
* The MTA's own main file (PowerMTA ``config``, Postfix ``main.cf``/``master.cf``) belongs to the
  operator; the engine only owns a marked block in it. ``backend.merged_files`` names those files
  (relative to config_dir) and ``backend.materialize(rendered, existing)`` is the PURE function that
  returns the complete new content of each merged file given its current content (None = missing).
  A deployer therefore writes ``rendered.files`` plus ``materialize(...)`` and nothing else.
  Materializing twice is idempotent (the block is replaced, never duplicated).
* ``validate_commands(config_dir)``, ``reload_commands(config_dir)``, ``verify_commands(config_dir)``
  return argv lists (run in order on the target; any non-zero exit status is a failure, stdout/stderr
  are reported). Validation runs AFTER the new files are in place and BEFORE reload; on failure the
  deployer restores the previous files (and reloads again if the reload had already happened).
* ``read_back(target, config_dir)`` (async) returns what is deployed: {relative path: text} for every
  file under MANAGED_DIR plus the engine's block of each merged file (key ``"<merged file>#block"``);
  ``expected_read_back(rendered)`` gives the same shape for a render, so drift is a dict comparison.
* ``Target`` is where commands run and files live (LocalTarget in local.py, the SSH target in ssh.py).

Registering a new backend (e.g. KumoMTA): implement the protocol, add ``MtaBackend.KUMOMTA`` and call
``register(MtaBackend.KUMOMTA, KumoBackend())`` in its module and import it in ``_load_builtin``.
No workflow changes: workflows only call activities that go through ``backend_for``.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from models.enums import MtaBackend
from models.snapshot import FleetSnapshot

#: The directory under config_dir that the engine owns completely.
MANAGED_DIR = "email-engine"
#: Under MANAGED_DIR: the DKIM private keys the deployer ships with each release (never rendered, never
#: read back into a diff: secrets). Renderers point key paths here (models/mta_render/dkim_paths.py).
DKIM_SUBDIR = "dkim"
BLOCK_BEGIN = "# BEGIN email-engine managed block (do not edit: rendered by `email-engine mta`)"
BLOCK_END = "# END email-engine managed block"


def config_digest(files: Mapping[str, str]) -> str:
    """sha256 over the sorted (path, text) pairs: equal digests mean byte-identical file sets."""
    h = hashlib.sha256()
    for path in sorted(files):
        data = files[path].encode()
        h.update(f"{path}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


@dataclass(frozen=True)
class RenderedConfig:
    """The output of a render: files relative to config_dir, all under MANAGED_DIR."""

    backend: MtaBackend
    config_dir: str
    files: Mapping[str, str]
    #: sha256 of `files` (config_digest); equal digest = nothing to deploy.
    digest: str = ""
    #: Human-readable notes (e.g. "tenant client-2 has no sending IP"), not part of the digest.
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        for path in self.files:
            norm = posixpath.normpath(path)
            if path.startswith("/") or norm != path or norm.startswith("..") or \
                    not path.startswith(MANAGED_DIR + "/"):
                raise ValueError(f"rendered path {path!r} must be relative and under {MANAGED_DIR}/")
            if path.startswith(f"{MANAGED_DIR}/{DKIM_SUBDIR}/"):
                raise ValueError(f"rendered path {path!r} is under {MANAGED_DIR}/{DKIM_SUBDIR}/, which holds "
                                 "the deployed DKIM keys")
        if not self.digest:
            object.__setattr__(self, "digest", config_digest(self.files))

    def path(self, relative: str) -> str:
        """Absolute path on the target of a rendered or merged file."""
        return posixpath.join(self.config_dir, relative)


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    exit_status: int
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    def describe(self) -> str:
        out = (self.stderr or self.stdout).strip()
        return f"`{' '.join(self.argv)}` exited {self.exit_status}" + (f": {out}" if out else "")


@runtime_checkable
class Target(Protocol):
    """Where an MTA's files live and its commands run (local machine or an SSH host)."""

    async def run(self, argv: Sequence[str]) -> CommandResult:
        """Run a command (no shell); never raises for a non-zero exit status."""
        ...

    async def read_text(self, path: str) -> str | None:
        """Text of an absolute path, None if it does not exist."""
        ...

    async def write_text(self, path: str, text: str, mode: int = 0o644) -> None:
        """Write atomically (temp file + rename in the same directory), creating parent dirs."""
        ...

    async def list_files(self, directory: str) -> list[str]:
        """Files under an absolute directory, recursively, as sorted paths relative to it ([] if absent)."""
        ...

    async def remove(self, path: str) -> None:
        """Remove a file; no error if it does not exist."""
        ...


@runtime_checkable
class MtaBackendImpl(Protocol):
    """One MTA backend. See the module docstring for the contract."""

    kind: MtaBackend
    default_config_dir: str
    #: Operator-owned files (relative to config_dir) in which the engine owns a marked block.
    merged_files: tuple[str, ...]

    def render(self, snapshot: FleetSnapshot, config_dir: str | None = None) -> RenderedConfig:
        """Pure: the backend's files for the snapshot's tenants."""
        ...

    def materialize(self, rendered: RenderedConfig, existing: Mapping[str, str | None]) -> dict[str, str]:
        """Pure: new full content of each merged file, given its current content (None = missing)."""
        ...

    def validate_commands(self, config_dir: str) -> list[list[str]]:
        """Commands that check the config in place, before reload (e.g. `pmta test config`)."""
        ...

    def reload_commands(self, config_dir: str) -> list[list[str]]:
        """Commands that make the MTA use the new config (e.g. `pmta reload`, `postfix reload`)."""
        ...

    def verify_commands(self, config_dir: str) -> list[list[str]]:
        """Commands run after the reload to check the MTA is up with the new config."""
        ...

    async def read_back(self, target: Target, config_dir: str) -> dict[str, str]:
        """What is deployed: MANAGED_DIR files and the engine's block of each merged file."""
        ...

    def expected_read_back(self, rendered: RenderedConfig) -> dict[str, str]:
        """What read_back returns once `rendered` is deployed (for drift checks)."""
        ...


# --- managed blocks (pure helpers shared by backends) ------------------------------------------------

def extract_block(text: str | None) -> str | None:
    """The engine's block (between the markers, markers included), None if absent."""
    if not text:
        return None
    lines = text.splitlines(keepends=True)
    try:
        start = next(i for i, ln in enumerate(lines) if ln.rstrip("\n") == BLOCK_BEGIN)
        end = next(i for i in range(start, len(lines)) if lines[i].rstrip("\n") == BLOCK_END)
    except StopIteration:
        return None
    return "".join(lines[start:end + 1])


def replace_block(text: str | None, body: str) -> str:
    """`text` with the engine's block set to `body` (appended at the end when absent). Idempotent."""
    block = f"{BLOCK_BEGIN}\n{body.rstrip(chr(10))}\n{BLOCK_END}\n"
    text = text or ""
    old = extract_block(text)
    if old is not None:
        return text.replace(old, block, 1)
    if text and not text.endswith("\n"):
        text += "\n"
    return text + block


async def read_back_common(backend: MtaBackendImpl, target: Target, config_dir: str) -> dict[str, str]:
    """Default read_back: every file under MANAGED_DIR (but the DKIM keys) plus each merged file's block."""
    out: dict[str, str] = {}
    root = posixpath.join(config_dir, MANAGED_DIR)
    for rel in await target.list_files(root):
        if rel.startswith(DKIM_SUBDIR + "/"):  # secrets: compared by the deployer, never diffed or shown
            continue
        text = await target.read_text(posixpath.join(root, rel))
        if text is not None:
            out[f"{MANAGED_DIR}/{rel}"] = text
    for merged in backend.merged_files:
        block = extract_block(await target.read_text(posixpath.join(config_dir, merged)))
        if block is not None:
            out[f"{merged}#block"] = block
    return out


def expected_read_back_common(backend: MtaBackendImpl, rendered: RenderedConfig) -> dict[str, str]:
    out = dict(rendered.files)
    for merged, text in backend.materialize(rendered, {m: None for m in backend.merged_files}).items():
        block = extract_block(text)
        if block is not None:
            out[f"{merged}#block"] = block
    return out


# --- registry --------------------------------------------------------------------------------------

_REGISTRY: dict[MtaBackend, MtaBackendImpl] = {}


def register(kind: MtaBackend, impl: MtaBackendImpl) -> None:
    _REGISTRY[kind] = impl


def _load_builtin() -> None:
    import importlib

    for module in ("activities.mta.powermta", "activities.mta.postfix"):  # each registers itself
        importlib.import_module(module)


def backend_for(kind: MtaBackend | str) -> MtaBackendImpl:
    """The backend implementation for an MtaBackend value; LookupError names the known ones."""
    _load_builtin()  # idempotent: importing one backend directly must not hide the others
    try:
        return _REGISTRY[MtaBackend(kind)]
    except (KeyError, ValueError):
        raise LookupError(f"no MTA backend {kind!r} (known: {', '.join(sorted(_REGISTRY))})") from None
