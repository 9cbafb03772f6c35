"""FailoverSaga on the time-skipping server with the real activities against a real database (SQLite
and PostgreSQL): the real quarantine/evidence/claim activities, the real DNS gate, the real
MtaDeployWorkflow rendering the tenant's Postfix config (disabled host: <var_dir>/mta/<host>/), and the
warmup feature's start/cancel activities. Failures are injected with same-named activities that raise.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from client.failovers import start_saga
from client.relay import deploy_tenant_pool
from models.deploys import DeployPoolRequest
from models.failover import Listing, saga_id
from models.failover_contracts import FailoverInput, SagaState, StartSagaRequest
from tests import failover_support as fs
from tests.failover_support import DATA, keep_history
from workflows.failover import FailoverSaga

LISTED = "127.0.40.11"
ZEN = Listing(zone="zen.test", target=LISTED, code="127.0.0.2", meaning="SBL",
              delist_url="https://check.spamhaus.org/")


WARMUP: list[Any] = []  # the warmup feature's start/cancel activities come from workers.registry


def _inp(address: str = LISTED, tenant: str = "fo-a") -> FailoverInput:
    return FailoverInput(tenant=tenant, address=address,
                         listings=[Listing("zen.test", address, "127.0.0.2", "SBL", "https://check.spamhaus.org/")])


async def _run(env: Any, queue: str, inp: FailoverInput) -> SagaState:
    return await env.client.execute_workflow(FailoverSaga.run, inp, id=saga_id(inp.tenant, inp.address),
                                             task_queue=queue, result_type=SagaState)


def _actors(url: str, address: str, wid: str) -> list[str]:
    return [r.reason for r in fs.audit(url, address) if r.actor == wid]


@pytest.fixture
def seeded(db_url: str) -> str:
    fs.seed(db_url)
    return db_url


async def test_breaker_timeout_denies(temporal_time_skipping, sqlite_url: str) -> None:
    # First in this file: on the time-skipping server, skipping a day is reliable before other tests left
    # history behind in the shared session server.
    url = sqlite_url
    fs.seed(url)
    fs.add_stats(url, "127.0.40.12", sent=1000, complaints=10)  # unhealthy: held
    client = temporal_time_skipping.client
    async with fs.engine_worker(client, [*WARMUP]) as queue:
        # a held saga denies itself after the configured time (24 h), skipped by the server
        handle = await client.start_workflow(FailoverSaga.run, _inp("127.0.40.13"), id=saga_id("fo-a", "127.0.40.13"),
                                             task_queue=queue)
        with temporal_time_skipping.auto_time_skipping_disabled():
            await fs.wait_for(handle, lambda s: s["status"] == "held")
            assert fs.statuses(url)["127.0.40.13"] == "quarantine"
            await temporal_time_skipping.sleep(dt.timedelta(hours=23))
            assert (await handle.query("state"))["status"] == "held"  # not yet
            await temporal_time_skipping.sleep(dt.timedelta(hours=2))
            third = await handle.result()
    assert third.decision == "denied" and third.standby is None
    assert any("no operator answer" in r for r in third.reasons)
    assert fs.statuses(url)["127.0.40.13"] == "quarantine" and fs.statuses(url)["127.0.40.22"] == "standby"
    assert fs.statuses(url)["127.0.40.21"] == "standby" and "127.0.40.13" not in fs.bound_addresses()


async def test_happy_path(temporal_time_skipping, seeded: str) -> None:
    url, alerts = seeded, fs.AlertLog()
    async with fs.engine_worker(temporal_time_skipping.client, [alerts.activity(), *WARMUP]) as queue:
        state = await _run(temporal_time_skipping, queue, _inp())
        await keep_history(temporal_time_skipping.client, saga_id("fo-a", LISTED), "v2-automatic")
    wid = saga_id("fo-a", LISTED)
    assert state.status == "completed" and state.decision == "automatic"
    assert state.standby == "127.0.40.21"  # numeric order among equal candidates
    ip = fs.ip_row(url, LISTED)
    assert ip.status.value == "quarantine" and ip.weight == 0 and ip.daily_quota == 0
    assert ip.quarantine_until is not None
    until = ip.quarantine_until if ip.quarantine_until.tzinfo else ip.quarantine_until.replace(tzinfo=dt.UTC)
    assert abs(until - (dt.datetime.now(dt.UTC) + dt.timedelta(days=7))) < dt.timedelta(minutes=5)
    assert "zen.test" in (ip.listed_on or "")
    assert fs.statuses(url)["127.0.40.21"] == "warming"
    assert fs.statuses(url)["127.0.40.22"] == "standby"
    # deployed config: the listed IP is out, the standby in
    bound = fs.bound_addresses()
    assert LISTED not in bound and "127.0.40.21" in bound and "127.0.40.12" in bound
    # every step audited with the saga's id as actor
    reasons = _actors(url, LISTED, wid)
    for step in ("step 1", "step 2", "step 3", "step 4", "step 6"):
        assert any(step in r for r in reasons), (step, reasons)
    assert any(r.actor == wid for r in fs.audit(url, "127.0.40.21"))
    evs = fs.events(url, LISTED)
    assert [(e.zone, e.workflow_id) for e in evs] == [("zen.test", wid)]
    assert evs[0].outcome and "127.0.40.21 warming" in evs[0].outcome
    assert fs.claims(url) == []
    done = [a for a in alerts.alerts if a.key == f"{wid}/done"]
    assert done and "https://check.spamhaus.org/" in done[0].body and "127.0.40.21" in done[0].body


async def test_breaker_holds_then_approve(temporal_time_skipping, seeded: str) -> None:
    url, alerts = seeded, fs.AlertLog()
    fs.add_stats(url, "127.0.40.12", sent=10_000, complaints=50)  # 0.5% >= 0.1%
    client = temporal_time_skipping.client
    async with fs.engine_worker(client, [alerts.activity(), *WARMUP]) as queue:
        handle = await client.start_workflow(FailoverSaga.run, _inp(), id=saga_id("fo-a", LISTED), task_queue=queue)
        with temporal_time_skipping.auto_time_skipping_disabled():
            # "held" is set before the alert activity runs (an operator may answer at once): wait for both
            state = await fs.wait_for(
                handle, lambda s: s["status"] == "held" and any(a.key.endswith("/held") for a in alerts.alerts))
            assert "complaint rate" in " ".join(state["reasons"])
            held = [a for a in alerts.alerts if a.key.endswith("/held")]
            assert held and {a.name for a in held[0].actions} == {"approve", "deny"}
            assert fs.statuses(url)[LISTED] == "quarantine"  # quarantined while waiting
            # (rejected updates are tested on the dev server, tests/test_failover_scan.py: on this server a
            # rejected update keeps time skipping locked for the rest of the session)
            assert await handle.execute_update(FailoverSaga.approve, "checked the sender") == \
                "approved: checked the sender"
        state = await handle.result()
        await keep_history(client, handle.id, "v2-approved")
    assert state.decision == "approved" and state.standby == "127.0.40.21"
    assert fs.statuses(url)["127.0.40.21"] == "warming"
    assert any("approved: checked the sender" in r for r in _actors(url, LISTED, handle.id))


async def test_breaker_deny(temporal_time_skipping, sqlite_url: str) -> None:
    url = sqlite_url
    fs.seed(url)
    async with fs.engine_worker(temporal_time_skipping.client, [*WARMUP]) as queue:
        client = temporal_time_skipping.client
        # another IP of the tenant is listed first (healthy tenant: automatic); then the breaker holds
        first = await _run(temporal_time_skipping, queue, _inp("127.0.40.12"))
        assert first.decision == "automatic"
        handle = await client.start_workflow(FailoverSaga.run, _inp(), id=saga_id("fo-a", LISTED), task_queue=queue)
        with temporal_time_skipping.auto_time_skipping_disabled():
            state = await fs.wait_for(handle, lambda s: s["status"] == "held")
            assert "127.0.40.12" in " ".join(state["reasons"])
            await handle.execute_update(FailoverSaga.deny, "tenant under review")
        denied = await handle.result()
        assert denied.decision == "denied" and denied.standby is None
        assert fs.statuses(url)["127.0.40.22"] == "standby"
        assert LISTED not in fs.bound_addresses() and "127.0.40.12" not in fs.bound_addresses()


async def test_no_standby(temporal_time_skipping, seeded: str) -> None:
    url, alerts = seeded, fs.AlertLog()
    fs.fail_dns(url, "127.0.40.41")  # fo-b's only standby fails the DNS gate
    async with fs.engine_worker(temporal_time_skipping.client, [alerts.activity(), *WARMUP]) as queue:
        state = await _run(temporal_time_skipping, queue, _inp("127.0.40.31", "fo-b"))
    assert state.status == "completed" and state.standby is None
    assert fs.statuses(url)["127.0.40.41"] == "standby"
    no = [a for a in alerts.alerts if a.key.endswith("/no-standby")]
    assert no and "SPF" in no[0].body
    bound = fs.bound_addresses()
    assert "127.0.40.31" not in bound and "127.0.40.32" in bound and "127.0.40.41" not in bound


async def test_duplicate_detection_joins(temporal_time_skipping, sqlite_url: str) -> None:
    url = sqlite_url
    fs.seed(url)
    fs.add_stats(url, "127.0.40.12", sent=1000, complaints=10)  # hold, so the saga is still running
    client = temporal_time_skipping.client
    async with fs.engine_worker(client, [*WARMUP]) as queue:
        req = StartSagaRequest("fo-a", LISTED, [ZEN], "test")
        first = await start_saga(client, req, queue)
        second = await start_saga(client, req, queue)
        assert not first.joined and second.joined
        assert second.workflow_id == first.workflow_id and second.run_id == first.run_id
        handle = client.get_workflow_handle(first.workflow_id)
        with temporal_time_skipping.auto_time_skipping_disabled():
            await fs.wait_for(handle, lambda s: s["status"] == "held" and s["detections"] == 2)
            await handle.execute_update("approve", "ok")
        state = await client.get_workflow_handle(first.workflow_id, result_type=SagaState).result()
    assert state.status == "completed"
    assert len(fs.events(url, LISTED)) == 1  # one saga, one event


async def test_two_listings_in_one_tenant_at_once(temporal_time_skipping, db_url: str) -> None:
    url = db_url
    fs.seed(url)
    client = temporal_time_skipping.client
    async with fs.engine_worker(client, [*WARMUP]) as queue:
        handles = await asyncio.gather(*(client.start_workflow(FailoverSaga.run, _inp(a), id=saga_id("fo-a", a),
                                                               task_queue=queue)
                                         for a in (LISTED, "127.0.40.12")))
        with temporal_time_skipping.auto_time_skipping_disabled():
            states = await asyncio.gather(*(fs.wait_for(h, lambda s: s["status"] in ("held", "completed")
                                                        or s["step"] in ("deploy", "alert", "record"))
                                            for h in handles))
            # each saga quarantines before it looks: at most one sees a healthy tenant
            assert sum(s["status"] == "held" for s in states) >= 1
            for h, s in zip(handles, states, strict=True):
                if s["status"] == "held":
                    await h.execute_update("approve", "both listings investigated")
        results = await asyncio.gather(*(h.result() for h in handles))
    standbys = sorted(r.standby for r in results)
    assert standbys == ["127.0.40.21", "127.0.40.22"]  # never the same standby
    st = fs.statuses(url)
    assert st[LISTED] == st["127.0.40.12"] == "quarantine"
    assert st["127.0.40.21"] == st["127.0.40.22"] == "warming"
    bound = fs.bound_addresses()
    assert {"127.0.40.21", "127.0.40.22", "127.0.40.13"} <= bound and not {LISTED, "127.0.40.12"} & bound


# --- failure injection: each step's activity failing permanently --------------------------------------------

def _raising(name: str) -> Any:
    # Same-named activity that always fails (non-retryable): the failure the saga must compensate.
    @activity.defn(name=name)
    async def broken(*_args: Any) -> Any:
        raise ApplicationError(f"injected failure of {name}", type="Injected", non_retryable=True)

    return broken


def _deploy_failing_with_claimed_standby() -> Any:
    # Same-named "deploy_tenant_pool" that fails (DeployFailed, as the real one after a rollback) whenever the
    # inventory holds a standby claimed by a failover, i.e. the deploy that would put the standby into the
    # pool; otherwise it is the real deploy. So the undo's redeploy goes through the real MTA deploy path.
    @activity.defn(name="deploy_tenant_pool")
    async def deploy(req: DeployPoolRequest) -> Any:
        if await asyncio.to_thread(fs.claims, None):  # type: ignore[arg-type]
            raise ApplicationError("injected: deploy validation failed and was rolled back", type="DeployFailed",
                                   non_retryable=True)
        return await deploy_tenant_pool(req)

    return deploy


@pytest.mark.parametrize("step", ["failover_quarantine_ip", "failover_breaker_evidence", "check_dns_gate",
                                  "start_ip_warmup", "deploy_tenant_pool"])
async def test_failure_at_each_step_is_compensated(temporal_time_skipping, db_url: str, step: str) -> None:
    url, alerts = db_url, fs.AlertLog()
    fs.seed(url)
    broken = _deploy_failing_with_claimed_standby() if step == "deploy_tenant_pool" else _raising(step)
    wid = saga_id("fo-a", LISTED)
    async with fs.engine_worker(temporal_time_skipping.client, [alerts.activity(), *WARMUP, broken]) as queue:
        with pytest.raises(WorkflowFailureError) as exc:
            await _run(temporal_time_skipping, queue, _inp())
        if step == "deploy_tenant_pool":
            await keep_history(temporal_time_skipping.client, wid, "v2-compensated")
    assert "compensated" in str(exc.value.cause)
    st = fs.statuses(url)
    assert st["127.0.40.21"] == st["127.0.40.22"] == "standby"  # no standby left activated
    assert fs.claims(url) == []
    failed = [a for a in alerts.alerts if a.key == f"{wid}/failed"]
    assert failed and failed[0].severity == "critical" and "Action required" in failed[0].body
    if step == "failover_quarantine_ip":
        assert st[LISTED] == "active" and fs.events(url, LISTED) == []
        assert not fs.rendered_dir().exists()  # nothing changed, nothing deployed
        return
    # the listed IP stays out of rotation and the MTA config agrees with the database
    assert st[LISTED] == "quarantine"
    bound = fs.bound_addresses()
    assert LISTED not in bound and "127.0.40.21" not in bound and "127.0.40.12" in bound
    assert fs.events(url, LISTED)[0].outcome.startswith("failed at")  # type: ignore[union-attr]
    assert any("compensation: redeployed" in r for r in _actors(url, LISTED, wid))
    if step in ("start_ip_warmup", "deploy_tenant_pool"):
        assert any(r.actor == wid for r in fs.audit(url, "127.0.40.21"))  # claimed, then undone


async def test_record_failure_after_deploy_keeps_the_failover(temporal_time_skipping, sqlite_url: str) -> None:
    url, alerts = sqlite_url, fs.AlertLog()
    fs.seed(url)
    async with fs.engine_worker(temporal_time_skipping.client,
                                [alerts.activity(), *WARMUP, _raising("failover_finish")]) as queue:
        state = await _run(temporal_time_skipping, queue, _inp())
    assert state.status == "completed" and state.error and "recording" in state.error
    assert fs.statuses(url)["127.0.40.21"] == "warming" and LISTED not in fs.bound_addresses()
    assert any(a.key.endswith("/record") and a.severity == "critical" for a in alerts.alerts)


async def test_deploy_and_redeploy_failing_leaves_the_ip_out_and_says_so(temporal_time_skipping,
                                                                         sqlite_url: str) -> None:
    url, alerts = sqlite_url, fs.AlertLog()
    fs.seed(url)
    wid = saga_id("fo-a", LISTED)
    async with fs.engine_worker(temporal_time_skipping.client,
                                [alerts.activity(), _raising("deploy_tenant_pool")]) as queue:
        with pytest.raises(WorkflowFailureError):
            await _run(temporal_time_skipping, queue, _inp())
    st = fs.statuses(url)
    assert st[LISTED] == "quarantine" and st["127.0.40.21"] == "standby" and fs.claims(url) == []
    failed = [a for a in alerts.alerts if a.key == f"{wid}/failed"]
    assert failed and "REDEPLOY FAILED" in failed[0].body and f"may still send from {LISTED}" in failed[0].body


def test_replays_recorded_histories() -> None:
    """Histories recorded from the earlier code (tests/data/failover-history-v1-*.json: automatic, held then
    approved with a str reason, compensated after a failed deploy; no deploy after step 1, no patch marker)
    and from today's (v2-*: the same, a blast-radius hold approved, a failed compensation) replay on today's
    saga: a saga running across an upgrade continues instead of failing with a nondeterminism error."""
    from temporalio.client import WorkflowHistory
    from temporalio.worker import Replayer

    files = sorted(DATA.glob("failover-history-*.json"))
    assert len([f for f in files if '-v1-' in f.name]) >= 3
    replayer = Replayer(workflows=[FailoverSaga])
    for f in files:
        asyncio.run(replayer.replay_workflow(WorkflowHistory.from_json(f.stem, f.read_text())))
