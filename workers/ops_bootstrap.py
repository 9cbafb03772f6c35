"""Run-command hook of the operators' side: where to look (Web UI filters, status, the bot).

The hourly MailWizz sync Schedule is installed with the others (client/schedules.py)."""

from __future__ import annotations

import urllib.parse

from temporalio.client import Client

from models.settings import Settings


def web_ui_url(settings: Settings, query: str) -> str:
    host = settings.temporal_address.rpartition(":")[0] or "127.0.0.1"
    return (f"http://{host}:{settings.temporal_ui_port}/namespaces/{settings.temporal_namespace}/workflows"
            f"?query={urllib.parse.quote(query)}")


async def install_ops(client: Client, settings: Settings) -> list[str]:
    """Returns what the run command prints about the operators' tools."""
    example = web_ui_url(settings, 'Tenant="client-2" AND WarmupPhase="week_3"')
    return [
        "MailWizz: schedule 'mailwizz-sync' contacts only tenants with a key in EMAIL_ENGINE_MAILWIZZ_KEYS",
        "Web UI, filter by search attributes (Tenant, IpAddress, WarmupPhase, IpStatus), e.g. "
        + example,
        "fleet at a glance: `email-engine status`; Telegram ChatOps: `email-engine bot`",
    ]
