"""Tables of the accounting ingest: which accounting files were read, and how far (migration 0003); which
IP delivered which message (migration 0014)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Column, DateTime, ForeignKey, Index, Integer, UniqueConstraint
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


class DeliveryIndex(SQLModel, table=True):
    """Which IP delivered which message, when (migration 0014): remote bounces and complaints arrive in a
    later ingest than their `d` record and carry no IP, so they are attributed through this table. Keys
    are 64-bit digests (models/accounting.py `message_key`): compact, and no recipient address is kept.
    Rows older than the retention (settings `accounting_delivery_retention_days`, PowerMTA's own
    `delete-after` is 8 days) are pruned by the ingest. Written with INSERT ... ON CONFLICT DO NOTHING,
    so a re-read record adds nothing."""

    __tablename__ = "delivery_index"
    __table_args__ = (Index("ix_delivery_index_delivered_at", "delivered_at"),)
    rcpt_key: int = Field(sa_column=Column("rcpt_key", BigInteger, primary_key=True, autoincrement=False))
    env_key: int = Field(sa_column=Column("env_key", BigInteger, primary_key=True, autoincrement=False))
    orig_key: int = Field(sa_column=Column("orig_key", BigInteger, primary_key=True, autoincrement=False))
    #: naive UTC (`timeLogged` of the `d` record)
    delivered_at: dt.datetime = Field(sa_column=Column("delivered_at", DateTime, primary_key=True))
    ip_id: int = Field(sa_column=Column("ip_id", Integer, ForeignKey("sending_ip.id", ondelete="CASCADE"),
                                        nullable=False))
