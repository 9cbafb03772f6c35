"""The failover saga under the incidents of issue 11, on the time-skipping server with the real activities, the
real MtaDeployWorkflow (Postfix config rendered for a disabled host) and a real database (SQLite and PostgreSQL):
a held saga's IP is out of the deployed pool at once; listings of one scan are evidence for each other in any
order; a zone listing a whole tenant quarantines nothing without an operator; a failed saga is run again by the
next scan; a failed compensation is reported as failed with the state it left; a 75 s database outage is ridden
out. The scan's DNS side is replaced by a fixed report under the real `blocklist_fleet_scan` (the blocklist
feature tests it against rbldnsd); failures are injected with same-named activities that raise.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest
from sqlmodel import select
from temporalio import activity
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from activities.blocklists import ListedEntry, ScanReport, TargetReport
from activities.db import session_scope
from activities.failover import EvidenceRequest, collect_breaker_evidence, evaluate_scan
from activities.fleet_scan import fleet_scan_activity_with
from client.failovers import start_saga
from client.relay import deploy_tenant_pool
from models.deploys import DeployPoolRequest
from models.failover import Listing, ScanAction, saga_id
from models.failover_contracts import FailoverDecision, FailoverInput, SagaState, StartSagaRequest
from models.failover_tables import BlocklistScanRun
from models.scan_contracts import ScanInput, ScanSummary
from tests import failover_support as fs
from tests.failover_support import keep_history
from tests.support import activity_options
from workflows.blocklist_scan import BlocklistScanWorkflow
from workflows.failover import FailoverSaga

LISTED = "127.0.40.11"
# A tenant of 25 sending IPs and two standbys: five listings are 20%, within the default blast radius.
WIDE = {"fo-c": [(f"127.0.41.{n}", "active", None) for n in range(1, 26)]
        + [("127.0.41.31", "standby", None), ("127.0.41.32", "standby", None)]}
FIVE = [f"127.0.41.{n}" for n in (3, 7, 11, 15, 19)]


def _entry(zone: str = "zen.test") -> ListedEntry:
    return ListedEntry(zone="test-zen", zone_name=zone, codes=["127.0.0.2"], meaning="SBL",
                       delist_url="https://check.spamhaus.org/")


def _report(listed: list[str], tenant: dict[str, list[tuple[str, str, str | None]]]) -> ScanReport:
    now = dt.datetime.now(dt.UTC).isoformat()
    targets = [TargetReport("ip", a, t, listed=[_entry()] if a in listed else [])
               for t, ips in tenant.items() for a, status, _ in ips if status in ("active", "warming", "quarantine")]
    return ScanReport(started_at=now, finished_at=now, zones=["test-zen"], broken=[], targets=targets,
                      queries=len(targets), listed=len(listed))


def _fake_scan(listed: set[str]) -> Any:
    # The real "blocklist_fleet_scan" over a fixed DNS side: every scanned IP in `listed` is listed on zen.test,
    # the rest answer NXDOMAIN.
    async def scanner(targets: Any, **_: Any) -> ScanReport:
        now = dt.datetime.now(dt.UTC).isoformat()
        reports = [TargetReport(t.kind, t.value, t.tenant, listed=[_entry()] if t.value in listed else [])
                   for t in targets]
        return ScanReport(started_at=now, finished_at=now, zones=["test-zen"], broken=[], targets=reports,
                          queries=len(reports), listed=sum(t.value in listed for t in targets))

    return fleet_scan_activity_with(scanner)


def _raising(name: str) -> Any:
    @activity.defn(name=name)
    async def broken(*_args: Any) -> Any:
        raise ApplicationError(f"injected failure of {name}", type="Injected", non_retryable=True)

    return broken


def sending(url: str) -> set[str]:
    """What the database says sends: active and warming IPs."""
    return {a for a, s in fs.statuses(url).items() if s in ("active", "warming")}


def outcome_rows(url: str, address: str) -> list[str]:
    return [r.reason for r in fs.audit(url, address) if r.reason.startswith("failover step 6:")]


async def _scan(env: Any, queue: str) -> ScanSummary:
    handle = await env.client.start_workflow(BlocklistScanWorkflow.run, ScanInput(), id=f"scan-{uuid.uuid4().hex[:6]}",
                                             task_queue=queue, result_type=ScanSummary)
    with env.auto_time_skipping_disabled():  # held sagas must not time out while the scan finishes
        return await handle.result()


async def _state(client: Client, wid: str) -> SagaState:
    return await client.get_workflow_handle(wid, result_type=SagaState).result()


# --- 1. quarantine takes effect at once --------------------------------------------------------------------


async def test_held_saga_ip_is_out_of_the_deployed_pool(temporal_time_skipping, db_url: str) -> None:
    url, alerts = db_url, fs.AlertLog()
    fs.seed(url)
    fs.add_stats(url, "127.0.40.12", sent=10_000, complaints=50)  # unhealthy tenant: the breaker holds
    client = temporal_time_skipping.client
    async with fs.engine_worker(client, [alerts.activity()]) as queue:
        handle = await client.start_workflow(FailoverSaga.run, FailoverInput("fo-a", LISTED, [Listing("zen.test",
                                             LISTED)]), id=saga_id("fo-a", LISTED), task_queue=queue)
        with temporal_time_skipping.auto_time_skipping_disabled():
            held = await fs.wait_for(handle, lambda s: s["held"]
                                     and any(a.key.endswith("/held") for a in alerts.alerts))
            # while held: the deployed Postfix pools are exactly what the database says sends
            assert fs.statuses(url)[LISTED] == "quarantine"
            assert LISTED not in fs.bound_addresses()
            assert fs.bound_addresses() == sending(url)
            reasons = [r.reason for r in fs.audit(url, LISTED)]
            out = next(i for i, r in enumerate(reasons) if r.startswith("failover step 1: out of the pool"))
            hold = next(i for i, r in enumerate(reasons) if r.startswith("failover step 2: circuit breaker held"))
            assert out < hold  # deployed before the decision
            assert held["hold"] == "circuit breaker" and held["run_id"] == handle.result_run_id
            alert = next(a for a in alerts.alerts if a.key.endswith("/held"))
            assert "out of the MTA pool" in alert.body
            # its buttons name this run: pressed in a later run of the same IP, the validator refuses them
            assert {json.loads(b.arg or "{}")["incident"] for b in alert.actions} == {handle.result_run_id}
            await handle.execute_update(FailoverSaga.deny, FailoverDecision("under review", held["run_id"]))
        state = await _state(client, handle.id)
    assert state.status == "completed" and state.decision == "denied"
    assert fs.bound_addresses() == sending(url) and LISTED not in fs.bound_addresses()
    assert len(outcome_rows(url, LISTED)) == 1


# --- 2. one breaker decision per scan and tenant -----------------------------------------------------------


@pytest.mark.parametrize("order", [(0, 1, 2, 3, 4), (4, 3, 2, 1, 0), (2, 0, 4, 1, 3)])
async def test_listings_of_one_scan_hold_in_any_order(temporal_time_skipping, db_url: str,
                                                      order: tuple[int, ...]) -> None:
    url = db_url
    fs.seed(url, WIDE)
    # The scan's evaluation (real activity code against the database): five new listings of fo-c, a healthy
    # tenant with no earlier listing, 25 sending IPs (blast radius 5: not exceeded).
    decisions = evaluate_scan(_report(FIVE, WIDE), "scan-order", url)
    starts = sorted((d for d in decisions if d.action == ScanAction.START_SAGA), key=lambda d: FIVE.index(d.address))
    assert [d.address for d in starts] == FIVE and not any(d.blast_radius for d in starts)
    client = temporal_time_skipping.client
    async with fs.engine_worker(client) as queue:
        with temporal_time_skipping.auto_time_skipping_disabled():
            states = []
            for i in order:  # one at a time, each held before the next starts: the worst case for ordering
                d = starts[i]
                res = await start_saga(client, StartSagaRequest(d.tenant, d.address, list(d.listings), "scan-order",
                                                                list(d.same_scan), d.blast_radius), queue)
                handle = client.get_workflow_handle(res.workflow_id)
                states.append(await fs.wait_for(handle, lambda s: s["status"] in ("held", "completed")))
                # its evidence names the other four of this scan, quarantined yet or not
                evidence = " ".join(states[-1]["reasons"])
                assert all(a in evidence for a in FIVE if a != d.address), evidence
            assert [s["status"] for s in states] == ["held"] * 5
            assert all(s["hold"] == "circuit breaker" and s["decision"] is None for s in states)
            assert fs.bound_addresses() == sending(url) and not set(FIVE) & fs.bound_addresses()
            for s in states:
                await client.get_workflow_handle(s["workflow_id"]).execute_update(
                    FailoverSaga.deny, FailoverDecision("wave under investigation", s["run_id"]))
        finals = [await _state(client, s["workflow_id"]) for s in states]
    assert {f.decision for f in finals} == {"denied"}
    assert {a: s for a, s in fs.statuses(url).items() if a in FIVE} == dict.fromkeys(FIVE, "quarantine")
    assert fs.statuses(url)["127.0.41.31"] == fs.statuses(url)["127.0.41.32"] == "standby"
    assert all(len(outcome_rows(url, a)) == 1 for a in FIVE)


def test_same_scan_evidence_is_order_free(db_url: str) -> None:
    """The database evidence alone sees nothing before the siblings quarantine; the scan's list does."""
    fs.seed(db_url, WIDE)
    from models.failover import circuit_breaker, with_same_scan

    ev = collect_breaker_evidence(EvidenceRequest("fo-c", FIVE[0]), db_url)
    assert circuit_breaker(ev).automatic  # what decided "automatic" for the first saga before
    d = next(d for d in evaluate_scan(_report(FIVE, WIDE), "scan-x", db_url) if d.address == FIVE[0])
    verdict = circuit_breaker(with_same_scan(ev, d.same_scan))
    assert not verdict.automatic and "4 other IP(s)" in " ".join(verdict.reasons)


# --- 3. blast radius ----------------------------------------------------------------------------------------


async def test_zone_listing_a_whole_tenant_quarantines_nothing(temporal_time_skipping, db_url: str) -> None:
    url, alerts = db_url, fs.AlertLog()
    fs.seed(url)
    before = fs.statuses(url)
    whole = {a for a, s in before.items() if a.startswith("127.0.40.1") and s in ("active", "warming")}
    assert whole == {"127.0.40.11", "127.0.40.12", "127.0.40.13", "127.0.40.14"}  # all of fo-a's sending IPs
    client = temporal_time_skipping.client
    async with fs.engine_worker(client, [alerts.activity(), _fake_scan(whole)]) as queue:
        summary = await _scan(temporal_time_skipping, queue)
        assert sorted(summary.sagas) == sorted(saga_id("fo-a", a) for a in whole)
        with temporal_time_skipping.auto_time_skipping_disabled():
            states = {wid: await fs.wait_for(client.get_workflow_handle(wid),
                                             lambda s: s["held"] and any(a.key == f"{s['workflow_id']}/held"
                                                                         for a in alerts.alerts))
                      for wid in summary.sagas}
            assert {s["hold"] for s in states.values()} == {"blast radius"}
            # nothing quarantined, nothing recorded, the pool untouched; an urgent alert per IP with the evidence
            assert fs.statuses(url) == before
            assert all(fs.events(url, a) == [] for a in whole)
            summary_alert = [a for a in alerts.alerts if "/blast-radius/fo-a" in a.key]
            assert len(summary_alert) == 1 and summary_alert[0].severity == "critical"
            assert "4 IPs of fo-a" in summary_alert[0].title and "zen.test" in summary_alert[0].body
            held = [a for a in alerts.alerts if a.key.endswith("/held")]
            assert len(held) == 4 and {a.severity for a in held} == {"critical"}
            assert all("blast radius: this scan lists 4 of the tenant's 4 sending IPs" in a.body
                       and "NOT quarantined" in a.body and "this scan" in a.body for a in held)
            with session_scope(url) as s:
                run = s.exec(select(BlocklistScanRun)).one()
                assert all("blast radius" in d["hold"] for d in run.decisions if d["tenant"] == "fo-a")
            # the operator quarantines one (it fails over with a standby at once) and leaves the others
            first, *rest = sorted(states)
            await client.get_workflow_handle(first).execute_update(
                FailoverSaga.approve, FailoverDecision("this one really is listed", states[first]["run_id"]))
            for wid in rest:
                await client.get_workflow_handle(wid).execute_update(FailoverSaga.deny, "the zone is broken")
        results = {wid: await _state(client, wid) for wid in states}
        await keep_history(client, first, "v2-blast-approved")
    approved = results[first]
    assert approved.decision == "approved" and approved.standby == "127.0.40.21"
    assert fs.statuses(url)[approved.address] == "quarantine"
    for wid in rest:
        r = results[wid]
        assert r.status == "completed" and r.decision == "denied" and not r.quarantined
        assert fs.statuses(url)[r.address] == before[r.address]
        assert outcome_rows(url, r.address) and "not quarantined (blast radius)" in outcome_rows(url, r.address)[0]
    assert fs.bound_addresses() == sending(url)


# --- 4. failed sagas are finished by the next scan; failures named; outcome rows --------------------------


async def test_failed_saga_is_run_again_by_the_next_scan(temporal_time_skipping, db_url: str) -> None:
    url, alerts = db_url, fs.AlertLog()
    fs.seed(url)
    wid = saga_id("fo-a", LISTED)
    client = temporal_time_skipping.client
    async with fs.engine_worker(client, [alerts.activity(), _fake_scan({LISTED}),
                                         _raising("failover_breaker_evidence")]) as queue:
        first = await _scan(temporal_time_skipping, queue)
        assert first.sagas == [wid]
        with pytest.raises(WorkflowFailureError) as exc:
            await client.get_workflow_handle(wid).result()
    # the step that really failed is named (not the quarantine before it); the IP is out of the pool
    assert "circuit breaker (failover_breaker_evidence)" in str(exc.value.cause)
    failed = [a for a in alerts.alerts if a.key == f"{wid}/failed"]
    assert failed and "failed at step circuit breaker (failover_breaker_evidence)" in failed[0].body
    assert fs.statuses(url)[LISTED] == "quarantine" and LISTED not in fs.bound_addresses()
    rows = outcome_rows(url, LISTED)
    assert len(rows) == 1 and "failed at circuit breaker" in rows[0] and "; compensated;" in rows[0]
    # the next scan (database healthy again) finishes it: the listing is still there, the IP quarantined
    async with fs.engine_worker(client, [alerts.activity(), _fake_scan({LISTED})]) as queue:
        second = await _scan(temporal_time_skipping, queue)
        assert second.sagas == [wid] and not second.problems
        done = await _state(client, wid)
    assert done.status == "completed" and done.decision == "automatic" and done.standby == "127.0.40.21"
    assert fs.statuses(url)["127.0.40.21"] == "warming"
    assert fs.bound_addresses() == sending(url)
    rows = outcome_rows(url, LISTED)
    assert len(rows) == 2 and "standby 127.0.40.21 warming" in rows[1]  # one per ending
    assert fs.events(url, LISTED)[0].outcome.startswith("quarantined; automatic")  # type: ignore[union-attr]
    # a third scan leaves the completed failover alone
    async with fs.engine_worker(client, [alerts.activity(), _fake_scan({LISTED})]) as queue:
        third = await _scan(temporal_time_skipping, queue)
    assert third.sagas == [] and len(outcome_rows(url, LISTED)) == 2


async def test_saga_stopped_without_outcome_is_run_again(temporal_time_skipping, db_url: str) -> None:
    """A saga that ended without recording anything (terminated while held: a worker gone, an operator's
    terminate) leaves the IP quarantined with no outcome; the next scan runs it again."""
    url = db_url
    fs.seed(url)
    fs.add_stats(url, "127.0.40.12", sent=10_000, complaints=50)
    wid = saga_id("fo-a", LISTED)
    client = temporal_time_skipping.client
    async with fs.engine_worker(client, [_fake_scan(set())]) as queue:
        res = await start_saga(client, StartSagaRequest("fo-a", LISTED, [Listing("zen.test", LISTED)], "test"), queue)
        with temporal_time_skipping.auto_time_skipping_disabled():
            await fs.wait_for(client.get_workflow_handle(wid), lambda s: s["held"])
        await client.get_workflow_handle(wid).terminate("worker lost")
        assert outcome_rows(url, LISTED) == []
        summary = await _scan(temporal_time_skipping, queue)  # not listed any more: still finished
        assert summary.sagas == [wid]
        handle = client.get_workflow_handle(wid)
        with temporal_time_skipping.auto_time_skipping_disabled():
            state = await fs.wait_for(handle, lambda s: s["held"])
            assert state["run_id"] != res.run_id and state["detections"] == 1
            await handle.execute_update(FailoverSaga.approve, FailoverDecision("checked", state["run_id"]))
        final = await _state(client, wid)
    assert final.status == "completed" and final.standby == "127.0.40.21"
    assert len(outcome_rows(url, LISTED)) == 1 and fs.bound_addresses() == sending(url)
    held = [r for r in fs.audit(url, LISTED) if r.reason.startswith("failover step 2: circuit breaker held")]
    assert len(held) == 2  # each run writes its own decision row, even with the same text


def _opts(start: float, budget: float, initial: float, maximum: float, *non_retryable: str) -> set[tuple[object, ...]]:
    sec = dt.timedelta
    return {(sec(seconds=start), sec(seconds=budget), sec(seconds=10), sec(seconds=initial), 2.0, sec(seconds=maximum),
             0, non_retryable)}


_SAGA_DB = _opts(30, 6 * 3600, 1, 30, "UnexpectedStatus", "UnknownIp", "BadRequest")
_SAGA_WARMUP = _opts(30, 6 * 3600, 2, 30, "WarmupRefused", "WarmupCancelRefused")
#: What each saga step asked of Temporal before the options were folded into activity_options.py.
SAGA_OPTIONS = {
    **{name: _SAGA_DB for name in ("check_dns_gate", "failover_audit", "failover_breaker_evidence",
                                   "failover_claim_standby", "failover_finish", "failover_quarantine_ip",
                                   "failover_release_standby", "failover_standby_candidates")},
    "failover_describe_ip": _opts(30, 300, 1, 30, "UnexpectedStatus", "UnknownIp", "BadRequest"),
    "start_ip_warmup": _SAGA_WARMUP, "cancel_ip_warmup": _SAGA_WARMUP,
    "deploy_tenant_pool": _opts(900, 7200, 5, 30, "DeployFailed", "UnknownTenant"),
    "send_alert": _opts(20, 120, 1, 10),
    "emit_webhook_event": _opts(30, 600, 1, 10, "NotFoundError"),
}


async def test_failed_compensation_is_reported_with_the_state_it_left(temporal_time_skipping,
                                                                      sqlite_url: str) -> None:
    url, alerts = sqlite_url, fs.AlertLog()
    fs.seed(url)
    wid = saga_id("fo-a", LISTED)

    @activity.defn(name="deploy_tenant_pool")
    async def deploy(req: DeployPoolRequest) -> Any:  # the real deploy, except the one putting the standby in
        if "standby" in req.reason and "undone" not in req.reason:
            raise ApplicationError("injected: validation failed, rolled back", type="DeployFailed",
                                   non_retryable=True)
        return await deploy_tenant_pool(req)

    client = temporal_time_skipping.client
    async with fs.engine_worker(client, [alerts.activity(), deploy, _raising("cancel_ip_warmup")]) as queue:
        with pytest.raises(WorkflowFailureError) as exc:
            await client.execute_workflow(FailoverSaga.run, FailoverInput("fo-a", LISTED, [Listing("zen.test",
                                          LISTED)]), id=wid, task_queue=queue)
        state = await client.get_workflow_handle(wid).query(FailoverSaga.state)
        await keep_history(client, wid, "v2-compensation-failed")
        options = activity_options(await client.get_workflow_handle(wid).fetch_history())
        await fs.end_workflow(client, "warmup/fo-a/127.0.40.21")
    # the timeouts and retries of every step are the saga's named policies (workflows/activity_options.py),
    # exactly the values the saga used before they were folded there
    assert options == SAGA_OPTIONS
    assert "compensation FAILED" in str(exc.value.cause)
    assert state.status == "failed" and state.failed_step == "deploy (deploy_tenant_pool)"
    comp = {c.kind: c for c in state.compensations}
    assert comp["release"].done and comp["cancel_warmup"].problem
    assert comp["cancel_warmup"].problem.startswith("127.0.40.21 is warming (week_1) with quota 50")
    body = next(a for a in alerts.alerts if a.key == f"{wid}/failed").body
    assert "NOT undone: cancel_warmup 127.0.40.21 FAILED: 127.0.40.21 is warming (week_1) with quota 50" in body
    assert "Undone: release 127.0.40.21." in body
    rows = outcome_rows(url, LISTED)
    assert len(rows) == 1 and "compensation FAILED: cancel_warmup 127.0.40.21 FAILED" in rows[0]
    assert "; compensated;" not in rows[0]
    # the database and the MTA still agree: the standby really warms and is in the pool, the listed IP is out
    assert fs.statuses(url)["127.0.40.21"] == "warming" and fs.bound_addresses() == sending(url)


# --- 5. retry budgets bounded by time ----------------------------------------------------------------------


async def test_database_outage_of_75s_is_ridden_out(temporal_time_skipping, db_url: str) -> None:
    """The evidence step (right after step 1, where issue 11 cut the database) fails with a connection error
    for 75 s of server time, then the database is back: the saga completes; with the former 5 attempts
    (about 15 s) it failed."""
    url = db_url
    fs.seed(url)
    attempts: list[tuple[int, dt.datetime]] = []

    @activity.defn(name="failover_breaker_evidence")
    def evidence(req: EvidenceRequest) -> Any:
        info = activity.info()
        attempts.append((info.attempt, info.current_attempt_scheduled_time))
        if info.current_attempt_scheduled_time - attempts[0][1] < dt.timedelta(seconds=75):
            raise ConnectionError("connection to the database refused (simulated outage)")
        return collect_breaker_evidence(req)

    client = temporal_time_skipping.client
    async with fs.engine_worker(client, [evidence]) as queue:
        state = await client.execute_workflow(FailoverSaga.run, FailoverInput("fo-a", LISTED, [Listing(
            "zen.test", LISTED)]), id=saga_id("fo-a", LISTED), task_queue=queue, result_type=SagaState)
    outage = attempts[-1][1] - attempts[0][1]
    print(f"outage ridden out: {outage.total_seconds():.0f} s of server time, {len(attempts)} attempts")
    assert outage >= dt.timedelta(seconds=75) and len(attempts) > 5
    assert state.status == "completed" and state.decision == "automatic" and state.standby == "127.0.40.21"
    assert fs.bound_addresses() == sending(url) and len(outcome_rows(url, LISTED)) == 1


# --- 6. one state object, created before the first task ----------------------------------------------------


async def test_detection_signal_before_the_first_task_is_kept(temporal_time_skipping, sqlite_url: str) -> None:
    fs.seed(sqlite_url)
    fs.add_stats(sqlite_url, "127.0.40.12", sent=10_000, complaints=50)
    client = temporal_time_skipping.client
    async with fs.engine_worker(client) as queue:
        handle = await client.start_workflow(
            FailoverSaga.run, FailoverInput("fo-a", LISTED, [Listing("zen.test", LISTED)]),
            id=saga_id("fo-a", LISTED), task_queue=queue, start_signal="detected_again",
            start_signal_args=[["dbl.test"]])
        with temporal_time_skipping.auto_time_skipping_disabled():
            state = await fs.wait_for(handle, lambda s: s["held"])
            assert state["detections"] == 2 and any("detected again: dbl.test" in e for e in state["log"])
            await handle.execute_update(FailoverSaga.deny, "plain reason from an older client")
        assert (await _state(client, handle.id)).decision == "denied"


async def test_stale_answer_is_refused(temporal_local, sqlite_url: str) -> None:
    """Dev server (a rejected update locks time skipping on the test server): an answer naming another run of
    the same failover id is refused by the validator and changes nothing; the right run id is accepted."""
    from temporalio.client import WorkflowUpdateFailedError

    fs.seed(sqlite_url)
    fs.add_stats(sqlite_url, "127.0.40.12", sent=10_000, complaints=50)
    client = temporal_local.client
    async with fs.engine_worker(client) as queue:
        handle = await client.start_workflow(FailoverSaga.run, FailoverInput("fo-a", LISTED), task_queue=queue,
                                             id=saga_id("fo-a", LISTED))
        state = await fs.wait_for(handle, lambda s: s["held"])
        with pytest.raises(WorkflowUpdateFailedError) as exc:
            await handle.execute_update(FailoverSaga.approve, FailoverDecision("old button", "an-earlier-run-id"))
        assert "not the current run" in str(exc.value.cause)
        assert (await handle.query("state"))["held"]
        assert await handle.execute_update(FailoverSaga.approve, FailoverDecision("ok", state["run_id"])) == \
            "approved: ok"
        final = await _state(client, handle.id)
    assert final.decision == "approved" and final.standby == "127.0.40.21"
    await fs.end_workflow(client, "warmup/fo-a/127.0.40.21")


async def test_scan_takes_a_held_sagas_ip_out_of_a_stale_pool(temporal_time_skipping, sqlite_url: str) -> None:
    """A saga started on the earlier code held with its quarantined IP still in the pool (no deploy after step
    1). Simulated: the pool is redeployed from an inventory where the IP still sent, then the database is put
    back. The next scan joins the held saga and deploys the tenant's pool: the MTA agrees with the database."""
    from client.deploys import request_deploy
    from models.tables import SendingIp

    url = sqlite_url
    fs.seed(url)
    fs.add_stats(url, "127.0.40.12", sent=10_000, complaints=50)
    wid = saga_id("fo-a", LISTED)
    client = temporal_time_skipping.client

    def set_status(status: str, quota: int) -> None:
        with session_scope(url) as s:
            ip = s.exec(select(SendingIp).where(SendingIp.address == LISTED)).one()
            ip.status, ip.daily_quota, ip.weight = status, quota, min(quota, 100)  # type: ignore[assignment]
            s.add(ip)

    async with fs.engine_worker(client, [_fake_scan({LISTED})]) as queue:
        await start_saga(client, StartSagaRequest("fo-a", LISTED, [Listing("zen.test", LISTED)], "test"), queue)
        with temporal_time_skipping.auto_time_skipping_disabled():
            await fs.wait_for(client.get_workflow_handle(wid), lambda s: s["held"])
            set_status("active", 10_000)
            await request_deploy(client, fs.HOST, "as the earlier code left it", "test", queue)
            set_status("quarantine", 0)
            assert LISTED in fs.bound_addresses() and fs.bound_addresses() != sending(url)
        summary = await _scan(temporal_time_skipping, queue)
        assert summary.sagas == [wid] and summary.deployed and not summary.problems
        assert LISTED not in fs.bound_addresses() and fs.bound_addresses() == sending(url)
        handle = client.get_workflow_handle(wid)
        state = await handle.query("state")
        assert state["held"] and state["detections"] == 2  # the scan joined the running saga
        with temporal_time_skipping.auto_time_skipping_disabled():
            await handle.execute_update(FailoverSaga.deny, FailoverDecision("no", state["run_id"]))
        assert (await _state(client, wid)).decision == "denied"
