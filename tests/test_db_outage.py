"""A 60 s outage of the engine's PostgreSQL database in the middle of a failover saga and of a warmup step
(issue 11): the database (not the server) refuses connections (`ALTER DATABASE ... ALLOW_CONNECTIONS false`)
and its backends are terminated; once it is back, both finish, consistent.

Dev server (real time), real PostgreSQL, the engine's workflows and activities (workers.registry) in this
process. The outage starts from inside the step's first activity attempt (a wrapper of the real activity,
same name), so it hits the same point every run. OUTAGE_SECONDS (default 60) shortens it when exploring.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import threading
import time
import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlmodel import col, select
from temporalio import activity

from activities import db
from activities.failover import EvidenceRequest, breaker_evidence_activity
from activities.warmup import WarmupContext, WarmupContextRequest, load_warmup_context
from client.failovers import start_saga
from client.warmups import start_workflow, warmup_input
from models.deploy_history import MtaDeployRecord
from models.failover import BreakerEvidence, Listing, saga_id
from models.failover_contracts import SagaState, StartSagaRequest
from models.settings import get_settings
from models.warmup_contracts import StartPlan, WarmupStatus
from tests import failover_support as fs
from tests import warmup_support as ws
from tests.support import postgres_admin_url, until
from tests.test_crash_recovery import LISTED, TENANT, check_consistent
from workflows.warmup import IpWarmupWorkflow

SECONDS = float(os.environ.get("OUTAGE_SECONDS", "60"))
PG = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


class Outage:
    """Cut one database for `seconds`: no new connections, every open one terminated; then restore."""

    def __init__(self, url: str, seconds: float) -> None:
        self.name = make_url(url).database
        self.seconds = seconds
        self.admin = create_engine(db.normalize_url(postgres_admin_url()), isolation_level="AUTOCOMMIT")
        self.started = threading.Event()
        self.ended = threading.Event()
        self.at: float | None = None

    def _allow(self, allow: bool) -> None:
        with self.admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS {"true" if allow else "false"}'))
            if not allow:
                conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                  "WHERE datname = :name AND pid <> pg_backend_pid()"), {"name": self.name})

    def start_once(self) -> None:
        if self.started.is_set():
            return
        self.started.set()
        self._allow(False)
        self.at = time.monotonic()
        timer = threading.Timer(self.seconds, self.end)
        timer.daemon = True
        timer.start()

    def end(self) -> None:
        self._allow(True)
        self.ended.set()

    def close(self) -> None:
        if self.started.is_set() and not self.ended.is_set():
            self.end()
        self.admin.dispose()


@PG
async def test_saga_survives_a_database_outage_after_the_quarantine(temporal_local, db_url: str) -> None:
    client = temporal_local.client
    fs.seed(db_url)
    get_settings.cache_clear()
    outage = Outage(db_url, SECONDS)

    # Step 2's first attempt: step 1 (quarantine) is committed; the database goes away now.
    @activity.defn(name="failover_breaker_evidence")
    def evidence_during_outage(req: EvidenceRequest) -> BreakerEvidence:
        outage.start_once()
        return breaker_evidence_activity(req)

    try:
        async with fs.engine_worker(client, overrides=[evidence_during_outage]) as queue:
            await start_saga(client, StartSagaRequest(TENANT, LISTED, [Listing(zone="zen.spamhaus.org", target=LISTED,
                                                                               code="127.0.0.2")], "outage test"),
                             queue)
            handle = client.get_workflow_handle(saga_id(TENANT, LISTED), result_type=SagaState)
            state = await asyncio.wait_for(handle.result(), SECONDS + 120)
            assert outage.ended.is_set() and outage.at is not None
            print(f"database outage of {SECONDS:.0f} s in the saga: completed "
                  f"{time.monotonic() - outage.at - SECONDS:.1f} s after the database came back")
            check_consistent(db_url, handle.id, state, approved=False)
    finally:
        outage.close()
        get_settings.cache_clear()


@PG
async def test_warmup_step_survives_a_database_outage(temporal_local, db_url: str) -> None:
    client = temporal_local.client
    address, tenant = "127.0.12.71", f"t{uuid.uuid4().hex[:8]}"
    today = dt.datetime.now(dt.UTC).date()
    started = (today - dt.timedelta(days=8)).isoformat()
    ws.load(db_url, [(address, "warming", "week_1", started)], tenant=tenant)
    for back in range(1, 8):  # a clean week of mail: the gate passes and the IP advances to week_2
        ws.add_stats(db_url, address, today - dt.timedelta(days=back), sent=50, bounced=0, complaints=0, opens=20)
    get_settings.cache_clear()
    outage = Outage(db_url, SECONDS)

    # The daily tick's first database read: the database goes away now.
    @activity.defn(name="load_warmup_context")
    def context_during_outage(req: WarmupContextRequest) -> WarmupContext:
        outage.start_once()
        return load_warmup_context(req)

    plan = StartPlan(tenant=tenant, address=address, domain="warm71.example", phase="week_1",
                     phase_started_on=started, quota=50, moved_from=None)
    inp = warmup_input(plan, get_settings(), "outage test")
    inp.first_tick_within_seconds = 2
    wid = f"warmup/{tenant}/{address}"
    try:
        async with fs.engine_worker(client, overrides=[context_during_outage]) as queue:
            await start_workflow(client, plan, "outage test", task_queue=queue, inp=inp)
            handle = client.get_workflow_handle(wid)

            async def advanced() -> WarmupStatus | None:  # the new phase is stored and deployed
                st: WarmupStatus = await handle.query(IpWarmupWorkflow.status)
                return st if st.phase == "week_2" and _deployed(db_url, address) else None

            st = await until("warmup advanced to week_2", advanced, SECONDS + 120, poll=0.5)
            assert outage.ended.is_set() and outage.at is not None
            print(f"database outage of {SECONDS:.0f} s in a warmup step: advanced "
                  f"{time.monotonic() - outage.at - SECONDS:.1f} s after the database came back")
            assert st.quota == 100 and not st.paused, st
            assert [t.kind for t in st.history].count("advance") == 1 and "deploy_failed" not in [
                t.kind for t in st.history], st.history
            row = ws.ip_row(db_url, address)
            assert (row.status.value, row.warmup_phase.value if row.warmup_phase else None, row.daily_quota) == (
                "warming", "week_2", 100)
            audit = [r for r in ws.audit(db_url, address) if r.actor == wid]
            assert [(r.from_phase, r.to_phase) for r in audit] == [("week_1", "week_2")], audit  # written once
    finally:
        outage.close()
        await fs.end_workflow(client, wid)
        await fs.end_workflow(client, "mta-deploy/pmta-t")  # tests.warmup_support's MTA host
        get_settings.cache_clear()



def _deployed(url: str, address: str) -> bool:
    """A deploy that included the warmup's change (its reason names the IP) went through."""
    with db.session_scope(url) as s:
        found = s.exec(select(MtaDeployRecord.id).where(col(MtaDeployRecord.ok),
                                                        col(MtaDeployRecord.reason).contains(address))).first()
        return found is not None
