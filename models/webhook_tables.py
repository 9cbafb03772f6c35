"""Tables of the outbound webhooks (issue 15).

- `webhook_receiver`: name, URL and event types from the inventory file (never the secret: that is
  EMAIL_ENGINE_WEBHOOK_SECRETS); a receiver left out of the file is disabled, not deleted (its outbox
  rows stay for `webhooks list` and replay).
- `webhook_outbox`: one row per (receiver, event id), unique, so an event recorded twice (a retried
  activity, a replayed workflow, an accounting chunk read again) is queued once. Rows are delivered in
  `id` order per receiver: `id` is the order.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from models.tables import utcnow

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


class WebhookReceiver(SQLModel, table=True):
    __tablename__ = "webhook_receiver"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=64)
    url: str = Field(max_length=2048)
    #: Comma-separated event types (models.webhooks.EVENT_TYPES).
    events: str = Field(default="", max_length=1024)
    enabled: bool = True

    def event_list(self) -> list[str]:
        return [e for e in self.events.split(",") if e]


class WebhookOutbox(SQLModel, table=True):
    __tablename__ = "webhook_outbox"
    __table_args__ = (UniqueConstraint("receiver", "event_id", name="uq_webhook_outbox_event"),
                      Index("ix_webhook_outbox_queue", "receiver", "status", "id"))
    id: int | None = Field(default=None, primary_key=True)
    receiver: str = Field(max_length=64)
    event_id: str = Field(max_length=64)
    event_type: str = Field(max_length=64)
    occurred_at: dt.datetime
    #: The exact body every attempt sends (models.webhooks.payload).
    body: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(default=PENDING, max_length=16)
    attempts: int = 0
    last_error: str = Field(default="", max_length=512)
    last_attempt_at: dt.datetime | None = None
    delivered_at: dt.datetime | None = None
    created_at: dt.datetime = Field(default_factory=utcnow)
