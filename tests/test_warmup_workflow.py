"""IpWarmupWorkflow on the time-skipping test server, with the real database activities (SQLite) and a
recording stand-in for "deploy_tenant_pool" (MTA deploys have their own tests; one test below runs the
real deploy activity against a disabled host, which renders locally)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowHandle, WorkflowHistory
from temporalio.worker import Replayer, Worker

from activities.alerts import Alert
from activities.warmup import apply_warmup_step, load_warmup_context
from models.deploys import DeployOutcome, DeployPoolRequest
from models.warmup_contracts import PauseRequest, ResumeRequest, WarmupInput, WarmupStatus
from tests.warmup_support import add_stats, audit, feed_reference, ip_row, load, register_search_attributes
from workflows.warmup import IpWarmupWorkflow

IP = "127.0.12.41"
DATA = Path(__file__).resolve().parent / "data"
# Set EMAIL_ENGINE_RECORD_HISTORIES=1 to rewrite the committed histories (after an intended change).
RECORD = os.environ.get("EMAIL_ENGINE_RECORD_HISTORIES") == "1"


async def keep_history(client: Client, workflow_id: str, run_id: str | None, name: str) -> None:
    if RECORD:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        (DATA / f"warmup-history-{name}.json").write_text(history.to_json())


@dataclass
class Recorder:
    deploys: list[tuple[dt.datetime, int, str | None]]
    alerts: list[Alert]
    url: str

    def activities(self) -> list[Any]:
        # Stand-in for the MTA deploy (client/relay.py): same name and signature; it records
        # when it was asked and which quota/phase the database held at that moment.
        @activity.defn(name="deploy_tenant_pool")
        async def deploy_tenant_pool(req: DeployPoolRequest) -> DeployOutcome:
            ip = ip_row(self.url, IP)
            self.deploys.append((activity.info().current_attempt_scheduled_time, ip.daily_quota,
                                 ip.warmup_phase.value if ip.warmup_phase else None))
            return DeployOutcome(host="pmta-t", generation=len(self.deploys), changed=True, message="recorded")

        # Stand-in for the alerts activity so the test can read what was sent (the real one only logs).
        @activity.defn(name="send_alert")
        async def send_alert(alert: Alert) -> bool:
            self.alerts.append(alert)
            return True

        return [deploy_tenant_pool, send_alert, load_warmup_context, apply_warmup_step]


@asynccontextmanager
async def warmup_worker(client: Client, queue: str, rec: Recorder, **kw: Any) -> AsyncIterator[Worker]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        async with Worker(client, task_queue=queue, workflows=[IpWarmupWorkflow], activities=rec.activities(),
                          activity_executor=pool, **kw) as worker:
            yield worker


async def start(client: Client, queue: str, today: dt.date, phase: str = "week_1", **kw: Any
                ) -> WorkflowHandle[Any, WarmupStatus]:
    return await client.start_workflow(
        IpWarmupWorkflow.run,
        WarmupInput(tenant="acme", address=IP, domain="warm41.example", phase=phase,
                    phase_started_on=today.isoformat(), quota=50, wake_window_seconds=600, **kw),
        id=f"warmup/acme/{IP}-{uuid.uuid4().hex[:6]}", task_queue=queue)


async def status(handle: WorkflowHandle[Any, WarmupStatus]) -> WarmupStatus:
    return await handle.query(IpWarmupWorkflow.status)


@pytest.fixture
async def ts(temporal_time_skipping, sqlite_url: str):
    # SQLite is enough here: the activities' own tests run on both backends.
    db_url = sqlite_url
    env = temporal_time_skipping
    await register_search_attributes(env.client)
    today = (await env.get_current_time()).astimezone(dt.UTC).date()
    load(db_url, [(IP, "warming", "week_1", today.isoformat())])
    return env, today, Recorder([], [], db_url)


async def test_full_warmup_right_quotas_on_right_days(ts) -> None:
    env, today, rec = ts
    feed_reference(rec.url, IP, today, 42)  # each phase delivers its quota: the gate has its evidence
    queue = f"wu-{uuid.uuid4().hex[:8]}"
    async with warmup_worker(env.client, queue, rec):
        handle = await start(env.client, queue, today)
        await env.sleep(timedelta(days=3))
        st = await status(handle)
        assert (st.phase, st.quota, st.day_in_phase, st.paused, st.status) == ("week_1", 50, 4, False, "warming")
        g = st.last_gate
        assert g is not None and st.ticks == 3 and (g.action, g.rule) == ("hold", "min-days")
        assert (g.sent, g.delivered, g.required_delivered) == (150, 150, 175)
        result = await handle.result()
    assert result.status == "active" and result.quota == 10_000
    days = [(d.date() - today).days for d, _, _ in rec.deploys]
    assert days == [7, 14, 21, 28, 35, 42]
    assert [(q, p) for _, q, p in rec.deploys] == [
        (100, "week_2"), (250, "week_3"), (500, "week_4"), (1000, "week_5"), (2000, "week_6"), (10_000, None)]
    ip = ip_row(rec.url, IP)
    assert (ip.status.value, ip.warmup_phase, ip.daily_quota, ip.weight) == ("active", None, 10_000, 100)
    rows = audit(rec.url, IP)[-6:]
    assert [(r.from_phase, r.to_phase, r.to_status) for r in rows][-1] == ("week_6", None, "active")
    assert all(r.actor == handle.id for r in rows)
    kinds = [t.kind for t in result.history]
    assert kinds.count("advance") == 5 and kinds[0] == "start" and kinds[-1] == "active"
    assert result.runs == 6  # one continue-as-new per phase change
    assert [a.title for a in rec.alerts if "Warmup" in a.title][-1].endswith("active (10000/day)")
    advances = [a for a in rec.alerts if a.title.startswith("Warmup") and "week_" in a.title]
    assert len(advances) == 5 and all([(b.label, b.name) for b in a.actions] == [("Pause", "pause")]
                                      for a in advances)  # ChatOps: a warmup alert carries Pause


async def test_bad_week_pauses_seven_days_then_continues(ts) -> None:
    env, today, rec = ts
    add_stats(rec.url, IP, today, sent=100, bounced=20)  # 20% bounces, read by the tick of day 1
    feed_reference(rec.url, IP, today + timedelta(days=1), 8)  # then a clean week: the advance's evidence
    queue = f"wu-{uuid.uuid4().hex[:8]}"
    async with warmup_worker(env.client, queue, rec):
        handle = await start(env.client, queue, today)
        first_run = handle.result_run_id
        await env.sleep(timedelta(days=2))
        st = await status(handle)
        assert st.paused and st.paused_by == "gate" and "bounce rate 20.00%" in st.pause_reason
        assert "lower bound 13.34% > max 5.00%" in st.pause_reason
        g = st.last_gate
        assert g is not None and not g.passed and g.bounced == 20 and (g.action, g.rule) == ("pause", "excess")
        assert g.bounce_bounds == [0.133367, 0.288829]
        assert st.paused_until is not None
        until = dt.datetime.fromisoformat(st.paused_until)
        assert (until.date() - today).days == 8 and st.quota == 50
        assert any(a.severity == "warning" and "safety gate failed" in a.title for a in rec.alerts)
        await env.sleep(timedelta(days=5))  # day 7: week_1 would be over, but the pause holds
        st = await status(handle)
        assert st.paused and st.phase == "week_1" and ip_row(rec.url, IP).daily_quota == 50
        await env.sleep(timedelta(days=2))  # day 9: the pause ended on day 8 and the gate passed
        st = await status(handle)
        assert not st.paused and st.phase == "week_2" and st.quota == 100
        await keep_history(env.client, handle.id, first_run, "gate-pause")
        await handle.terminate("test done")
    assert [((d.date() - today).days, q) for d, q, _ in rec.deploys] == [(8, 100)]


async def test_pause_signal_holds_until_resume(ts) -> None:
    env, today, rec = ts
    add_stats(rec.url, IP, today, sent=50)
    feed_reference(rec.url, IP, today + timedelta(days=1), 30)
    queue = f"wu-{uuid.uuid4().hex[:8]}"
    async with warmup_worker(env.client, queue, rec):
        handle = await start(env.client, queue, today)
        await env.sleep(timedelta(days=2))
        await handle.signal(IpWarmupWorkflow.pause, PauseRequest(reason="list cleanup"))
        await handle.signal(IpWarmupWorkflow.pause, PauseRequest(reason="again"))  # harmless
        await env.sleep(timedelta(days=20))
        st = await status(handle)
        assert st.paused and st.pause_reason == "list cleanup" and st.paused_until is None
        assert st.phase == "week_1" and rec.deploys == []
        assert [t.kind for t in st.history].count("pause") == 1
        await handle.signal(IpWarmupWorkflow.resume, ResumeRequest(reason="clean"))
        await handle.signal(IpWarmupWorkflow.resume)  # resuming a running warmup is harmless
        await env.sleep(timedelta(days=1, hours=1))
        st = await status(handle)
        # day 23 in week_1 and the gate passes: it advanced at the first tick after the resume
        assert not st.paused and st.phase == "week_2" and len(rec.deploys) == 1
        assert [t.kind for t in st.history].count("resume") == 1
        # a timed pause ends by itself
        await handle.signal(IpWarmupWorkflow.pause, PauseRequest(reason="short", days=2))
        await env.sleep(timedelta(hours=12))
        assert (await status(handle)).paused
        await env.sleep(timedelta(days=2))
        st = await status(handle)
        assert not st.paused and st.history[-1].kind == "resume"
        await handle.terminate("test done")


async def test_worker_replaced_mid_warmup_and_replay(ts) -> None:
    env, today, rec = ts
    feed_reference(rec.url, IP, today, 42)
    queue = f"wu-{uuid.uuid4().hex[:8]}"
    # Worker A without a workflow cache (temporal.md §7: the time-skipping server hands the task to a new
    # worker only if the old one had no sticky queue).
    async with warmup_worker(env.client, queue, rec, max_cached_workflows=0):
        handle = await start(env.client, queue, today)
        first_run = handle.result_run_id
        await env.sleep(timedelta(days=10))
        assert (await status(handle)).phase == "week_2"
    async with warmup_worker(env.client, queue, rec):
        result = await asyncio.wait_for(handle.result(), timeout=120)
    assert result.status == "active" and [q for _, q, _ in rec.deploys][-1] == 10_000
    # Replay: the recorded histories of the first run (start .. continue-as-new) and the last run.
    replayer = Replayer(workflows=[IpWarmupWorkflow])
    for run_id in (first_run, None):
        history = await env.client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()
        await replayer.replay_workflow(history)
    await keep_history(env.client, handle.id, first_run, "advance")
    await keep_history(env.client, handle.id, None, "active")


def test_committed_histories_replay() -> None:
    """Histories recorded from earlier runs (tests/data/warmup-history-*.json: advance with
    continue-as-new, a gate pause then resume, the last run to active, an evidence hold) must replay on
    today's code. The `pre-gate-*` ones were recorded before the evidence gate (issue 10): no
    EVIDENCE_GATE_PATCH marker, so they replay through the old rule; nothing rewrites them."""
    files = sorted(DATA.glob("warmup-history-*.json"))
    assert len(files) >= 7, "recorded histories missing: run with EMAIL_ENGINE_RECORD_HISTORIES=1"
    assert sum(f.stem.startswith("warmup-history-pre-gate-") for f in files) == 3
    replayer = Replayer(workflows=[IpWarmupWorkflow])
    for f in files:
        history = WorkflowHistory.from_json(f.stem, f.read_text())
        asyncio.run(replayer.replay_workflow(history))


async def test_inventory_leaving_warming_stops_the_workflow(ts) -> None:
    env, today, rec = ts
    queue = f"wu-{uuid.uuid4().hex[:8]}"
    async with warmup_worker(env.client, queue, rec):
        handle = await start(env.client, queue, today)
        await env.sleep(timedelta(days=1, hours=2))
        load(rec.url, [(IP, "standby", None, None)])  # inventory load without --apply-state keeps state
        from activities.db import session_scope
        from models.enums import IpStatus
        from models.tables import SendingIp

        with session_scope(rec.url) as s:
            ip = s.get(SendingIp, ip_row(rec.url, IP).id)
            assert ip is not None
            ip.status, ip.warmup_phase = IpStatus.QUARANTINE, None
            s.add(ip)
        result = await handle.result()
    assert result.status == "stopped" and result.history[-1].kind == "stopped"
