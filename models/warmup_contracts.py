"""IpWarmupWorkflow's contract (workflow "IpWarmupWorkflow", id "warmup/<tenant>/<ip>"): its input,
state, status, signal payloads, and the requests of the activities that start and cancel a warmup.

Shared by workflows/warmup.py, the client (client/warmups.py) and ChatOps; field names are part of
the recorded histories (replay), so they only ever gain optional fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from models.enums import WarmupPhase


def workflow_id(tenant: str, address: str) -> str:
    return f"warmup/{tenant}/{address}"


@dataclass
class PauseRequest:
    reason: str = ""
    days: float | None = None  # None: until resumed
    actor: str = "operator"


@dataclass
class ResumeRequest:
    reason: str = ""
    actor: str = "operator"
    #: The pause this resume answers (WarmupState.pause_incident, carried by a ChatOps button): a
    #: resume naming another pause (an earlier one, already over) is ignored. None: any pause.
    incident: str | None = None


@dataclass
class GateSnapshot:
    day: str
    passed: bool
    reasons: list[str]
    window_from: str
    window_to: str
    sent: int
    delivered: int
    bounced: int
    complaints: int
    opens: int
    bounce_rate: float
    complaint_rate: float
    open_rate: float | None
    max_bounce_rate: float
    max_complaint_rate: float
    min_open_rate: float
    # Since issue 10 (defaults: snapshots taken before it): the decision, the rule that fired, the
    # volume floor and the Wilson bounds of each rate (None: no base). models/warmup_gate.py.
    action: str = ""  # hold | advance | pause | activate
    rule: str = ""  # excess | min-days | insufficient-data | not-yet-clear | pass
    reason: str = ""
    required_delivered: int = 0
    min_delivered_share: float = 0.0
    confidence: float = 0.0
    open_base: int = 0
    bounce_bounds: list[float] | None = None  # [lower, upper]
    complaint_bounds: list[float] | None = None
    open_bounds: list[float] | None = None


@dataclass
class Transition:
    at: str
    kind: str  # start | advance | active | pause | resume | hold | sync | deploy_failed | stopped
    from_phase: str | None
    to_phase: str | None
    reason: str


@dataclass
class WarmupState:
    phase: str
    phase_started_on: str
    quota: int
    paused: bool = False
    pause_reason: str = ""
    paused_until: str | None = None  # ISO datetime; None while paused: until resumed
    paused_by: str = ""  # gate | operator | engine
    last_gate: GateSnapshot | None = None
    history: list[Transition] = field(default_factory=list)
    history_dropped: int = 0
    last_tick_day: str | None = None
    first_tick_at: str | None = None
    ticks: int = 0
    deploy_pending: bool = False
    done: bool = False
    outcome: str = ""
    runs: int = 1
    #: the evidence hold in progress (insufficient-data | not-yet-clear) and its first day: alerted once
    hold_rule: str = ""
    hold_since: str | None = None
    #: Id of the current pause ("<run id>/<n>"), set when a pause begins; kept across
    #: continue-as-new, unlike the run id, so a Resume button names the pause it was sent for.
    pause_incident: str = ""
    pauses: int = 0


@dataclass
class WarmupInput:
    tenant: str
    address: str
    domain: str = ""
    phase: str = WarmupPhase.WEEK_1.value
    phase_started_on: str | None = None  # ISO date; None: the day the workflow starts
    quota: int = 0
    reason: str = "warmup started"
    #: daily ticks at 00:00 UTC + a stable offset in [0, window)
    wake_window_seconds: int = 3600
    #: bench/tests: the first tick comes within this many seconds of the start instead of the next day
    first_tick_within_seconds: int | None = None
    #: ask for an MTA deploy before the first tick (the IP just entered warming)
    deploy_at_start: bool = False
    #: tests: continue as new when the history is longer than this (0: only when Temporal suggests it)
    max_history_events: int = 0
    #: carried across continue-as-new
    state: WarmupState | None = None


@dataclass
class WarmupStatus:
    workflow_id: str
    tenant: str
    address: str
    domain: str
    status: str  # warming | active | stopped
    phase: str | None
    quota: int
    phase_started_on: str
    day_in_phase: int
    paused: bool
    pause_reason: str
    paused_until: str | None
    paused_by: str
    next_wake: str | None
    last_gate: GateSnapshot | None
    history: list[Transition]
    history_dropped: int
    deploy_pending: bool
    ticks: int
    runs: int
    pause_incident: str = ""  # id of the current pause (a Resume button must name it)


@dataclass
class StartWarmupRequest:
    """Activity "start_ip_warmup" (client/relay.py)."""

    address: str
    reason: str
    actor: str
    override_dns: str | None = None


@dataclass
class CancelWarmupRequest:
    """Activity "cancel_ip_warmup" (client/relay.py): the saga's compensation of a started warmup."""

    address: str
    restore_status: str
    reason: str
    actor: str


@dataclass
class StartPlan:
    """Where an IP's warmup starts, as the inventory records it after the move into warming."""

    tenant: str
    address: str
    domain: str
    phase: str
    phase_started_on: str
    quota: int
    moved_from: str | None  # the status it left (None: it was already warming)
    dns_override: bool = False


@dataclass
class StartOutcome:
    workflow_id: str
    started: bool  # False: a workflow was already running (left alone)
    plan: StartPlan
    messages: list[str] = field(default_factory=list)
