"""Tables of the accounting ingest: which accounting files were read, and how far (migration 0003)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from models.tables import utcnow


class AccountingFile(SQLModel, table=True):
    """One PowerMTA accounting file from one source; `offset` is the byte just after the last complete
    record already counted into daily_stat (the counting and the offset commit in one transaction)."""

    __tablename__ = "accounting_file"
    __table_args__ = (UniqueConstraint("source", "path", name="uq_accounting_file_source_path"),)
    id: int | None = Field(default=None, primary_key=True)
    #: "local" for files given on the command line, else the MTA host name
    source: str = Field(max_length=64)
    path: str = Field(max_length=1024)
    #: sha256 of the file's first bytes (its header row): a different file at the same path starts over
    fingerprint: str = Field(max_length=64)
    #: how many leading bytes the fingerprint covers (grows with the file up to 4096)
    fingerprint_len: int = 0
    header: str = Field(default="", max_length=8192)
    offset: int = 0
    records: int = 0
    malformed: int = 0
    unattributed: int = 0
    transient: int = 0
    first_seen: dt.datetime = Field(default_factory=utcnow)
    last_ingest: dt.datetime = Field(default_factory=utcnow)
