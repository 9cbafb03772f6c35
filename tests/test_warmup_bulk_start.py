"""Starting many warmups (issue 14): concurrent, bounded, in order, idempotent; the worker's cache and
concurrency come from settings. Against the Temporal dev server and a real database."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

import client.warmups as warmups
from models.settings import get_settings
from tests.warmup_support import load
from workers.engine import build_worker

ADDRESSES = [f"127.0.12.{n}" for n in range(100, 140)]


async def test_start_all_warming_is_concurrent_bounded_ordered_and_idempotent(
        temporal_local, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    tenant = f"t{uuid.uuid4().hex[:8]}"
    started_on = (dt.date.today() - dt.timedelta(days=2)).isoformat()
    load(sqlite_url, [(a, "warming", "week_1", started_on) for a in ADDRESSES], tenant=tenant, host=f"h-{tenant}")
    client, queue = temporal_local.client, f"bulk-{uuid.uuid4().hex[:8]}"

    # a spy around the real start (no worker is needed to start workflows): how many run at once
    real = warmups.start_workflow
    in_flight, peak = 0, 0

    async def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            await asyncio.sleep(0.01)  # keep each start open long enough for the others to pile up
            return await real(*args, **kwargs)
        finally:
            in_flight -= 1

    monkeypatch.setattr(warmups, "start_workflow", counting)
    first = await warmups.start_all_warming(client, tenant, task_queue=queue, concurrency=5)
    assert [o.plan.address for o in first] == ADDRESSES  # the inventory's order
    assert all(o.started for o in first) and peak == 5, peak  # concurrent, never more than the bound
    for o in first[:3]:
        desc = await client.get_workflow_handle(o.workflow_id).describe()
        assert desc.task_queue == queue and desc.workflow_type == "IpWarmupWorkflow"

    peak = 0
    again = await warmups.start_all_warming(client, tenant, task_queue=queue)  # the setting's bound (64)
    assert [o.workflow_id for o in again] == [o.workflow_id for o in first]
    assert not any(o.started for o in again) and 1 < peak <= get_settings().warmup_start_concurrency
    for o in first:
        await client.get_workflow_handle(o.workflow_id).terminate("test done")


async def test_worker_cache_and_concurrency_come_from_settings(temporal_local,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = get_settings()
    assert defaults.worker_max_cached_workflows >= 10_000  # sized for a 10,000-IP fleet (docs/scale.md)
    monkeypatch.setenv("EMAIL_ENGINE_WORKER_MAX_CACHED_WORKFLOWS", "2500")
    monkeypatch.setenv("EMAIL_ENGINE_WORKER_MAX_CONCURRENT_WORKFLOW_TASKS", "150")
    monkeypatch.setenv("EMAIL_ENGINE_WORKER_MAX_CONCURRENT_ACTIVITIES", "12")
    get_settings.cache_clear()
    try:
        with ThreadPoolExecutor(max_workers=12) as pool:
            worker = build_worker(temporal_local.client, "sized", pool)
            cfg = worker.config()
        assert (cfg["max_cached_workflows"], cfg["max_concurrent_workflow_tasks"],
                cfg["max_concurrent_activities"]) == (2500, 150, 12)
    finally:
        get_settings.cache_clear()
