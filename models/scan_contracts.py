"""BlocklistScanWorkflow's contract (workflow "BlocklistScanWorkflow"): input, summary (its result
and its `summary` query), the Temporal Schedule's id, and the id of a scan run now.

Shared by workflows/blocklist_scan.py, client/schedules.py and client/scans.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: The Temporal Schedule (and the workflow id prefix of its runs).
SCHEDULE_ID = "blocklist-scan"


def manual_scan_id(stamp: str) -> str:
    """Id of a scan an operator runs now (`stamp`: anything unique, e.g. a UTC time and a nonce)."""
    return f"{SCHEDULE_ID}/now/{stamp}"


@dataclass
class ScanInput:
    tenant: str | None = None  # None: the whole fleet


@dataclass
class ScanSummary:
    targets: int = 0
    queries: int = 0
    listed: int = 0
    broken_zones: list[str] = field(default_factory=list)
    sagas: list[str] = field(default_factory=list)  # workflow ids started or joined
    extended: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    rewarming: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    #: Tenants' pools deployed because a running, unfinished failover was joined ("tenant: host generation").
    deployed: list[str] = field(default_factory=list)
