"""The scripts in examples/ run as a user runs them (`python examples/NAME.py ...`, a separate process
with the settings in its environment) against the Temporal dev server, a worker with the engine's real
workflows and activities (workers.registry), and a small SQLite inventory on 127.0.44.0/24 (this
file's loopback range) whose MTA host is disabled, so deploys render locally under <var_dir>/mta/.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from client import failovers
from client.errors import Refused
from client.warmups import start_all_warming, warmup_status
from models.failover import Listing, saga_id
from models.failover_contracts import SagaState, StartSagaRequest
from models.schedule import MIN_DAYS_PER_PHASE
from models.warmup_contracts import WarmupStatus
from tests import failover_support as fs

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ("pause_tenant_warmups.py", "approve_failover.py", "warmup_progress.py")

# tenant -> [(address, status, phase)]; ex-a warms two IPs, ex-b one (its workflow is never started)
FLEET: dict[str, list[tuple[str, str, str | None]]] = {
    "ex-a": [("127.0.44.11", "active", None), ("127.0.44.12", "active", None), ("127.0.44.13", "warming", "week_3"),
             ("127.0.44.14", "warming", "week_1"), ("127.0.44.21", "standby", None)],
    "ex-b": [("127.0.44.31", "active", None), ("127.0.44.32", "warming", "week_2"), ("127.0.44.41", "standby", None)],
}


async def example(client: Client, name: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run examples/NAME with the test's settings (database, var dir) and the dev server's address."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "120",
           "EMAIL_ENGINE_TEMPORAL_ADDRESS": client.service_client.config.target_host}
    return await asyncio.to_thread(subprocess.run, [sys.executable, str(ROOT / "examples" / name), *args],
                                   input=stdin, capture_output=True, text=True, env=env, timeout=120, check=False)


async def until(fn: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while not (value := await fn()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition never met")
        await asyncio.sleep(0.2)
    return value


async def end_all(client: Client) -> None:
    for tenant, ips in FLEET.items():
        for address, _, _ in ips:
            await fs.end_workflow(client, f"warmup/{tenant}/{address}")
            await fs.end_workflow(client, saga_id(tenant, address))


@pytest.mark.parametrize("name", EXAMPLES)
def test_help(name: str) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / name), "--help"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: {name}") and ("--reason" in proc.stdout or "--tenant" in proc.stdout)


async def test_progress_table_and_pausing_a_tenant(temporal_local, sqlite_url: str) -> None:
    client: Client = temporal_local.client
    fs.seed(sqlite_url, FLEET)
    async with fs.engine_worker(client) as queue:
        try:
            started = await start_all_warming(client, "ex-a", "test: warmups of ex-a", task_queue=queue)
            assert sorted(o.plan.address for o in started) == ["127.0.44.13", "127.0.44.14"]

            # (c) the progress table: every warming IP of the inventory, ex-b's without a workflow
            res = await example(client, "warmup_progress.py")
            assert res.returncode == 0, res.stderr
            lines = {line.split()[3]: line for line in res.stdout.splitlines() if "127.0.44." in line}
            st: WarmupStatus | None = await warmup_status(client, "ex-a", "127.0.44.13")
            assert st is not None and st.phase == "week_3"
            share = (2 + min(st.day_in_phase, MIN_DAYS_PER_PHASE) / MIN_DAYS_PER_PHASE) / 6  # two phases done
            assert "week_3" in lines["127.0.44.13"] and f"{share:4.0%}" in lines["127.0.44.13"]
            assert "250" in lines["127.0.44.13"] and "week_1" in lines["127.0.44.14"]
            assert "no workflow" in lines["127.0.44.32"] and "ex-b" in lines["127.0.44.32"]
            assert "3 warming IP(s), 1 without a workflow" in res.stdout

            # (a) pause every warming IP of ex-a
            res = await example(client, "pause_tenant_warmups.py", "ex-a", "--reason", "complaint spike", "--days", "2")
            assert res.returncode == 0, res.stderr
            assert "127.0.44.13: paused (warmup/ex-a/127.0.44.13)" in res.stdout
            assert "127.0.44.14: paused (warmup/ex-a/127.0.44.14)" in res.stdout
            assert "2 warmup(s) of ex-a paused" in res.stdout and "127.0.44.32" not in res.stdout
            for address in ("127.0.44.13", "127.0.44.14"):
                async def paused(address: str = address) -> WarmupStatus | None:
                    s = await warmup_status(client, "ex-a", address)
                    return s if s is not None and s.paused else None

                st = await until(paused)
                assert st.pause_reason == "complaint spike" and st.paused_until is not None

            # again: nothing changes; the table shows the pause
            res = await example(client, "pause_tenant_warmups.py", "ex-a", "--reason", "again")
            assert res.returncode == 0, res.stderr
            assert res.stdout.count("already paused") == 2 and "0 warmup(s) of ex-a paused" in res.stdout
            res = await example(client, "warmup_progress.py", "--tenant", "ex-a")
            assert res.returncode == 0 and res.stdout.count("yes: complaint spike") == 2, res.stdout + res.stderr
            assert "127.0.44.32" not in res.stdout

            # refusals: precise, nothing sent
            res = await example(client, "pause_tenant_warmups.py", "nobody", "--reason", "x")
            assert res.returncode == 1 and "error: no tenant named 'nobody'" in res.stderr
            res = await example(client, "pause_tenant_warmups.py", "ex-a", "--reason", "  ")
            assert res.returncode == 2 and "--reason must not be empty" in res.stderr
        finally:
            await end_all(client)


async def test_approve_a_held_failover_after_its_evidence(temporal_local, sqlite_url: str) -> None:
    client: Client = temporal_local.client
    fs.seed(sqlite_url, FLEET)
    fs.add_stats(sqlite_url, "127.0.44.12", sent=1000, complaints=10)  # 1% complaints: the breaker holds
    listed = "127.0.44.11"
    async with fs.engine_worker(client) as queue:
        try:
            started = await failovers.start_saga(client, StartSagaRequest(
                "ex-a", listed, [Listing("zen.test", listed, "127.0.0.2", "SBL", "https://check.spamhaus.org/")],
                "test"), queue)
            handle = client.get_workflow_handle(started.workflow_id)
            await fs.wait_for(handle, lambda s: s["status"] == "held")
            handle_run = (await handle.describe()).run_id
            # an approval for another incident (run) of this IP is refused by the saga
            with pytest.raises(Refused, match="this answer is for failover run stale-run"):
                await failovers.approve(client, "ex-a", listed, "old button", incident="stale-run")

            # the evidence is printed; answering no changes nothing
            res = await example(client, "approve_failover.py", "ex-a", listed, "--reason", "checked", stdin="n\n")
            assert res.returncode == 0, res.stderr
            assert f"failover/ex-a/{listed} (run {handle_run}): held" in res.stdout
            assert "held because: 7-day complaint rate 1.000% (10/1000)" in res.stdout
            assert f"listed: {listed} on zen.test" in res.stdout
            assert res.stdout.rstrip().endswith("not approved")
            assert (await handle.query("state"))["status"] == "held"
            assert fs.statuses(sqlite_url)["127.0.44.21"] == "standby"

            res = await example(client, "approve_failover.py", "ex-a", listed, "--reason", "listing confirmed", "--yes")
            assert res.returncode == 0, res.stderr
            assert res.stdout.rstrip().endswith("approved: listing confirmed")
            state = await client.get_workflow_handle(started.workflow_id, result_type=SagaState).result()
            assert state.decision == "approved" and state.standby == "127.0.44.21"
            assert fs.statuses(sqlite_url)["127.0.44.21"] == "warming"
            assert fs.statuses(sqlite_url)[listed] == "quarantine"

            # a saga that is no longer held, an unknown one, a bad address: refused, exit 1
            res = await example(client, "approve_failover.py", "ex-a", listed, "--reason", "again", "--yes")
            assert res.returncode == 1 and "is completed, not held: nothing to approve" in res.stderr, res.stderr
            res = await example(client, "approve_failover.py", "ex-a", "127.0.44.99", "--reason", "x", "--yes")
            assert res.returncode == 1 and "no running failover failover/ex-a/127.0.44.99" in res.stderr
            res = await example(client, "approve_failover.py", "ex-a", "not-an-ip", "--reason", "x", "--yes")
            assert res.returncode == 1 and "not-an-ip" in res.stderr
        finally:
            await end_all(client)
