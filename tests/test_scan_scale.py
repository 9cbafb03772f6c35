"""Blocklist scans at fleet scale (issue 14): what the scan activity hands to Temporal stays far below the
2 MB payload limit at 100,000 IPs, with a handful of listings and in the worst case allowed (every zone of
the shipped catalogue lists every IP and domain of one tenant), and so does everything else the scan sends
while it acts page by page (continue-as-new input, result, saga starts, alerts); pages past the first
round-trip through the database; scans that started on earlier code replay.

Sizes are measured with temporalio's default data converter, as the worker serializes the result. The
synthetic scans have no DNS (100,000 x 12 queries are the bench's business: bench/blocklists.py)."""

from __future__ import annotations

import datetime as dt
import functools
from pathlib import Path

from temporalio.converter import DataConverter

from activities.blocklists import ListedEntry, ScanReport, TargetReport
from activities.failover import _listings
from activities.fleet_scan import outcome_of, record_scan, scan_page
from models.blocklist import Kind, load_catalog
from models.failover import (
    SAME_SCAN_SHOWN,
    IpScanState,
    QuarantinePolicy,
    ScanAction,
    ScanDecision,
    scan_decision,
    tenant_scan_decisions,
)
from models.scan_contracts import ScanOutcome, ScanPageRequest
from models.scan_pages import PAGE_BYTES, decision_size, paginate
from tests import failover_support as fs

LIMIT = 2 * 1024 * 1024  # Temporal's default blob size limit per payload
FAR_BELOW = LIMIT // 4
N = 100_000
NOW = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)


def _size(value: object) -> int:
    return DataConverter.default.payload_converter.to_payloads([value])[0].ByteSize()


def _address(i: int) -> str:
    return f"198.{18 + i // 65536}.{i // 256 % 256}.{i % 256}"


def _entries(kind: Kind) -> list[ListedEntry]:
    """One listing per zone of that kind in the shipped catalogue, with its real code, meaning and URL."""
    out = []
    for z in load_catalog().zones:
        if z.kind is kind:
            code, spec = next(iter(z.codes.items())) if z.codes else ("127.0.0.2", None)
            out.append(ListedEntry(z.name, z.zone, [code], spec.meaning if spec else "listed", z.delist_url))
    return out


def _scan(listed: set[int], everywhere: bool) -> tuple[ScanReport, list[ScanDecision]]:
    """A report of N IPs and their domains, and the decisions evaluate_scan would take for it (the same pure
    rules, without the database: every IP active in one tenant)."""
    ip_entries, dom_entries = _entries(Kind.IP), _entries(Kind.DOMAIN)
    one = ip_entries[:1]
    targets, states = [], []
    for i in range(N):
        address, domain = _address(i), f"s{i}.fleet-1.example"
        hit = i in listed
        ip_listed = (ip_entries if everywhere else one) if hit else []
        dom_listed = dom_entries if hit and everywhere else []
        targets += [TargetReport("ip", address, "fleet-1", listed=ip_listed),
                    TargetReport("domain", domain, "fleet-1", listed=dom_listed)]
        states.append(IpScanState("fleet-1", address, "active", None, 0,
                                  _listings(ip_listed, address) + _listings(dom_listed, domain)))
    policy = QuarantinePolicy(days=7, max_extensions=3)
    decisions = tenant_scan_decisions([scan_decision(s, NOW, policy) for s in states], {"fleet-1": N}, 0.2)
    n_listed = sum(len(t.listed) for t in targets)
    report = ScanReport(started_at=NOW.isoformat(), finished_at=NOW.isoformat(), zones=[], broken=[],
                        targets=targets, queries=N * 12, listed=n_listed, not_listed=N * 12 - n_listed)
    return report, decisions


def test_a_handful_of_listings_in_100k_ips_is_a_few_kilobytes() -> None:
    report, decisions = _scan({7, 70_000, 99_999}, everywhere=False)
    before = _size(report)
    assert before > 10 * LIMIT  # what used to cross Temporal (the whole report)
    outcome, pages = outcome_of(report, decisions)
    assert len(pages) == 1 and outcome.pages == 1
    assert [d.address for d in outcome.decisions] == [_address(i) for i in (7, 70_000, 99_999)]
    assert all(d.action == ScanAction.START_SAGA and len(d.same_scan) == 2 for d in outcome.decisions)
    assert outcome.targets == 2 * N and outcome.listed == 3
    size = _size(outcome)
    print(f"\n100,000 IPs, 3 listed: scan result {size} bytes (the report was {before} bytes)")
    assert size < 8 * 1024


@functools.cache
def _worst() -> tuple[ScanReport, list[ScanDecision]]:
    """Every zone of the catalogue lists every IP and domain of one 100,000-IP tenant."""
    return _scan(set(range(N)), everywhere=True)


def test_worst_case_every_zone_lists_every_ip_stays_far_below_the_limit() -> None:
    """The worst shape allowed: 100,000 new listings on every IP and domain zone of the catalogue, one
    tenant (blast radius: all held). Each decision is bounded (its zones, SAME_SCAN_SHOWN siblings), so
    pages are bounded in bytes whatever their number."""
    report, decisions = _worst()
    outcome, pages = outcome_of(report, decisions)
    assert outcome.pages == len(pages) > 1
    assert sum(len(p) for p in pages) == N
    first = _size(outcome)
    largest = max(_size(p) for p in pages[1::97])  # each page is bounded by construction: a sample
    print(f"\n100,000 IPs, all listed everywhere: {len(pages)} pages, scan result {first} bytes, "
          f"largest further page {largest} bytes (limit {LIMIT})")
    assert first < FAR_BELOW and largest < FAR_BELOW
    assert first <= PAGE_BYTES + 16 * 1024
    d = outcome.decisions[0]
    assert d.blast_radius and len(d.same_scan) == SAME_SCAN_SHOWN + 1
    assert d.same_scan[-1] == f"+{N - 1 - SAME_SCAN_SHOWN} more IPs of fleet-1 (listed by this scan)"


def test_pages_and_answers_round_trip_through_the_database(db_url: str) -> None:
    """record_scan on a real database: answers stored per target and zone, decisions past the first page
    read back equal (a tenant of 25 active IPs all listed: small pages forced)."""
    from activities.db import session_scope
    from models.failover_tables import BlocklistScanAnswer, BlocklistScanRun

    tenant: dict[str, list[tuple[str, str, str | None]]] = {
        "fo-c": [(f"127.0.41.{n}", "active", None) for n in range(1, 26)]}
    fs.seed(db_url, tenant)
    entry = ListedEntry("test-zen", "zen.test", ["127.0.0.2"], "SBL", "https://check.spamhaus.org/")
    targets = [TargetReport("ip", a, "fo-c", listed=[entry]) for a, _, _ in tenant["fo-c"]]
    report = ScanReport(started_at=NOW.isoformat(), finished_at=NOW.isoformat(), zones=["test-zen"], broken=[],
                        targets=targets, queries=25, listed=25)
    outcome = record_scan(report, "scan-pages", db_url, page_bytes=2000)
    again = record_scan(report, "scan-pages", db_url, page_bytes=2000)  # a retried activity rewrites
    assert outcome.pages > 2 and again.pages == outcome.pages
    decisions = list(outcome.decisions)
    for page in range(1, outcome.pages):
        decisions += scan_page(ScanPageRequest("scan-pages", page), db_url)
    assert sorted(d.address for d in decisions) == sorted(a for a, _, _ in tenant["fo-c"])
    assert all(isinstance(d, ScanDecision) and d.action == ScanAction.START_SAGA and d.blast_radius
               and d.listings[0].zone == "zen.test" for d in decisions)
    with session_scope(db_url) as s:
        from sqlmodel import select

        answers = s.exec(select(BlocklistScanAnswer).where(BlocklistScanAnswer.workflow_id == "scan-pages")).all()
        runs = s.exec(select(BlocklistScanRun).where(BlocklistScanRun.workflow_id == "scan-pages")).all()
    assert len(answers) == 25 and {a.status for a in answers} == {"listed"} and len(runs) == 1
    assert {(a.zone, a.zone_name, a.codes, a.detail) for a in answers} == {("test-zen", "zen.test", "127.0.0.2",
                                                                          "SBL")}


def test_scan_of_the_earlier_code_replays() -> None:
    """A scan recorded from the code before issue 14 (targets, report and evaluation as three activities)
    replays on today's workflow: one running across the upgrade finishes instead of failing."""
    import asyncio

    from temporalio.client import WorkflowHistory
    from temporalio.worker import Replayer

    from workflows.blocklist_scan import BlocklistScanWorkflow

    f = Path(__file__).parent / "data" / "scan-history-v1.json"
    asyncio.run(Replayer(workflows=[BlocklistScanWorkflow]).replay_workflow(
        WorkflowHistory.from_json("scan-v1", f.read_text())))


def test_scan_before_paging_replays() -> None:
    """A scan recorded from the code before PAGED_PATCH (three decision pages read first, then twelve
    decisions acted on in one run, the blast-radius summary at the end) replays on today's workflow."""
    import asyncio

    from temporalio.client import WorkflowHistory
    from temporalio.worker import Replayer

    from workflows.blocklist_scan import BlocklistScanWorkflow

    f = Path(__file__).parent / "data" / "scan-history-v2.json"
    history = WorkflowHistory.from_json("scan-v2", f.read_text())
    pages = [e for e in history.events if e.HasField("activity_task_scheduled_event_attributes")
             and e.activity_task_scheduled_event_attributes.activity_type.name == "blocklist_scan_page"]
    assert len(pages) == 2  # pages 1 and 2 read before acting: the path under test
    asyncio.run(Replayer(workflows=[BlocklistScanWorkflow]).replay_workflow(history))


def test_scan_acting_one_at_a_time_replays() -> None:
    """A paged scan recorded from the code before CONCURRENT_ACT_PATCH (twelve decisions in three pages of
    six, three and three, two runs; one decision after the other, the blast-radius alert after the
    tenant's first held decision) replays on today's workflow, both runs: the patch is absent, so each
    page is acted on one decision at a time, in the recorded order."""
    import asyncio
    import json

    from temporalio.client import WorkflowHistory
    from temporalio.worker import Replayer

    from workflows.blocklist_scan import CONCURRENT_ACT_PATCH, BlocklistScanWorkflow

    runs = []
    for n in (1, 2):
        f = Path(__file__).parent / "data" / f"scan-history-v3-run{n}.json"
        runs.append(WorkflowHistory.from_json(f"scan-v3-run{n}", f.read_text()))
    first = [e.activity_task_scheduled_event_attributes.activity_type.name for e in runs[0].events
             if e.HasField("activity_task_scheduled_event_attributes")]
    assert first[:2] == ["blocklist_fleet_scan", "blocklist_quarantine_action"] and "blocklist_scan_page" in first
    assert runs[0].events[-1].HasField("workflow_execution_continued_as_new_event_attributes")
    patches = [json.loads(e.marker_recorded_event_attributes.details["patch-data"].payloads[0].data)["id"]
               for r in runs for e in r.events if e.HasField("marker_recorded_event_attributes")]
    assert "scan-pages-continue-as-new" in patches and CONCURRENT_ACT_PATCH not in patches
    for history in runs:
        asyncio.run(Replayer(workflows=[BlocklistScanWorkflow]).replay_workflow(history))


def test_a_page_holds_at_least_one_decision() -> None:
    _, decisions = _scan({1, 2, 3}, everywhere=False)
    acting = [d for d in decisions if d.action != ScanAction.NONE]
    for page_bytes in (-5, 0, 1):
        assert paginate(acting, page_bytes) == [[d] for d in acting]
    assert paginate([], 1) == [[]] and paginate(acting) == [acting]


def test_what_the_paged_scan_carries_and_sends_at_100k_stays_far_below_the_limit() -> None:
    """The rest of what crosses Temporal while a 100,000-IP worst-case scan acts, at its largest: the
    continue-as-new input and the result (also the `summary` query) after 100,000 sagas and as many
    problems (lists capped, counts exact), thousands of tenants over their blast radius, a saga's start
    (request and FailoverInput) and the blast-radius and problems alerts of the largest decision."""
    from activities.alerts import Alert
    from models.failover import listed_by_scan, saga_id
    from models.failover_contracts import FailoverInput, StartSagaRequest
    from models.scan_contracts import ScanInput, ScanProgress, ScanSummary
    from models.scan_progress import SHOWN, blast_radius_alert, first_blast_alert, problems_text, remember

    _, decisions = _worst()
    worst = max(decisions[:500], key=decision_size)  # every decision has the same shape
    assert listed_by_scan(worst) == N
    zones = [f"{z.zone}: self-test failed: {'x' * 200}" for z in load_catalog().zones]
    s = ScanSummary(targets=2 * N, queries=N * 15, listed=N * 15, broken_zones=zones, pages=N, actions=N)
    p = ScanProgress(s, broken_keys=[z.name for z in load_catalog().zones])
    tenants = [f"t{i:05d}".ljust(63, "x") for i in range(N // 2)]  # 50,000 tenants of 2 IPs, longest names
    for i in range(N):
        tenant = tenants[i // 2]
        remember(s, "sagas", saga_id(tenant, _address(i)))
        remember(s, "problems", f"{_address(i)} start_saga: {'activity error: ' * 50}")
        remember(s, "retired", _address(i))
        first_blast_alert(p, tenant)
        s.acted = s.pages_done = i + 1
    assert s.counts == {"sagas": N, "problems": N, "retired": N} and len(s.sagas) == len(s.problems) == SHOWN
    assert len(p.blast_alerted) == SHOWN and p.blast_alerted[-1] == tenants[-1]
    assert not first_blast_alert(p, tenants[-1])
    req = StartSagaRequest(worst.tenant, worst.address, list(worst.listings), "scan blocklist-scan/x",
                           list(worst.same_scan), worst.blast_radius)
    sizes = {
        "continue-as-new input": _size(ScanInput(progress=p)),
        "result and summary query": _size(s),
        "saga start": _size(req),
        "saga input": _size(FailoverInput(req.tenant, req.address, req.listings, req.detected_by, req.same_scan,
                                          req.blast_radius)),
        "blast-radius alert": _size(Alert("k", *blast_radius_alert(worst), "critical")),
        "problems alert": _size(Alert("k", "Blocklist scan: actions failed", problems_text(s), "critical")),
    }
    print(f"\n100,000 IPs, all listed everywhere, bytes: {sizes}")
    assert all(size < FAR_BELOW for size in sizes.values()), sizes
    assert problems_text(s).endswith(f"... and {N - SHOWN} more")


def test_outcome_type_round_trips() -> None:
    report, decisions = _scan({1, 2}, everywhere=True)
    outcome, _ = outcome_of(report, decisions)
    conv = DataConverter.default.payload_converter
    back = conv.from_payloads(conv.to_payloads([outcome]), [ScanOutcome])[0]
    assert back == outcome


def test_act_limit_keeps_a_scan_acting_within_bounds() -> None:
    from models.scan_contracts import MAX_ACT_CONCURRENCY, ScanInput, act_limit

    assert [act_limit(n) for n in (-3, 0, 1, 20, MAX_ACT_CONCURRENCY, 10_000)] == [1, 1, 1, 20, 500, 500]
    assert ScanInput().act_concurrency == 20
