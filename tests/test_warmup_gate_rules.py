"""The evidence gate (models/warmup_gate.py, issue 10): a table of windows -> decision, rule and bounds."""

from __future__ import annotations

import datetime as dt

import pytest

from models.enums import WarmupPhase
from models.schedule import REFERENCE_SCHEDULE
from models.warmup import GateThresholds, StepAction, WindowStats, thresholds_for
from models.warmup_gate import Rule, Verdict, decide, required_delivered, wilson_interval, z_for

D = dt.date(2026, 11, 20)
T = GateThresholds()  # bounce <= 5%, complaints <= 0.1%, opens >= 10%, 50% of quota x 7 days, 95%
W1, W3, W4, W6 = WarmupPhase.WEEK_1, WarmupPhase.WEEK_3, WarmupPhase.WEEK_4, WarmupPhase.WEEK_6
HOLD, ADVANCE, PAUSE, ACTIVATE = StepAction.HOLD, StepAction.ADVANCE, StepAction.PAUSE, StepAction.ACTIVATE


def w(sent: int, bounced: int = 0, complaints: int = 0, opens: int | None = None) -> WindowStats:
    """A 7-day window: delivered = sent - bounced; opens measured on every day when given."""
    delivered = sent - bounced
    return WindowStats(sent=sent, delivered=delivered, bounced=bounced, complaints=complaints,
                       opens=opens or 0, open_base=delivered if opens is not None else 0,
                       days_with_data=7 if sent else 0, open_days=7 if opens is not None else 0)


# (case, phase, days in phase, window) -> (action, rule, phase after, bound to check: (rate, lower, upper))
TABLE = [
    ("0 sent", W1, 7, w(0), HOLD, Rule.INSUFFICIENT_DATA, W1, ("bounce", None, None)),
    ("too little mail: 100 of 175", W1, 7, w(100), HOLD, Rule.INSUFFICIENT_DATA, W1, ("bounce", 0.0, 0.036993)),
    ("one under the floor: 174", W1, 7, w(174), HOLD, Rule.INSUFFICIENT_DATA, W1, ("complaint", 0.0, 0.0216)),
    ("exactly the floor: 175", W1, 7, w(175), ADVANCE, Rule.PASS, WarmupPhase.WEEK_2, ("complaint", 0.0, 0.02148)),
    ("one complaint in week_1 (300 sent)", W1, 7, w(300, complaints=1), HOLD, Rule.NOT_YET_CLEAR, W1,
     ("complaint", 0.000589, 0.018637)),
    ("one complaint in week_1, day 3: no pause", W1, 2, w(300, complaints=1), HOLD, Rule.MIN_DAYS, W1,
     ("complaint", 0.000589, 0.018637)),
    ("bounce exactly at 5% (50/1000)", W3, 7, w(1000, bounced=50), ADVANCE, Rule.PASS, W4,
     ("bounce", 0.03813, 0.065314)),
    ("complaint exactly at 0.1% (1/1000)", W3, 7, w(1001, bounced=1, complaints=1), ADVANCE, Rule.PASS, W4,
     ("complaint", 0.000177, 0.005643)),
    ("bounce just over 5%, not clear (19/350)", W1, 7, w(350, bounced=19), HOLD, Rule.NOT_YET_CLEAR, W1,
     ("bounce", 0.035025, 0.083224)),
    ("real bounce excess: 12% (84/700)", W1, 7, w(700, bounced=84), PAUSE, Rule.EXCESS, W1,
     ("bounce", 0.097977, 0.146171)),
    ("real bounce excess on day 2 pauses", W1, 1, w(100, bounced=20), PAUSE, Rule.EXCESS, W1,
     ("bounce", 0.133367, 0.288829)),
    ("real complaint excess: 7/1386", W4, 7, w(1400, bounced=14, complaints=7), PAUSE, Rule.EXCESS, W4,
     ("complaint", 0.002449, 0.010388)),
    ("two complaints in 300: excess", W1, 7, w(300, complaints=2), PAUSE, Rule.EXCESS, W1,
     ("complaint", 0.00183, 0.023978)),
    ("opens unmeasured", W1, 7, w(350), ADVANCE, Rule.PASS, WarmupPhase.WEEK_2, ("open", None, None)),
    ("opens 8%: upper bound reaches 10%", W1, 7, w(350, opens=28), ADVANCE, Rule.PASS, WarmupPhase.WEEK_2,
     ("open", 0.055927, 0.113192)),
    ("opens 2.9%: proven low", W1, 7, w(350, opens=10), PAUSE, Rule.EXCESS, W1, ("open", 0.015592, 0.051787)),
    ("week_6 done on good figures", W6, 7, w(7500, bounced=100), ACTIVATE, Rule.PASS, None,
     ("bounce", 0.010975, 0.01619)),
    ("week_6 with too little mail", W6, 7, w(6000, bounced=100), HOLD, Rule.INSUFFICIENT_DATA, W6,
     ("bounce", 0.013723, 0.020229)),
]


@pytest.mark.parametrize(("case", "phase", "days", "window", "action", "rule", "after", "bound"), TABLE,
                         ids=[row[0] for row in TABLE])
def test_decision_table(case: str, phase: WarmupPhase, days: int, window: WindowStats, action: StepAction,
                        rule: Rule, after: WarmupPhase | None,
                        bound: tuple[str, float | None, float | None]) -> None:
    d = decide(phase, D - dt.timedelta(days=days), D, window, T, REFERENCE_SCHEDULE)
    assert (d.action, d.rule, d.phase) == (action, rule, after), d.reason
    check = {c.name: c for c in d.evaluation.checks}[bound[0]]
    assert (check.lower, check.upper) == (bound[1], bound[2])
    assert d.reason.startswith({HOLD: "hold:", PAUSE: "pause:"}.get(action, phase.value + " done"))


def test_reasons_name_the_figures() -> None:
    d = decide(W1, D - dt.timedelta(days=7), D, w(100), T, REFERENCE_SCHEDULE)
    assert d.reason == "hold: insufficient data: delivered 100 of the 175 required (50% of 50/day x 7 days)"
    figures = d.evaluation.figures()
    assert figures.startswith("sent 100, delivered 100 (need 175), bounced 0, complaints 0, opens unmeasured;")
    assert "complaint 0/100 = 0.00% [0.00%, 3.70%] (max 0.10%) clear" in figures
    d = decide(W1, D - dt.timedelta(days=7), D, w(300, complaints=1), T, REFERENCE_SCHEDULE)
    assert d.reason == "hold: not yet clear: complaint 0.33% > 0.10% but lower bound 0.06% is not"
    d = decide(W1, D - dt.timedelta(days=7), D, w(700, bounced=84), T, REFERENCE_SCHEDULE)
    assert d.reason == "pause: bounce rate 12.00% (84/700), lower bound 9.80% > max 5.00%"


def test_wilson_interval_known_values() -> None:
    z = z_for(0.95)
    assert round(z, 6) == 1.959964
    assert wilson_interval(0, 0, z) == (0.0, 1.0)
    lo, hi = wilson_interval(0, 350, z)
    assert lo == 0.0 and round(hi, 4) == 0.0109  # zero events still leave an upper bound
    lo, hi = wilson_interval(350, 350, z)
    assert round(hi, 12) == 1.0 and round(lo, 4) == 0.9891
    lo, hi = wilson_interval(50, 100, z)  # symmetric around one half
    assert round(lo + hi, 9) == 1.0
    # The zero-complaint upper bound reaches 0.1% only from 3,838 delivered (why rule 4 reads the rate).
    assert wilson_interval(0, 3838, z)[1] <= 0.001 < wilson_interval(0, 3837, z)[1]
    with pytest.raises(ValueError):
        wilson_interval(3, 2, z)
    with pytest.raises(ValueError):
        z_for(1.0)


def test_counts_beyond_their_base_are_clamped_never_fatal() -> None:
    odd = WindowStats(sent=10, delivered=0, bounced=12, complaints=3)  # complaints for older mail
    d = decide(W1, D - dt.timedelta(days=7), D, odd, T, REFERENCE_SCHEDULE)
    assert d.action == PAUSE and d.evaluation.bounce.rate == 1.0
    assert d.evaluation.complaint.verdict == Verdict.UNMEASURED


def test_volume_floor_and_tenant_override() -> None:
    assert required_delivered(50, 7, 0.5) == 175
    assert required_delivered(50, 7, 0.3) == 105  # no float artefact (0.3 x 350 = 105.00000000000001)
    assert required_delivered(0, 7, 0.5) == 1  # never zero: a window with nothing delivered holds
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError):
            required_delivered(50, 7, bad)
    strict = thresholds_for(T, min_delivered_share=0.9)
    assert (strict.min_delivered_share, strict.max_bounce_rate, strict.confidence) == (0.9, 0.05, 0.95)
    d = decide(W1, D - dt.timedelta(days=7), D, w(300), strict, REFERENCE_SCHEDULE)
    assert (d.action, d.rule, d.evaluation.required) == (HOLD, Rule.INSUFFICIENT_DATA, 315)


def test_confidence_setting_moves_the_bounds() -> None:
    loose = GateThresholds(confidence=0.5)  # z = 0.674: a narrow interval, one complaint in 300 now pauses
    d = decide(W1, D - dt.timedelta(days=7), D, w(300, complaints=1), loose, REFERENCE_SCHEDULE)
    assert d.action == PAUSE and d.evaluation.complaint.lower == 0.00172


@pytest.mark.parametrize(("k", "n"), [(1, 300), (7, 1386), (84, 700), (0, 350), (28, 350), (50, 1000)])
def test_bounds_solve_the_score_equation(k: int, n: int) -> None:
    """Independent of the closed form: a Wilson bound p is where the score test is exactly at z, i.e.
    n (k/n - p)^2 = z^2 p (1 - p) (the lower root is 0 when k = 0)."""
    z = z_for(0.95)
    for p in wilson_interval(k, n, z):
        if p == 0.0 and k == 0:
            continue
        assert abs(n * (k / n - p) ** 2 - z * z * p * (1 - p)) < 1e-12
