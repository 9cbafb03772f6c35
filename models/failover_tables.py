"""Failover tables (migration 0006).

`standby_claim`: a failover saga's claim on a standby IP. The primary key on `ip_id` is the
database guarantee that two sagas never take the same standby, even at the same instant: the
second INSERT fails (PostgreSQL waits for the first transaction, then raises a unique violation).
A claim lives until its saga ends (released at the last step or by the compensation).

`blocklist_scan_run`: one row per BlocklistScanWorkflow run: counts, broken zones and the decision
taken per IP (JSON), so the operator sees what each scan concluded.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from models.tables import utcnow


class StandbyClaim(SQLModel, table=True):
    __tablename__ = "standby_claim"
    ip_id: int = Field(foreign_key="sending_ip.id", primary_key=True, sa_column_kwargs={"autoincrement": False})
    workflow_id: str = Field(max_length=255, index=True)
    claimed_at: dt.datetime = Field(default_factory=utcnow)


class BlocklistScanRun(SQLModel, table=True):
    __tablename__ = "blocklist_scan_run"
    id: int | None = Field(default=None, primary_key=True)
    workflow_id: str = Field(max_length=255, index=True)
    started_at: dt.datetime = Field(default_factory=utcnow)
    finished_at: dt.datetime | None = None
    ips_scanned: int = 0
    listed: int = 0
    inconclusive: int = 0
    broken_zones: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    decisions: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
