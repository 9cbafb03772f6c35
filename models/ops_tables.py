"""Tables of the operators' side: alert deduplication, ChatOps buttons, MailWizz stat snapshots.

- `alert_sent`: one row per alert key. Claiming a key is one atomic UPDATE/INSERT, so deduplication
  holds across worker threads, worker processes and activity retries (the claimant is the activity
  attempt's workflow/activity id: a retry of the same activity may send again, another alert may not).
- `alert_button`: what a Telegram button does (callback_data carries only the random token, which
  keeps it under Telegram's 64-byte limit and lets the bot refuse anything it did not issue), the
  run it is bound to and when it expires; `used_at` is set by one atomic UPDATE before acting.
- `mailwizz_campaign_stat`: the last cumulative counters seen per MailWizz campaign; the daily
  figures are the difference to the previous reading.
- `mailwizz_unsubscribe_cursor`: how far a campaign's unsubscribe records have been read (count and
  newest record), so each sync reads only the new ones (contact.unsubscribe webhooks).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from models.tables import utcnow


class AlertSent(SQLModel, table=True):
    __tablename__ = "alert_sent"
    key: str = Field(primary_key=True, max_length=255)
    sent_at: dt.datetime = Field(default_factory=utcnow)
    claimed_by: str = Field(default="", max_length=512)
    delivered: bool = False
    suppressed: int = 0


class AlertButton(SQLModel, table=True):
    __tablename__ = "alert_button"
    token: str = Field(primary_key=True, max_length=32)
    alert_key: str = Field(max_length=255)
    label: str = Field(max_length=64)
    workflow_id: str = Field(max_length=255)
    name: str = Field(max_length=64)
    kind: str = Field(max_length=16)
    arg: str | None = Field(default=None, max_length=1024)
    created_at: dt.datetime = Field(default_factory=utcnow)
    #: The workflow run the button acts on (a failover saga's run): a later run of the same
    #: workflow id is another incident, and the press is refused by Temporal. None: the workflow id.
    run_id: str | None = Field(default=None, max_length=64)
    #: After this the press does nothing (the approval window is over). None: never (old buttons).
    expires_at: dt.datetime | None = None
    used_at: dt.datetime | None = None
    used_by: str | None = Field(default=None, max_length=255)
    result: str | None = Field(default=None, max_length=1024)


class MailwizzCampaignStat(SQLModel, table=True):
    __tablename__ = "mailwizz_campaign_stat"
    __table_args__ = (UniqueConstraint("tenant_id", "campaign_uid", name="uq_mw_stat_campaign"),)
    id: int | None = Field(default=None, primary_key=True)
    tenant_id: int = Field(foreign_key="tenant.id", index=True)
    campaign_uid: str = Field(max_length=64)
    processed: int = 0
    delivered: int = 0
    opens: int = 0
    clicks: int = 0
    unsubscribes: int = 0
    complaints: int = 0
    bounces: int = 0
    hard_bounces: int = 0
    soft_bounces: int = 0
    read_at: dt.datetime = Field(default_factory=utcnow)


class MailwizzUnsubscribeCursor(SQLModel, table=True):
    __tablename__ = "mailwizz_unsubscribe_cursor"
    __table_args__ = (UniqueConstraint("tenant_id", "campaign_uid", name="uq_mw_unsub_campaign"),)
    id: int | None = Field(default=None, primary_key=True)
    tenant_id: int = Field(foreign_key="tenant.id")
    campaign_uid: str = Field(max_length=64)
    #: the campaign's list (GET campaigns/{uid}), read once
    list_uid: str = Field(default="", max_length=64)
    #: the campaign's unsubscribe count when last read: a stats `unsubscribes_count` above it means new records
    read_count: int = 0
    #: the newest record read (models.mailwizz.Unsubscribe.marker); "" when set by count only
    marker: str = Field(default="", max_length=160)
    read_at: dt.datetime = Field(default_factory=utcnow)
