"""The guard on active IPs as Temporal contracts (issue 15): the daily ActiveGuardWorkflow (Schedule
`active-guard`, or `email-engine guard run`) and one GuardStepWorkflow per IP it acts on (id
`guard/<tenant>/<ip>`: an operator approves, denies or undoes a step by tenant and IP, as a failover).

Shared by workflows/active_guard.py, activities/active_guard.py and the client (client/guard.py,
client/relay.py); field names are part of the recorded histories, so they only ever gain optional fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field

RUN_WORKFLOW = "ActiveGuardWorkflow"
STEP_WORKFLOW = "GuardStepWorkflow"


def step_workflow_id(tenant: str, address: str) -> str:
    return f"guard/{tenant}/{address}"


@dataclass
class GuardRunInput:
    tenant: str | None = None  # None: every tenant
    day: str | None = None  # ISO date; None: the workflow's today (UTC)


@dataclass
class IpFigures:
    """One active IP's reading: the verdict, the figures it rests on, and what the guard does with it."""

    tenant: str
    address: str
    quota: int
    verdict: str = ""  # models.active_guard.GuardVerdict; "" when not judged (skipped)
    reason: str = ""
    sent: int = 0
    delivered: int = 0
    bounced: int = 0
    complaints: int = 0
    required: int = 0  # the volume floor (delivered)
    bounce_rate: float | None = None
    bounce_bounds: list[float] | None = None  # [lower, upper] (Wilson)
    complaint_rate: float | None = None
    complaint_bounds: list[float] | None = None
    max_bounce_rate: float = 0.0
    max_complaint_rate: float = 0.0
    confidence: float = 0.0
    #: why it was not judged or not acted on today (already decided today, kept by an operator, held)
    skipped: str = ""
    step: str = ""  # "" | "auto" | "held"
    loss: int = 0  # daily quota the step removes

    def figures(self) -> str:
        def rate(name: str, count: int, base: int, r: float | None, b: list[float] | None, limit: float) -> str:
            if r is None or b is None:
                return f"{name} unmeasured"
            return f"{name} {count}/{base} = {r:.2%} [{b[0]:.2%}, {b[1]:.2%}] (max {limit:.2%})"

        return (f"sent {self.sent}, delivered {self.delivered} (need {self.required}); "
                + rate("bounce", self.bounced, self.sent, self.bounce_rate, self.bounce_bounds, self.max_bounce_rate)
                + "; " + rate("complaint", self.complaints, self.delivered, self.complaint_rate,
                              self.complaint_bounds, self.max_complaint_rate)
                + f" at {self.confidence:.0%} confidence")


@dataclass
class TenantPlan:
    tenant: str
    action: str  # the tenant's policy: step_down | pause
    step_down_phase: str
    max_capacity_loss_share: float
    capacity: int  # daily quota of its sending IPs at the start of the day
    limit: int  # what the guard may remove today without an operator
    lost_before: int  # removed by earlier runs today
    lost_after: int  # once this run's automatic steps are taken
    #: active IPs per verdict (and "skipped": not judged or not acted on today)
    counts: dict[str, int] = field(default_factory=dict)
    #: the IPs' figures: all of them with `detail`, else those that act, are held, not yet clear or
    #: skipped (a workflow result stays small for a 10,000-IP fleet)
    ips: list[IpFigures] = field(default_factory=list)


@dataclass
class GuardStepInput:
    """What GuardStepWorkflow does for one IP (the guard_step row holds the same)."""

    tenant: str
    address: str
    day: str
    action: str  # step_down | pause
    to_phase: str | None
    quota_before: int
    quota_after: int
    loss: int
    held: bool
    evidence: str
    hold_reason: str = ""
    run_workflow_id: str = ""
    approval_timeout_seconds: int = 24 * 3600
    undo_seconds: int = 72 * 3600


@dataclass
class GuardPlan:
    day: str
    window_from: str
    window_to: str
    tenants: list[TenantPlan] = field(default_factory=list)
    #: the steps this run takes (automatic or held); a dry run lists them without recording them
    steps: list[GuardStepInput] = field(default_factory=list)
    dry_run: bool = False

    def ips(self) -> list[IpFigures]:
        return [ip for t in self.tenants for ip in t.ips]


@dataclass
class GuardRunResult:
    plan: GuardPlan
    started: list[str] = field(default_factory=list)  # GuardStepWorkflow ids started by this run
    #: steps that could not start because another step of the same IP is still open (recorded failed)
    blocked: list[str] = field(default_factory=list)


@dataclass
class StartGuardStepResult:
    workflow_id: str
    run_id: str
    started: bool  # False: a step workflow of this IP was already running


@dataclass(frozen=True)
class GuardAnswer:
    """An operator's approve/deny of a held step, or undo of a taken one. `incident`: the step run it
    is for (a button of an earlier step of the same IP must not answer this one); None: the current run."""

    reason: str
    incident: str | None = None
    actor: str = "operator"


@dataclass
class GuardStepState:
    tenant: str
    address: str
    day: str
    action: str
    to_phase: str | None
    workflow_id: str
    run_id: str
    #: held | applying | applied | denied | undone | failed
    status: str = "applying"
    held: bool = False
    hold_reason: str = ""
    evidence: str = ""
    answer: GuardAnswer | None = None
    approved: bool | None = None
    undo: GuardAnswer | None = None
    undo_until: str | None = None  # ISO datetime: the Undo button and `guard undo` work until then
    error: str | None = None
    log: list[str] = field(default_factory=list)


def answer_problem(answer: GuardAnswer, waiting: bool, run_id: str, what: str) -> str | None:
    """Why an approve/deny/undo is refused (None: accepted). `waiting`: the step waits for this answer."""
    if answer.incident is not None and answer.incident != run_id:
        return f"this answer is for guard step run {answer.incident}, not the current run {run_id}"
    if not waiting:
        return f"this guard step is not waiting for {what}"
    if not (answer.reason or "").strip():
        return "a reason is required"
    return None
