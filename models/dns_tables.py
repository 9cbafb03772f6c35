"""Persisted DNS authentication results (history) and the audit of DNS-gate overrides.

`dns_check`: one row per check of one sending domain (and the IP it pointed at then). `items` holds
the per-item result: {"spf": {"status": "valid|warn|invalid|unknown", "reason": "...",
"details": [...]}, "dkim": ..., "dmarc": ..., "ptr": ...}. `overall` is the worst item status
(invalid > unknown > warn > valid). The domain's flags (SendingDomain.spf_valid, ...) mirror the
latest row: True = valid/warn, False = invalid, None = unknown.

`dns_override`: an operator let an IP into warming although its domain's DNS check did not pass.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from models.tables import utcnow


class DnsCheck(SQLModel, table=True):
    __tablename__ = "dns_check"
    id: int | None = Field(default=None, primary_key=True)
    domain_id: int = Field(foreign_key="sending_domain.id", index=True)
    ip_address: str = Field(max_length=45)
    checked_at: dt.datetime = Field(default_factory=utcnow, index=True)
    overall: str = Field(max_length=16)
    items: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class DnsOverride(SQLModel, table=True):
    __tablename__ = "dns_override"
    id: int | None = Field(default=None, primary_key=True)
    ip_id: int = Field(foreign_key="sending_ip.id", index=True)
    domain_id: int | None = Field(default=None, foreign_key="sending_domain.id")
    dns_check_id: int | None = Field(default=None, foreign_key="dns_check.id")
    failures: str = Field(max_length=4096)
    reason: str = Field(max_length=1024)
    actor: str = Field(max_length=255)
    at: dt.datetime = Field(default_factory=utcnow)
