"""SQLModel tables: the inventory database is the desired state of the fleet (DESIGN.md §3).

Tenant isolation is structural: a domain references its IP through (ip_id, tenant_id), so a
domain can only ever point at an IP of its own tenant.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Column, ForeignKeyConstraint, Index, UniqueConstraint
from sqlalchemy import Enum as SAEnum
from sqlmodel import Field, SQLModel

from models.enums import IpPurpose, IpStatus, MtaBackend, WarmupPhase


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _enum(enum: type, name: str, nullable: bool = False) -> Column:  # type: ignore[type-arg,unused-ignore]
    # native_enum=False keeps SQLite and PostgreSQL identical (VARCHAR + CHECK), and migrations simple.
    return Column(
        SAEnum(enum, name=name, native_enum=False, values_callable=lambda e: [m.value for m in e],
               validate_strings=True, length=32),
        nullable=nullable,
    )


class MtaHost(SQLModel, table=True):
    __tablename__ = "mta_host"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=64)
    address: str = Field(max_length=45)
    backend: MtaBackend = Field(sa_column=_enum(MtaBackend, "mta_backend"))
    ssh_port: int = 22
    ssh_user: str = Field(default="root", max_length=64)
    config_dir: str = Field(default="/etc/pmta", max_length=1024)
    # Owner of the deployed DKIM key files (None: the SSH user).
    mta_user: str | None = Field(default=None, max_length=32)
    # Deploys reach a host only once an operator enables it (DESIGN.md §9).
    enabled: bool = False


class Tenant(SQLModel, table=True):
    __tablename__ = "tenant"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=63)
    mta_host_id: int | None = Field(default=None, foreign_key="mta_host.id")
    pool_name: str = Field(unique=True, max_length=64)
    # Safety-gate thresholds (None: the settings' defaults).
    max_bounce_rate: float | None = None
    max_complaint_rate: float | None = None
    min_open_rate: float | None = None
    # Share of a phase's quota x 7 days that must be delivered before the phase ends (None: settings).
    min_delivered_share: float | None = None
    # Bounce and feedback-loop report domains (migration 0011); None: not processed.
    bounce_domain: str | None = Field(default=None, max_length=253)
    fbl_domain: str | None = Field(default=None, max_length=253)
    # Guard on active IPs (migration 0020; None: the settings' defaults; models/active_guard.py):
    # step_down | pause, the phase a step-down re-warms from, the day's automatic capacity-loss limit.
    active_guard: str | None = Field(default=None, max_length=16)
    guard_step_down_phase: str | None = Field(default=None, max_length=16)
    guard_max_capacity_loss_share: float | None = None


class MailwizzServer(SQLModel, table=True):
    __tablename__ = "mailwizz_server"
    id: int | None = Field(default=None, primary_key=True)
    tenant_id: int = Field(foreign_key="tenant.id", unique=True)
    base_url: str = Field(max_length=512)
    source_ip: str = Field(max_length=45)


class SendingIp(SQLModel, table=True):
    __tablename__ = "sending_ip"
    __table_args__ = (UniqueConstraint("id", "tenant_id", name="uq_sending_ip_id_tenant"),)
    id: int | None = Field(default=None, primary_key=True)
    address: str = Field(unique=True, max_length=45)
    version: int = 4
    hostname: str = Field(max_length=253)
    tenant_id: int = Field(foreign_key="tenant.id", index=True)
    purpose: IpPurpose = Field(sa_column=_enum(IpPurpose, "ip_purpose"))
    status: IpStatus = Field(sa_column=_enum(IpStatus, "ip_status"))
    warmup_phase: WarmupPhase | None = Field(default=None, sa_column=_enum(WarmupPhase, "warmup_phase", True))
    phase_started_on: dt.date | None = None
    daily_quota: int = 0
    weight: int = 0
    vmta_name: str = Field(unique=True, max_length=64)
    quarantine_until: dt.datetime | None = None
    quarantine_extensions: int = 0
    listed_on: str | None = Field(default=None, max_length=2048)
    status_changed_at: dt.datetime = Field(default_factory=utcnow)


class SendingDomain(SQLModel, table=True):
    __tablename__ = "sending_domain"
    __table_args__ = (
        ForeignKeyConstraint(["ip_id", "tenant_id"], ["sending_ip.id", "sending_ip.tenant_id"],
                             name="fk_domain_ip_same_tenant"),
    )
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=253)
    tenant_id: int = Field(foreign_key="tenant.id", index=True)
    ip_id: int = Field(unique=True)
    dkim_selector: str = Field(default="default", max_length=253)
    dkim_key_path: str = Field(max_length=1024)
    spf_valid: bool | None = None
    dkim_valid: bool | None = None
    dmarc_valid: bool | None = None
    ptr_valid: bool | None = None
    last_check_at: dt.datetime | None = None


class WarmupPlan(SQLModel, table=True):
    """A tenant's own warmup schedule; a tenant without rows uses the reference schedule."""

    __tablename__ = "warmup_plan"
    __table_args__ = (UniqueConstraint("tenant_id", "phase", name="uq_warmup_plan_phase"),)
    id: int | None = Field(default=None, primary_key=True)
    tenant_id: int = Field(foreign_key="tenant.id")
    phase: WarmupPhase = Field(sa_column=_enum(WarmupPhase, "warmup_plan_phase"))
    daily_quota: int
    min_days: int = 7


class DailyStat(SQLModel, table=True):
    __tablename__ = "daily_stat"
    # ix_daily_stat_day (migration 0023): the 7-day sums over every IP (fleet gauges) read by day.
    __table_args__ = (UniqueConstraint("ip_id", "day", name="uq_daily_stat_ip_day"),
                      Index("ix_daily_stat_day", "day"))
    id: int | None = Field(default=None, primary_key=True)
    ip_id: int = Field(foreign_key="sending_ip.id", index=True)
    day: dt.date
    sent: int = 0
    delivered: int = 0
    bounced: int = 0
    complaints: int = 0
    opens: int = 0
    clicks: int = 0
    #: whether `opens` was measured that day (open tracking); the warmup gate ignores unmeasured days
    opens_measured: bool = False


class BlocklistEvent(SQLModel, table=True):
    __tablename__ = "blocklist_event"
    id: int | None = Field(default=None, primary_key=True)
    ip_id: int | None = Field(default=None, foreign_key="sending_ip.id", index=True)
    domain_id: int | None = Field(default=None, foreign_key="sending_domain.id")
    zone: str = Field(max_length=253)
    code: str | None = Field(default=None, max_length=45)
    meaning: str | None = Field(default=None, max_length=512)
    detected_at: dt.datetime = Field(default_factory=utcnow)
    cleared_at: dt.datetime | None = None
    outcome: str | None = Field(default=None, max_length=512)
    workflow_id: str | None = Field(default=None, max_length=255)


class StatusChange(SQLModel, table=True):
    """Audit row for every status (or phase) change: who, when, why, which workflow."""

    __tablename__ = "status_change"
    id: int | None = Field(default=None, primary_key=True)
    ip_id: int = Field(foreign_key="sending_ip.id", index=True)
    from_status: str | None = Field(default=None, max_length=32)
    to_status: str = Field(max_length=32)
    from_phase: str | None = Field(default=None, max_length=32)
    to_phase: str | None = Field(default=None, max_length=32)
    reason: str = Field(max_length=1024)
    actor: str = Field(max_length=255)
    at: dt.datetime = Field(default_factory=utcnow)
