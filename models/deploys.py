"""MTA deploys: the value types shared by the deploy workflow, its activities and the CLI, and the
pure rules of a deploy (digest of a rendered file set, safe relative paths, release names).

No I/O here. The deploy history table is models/deploy_history.py.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

_SEGMENT_RE = re.compile(r"^[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,127}$")


class UnsafePath(ValueError):
    """A rendered file name that must not reach a remote shell or file system."""


def relative_path(path: str) -> str:
    """A rendered file's path relative to the config directory: segments of letters, digits, '.', '_',
    '+', '-', never '..', never absolute, never a hidden segment (the deploy keeps its own state in
    `.email-engine/`)."""
    if not isinstance(path, str) or not path or len(path) > 512 or path.startswith("/"):
        raise UnsafePath(f"{path!r} is not a relative file path")
    parts = path.split("/")
    for part in parts:
        if not _SEGMENT_RE.match(part) or part in (".", ".."):
            raise UnsafePath(f"{path!r}: segment {part!r} is not allowed (letters, digits, '.', '_', '+', '-')")
    return path


def files_digest(files: Mapping[str, str | bytes]) -> str:
    """sha256 over the sorted (path, content) pairs: equal digests mean byte-identical file sets."""
    h = hashlib.sha256()
    for path in sorted(files):
        content = files[path]
        data = content.encode() if isinstance(content, str) else content
        name = path.encode()
        h.update(len(name).to_bytes(4, "big") + name + len(data).to_bytes(8, "big") + data)
    return h.hexdigest()


def release_name(stamp: str, digest: str) -> str:
    """A release directory name: `<UTC stamp>-<digest prefix>`, e.g. 20261128T010203Z-0123456789ab."""
    if not re.fullmatch(r"[0-9]{8}T[0-9]{6}(?:\.[0-9]{1,6})?Z", stamp) or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise UnsafePath(f"bad release stamp or digest: {stamp!r}, {digest!r}")
    return f"{stamp.replace('.', '')}-{digest[:12]}"


def top_level_entries(files: Mapping[str, object]) -> list[str]:
    """The first path segment of every file: the names swapped as a whole in the config directory."""
    return sorted({relative_path(p).split("/", 1)[0] for p in files})


# --- Temporal payloads (dataclasses, JSON-serializable) -------------------------------------------

#: MtaDeployWorkflow's id is `mta-deploy/<host>`: one serializing workflow per MTA host.
WORKFLOW_ID_PREFIX = "mta-deploy/"


def workflow_id(host: str) -> str:
    return f"{WORKFLOW_ID_PREFIX}{host}"


@dataclass(frozen=True)
class DeployPoolRequest:
    """Activity "deploy_tenant_pool" (client/relay.py): deploy the tenant's pool after a change."""

    tenant: str
    reason: str
    actor: str


@dataclass(frozen=True)
class DeployOutcome:
    """Result of "deploy_tenant_pool": the deploy that included the caller's change."""

    host: str
    generation: int
    changed: bool
    message: str


@dataclass(frozen=True)
class DeployRequest:
    """Argument of MtaDeployWorkflow's `deploy` and `request` updates."""

    reason: str = ""
    actor: str = ""
    #: The operator's explicit go-ahead to replace a deployed DKIM key by a different one.
    replace_dkim_keys: bool = False


@dataclass(frozen=True)
class HostDeployRequest:
    """Input of the `deploy_mta_host` activity: render the newest inventory for `host` and deploy it."""

    host: str
    generation: int = 0
    reason: str = ""
    actor: str = ""
    #: Database URL (None: the settings'); tests point it at their own database.
    url: str | None = None
    #: Replace deployed DKIM keys that differ from the engine's (operator flag `--replace-dkim-keys`).
    replace_dkim_keys: bool = False


@dataclass(frozen=True)
class HostDeployResult:
    host: str
    generation: int
    ok: bool
    #: False: the deployed config already had the rendered digest (no upload, no reload).
    changed: bool
    digest: str = ""
    message: str = ""
    #: `ssh://user@address:port/config_dir`, or the local directory a disabled host is rendered to.
    target: str = ""
    rolled_back: bool = False
    steps: list[str] = field(default_factory=list)


@dataclass
class MtaDeployState:
    """Everything MtaDeployWorkflow carries across continue-as-new."""

    #: Highest generation handed to a caller; a request joins the next deploy that has not started.
    requested: int = 0
    #: Generation of the deploy running now (or the last one started).
    started: int = 0
    #: Highest generation whose deploy has finished (successfully or rolled back).
    completed: int = 0
    #: Results of the most recent deploys (bounded), newest last.
    results: list[HostDeployResult] = field(default_factory=list)
    #: Reasons of the requests coalesced into the pending deploy (the first 20).
    pending_reasons: list[str] = field(default_factory=list)
    #: How many requests are waiting for the pending deploy.
    pending: int = 0
    #: A request coalesced into the pending deploy asked to replace differing DKIM keys.
    pending_replace_dkim_keys: bool = False


@dataclass
class MtaDeployInput:
    host: str
    state: MtaDeployState | None = None
    #: Database URL passed on to the activity (None: the worker's settings).
    url: str | None = None
    #: Continue as new once history has more events than this (0: only when the server suggests it).
    max_history: int = 2000


@dataclass(frozen=True)
class MtaDeployStatus:
    host: str
    requested: int
    started: int
    completed: int
    running: bool
    last: HostDeployResult | None = None
    #: Requests coalesced into the deploy that has not started yet.
    pending: int = 0


# --- the switch journal (written on the host before a release switch) -----------------------------

_RELEASE_LINK_RE = re.compile(r"^\.email-engine/releases/[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


@dataclass(frozen=True)
class SwitchJournal:
    """What a deployer needs to undo a release switch, kept on the host from just before the switch
    until the deploy is verified or rolled back. A deployer that lost its connection leaves it behind;
    whoever takes the host's lock next restores the previous state from it before doing anything else.
    The merged files' previous content is kept beside it (`backup/<file>`), present or not."""

    owner: str
    release: str
    #: Symlink target of the previous release (`.email-engine/releases/<name>`); None: there was none.
    previous: str | None
    #: merged file -> whether it existed before the switch (its content is in backup/ when it did).
    merged_present: dict[str, bool]
    #: Content of `.email-engine/loaded` before the switch (None: absent).
    loaded_before: str | None
    #: The new release carries a host firewall ruleset: undoing the switch loads the previous release's
    #: ruleset again, or removes the engine's table when that release had none.
    firewall: bool = False

    def dumps(self) -> str:
        return json.dumps({"owner": self.owner, "release": self.release, "previous": self.previous,
                           "merged_present": self.merged_present, "loaded_before": self.loaded_before,
                           "firewall": self.firewall}, sort_keys=True) + "\n"

    @classmethod
    def loads(cls, text: str) -> SwitchJournal:
        """Parse and validate (the journal comes from a remote host: every path is checked)."""
        try:
            raw = json.loads(text)
            j = cls(owner=str(raw["owner"]), release=str(raw["release"]), previous=raw["previous"],
                    merged_present={str(k): bool(v) for k, v in dict(raw["merged_present"]).items()},
                    loaded_before=raw["loaded_before"], firewall=raw.get("firewall", False) is True)
        except (ValueError, KeyError, TypeError) as err:
            raise UnsafePath(f"unreadable switch journal: {err}") from None
        if j.previous is not None and (not isinstance(j.previous, str) or not _RELEASE_LINK_RE.match(j.previous)):
            raise UnsafePath(f"switch journal names an unexpected previous release {j.previous!r}")
        if j.loaded_before is not None and not isinstance(j.loaded_before, str):
            raise UnsafePath("switch journal: loaded_before is not text")
        for m in j.merged_present:
            relative_path(m)
        return j
