"""BlocklistScanWorkflow acting page by page across continue-as-new runs (issue 14), on the time-skipping
server with the real activities and a real database (SQLite and PostgreSQL).

One decision per page (page_bytes=1) and three pages per run force four runs for twelve acting decisions
of every kind: a retirement, a failover run again, an extension (made to fail: a problem), a new listing,
a re-warm, and seven listings of one tenant over its blast radius. Each decision is acted on exactly once
(spies around the real activities count the calls), the blast-radius, broken-zones and problems alerts go
out once per scan, and the `summary` query shows the progress across runs while a later run is busy. The
scan's DNS side is a fixed report under the real "blocklist_fleet_scan" (the blocklist feature tests it
against rbldnsd); the server never suggests continue-as-new, so the page bound is what continues here.

Acting concurrently (act_concurrency): the same twelve decisions in pages of six, three and three, acted
on one at a time and then four at a time from the same seed, give the same summary, calls and alerts.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

from sqlmodel import select
from temporalio import activity
from temporalio.client import WorkflowHistory
from temporalio.exceptions import ApplicationError
from temporalio.worker import Replayer

from activities.blocklists import BrokenZone, ListedEntry, ScanReport, TargetReport
from activities.db import session_scope
from activities.failover import QuarantineAction, apply_quarantine_action
from activities.fleet_scan import fleet_scan_activity_with
from client.histories import run_histories
from client.relay import start_failover_saga, start_ip_warmup
from models.failover import saga_id
from models.failover_contracts import StartSagaRequest, StartSagaResult
from models.failover_tables import BlocklistScanRun
from models.scan_contracts import ScanInput, ScanSummary
from models.tables import BlocklistEvent, SendingIp
from models.warmup_contracts import StartWarmupRequest
from tests import failover_support as fs
from workflows.blocklist_scan import BlocklistScanWorkflow

# fo-c: 25 sending IPs; seven listings exceed its blast radius (five).
Fleet = dict[str, list[tuple[str, str, str | None]]]
WIDE: Fleet = {"fo-c": [(f"127.0.41.{n}", "active", None) for n in range(51, 76)]}
WIDE["fo-c"] += [("127.0.41.91", "standby", None), ("127.0.41.92", "standby", None)]
HELD = [f"127.0.41.{n}" for n in (52, 54, 56, 58, 60, 62, 64)]
BLOCK_AT = HELD[2]  # page 7: the third run is busy acting on it while the test queries
EXTEND_FAILS = "127.0.40.13"


def _entry(zone: str = "zen.test") -> ListedEntry:
    return ListedEntry(zone="test-zen", zone_name=zone, codes=["127.0.0.2"], meaning="SBL",
                       delist_url="https://check.spamhaus.org/")


LISTED = {"127.0.40.11": [_entry()], "127.0.40.31": [_entry()], "fo13.example": [_entry("dbl.test")],
          **{a: [_entry()] for a in HELD}}


def _fake_scan() -> Any:
    async def scanner(targets: Any, **_: Any) -> ScanReport:
        reports = [TargetReport(t.kind, t.value, t.tenant, listed=list(LISTED.get(t.value, []))) for t in targets]
        now = dt.datetime.now(dt.UTC).isoformat()
        return ScanReport(started_at=now, finished_at=now, zones=["test-zen"],
                          broken=[BrokenZone("test-broken", "broken.test", "self-test: 127.0.0.2 not listed")],
                          targets=reports, queries=len(reports), listed=sum(map(len, LISTED.values())))

    return fleet_scan_activity_with(scanner)


def _seed(url: str) -> None:
    fs.seed(url, {**fs.FLEET, **WIDE})
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    future = dt.datetime.now(dt.UTC) + dt.timedelta(days=3)
    quarantine = {"127.0.40.11": (past, 3), "127.0.40.12": (future, 0), "127.0.40.13": (past, 1),
                  "127.0.40.32": (past, 2)}
    with session_scope(url) as s:
        for ip in s.exec(select(SendingIp).where(SendingIp.address.in_(list(quarantine)))):  # type: ignore[attr-defined]
            ip.quarantine_until, ip.quarantine_extensions = quarantine[ip.address]
            ip.status, ip.weight, ip.daily_quota = "quarantine", 0, 0  # type: ignore[assignment]
            s.add(ip)
            if ip.address == "127.0.40.12":  # quarantined by a failover that never recorded an outcome
                s.add(BlocklistEvent(ip_id=ip.id, zone="zen.test", workflow_id=saga_id("fo-a", ip.address)))


class Spies:
    """Same-named activities that count each call of the scan (the sagas call some of them too) and how
    many are in flight at once, then run the real activity (one injected failure). The call on `block_at`
    is held until the test has looked at the scan, once the calls in `after` have finished; with `gate`,
    the first calls wait (up to 30 s) until that many are in flight together."""

    def __init__(self, block_at: str | None = BLOCK_AT, after: frozenset[tuple[str, str]] = frozenset(),
                 gate: int = 1) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()
        self.block_at, self.after, self.gate = block_at, after, gate
        self.blocked = asyncio.Event()
        self.release = asyncio.Event()
        self.together = asyncio.Event()
        self.in_flight = self.most = 0
        self.finished: list[tuple[str, str]] = []

    @contextlib.asynccontextmanager
    async def watch(self, kind: str, address: str) -> AsyncIterator[None]:
        if activity.info().workflow_type != "BlocklistScanWorkflow":
            yield
            return
        self.calls[kind, address] += 1
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        if self.in_flight >= self.gate:
            self.together.set()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.together.wait(), 30)
            if address == self.block_at:
                await _until(lambda: self.after <= set(self.finished))
                self.blocked.set()
                await self.release.wait()
            yield
        finally:
            self.in_flight -= 1
            self.finished.append((kind, address))

    def activities(self) -> list[Any]:
        @activity.defn(name="start_failover_saga")
        async def saga(req: StartSagaRequest) -> StartSagaResult:
            async with self.watch("saga", req.address):
                return await start_failover_saga(req)

        @activity.defn(name="blocklist_quarantine_action")
        async def quarantine(req: QuarantineAction) -> bool:
            async with self.watch(req.action, req.address):
                if req.address == EXTEND_FAILS:
                    raise ApplicationError("injected: database refused the extension", non_retryable=True)
                return await asyncio.to_thread(apply_quarantine_action, req)

        @activity.defn(name="start_ip_warmup")
        async def warmup(req: StartWarmupRequest) -> str:
            async with self.watch("warmup", req.address):
                return await start_ip_warmup(req)

        return [saga, quarantine, warmup]


async def _until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def test_every_decision_acted_on_once_across_runs(temporal_time_skipping, db_url: str) -> None:
    url, alerts, spies = db_url, fs.AlertLog(), Spies()
    _seed(url)
    env = temporal_time_skipping
    client = env.client
    wid = f"scan-{uuid.uuid4().hex[:6]}"
    async with fs.engine_worker(client, [alerts.activity(), _fake_scan(), *spies.activities()]) as queue:
        handle = await client.start_workflow(BlocklistScanWorkflow.run, ScanInput(page_bytes=1, pages_per_run=3),
                                             id=wid, task_queue=queue, result_type=ScanSummary)
        first_run = handle.result_run_id
        assert first_run
        await asyncio.wait_for(spies.blocked.wait(), timeout=60)
        # the third run is acting on page 7: the summary carries what the first two runs did
        running = client.get_workflow_handle(wid)
        mid: ScanSummary = await running.query(BlocklistScanWorkflow.summary)
        assert await running.query(BlocklistScanWorkflow.phase) == "act"
        assert (mid.runs, mid.pages, mid.pages_done, mid.actions, mid.acted) == (3, 12, 7, 12, 7)
        assert mid.sagas == [saga_id("fo-a", "127.0.40.12"), saga_id("fo-b", "127.0.40.31"),
                             saga_id("fo-c", HELD[0]), saga_id("fo-c", HELD[1])]
        assert (mid.retired, mid.rewarming, mid.extended) == (["127.0.40.11"], ["127.0.40.32"], [])
        assert len(mid.problems) == 1 and mid.problems[0].startswith(f"{EXTEND_FAILS} extend:")
        assert mid.targets == 2 * (4 + 2 + 25) and mid.listed == len(LISTED) and mid.broken_zones
        spies.release.set()
        with env.auto_time_skipping_disabled():  # held sagas must not time out while the scan finishes
            summary = await handle.result()
        assert await running.query(BlocklistScanWorkflow.summary) == summary  # the last run answers too
        histories = await run_histories(client, wid, first_run)
        for wf in summary.sagas:
            await fs.end_workflow(client, wf)

    # four runs, each replaying on today's code
    assert summary.runs == len(histories) == 4
    for history in histories:
        await Replayer(workflows=[BlocklistScanWorkflow]).replay_workflow(history)
    assert (summary.pages, summary.pages_done, summary.actions, summary.acted) == (12, 12, 12, 12)
    # each acting decision acted on exactly once, in the scan's order
    with session_scope(url) as s:
        [run] = s.exec(select(BlocklistScanRun).where(BlocklistScanRun.workflow_id == wid)).all()
        acting = {d["address"]: d["action"] for d in run.decisions if d["action"] != "none"}
    kind = {"start_saga": "saga", "resume_saga": "saga", "rest_and_rewarm": "rest_and_rewarm"}
    expected = Counter((kind.get(a, a), address) for address, a in acting.items()) + Counter(
        {("warmup", "127.0.40.32"): 1})
    assert spies.calls == expected and set(spies.calls.values()) == {1}
    assert acting["127.0.40.12"] == "resume_saga" and acting[EXTEND_FAILS] == "extend" and len(acting) == 12
    assert summary.sagas == [saga_id("fo-a", "127.0.40.12"), saga_id("fo-b", "127.0.40.31"),
                             *(saga_id("fo-c", a) for a in HELD)]
    assert summary.counts == {"sagas": 9, "retired": 1, "rewarming": 1, "problems": 1}
    assert (summary.retired, summary.rewarming, summary.extended) == (["127.0.40.11"], ["127.0.40.32"], [])
    # one alert per scan: blast radius (per tenant), broken zones, problems; the retirement once
    keys = Counter(a.key for a in alerts.alerts)
    for key in (f"{wid}/blast-radius/fo-c", "blocklist-scan/broken/test-broken", f"{wid}/problems",
                "retire/127.0.40.11"):
        assert keys[key] == 1, (key, keys)
    by_key = {a.key: a for a in alerts.alerts}
    blast = by_key[f"{wid}/blast-radius/fo-c"]
    assert blast.severity == "critical" and "7 IPs of fo-c" in blast.title
    assert "this scan lists 7 of the tenant's 25 sending IPs" in blast.body
    assert all(a in blast.body for a in HELD) and "zen.test" in blast.body
    assert EXTEND_FAILS in by_key[f"{wid}/problems"].body and "injected" in by_key[f"{wid}/problems"].body
    # nothing of fo-c was quarantined (all held), the retirement and the re-warm took effect
    st = fs.statuses(url)
    assert all(st[a] == "active" for a in HELD)
    assert st["127.0.40.11"] == "retiring" and st["127.0.40.32"] == "warming" and st[EXTEND_FAILS] == "quarantine"


# Act concurrency: pages of six, three and three decisions (two runs), the first page's first decision
# (the retirement) completing after the five others.
PAGE_OF_SIX = 1500
FIRST, REST_OF_PAGE = "127.0.40.11", frozenset({("saga", "127.0.40.12"), ("extend", EXTEND_FAILS),
                                                ("saga", "127.0.40.31"), ("warmup", "127.0.40.32"),
                                                ("saga", HELD[0])})
ACTING = {"start_failover_saga", "blocklist_quarantine_action"}


def _empty(url: str) -> None:
    """Every table emptied (the schema stays): the next scan starts from the same seed."""
    from sqlmodel import SQLModel

    from activities.db import get_engine

    with get_engine(url).begin() as conn:
        for table in reversed(SQLModel.metadata.sorted_tables):
            conn.execute(table.delete())


def _burst(histories: list[WorkflowHistory]) -> int:
    """Most decisions' first activities (saga start, quarantine action) scheduled by one workflow task."""
    most = n = 0
    for e in (e for h in histories for e in h.events):
        if e.HasField("workflow_task_completed_event_attributes"):
            n = 0
        elif (e.HasField("activity_task_scheduled_event_attributes")
              and e.activity_task_scheduled_event_attributes.activity_type.name in ACTING):
            n += 1
            most = max(most, n)
    return most


async def _only_first_open(handle: Any) -> None:
    """Wait until the workflow is idle with one activity open (the held decision's): every other decision
    of the page, its webhook event and alert included, has completed and the workflow has seen it."""
    while True:
        events = (await handle.fetch_history()).events
        scheduled = {e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name for e in events
                     if e.HasField("activity_task_scheduled_event_attributes")}
        for e in events:
            for field in ("activity_task_completed_event_attributes", "activity_task_failed_event_attributes"):
                if e.HasField(field):
                    scheduled.pop(getattr(e, field).scheduled_event_id, None)
        if (list(scheduled.values()) == ["blocklist_quarantine_action"] and len(events) > 20
                and events[-1].HasField("workflow_task_completed_event_attributes")):
            return
        await asyncio.sleep(0.1)


async def _scan(env: Any, inp: ScanInput, spies: Spies, alerts: fs.AlertLog
                ) -> tuple[str, ScanSummary, list[WorkflowHistory], ScanSummary | None]:
    """One scan to its end on its own worker (nothing it started runs after it); with `spies.block_at`,
    also the `summary` query while that decision is held and the rest of its page is done."""
    client, wid, mid = env.client, f"scan-{uuid.uuid4().hex[:6]}", None
    async with fs.engine_worker(client, [alerts.activity(), _fake_scan(), *spies.activities()]) as queue:
        handle = await client.start_workflow(BlocklistScanWorkflow.run, inp, id=wid, task_queue=queue,
                                             result_type=ScanSummary)
        if spies.block_at:
            await asyncio.wait_for(spies.blocked.wait(), timeout=60)
            await asyncio.wait_for(_only_first_open(handle), timeout=60)
            mid = await handle.query(BlocklistScanWorkflow.summary)
            spies.release.set()
        with env.auto_time_skipping_disabled():  # held sagas must not time out while the scan finishes
            summary = await handle.result()
        histories = await run_histories(client, wid, handle.result_run_id or "")
    for saga in summary.sagas:
        await fs.end_workflow(client, saga)
    return wid, summary, histories, mid


def _scan_alerts(alerts: fs.AlertLog, wid: str) -> Counter[str]:
    """The scan's own alerts (the sagas alert too), its workflow id written <scan>."""
    return Counter(a.key.replace(wid, "<scan>") for a in alerts.alerts if not a.key.startswith("failover/"))


async def test_concurrent_acting_matches_one_at_a_time(temporal_time_skipping, db_url: str) -> None:
    """The same scan acted on one decision at a time, then four at a time on the same seed: the second
    has four decisions in flight together (never more), acts on each exactly once, loses nothing to the
    injected failure, alerts once, and returns the same summary, although the first page's first
    decision completes after the five others; mid-page, the `summary` query shows no decision whose
    predecessors are not all done. Both runs' histories replay."""
    env, url = temporal_time_skipping, db_url
    _seed(url)
    one_alerts, one = fs.AlertLog(), Spies(block_at=None)
    one_wid, one_summary, one_histories, _ = await _scan(
        env, ScanInput(page_bytes=PAGE_OF_SIX, pages_per_run=2, act_concurrency=1), one, one_alerts)
    _empty(url)
    _seed(url)
    four_alerts, four = fs.AlertLog(), Spies(block_at=FIRST, after=REST_OF_PAGE, gate=4)
    four_wid, summary, histories, mid = await _scan(
        env, ScanInput(page_bytes=PAGE_OF_SIX, pages_per_run=2, act_concurrency=4), four, four_alerts)

    # the same scan: three pages (6, 3, 3 decisions), two runs, every kind of decision and the failure
    assert (summary.pages, summary.runs, summary.actions, summary.acted) == (3, 2, 12, 12)
    assert summary.problems == [f"{EXTEND_FAILS} extend: injected: database refused the extension"]
    assert summary.counts == {"sagas": 9, "retired": 1, "rewarming": 1, "problems": 1}
    assert summary == one_summary
    # bounded concurrency: four in flight at once, in one workflow task; one at a time before
    assert (one.most, _burst(one_histories)) == (1, 1)
    assert (four.most, _burst(histories)) == (4, 4)
    # the first decision completed last, yet the summary shows it first; mid-page nothing was shown
    # out of order (the five others were done and seen by the workflow)
    assert four.finished.index(("retire", FIRST)) > four.finished.index(("saga", HELD[0]))
    assert one.finished.index(("retire", FIRST)) < one.finished.index(("saga", HELD[0]))
    assert mid is not None and (mid.acted, mid.counts, mid.sagas, mid.problems) == (0, {}, [], [])
    assert summary.retired == [FIRST] and summary.sagas[0] == saga_id("fo-a", "127.0.40.12")
    # each decision acted on exactly once, in both
    assert four.calls == one.calls and set(four.calls.values()) == {1} and len(four.calls) == 13
    # the scan's alerts, once each: blast radius (fo-c), retirement, broken zones, problems
    assert _scan_alerts(four_alerts, four_wid) == _scan_alerts(one_alerts, one_wid) == Counter(
        ["<scan>/blast-radius/fo-c", "retire/127.0.40.11", "blocklist-scan/broken/test-broken", "<scan>/problems"])
    st = fs.statuses(url)
    assert st[FIRST] == "retiring" and st["127.0.40.32"] == "warming" and all(st[a] == "active" for a in HELD)
    for history in [*one_histories, *histories]:
        await Replayer(workflows=[BlocklistScanWorkflow]).replay_workflow(history)
