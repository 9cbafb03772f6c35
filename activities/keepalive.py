"""Liveness heartbeats for activities that wait on something else (a database, a workflow, an API).

Why: an activity whose worker dies is retried only after its start_to_close_timeout, unless it has a
heartbeat_timeout and heartbeats. Most of our activities spend their time blocked in one call (a
query, a Temporal RPC, an HTTP request) and cannot heartbeat in between, so `heartbeating` sends a
heartbeat every few seconds from beside the call for as long as it runs. The heartbeat proves the
worker process is alive, not that the call progresses; the call's own timeouts (and the caller's
start_to_close_timeout) bound a call that hangs. Outside an activity (CLI, tests) it does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

from temporalio import activity

#: Seconds between liveness heartbeats (the SDK throttles to 80% of the caller's heartbeat_timeout).
EVERY = 2.0

F = TypeVar("F", bound=Callable[..., Any])


def beat(*details: Any) -> None:
    """activity.heartbeat, ignored outside an activity (a function also called from the CLI)."""
    if activity.in_activity():
        with contextlib.suppress(RuntimeError):
            activity.heartbeat(*details)


def _beat_until(stop: threading.Event, every: float) -> None:
    while not stop.wait(every):
        beat()


async def _beat_forever(every: float) -> None:
    while True:
        await asyncio.sleep(every)
        beat()


def heartbeating(fn: F, every: float = EVERY) -> F:
    """Wrap an activity function (sync or async) so it heartbeats every `every` seconds while it runs.
    Apply below @activity.defn: `@activity.defn(name=...)` then `@heartbeating`."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            if not activity.in_activity():
                return await fn(*args, **kwargs)
            beater = asyncio.ensure_future(_beat_forever(every))
            try:
                beat()
                return await fn(*args, **kwargs)
            finally:
                beater.cancel()

        return cast(F, run_async)

    @functools.wraps(fn)
    def run_sync(*args: Any, **kwargs: Any) -> Any:
        if not activity.in_activity():
            return fn(*args, **kwargs)
        stop = threading.Event()
        # the activity context is a contextvar: the heartbeat thread runs in a copy of this thread's
        thread = threading.Thread(target=contextvars.copy_context().run, args=(_beat_until, stop, every),
                                  name="activity-heartbeat", daemon=True)
        beat()
        thread.start()
        try:
            return fn(*args, **kwargs)
        finally:
            stop.set()

    return cast(F, run_sync)
