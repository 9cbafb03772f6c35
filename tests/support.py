"""Helpers for tests that use real servers: tools, free loopback ports, the CI rule."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(message: str) -> NoReturn:
    """A real part this test needs is missing: a skip on a developer machine, a failure in CI."""
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def require_tool(name: str, *paths: str) -> str:
    """Path of a system tool. Missing: a skip on a developer machine, a failure in CI."""
    for candidate in (*paths, shutil.which(name)):
        if candidate and os.path.exists(candidate):
            return candidate
    unavailable(f"{name} is not installed (scripts/system-packages installs it)")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def postgres_admin_url() -> str:
    return os.environ.get("EMAIL_ENGINE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


async def until(what: str, fn: Callable[[], Awaitable[Any]], timeout: float = 60.0, log: Path | None = None,
                poll: float = 0.1) -> Any:
    """Poll `fn` until it returns something truthy (returned); past `timeout` seconds fail naming `what`,
    with the end of `log` (a worker's output) when given."""
    deadline = time.monotonic() + timeout
    while True:
        value = await fn()
        if value:
            return value
        if time.monotonic() > deadline:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise AssertionError(f"{what}: not reached in {timeout:.0f} s" + (f"\n{tail}" if tail else ""))
        await asyncio.sleep(poll)


#: (start_to_close, schedule_to_close, heartbeat, initial interval, backoff, maximum interval, maximum
#: attempts, non-retryable types) of a scheduled activity, as its history records it.
ActivityOptions = tuple[Any, Any, Any, Any, float, Any, int, tuple[str, ...]]


def activity_options(*histories: Any) -> dict[str, set[ActivityOptions]]:
    """Activity name -> the options every ActivityTaskScheduled event of these histories carried: what a
    workflow really asked of Temporal (timeouts and retry policy), to compare across code changes."""
    out: dict[str, set[ActivityOptions]] = {}
    for history in histories:
        for ev in history.events:
            if not ev.HasField("activity_task_scheduled_event_attributes"):
                continue
            a = ev.activity_task_scheduled_event_attributes
            rp = a.retry_policy
            out.setdefault(a.activity_type.name, set()).add((
                a.start_to_close_timeout.ToTimedelta(), a.schedule_to_close_timeout.ToTimedelta(),
                a.heartbeat_timeout.ToTimedelta(), rp.initial_interval.ToTimedelta(), rp.backoff_coefficient,
                rp.maximum_interval.ToTimedelta(), rp.maximum_attempts, tuple(rp.non_retryable_error_types)))
    return out
