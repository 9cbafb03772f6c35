"""The engine's Temporal Schedules as plain values, and how two versions of one differ (no I/O).

client/schedules.py builds the wanted definitions from the settings, reads the installed ones back
into the same shape and applies the difference; keeping the comparison here makes "unchanged" a
fact that unit tests can check without a server. The state an operator sets (paused, note) is not
part of a definition: `schedules apply` never unpauses what someone paused.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

BLOCKLIST_SCAN = "blocklist-scan"
DNS_VALIDATION = "dns-validation"
ACCOUNTING_INGEST = "accounting-ingest"
MAILWIZZ_SYNC = "mailwizz-sync"
ACTIVE_GUARD = "active-guard"
#: Every Schedule the engine needs, in the order they are applied and listed.
NAMES = (BLOCKLIST_SCAN, DNS_VALIDATION, ACCOUNTING_INGEST, MAILWIZZ_SYNC, ACTIVE_GUARD)


@dataclass(frozen=True)
class ScheduleDef:
    """One Schedule: which workflow it starts with what input, on which queue, and when."""

    name: str
    workflow: str
    workflow_id: str
    task_queue: str
    #: The workflow's single input as JSON (what the default data converter writes).
    args: dict[str, Any] = field(default_factory=dict, hash=False)
    #: Interval schedules: every N seconds, shifted by an offset.
    every_seconds: int | None = None
    offset_seconds: int = 0
    #: Calendar schedules: daily at this UTC hour, minute 0.
    daily_hour_utc: int | None = None
    time_zone: str = ""
    execution_timeout_seconds: int | None = None
    overlap: str = "skip"
    #: Shown in the Web UI on creation; operators' pause notes replace it, so it is not compared.
    note: str = field(default="", compare=False)

    def when(self) -> str:
        if self.daily_hour_utc is not None:
            return f"daily at {self.daily_hour_utc:02d}:00 UTC"
        if self.every_seconds is None:
            return "never (no spec)"
        text = f"every {duration(self.every_seconds)}"
        return text + (f" (+{duration(self.offset_seconds)})" if self.offset_seconds else "")


COMPARED = tuple(f.name for f in fields(ScheduleDef) if f.compare and f.name != "name")


def duration(seconds: int) -> str:
    """3600 -> '1 h', 5400 -> '90 min', 45 -> '45 s' (how settings are written)."""
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def differences(want: ScheduleDef, have: ScheduleDef) -> list[str]:
    """What `apply` would change, one `field: installed -> wanted` per differing field."""
    return [f"{name}: {getattr(have, name)!r} -> {getattr(want, name)!r}"
            for name in COMPARED if getattr(have, name) != getattr(want, name)]


def unknown_name(name: str) -> str | None:
    """None for one of the engine's Schedules, else the refusal an operator reads."""
    if name in NAMES:
        return None
    return f"no Schedule {name!r}: the engine's Schedules are {', '.join(NAMES)}"
