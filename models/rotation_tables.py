"""Durable rotation state: the round-robin position per tenant and per-IP hourly send counters.

Both tables stay small: one cursor row per tenant, and counter rows only for the current and the
previous UTC hour of each IP that was picked (older hours are pruned by the picks themselves).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, Integer
from sqlmodel import Field, SQLModel


class RotationCursor(SQLModel, table=True):
    __tablename__ = "rotation_cursor"
    tenant_id: int = Field(sa_column=Column(Integer, ForeignKey("tenant.id", ondelete="CASCADE"), primary_key=True))
    #: Round-robin picks handed out so far; the next pick takes candidate[position % n].
    position: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))
    #: The UTC hour (hours since the epoch) up to which old counter rows were pruned.
    pruned_hour: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))


class IpHourlySent(SQLModel, table=True):
    """Messages rotation assigned to an IP during one UTC hour ("pick and record")."""

    __tablename__ = "ip_hourly_sent"
    ip_id: int = Field(sa_column=Column(Integer, ForeignKey("sending_ip.id", ondelete="CASCADE"), primary_key=True))
    #: Hours since the Unix epoch (UTC).
    hour: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    sent: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))
