"""Shared plumbing of the built-in backends (config_dir resolution, materialize of one block)."""

from __future__ import annotations

from models.enums import MtaBackend
from models.names import key_path
from models.snapshot import FleetSnapshot


def resolve_config_dir(kind: MtaBackend, default: str, snapshot: FleetSnapshot, config_dir: str | None) -> str:
    """Explicit config_dir, else the single host's (if it runs this backend), else the default."""
    if config_dir is None:
        hosts = [h for h in snapshot.hosts if h.backend == kind]
        config_dir = hosts[0].config_dir if len(snapshot.hosts) == 1 and hosts else default
    return key_path(config_dir.rstrip("/") or "/")
