"""FailoverSaga's contract (workflow "FailoverSaga", id `failover/<tenant>/<ip>`, models.failover.saga_id):
its input, the state its `state` query returns, and the request and result of the activity that
starts (or joins) a saga.

Shared by workflows/failover.py and the client (client/failovers.py, client/relay.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from models.failover import Listing, saga_id

__all__ = ["FailoverInput", "SagaState", "StartSagaRequest", "StartSagaResult", "saga_id"]


@dataclass(frozen=True)
class FailoverInput:
    tenant: str
    address: str
    listings: list[Listing] = field(default_factory=list)
    detected_by: str = "blocklist scan"


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


@dataclass(frozen=True)
class StartSagaRequest:
    """Activity "start_failover_saga" (client/relay.py)."""

    tenant: str
    address: str
    listings: list[Listing]
    detected_by: str


@dataclass(frozen=True)
class StartSagaResult:
    workflow_id: str
    run_id: str
    joined: bool  # True: a saga for this listing was already running and this detection joined it
