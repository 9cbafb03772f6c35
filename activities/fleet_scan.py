"""The fleet's blocklist scan in one activity: targets from the database, DNS, evaluation, and the
results written back, so only counts and the decisions that act cross Temporal (issue 14: the whole
ScanReport passed the 2 MB payload limit at about 4,300 IPs).

Per-answer results (every answer that is not a clean NXDOMAIN) go to blocklist_scan_answer, the
run and its decisions to blocklist_scan_run (activities.failover.evaluate_scan), decision pages
past the first to blocklist_scan_page. A retry of the activity rewrites its workflow's rows.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

from sqlalchemy import delete, insert
from sqlmodel import col, select
from temporalio import activity
from temporalio.converter import DataConverter
from temporalio.exceptions import ApplicationError

from activities.blocklists import Progress, ScanReport, ScanTarget, inventory_targets, scan
from activities.db import session_scope
from activities.failover import evaluate_scan
from activities.keepalive import heartbeating
from models.blocklist import CatalogError
from models.failover import ScanAction, ScanDecision
from models.failover_tables import BlocklistScanAnswer, BlocklistScanPage, BlocklistScanRun
from models.scan_contracts import FleetScanRequest, ScanOutcome, ScanPageRequest
from models.scan_pages import PAGE_BYTES, paginate

T = TypeVar("T")
#: Seconds between heartbeats while the database part runs (the DNS part beats on its own progress).
BEAT_EVERY = 5.0


class Scanner(Protocol):
    def __call__(self, targets: Sequence[ScanTarget], *, zones: Sequence[str] | None = None,
                 progress: Progress | None = None) -> Awaitable[ScanReport]: ...


def answer_rows(report: ScanReport, workflow_id: str) -> list[dict[str, Any]]:
    """The report's answers that are not clean, as blocklist_scan_answer rows."""
    rows = []
    for t in report.targets:
        for status, entries in (("listed", t.listed), ("reputation", t.reputation)):
            rows += [{"workflow_id": workflow_id, "kind": t.kind, "target": t.value, "tenant": t.tenant,
                      "zone": e.zone, "zone_name": e.zone_name, "status": status, "codes": ",".join(e.codes)[:255],
                      "detail": e.meaning[:512]} for e in entries]
        rows += [{"workflow_id": workflow_id, "kind": t.kind, "target": t.value, "tenant": t.tenant, "zone": u.zone,
                  "zone_name": u.zone_name, "status": "unknown", "codes": "", "detail": u.reason[:512]}
                 for u in t.unknown]
    return rows


def _encode(decisions: list[ScanDecision]) -> str:
    payload = DataConverter.default.payload_converter.to_payloads([decisions])[0]
    return payload.data.decode()


def record_scan(report: ScanReport, workflow_id: str, url: str | None = None,
                page_bytes: int = PAGE_BYTES) -> ScanOutcome:
    """Evaluate a report against the database (evaluate_scan: one decision per IP, the run row), keep
    its answers and decision pages, and return the outcome. Idempotent per workflow id."""
    with session_scope(url) as session:  # a retry starts over
        for table in (BlocklistScanAnswer, BlocklistScanPage, BlocklistScanRun):
            session.execute(delete(table).where(col(table.workflow_id) == workflow_id))
    outcome, pages = outcome_of(report, evaluate_scan(report, workflow_id, url), page_bytes)
    rows = answer_rows(report, workflow_id)
    with session_scope(url) as session:
        for i in range(0, len(rows), 5000):
            session.execute(insert(BlocklistScanAnswer), rows[i:i + 5000])
        for n, page in enumerate(pages[1:], start=1):
            session.add(BlocklistScanPage(workflow_id=workflow_id, page=n, decisions=_encode(page)))
    return outcome


def outcome_of(report: ScanReport, decisions: Sequence[ScanDecision], page_bytes: int = PAGE_BYTES
               ) -> tuple[ScanOutcome, list[list[ScanDecision]]]:
    """The activity's result (counts, broken zones, the first page of the decisions that act) and all
    pages. Pure: what crosses Temporal is decided here, and its size is tested at 100,000 IPs."""
    acting = [d for d in decisions if d.action != ScanAction.NONE]
    pages = paginate(acting, page_bytes)
    return ScanOutcome(
        targets=len(report.targets), queries=report.queries, listed=report.listed, unknown=report.unknown,
        not_listed=report.not_listed, reputation=report.reputation,
        broken=[f"{b.zone_name}: {b.reason}" for b in report.broken], broken_zones=[b.zone for b in report.broken],
        decisions=pages[0], pages=len(pages), seconds=round(report.self_test_seconds + report.scan_seconds, 3),
        actions=len(acting),
    ), pages


def scan_page(req: ScanPageRequest, url: str | None = None) -> list[ScanDecision]:
    with session_scope(url) as session:
        row = session.exec(select(BlocklistScanPage).where(BlocklistScanPage.workflow_id == req.workflow_id,
                                                           BlocklistScanPage.page == req.page)).first()
        if row is None:
            raise ApplicationError(f"scan {req.workflow_id} has no decision page {req.page}", type="BadRequest",
                                   non_retryable=True)
        data = row.decisions.encode()
    from temporalio.api.common.v1 import Payload

    payload = Payload(metadata={"encoding": b"json/plain"}, data=data)
    out: list[ScanDecision] = DataConverter.default.payload_converter.from_payloads([payload],
                                                                                   [list[ScanDecision]])[0]
    return out


async def _beating(fn: Callable[[], T], detail: str) -> T:
    """Run a blocking step in a thread, heartbeating meanwhile (a 10,000-IP evaluation takes seconds)."""
    task = asyncio.ensure_future(asyncio.to_thread(fn))
    while True:
        done, _ = await asyncio.wait({task}, timeout=BEAT_EVERY)
        if done:
            return task.result()
        activity.heartbeat(detail)


async def fleet_scan(req: FleetScanRequest, scanner: Scanner = scan) -> ScanOutcome:
    """The activity's body: targets, scan (heartbeating its progress), record. Bad input is a
    non-retryable BadScanRequest, an unknown tenant UnknownTenant."""
    activity.heartbeat("targets")
    try:
        targets = await _beating(lambda: inventory_targets(req.tenant), "targets")
    except LookupError as exc:
        raise ApplicationError(str(exc), type="UnknownTenant", non_retryable=True) from None
    last = [0.0]

    def beat(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] > 2.0:
            last[0] = now
            activity.heartbeat("scan", done, total)

    try:
        report = await scanner(targets, zones=req.zones, progress=beat)
    except (ValueError, CatalogError) as exc:
        raise ApplicationError(str(exc), type="BadScanRequest", non_retryable=True) from None
    activity.heartbeat("record", len(report.targets))
    return await _beating(lambda: record_scan(report, req.workflow_id, page_bytes=req.page_bytes), "record")


def fleet_scan_activity_with(scanner: Scanner) -> Callable[[FleetScanRequest], Awaitable[ScanOutcome]]:
    """The activity "blocklist_fleet_scan" over another scanner (tests replace the DNS side only)."""

    @activity.defn(name="blocklist_fleet_scan")
    async def blocklist_fleet_scan(req: FleetScanRequest) -> ScanOutcome:
        return await fleet_scan(req, scanner)

    return blocklist_fleet_scan


#: Scan, evaluate and record in one activity. Idempotent (DNS reads; the rows are rewritten). Callers:
#: heartbeat_timeout >= 30 s, start_to_close_timeout sized for the fleet's queries.
blocklist_fleet_scan = fleet_scan_activity_with(scan)


@activity.defn(name="blocklist_scan_page")
@heartbeating
def blocklist_scan_page(req: ScanPageRequest) -> list[ScanDecision]:
    """Decision page `page` (>= 1) of a fleet scan."""
    return scan_page(req)


ACTIVITIES: list[Callable[..., Any]] = [blocklist_fleet_scan, blocklist_scan_page]
