"""The engine worker: every workflow and activity on the task queue from settings."""

from __future__ import annotations

import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from models.settings import Settings, get_settings
from workers import registry
from workers.temporal_client import connect

log = logging.getLogger(__name__)


def build_worker(client: Client, task_queue: str, executor: ThreadPoolExecutor) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=registry.workflows(),
        activities=registry.activities(),
        activity_executor=executor,
        max_concurrent_activities=32,
        graceful_shutdown_timeout=timedelta(seconds=10),
    )


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
    client = await connect(settings)
    with ThreadPoolExecutor(max_workers=32) as executor:
        worker = build_worker(client, settings.task_queue, executor)
        async with worker:
            log.info("worker polling task queue %s on %s", settings.task_queue, settings.temporal_address)
            await stop.wait()
            log.info("worker shutting down")
