"""The fleet at a glance from the inventory database (`email-engine status`, fleet gauges): small
read-only sections.

Each section reads what a feature persists; a section whose table does not exist yet says
"not available" instead of failing. The Temporal part (warmups, held failovers and guard steps) is
client/status.py.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import Counter, defaultdict
from typing import Any

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from activities.db import get_engine
from models.enums import SENDING_STATUSES, IpStatus
from models.tables import utcnow

log = logging.getLogger("email_engine.status")

NOT_AVAILABLE = {"available": False, "note": "not available (table not created yet)"}


def _aware(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _age_hours(at: dt.datetime | None, now: dt.datetime) -> float | None:
    return None if at is None else round((now - at).total_seconds() / 3600, 2)


def tenants_section(conn: Connection) -> dict[str, Any]:
    """Per tenant: IPs by status and today's capacity (sum of the quotas of sending IPs)."""
    out: dict[str, Any] = {}
    for name, status, n, quota in conn.execute(text(
            "SELECT t.name, i.status, COUNT(*), COALESCE(SUM(i.daily_quota), 0) FROM tenant t "
            "JOIN sending_ip i ON i.tenant_id = t.id GROUP BY t.name, i.status ORDER BY t.name")):
        t = out.setdefault(name, {"by_status": {s.value: 0 for s in IpStatus}, "total": 0, "capacity": 0,
                                  "sending": 0})
        t["by_status"][status] += n
        t["total"] += n
        if status in {s.value for s in SENDING_STATUSES}:
            t["capacity"] += int(quota)
            t["sending"] += n
    for (name,) in conn.execute(text("SELECT name FROM tenant ORDER BY name")):
        out.setdefault(name, {"by_status": {s.value: 0 for s in IpStatus}, "total": 0, "capacity": 0, "sending": 0})
    return dict(sorted(out.items()))


def inventory_warmups(conn: Connection) -> dict[str, dict[str, int]]:
    """Warming IPs by phase per tenant, as the inventory records them."""
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for name, phase, n in conn.execute(text(
            "SELECT t.name, i.warmup_phase, COUNT(*) FROM sending_ip i JOIN tenant t ON t.id = i.tenant_id "
            "WHERE i.status = 'warming' GROUP BY t.name, i.warmup_phase ORDER BY t.name, i.warmup_phase")):
        out[name][phase or "?"] = n
    return dict(out)


def listings_section(conn: Connection, tables: set[str], now: dt.datetime) -> dict[str, Any]:
    """Open blocklist listings per tenant, and the last blocklist scan with its broken zones."""
    open_by_tenant: dict[str, int] = {}
    for name, n in conn.execute(text(
            "SELECT t.name, COUNT(*) FROM blocklist_event e JOIN sending_ip i ON i.id = e.ip_id "
            "JOIN tenant t ON t.id = i.tenant_id WHERE e.cleared_at IS NULL GROUP BY t.name ORDER BY t.name")):
        open_by_tenant[name] = n
    out: dict[str, Any] = {"available": True, "open_listings": open_by_tenant}
    if "blocklist_scan_run" not in tables:
        out["last_scan"] = NOT_AVAILABLE
        return out
    row = conn.execute(text(
        "SELECT workflow_id, started_at, finished_at, ips_scanned, listed, inconclusive, broken_zones "
        "FROM blocklist_scan_run ORDER BY started_at DESC, id DESC LIMIT 1")).first()
    if row is None:
        out["last_scan"] = {"available": True, "never": True}
        return out
    broken = row.broken_zones
    if isinstance(broken, str):
        broken = json.loads(broken)
    finished = _aware(row.finished_at)
    out["last_scan"] = {
        "available": True, "workflow_id": row.workflow_id, "started_at": _aware(row.started_at),
        "finished_at": finished, "age_hours": _age_hours(finished or _aware(row.started_at), now),
        "ips_scanned": row.ips_scanned, "listed": row.listed, "inconclusive": row.inconclusive,
        "broken_zones": list(broken or []),
    }
    return out


def dns_section(conn: Connection, tables: set[str], now: dt.datetime, limit: int = 20) -> dict[str, Any]:
    """Domains whose latest DNS check did not pass (invalid or unknown), per tenant."""
    if "dns_check" not in tables:
        return dict(NOT_AVAILABLE)
    rows = conn.execute(text(
        "SELECT t.name AS tenant, d.name AS domain, c.overall, c.items, c.checked_at FROM dns_check c "
        "JOIN sending_domain d ON d.id = c.domain_id JOIN tenant t ON t.id = d.tenant_id "
        "WHERE c.id = (SELECT MAX(c2.id) FROM dns_check c2 WHERE c2.domain_id = c.domain_id) "
        "ORDER BY t.name, d.name")).all()
    failing = []
    by_tenant: dict[str, Counter[str]] = defaultdict(Counter)
    last: dt.datetime | None = None
    for r in rows:
        at = _aware(r.checked_at)
        last = at if last is None or (at and at > last) else last
        by_tenant[r.tenant][r.overall] += 1
        if r.overall in ("invalid", "unknown"):
            items = r.items if not isinstance(r.items, str) else json.loads(r.items)
            bad = sorted(k for k, v in (items or {}).items() if isinstance(v, dict) and v.get("status") == r.overall)
            failing.append({"tenant": r.tenant, "domain": r.domain, "overall": r.overall, "items": bad})
    return {"available": True, "checked_domains": len(rows), "last_check_age_hours": _age_hours(last, now),
            "by_tenant": {t: dict(c) for t, c in sorted(by_tenant.items())},
            "failures": len(failing), "failing": failing[:limit]}


def deploys_section(conn: Connection, tables: set[str], url: str | None) -> dict[str, Any]:
    """Per MTA host: the last deploy, and drift (the newest inventory renders differently from what
    was last deployed successfully)."""
    if "mta_deploy" not in tables:
        return dict(NOT_AVAILABLE)
    hosts: dict[str, Any] = {}
    for name, backend, enabled in conn.execute(text("SELECT name, backend, enabled FROM mta_host ORDER BY name")):
        last = conn.execute(text("SELECT ok, rolled_back, at, digest, message FROM mta_deploy WHERE host = :h "
                                 "ORDER BY at DESC, id DESC LIMIT 1"), {"h": name}).first()
        good = conn.execute(text("SELECT digest FROM mta_deploy WHERE host = :h AND ok ORDER BY at DESC, id DESC "
                                 "LIMIT 1"), {"h": name}).first()
        hosts[name] = {"backend": backend, "enabled": bool(enabled),
                       "last_deploy": None if last is None else {
                           "ok": bool(last.ok), "rolled_back": bool(last.rolled_back), "at": _aware(last.at),
                           "message": (last.message or "")[:200]},
                       "deployed_digest": good.digest if good else None, "drift": None}
    try:
        from activities.mta.base import backend_for
        from activities.snapshot import load_snapshot

        snap = load_snapshot(url)
        for name, h in hosts.items():
            view = snap.host(name)
            rendered = backend_for(view.backend).render(snap.for_host(name), config_dir=view.config_dir)
            h["drift"] = h["deployed_digest"] != rendered.digest
    except Exception as exc:  # the renderer is another feature's; its absence must not break status
        log.warning("deploy drift not computed: %s", exc)
    return {"available": True, "hosts": hosts}


def mailwizz_section(conn: Connection, tables: set[str], now: dt.datetime) -> dict[str, Any]:
    """Per tenant: when its MailWizz campaign figures were last read (the hourly sync)."""
    if "mailwizz_campaign_stat" not in tables:
        return dict(NOT_AVAILABLE)
    last = {name: _age_hours(_aware(at), now) for name, at in conn.execute(text(
        "SELECT t.name, MAX(m.read_at) FROM mailwizz_campaign_stat m JOIN tenant t ON t.id = m.tenant_id "
        "GROUP BY t.name ORDER BY t.name"))}
    return {"available": True, "last_read_age_hours": last}


def database_sections(url: str | None = None, now: dt.datetime | None = None) -> dict[str, Any]:
    now = now or utcnow()
    engine = get_engine(url)
    tables = set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        return {
            "generated_at": now,
            "tenants": tenants_section(conn),
            "inventory_warmups": inventory_warmups(conn),
            "blocklists": listings_section(conn, tables, now),
            "dns": dns_section(conn, tables, now),
            "deploys": deploys_section(conn, tables, url),
            "mailwizz": mailwizz_section(conn, tables, now),
        }
