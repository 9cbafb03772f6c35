"""A real engine worker process for the kill tests (tests/test_crash_recovery.py): the production worker
(workers.engine.build_worker, every workflow and activity of workers.registry) on one task queue.

    python -m tests.crash_worker <temporal address> <task queue>

Settings (database, var dir) come from the environment like the real worker's. With CRASH_AT=<activity
name> the worker stops inside that activity (CRASH_MODE=after: once its side effect is committed;
before: before it starts) the first time its arguments contain CRASH_MATCH, writes the file CRASH_MARK
and waits there, so the test can SIGKILL the process while the saga is in that step.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.client import Client

from workers import registry
from workers.engine import build_worker

DEF_ATTR = "__temporal_activity_definition"


def _name(fn: Callable[..., Any]) -> str:
    defn = activity._Definition.must_from_callable(fn)
    assert defn.name is not None
    return defn.name


def stopping_in(fn: Callable[..., Any], mark: Path, match: str, after: bool) -> Callable[..., Any]:
    """`fn` (an activity) that stops for good inside its first call whose arguments contain `match`."""
    name = _name(fn)

    def hit(args: tuple[Any, ...]) -> bool:
        return not mark.exists() and match in repr(args)

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def run_async(*args: Any) -> Any:
            stop = hit(args)
            if stop and not after:
                mark.write_text(name)
                await asyncio.sleep(3600)
            result = await fn(*args)
            if stop:
                mark.write_text(name)
                await asyncio.sleep(3600)
            return result

        wrapper: Callable[..., Any] = run_async
    else:

        @functools.wraps(fn)
        def run_sync(*args: Any) -> Any:
            stop = hit(args)
            if stop and not after:
                mark.write_text(name)
                time.sleep(3600)
            result = fn(*args)
            if stop:
                mark.write_text(name)
                time.sleep(3600)
            return result

        wrapper = run_sync
    wrapper.__dict__.pop(DEF_ATTR, None)  # functools.wraps copied the original's definition
    return activity.defn(name=name)(wrapper)


async def main(address: str, queue: str) -> None:
    acts = registry.activities()
    crash_at = os.environ.get("CRASH_AT", "")
    if crash_at:
        mark = Path(os.environ["CRASH_MARK"])
        match = os.environ.get("CRASH_MATCH", "")
        after = os.environ.get("CRASH_MODE", "after") == "after"
        acts = [stopping_in(fn, mark, match, after) if _name(fn) == crash_at else fn for fn in acts]
        assert crash_at in {_name(fn) for fn in acts}, crash_at
    registry.activities = lambda: acts  # type: ignore[assignment]  # build_worker takes the registry's list
    client = await Client.connect(address)
    with ThreadPoolExecutor(max_workers=32) as executor:
        async with build_worker(client, queue, executor):
            print("worker polling", queue, flush=True)
            await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
