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

from sqlalchemy import JSON, Column, Text
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


class BlocklistScanAnswer(SQLModel, table=True):
    """One answer of a scan that was not a clean NXDOMAIN (listed, reputation or unknown), per target
    and zone (migration 0018). Clean answers are only counted: a 10,000-IP fleet's scan is 120,000+
    queries, almost all clean. The answers stay here instead of travelling through Temporal."""

    __tablename__ = "blocklist_scan_answer"
    id: int | None = Field(default=None, primary_key=True)
    workflow_id: str = Field(max_length=255, index=True)
    kind: str = Field(max_length=8)  # ip | domain
    target: str = Field(max_length=253, index=True)
    tenant: str = Field(max_length=63)
    zone: str = Field(max_length=64)  # catalogue name
    zone_name: str = Field(max_length=253)  # DNS zone as displayed (DQS key redacted)
    status: str = Field(max_length=16)  # listed | reputation | unknown
    codes: str = Field(default="", max_length=255)
    detail: str = Field(default="", max_length=512)  # meaning of the codes, or why unknown


class BlocklistScanPage(SQLModel, table=True):
    """Decision pages 1.. of a scan (page 0 travels in the scan's result), read back by the scan
    workflow one by one (migration 0018). JSON as Temporal's converter writes list[ScanDecision]."""

    __tablename__ = "blocklist_scan_page"
    workflow_id: str = Field(max_length=255, primary_key=True)
    page: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    decisions: str = Field(sa_column=Column(Text, nullable=False))
