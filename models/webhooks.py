"""Outbound webhooks (issue 15): event types, receivers, secrets, the signed payload. Pure, no I/O.

Events follow the Standard Webhooks spec (standardwebhooks.com): the body is
`{"id", "type", "timestamp", "data"}` (compact JSON, UTF-8), signed with HMAC-SHA256 over
`<webhook-id>.<webhook-timestamp>.<body>` and sent with the headers `webhook-id` (the event id: the same
on every retry and replay, so a receiver deduplicates on it), `webhook-timestamp` (the attempt's Unix
time) and `webhook-signature` (`v1,<base64>`; one per secret during a rotation, space-separated).

Secrets never live in the inventory file or the database: a receiver's secrets are its entry in
EMAIL_ENGINE_WEBHOOK_SECRETS (`name=whsec_...`; several secrets separated by spaces sign with each, for
rotation). The database holds the receiver's name, URL and event types, and the outbox rows.

Privacy: `contact.*` events carry the recipient address. They are written to the outbox only for a
receiver subscribed to them, so a recipient address leaves the engine only to a configured receiver
(and stays in the outbox until it is pruned after `webhook_retention_days`).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from models import names
from models.dns_auth import INVALID, ITEMS, UNKNOWN
from models.mailwizz import Unsubscribe

#: Fleet events, then the contact feedback lead sources need to stop reusing bad addresses.
FLEET_EVENTS = ("ip.quarantined", "ip.standby_activated", "ip.retired", "warmup.phase_changed", "warmup.paused",
                "warmup.resumed", "failover.held", "failover.completed", "dns.failed", "blocklist.listed")
#: The contact events of the accounting ingest (contact_kind); contact.unsubscribe comes from MailWizz.
ACCOUNTING_CONTACT_EVENTS = ("contact.hard_bounce", "contact.complaint")
CONTACT_EVENTS = (*ACCOUNTING_CONTACT_EVENTS, "contact.unsubscribe")
EVENT_TYPES = (*FLEET_EVENTS, *CONTACT_EVENTS)
#: Sent only by `email-engine webhooks test`, to the receiver named, whatever it subscribes to.
TEST_EVENT = "webhook.test"

#: Bounce categories (PowerMTA User's Guide §11.6) that say the ADDRESS is bad, not the message or
#: the sender: only these become `contact.hard_bounce` (a policy or spam-related bounce is not the
#: lead's fault and must not burn it).
HARD_BOUNCE_CATEGORIES = frozenset({"bad-mailbox", "bad-domain", "inactive-mailbox"})

_EVENT_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}\Z")
_SECRET_RE = re.compile(r"^whsec_[A-Za-z0-9+/]+={0,2}\Z")


class WebhookConfigError(ValueError):
    """A receiver, secret or event that must not be used (the message never holds a secret)."""


def event_type(value: str) -> str:
    if value not in EVENT_TYPES:
        raise WebhookConfigError(f"{value!r} is not a webhook event type (one of: {', '.join(EVENT_TYPES)})")
    return value


def receiver_url(value: str) -> str:
    """https, or plain http to loopback only; no credentials, query or fragment (names.http_base_url)."""
    return names.http_base_url(value)


def event_id(value: str) -> str:
    """Event ids go into a header verbatim: a short token, no whitespace or control characters."""
    if not isinstance(value, str) or not _EVENT_ID_RE.match(value):
        raise WebhookConfigError(f"{value!r} is not a valid event id")
    return value


def stable_id(prefix: str, *parts: str) -> str:
    """A deterministic event id from what identifies the event (the same record read twice: one id)."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]
    return f"{prefix}_{digest}"


def check_secret(secret: str) -> bytes:
    """A Standard Webhooks secret: `whsec_` + base64 of 24 to 64 random bytes."""
    if not _SECRET_RE.match(secret):
        raise WebhookConfigError("a webhook secret is 'whsec_' followed by base64")
    try:
        key = base64.b64decode(secret[len("whsec_"):], validate=True)
    except (binascii.Error, ValueError):
        raise WebhookConfigError("a webhook secret is 'whsec_' followed by valid base64") from None
    if not 24 <= len(key) <= 64:
        raise WebhookConfigError(f"a webhook secret decodes to 24-64 bytes, not {len(key)}")
    return key


def parse_secrets(text: str) -> dict[str, list[str]]:
    """EMAIL_ENGINE_WEBHOOK_SECRETS: `name=whsec_A,name2=whsec_B whsec_OLD` or a JSON object mapping a
    receiver name to a secret string (several separated by spaces). Errors never echo a secret."""
    text = text.strip()
    if not text:
        return {}
    raw: dict[str, str] = {}
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            raise WebhookConfigError("EMAIL_ENGINE_WEBHOOK_SECRETS: not valid JSON") from None
        if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
            raise WebhookConfigError("EMAIL_ENGINE_WEBHOOK_SECRETS: JSON must map receiver names to secret strings")
        raw = dict(data)
    else:
        for n, part in enumerate((p.strip() for p in text.split(",")), 1):
            if not part:
                continue
            name, sep, value = part.partition("=")
            if not sep or not name.strip():
                raise WebhookConfigError(f"EMAIL_ENGINE_WEBHOOK_SECRETS: entry {n} is not name=secret")
            raw[name.strip()] = value
    out: dict[str, list[str]] = {}
    for name, value in raw.items():
        secrets = value.split()
        if not secrets:
            raise WebhookConfigError(f"EMAIL_ENGINE_WEBHOOK_SECRETS: receiver {name!r} has an empty secret")
        for s in secrets:
            try:
                check_secret(s)
            except WebhookConfigError as err:
                raise WebhookConfigError(f"EMAIL_ENGINE_WEBHOOK_SECRETS: receiver {name!r}: {err}") from None
        out[name] = secrets
    return out


@dataclass
class WebhookEvent:
    """One event as workflows and activities hand it to the outbox (a workflow contract: field names
    are part of recorded histories)."""

    id: str
    type: str
    #: When it happened (ISO 8601, UTC): workflow time for workflow events, the record's time otherwise.
    occurred_at: str
    data: dict[str, Any] = field(default_factory=dict)


def payload(ev: WebhookEvent) -> str:
    """The body every attempt sends (compact, sorted keys: the same bytes on every retry)."""
    return json.dumps({"id": ev.id, "type": ev.type, "timestamp": ev.occurred_at, "data": ev.data},
                      separators=(",", ":"), sort_keys=True, ensure_ascii=False, default=str)


def sign(secrets: list[str], msg_id: str, when: dt.datetime, body: str) -> str:
    """The `webhook-signature` header, by the `standardwebhooks` library (the spec's reference code):
    `v1,<base64 HMAC-SHA256>` per secret, space-separated."""
    from standardwebhooks import Webhook

    when = when.astimezone(dt.UTC)
    sigs = []
    for s in secrets:
        check_secret(s)  # the library decodes base64 leniently: refuse what it would silently mangle
        sigs.append(Webhook(s).sign(msg_id, when, body))
    return " ".join(sigs)


def headers(secrets: list[str], msg_id: str, when: dt.datetime, body: str) -> dict[str, str]:
    return {"webhook-id": event_id(msg_id), "webhook-timestamp": str(int(when.timestamp())),
            "webhook-signature": sign(secrets, msg_id, when, body), "content-type": "application/json",
            "user-agent": "email-engine-webhooks/1"}


def subscribed(events: list[str], etype: str) -> bool:
    return etype in events


def dns_failed(day: str, summary: dict[str, Any]) -> WebhookEvent | None:
    """The `dns.failed` event of one domain's check in the validation of `day` (a summary of
    activities.dns_checks), or None unless an authentication check is invalid (an unknown answer is not
    a failure). The id is the day, the domain, its IP and the failing checks: a retried batch or a second
    validation the same day with the same failures queues nothing again; a new failure is a new event."""
    items = summary.get("items") or {}
    failed = [n for n in ITEMS if (items.get(n) or {}).get("status") == INVALID]
    if not failed:
        return None
    tenant, domain, ip = str(summary["tenant"]), str(summary["domain"]), str(summary["ip"])
    return WebhookEvent(
        id=stable_id("dns", day, tenant, domain, ip, ",".join(failed)), type="dns.failed",
        occurred_at=str(summary["checked_at"]),
        data={"tenant": tenant, "domain": domain, "ip": ip, "day": day,
              "failed": [{"check": n, "reason": str(items[n].get("reason") or "")} for n in failed],
              "unknown": [{"check": n, "reason": str((items.get(n) or {}).get("reason") or "")}
                          for n in ITEMS if (items.get(n) or {}).get("status", UNKNOWN) == UNKNOWN],
              "previous_state": summary.get("previous_state")})


def contact_unsubscribe(tenant: str, list_uid: str, campaign_uid: str, u: Unsubscribe) -> WebhookEvent:
    """`contact.unsubscribe` from a MailWizz unsubscribe record. The id is the tenant, list and subscriber:
    the same unsubscribe read again (a retry, a second campaign of the list, a cursor reset) is one event."""
    return WebhookEvent(
        id=stable_id("unsubscribe", tenant, list_uid, u.subscriber_uid), type="contact.unsubscribe",
        occurred_at=u.at,
        data={"recipient": u.email, "tenant": tenant, "list_uid": list_uid, "subscriber_uid": u.subscriber_uid,
              "campaign_uid": campaign_uid, "reason": u.reason or None, "source": "mailwizz"})


def contact_kind(record_type: str, bounce_category: str) -> str | None:
    """The contact event an accounting record makes: complaints always; bounces only when the category
    says the address is bad (synchronous `b` or remote `rb`)."""
    if record_type == "f":
        return "contact.complaint"
    if record_type in ("b", "rb") and bounce_category.strip().lower() in HARD_BOUNCE_CATEGORIES:
        return "contact.hard_bounce"
    return None


# ----------------------------------------------------------------------------- workflow contract

DELIVERY_WORKFLOW = "WebhookDeliveryWorkflow"
#: Signal that tells a receiver's delivery workflow its outbox has new rows.
WAKE_SIGNAL = "wake"


def delivery_workflow_id(receiver: str) -> str:
    """One delivery workflow per receiver: `webhooks/<name>` (one at a time, so rows go in order)."""
    return f"webhooks/{names.token(receiver, 'webhook receiver name')}"


@dataclass
class DeliveryInput:
    receiver: str
    #: Events delivered by earlier runs of this chain (carried over continue-as-new; informational).
    delivered: int = 0
