"""The warmup gate fed by PowerMTA accounting files (issue 10): files in the accounting CSV format the
ingest parses (tests/data/make_accounting_samples.py, dated relative to the test server's clock) go
through the real ingest into daily_stat, and IpWarmupWorkflow on the time-skipping server advances on
good figures, holds on too little mail (alerting once) and pauses on a real excess.

Real parts: the ingest, the SQLite database, the workflow and its database activities. Stand-ins: the
MTA deploy and the alert activities (same names and signatures), recorded so the test can read them
(MTA deploys and alerts have their own tests)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Replayer, Worker
from typer.testing import CliRunner

from activities.accounting import ingest_local
from activities.alerts import Alert
from activities.warmup import apply_warmup_step, load_warmup_context
from cli.warmup import app as warmup_app
from models.deploys import DeployOutcome, DeployPoolRequest
from models.settings import get_settings
from models.warmup_contracts import WarmupInput, WarmupStatus, workflow_id
from tests.data.make_accounting_samples import render
from tests.test_warmup_workflow import keep_history
from tests.warmup_support import ip_row, load, register_search_attributes
from workflows.warmup import IpWarmupWorkflow

GOOD, BOUNCING, COMPLAINING = "127.0.12.41", "127.0.12.42", "127.0.12.43"


@dataclass
class Recorder:
    deploys: list[DeployPoolRequest] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)

    def activities(self) -> list[Any]:
        @activity.defn(name="deploy_tenant_pool")
        async def deploy_tenant_pool(req: DeployPoolRequest) -> DeployOutcome:
            self.deploys.append(req)
            return DeployOutcome(host="pmta-t", generation=len(self.deploys), changed=True, message="recorded")

        @activity.defn(name="send_alert")
        async def send_alert(alert: Alert) -> bool:
            self.alerts.append(alert)
            return True

        return [deploy_tenant_pool, send_alert, load_warmup_context, apply_warmup_step]

    def titled(self, text: str) -> list[Alert]:
        return [a for a in self.alerts if text in a.title]


@asynccontextmanager
async def worker(client: Client, rec: Recorder) -> AsyncIterator[str]:
    queue = f"ev-{uuid.uuid4().hex[:8]}"
    with ThreadPoolExecutor(max_workers=4) as pool:
        async with Worker(client, task_queue=queue, workflows=[IpWarmupWorkflow], activities=rec.activities(),
                          activity_executor=pool):
            yield queue


async def start(client: Client, queue: str, address: str, started_on: dt.date, wid: str | None = None
                ) -> WorkflowHandle[Any, WarmupStatus]:
    n = address.rsplit(".", 1)[1]
    return await client.start_workflow(
        IpWarmupWorkflow.run,
        WarmupInput(tenant="acme", address=address, domain=f"warm{n}.example", phase="week_1",
                    phase_started_on=started_on.isoformat(), quota=50, wake_window_seconds=600,
                    first_tick_within_seconds=2),  # the first daily tick right away, on the days before today
        id=wid or f"warmup/acme/{address}-{uuid.uuid4().hex[:6]}", task_queue=queue)


async def settled(handle: WorkflowHandle[Any, WarmupStatus], ok: Callable[[WarmupStatus], bool]) -> WarmupStatus:
    """The status once `ok` holds (activities run in real time while the server's clock waits). A query
    that times out (a loaded machine: the worker answers after the server gave up) is asked again."""
    st: WarmupStatus | None = None
    for _ in range(240):
        try:
            st = await handle.query(IpWarmupWorkflow.status, rpc_timeout=timedelta(seconds=20))
        except RPCError as err:
            if err.status != RPCStatusCode.DEADLINE_EXCEEDED and "Timeout expired" not in str(err):
                raise
            continue
        if ok(st):
            return st
        await asyncio.sleep(0.25)
    raise AssertionError(f"never settled: {st}")


async def ingest(tmp: Path, url: str, name: str, days: list[dt.date],
                 profile: tuple[str, int, int, int, int, int] | None = None) -> None:
    """Write an accounting file as PowerMTA would and run the real ingest over it."""
    path = tmp / f"acct-{name}-{days[0]:%m%d}.csv"
    path.write_text(render(name, days=days, profile=profile), encoding="utf-8")
    report = await ingest_local(path, url)
    assert report.malformed == 0 and report.unattributed == 0 and report.records > 0


def week_before(today: dt.date) -> list[dt.date]:
    return [today - dt.timedelta(days=7 - i) for i in range(7)]


@pytest.fixture
async def ev(temporal_time_skipping, sqlite_url: str, tmp_path: Path):
    env = temporal_time_skipping
    await register_search_attributes(env.client)
    today = (await env.get_current_time()).astimezone(dt.UTC).date()
    started = (today - dt.timedelta(days=7)).isoformat()
    load(sqlite_url, [(ip, "warming", "week_1", started) for ip in (GOOD, BOUNCING, COMPLAINING)])
    return env, today, sqlite_url, tmp_path, Recorder()


async def test_good_figures_advance(ev) -> None:
    env, today, url, tmp, rec = ev
    await ingest(tmp, url, "healthy", week_before(today))  # 49 delivered + 1 bounce a day
    async with worker(env.client, rec) as queue:
        handle = await start(env.client, queue, GOOD, today - dt.timedelta(days=7))
        # settled once the advance's alert (its last step) is sent
        st = await settled(handle, lambda s: s.phase == "week_2" and bool(rec.titled("week_2")))
        g = st.last_gate
        assert g is not None and (g.action, g.rule, g.passed) == ("advance", "pass", True)
        assert (g.sent, g.delivered, g.bounced, g.complaints, g.opens) == (350, 343, 7, 0, 0)
        assert (g.required_delivered, g.min_delivered_share, g.confidence) == (175, 0.5, 0.95)
        assert g.bounce_bounds == [0.009721, 0.040701] and g.complaint_bounds == [0.0, 0.011076]
        assert g.open_bounds is None and g.open_rate is None  # accounting carries no opens: unmeasured
        assert st.quota == 100 and ip_row(url, GOOD).daily_quota == 100
        assert [d.tenant for d in rec.deploys] == ["acme"]
        body = rec.titled("week_2 (100/day)")[0].body
        assert "343 delivered (need 175)" in body and "bounce 7/350 = 2.00% [0.97%, 4.07%]" in body
        await handle.terminate("test done")


async def test_too_little_mail_holds_alerts_once_then_advances(ev, monkeypatch: pytest.MonkeyPatch) -> None:
    env, today, url, tmp, rec = ev
    await ingest(tmp, url, "healthy", week_before(today), profile=(GOOD, 10, 0, 0, 0, 0))  # 10 a day
    async with worker(env.client, rec) as queue:
        # the id the CLI looks for (warmup/<tenant>/<ip>): `warmup status` below reads this workflow
        handle = await start(env.client, queue, GOOD, today - dt.timedelta(days=7), wid=workflow_id("acme", GOOD))
        first_run = handle.result_run_id
        st = await settled(handle, lambda s: s.ticks == 1 and bool(rec.titled("insufficient data")))
        g = st.last_gate
        assert g is not None and (g.action, g.rule, g.passed) == ("hold", "insufficient-data", False)
        assert (g.sent, g.delivered, g.required_delivered) == (70, 70, 175)
        assert g.reason == "hold: insufficient data: delivered 70 of the 175 required (50% of 50/day x 7 days)"
        assert (st.phase, st.quota, st.paused) == ("week_1", 50, False)
        # `email-engine warmup status` shows the counts, the bounds and the rule that fired
        monkeypatch.setenv("EMAIL_ENGINE_TEMPORAL_ADDRESS", env.client.service_client.config.target_host)
        get_settings.cache_clear()
        res = await asyncio.to_thread(CliRunner().invoke, warmup_app, ["status", "--tenant", "acme", "--json"])
        assert res.exit_code == 0, res.output
        row = {r["address"]: r for r in json.loads(res.output)}[GOOD]
        assert row["last_gate"]["rule"] == "insufficient-data" and row["last_gate"]["required_delivered"] == 175
        assert row["last_gate"]["complaint_bounds"] == [0.0, 0.052023]
        monkeypatch.setenv("COLUMNS", "250")  # rich tables: no folding in the assertions below
        res = await asyncio.to_thread(CliRunner().invoke, warmup_app, ["status", "--tenant", "acme"])
        assert res.exit_code == 0, res.output
        assert "hold: insufficient-data" in res.output and "70/175" in res.output
        assert "0.00% [0.00%–5.20%]" in res.output  # complaints 0 of 70: rate [Wilson bounds]
        assert (f"{GOOD} {today} (window {today - dt.timedelta(days=7)}..{today - dt.timedelta(days=1)}): "
                "sent 70, delivered 70, bounced 0, complaints 0, opens unmeasured at 95% confidence -> hold: "
                "insufficient data: delivered 70 of the 175 required (50% of 50/day x 7 days)") in res.output
        assert "no workflow" in res.output  # the other two warming IPs of the inventory
        await env.sleep(timedelta(days=2))  # two more daily ticks: 60, then 50 delivered in the window
        st = await settled(handle, lambda s: s.ticks == 3)
        assert st.last_gate is not None and st.last_gate.delivered == 50 and st.phase == "week_1"
        held = rec.titled("insufficient data")
        assert len(held) == 1, "one alert per hold"
        assert held[0].title.endswith("held at week_1: insufficient data")
        assert "delivered 70 of the 175 required" in held[0].body and "sent 70" in held[0].body
        assert [t.kind for t in st.history].count("hold") == 1 and rec.deploys == []
        # The traffic arrives: 100 a day over the last three days; the next tick has its evidence.
        await ingest(tmp, url, "healthy", [today + dt.timedelta(days=i) for i in range(3)],
                     profile=(GOOD, 100, 0, 0, 0, 0))
        await env.sleep(timedelta(days=1))
        st = await settled(handle, lambda s: s.phase == "week_2" and bool(rec.titled("week_2")))
        g = st.last_gate
        assert g is not None and (g.rule, g.delivered) == ("pass", 340) and st.quota == 100
        assert len(rec.titled("insufficient data")) == 1 and len(rec.deploys) == 1
        await keep_history(env.client, handle.id, first_run, "evidence-hold")
        await handle.terminate("test done")


async def test_real_excess_pauses(ev) -> None:
    env, today, url, tmp, rec = ev
    await ingest(tmp, url, "bouncing", week_before(today))  # 12 of 100 bounce every day
    await ingest(tmp, url, "complaints", week_before(today))  # 1 complaint of 198 delivered every day
    async with worker(env.client, rec) as queue:
        bouncing = await start(env.client, queue, BOUNCING, today - dt.timedelta(days=7))
        complaining = await start(env.client, queue, COMPLAINING, today - dt.timedelta(days=7))
        first_run = bouncing.result_run_id
        st = await settled(bouncing, lambda s: s.paused and len(rec.titled("safety gate failed")) >= 1)
        g = st.last_gate
        assert g is not None and (g.action, g.rule) == ("pause", "excess") and st.paused_by == "gate"
        assert (g.sent, g.delivered, g.bounced) == (700, 630, 84) and g.bounce_bounds == [0.097977, 0.146171]
        assert st.pause_reason == "pause: bounce rate 12.00% (84/700), lower bound 9.80% > max 5.00%"
        st = await settled(complaining, lambda s: s.paused and len(rec.titled("safety gate failed")) == 2)
        g = st.last_gate
        assert g is not None and (g.action, g.rule) == ("pause", "excess")
        assert (g.sent, g.delivered, g.bounced, g.complaints) == (1400, 1386, 14, 7)
        assert g.complaint_bounds == [0.002449, 0.010388]
        assert "complaint rate 0.51% (7/1386), lower bound 0.24% > max 0.10%" in st.pause_reason
        assert len(rec.titled("safety gate failed")) == 2 and rec.deploys == []
        assert ip_row(url, BOUNCING).daily_quota == 50 and ip_row(url, COMPLAINING).daily_quota == 50
        await env.sleep(timedelta(days=3))  # the pause holds (7 days): no tick, no further alert
        st = await settled(bouncing, lambda s: s.ticks >= 1)
        assert st.paused and st.phase == "week_1" and len(rec.titled("safety gate failed")) == 2
        await keep_history(env.client, bouncing.id, first_run, "evidence-pause")
        history = await bouncing.fetch_history()
        await Replayer(workflows=[IpWarmupWorkflow]).replay_workflow(history)
        await bouncing.terminate("test done")
        await complaining.terminate("test done")


def test_volume_floor_per_tenant_reaches_the_gate(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The settings' default, a tenant's override from the inventory (tenant.min_delivered_share,
    migration 0012) and the confidence setting all arrive in the context the workflow decides on."""
    from activities.warmup import WarmupContextRequest, load_context

    today = dt.date(2026, 11, 20)
    load(db_url, [(GOOD, "warming", "week_1", "2026-11-13")])
    monkeypatch.setenv("EMAIL_ENGINE_WARMUP_MIN_DELIVERED_SHARE", "0.7")
    monkeypatch.setenv("EMAIL_ENGINE_WARMUP_GATE_CONFIDENCE", "0.99")
    get_settings.cache_clear()
    t = load_context(WarmupContextRequest(GOOD, today.isoformat()), db_url).thresholds
    assert (t.min_delivered_share, t.confidence) == (0.7, 0.99)
    load(db_url, [(GOOD, "warming", "week_1", "2026-11-13")], extra_tenant="min_delivered_share = 0.9")
    t = load_context(WarmupContextRequest(GOOD, today.isoformat()), db_url).thresholds
    assert (t.min_delivered_share, t.confidence, t.max_bounce_rate) == (0.9, 0.99, 0.05)
    monkeypatch.setenv("EMAIL_ENGINE_WARMUP_MIN_DELIVERED_SHARE", "0")  # would let a phase end blind
    get_settings.cache_clear()
    with pytest.raises(ValueError, match="warmup_min_delivered_share"):
        get_settings()
    get_settings.cache_clear()


def rendered_week(today: dt.date, address: str, vmta: str, complaints: int) -> str:
    """Seven days before `today` of an accounting file in exactly the fields the rendered PowerMTA config
    asks for (tests/test_pmta_accounting_e2e.py reads them from the rendered <acct-file> block): 48
    delivered and 2 bounced a day, one remote bounce; `complaints` FBL reports, the first one naming the
    IP only in its ARF Source-IP."""
    from tests.test_pmta_accounting_e2e import rendered_acct_block, write_file

    _, records, fields = rendered_acct_block()
    rows: list[dict[str, str]] = []
    for n in range(7):
        day = today - dt.timedelta(days=7 - n)
        at = f"{day.isoformat()} 10:{n:02}:00+0000"
        rows += [{"type": "d", "timeLogged": at, "rcpt": f"user{n}-{i}@gmail.com", "envId": f"job{n}-{i}",
                  "dlvSourceIp": address, "vmta": vmta} for i in range(48)]
        rows += [{"type": "b", "timeLogged": at, "vmta": vmta}] * 2
        if n == 3:
            rows.append({"type": "rb", "timeLogged": f"{day.isoformat()} 18:00:00+0000", "rcpt": "user3-7@gmail.com",
                         "envId": "job3-7"})
        if n >= 7 - complaints:
            rows.append({"type": "f", "timeLogged": f"{day.isoformat()} 20:00:00+0000", "arf_Source-IP": address,
                         "dlvSourceIp": "203.0.113.7"} if n == 7 - complaints else
                        {"type": "f", "timeLogged": f"{day.isoformat()} 20:00:00+0000", "dlvSourceIp": address})
    return write_file(records, fields, rows)


@pytest.mark.parametrize(("complaints", "action", "rule"), [(0, "advance", "pass"), (2, "pause", "excess")])
async def test_rendered_accounting_format_drives_the_warmup(temporal_time_skipping, sqlite_url: str, tmp_path: Path,
                                                             complaints: int, action: str, rule: str) -> None:
    """The reference fleet's client-1 IP 45.123.10.41 (week_1) fed a file written in the rendered
    <acct-file> format: 350 sent, 336 delivered, 15 bounced; clean it advances, with 2 complaints among
    336 delivered (0.60%, lower bound 0.16% > 0.10%) it pauses."""
    from activities.inventory import apply_inventory
    from models.inventory import parse
    from tests.conftest import REFERENCE_INVENTORY

    env = temporal_time_skipping
    await register_search_attributes(env.client)
    today = (await env.get_current_time()).astimezone(dt.UTC).date()
    address = "45.123.10.41"
    apply_inventory(parse(REFERENCE_INVENTORY.read_text()), actor="test", url=sqlite_url,
                    today=today - dt.timedelta(days=7))
    f = tmp_path / f"pmta-acct-{today - dt.timedelta(days=7)}-0000.csv"
    f.write_text(rendered_week(today, address, "vmta-client1-41", complaints))
    report = await ingest_local(f, sqlite_url)
    assert report.malformed == 0 and report.unattributed == 0
    rec = Recorder()
    async with worker(env.client, rec) as queue:
        handle = await env.client.start_workflow(
            IpWarmupWorkflow.run,
            WarmupInput(tenant="client-1", address=address, domain="sos-mail-41.com", phase="week_1",
                        phase_started_on=(today - dt.timedelta(days=7)).isoformat(), quota=50,
                        wake_window_seconds=600, first_tick_within_seconds=2),
            id=f"warmup/client-1/{address}-{uuid.uuid4().hex[:6]}", task_queue=queue)
        st = await settled(handle, lambda s: s.last_gate is not None and len(rec.alerts) >= 1)
        g = st.last_gate
        assert g is not None and (g.action, g.rule) == (action, rule), g.reason
        assert (g.sent, g.delivered, g.bounced, g.complaints) == (350, 336, 15, complaints)
        assert (st.phase, st.paused) == (("week_2", False) if action == "advance" else ("week_1", True))
        assert ip_row(sqlite_url, address).daily_quota == (100 if action == "advance" else 50)
        await handle.terminate("test done")
