"""FailoverSaga's contract (workflow "FailoverSaga", id `failover/<tenant>/<ip>`, models.failover.saga_id):
its input, the state its `state` query returns, and the request and result of the activity that
starts (or joins) a saga.

Shared by workflows/failover.py and the client (client/failovers.py, client/relay.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from models.failover import Listing, saga_id

__all__ = ["Compensation", "FailoverDecision", "FailoverInput", "SagaState", "StartSagaRequest", "StartSagaResult",
           "decision_problem", "saga_id"]


@dataclass(frozen=True)
class FailoverInput:
    tenant: str
    address: str
    listings: list[Listing] = field(default_factory=list)
    detected_by: str = "blocklist scan"
    #: From a scan: the tenant's other new listings of that scan ("address (zones, this scan)").
    same_scan: list[str] = field(default_factory=list)
    #: From a scan over the tenant's blast radius: the evidence; the saga holds before quarantining.
    blast_radius: str | None = None


@dataclass(frozen=True)
class FailoverDecision:
    """An operator's answer to a held failover. `incident` is the saga's run id the answer was given
    for (a button of an earlier, finished saga of the same IP must not answer this one); None: the
    current run (the CLI after looking it up)."""

    reason: str
    incident: str | None = None


def decision_problem(answer: FailoverDecision | str, held: bool, answered: bool, run_id: str) -> str | None:
    """Why an approve/deny is refused (None: accepted). A plain string is an older client's reason."""
    if isinstance(answer, str):
        answer = FailoverDecision(answer)
    if answer.incident is not None and answer.incident != run_id:
        return f"this answer is for failover run {answer.incident}, not the current run {run_id}"
    if not held or answered:
        return "this failover is not waiting for an operator's decision"
    if not (answer.reason or "").strip():
        return "a reason is required"
    return None


@dataclass
class Compensation:
    """One undo step of the saga, recorded as its forward step starts: `release` (a standby claim) or
    `cancel_warmup` (a started standby warmup, restoring standby)."""

    kind: str
    address: str
    done: bool = False
    problem: str | None = None  # why it failed, with the state it left

    def describe(self) -> str:
        return f"{self.kind} {self.address}" + (f" FAILED: {self.problem}" if self.problem else "")


@dataclass
class SagaState:
    tenant: str
    address: str
    workflow_id: str
    step: str = "starting"
    status: str = "running"  # running | held | completed | compensated | failed
    decision: str | None = None  # automatic | approved | denied
    reasons: list[str] = field(default_factory=list)
    standby: str | None = None
    deploy: str | None = None
    detections: int = 1
    listings: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    error: str | None = None
    run_id: str = ""  # the incident an operator's answer must name (FailoverDecision.incident)
    held: bool = False
    hold: str | None = None  # what holds: "circuit breaker" | "blast radius"
    answer: FailoverDecision | None = None
    approved: bool | None = None
    quarantined: bool = False
    compensations: list[Compensation] = field(default_factory=list)
    failed_step: str | None = None  # "<step> (<activity>)" that failed


@dataclass(frozen=True)
class StartSagaRequest:
    """Activity "start_failover_saga" (client/relay.py)."""

    tenant: str
    address: str
    listings: list[Listing]
    detected_by: str
    #: From a scan: the tenant's other new listings of that scan, and the blast-radius hold (ScanDecision).
    same_scan: list[str] = field(default_factory=list)
    blast_radius: str | None = None


@dataclass(frozen=True)
class StartSagaResult:
    workflow_id: str
    run_id: str
    joined: bool  # True: a saga for this listing was already running and this detection joined it
