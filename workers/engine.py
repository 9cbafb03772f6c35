"""The engine worker: every workflow and activity on the task queue from settings."""

from __future__ import annotations

import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from client.connection import connect
from models.settings import Settings, get_settings
from workers import registry

log = logging.getLogger(__name__)


def build_worker(client: Client, task_queue: str, executor: ThreadPoolExecutor,
                 settings: Settings | None = None) -> Worker:
    """The engine worker, its cache and concurrency from settings (sized for the fleet, docs/scale.md)."""
    settings = settings or get_settings()
    return Worker(
        client,
        task_queue=task_queue,
        workflows=registry.workflows(),
        activities=registry.activities(),
        activity_executor=executor,
        max_cached_workflows=settings.worker_max_cached_workflows,
        max_concurrent_workflow_tasks=settings.worker_max_concurrent_workflow_tasks,
        max_concurrent_activities=settings.worker_max_concurrent_activities,
        graceful_shutdown_timeout=timedelta(seconds=10),
    )


async def _check_database(settings: Settings) -> None:
    """A missing or unmigrated database stops the worker at once, with the reason (never an empty
    database created under it); one that cannot be reached yet is only logged: activities retry."""
    from temporalio.exceptions import ApplicationError

    from activities import db

    try:
        await asyncio.to_thread(db.check_ready, settings.resolved_database_url())
    except ApplicationError as err:
        if err.type != db.MISSING:
            raise
        log.error("%s", err.message)
        raise SystemExit(2) from None
    except Exception as exc:
        log.warning("the database is not reachable at startup (%s: %s); activities will retry",
                    type(exc).__name__, exc)


async def run(settings: Settings | None = None, stop: asyncio.Event | None = None) -> None:
    """Run until `stop` is set, or SIGTERM/SIGINT arrives; in-flight activities get 10 s to finish."""
    settings = settings or get_settings()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread
            pass
    from workers import metrics

    # The SDK metrics runtime must exist before the client connects; a port in use is logged, not fatal.
    try:
        runtime = metrics.temporal_runtime(settings.metrics_address)
    except Exception as exc:
        log.error("Temporal SDK metrics disabled: %s", exc)
        runtime = None
    fleet_server = None
    try:
        fleet_server = metrics.serve_fleet_metrics(settings.fleet_metrics_address)
    except Exception as exc:
        log.error("fleet metrics disabled: %s", exc)
    await _check_database(settings)
    client = await connect(settings, runtime=runtime)
    # sync activities run in this pool: one thread per activity slot
    with ThreadPoolExecutor(max_workers=settings.worker_max_concurrent_activities) as executor:
        worker = build_worker(client, settings.task_queue, executor, settings)
        async with worker:
            log.info("worker polling task queue %s on %s", settings.task_queue, settings.temporal_address)
            await stop.wait()
            log.info("worker shutting down")
    if fleet_server is not None:
        fleet_server.shutdown()
