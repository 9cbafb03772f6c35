"""The one alerts activity every workflow uses. It never fails the workflow that sends it.

Today: a structured log line. The Telegram integration plugs in here (formatting, dedup, rate limit).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from temporalio import activity

log = logging.getLogger("email_engine.alerts")


@dataclass(frozen=True)
class AlertAction:
    """A button for ChatOps: sends `name` (a signal or update) to `workflow_id`."""

    label: str
    workflow_id: str
    name: str
    kind: str = "signal"  # "signal" | "update"
    arg: str | None = None


@dataclass(frozen=True)
class Alert:
    key: str  # deduplication key: the same key within the dedup window is sent once
    title: str
    body: str = ""
    severity: str = "info"  # info | warning | critical
    actions: list[AlertAction] = field(default_factory=list)


@activity.defn(name="send_alert")
async def send_alert(alert: Alert) -> bool:
    """Deliver an alert; returns whether it went out (False is logged, never raised)."""
    level = {"critical": logging.ERROR, "warning": logging.WARNING}.get(alert.severity, logging.INFO)
    log.log(level, "[%s] %s: %s", alert.key, alert.title, alert.body)
    return True
