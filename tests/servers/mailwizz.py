"""A MailWizz API test double on loopback.

MailWizz (commercial PHP) cannot run here, so this server implements the documented 2.x endpoints
and response shapes the engine uses (MailWizz 2.1.13 API controllers; ../shared/notes/esp.md §1,
"Endpoint list"): GET delivery-servers, campaigns, campaigns/{uid}, campaigns/{uid}/stats,
campaigns/{uid}/bounces, campaigns/{uid}/unsubscribes; `X-Api-Key` authentication; paths under `/api`
or `/api/index.php`.

Unsubscribes (the note: "GET `/unsubscribes` (since 1.9.15)"; its source, MW-SRC
apps/api/controllers/Campaign_unsubscribesController.php): the campaign's records newest first
(`ORDER BY t.id DESC`), pages of 10-50, each `{ip_address, user_agent, reason, note, date_added,
subscriber: {subscriber_uid, email}}`, `date_added` a UTC `YYYY-MM-DD HH:MM:SS`; the campaign stats'
`unsubscribes_count` counts the same rows. A campaign's `unsubscribes` here are kept in the order they
happened (id order; `unsubscribe_record` builds one). GET campaigns/{uid} (CampaignsController::actionView)
gives `data.record` with `list: {list_uid, name, subscribers_count}`.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

from tests.servers.http_double import HttpDouble

STAT_KEYS = ("processed_count", "delivery_success_count", "unique_opens_count", "unique_clicks_count",
             "unsubscribes_count", "complaints_count", "bounces_count", "hard_bounces_count", "soft_bounces_count")


@dataclass
class MailwizzState:
    api_key: str = "mw-secret-key"
    api_enabled: bool = True
    servers: list[dict[str, Any]] = field(default_factory=list)
    campaigns: dict[str, dict[str, Any]] = field(default_factory=dict)  # uid -> {name,status,stats,bounces,unsubs}
    fail_next: int = 0  # answer this many requests with 503 first
    delay: float = 0.0  # seconds before answering (timeouts)


#: The list of a campaign that names none.
LIST_UID = "lb0a1c2d3e4f5"


def unsubscribe_record(subscriber_uid: str, email: str, date_added: str, reason: str = "") -> dict[str, Any]:
    """One record as Campaign_unsubscribesController renders it."""
    return {"ip_address": "203.0.113.9", "user_agent": "Mozilla/5.0", "reason": reason,
            "note": "Unsubscribed via Web!", "date_added": date_added,
            "subscriber": {"subscriber_uid": subscriber_uid, "email": email}}


def _paginate(records: list[dict[str, Any]], query: dict[str, str]) -> dict[str, Any]:
    per_page = min(max(int(query.get("per_page", 10)), 10), 50)
    page = max(int(query.get("page", 1)), 1)
    if not records:
        return {"count": None, "total_pages": None, "current_page": None, "next_page": None,
                "prev_page": None, "records": []}
    total = math.ceil(len(records) / per_page)
    return {"count": str(len(records)), "total_pages": total, "current_page": page,
            "next_page": page + 1 if page < total else None, "prev_page": page - 1 if page > 1 else None,
            "records": records[(page - 1) * per_page: page * per_page]}


class MailwizzDouble(HttpDouble):
    def __init__(self, host: str, state: MailwizzState | None = None) -> None:
        self.state = state or MailwizzState()
        super().__init__(host, self._handle)

    @property
    def base_url(self) -> str:
        return f"{self.url}/api"

    def _handle(self, method: str, path: str, query: dict[str, str], headers: dict[str, str],
                params: dict[str, Any]) -> tuple[int, Any]:
        st = self.state
        if st.delay:
            time.sleep(st.delay)
        if st.fail_next > 0:
            st.fail_next -= 1
            return 503, b"<html>Service Unavailable</html>"
        m = re.match(r"^/api(?:/index\.php)?/(.*)$", path)
        if not m:
            return 404, b"<html>Not Found</html>"
        key = headers.get("x-api-key") or headers.get("x-mw-public-key")
        if key != st.api_key:
            return 401, {"status": "error", "error": "Invalid API request signature."}
        if not st.api_enabled:
            return 403, {"status": "error", "error": "You are not allowed to use the API."}
        if method != "GET":
            return 400, {"status": "error", "error": "Only GET requests allowed for this endpoint."}
        route = m.group(1).rstrip("/")
        if route == "delivery-servers":
            servers = sorted(st.servers, key=lambda s: s["name"])
            return 200, {"status": "success", "data": _paginate(servers, query)}
        if route == "campaigns":
            recs = [{"campaign_uid": uid, "type": "regular", "name": c["name"], "status": c["status"], "group": []}
                    for uid, c in reversed(st.campaigns.items())]
            return 200, {"status": "success", "data": _paginate(recs, query)}
        m2 = re.match(r"^campaigns/([a-z0-9]+)(?:/(stats|bounces|unsubscribes))?$", route)
        if m2:
            uid = m2.group(1)
            c = st.campaigns.get(uid)
            if c is None:
                return 404, {"status": "error", "error": "The campaign does not exist."}
            if m2.group(2) is None:
                record = {"campaign_uid": uid, "name": c["name"], "type": "regular", "status": c["status"],
                          "date_added": "2026-11-01 08:00:00", "send_at": "2026-11-01 09:00:00",
                          "list": {"list_uid": c.get("list_uid", LIST_UID), "name": "Leads",
                                   "subscribers_count": 1000}, "segment": [], "group": []}
                return 200, {"status": "success", "data": {"record": record}}
            if m2.group(2) == "stats":
                data = {"campaign_status": c["status"], "subscribers_count": 1000}
                data.update({k: c["stats"].get(k, 0) for k in STAT_KEYS})
                if "unsubscribes" in c:
                    data["unsubscribes_count"] = len(c["unsubscribes"])
                data["opens_count"] = data["unique_opens_count"] * 2  # total opens count repeats
                return 200, {"status": "success", "data": data}
            if m2.group(2) == "unsubscribes":
                return 200, {"status": "success", "data": _paginate(list(reversed(c.get("unsubscribes", []))),
                                                                    query)}
            recs = c.get(m2.group(2), [])
            return 200, {"status": "success", "data": _paginate(recs, query)}
        return 404, {"status": "error", "error": "Page not found."}
