"""Pure warmup rules: the safety gate, the daily step, the phase an IP's history allows, wake-up spreading.

No I/O: activities feed these functions with rows from the database, the warmup workflow calls them
with what the activities returned (they are deterministic, so they are safe inside a workflow).

Rules (DESIGN.md §4, issue 4):

- **Safety gate** on the last 7 full UTC days of the IP's own stats: bounce rate = bounced / sent
  (sent = delivered + synchronous bounces; remote bounces count as bounced); complaint rate =
  complaints / delivered; open rate = opens / delivered, computed only over the days on which opens
  were measured (a day without open tracking never fails the gate). Since issue 10 the workflow
  judges them with confidence bounds and a volume floor: models/warmup_gate.py.
- `safety_gate` and `decide_step` below are the rule before issue 10 (point estimates; a window with
  nothing sent passed). They stay only so that workflow histories recorded before it replay
  (workflow.patched in workflows/warmup.py); nothing new may call them.
- **Daily step**: calendar days count while paused: the IP keeps sending at the held quota during a
  pause, and the advance still needs a passing gate on the 7 days just before it.
- **resume_phase**: see its docstring.
- **Wake-up spreading**: every IP wakes once a day at 00:00 UTC plus a deterministic offset (a hash of
  its address) inside a configurable window, so thousands of IPs do not wake at the same instant.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from models.enums import IpStatus, WarmupPhase
from models.schedule import MIN_DAYS_PER_PHASE, REFERENCE_SCHEDULE, Schedule

GATE_WINDOW_DAYS = 7
PAUSE_DAYS = 7
#: Longest timed pause; a longer (or infinite) `days` is clamped here (the CLI caps it the same way).
MAX_PAUSE_DAYS = 365
IDLE_RESET_DAYS = 30


# --------------------------------------------------------------------------------------------- gate


@dataclass(frozen=True)
class GateThresholds:
    max_bounce_rate: float = 0.05
    max_complaint_rate: float = 0.001
    min_open_rate: float = 0.10
    #: share of the phase's quota x window days that must have been delivered before a phase ends
    min_delivered_share: float = 0.5
    #: two-sided confidence of the Wilson bounds the rates are judged with
    confidence: float = 0.95


def thresholds_for(defaults: GateThresholds, max_bounce_rate: float | None = None,
                   max_complaint_rate: float | None = None, min_open_rate: float | None = None,
                   min_delivered_share: float | None = None) -> GateThresholds:
    """A tenant's thresholds: its own overrides (Tenant table) where set, the settings' defaults elsewhere."""
    return GateThresholds(
        max_bounce_rate=defaults.max_bounce_rate if max_bounce_rate is None else max_bounce_rate,
        max_complaint_rate=defaults.max_complaint_rate if max_complaint_rate is None else max_complaint_rate,
        min_open_rate=defaults.min_open_rate if min_open_rate is None else min_open_rate,
        min_delivered_share=defaults.min_delivered_share if min_delivered_share is None else min_delivered_share,
        confidence=defaults.confidence,
    )


@dataclass(frozen=True)
class DayStats:
    """One UTC day of one IP (a DailyStat row)."""

    day: dt.date
    sent: int = 0
    delivered: int = 0
    bounced: int = 0
    complaints: int = 0
    opens: int = 0
    opens_measured: bool = False


@dataclass(frozen=True)
class WindowStats:
    """Stats summed over the gate window (plain ints, so they cross the workflow boundary)."""

    sent: int = 0
    delivered: int = 0
    bounced: int = 0
    complaints: int = 0
    opens: int = 0
    #: delivered on the days where opens were measured (the open rate's denominator)
    open_base: int = 0
    days_with_data: int = 0
    open_days: int = 0


def window_stats(days: Iterable[DayStats]) -> WindowStats:
    sent = delivered = bounced = complaints = opens = open_base = with_data = open_days = 0
    for d in days:
        sent += d.sent
        delivered += d.delivered
        bounced += d.bounced
        complaints += d.complaints
        if d.sent or d.delivered or d.bounced or d.complaints:
            with_data += 1
        if d.opens_measured:
            opens += d.opens
            open_base += d.delivered
            open_days += 1
    return WindowStats(sent, delivered, bounced, complaints, opens, open_base, with_data, open_days)


@dataclass(frozen=True)
class GateResult:
    passed: bool
    reasons: list[str] = field(default_factory=list)
    sent: int = 0
    delivered: int = 0
    bounced: int = 0
    complaints: int = 0
    opens: int = 0
    bounce_rate: float = 0.0
    complaint_rate: float = 0.0
    open_rate: float | None = None  # None: opens not measured in the window
    max_bounce_rate: float = 0.0
    max_complaint_rate: float = 0.0
    min_open_rate: float = 0.0

    def summary(self) -> str:
        opens = "n/a" if self.open_rate is None else f"{self.open_rate:.1%}"
        return (f"sent {self.sent}, bounce {self.bounce_rate:.2%} (max {self.max_bounce_rate:.2%}), "
                f"complaints {self.complaint_rate:.3%} (max {self.max_complaint_rate:.3%}), "
                f"opens {opens} (min {self.min_open_rate:.0%})")


def safety_gate(stats: WindowStats, thresholds: GateThresholds) -> GateResult:
    """The pre-issue-10 gate on point estimates (replay only, see the module docstring)."""
    bounce_rate = stats.bounced / stats.sent if stats.sent else 0.0
    complaint_rate = stats.complaints / stats.delivered if stats.delivered else 0.0
    open_rate = stats.opens / stats.open_base if stats.open_base else None
    reasons = []
    if bounce_rate > thresholds.max_bounce_rate:
        reasons.append(f"bounce rate {bounce_rate:.2%} > {thresholds.max_bounce_rate:.2%} "
                       f"({stats.bounced}/{stats.sent})")
    if complaint_rate > thresholds.max_complaint_rate:
        reasons.append(f"complaint rate {complaint_rate:.3%} > {thresholds.max_complaint_rate:.3%} "
                       f"({stats.complaints}/{stats.delivered})")
    if open_rate is not None and open_rate < thresholds.min_open_rate:
        reasons.append(f"open rate {open_rate:.1%} < {thresholds.min_open_rate:.0%} "
                       f"({stats.opens}/{stats.open_base})")
    return GateResult(
        passed=not reasons, reasons=reasons, sent=stats.sent, delivered=stats.delivered,
        bounced=stats.bounced, complaints=stats.complaints, opens=stats.opens,
        bounce_rate=round(bounce_rate, 6), complaint_rate=round(complaint_rate, 6),
        open_rate=None if open_rate is None else round(open_rate, 6),
        max_bounce_rate=thresholds.max_bounce_rate, max_complaint_rate=thresholds.max_complaint_rate,
        min_open_rate=thresholds.min_open_rate,
    )


def gate_window(today: dt.date, days: int = GATE_WINDOW_DAYS) -> tuple[dt.date, dt.date]:
    """The full UTC days the gate reads on `today`: the `days` days before it (today is still partial)."""
    return today - dt.timedelta(days=days), today - dt.timedelta(days=1)


# --------------------------------------------------------------------------------------------- step


class StepAction(StrEnum):
    HOLD = "hold"
    ADVANCE = "advance"
    PAUSE = "pause"
    ACTIVATE = "activate"


@dataclass(frozen=True)
class StepDecision:
    action: StepAction
    phase: WarmupPhase | None  # the phase after the step (None: active)
    quota: int
    reason: str


def days_in_phase(phase_started_on: dt.date, today: dt.date) -> int:
    return max(0, (today - phase_started_on).days)


def decide_step(phase: WarmupPhase, phase_started_on: dt.date, today: dt.date, gate: GateResult,
                schedule: Schedule = REFERENCE_SCHEDULE) -> StepDecision:
    """What one daily tick did before issue 10 (replay only, see the module docstring)."""
    quota = schedule.quota(phase)
    if not gate.passed:
        return StepDecision(StepAction.PAUSE, phase, quota,
                            f"safety gate failed: {'; '.join(gate.reasons)}; paused {PAUSE_DAYS} days, quota held")
    days = days_in_phase(phase_started_on, today)
    min_days = schedule_min_days(schedule, phase)
    if days < min_days:
        return StepDecision(StepAction.HOLD, phase, quota, f"day {days + 1} of {phase.value} (min {min_days} days)")
    nxt = schedule.next_phase(phase)
    if nxt is None:
        return StepDecision(StepAction.ACTIVATE, None, schedule.active_quota,
                            f"{phase.value} done after {days} days, gate passed: active")
    return StepDecision(StepAction.ADVANCE, nxt, schedule.quota(nxt),
                        f"{phase.value} done after {days} days, gate passed: {nxt.value}")


def schedule_min_days(schedule: Schedule, phase: WarmupPhase) -> int:
    return schedule.days(phase)


def tenant_schedule(plan: Sequence[tuple[WarmupPhase, int, int]], base: Schedule = REFERENCE_SCHEDULE) -> Schedule:
    """A tenant's schedule from its WarmupPlan rows (phase, daily_quota, min_days); the rows override
    the reference quotas phase by phase, phases without a row keep the reference ones."""
    if not plan:
        return base
    quotas = dict(base.quotas)
    min_days = {p: base.min_days for p in quotas}
    for phase, quota, days in plan:
        quotas[phase] = quota
        min_days[phase] = max(MIN_DAYS_PER_PHASE, days)  # at least 7 days per phase (DESIGN.md §4)
    order = [p for p, _ in base.quotas]
    return Schedule(quotas=tuple((p, quotas[p]) for p in order), active_quota=base.active_quota,
                    min_days=base.min_days, min_days_by_phase=tuple((p, min_days[p]) for p in order))


# ------------------------------------------------------------------------------------- resume phase


def resume_phase(*, last_phase: WarmupPhase | None, was_active: bool, last_sent_on: dt.date | None,
                 today: dt.date) -> WarmupPhase:
    """The phase an IP entering warming may start at, given its own history.

    - never sent (`last_sent_on` is None) or idle more than 30 days -> week_1;
    - otherwise start from what it last reached (its recorded phase; an IP that was active counts as
      having completed week_6, so it starts at week_6) and step back one phase for every full 7 days
      it has been idle since it last sent, never below week_1. An IP that sent yesterday at week_4
      restarts at week_4; one idle for 15 days restarts at week_2.
    - recorded history without a phase (it sent, but was never warming or active) -> week_1.
    """
    if last_sent_on is None:
        return WarmupPhase.WEEK_1
    idle = (today - last_sent_on).days
    if idle > IDLE_RESET_DAYS:
        return WarmupPhase.WEEK_1
    order = list(WarmupPhase)
    if was_active:
        reached = len(order) - 1
    elif last_phase is not None:
        reached = order.index(last_phase)
    else:
        return WarmupPhase.WEEK_1
    return order[max(0, reached - max(0, idle) // 7)]


def status_for_start(status: IpStatus) -> str | None:
    """Why an IP in `status` cannot enter warming, or None when it can."""
    if status in (IpStatus.STANDBY, IpStatus.RESTING, IpStatus.WARMING):
        return None
    if status == IpStatus.QUARANTINE:
        return "a quarantined IP comes back only through resting and re-warming"
    return f"an IP in status {status.value} does not warm up"


# ------------------------------------------------------------------------------------------ wake-up


def wake_offset(key: str, window_seconds: int) -> int:
    """A stable offset in [0, window_seconds) for `key` (an IP address)."""
    if window_seconds <= 1:
        return 0
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") % window_seconds


def next_wake(now: dt.datetime, offset_seconds: int) -> dt.datetime:
    """The first instant strictly after `now` that is 00:00 UTC plus `offset_seconds` of some day."""
    now = now.astimezone(dt.UTC)
    midnight = dt.datetime.combine(now.date(), dt.time(0), tzinfo=dt.UTC)
    candidate = midnight + dt.timedelta(seconds=offset_seconds)
    while candidate <= now:
        candidate += dt.timedelta(days=1)
    return candidate


def pause_days(days: object) -> float | None:
    """The duration a "pause" signal may ask for: None (until resumed) stays None, a number is clamped
    to [0, MAX_PAUSE_DAYS]; NaN or a non-number means until resumed. A raw signal with
    `days=1e300` would otherwise overflow `timedelta` and fail the workflow task on every retry."""
    if days is None or isinstance(days, bool) or not isinstance(days, int | float):
        return None
    value = float(days)
    if math.isnan(value):
        return None
    return min(max(value, 0.0), float(MAX_PAUSE_DAYS))
