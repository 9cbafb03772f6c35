"""MailWizz API (2.x) responses and the rules around them; pure (no I/O).

Response shapes follow MailWizz 2.1.13's API controllers (see ../shared/notes/esp.md): every answer
is `{"status": "success"|"error", "data": {...}}` or `{"status": "error", "error": "..."}`; listings
have `data.count/total_pages/current_page/next_page/prev_page/records`. Counts may come as strings.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from typing import Any

#: Delivery-server statuses that send (MailWizz marks a server busy sending as "in-use").
SENDING_SERVER_STATUSES = frozenset({"active", "in-use"})


class MailwizzError(Exception):
    """A MailWizz API call failed; `status` is the HTTP status (0: no answer)."""

    retryable = False

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class MailwizzAuthError(MailwizzError):
    """401: the API key is wrong or missing."""


class MailwizzForbidden(MailwizzError):
    """403: the key is valid but its customer may not use the API (or the verb is blocked)."""


class MailwizzNotFound(MailwizzError):
    """404: no such campaign/server for this key's customer, or a wrong base URL."""


class MailwizzUnavailable(MailwizzError):
    """5xx, timeouts, connection errors: retried with backoff, then raised."""

    retryable = True


class MailwizzProtocolError(MailwizzError):
    """The answer is not the documented JSON shape."""


def parse_keys(text: str) -> dict[str, str]:
    """EMAIL_ENGINE_MAILWIZZ_KEYS: `tenant=key,tenant2=key2` or a JSON object; never echoes a key."""
    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            raise ValueError("EMAIL_ENGINE_MAILWIZZ_KEYS: not valid JSON") from None
        if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) and v
                                                 for k, v in data.items()):
            raise ValueError("EMAIL_ENGINE_MAILWIZZ_KEYS: JSON must map tenant names to non-empty key strings")
        return dict(data)
    out: dict[str, str] = {}
    for n, raw in enumerate((p.strip() for p in text.split(",")), 1):
        if not raw:
            continue
        tenant, sep, key = raw.partition("=")
        if not sep or not tenant.strip() or not key.strip():
            raise ValueError(f"EMAIL_ENGINE_MAILWIZZ_KEYS: entry {n} is not tenant=key")
        out[tenant.strip()] = key.strip()
    return out


_CAMPAIGN_UID = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")


def campaign_uid(value: object) -> str:
    """A MailWizz campaign uid as it may go into a URL path (`campaigns/<uid>/stats`): letters,
    digits, '_' and '-' only. The uid comes from the remote server, so it is never trusted."""
    if not isinstance(value, str) or not _CAMPAIGN_UID.match(value):
        text = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
        raise ValueError(f"MailWizz campaign uid {text} is not letters, digits, '_', '-'")
    return value


def endpoint(base_url: str, path: str) -> str:
    """`…/api` or `…/api/index.php` (installs without clean URLs) joined with an endpoint path."""
    return base_url.rstrip("/") + "/" + path.lstrip("/")


def _int(value: Any) -> int:
    if value is None or value == "":
        return 0
    try:
        return int(float(value))
    except (TypeError, ValueError):
        raise MailwizzProtocolError(f"expected a number, got {value!r}") from None


def data_of(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict) or payload.get("status") != "success":
        error = payload.get("error") if isinstance(payload, dict) else None
        raise MailwizzProtocolError(f"MailWizz answered without success: {error or payload!r}"[:300])
    data = payload.get("data")
    if not isinstance(data, dict):
        raise MailwizzProtocolError("MailWizz answer has no data object")
    return data


@dataclass(frozen=True)
class Page:
    records: list[dict[str, Any]]
    count: int
    next_page: int | None


def parse_page(payload: Any) -> Page:
    data = data_of(payload)
    records = data.get("records") or []
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise MailwizzProtocolError("data.records is not a list of objects")
    nxt = data.get("next_page")
    return Page(records=records, count=_int(data.get("count")), next_page=_int(nxt) if nxt else None)


@dataclass(frozen=True)
class DeliveryServer:
    server_id: int
    type: str
    name: str
    hostname: str
    status: str

    @property
    def sending(self) -> bool:
        return self.status in SENDING_SERVER_STATUSES


def parse_delivery_server(record: dict[str, Any]) -> DeliveryServer:
    try:
        return DeliveryServer(server_id=_int(record["server_id"]), type=str(record.get("type") or ""),
                              name=str(record.get("name") or ""), hostname=str(record["hostname"]),
                              status=str(record["status"]))
    except KeyError as exc:
        raise MailwizzProtocolError(f"delivery server record lacks {exc.args[0]!r}") from None


@dataclass(frozen=True)
class ServerCheck:
    ok: bool
    message: str
    server: DeliveryServer | None = None


def check_mta_server(servers: list[DeliveryServer], mta_names: set[str]) -> ServerCheck:
    """The tenant's MTA must appear as a delivery server (hostname = the MTA host's address or name)
    with a sending status ("active", or "in-use" while a campaign sends)."""
    wanted = {n.lower() for n in mta_names if n}
    matches = [s for s in servers if s.hostname.lower() in wanted]
    if not matches:
        return ServerCheck(False, f"no delivery server points at the MTA ({', '.join(sorted(wanted))}); "
                                  f"MailWizz lists {len(servers)} server(s)")
    good = [s for s in matches if s.sending]
    if good:
        s = good[0]
        return ServerCheck(True, f"delivery server #{s.server_id} {s.name!r} ({s.hostname}) is {s.status}", s)
    s = matches[0]
    return ServerCheck(False, f"delivery server #{s.server_id} {s.name!r} ({s.hostname}) is {s.status}, "
                              "not active", s)


@dataclass(frozen=True)
class CampaignCounters:
    processed: int = 0
    delivered: int = 0
    opens: int = 0
    clicks: int = 0
    unsubscribes: int = 0
    complaints: int = 0
    bounces: int = 0
    hard_bounces: int = 0
    soft_bounces: int = 0

    def minus(self, older: CampaignCounters) -> CampaignCounters:
        """Growth since `older`; a counter that shrank (MailWizz pruned logs) counts as no growth."""
        return CampaignCounters(**{k: max(getattr(self, k) - getattr(older, k), 0) for k in FIELDS})

    def plus(self, other: CampaignCounters) -> CampaignCounters:
        return CampaignCounters(**{k: getattr(self, k) + getattr(other, k) for k in FIELDS})


FIELDS = ("processed", "delivered", "opens", "clicks", "unsubscribes", "complaints", "bounces",
          "hard_bounces", "soft_bounces")


def parse_stats(payload: Any) -> CampaignCounters:
    """GET campaigns/{uid}/stats. Opens and clicks are the unique counts (one per subscriber)."""
    d = data_of(payload)
    return CampaignCounters(
        processed=_int(d.get("processed_count")), delivered=_int(d.get("delivery_success_count")),
        opens=_int(d.get("unique_opens_count")), clicks=_int(d.get("unique_clicks_count")),
        unsubscribes=_int(d.get("unsubscribes_count")), complaints=_int(d.get("complaints_count")),
        bounces=_int(d.get("bounces_count")), hard_bounces=_int(d.get("hard_bounces_count")),
        soft_bounces=_int(d.get("soft_bounces_count")),
    )


@dataclass
class Attribution:
    opens: dict[str, int] = field(default_factory=dict)
    clicks: dict[str, int] = field(default_factory=dict)
    unattributed: bool = False


def _split(total: int, sent: dict[str, int]) -> dict[str, int]:
    """Largest-remainder split of `total` in proportion to `sent` (deterministic, sums to total)."""
    base = sum(sent.values())
    shares = {ip: total * n // base for ip, n in sent.items()}
    rest = total - sum(shares.values())
    order = sorted(sent, key=lambda ip: (-(total * sent[ip] % base), ip))
    for ip in order[:rest]:
        shares[ip] += 1
    return shares


def attribute(delta: CampaignCounters, sent_by_ip: dict[str, int]) -> Attribution:
    """Spread a tenant's day of opens and clicks over its IPs by what each IP sent that day.

    MailWizz reports per campaign, not per IP: a tenant's campaigns leave through the tenant's MTA
    pool, so the only honest per-IP figure is a share in proportion to the IP's own sent count (from
    the MTA's accounting). IPs that sent nothing get nothing; with no per-IP sent figures at all the
    day stays unattributed (tenant totals only) rather than guessed.
    """
    sent = {ip: n for ip, n in sent_by_ip.items() if n > 0}
    if not sent:
        return Attribution(unattributed=True)
    return Attribution(opens=_split(delta.opens, sent), clicks=_split(delta.clicks, sent))


# --- unsubscribes (contact.unsubscribe webhooks) ----------------------------------------------------
#
# GET campaigns/{uid}/unsubscribes (since 1.9.15; notes/esp.md §1 "Endpoint list"): the campaign's
# unsubscribe records, newest first (MW-SRC Campaign_unsubscribesController: `ORDER BY t.id DESC`, pages
# of 10-50), each {ip_address, user_agent, reason, note, date_added, subscriber: {subscriber_uid, email}};
# `date_added` is the database's DATETIME, in UTC (MW-SRC apps/common/config/main.php: the connection
# runs `SET time_zone="+00:00"`). The campaign's list is in GET campaigns/{uid} (`data.record.list.list_uid`,
# CampaignsController::actionView). A subscriber belongs to one list: list uid + subscriber uid name it.

_EMAIL = re.compile(r"^[^\s@]{1,64}@[^\s@]{1,255}\Z")


def list_uid(payload: Any) -> str:
    """The list uid of GET campaigns/{uid} (checked like a campaign uid: it becomes part of an event id)."""
    record = data_of(payload).get("record")
    lst = record.get("list") if isinstance(record, dict) else None
    uid = lst.get("list_uid") if isinstance(lst, dict) else None
    try:
        return campaign_uid(uid)
    except ValueError:
        raise MailwizzProtocolError(f"campaign without a valid list uid: {uid!r}"[:200]) from None


@dataclass(frozen=True)
class Unsubscribe:
    subscriber_uid: str
    email: str
    #: ISO 8601 UTC
    at: str
    reason: str = ""

    @property
    def marker(self) -> str:
        """Names the record within its campaign (the cursor remembers the newest one read)."""
        return f"{self.subscriber_uid}@{self.at}"


def parse_unsubscribe(record: dict[str, Any]) -> Unsubscribe:
    """One record of campaigns/{uid}/unsubscribes; MailwizzProtocolError when it is not usable."""
    sub = record.get("subscriber")
    if not isinstance(sub, dict):
        raise MailwizzProtocolError("unsubscribe record without a subscriber")
    try:
        uid = campaign_uid(sub.get("subscriber_uid"))
    except ValueError as exc:
        raise MailwizzProtocolError(str(exc).replace("campaign uid", "subscriber uid")) from None
    email = sub.get("email")
    if not isinstance(email, str) or not _EMAIL.match(email.strip()):
        raise MailwizzProtocolError(f"unsubscribe record of {uid}: not an email address")
    try:
        at = dt.datetime.fromisoformat(str(record.get("date_added")))
    except ValueError:
        raise MailwizzProtocolError(f"unsubscribe record of {uid}: date_added {record.get('date_added')!r}"[:200]
                                    ) from None
    at = at.replace(tzinfo=dt.UTC) if at.tzinfo is None else at.astimezone(dt.UTC)
    reason = record.get("reason")
    return Unsubscribe(uid, email.strip(), at.isoformat(), reason[:500] if isinstance(reason, str) else "")


def unread(records: list[Unsubscribe], marker: str, new: int) -> tuple[list[Unsubscribe], bool]:
    """The records (newest first, as read so far) that come before the cursor, and whether the reading
    is complete: up to the record named `marker` when there is one, else the newest `new` records (a
    cursor set by count only). A marker not found means records were deleted: all of them are unread
    (their event ids are stable, so ones already sent are recognised)."""
    if marker:
        for i, u in enumerate(records):
            if u.marker == marker:
                return records[:i], True
        return records, False
    return records[:max(new, 0)], len(records) >= new
