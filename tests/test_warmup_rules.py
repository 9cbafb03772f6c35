"""Pure warmup rules: safety gate, daily step, resume_phase, wake-up spreading, tenant schedules."""

from __future__ import annotations

import datetime as dt

import pytest

from models.enums import IpStatus, WarmupPhase
from models.schedule import REFERENCE_SCHEDULE
from models.warmup import (
    DayStats,
    GateThresholds,
    StepAction,
    decide_step,
    gate_window,
    next_wake,
    resume_phase,
    safety_gate,
    status_for_start,
    tenant_schedule,
    thresholds_for,
    wake_offset,
    window_stats,
)

D = dt.date(2026, 11, 20)
T = GateThresholds()


def stats(*days: DayStats):
    return window_stats(days)


def test_gate_limits_are_inclusive_and_name_the_figures() -> None:
    ok = safety_gate(stats(DayStats(D, sent=1000, delivered=950, bounced=50, complaints=0)), T)
    assert ok.passed and ok.bounce_rate == 0.05 and ok.open_rate is None
    bad = safety_gate(stats(DayStats(D, sent=1000, delivered=949, bounced=51)), T)
    assert not bad.passed and bad.reasons == ["bounce rate 5.10% > 5.00% (51/1000)"]
    c = safety_gate(stats(DayStats(D, sent=1000, delivered=1000, complaints=1)), T)
    assert c.passed  # 0.1% exactly
    c = safety_gate(stats(DayStats(D, sent=2000, delivered=1999, bounced=1, complaints=3)), T)
    assert not c.passed and "complaint rate 0.150% > 0.100% (3/1999)" in c.reasons[0]


def test_opens_only_where_measured() -> None:
    unmeasured = stats(DayStats(D, sent=100, delivered=100, opens=0, opens_measured=False))
    assert safety_gate(unmeasured, T).passed and safety_gate(unmeasured, T).open_rate is None
    low = stats(DayStats(D, sent=100, delivered=100, opens=5, opens_measured=True),
                DayStats(D + dt.timedelta(days=1), sent=900, delivered=900))  # 2nd day not measured
    g = safety_gate(low, T)
    assert not g.passed and g.open_rate == 0.05 and "open rate 5.0% < 10% (5/100)" in g.reasons[0]
    good = stats(DayStats(D, sent=100, delivered=100, opens=10, opens_measured=True))
    assert safety_gate(good, T).passed


def test_no_traffic_passes_and_tenant_overrides() -> None:
    assert safety_gate(stats(), T).passed
    t = thresholds_for(T, max_bounce_rate=0.02, min_open_rate=None)
    assert t == GateThresholds(0.02, 0.001, 0.10)
    assert not safety_gate(stats(DayStats(D, sent=100, delivered=97, bounced=3)), t).passed


def test_gate_window_is_the_seven_full_days_before_today() -> None:
    assert gate_window(D) == (D - dt.timedelta(days=7), D - dt.timedelta(days=1))


@pytest.mark.parametrize(("days", "passed", "action", "phase", "quota"), [
    (3, True, StepAction.HOLD, WarmupPhase.WEEK_2, 100),
    (7, True, StepAction.ADVANCE, WarmupPhase.WEEK_3, 250),
    (12, False, StepAction.PAUSE, WarmupPhase.WEEK_2, 100),
])
def test_step_decision(days: int, passed: bool, action: StepAction, phase: WarmupPhase, quota: int) -> None:
    gate = safety_gate(stats(DayStats(D, sent=100, delivered=100 if passed else 80, bounced=0 if passed else 20)), T)
    d = decide_step(WarmupPhase.WEEK_2, D - dt.timedelta(days=days), D, gate)
    assert (d.action, d.phase, d.quota) == (action, phase, quota)


def test_week_6_done_becomes_active() -> None:
    d = decide_step(WarmupPhase.WEEK_6, D - dt.timedelta(days=7), D, safety_gate(stats(), T))
    assert (d.action, d.phase, d.quota) == (StepAction.ACTIVATE, None, 10_000)


def test_tenant_plan_overrides_phase_by_phase_with_seven_days_minimum() -> None:
    s = tenant_schedule([(WarmupPhase.WEEK_1, 20, 10), (WarmupPhase.WEEK_3, 300, 3)])
    assert s.quota(WarmupPhase.WEEK_1) == 20 and s.quota(WarmupPhase.WEEK_2) == 100
    assert s.quota(WarmupPhase.WEEK_3) == 300 and s.days(WarmupPhase.WEEK_1) == 10
    assert s.days(WarmupPhase.WEEK_3) == 7  # never under 7 days per phase
    d = decide_step(WarmupPhase.WEEK_1, D - dt.timedelta(days=8), D, safety_gate(stats(), T), s)
    assert d.action == StepAction.HOLD
    assert tenant_schedule([]) is REFERENCE_SCHEDULE


@pytest.mark.parametrize(("last_phase", "was_active", "idle", "expected"), [
    (None, False, None, WarmupPhase.WEEK_1),            # never sent
    (WarmupPhase.WEEK_5, False, 31, WarmupPhase.WEEK_1),  # idle over 30 days
    (WarmupPhase.WEEK_5, False, 30, WarmupPhase.WEEK_1),  # 4 weeks idle: 5 - 4
    (WarmupPhase.WEEK_4, False, 1, WarmupPhase.WEEK_4),
    (WarmupPhase.WEEK_4, False, 15, WarmupPhase.WEEK_2),
    (None, True, 2, WarmupPhase.WEEK_6),                # was active, sent 2 days ago
    (None, True, 8, WarmupPhase.WEEK_5),
    (None, False, 3, WarmupPhase.WEEK_1),               # sent, but never warming/active
])
def test_resume_phase(last_phase: WarmupPhase | None, was_active: bool, idle: int | None,
                      expected: WarmupPhase) -> None:
    last = None if idle is None else D - dt.timedelta(days=idle)
    assert resume_phase(last_phase=last_phase, was_active=was_active, last_sent_on=last, today=D) == expected


def test_statuses_that_may_start() -> None:
    assert status_for_start(IpStatus.STANDBY) is None and status_for_start(IpStatus.RESTING) is None
    assert "resting" in str(status_for_start(IpStatus.QUARANTINE))
    assert status_for_start(IpStatus.ACTIVE) is not None and status_for_start(IpStatus.RETIRING) is not None


def test_wake_spreading_is_stable_spread_and_after_midnight() -> None:
    offsets = [wake_offset(f"10.0.{i // 250}.{i % 250}", 3600) for i in range(2000)]
    assert offsets == [wake_offset(f"10.0.{i // 250}.{i % 250}", 3600) for i in range(2000)]
    assert all(0 <= o < 3600 for o in offsets)
    buckets = [0] * 6
    for o in offsets:
        buckets[o // 600] += 1
    assert min(buckets) > 250  # roughly uniform over the window (2000/6 = 333 per 10 minutes)
    now = dt.datetime(2026, 11, 20, 0, 10, tzinfo=dt.UTC)
    assert next_wake(now, 1200) == dt.datetime(2026, 11, 20, 0, 20, tzinfo=dt.UTC)
    assert next_wake(now, 600) == dt.datetime(2026, 11, 21, 0, 10, tzinfo=dt.UTC)  # strictly after now
    assert wake_offset("x", 1) == 0
