"""Connecting to Temporal with the engine's settings, and running a short client process."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from temporalio.client import Client
from temporalio.runtime import Runtime

from models.errors import TemporalUnreachable
from models.settings import Settings, get_settings

T = TypeVar("T")

#: Seconds the loop keeps running after the client process's work is done (see run).
EXIT_GRACE = 0.05


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


def run(main: Coroutine[Any, Any, T], grace: float = EXIT_GRACE) -> T:
    """`asyncio.run(main)` for a short process that used a Temporal client (a CLI command, a script).

    After `main` ends (its frame, and with it a client it connected, is dropped) the loop runs `grace`
    seconds more, so the SDK's Rust threads finish closing the connection before the interpreter
    finalizes. Without it about one such process in ten aborts at exit, after its work was done
    ("Fatal Python error: PyGILState_Release", temporalio/sdk-python#300). Keep the client in
    `main`'s locals, not in a global, so it is dropped inside the loop."""

    async def _main() -> T:
        try:
            return await main
        finally:
            await asyncio.sleep(grace)

    return asyncio.run(_main())
