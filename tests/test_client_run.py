"""client.connection.run: asyncio.run for a short client process, with a grace period inside the loop
after the work so the Temporal SDK's threads close the connection before the interpreter finalizes
(temporalio/sdk-python#300). The processes it protects are tested end to end in tests/test_examples.py
(each script must exit 0) and the CLI tests; here: what it returns, raises, and that the loop outlives
the work by the grace period. Plain functions: run() starts its own event loop."""

from __future__ import annotations

import asyncio

import pytest

from client.connection import EXIT_GRACE, run
from client.errors import NotRunning


def test_returns_the_result_after_the_grace_period() -> None:
    seen: list[str] = []

    async def work() -> int:
        asyncio.get_running_loop().call_later(EXIT_GRACE / 5, seen.append, "after the work")
        return 42

    assert run(work()) == 42
    assert seen == ["after the work"]  # the loop kept running after `work` returned


def test_raises_what_the_work_raises_after_the_grace_period() -> None:
    seen: list[str] = []

    async def work() -> None:
        asyncio.get_running_loop().call_later(EXIT_GRACE / 5, seen.append, "after the error")
        raise NotRunning("no running failover failover/t/198.51.100.7")

    with pytest.raises(NotRunning, match="no running failover"):
        run(work())
    assert seen == ["after the error"]
