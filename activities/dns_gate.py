"""The DNS gate: an IP may move into warming only if its domain's latest DNS check passes.

Contract (used by the warmup and failover features):
- `dns_gate_failures(address, url=None) -> list[str]`: the failing items of the latest persisted
  check of the IP's domain; an empty list means the gate passes. No check yet ->
  ["no DNS check recorded yet"]. `warn` passes; `invalid` and `unknown` fail (an unverifiable
  record is not a verified one). A check older than EMAIL_ENGINE_DNS_GATE_MAX_AGE_HOURS, or made
  while the domain pointed at another IP, fails too.
- `record_dns_override(address, reason, actor, url=None)`: the audit row for an operator letting
  the IP in anyway (`--override-dns "reason"`); it records the failures overridden.
- activity "check_dns_gate" (address -> list[str]).

Resuming the workflow of an IP the inventory already records as warming is not a move into
warming: callers do not consult the gate then.
"""

from __future__ import annotations

import datetime as dt

from sqlmodel import Session, col, select
from temporalio import activity

from activities.db import session_scope
from activities.keepalive import heartbeating
from models.dns_auth import gate_failures
from models.dns_tables import DnsCheck, DnsOverride
from models.names import ip_address
from models.settings import get_settings
from models.tables import SendingDomain, SendingIp


def _lookup(session: Session, address: str) -> tuple[SendingIp | None, SendingDomain | None, DnsCheck | None]:
    ip = session.exec(select(SendingIp).where(SendingIp.address == address)).first()
    if ip is None:
        return None, None, None
    domain = session.exec(select(SendingDomain).where(SendingDomain.ip_id == ip.id)).first()
    if domain is None:
        return ip, None, None
    check = session.exec(
        select(DnsCheck).where(DnsCheck.domain_id == domain.id)
        .order_by(col(DnsCheck.checked_at).desc(), col(DnsCheck.id).desc())
    ).first()
    return ip, domain, check


def _failures(ip: SendingIp | None, domain: SendingDomain | None, check: DnsCheck | None,
              address: str) -> list[str]:
    if ip is None:
        return [f"IP {address} is not in the inventory"]
    if domain is None:
        return [f"IP {address} has no sending domain"]
    if check is None:
        return ["no DNS check recorded yet"]
    max_age_h = get_settings().dns_gate_max_age_hours
    return gate_failures(
        check.items, checked_at=check.checked_at, now=dt.datetime.now(dt.UTC),
        checked_ip=check.ip_address, current_ip=ip.address,
        max_age=dt.timedelta(hours=max_age_h) if max_age_h > 0 else None,
    )


def dns_gate_failures(address: str, url: str | None = None) -> list[str]:
    """Failing DNS items that keep `address` out of warming (empty: the gate passes)."""
    address = ip_address(address)
    with session_scope(url) as session:
        ip, domain, check = _lookup(session, address)
        return _failures(ip, domain, check, address)


def record_dns_override(address: str, reason: str, actor: str, url: str | None = None) -> None:
    """Audit an operator's override of the DNS gate for `address` (reason and actor required)."""
    address = ip_address(address)
    reason, actor = (reason or "").strip(), (actor or "").strip()
    if not reason:
        raise ValueError("a DNS override needs a reason")
    if not actor:
        raise ValueError("a DNS override needs an actor")
    with session_scope(url) as session:
        ip, domain, check = _lookup(session, address)
        if ip is None or ip.id is None:
            raise ValueError(f"IP {address} is not in the inventory")
        failures = _failures(ip, domain, check, address)
        session.add(DnsOverride(
            ip_id=ip.id, domain_id=domain.id if domain else None, dns_check_id=check.id if check else None,
            failures="; ".join(failures)[:4096] or "(gate passed)", reason=reason[:1024], actor=actor[:255],
        ))


@activity.defn(name="check_dns_gate")
@heartbeating
def check_dns_gate(address: str) -> list[str]:
    """Activity form of dns_gate_failures on the configured database."""
    return dns_gate_failures(address)
