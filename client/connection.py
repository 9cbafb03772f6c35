"""Connecting to Temporal with the engine's settings."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.runtime import Runtime

from models.errors import TemporalUnreachable
from models.settings import Settings, get_settings


async def connect(settings: Settings | None = None, runtime: Runtime | None = None) -> Client:
    """`runtime`: e.g. the worker's Prometheus runtime (workers.metrics); None: the default runtime.

    Raises TemporalUnreachable (a RuntimeError) when the frontend cannot be reached."""
    settings = settings or get_settings()
    try:
        if runtime is None:
            return await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace)
        return await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace,
                                    runtime=runtime)
    except RuntimeError as err:
        raise TemporalUnreachable(f"cannot reach Temporal at {settings.temporal_address}: {err} "
                                  "(is `email-engine dev` or the production cluster running?)") from err
