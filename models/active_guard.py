"""The guard on active IPs (issue 15): an active IP's own 7-day bounce and complaint rates, judged with
the warmup gate's evidence rules, and what a tenant's policy does about a real excess. Pure.

Only blocklists protected an active IP before: a list or content problem that makes one IP bounce or
draw complaints went on at full volume (10,000/day) until a list noticed. The guard reads the same
window as the warmup gate (the 7 full UTC days before today, models.warmup.gate_window) and the same
limits (the tenant's `max_bounce_rate` / `max_complaint_rate`, else the settings), and judges each
rate with models.warmup_gate (reused, not copied), in the gate's order:

1. *excess*: a rate's Wilson LOWER bound is above its limit: the excess is real at the chosen
   confidence, whatever the volume (the bound itself asks for enough events). The tenant's policy
   decides: `step_down` (default) or `pause`.
2. *hold-insufficient-data*: fewer messages delivered than `min_delivered_share` x the IP's quota x 7
   (the gate's volume floor). Nothing is done; nothing is concluded either.
3. *not-yet-clear*: a rate observed above its limit whose lower bound is not. One bad day inside an
   otherwise clean week lands here (or in `ok`): it is not evidence of a lasting excess.
4. *ok*.

Only the two ceilings act. The gate's open-rate floor is computed (and shown) but never steps an
active IP down: the issue names bounces and complaints, and a low open rate of an IP that already
proved itself is a content or list matter, not a reputation incident of the IP.

**Step down** = back to warming at `step_down_phase` with that phase's quota, and re-warm from there
through the ordinary IpWarmupWorkflow (its gate, its phases). The default phase is **week_5**
(1,000/day, 10% of the active quota):
- the IP has a proven history: it completed six weeks once, so restarting at week_1 (50/day) would
  throw that away; models.warmup.resume_phase puts an IP idle one to two weeks at week_5 the same way;
- a cut to about a tenth of the volume is the usual answer to a reputation incident, and it is big
  enough to matter to the mailbox providers that saw the excess;
- week_5's gate asks for 3,500 delivered over 7 days (50% of 1,000 x 7): enough mail for the gate to
  prove a bounce excess again (280 bounces of 3,500, 8%, have a lower bound of 7.1%, above 5%);
- the way back to active is two phases (at least 14 days); from week_4 (500/day) it is three.

**Pause** = out of the pool at once: status `resting`, quota 0 (models.schedule.default_quota), so
the MTA sends nothing from it. It comes back as any resting IP does: through `email-engine warmup start`
(the DNS gate, then the phase its history allows), or at once with the alert's Restore button.

**Capacity-loss hold** (like the failover blast radius): a tenant's daily capacity is the sum of its
sending IPs' daily quotas at the start of the day. The guard's steps of one day may remove at most
`max_capacity_loss_share` of it automatically; steps are taken most evident first (highest lower
bound relative to its limit), and once one would cross the limit it and every further step of that
tenant that day hold for an operator (approve/deny). The tenant's first step of the day always may
(one IP always may fail over too): a three-IP tenant must not need an operator for its only bad IP.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from models.enums import WarmupPhase
from models.warmup import GATE_WINDOW_DAYS, GateThresholds, WindowStats
from models.warmup_gate import Evaluation, RateCheck, evaluate_for

#: Default phase a stepped-down IP re-warms from (see the module docstring for why).
DEFAULT_STEP_DOWN_PHASE = WarmupPhase.WEEK_5
#: Default largest share of a tenant's daily capacity the guard removes in a day without an operator.
DEFAULT_MAX_CAPACITY_LOSS_SHARE = 0.2


class GuardAction(StrEnum):
    """A tenant's policy for an active IP with a real excess (inventory `active_guard`)."""

    STEP_DOWN = "step_down"
    PAUSE = "pause"


class GuardVerdict(StrEnum):
    OK = "ok"
    HOLD_INSUFFICIENT_DATA = "hold-insufficient-data"
    NOT_YET_CLEAR = "not-yet-clear"
    STEP_DOWN = "step-down"
    PAUSE = "pause"

    @property
    def acts(self) -> bool:
        return self in (GuardVerdict.STEP_DOWN, GuardVerdict.PAUSE)


@dataclass(frozen=True)
class GuardPolicy:
    action: GuardAction = GuardAction.STEP_DOWN
    step_down_phase: WarmupPhase = DEFAULT_STEP_DOWN_PHASE
    max_capacity_loss_share: float = DEFAULT_MAX_CAPACITY_LOSS_SHARE

    def __post_init__(self) -> None:
        if not 0 < self.max_capacity_loss_share <= 1:
            raise ValueError(f"max_capacity_loss_share must be in (0, 1], not {self.max_capacity_loss_share}")


def policy_for(defaults: GuardPolicy, action: str | None = None, step_down_phase: str | None = None,
               max_capacity_loss_share: float | None = None) -> GuardPolicy:
    """A tenant's policy: its inventory values where set, the settings' defaults elsewhere."""
    return GuardPolicy(
        action=defaults.action if action is None else GuardAction(action),
        step_down_phase=defaults.step_down_phase if step_down_phase is None else WarmupPhase(step_down_phase),
        max_capacity_loss_share=(defaults.max_capacity_loss_share if max_capacity_loss_share is None
                                 else max_capacity_loss_share),
    )


@dataclass(frozen=True)
class Judgement:
    verdict: GuardVerdict
    reason: str  # one sentence with the figures that decided
    evaluation: Evaluation

    @property
    def excess(self) -> list[RateCheck]:
        return [c for c in self.evaluation.excess if c.ceiling]

    @property
    def severity(self) -> float:
        """How far the most evident excess is beyond its limit: max(lower bound / limit); 0 without one.
        Steps are taken in this order when capacity is short."""
        return max((c.lower / c.limit if c.limit else math.inf for c in self.excess if c.lower is not None),
                   default=0.0)


def decide(stats: WindowStats, thresholds: GateThresholds, quota: int, policy: GuardPolicy,
           window_days: int = GATE_WINDOW_DAYS) -> Judgement:
    """The guard's reading of an active IP's window (rules 1-4 of the module docstring, in order).
    `quota`: the IP's daily quota (the volume floor is the warmup gate's, on this quota)."""
    ev = evaluate_for(stats, thresholds, quota, window_days)
    excess = [c for c in ev.excess if c.ceiling]
    if excess:
        what = "; ".join(f"{c.name} rate {c.rate:.2%} ({c.count}/{c.base}), lower bound {c.lower:.2%} > max "
                         f"{c.limit:.2%}" for c in excess)
        if policy.action == GuardAction.PAUSE:
            return Judgement(GuardVerdict.PAUSE, f"pause: {what}", ev)
        return Judgement(GuardVerdict.STEP_DOWN, f"step down to {policy.step_down_phase.value}: {what}", ev)
    if not ev.enough_mail:
        return Judgement(GuardVerdict.HOLD_INSUFFICIENT_DATA,
                         f"hold: insufficient data: delivered {ev.delivered} of the {ev.required} required "
                         f"({ev.min_delivered_share:.0%} of {quota}/day x {window_days} days)", ev)
    unclear = [c for c in ev.unclear if c.ceiling]
    if unclear:
        what = "; ".join(f"{c.name} {c.rate:.2%} > {c.limit:.2%} but lower bound {c.lower:.2%} is not"
                         for c in unclear)
        return Judgement(GuardVerdict.NOT_YET_CLEAR, f"not yet clear: {what}", ev)
    return Judgement(GuardVerdict.OK, f"ok: {ev.delivered} delivered, no rate beyond its limit", ev)


# ------------------------------------------------------------------------------------ capacity loss


def step_quota(action: GuardAction, phase_quota: int) -> int:
    """The IP's daily quota after the step: the phase's quota, or 0 when paused."""
    return 0 if action == GuardAction.PAUSE else phase_quota


@dataclass(frozen=True)
class StepCandidate:
    """An active IP the guard would act on today."""

    address: str
    action: GuardAction
    quota_before: int
    quota_after: int
    severity: float

    @property
    def loss(self) -> int:
        return max(0, self.quota_before - self.quota_after)


@dataclass(frozen=True)
class CapacityBudget:
    """A tenant's day: `capacity` = its sending IPs' daily quotas at the start of the day; `lost` and
    `steps`: what the guard already removed today (earlier runs, approved holds)."""

    capacity: int
    share: float
    lost: int = 0
    steps: int = 0

    @property
    def limit(self) -> int:
        """Daily quota the guard may remove without an operator (floor of share x capacity)."""
        return math.floor(round(self.capacity * self.share, 6))


@dataclass(frozen=True)
class PlannedStep:
    candidate: StepCandidate
    held: bool
    #: the capacity removed by the guard today once this step is taken (with the ones before it)
    lost_after: int
    hold_reason: str = ""


def _address_key(address: str) -> tuple[int, str]:
    return (6 if ":" in address else 4, address)


def plan_steps(candidates: list[StepCandidate], budget: CapacityBudget, tenant: str = "") -> list[PlannedStep]:
    """Which of a tenant's steps of the day run automatically and which hold for an operator (module
    docstring, "Capacity-loss hold"): most evident first; the first step of the day always runs; a step
    that would take the day's loss past the limit holds, and so does every step after it."""
    order = sorted(candidates, key=lambda c: (-c.severity, _address_key(c.address)))
    lost, steps, holding = budget.lost, budget.steps, False
    out: list[PlannedStep] = []
    for c in order:
        after = lost + c.loss
        if not holding and (steps == 0 or after <= budget.limit):
            lost, steps = after, steps + 1
            out.append(PlannedStep(c, False, lost))
            continue
        holding = True
        share = after / budget.capacity if budget.capacity else 1.0
        out.append(PlannedStep(c, True, after, (
            f"capacity-loss hold: with this step {tenant or 'the tenant'} would lose {after:,} of its "
            f"{budget.capacity:,}/day capacity today ({share:.1%}), more than {budget.share:.0%} "
            f"(at most {budget.limit:,} without an operator; {lost:,} already removed by {steps} step(s))")))
    return out
