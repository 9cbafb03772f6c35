"""DNS I/O for the sending-domain authentication checks, their persistence, and the activities.

Every query goes to OUR resolvers (EMAIL_ENGINE_DNS_RESOLVERS, `host[:port]`, default: the system
resolver; never a public one). checkdmarc does the SPF and DMARC parsing and lookup counting; it is
handed a dnspython resolver bound to those servers (`resolver=`: checkdmarc then uses it as-is)
that records every resolver failure, because checkdmarc folds timeouts into "record not found".
Any resolver failure (timeout, SERVFAIL/REFUSED -> NoNameservers, socket error) during an item
makes that item `unknown`, never valid or invalid. The evaluation itself is pure: models/dns_auth.py.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver
import dns.reversename
from sqlmodel import col, func, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.db import session_scope
from activities.keepalive import heartbeating
from activities.webhooks import queue_in
from models import dns_auth
from models.dns_auth import INVALID, ITEMS, UNKNOWN, ItemResult
from models.dns_contracts import DnsBatchRequest, DnsBatchResult, DnsSpan
from models.dns_progress import changed
from models.dns_tables import DnsCheck
from models.names import domain as valid_domain
from models.names import tenant as valid_tenant
from models.settings import Settings, get_settings
from models.tables import SendingDomain, SendingIp, Tenant
from models.webhooks import dns_failed

#: Resolver failures: the answer is unknown, not negative.
RESOLVER_ERRORS: tuple[type[BaseException], ...] = (
    dns.exception.Timeout, dns.resolver.NoNameservers, dns.resolver.NoResolverConfiguration, OSError, EOFError,
)
_checkdmarc_lock = threading.Lock()


@dataclass(frozen=True)
class DnsTarget:
    domain_id: int
    domain: str
    tenant: str
    ip: str
    helo: str
    selector: str
    key_path: str


@dataclass
class DomainCheck:
    target: DnsTarget
    items: dict[str, ItemResult]
    checked_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    @property
    def overall(self) -> str:
        return dns_auth.worst([i.status for i in self.items.values()])

    def items_dict(self) -> dict[str, Any]:
        return {name: item.as_dict() for name, item in self.items.items()}


class RecordingResolver(dns.resolver.Resolver):
    """A dnspython resolver on our servers that remembers every resolver failure it raised."""

    def __init__(self, servers: list[tuple[str, int]], timeout: float) -> None:
        super().__init__(configure=not servers)
        if servers:
            self.nameservers = [dns.nameserver.Do53Nameserver(a, p) for a, p in servers]
        self.timeout = timeout
        self.lifetime = timeout * max(1, len(self.nameservers))
        self.cache = None
        self.failures: list[str] = []

    def resolve(self, qname: Any, rdtype: Any = dns.rdatatype.A, *args: Any, **kwargs: Any) -> dns.resolver.Answer:
        try:
            return super().resolve(qname, rdtype, *args, **kwargs)
        except RESOLVER_ERRORS as exc:
            self.failures.append(f"{qname} {dns.rdatatype.to_text(dns.rdatatype.RdataType.make(rdtype))}: "
                                 f"{type(exc).__name__}: {exc}"[:300])
            raise


class _Unknown(Exception):
    """An item cannot be decided: a resolver failure."""


class Checker:
    """Runs the four checks for targets against one resolver configuration."""

    def __init__(self, servers: list[tuple[str, int]], timeout: float) -> None:
        self.servers = servers
        self.timeout = timeout

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Checker:
        settings = settings or get_settings()
        return cls(settings.resolvers(), settings.dns_timeout)

    def resolver(self) -> RecordingResolver:
        return RecordingResolver(self.servers, self.timeout)

    def _query(self, res: RecordingResolver, name: str, rdtype: str) -> list[Any]:
        """Answers; [] for NXDOMAIN / no data; _Unknown for a resolver failure."""
        try:
            return list(res.resolve(name, rdtype, search=False))
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except RESOLVER_ERRORS as exc:
            raise _Unknown(f"resolver error on {name} {rdtype}: {type(exc).__name__}") from exc

    @staticmethod
    def _txt(answers: list[Any]) -> list[str]:
        return [b"".join(r.strings).decode("utf-8", "replace") for r in answers]

    # ---- items

    def spf(self, t: DnsTarget) -> ItemResult:
        import checkdmarc.utils
        from checkdmarc.spf import check_spf

        res = self.resolver()
        self._query(res, t.domain, "TXT")  # fast path to `unknown` when the resolver is down
        with _checkdmarc_lock:
            checkdmarc.utils.DNS_CACHE.clear()  # keyed without the nameservers: never reuse across runs
        result = check_spf(t.domain, resolver=res, timeout=self.timeout)
        if res.failures:
            raise _Unknown(f"resolver error during SPF evaluation: {res.failures[0]}")
        parsed = result.get("parsed") or {}
        rdtype = "AAAA" if ipaddress.ip_address(t.ip).version == 6 else "A"
        mx_addresses = {h: [r.to_text() for r in self._query(res, h, rdtype)]
                        for h in sorted(dns_auth.spf_mx_hosts(parsed))}
        return dns_auth.evaluate_spf(result, t.ip, mx_addresses)

    def dkim(self, t: DnsTarget) -> ItemResult:
        name = f"{t.selector}._domainkey.{t.domain}"
        records = self._txt(self._query(self.resolver(), name, "TXT"))
        try:
            pem: bytes | None = Path(t.key_path).read_bytes()
            problem = None
        except OSError as exc:
            pem, problem = None, f"private key not readable at {t.key_path} ({exc.strerror})"
        result = dns_auth.evaluate_dkim(records, pem, problem)
        return ItemResult(result.status, f"{name}: {result.reason}", result.details)

    def dmarc(self, t: DnsTarget) -> ItemResult:
        import checkdmarc.utils
        from checkdmarc.dmarc import check_dmarc

        res = self.resolver()
        self._query(res, f"_dmarc.{t.domain}", "TXT")
        with _checkdmarc_lock:
            checkdmarc.utils.DNS_CACHE.clear()
        result: dict[str, Any] = dict(check_dmarc(t.domain, resolver=res, timeout=self.timeout))
        org = checkdmarc.utils.get_base_domain(t.domain)
        if not result.get("record") and org and org != t.domain:
            result = dict(check_dmarc(org, resolver=res, timeout=self.timeout))
        if res.failures:
            raise _Unknown(f"resolver error during DMARC evaluation: {res.failures[0]}")
        return dns_auth.evaluate_dmarc(result, t.domain)

    def ptr(self, t: DnsTarget) -> ItemResult:
        res = self.resolver()
        names = [r.target.to_text() for r in self._query(res, dns.reversename.from_address(t.ip).to_text(), "PTR")]
        rdtype = "AAAA" if ipaddress.ip_address(t.ip).version == 6 else "A"
        forward = {n.rstrip(".").lower(): [r.to_text() for r in self._query(res, n, rdtype)] for n in names}
        return dns_auth.evaluate_ptr(t.ip, t.helo, names, forward)

    def check(self, t: DnsTarget) -> DomainCheck:
        items: dict[str, ItemResult] = {}
        for name in ITEMS:
            try:
                items[name] = getattr(self, name)(t)
            except _Unknown as exc:
                items[name] = ItemResult(UNKNOWN, str(exc))
        return DomainCheck(t, items)

    def check_many(self, targets: list[DnsTarget], concurrency: int,
                   on_done: Callable[[DomainCheck], None] | None = None) -> list[DomainCheck]:
        """Checks in parallel (bounded); results in the targets' order."""
        out: dict[int, DomainCheck] = {}
        with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="dns-check") as pool:
            futures = {pool.submit(self.check, t): i for i, t in enumerate(targets)}
            for fut in as_completed(futures):
                result = fut.result()
                out[futures[fut]] = result
                if on_done:
                    on_done(result)
        return [out[i] for i in range(len(targets))]


# --------------------------------------------------------------------------- database

def load_targets(url: str | None = None, tenant: str | None = None, domain: str | None = None) -> list[DnsTarget]:
    """Every sending domain (of one tenant, or one domain) with its IP; ValueError for unknown names."""
    if tenant is not None:
        tenant = valid_tenant(tenant)
    if domain is not None:
        domain = valid_domain(domain)
    with session_scope(url) as session:
        q = (select(SendingDomain, SendingIp, Tenant)
             .join(SendingIp, col(SendingIp.id) == SendingDomain.ip_id)
             .join(Tenant, col(Tenant.id) == SendingDomain.tenant_id)
             .order_by(col(Tenant.name), col(SendingDomain.name)))
        if tenant is not None:
            if session.exec(select(Tenant).where(Tenant.name == tenant)).first() is None:
                raise ValueError(f"no tenant named {tenant!r}")
            q = q.where(Tenant.name == tenant)
        if domain is not None:
            q = q.where(SendingDomain.name == domain)
        rows = session.exec(q).all()
        if domain is not None and not rows:
            raise ValueError(f"no sending domain named {domain!r}")
        return [DnsTarget(domain_id=d.id or 0, domain=d.name, tenant=tn.name, ip=ip.address, helo=ip.hostname,
                          selector=d.dkim_selector, key_path=d.dkim_key_path) for d, ip, tn in rows]


def _tenant_filter(session: Any, tenant: str | None) -> str | None:
    """The validated tenant name; ValueError when it names no tenant."""
    if tenant is None:
        return None
    tenant = valid_tenant(tenant)
    if session.exec(select(Tenant).where(Tenant.name == tenant)).first() is None:
        raise ValueError(f"no tenant named {tenant!r}")
    return tenant


def target_span(url: str | None = None, tenant: str | None = None) -> DnsSpan:
    """How many sending domains a validation checks and the highest id among them."""
    with session_scope(url) as session:
        tenant = _tenant_filter(session, tenant)
        q = select(func.count(col(SendingDomain.id)), func.max(col(SendingDomain.id))).join(
            Tenant, col(Tenant.id) == SendingDomain.tenant_id)
        if tenant is not None:
            q = q.where(Tenant.name == tenant)
        total, last = session.exec(q).one()
        return DnsSpan(total=int(total or 0), last_id=int(last or 0))


def load_page(url: str | None, tenant: str | None, after_id: int, through_id: int, limit: int) -> list[DnsTarget]:
    """Up to `limit` targets with after_id < domain id <= through_id, by id (a keyset page: no offset)."""
    with session_scope(url) as session:
        tenant = _tenant_filter(session, tenant)
        q = (select(SendingDomain, SendingIp, Tenant)
             .join(SendingIp, col(SendingIp.id) == SendingDomain.ip_id)
             .join(Tenant, col(Tenant.id) == SendingDomain.tenant_id)
             .where(col(SendingDomain.id) > after_id, col(SendingDomain.id) <= through_id)
             .order_by(col(SendingDomain.id)).limit(limit))
        if tenant is not None:
            q = q.where(Tenant.name == tenant)
        return [DnsTarget(domain_id=d.id or 0, domain=d.name, tenant=tn.name, ip=ip.address, helo=ip.hostname,
                          selector=d.dkim_selector, key_path=d.dkim_key_path) for d, ip, tn in session.exec(q)]


def state_of(items: dict[str, Any]) -> str:
    """pass (all four valid/warn) | fail (something invalid) | unknown (otherwise)."""
    statuses = [(items.get(n) or {}).get("status", UNKNOWN) for n in ITEMS]
    if all(s in dns_auth.PASSING for s in statuses):
        return "pass"
    return "fail" if INVALID in statuses else "unknown"


def persist(result: DomainCheck, url: str | None = None, webhook_day: str | None = None) -> dict[str, Any]:
    """Store one check (history row + the domain's flags); returns a summary with the state change.

    `webhook_day` (the validation's day): a failing check also queues its `dns.failed` webhook event in
    the same transaction (models.webhooks.dns_failed), so the check and its event are recorded together
    or not at all; the summary's "webhooks" then says whether a receiver got it."""
    items = result.items_dict()
    with session_scope(url) as session:
        domain = session.get(SendingDomain, result.target.domain_id)
        if domain is None:
            raise ValueError(f"sending domain {result.target.domain} disappeared")
        previous = session.exec(
            select(DnsCheck).where(DnsCheck.domain_id == domain.id)
            .order_by(col(DnsCheck.checked_at).desc(), col(DnsCheck.id).desc())
        ).first()
        session.add(DnsCheck(domain_id=result.target.domain_id, ip_address=result.target.ip,
                             checked_at=result.checked_at, overall=result.overall, items=items))
        domain.spf_valid = dns_auth.flag(result.items["spf"].status)
        domain.dkim_valid = dns_auth.flag(result.items["dkim"].status)
        domain.dmarc_valid = dns_auth.flag(result.items["dmarc"].status)
        domain.ptr_valid = dns_auth.flag(result.items["ptr"].status)
        domain.last_check_at = result.checked_at
        session.add(domain)
        out = summary(result, state_of(previous.items) if previous else None)
        if webhook_day:
            event = dns_failed(webhook_day, out)
            out["webhooks"] = bool(event and queue_in(session, [event]))
    return out


def summary(result: DomainCheck, previous_state: str | None) -> dict[str, Any]:
    t = result.target
    return {
        "domain": t.domain, "tenant": t.tenant, "ip": t.ip, "overall": result.overall,
        "checked_at": result.checked_at.isoformat(), "previous_state": previous_state,
        "state": state_of(result.items_dict()),
        "items": result.items_dict(),
        "failing": [f"{n.upper()} {i.status}: {i.reason}" for n, i in result.items.items()
                    if i.status not in dns_auth.PASSING],
    }


# --------------------------------------------------------------------------- activities

@activity.defn(name="list_dns_targets")
@heartbeating
def list_dns_targets(tenant: str | None = None) -> list[str]:
    """Names of the sending domains to check (all tenants, or one)."""
    return [t.domain for t in load_targets(tenant=tenant)]


@activity.defn(name="check_dns_domain")
@heartbeating
def check_dns_domain(domain: str) -> dict[str, Any]:
    """Check one domain on the configured resolvers and persist the result; returns its summary.

    Idempotent in effect: a retry adds one more observation to the history, flags end the same.
    """
    try:
        targets = load_targets(domain=domain)
    except ValueError as exc:  # removed from the inventory since the run listed it: no point retrying
        raise ApplicationError(str(exc), type="UnknownDomain", non_retryable=True) from None
    return persist(Checker.from_settings().check(targets[0]))


#: A batch heartbeats at least this often while its checks run (its heartbeat_timeout is longer).
HEARTBEAT_EVERY = 5.0


def _check_or_error(checker: Checker, t: DnsTarget) -> DomainCheck | str:
    """The check, or why it could not run at all (bad data in the inventory: not worth a retry)."""
    try:
        return checker.check(t)
    except Exception as exc:  # one domain's problem must not cost the other 199 their check
        return f"{type(exc).__name__}: {exc}"[:300]


def check_batch(req: DnsBatchRequest, url: str | None = None, checker: Checker | None = None,
                resume: DnsBatchResult | None = None,
                beat: Callable[[DnsBatchResult], None] | None = None) -> DnsBatchResult:
    """Check and persist one keyset page of domains; returns counts and only the state changes.

    Results are persisted in id order and `beat` gets the partial result after each one, so that a
    retried batch resumes after the last persisted domain (`resume`) instead of recording it twice
    (a second observation would hide the day's change from the alert). A domain that cannot be checked
    (the check raised, or it left the inventory) is an error of its own; a database failure raises and
    the batch is retried.
    """
    if req.limit < 1 or req.after_id < 0:
        raise ApplicationError(f"bad DNS batch request: {req}", type="BadRequest", non_retryable=True)
    try:
        targets = load_page(url, req.tenant, req.after_id, req.through_id, req.limit)
    except ValueError as exc:
        raise ApplicationError(str(exc), type="UnknownTenant", non_retryable=True) from None
    out = resume or DnsBatchResult()
    out.more = len(targets) == req.limit
    out.last_id = max(out.last_id, req.after_id)
    todo = [t for t in targets if t.domain_id > out.last_id]
    checker = checker or Checker.from_settings()
    with ThreadPoolExecutor(max_workers=max(1, req.concurrency), thread_name_prefix="dns-batch") as pool:
        futures: list[Future[DomainCheck | str]] = [pool.submit(_check_or_error, checker, t) for t in todo]
        for t, fut in zip(todo, futures, strict=True):
            while not wait_futures([fut], timeout=HEARTBEAT_EVERY).done:
                if beat:
                    beat(out)
            result = fut.result()
            if isinstance(result, DomainCheck):
                try:
                    summary = persist(result, url, webhook_day=req.day or None)
                except ValueError as exc:  # left the inventory since the page was read
                    result = str(exc)
                else:
                    out.checked += 1
                    state = summary["state"]
                    out.passing += state == "pass"
                    out.failing += state == "fail"
                    out.unknown += state not in ("pass", "fail")
                    out.changes += changed([summary])
                    out.webhooks += bool(summary.get("webhooks"))
            if isinstance(result, str):
                out.checked += 1
                out.errors += 1
                out.failures.append(f"{t.domain}: {result}")
            out.last_id = t.domain_id
            if beat:
                beat(out)
    return out


@activity.defn(name="dns_target_span")
def dns_target_span(tenant: str | None = None) -> DnsSpan:
    """How many domains the validation checks, and the id bound of its pages."""
    try:
        return target_span(tenant=tenant)
    except ValueError as exc:
        raise ApplicationError(str(exc), type="UnknownTenant", non_retryable=True) from None


@activity.defn(name="check_dns_batch")
def check_dns_batch(req: DnsBatchRequest) -> DnsBatchResult:
    """One page of domains, read from the database by cursor (the names never travel through Temporal);
    heartbeats its partial result and resumes from it on a retry."""
    details = activity.info().heartbeat_details
    resume = None
    if details:
        resume = DnsBatchResult(**details[0]) if isinstance(details[0], dict) else details[0]
    return check_batch(req, resume=resume, beat=lambda partial: activity.heartbeat(partial))
