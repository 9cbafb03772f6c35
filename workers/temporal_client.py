"""Connecting to Temporal with the engine's settings."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.runtime import Runtime

from models.settings import Settings, get_settings


async def connect(settings: Settings | None = None, runtime: Runtime | None = None) -> Client:
    """`runtime`: e.g. the worker's Prometheus runtime (workers.metrics); None: the default runtime."""
    settings = settings or get_settings()
    if runtime is None:
        return await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace)
    return await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace, runtime=runtime)
