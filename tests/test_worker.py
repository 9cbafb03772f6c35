"""The `email-engine worker` process against the real Temporal dev server: it serves the engine's
activities on the task queue from settings and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.worker import Worker

from activities.inventory import apply_inventory
from models.inventory import parse
from tests.conftest import REFERENCE_INVENTORY


@workflow.defn(sandboxed=False)
class AskFleet:
    @workflow.run
    async def run(self, engine_queue: str) -> dict[str, Any]:
        return await workflow.execute_activity(
            "fleet_snapshot", "client-2", task_queue=engine_queue, start_to_close_timeout=timedelta(seconds=30)
        )


async def test_worker_process_serves_activities_and_stops_on_sigterm(temporal_local, sqlite_url: str) -> None:  # type: ignore[no-untyped-def]
    apply_inventory(parse(REFERENCE_INVENTORY.read_text()), actor="test", url=sqlite_url)
    queue = f"engine-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "EMAIL_ENGINE_DATABASE_URL": sqlite_url, "EMAIL_ENGINE_TASK_QUEUE": queue,
           "EMAIL_ENGINE_TEMPORAL_ADDRESS": temporal_local.client.service_client.config.target_host}
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "worker"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        client = temporal_local.client
        async with Worker(client, task_queue=f"{queue}-test", workflows=[AskFleet]):
            result = await client.execute_workflow(
                AskFleet.run, queue, id=f"ask-{queue}", task_queue=f"{queue}-test",
                execution_timeout=timedelta(seconds=60))
        assert result["tenants"]["client-2"]["by_status"]["warming"] == 7
        assert {r["tenant"] for r in result["ips"]} == {"client-2"}
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.to_thread(proc.communicate, timeout=30)
    assert proc.returncode == 0, out.decode()
    assert b"worker shutting down" in out
