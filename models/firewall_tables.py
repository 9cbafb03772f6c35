"""The inventory's `[firewall]` section (issue 15), as the file said it: one row, the validated policy as
canonical JSON (models.firewall.FirewallPolicy). No row: the inventory has no firewall section, so no
ruleset is rendered or deployed. Read back through FirewallPolicy again, so a row written around the
loader is validated before anything is rendered from it."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Column, Text
from sqlmodel import Field, SQLModel

from models.tables import utcnow


class FirewallPolicyRow(SQLModel, table=True):
    __tablename__ = "firewall_policy"
    id: int | None = Field(default=None, primary_key=True)
    #: FirewallPolicy.model_dump_json() of the loaded file.
    document: str = Field(sa_column=Column(Text, nullable=False))
    updated_at: dt.datetime = Field(default_factory=utcnow)
