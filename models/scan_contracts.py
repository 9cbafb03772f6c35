"""BlocklistScanWorkflow's contract (workflow "BlocklistScanWorkflow"): input, summary (its result
and its `summary` query), the progress one run hands the next (continue-as-new), the Temporal
Schedule's id, and the id of a scan run now.

Shared by workflows/blocklist_scan.py, client/schedules.py and client/scans.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from models.failover import ScanDecision
from models.scan_pages import PAGE_BYTES

#: The Temporal Schedule (and the workflow id prefix of its runs).
SCHEDULE_ID = "blocklist-scan"


def manual_scan_id(stamp: str) -> str:
    """Id of a scan an operator runs now (`stamp`: anything unique, e.g. a UTC time and a nonce)."""
    return f"{SCHEDULE_ID}/now/{stamp}"


@dataclass
class ScanSummary:
    targets: int = 0
    queries: int = 0
    listed: int = 0
    broken_zones: list[str] = field(default_factory=list)
    #: The lists below keep at most models.scan_progress.SHOWN entries each; `counts` has their exact
    #: lengths (a scan that acts on 100,000 IPs must still return, query and carry a small summary).
    sagas: list[str] = field(default_factory=list)  # workflow ids started or joined
    extended: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    rewarming: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    #: Tenants' pools deployed because a running, unfinished failover was joined ("tenant: host generation").
    deployed: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    #: Decisions that act (all pages), and how many were acted on so far.
    actions: int = 0
    acted: int = 0
    #: Decision pages of the scan, and pages acted on so far (the cursor of the next run).
    pages: int = 0
    pages_done: int = 0
    #: Runs of this workflow id so far (continue-as-new between pages).
    runs: int = 0


@dataclass
class ScanProgress:
    """What one run hands the next (continue-as-new): the summary (its pages_done is the cursor) and
    the little state the end of the scan needs; bounded whatever the number of IPs and tenants."""

    summary: ScanSummary = field(default_factory=ScanSummary)
    #: Catalogue names of the zones that failed their self-test (the alert's key).
    broken_keys: list[str] = field(default_factory=list)
    #: The last tenants whose blast-radius alert went out (at most models.scan_progress.SHOWN: the
    #: decisions come sorted by tenant, and the alert's key is deduplicated besides).
    blast_alerted: list[str] = field(default_factory=list)


#: Decision pages a run acts on before it continues as new (earlier when the server suggests it).
PAGES_PER_RUN = 4
#: Decisions of a page acted on at once (setting EMAIL_ENGINE_BLOCKLIST_ACT_CONCURRENCY). Acting is two
#: round trips through Temporal per decision (saga start, webhook event), about 0.1 s: one at a time, a
#: scan that acts on 100,000 IPs would outlast the Schedule's 2-hour execution timeout.
ACT_CONCURRENCY = 20
#: Upper bound of act_concurrency: Temporal advises at most 500 concurrent operations per workflow
#: execution (2,000 pending activities is the hard limit).
MAX_ACT_CONCURRENCY = 500


def act_limit(requested: int) -> int:
    """The bound a scan acts with: `requested` within 1..MAX_ACT_CONCURRENCY (a scan started with a
    nonsensical input still acts, one at a time or at the maximum)."""
    return max(1, min(requested, MAX_ACT_CONCURRENCY))


@dataclass
class ScanInput:
    tenant: str | None = None  # None: the whole fleet
    #: JSON size of a page of decisions (models.scan_pages); a page holds at least one decision.
    page_bytes: int = PAGE_BYTES
    pages_per_run: int = PAGES_PER_RUN
    #: Decisions of a page acted on at once (act_limit); their effects enter the summary in page order.
    act_concurrency: int = ACT_CONCURRENCY
    #: None on the first run; the previous run's progress after a continue-as-new.
    progress: ScanProgress | None = None


@dataclass
class FleetScanRequest:
    """The activity "blocklist_fleet_scan": scan the tenant's (None: the fleet's) targets, record every
    answer and decision in the database under `workflow_id`, return only counts and decisions."""

    tenant: str | None
    workflow_id: str
    zones: list[str] | None = None  # catalogue names; None: every zone
    page_bytes: int = PAGE_BYTES


@dataclass
class ScanOutcome:
    """What a fleet scan hands back through Temporal: counts, broken zones, and the decisions that act
    (action != none), first page inline; pages 1..pages-1 are read back with "blocklist_scan_page".
    Per-answer results stay in the database (blocklist_scan_answer), so the size does not grow with
    the fleet: it grows with the listings, and a page is bounded in bytes (models.scan_pages)."""

    targets: int = 0
    queries: int = 0
    listed: int = 0
    unknown: int = 0
    not_listed: int = 0
    reputation: int = 0
    #: "zone_name: reason" per zone that failed its self-test (its answers are not used).
    broken: list[str] = field(default_factory=list)
    #: Catalogue names of those zones (the alert's key).
    broken_zones: list[str] = field(default_factory=list)
    decisions: list[ScanDecision] = field(default_factory=list)
    pages: int = 1
    seconds: float = 0.0
    #: Decisions that act, over all pages.
    actions: int = 0


@dataclass
class ScanPageRequest:
    workflow_id: str
    page: int
