"""Deploy history: one row per MtaDeployWorkflow deploy (migration 0002). Read by `mta status`/drift."""

from __future__ import annotations

import datetime as dt

from sqlmodel import Field, SQLModel

from models.tables import utcnow


class MtaDeployRecord(SQLModel, table=True):
    __tablename__ = "mta_deploy"
    id: int | None = Field(default=None, primary_key=True)
    host: str = Field(max_length=64, index=True)
    generation: int = 0
    digest: str = Field(default="", max_length=64)
    ok: bool
    changed: bool
    rolled_back: bool = False
    message: str = Field(default="", max_length=4000)
    target: str = Field(default="", max_length=1024)
    reason: str = Field(default="", max_length=1024)
    actor: str = Field(default="", max_length=255)
    at: dt.datetime = Field(default_factory=utcnow)
