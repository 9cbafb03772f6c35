"""The guard's pure rules (models/active_guard.py): the verdict on an active IP's 7-day window with the
warmup gate's Wilson rules and limits, and the capacity-loss budget of a tenant's day.

Figures (95% confidence, limits: bounce 5%, complaints 0.1%):
- real bounce excess: 1,070 sent and 90 bounced a day for 7 days: 630/7,490 = 8.41% [7.80%, 9.06%]
  -> step-down (pause under the pause policy);
- one bad day in a clean week: 6 days of 10 bounces in 1,100 and one day of 340 in 1,100 (30.9% that
  day, [28.25%, 33.70%]): the week is 400/7,700 = 5.19% [4.72%, 5.71%] -> not-yet-clear (enough mail)
  or hold-insufficient-data (the default volume floor), never a step; with 250 that day: 4.03% -> ok;
- insufficient data: 700 delivered of 35,000 required (50% of 10,000/day x 7) -> hold, whatever the rates;
- complaint excess: 28 complaints in 7,000 delivered = 0.40% [0.28%, 0.58%] -> the tenant's policy.
"""

from __future__ import annotations

import datetime as dt

import pytest

from models.active_guard import (
    DEFAULT_STEP_DOWN_PHASE,
    CapacityBudget,
    GuardAction,
    GuardPolicy,
    GuardVerdict,
    StepCandidate,
    decide,
    plan_steps,
    policy_for,
    step_quota,
)
from models.enums import WarmupPhase
from models.exit_status import CLEAN, FOUND, INCOMPLETE, guard_status
from models.guard_contracts import IpFigures
from models.warmup import DayStats, GateThresholds, WindowStats, window_stats

START = dt.date(2026, 11, 13)
LIMITS = GateThresholds()  # bounce 5%, complaints 0.1%, volume floor 50%, 95%
ENOUGH = GateThresholds(min_delivered_share=0.1)  # a tenant whose floor is 7,000 delivered for 10,000/day
STEP_DOWN, PAUSE = GuardPolicy(), GuardPolicy(action=GuardAction.PAUSE)


def week(*days: tuple[int, int, int], opens: int | None = None) -> WindowStats:
    """(sent, bounced, complaints) per day from START; delivered = sent - bounced."""
    return window_stats(DayStats(START + dt.timedelta(days=i), s, s - b, b, c, opens or 0, opens is not None)
                        for i, (s, b, c) in enumerate(days))


BOUNCING = week(*[(1070, 90, 0)] * 7)
ONE_BAD_DAY = week(*[(1100, 10, 0)] * 6, (1100, 340, 0))
COMPLAINING = week(*[(1010, 10, 4)] * 7)


def test_a_real_bounce_excess_steps_down_or_pauses_by_policy() -> None:
    j = decide(BOUNCING, LIMITS, 10_000, STEP_DOWN)
    assert j.verdict == GuardVerdict.STEP_DOWN and j.verdict.acts
    b = j.evaluation.bounce
    assert (b.count, b.base, b.rate, b.lower, b.upper) == (630, 7490, 0.084112, 0.078038, 0.090613)
    assert j.reason == "step down to week_5: bounce rate 8.41% (630/7490), lower bound 7.80% > max 5.00%"
    # the excess is judged before the volume floor: 6,860 delivered of 35,000 does not make it a hold
    assert j.evaluation.required == 35_000 and not j.evaluation.enough_mail
    assert round(j.severity, 4) == 1.5608  # lower bound 7.80% / limit 5%
    p = decide(BOUNCING, LIMITS, 10_000, PAUSE)
    assert p.verdict == GuardVerdict.PAUSE and p.reason.startswith("pause: bounce rate 8.41% (630/7490)")


def test_a_single_bad_day_inside_a_clean_week_is_not_a_step() -> None:
    bad_day = week((1100, 340, 0))
    alone = decide(bad_day, ENOUGH, 10_000, STEP_DOWN)
    assert alone.verdict == GuardVerdict.STEP_DOWN  # that day alone: 30.91% [28.25%, 33.70%]
    assert (alone.evaluation.bounce.lower, alone.evaluation.bounce.upper) == (0.282486, 0.337025)

    j = decide(ONE_BAD_DAY, ENOUGH, 10_000, STEP_DOWN)
    b = j.evaluation.bounce
    assert (b.count, b.base, b.rate, b.lower, b.upper) == (400, 7700, 0.051948, 0.047211, 0.057132)
    assert j.verdict == GuardVerdict.NOT_YET_CLEAR and not j.verdict.acts
    assert j.reason == "not yet clear: bounce 5.19% > 5.00% but lower bound 4.72% is not"
    # with the default volume floor the same week is a hold on insufficient data: still no step
    held = decide(ONE_BAD_DAY, LIMITS, 10_000, STEP_DOWN)
    assert held.verdict == GuardVerdict.HOLD_INSUFFICIENT_DATA and not held.verdict.acts
    # a milder bad day (250 of 1,100) leaves the week under the limit: ok
    ok = decide(week(*[(1100, 10, 0)] * 6, (1100, 250, 0)), ENOUGH, 10_000, STEP_DOWN)
    assert ok.verdict == GuardVerdict.OK and ok.evaluation.bounce.rate == 0.04026
    assert ok.reason == "ok: 7390 delivered, no rate beyond its limit"


@pytest.mark.parametrize("stats", [week(*[(100, 0, 0)] * 7), week(), week(*[(100, 5, 0)] * 7)],
                         ids=["700-clean", "nothing-sent", "700-at-5pct"])
def test_insufficient_data_holds(stats: WindowStats) -> None:
    j = decide(stats, LIMITS, 10_000, STEP_DOWN)
    assert j.verdict == GuardVerdict.HOLD_INSUFFICIENT_DATA and not j.verdict.acts
    assert j.reason.startswith(f"hold: insufficient data: delivered {stats.delivered} of the 35000 required "
                               "(50% of 10000/day x 7 days)")


@pytest.mark.parametrize(("policy", "verdict"), [(STEP_DOWN, GuardVerdict.STEP_DOWN), (PAUSE, GuardVerdict.PAUSE)])
def test_a_complaint_excess_acts_per_policy(policy: GuardPolicy, verdict: GuardVerdict) -> None:
    j = decide(COMPLAINING, ENOUGH, 10_000, policy)
    c = j.evaluation.complaint
    assert (c.count, c.base, c.rate, c.lower, c.upper) == (28, 7000, 0.004, 0.002769, 0.005775)
    assert j.verdict == verdict and j.evaluation.bounce.verdict.value == "clear"
    assert "complaint rate 0.40% (28/7000), lower bound 0.28% > max 0.10%" in j.reason


def test_a_low_open_rate_never_steps_an_active_ip_down() -> None:
    """The gate's open floor is shown, not acted on: 1% opens of 7,000 is proven low, the IP stays."""
    stats = week(*[(1000, 0, 0)] * 7, opens=10)
    j = decide(stats, ENOUGH, 10_000, STEP_DOWN)
    assert j.evaluation.open.verdict.value == "excess" and j.verdict == GuardVerdict.OK


def test_limits_are_the_tenant_s() -> None:
    """The same 8.41% under a tenant limit of 10% bounces is clear."""
    j = decide(BOUNCING, GateThresholds(max_bounce_rate=0.10, min_delivered_share=0.1), 1000, STEP_DOWN)
    assert j.verdict == GuardVerdict.OK


def test_policy_defaults_overrides_and_refusals() -> None:
    assert DEFAULT_STEP_DOWN_PHASE == WarmupPhase.WEEK_5 and STEP_DOWN.max_capacity_loss_share == 0.2
    p = policy_for(STEP_DOWN, "pause", "week_4", 0.5)
    assert (p.action, p.step_down_phase, p.max_capacity_loss_share) == (GuardAction.PAUSE, WarmupPhase.WEEK_4, 0.5)
    assert policy_for(STEP_DOWN) == STEP_DOWN
    with pytest.raises(ValueError):
        policy_for(STEP_DOWN, "delete")
    with pytest.raises(ValueError):
        policy_for(STEP_DOWN, step_down_phase="week_9")
    for share in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="max_capacity_loss_share"):
            policy_for(STEP_DOWN, max_capacity_loss_share=share)
    assert step_quota(GuardAction.STEP_DOWN, 1000) == 1000 and step_quota(GuardAction.PAUSE, 1000) == 0


def cand(address: str, severity: float, action: GuardAction = GuardAction.STEP_DOWN) -> StepCandidate:
    return StepCandidate(address, action, 10_000, step_quota(action, 1000), severity)


def test_capacity_loss_budget_takes_the_most_evident_first_and_holds_the_rest() -> None:
    """Five active IPs (50,000/day), 20%: 10,000 a day without an operator. Step-downs remove 9,000
    each: the most evident runs, the next would make 18,000: it and every later one hold."""
    budget = CapacityBudget(capacity=50_000, share=0.2)
    assert budget.limit == 10_000
    plan = plan_steps([cand("127.0.16.13", 1.2), cand("127.0.16.11", 1.56), cand("127.0.16.12", 1.3)], budget, "acme")
    assert [(p.candidate.address, p.held, p.lost_after) for p in plan] == [
        ("127.0.16.11", False, 9_000), ("127.0.16.12", True, 18_000), ("127.0.16.13", True, 18_000)]
    assert plan[1].hold_reason == ("capacity-loss hold: with this step acme would lose 18,000 of its 50,000/day "
                                   "capacity today (36.0%), more than 20% (at most 10,000 without an operator; "
                                   "9,000 already removed by 1 step(s))")
    # once one holds, a smaller later step holds too ("further steps")
    mixed = plan_steps([cand("a", 3.0), cand("b", 2.0), StepCandidate("c", GuardAction.STEP_DOWN, 1000, 1000, 1.0)],
                       budget)
    assert [p.held for p in mixed] == [False, True, True]


def test_the_first_step_always_runs_and_earlier_steps_count() -> None:
    small = CapacityBudget(capacity=30_000, share=0.2)  # 6,000: less than one step-down
    assert [p.held for p in plan_steps([cand("a", 2.0), cand("b", 1.5)], small)] == [False, True]
    later = CapacityBudget(capacity=50_000, share=0.2, lost=9_000, steps=1)  # an earlier run today took one
    assert [p.held for p in plan_steps([cand("c", 2.0)], later)] == [True]
    wide = CapacityBudget(capacity=50_000, share=0.5)
    paused = plan_steps([cand("a", 2.0, GuardAction.PAUSE), cand("b", 1.0, GuardAction.PAUSE)], wide)
    assert [(p.held, p.candidate.loss) for p in paused] == [(False, 10_000), (False, 10_000)]
    assert plan_steps([], small) == []


def test_guard_run_exit_status() -> None:
    def f(verdict: str) -> IpFigures:
        return IpFigures("acme", "127.0.16.1", 10_000, verdict=verdict)

    assert guard_status([f("ok")], False) == CLEAN
    assert guard_status([f("ok"), f("not-yet-clear")], False) == INCOMPLETE
    assert guard_status([f("hold-insufficient-data")], False) == INCOMPLETE
    assert guard_status([f("step-down")], False) == FOUND  # handled by an earlier run today: still a finding
    assert guard_status([], True) == FOUND
