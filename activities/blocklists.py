"""Blocklist scans: self-test every zone through the configured resolvers, then query every target.

`scan(targets, ...) -> ScanReport` is the API (the CLI, the activity "scan_blocklists" and the
scheduled BlocklistScanWorkflow use it). A scan has no side effects besides DNS queries. Reports are
plain dataclasses (Temporal payloads). Zone names in reports never contain the Spamhaus DQS key.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.dnsbl_resolver import MuxResolver, Resolver, system_resolvers
from activities.keepalive import heartbeating
from models.blocklist import (
    ActiveZone,
    Catalog,
    CatalogError,
    Kind,
    Status,
    classify,
    load_catalog,
    query_name,
    self_test_entries,
    self_test_verdict,
    target_labels,
)
from models.dnswire import WireError, encode_labels, join_question, question_tail
from models.enums import IpStatus
from models.names import NameError_
from models.names import domain as valid_domain
from models.names import ip_address as valid_ip
from models.settings import Settings, get_settings

#: IP statuses a scan covers (with their domains): what can be listed and what can come back.
SCANNED_STATUSES = frozenset({IpStatus.WARMING, IpStatus.ACTIVE, IpStatus.QUARANTINE})

Progress = Callable[[int, int], None]


@dataclass
class ScanTarget:
    kind: str  # "ip" | "domain"
    value: str
    tenant: str = ""


@dataclass
class ScanRequest:
    targets: list[ScanTarget]
    zones: list[str] | None = None  # catalogue names; None: every zone


@dataclass
class ListedEntry:
    zone: str  # catalogue name, e.g. "spamhaus-zen"
    zone_name: str  # DNS zone as displayed (DQS key redacted)
    codes: list[str]
    meaning: str
    delist_url: str


@dataclass
class UnknownEntry:
    zone: str
    zone_name: str
    reason: str


@dataclass
class TargetReport:
    kind: str
    value: str
    tenant: str = ""
    listed: list[ListedEntry] = field(default_factory=list)
    unknown: list[UnknownEntry] = field(default_factory=list)
    reputation: list[ListedEntry] = field(default_factory=list)
    not_listed: list[str] = field(default_factory=list)  # zones that answered NXDOMAIN


@dataclass
class BrokenZone:
    zone: str
    zone_name: str
    reason: str


@dataclass
class ScanReport:
    started_at: str
    finished_at: str
    zones: list[str]  # zones whose answers were used (passed the self-test)
    broken: list[BrokenZone]
    targets: list[TargetReport]
    queries: int = 0  # DNS queries made, self-test included
    listed: int = 0  # (target, zone) pairs listed
    unknown: int = 0
    not_listed: int = 0
    reputation: int = 0
    self_test_seconds: float = 0.0  # the RFC 5782 self-test of every zone
    scan_seconds: float = 0.0  # the targets' queries, after the self-test
    queries_per_second: float = 0.0  # all queries over both phases

    def listed_targets(self) -> list[TargetReport]:
        return [t for t in self.targets if t.listed]


def configured_catalog(settings: Settings | None = None) -> Catalog:
    settings = settings or get_settings()
    return load_catalog(settings.blocklist_catalog)


def _validate_targets(targets: Sequence[ScanTarget]) -> list[ScanTarget]:
    out = []
    for i, t in enumerate(targets):
        try:
            if t.kind == Kind.IP:
                value = valid_ip(t.value)
            elif t.kind == Kind.DOMAIN:
                value = valid_domain(t.value)
            else:
                raise NameError_(f"kind must be 'ip' or 'domain', got {t.kind!r}")
        except NameError_ as exc:
            raise ValueError(f"target {i} ({t.value!r}): {exc}") from None
        out.append(ScanTarget(str(t.kind), value, t.tenant))
    return out


async def scan(
    targets: Sequence[ScanTarget],
    *,
    zones: Sequence[str] | None = None,
    catalog: Catalog | None = None,
    resolver: Resolver | None = None,
    settings: Settings | None = None,
    progress: Progress | None = None,
) -> ScanReport:
    """Self-test the zones, then query each target against each usable zone of its kind.

    ValueError (or CatalogError) for a bad catalogue, zone filter, target or resolver setting,
    before any query is sent. `resolver` defaults to a MuxResolver on Settings.resolvers() (the
    system resolver when none is configured) with Settings.dns_timeout.
    """
    settings = settings or get_settings()
    catalog = catalog or configured_catalog(settings)
    key = settings.spamhaus_dqs_key.get_secret_value() if settings.spamhaus_dqs_key else None
    active = catalog.active(key or None, only=zones)
    checked = _validate_targets(targets)
    own = resolver is None
    if resolver is None:
        servers = settings.resolvers() or system_resolvers()
        resolver = MuxResolver(servers, timeout=settings.dns_timeout, concurrency=settings.blocklist_concurrency)
    started = dt.datetime.now(dt.UTC)
    t0 = time.perf_counter()
    try:
        usable, broken, test_queries = await _self_test(resolver, active)
        t1 = time.perf_counter()
        plan, qnames, questions = _plan(checked, usable)
        on_result = None
        if progress is not None:
            total = len(qnames)
            counter = [0]

            def on_result(_i: int, _r: object) -> None:
                counter[0] += 1
                progress(counter[0], total)

        results = await resolver.resolve_many(qnames, on_result, questions) if qnames else []
        t2 = time.perf_counter()
    finally:
        if own:
            await resolver.close()

    reports = [TargetReport(t.kind, t.value, t.tenant) for t in checked]
    counts = dict.fromkeys(Status, 0)
    for (ti, z), result in zip(plan, results, strict=True):
        verdict = classify(z.spec, result)
        counts[verdict.status] += 1
        rep = reports[ti]
        if verdict.status is Status.NOT_LISTED:
            rep.not_listed.append(z.name)
        elif verdict.status is Status.UNKNOWN:
            rep.unknown.append(UnknownEntry(z.name, z.display, verdict.reason))
        else:
            entry = ListedEntry(z.name, z.display, list(verdict.codes), "; ".join(h.meaning for h in verdict.hits),
                                z.spec.delist_url)
            (rep.listed if verdict.status is Status.LISTED else rep.reputation).append(entry)
    elapsed = t2 - t0
    n_queries = test_queries + len(qnames)
    return ScanReport(
        started_at=started.isoformat(), finished_at=dt.datetime.now(dt.UTC).isoformat(),
        zones=[z.name for z in usable], broken=broken, targets=reports, queries=n_queries,
        listed=counts[Status.LISTED], unknown=counts[Status.UNKNOWN], not_listed=counts[Status.NOT_LISTED],
        reputation=counts[Status.REPUTATION], self_test_seconds=round(t1 - t0, 4), scan_seconds=round(t2 - t1, 4),
        queries_per_second=round(n_queries / elapsed, 1) if elapsed > 0 else 0.0,
    )


async def self_test_zones(settings: Settings | None = None) -> tuple[list[str], list[BrokenZone]]:
    """The RFC 5782 self-test a scan starts with, alone: (zones that pass, zones that fail), through
    the configured resolvers (`email-engine doctor`)."""
    settings = settings or get_settings()
    key = settings.spamhaus_dqs_key.get_secret_value() if settings.spamhaus_dqs_key else None
    active = configured_catalog(settings).active(key or None)
    servers = settings.resolvers() or system_resolvers()
    async with MuxResolver(servers, timeout=settings.dns_timeout,
                           concurrency=settings.blocklist_concurrency) as resolver:
        usable, broken, _ = await _self_test(resolver, active)
    return [z.name for z in usable], broken


def _plan(targets: Sequence[ScanTarget], usable: Sequence[ActiveZone]
          ) -> tuple[list[tuple[int, ActiveZone]], list[str], list[bytes | None]]:
    """(target index, zone) pairs to query, their names and pre-encoded questions. Each target's labels
    and each zone's tail are encoded once (a fleet scan is targets x zones queries)."""
    tails = [question_tail(z.query_zone) for z in usable]
    plan: list[tuple[int, ActiveZone]] = []
    qnames: list[str] = []
    questions: list[bytes | None] = []
    for ti, t in enumerate(targets):
        labels = target_labels(t.kind, t.value)
        prefix = encode_labels(labels)
        v6 = t.kind == Kind.IP and ":" in t.value
        for z, tail in zip(usable, tails, strict=True):
            if z.spec.kind != t.kind or (v6 and not z.spec.ipv6):
                continue
            plan.append((ti, z))
            qnames.append(f"{labels}.{z.query_zone}")
            try:
                questions.append(join_question(prefix, tail))
            except WireError:  # a long domain in a long zone: over 255 bytes, an unknown answer
                questions.append(None)
    return plan, qnames, questions


async def _self_test(resolver: Resolver, active: Sequence[ActiveZone]
                     ) -> tuple[list[ActiveZone], list[BrokenZone], int]:
    names: list[str] = []
    pairs: list[list[tuple[str, str]]] = []
    for z in active:
        pairs.append(self_test_entries(z.spec))
        for pos, neg in pairs[-1]:
            names.append(query_name(z.query_zone, z.spec.kind, pos))
            names.append(query_name(z.query_zone, z.spec.kind, neg))
    results = await resolver.resolve_many(names) if names else []
    usable, broken = [], []
    i = 0
    for z, zone_pairs in zip(active, pairs, strict=True):
        reasons = []
        for pair in zone_pairs:
            verdict = self_test_verdict(z.spec, results[i], results[i + 1], pair)
            i += 2
            if not verdict.ok:
                reasons.append(verdict.reason)
        if reasons:
            broken.append(BrokenZone(z.name, z.display, "; ".join(reasons)))
        else:
            usable.append(z)
    return usable, broken, len(names)


# ---------------------------------------------------------------------------------- inventory

def inventory_targets(tenant: str | None = None, url: str | None = None) -> list[ScanTarget]:
    """The warming, active and quarantined IPs of the inventory and their domains (LookupError: no such tenant)."""
    from activities.snapshot import load_snapshot

    snap = load_snapshot(url)
    tenants = [snap.tenant(tenant)] if tenant else list(snap.tenants)
    out: list[ScanTarget] = []
    for t in tenants:
        for ip in t.ips:
            if ip.status in SCANNED_STATUSES:
                out.append(ScanTarget("ip", ip.address, t.name))
                out.append(ScanTarget("domain", ip.domain, t.name))
    return out


# ---------------------------------------------------------------------------------- activities

@activity.defn(name="scan_blocklists")
async def scan_blocklists(request: ScanRequest) -> ScanReport:
    """One blocklist scan (self-test included). Bad input is a non-retryable "BadScanRequest".

    Idempotent (DNS reads only). Callers: start_to_close_timeout of at least a minute for a fleet
    (the self-test alone can take EMAIL_ENGINE_DNS_TIMEOUT), heartbeat_timeout >= 10 s (it heartbeats
    at start and every 2 s of progress)."""
    last = [0.0]

    def beat(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] > 2.0:
            last[0] = now
            activity.heartbeat(done, total)

    activity.heartbeat(0, 0)
    try:
        return await scan(request.targets, zones=request.zones, progress=beat)
    except (ValueError, CatalogError) as exc:
        raise ApplicationError(str(exc), type="BadScanRequest", non_retryable=True) from None


@activity.defn(name="blocklist_scan_targets")
@heartbeating
def blocklist_scan_targets(tenant: str | None = None) -> list[ScanTarget]:
    """What a scheduled scan covers: warming, active and quarantined IPs and their domains."""
    try:
        return inventory_targets(tenant)
    except LookupError as exc:
        raise ApplicationError(str(exc), type="UnknownTenant", non_retryable=True) from None
