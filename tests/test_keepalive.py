"""activities.keepalive: an activity blocked in one call still heartbeats (so a dead worker is noticed
within the caller's heartbeat_timeout), sync and async, and the wrapped activities keep their types."""

from __future__ import annotations

import asyncio
import time

from temporalio import activity
from temporalio.testing import ActivityEnvironment

from activities.failover import QuarantineRequest, quarantine_ip_activity
from activities.keepalive import heartbeating


def _blocking(seconds: float) -> str:
    time.sleep(seconds)
    return "done"


async def _waiting(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "done"


async def test_sync_and_async_activities_heartbeat_while_blocked() -> None:
    for fn in (heartbeating(_blocking, every=0.1), heartbeating(_waiting, every=0.1)):
        beats: list[tuple[object, ...]] = []
        env = ActivityEnvironment()
        env.on_heartbeat = lambda *d, beats=beats: beats.append(d)
        result = env.run(fn, 0.65)
        if asyncio.iscoroutine(result):
            result = await result
        assert result == "done"
        assert len(beats) >= 4, (fn, beats)  # one at the start, then one every 0.1 s


def test_outside_an_activity_it_is_the_plain_function() -> None:
    assert heartbeating(_blocking, every=0.01)(0.05) == "done"
    assert asyncio.run(heartbeating(_waiting, every=0.01)(0.05)) == "done"


def test_wrapped_activities_keep_their_argument_types() -> None:
    defn = activity._Definition.must_from_callable(quarantine_ip_activity)
    assert defn.name == "failover_quarantine_ip" and defn.arg_types == [QuarantineRequest]
