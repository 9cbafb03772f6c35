"""The warmup gate on evidence (issue 10, DESIGN.md §5 "Nothing advances without evidence"). Pure.

A warming IP sends a few hundred messages a week, so its rates are estimates from small samples: one
complaint among 300 messages is an observed 0.33%, three times the 0.1% limit, and yet entirely
compatible with a true rate under it. Comparing the point estimate with the limit (the rule before
issue 10) pauses good senders on noise, and passed a window with nothing sent at all. This gate
judges each rate with a confidence interval and asks for enough mail before it lets a phase end.

**Wilson score interval.** For k events among n trials (p = k/n) and z the two-sided normal quantile
of the confidence level (`confidence` 0.95 -> z = 1.96)::

    centre = (p + z²/2n) / (1 + z²/n)
    half   = z · sqrt(p(1-p)/n + z²/4n²) / (1 + z²/n)
    [lower, upper] = [centre - half, centre + half]

Unlike the normal approximation p ± z·sqrt(p(1-p)/n) it stays inside [0, 1] and does not collapse to
a zero width at k = 0 or k = n, which is exactly where small warmup samples live (k = 0 of 350 gives
[0, 1.09%], not [0, 0]). Rates and their bases: bounce = bounced / sent, complaint = complaints /
delivered, open = opens / delivered on the days opens were measured.

**Rules, checked in this order each day** (thresholds per tenant, defaults in the settings):

1. *excess -> pause*: a ceiling rate (bounce, complaint) whose LOWER bound is above its limit, or an
   open rate whose UPPER bound is below its minimum. The excess is real at the chosen confidence:
   pause 7 days, quota held, alert. Checked every day, whatever the volume: the bound itself demands
   enough events (1 complaint of 300: lower bound 0.06% -> no pause; 7 of 1,386: 0.25% -> pause).
2. *min days -> hold*: the phase has run fewer than its minimum days.
3. *insufficient data -> hold*: fewer messages delivered in the window than `min_delivered_share` of
   the phase's quota times the window's days (default 50%: week_1, 50/day over 7 days, needs 175);
   never fewer than one, so a window with nothing sent holds. The quota stays and the gate is read
   again the next day; the workflow alerts once per hold.
4. *not yet clear -> hold*: a ceiling rate observed above its limit whose lower bound is not (the
   interval straddles the limit and the observation leans over it). More mail decides it.
5. *pass -> advance* (or activate after the last phase): enough mail, nothing above a limit.

Why rule 4 reads the observed rate and not the upper bound: "upper bound under the limit" is
unreachable at warmup volumes for a 0.1% complaint limit: with zero complaints the upper bound is
z²/(n+z²), under 0.1% only from n = 3,838 delivered; a week of week_1..week_4 quotas is 350, 700,
1,750 and 3,500. Demanding it would hold every IP in week_1 forever. The volume floor (rule 3) is the
evidence requirement; the bounds decide what a rate proves. Opens have no hold zone: they pass when
unmeasured or when the upper bound reaches the minimum (not proven low).
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from dataclasses import dataclass, field
from enum import StrEnum
from statistics import NormalDist

from models.enums import WarmupPhase
from models.schedule import Schedule
from models.warmup import GATE_WINDOW_DAYS, GateThresholds, StepAction, WindowStats, days_in_phase


class Verdict(StrEnum):
    CLEAR = "clear"  # within the limit (or, for opens, not proven below the minimum)
    UNCLEAR = "unclear"  # observed beyond the limit, not with confidence
    EXCESS = "excess"  # beyond the limit with confidence
    UNMEASURED = "unmeasured"  # no base to compute the rate on


class Rule(StrEnum):
    EXCESS = "excess"
    MIN_DAYS = "min-days"
    INSUFFICIENT_DATA = "insufficient-data"
    NOT_YET_CLEAR = "not-yet-clear"
    PASS = "pass"


@functools.lru_cache(maxsize=32)
def z_for(confidence: float) -> float:
    """The two-sided standard normal quantile of `confidence` (0.95 -> 1.959964). Cached: the fleet gauges
    judge every IP's window at each scrape (10,000 calls), with one or two confidences in all."""
    if not 0.5 <= confidence < 1:
        raise ValueError(f"confidence must be in [0.5, 1), not {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson_interval(k: int, n: int, z: float) -> tuple[float, float]:
    """The Wilson score interval of k events among n (see the module docstring); (0, 1) when n is 0."""
    if k < 0 or n < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = k / n
    z2 = z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class RateCheck:
    """One rate judged against its limit (plain fields: it is shown by the workflow's status)."""

    name: str  # bounce | complaint | open
    count: int
    base: int
    rate: float | None  # None: no base
    lower: float | None
    upper: float | None
    limit: float
    ceiling: bool  # True: a maximum (bounce, complaint); False: a minimum (open)
    verdict: Verdict

    def text(self) -> str:
        if self.rate is None:
            return f"{self.name} unmeasured"
        op = "max" if self.ceiling else "min"
        return (f"{self.name} {self.count}/{self.base} = {self.rate:.2%} "
                f"[{self.lower:.2%}, {self.upper:.2%}] ({op} {self.limit:.2%}) {self.verdict.value}")


def check_ceiling(name: str, count: int, base: int, limit: float, z: float) -> RateCheck:
    """A rate with a maximum: excess if the lower bound is above it, unclear if only the observation is.
    A count above its base (complaints reported for mail delivered before the window) counts as the base."""
    count = max(0, min(count, base))
    if base == 0:
        return RateCheck(name, count, base, None, None, None, limit, True, Verdict.UNMEASURED)
    lower, upper = wilson_interval(count, base, z)
    rate = count / base
    verdict = Verdict.EXCESS if lower > limit else (Verdict.UNCLEAR if rate > limit else Verdict.CLEAR)
    return RateCheck(name, count, base, round(rate, 6), round(lower, 6), round(upper, 6), limit, True, verdict)


def check_floor(name: str, count: int, base: int, minimum: float, z: float) -> RateCheck:
    """A rate with a minimum: excess (too low) only if the upper bound is below it."""
    count = max(0, min(count, base))
    if base == 0:
        return RateCheck(name, count, base, None, None, None, minimum, False, Verdict.UNMEASURED)
    lower, upper = wilson_interval(count, base, z)
    verdict = Verdict.EXCESS if upper < minimum else Verdict.CLEAR
    return RateCheck(name, count, base, round(count / base, 6), round(lower, 6), round(upper, 6), minimum, False,
                     verdict)


def required_delivered(quota: int, days: int, share: float) -> int:
    """Messages that must have been delivered in the window: share x quota x days, rounded up, at least 1."""
    if not 0 < share <= 1:
        raise ValueError(f"min_delivered_share must be in (0, 1], not {share}")
    return max(1, math.ceil(round(quota * days * share, 6)))


@dataclass(frozen=True)
class Evaluation:
    """The gate's reading of one window: the three rates and the volume rule (no day count yet)."""

    stats: WindowStats
    bounce: RateCheck
    complaint: RateCheck
    open: RateCheck
    delivered: int
    required: int
    min_delivered_share: float
    confidence: float
    checks: list[RateCheck] = field(default_factory=list)

    @property
    def excess(self) -> list[RateCheck]:
        return [c for c in self.checks if c.verdict == Verdict.EXCESS]

    @property
    def unclear(self) -> list[RateCheck]:
        return [c for c in self.checks if c.verdict == Verdict.UNCLEAR]

    @property
    def enough_mail(self) -> bool:
        return self.delivered >= self.required

    def figures(self) -> str:
        s = self.stats
        return (f"sent {s.sent}, delivered {s.delivered} (need {self.required}), bounced {s.bounced}, "
                f"complaints {s.complaints}, opens {s.opens if s.open_base else 'unmeasured'}; "
                + "; ".join(c.text() for c in self.checks) + f" at {self.confidence:.0%} confidence")


def evaluate(stats: WindowStats, *, quota: int, window_days: int, max_bounce_rate: float,
             max_complaint_rate: float, min_open_rate: float, min_delivered_share: float,
             confidence: float) -> Evaluation:
    """Judge a window's counts (module docstring: rates, bounds, volume)."""
    z = z_for(confidence)
    bounce = check_ceiling("bounce", stats.bounced, stats.sent, max_bounce_rate, z)
    complaint = check_ceiling("complaint", stats.complaints, stats.delivered, max_complaint_rate, z)
    opens = check_floor("open", stats.opens, stats.open_base, min_open_rate, z)
    return Evaluation(stats, bounce, complaint, opens, stats.delivered,
                      required_delivered(quota, window_days, min_delivered_share), min_delivered_share,
                      confidence, [bounce, complaint, opens])


def evaluate_for(stats: WindowStats, thresholds: GateThresholds, quota: int,
                 window_days: int = GATE_WINDOW_DAYS) -> Evaluation:
    return evaluate(stats, quota=quota, window_days=window_days, max_bounce_rate=thresholds.max_bounce_rate,
                    max_complaint_rate=thresholds.max_complaint_rate, min_open_rate=thresholds.min_open_rate,
                    min_delivered_share=thresholds.min_delivered_share, confidence=thresholds.confidence)


@dataclass(frozen=True)
class Decision:
    action: StepAction
    rule: Rule
    phase: WarmupPhase | None  # the phase after the step (None: active)
    quota: int  # the quota after the step
    reason: str  # one sentence with the figures that decided
    evaluation: Evaluation


def decide(phase: WarmupPhase, phase_started_on: dt.date, today: dt.date, stats: WindowStats,
           thresholds: GateThresholds, schedule: Schedule, window_days: int = GATE_WINDOW_DAYS) -> Decision:
    """One daily tick's decision (rules 1-5 of the module docstring, in order)."""
    quota = schedule.quota(phase)
    ev = evaluate_for(stats, thresholds, quota, window_days)
    if ev.excess:
        what = "; ".join(_excess_text(c) for c in ev.excess)
        return Decision(StepAction.PAUSE, Rule.EXCESS, phase, quota, f"pause: {what}", ev)
    days = days_in_phase(phase_started_on, today)
    min_days = schedule.days(phase)
    if days < min_days:
        return Decision(StepAction.HOLD, Rule.MIN_DAYS, phase, quota,
                        f"hold: day {days + 1} of {phase.value} (min {min_days} days)", ev)
    if not ev.enough_mail:
        return Decision(StepAction.HOLD, Rule.INSUFFICIENT_DATA, phase, quota,
                        f"hold: insufficient data: delivered {ev.delivered} of the {ev.required} required "
                        f"({ev.min_delivered_share:.0%} of {quota}/day x {window_days} days)", ev)
    if ev.unclear:
        what = "; ".join(f"{c.name} {c.rate:.2%} > {c.limit:.2%} but lower bound {c.lower:.2%} is not"
                         for c in ev.unclear)
        return Decision(StepAction.HOLD, Rule.NOT_YET_CLEAR, phase, quota, f"hold: not yet clear: {what}", ev)
    nxt = schedule.next_phase(phase)
    done = f"{phase.value} done after {days} days, {ev.delivered} delivered (need {ev.required}), gate passed"
    if nxt is None:
        return Decision(StepAction.ACTIVATE, Rule.PASS, None, schedule.active_quota, f"{done}: active", ev)
    return Decision(StepAction.ADVANCE, Rule.PASS, nxt, schedule.quota(nxt), f"{done}: {nxt.value}", ev)


def _excess_text(c: RateCheck) -> str:
    if c.ceiling:
        return f"{c.name} rate {c.rate:.2%} ({c.count}/{c.base}), lower bound {c.lower:.2%} > max {c.limit:.2%}"
    return f"{c.name} rate {c.rate:.2%} ({c.count}/{c.base}), upper bound {c.upper:.2%} < min {c.limit:.2%}"
