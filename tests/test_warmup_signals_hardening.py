"""Warmup signals that must not break or mislead the workflow (issue 11), on the time-skipping server
with the real database activities: a raw "pause" with a huge `days` (OverflowError in the workflow
task before), and a Resume from an earlier pause (a stale ChatOps button) that must not end this one."""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from datetime import timedelta

import pytest

from models.alerting import build_args
from models.warmup import MAX_PAUSE_DAYS, pause_days
from models.warmup_contracts import PauseRequest, ResumeRequest
from tests.test_warmup_workflow import IP, start, status, ts, warmup_worker  # noqa: F401  (ts: fixture)
from workflows.warmup import IpWarmupWorkflow


def test_pause_days_are_clamped() -> None:
    assert pause_days(None) is None and pause_days(float("nan")) is None and pause_days("3") is None
    assert pause_days(True) is None
    assert pause_days(2) == 2.0 and pause_days(-5) == 0.0
    assert pause_days(1e300) == pause_days(float("inf")) == MAX_PAUSE_DAYS


@pytest.mark.parametrize("days", [1e300, 1e9, float("inf"), float("nan")])
async def test_a_raw_pause_with_a_huge_days_pauses_instead_of_failing(ts, days: float) -> None:  # noqa: F811
    env, today, rec = ts
    queue = f"wu-{uuid.uuid4().hex[:8]}"
    async with warmup_worker(env.client, queue, rec):
        handle = await start(env.client, queue, today)
        await handle.signal(IpWarmupWorkflow.pause, PauseRequest(reason="raw", days=days))
        await env.sleep(timedelta(days=2))
        st = await status(handle)  # the workflow task did not fail: the query answers
        assert st.paused and st.pause_reason == "raw"
        if isinstance(days, float) and math.isnan(days):
            assert st.paused_until is None
        else:
            assert st.paused_until is not None
            left = dt.datetime.fromisoformat(st.paused_until) - await env.get_current_time()
            assert timedelta(days=MAX_PAUSE_DAYS - 3) < left <= timedelta(days=MAX_PAUSE_DAYS)
        await handle.signal(IpWarmupWorkflow.resume, ResumeRequest(reason="done"))
        await env.sleep(timedelta(hours=1))
        assert not (await status(handle)).paused
        await handle.terminate("test over")


async def test_a_resume_button_of_an_earlier_pause_does_nothing(ts) -> None:  # noqa: F811
    env, today, rec = ts
    queue = f"wu-{uuid.uuid4().hex[:8]}"
    async with warmup_worker(env.client, queue, rec):
        handle = await start(env.client, queue, today)
        await handle.signal(IpWarmupWorkflow.pause, PauseRequest(reason="first"))
        await env.sleep(timedelta(hours=1))
        first = (await status(handle)).pause_incident
        assert first.endswith("/1")
        await handle.signal(IpWarmupWorkflow.resume, ResumeRequest(reason="first over"))
        await handle.signal(IpWarmupWorkflow.pause, PauseRequest(reason="second, unrelated"))
        await env.sleep(timedelta(hours=1))
        second = (await status(handle)).pause_incident
        assert second.endswith("/2") and second != first
        # The arguments exactly as the old alert's Resume button sends them (models.alerting.build_args).
        stale = json.dumps({"reason": "resume via Telegram by {actor}", "actor": "{actor}", "incident": first})
        (req,) = build_args("signal", "resume", stale, "telegram:1 @old")
        assert isinstance(req, ResumeRequest) and req.incident == first
        await handle.signal(IpWarmupWorkflow.resume, req)
        await env.sleep(timedelta(hours=1))
        st = await status(handle)
        assert st.paused and st.pause_reason == "second, unrelated" and st.pause_incident == second
        assert [t.kind for t in st.history].count("resume") == 1
        # The button of this pause works.
        fresh = json.dumps({"reason": "resume via Telegram by {actor}", "actor": "{actor}", "incident": second})
        await handle.signal(IpWarmupWorkflow.resume, build_args("signal", "resume", fresh, "telegram:1 @ok")[0])
        await env.sleep(timedelta(hours=1))
        st = await status(handle)
        assert not st.paused and st.history[-1].reason == "resume via Telegram by telegram:1 @ok"
        await handle.terminate("test over")


async def test_the_gate_pause_alert_carries_a_resume_bound_to_that_pause(ts) -> None:  # noqa: F811
    from tests.warmup_support import add_stats

    env, today, rec = ts
    add_stats(rec.url, IP, today, sent=100, bounced=20)
    queue = f"wu-{uuid.uuid4().hex[:8]}"
    async with warmup_worker(env.client, queue, rec):
        handle = await start(env.client, queue, today)
        await env.sleep(timedelta(days=2))
        st = await status(handle)
        assert st.paused and st.paused_by == "gate"
        (alert,) = [a for a in rec.alerts if a.key.endswith("/gate")]
        (button,) = alert.actions
        assert button.name == "resume" and button.arg is not None
        assert json.loads(button.arg)["incident"] == st.pause_incident != ""
        await handle.terminate("test over")
