"""The guard's record of what it did to which active IP on which day (migration 0020).

One row per (IP, day), unique: a second run of the guard the same day (a Schedule run and an
operator's `guard run`, or a retried activity) finds the row and does not act twice. The row is also
what the next days read: a step an operator denied or undid is not taken again while the evidence
window still holds the days it was decided on. Status changes of the IP itself are audited in
`status_change` (actor: the step's workflow id), as every status change is.

Status: planned (automatic, being applied) | held (waiting for an operator: capacity-loss hold) |
approved (held, then approved; being applied) | applied | denied | undone (an operator restored the
IP) | failed (the IP was no longer active when the step came, or another step of it was open).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from models.tables import utcnow

PLANNED, HELD, APPROVED, APPLIED, DENIED, UNDONE, FAILED = (
    "planned", "held", "approved", "applied", "denied", "undone", "failed")
#: Rows whose capacity loss counts in the day's budget (taken, or about to be).
COUNTED = (PLANNED, APPROVED, APPLIED)


class GuardStep(SQLModel, table=True):
    __tablename__ = "guard_step"
    __table_args__ = (UniqueConstraint("ip_id", "day", name="uq_guard_step_ip_day"),)
    id: int | None = Field(default=None, primary_key=True)
    ip_id: int = Field(foreign_key="sending_ip.id", index=True)
    tenant_id: int = Field(foreign_key="tenant.id", index=True)
    day: dt.date
    action: str = Field(max_length=16)  # step_down | pause
    to_phase: str | None = Field(default=None, max_length=16)
    quota_before: int = 0
    quota_after: int = 0
    capacity_loss: int = 0
    held: bool = False
    status: str = Field(default=PLANNED, max_length=16)
    #: the judgement with its figures (counts, rates, Wilson bounds)
    evidence: str = Field(default="", max_length=2048)
    hold_reason: str = Field(default="", max_length=1024)
    run_workflow_id: str = Field(default="", max_length=255)
    step_workflow_id: str = Field(default="", max_length=255)
    created_at: dt.datetime = Field(default_factory=utcnow)
    applied_at: dt.datetime | None = None
    decided_at: dt.datetime | None = None
    decided_by: str = Field(default="", max_length=255)
    #: the operator's last reason (approve, deny, undo), or why the step failed
    note: str = Field(default="", max_length=1024)
