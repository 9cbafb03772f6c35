"""Crash recovery of the failover saga (issue 11): for each step, a real worker process (tests/crash_worker.py,
the production worker) is killed with SIGKILL while the saga is in that step, a new worker process starts,
and the saga must complete within 60 s of it, with the database, the rendered MTA config and the audit
trail agreeing: the listed IP quarantined and out of the rendered pool, exactly one standby claimed and
warming (in the pool), every step's audit row written once, no claim left behind.

Dev server (temporal_local), real PostgreSQL, the real engine worker with every real activity (the MTA
host of tests/failover_support.py is disabled, so deploys render to <var_dir>/mta/<host>/). The recovery
time of each step is printed (`-s`); CRASH_RECOVERY_DEADLINE (seconds, default 60) lets a measurement
run on older code wait longer than the requirement.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.client import Client

from client.failovers import start_saga
from models.failover import Listing, saga_id
from models.failover_contracts import SagaState, StartSagaRequest
from models.settings import get_settings
from tests import failover_support as fs
from tests.support import until
from workflows.failover import FailoverSaga

REPO = Path(__file__).resolve().parent.parent
DEADLINE = float(os.environ.get("CRASH_RECOVERY_DEADLINE", "60"))
TENANT, LISTED, STANDBY, SECOND_STANDBY = "fo-a", "127.0.40.11", "127.0.40.21", "127.0.40.22"
FIGURES = os.environ.get("CRASH_FIGURES")  # optional file the recovery times are appended to


@dataclass(frozen=True)
class Step:
    name: str
    activity: str | None  # None: no activity in flight (the saga waits for an operator)
    match: str = ""
    mode: str = "after"  # after: the activity's side effect is committed, its completion is lost


STEPS = [
    Step("quarantine", "failover_quarantine_ip"),
    Step("breaker_evidence", "failover_breaker_evidence"),
    Step("hold_approve", None),
    Step("standby_claim", "failover_claim_standby"),
    Step("start_warmup", "start_ip_warmup"),
    Step("deploy", "deploy_mta_host", match="failover of", mode="before"),
    Step("alert", "send_alert", match="/done"),
    Step("finish", "failover_finish"),
]


class WorkerProcess:
    """`python -m tests.crash_worker` on the dev server; SIGKILL or stop it."""

    def __init__(self, address: str, queue: str, log: Path, crash: Step | None = None, mark: Path | None = None):
        env = dict(os.environ, PYTHONPATH=str(REPO))
        if crash is not None and crash.activity:
            assert mark is not None
            env.update(CRASH_AT=crash.activity, CRASH_MATCH=crash.match, CRASH_MODE=crash.mode,
                       CRASH_MARK=str(mark))
        self.log = log
        self.started = time.monotonic()
        with log.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "tests.crash_worker", address, queue], cwd=REPO,
                                         env=env, stdout=out, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


@asynccontextmanager
async def workers() -> AsyncIterator[list[WorkerProcess]]:
    procs: list[WorkerProcess] = []
    try:
        yield procs
    finally:
        for p in procs:
            p.kill()


def _record(step: str, seconds: float, since_kill: float) -> None:
    line = f"crash recovery: step {step}: saga completed {seconds:.1f} s after the new worker started " \
           f"({since_kill:.1f} s after the kill)"
    print(line)
    if FIGURES:
        with open(FIGURES, "a") as f:
            f.write(f"{step}\t{seconds:.1f}\t{since_kill:.1f}\n")


def check_consistent(url: str, wid: str, state: SagaState, approved: bool) -> None:
    """Database, rendered config and audit trail agree with one completed failover."""
    assert state.status == "completed", state
    assert state.decision == ("approved" if approved else "automatic"), state
    assert state.standby == STANDBY, state
    st = fs.statuses(url)
    assert st[LISTED] == "quarantine" and st[STANDBY] == "warming" and st[SECOND_STANDBY] == "standby", st
    assert fs.claims(url) == []  # the saga's claim is released at the end, none left over
    pool = {a for a, s in st.items() if s in ("active", "warming")}
    assert fs.bound_addresses() == pool, (fs.bound_addresses(), pool)  # the rendered pool is the database's
    listed = [r for r in fs.audit(url, LISTED) if r.actor == wid]
    reasons = [r.reason for r in listed]
    assert len(reasons) == len(set(reasons)), reasons  # no audit row written twice
    assert sum(r.startswith("failover step 1: quarantined") for r in reasons) == 1, reasons
    assert sum(r.startswith("failover step 2: circuit breaker") for r in reasons) == 1, reasons
    assert sum(r.startswith("failover step 4: deployed") for r in reasons) == 1, reasons
    assert sum(r.startswith("failover step 6:") for r in reasons) == 1, reasons
    if approved:
        assert sum(r.startswith("failover step 2: approved") for r in reasons) == 1, reasons
    standby = [r for r in fs.audit(url, STANDBY) if r.actor == wid]
    assert [r.reason for r in standby].count("failover step 3: standby claimed") == 1, standby
    assert sum(r.to_status == "warming" for r in standby) == 1, standby  # the warmup started once
    assert not [r for r in fs.audit(url, SECOND_STANDBY) if r.actor == wid]  # only one standby touched
    events = fs.events(url, LISTED)
    assert len(events) == 1 and events[0].workflow_id == wid and events[0].outcome, events


async def _cleanup(client: Client) -> None:
    await fs.end_workflow(client, f"mta-deploy/{fs.HOST}")
    for tenant, ips in fs.FLEET.items():
        for address, _, _ in ips:
            await fs.end_workflow(client, f"warmup/{tenant}/{address}")


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("step", STEPS, ids=[s.name for s in STEPS])
async def test_saga_recovers_from_a_killed_worker(temporal_local, db_url: str, step: Step, tmp_path: Path) -> None:
    client: Client = temporal_local.client
    address = client.service_client.config.target_host
    url = db_url
    fs.seed(url)
    approved = step.activity is None
    if approved:  # complaints over the limit: the circuit breaker holds for an operator
        fs.add_stats(url, "127.0.40.12", sent=10_000, complaints=100)
    get_settings.cache_clear()
    queue = f"crash-{uuid.uuid4().hex[:8]}"
    mark, log = tmp_path / "in-step", tmp_path / "workers.log"
    wid = saga_id(TENANT, LISTED)
    try:
        async with workers() as procs:
            procs.append(WorkerProcess(address, queue, log, crash=step, mark=mark))
            await start_saga(client, StartSagaRequest(TENANT, LISTED, [Listing(zone="zen.spamhaus.org",
                                                                               target=LISTED, code="127.0.0.2")],
                                                      "crash test"), queue)
            handle = client.get_workflow_handle(wid, result_type=SagaState)
            if step.activity:
                async def in_step() -> bool:
                    return mark.exists()
                await until(f"saga in step {step.name}", in_step, log=log)
            else:
                async def held() -> bool:  # waiting for the operator only (the held alert was sent)
                    state = await handle.query(FailoverSaga.state)
                    if state is None or state.status != "held":
                        return False
                    return not (await handle.describe()).raw_description.pending_activities
                await until("saga held", held, log=log)
            procs[0].kill()
            killed = time.monotonic()
            procs.append(WorkerProcess(address, queue, log))
            new = procs[-1].started
            if approved:
                await handle.execute_update(FailoverSaga.approve, "approved after the crash")
            try:
                state = await asyncio.wait_for(handle.result(), DEADLINE)
            except TimeoutError:
                raise AssertionError(f"step {step.name}: the saga did not complete within {DEADLINE:.0f} s of "
                                     f"the new worker; state: {await handle.query(FailoverSaga.state)}") from None
            done = time.monotonic()
            _record(step.name, done - new, done - killed)
            check_consistent(url, wid, state, approved)
    finally:
        await _cleanup(client)
        get_settings.cache_clear()
