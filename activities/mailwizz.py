"""MailWizz API client (httpx) and the activities that use it.

One client per tenant: base URL from the inventory (`tenants.mailwizz.base_url`, `…/api` or
`…/api/index.php`), API key from EMAIL_ENGINE_MAILWIZZ_KEYS (SecretStr; sent as the `X-Api-Key`
header of MailWizz 2.x, never logged). MailWizz's API exposes delivery servers read-only and without
quotas: quotas live at the MTA (DESIGN.md §8).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
from pydantic import SecretStr
from sqlmodel import col, select
from temporalio import activity

from activities.alerts import Alert, deliver_alert
from activities.counters import add_daily
from activities.db import session_scope
from activities.keepalive import heartbeating
from models import names
from models.mailwizz import (
    FIELDS,
    CampaignCounters,
    DeliveryServer,
    MailwizzAuthError,
    MailwizzError,
    MailwizzForbidden,
    MailwizzNotFound,
    MailwizzProtocolError,
    MailwizzUnavailable,
    Page,
    ServerCheck,
    attribute,
    check_mta_server,
    endpoint,
    list_uid,
    parse_delivery_server,
    parse_keys,
    parse_page,
    parse_stats,
)
from models.mailwizz import campaign_uid as campaign_uid_
from models.ops_tables import MailwizzCampaignStat
from models.settings import Settings, get_settings
from models.tables import DailyStat, MailwizzServer, MtaHost, SendingIp, Tenant, utcnow

log = logging.getLogger("email_engine.mailwizz")

#: Newest campaigns read per sync (the listing is newest first).
MAX_CAMPAIGNS = 200
#: A campaign read for the first time counts from zero only while it is still sending; an older one
#: only sets the baseline (its past opens are not today's).
FRESH_CAMPAIGN_STATUSES = frozenset({"sending", "processing", "pending-sending"})
SKIP_CAMPAIGN_STATUSES = frozenset({"draft", "pending-delete"})


class MailwizzClient:
    """GET-only client with timeouts and retries (exponential backoff on timeouts, connection errors,
    429 and 5xx); 401/403/404 raise at once with a precise message."""

    def __init__(self, base_url: str, api_key: SecretStr | str, *, timeout: float = 10.0, attempts: int = 4,
                 backoff: float = 0.5, transport: httpx.AsyncBaseTransport | None = None) -> None:
        key = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
        if not key:
            raise MailwizzAuthError("no MailWizz API key configured")
        try:  # the database may hold a URL loaded before this rule: check it again before any request
            self.base_url = names.http_base_url(base_url)
        except names.NameError_ as exc:
            raise MailwizzError(f"MailWizz base URL refused: {exc}") from None
        self.attempts = attempts
        self.backoff = backoff
        self._client = httpx.AsyncClient(
            headers={"X-Api-Key": key, "Accept": "application/json", "User-Agent": "email-engine"},
            timeout=httpx.Timeout(timeout), transport=transport, follow_redirects=False,
        )

    async def __aenter__(self) -> MailwizzClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        url = endpoint(self.base_url, path)
        last: MailwizzError | None = None
        for attempt in range(1, self.attempts + 1):
            try:
                resp = await self._client.get(url, params=params)
            except httpx.TimeoutException:
                last = MailwizzUnavailable(f"GET {url}: timed out")
            except httpx.TransportError as exc:
                last = MailwizzUnavailable(f"GET {url}: {type(exc).__name__}: {exc}")
            else:
                err = self._error(url, resp)
                if err is None:
                    try:
                        return resp.json()
                    except ValueError:
                        raise MailwizzProtocolError(f"GET {url}: answer is not JSON "
                                                    f"({resp.headers.get('content-type', '?')})", resp.status_code
                                                    ) from None
                if not err.retryable:
                    raise err
                last = err
            if attempt < self.attempts:
                delay = self.backoff * 2 ** (attempt - 1)
                log.warning("MailWizz %s (attempt %d/%d), retrying in %.1fs", last, attempt, self.attempts, delay)
                await asyncio.sleep(delay)
        assert last is not None
        raise last

    @staticmethod
    def _error(url: str, resp: httpx.Response) -> MailwizzError | None:
        code = resp.status_code
        if code < 400:
            return None
        detail = ""
        try:
            body = resp.json()
            if isinstance(body, dict) and body.get("error"):
                detail = f": {body['error']}"[:200]
        except ValueError:
            pass
        if code == 401:
            return MailwizzAuthError(f"GET {url}: 401 unauthorized, check this tenant's key in "
                                     f"EMAIL_ENGINE_MAILWIZZ_KEYS{detail}", code)
        if code == 403:
            return MailwizzForbidden(f"GET {url}: 403 forbidden, the key's customer may not use the API "
                                     f"(group option api.enabled) or the IP is not allowed{detail}", code)
        if code == 404:
            return MailwizzNotFound(f"GET {url}: 404 not found (wrong base URL? try …/api/index.php){detail}",
                                    code)
        if code == 429 or code >= 500:
            return MailwizzUnavailable(f"GET {url}: {code}{detail}", code)
        return MailwizzError(f"GET {url}: {code}{detail}", code)

    async def _all(self, path: str, limit: int = 10_000) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        page: int | None = 1
        while page is not None and len(out) < limit:
            p = parse_page(await self.get(path, {"page": page, "per_page": 50}))
            out += p.records
            page = p.next_page if p.next_page and p.next_page > page else None
        return out[:limit]

    async def delivery_servers(self) -> list[DeliveryServer]:
        """GET delivery-servers: the key's customer's own servers (id, type, name, hostname, status)."""
        return [parse_delivery_server(r) for r in await self._all("delivery-servers")]

    async def campaigns(self, limit: int = MAX_CAMPAIGNS) -> list[dict[str, Any]]:
        """GET campaigns, newest first: campaign_uid, type, name, status."""
        return await self._all("campaigns", limit)

    async def campaign_stats(self, campaign_uid: str) -> CampaignCounters:
        return parse_stats(await self.get(f"campaigns/{campaign_uid_(campaign_uid)}/stats"))

    async def campaign_bounces(self, campaign_uid: str, page: int = 1) -> tuple[int, list[dict[str, Any]]]:
        """GET campaigns/{uid}/bounces: (total count, newest records: message, bounce_type, subscriber)."""
        path = f"campaigns/{campaign_uid_(campaign_uid)}/bounces"
        p = parse_page(await self.get(path, {"page": page, "per_page": 50}))
        return p.count, p.records

    async def campaign_unsubscribes(self, campaign_uid: str, page: int = 1) -> tuple[int, list[dict[str, Any]]]:
        """GET campaigns/{uid}/unsubscribes: (total count, newest records: reason, date_added, ...)."""
        p = await self.unsubscribes_page(campaign_uid, page)
        return p.count, p.records

    async def unsubscribes_page(self, campaign_uid: str, page: int = 1) -> Page:
        """One page (50) of GET campaigns/{uid}/unsubscribes, newest first."""
        path = f"campaigns/{campaign_uid_(campaign_uid)}/unsubscribes"
        return parse_page(await self.get(path, {"page": page, "per_page": 50}))

    async def campaign_list_uid(self, campaign_uid: str) -> str:
        """GET campaigns/{uid}: the uid of the list the campaign was sent to."""
        return list_uid(await self.get(f"campaigns/{campaign_uid_(campaign_uid)}"))


# --- tenant lookups -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TenantMailwizz:
    tenant: str
    base_url: str
    mta_names: frozenset[str]


def tenant_mailwizz(tenant: str, url: str | None = None) -> TenantMailwizz:
    with session_scope(url) as s:
        t = s.exec(select(Tenant).where(Tenant.name == tenant)).first()
        if t is None:
            raise LookupError(f"no tenant named {tenant!r}")
        mw = s.exec(select(MailwizzServer).where(MailwizzServer.tenant_id == t.id)).first()
        if mw is None:
            raise LookupError(f"tenant {tenant!r} has no MailWizz server in the inventory")
        host = s.get(MtaHost, t.mta_host_id) if t.mta_host_id else None
        names = frozenset({host.address, host.name} if host else set())
        return TenantMailwizz(tenant=tenant, base_url=mw.base_url, mta_names=names)


def client_for(tenant: str, settings: Settings | None = None, url: str | None = None,
               **kwargs: Any) -> MailwizzClient:
    settings = settings or get_settings()
    keys = parse_keys(settings.mailwizz_keys.get_secret_value())
    if tenant not in keys:
        raise MailwizzAuthError(f"EMAIL_ENGINE_MAILWIZZ_KEYS has no key for tenant {tenant!r}")
    info = tenant_mailwizz(tenant, url)
    kwargs.setdefault("timeout", settings.mailwizz_timeout)
    kwargs.setdefault("attempts", settings.mailwizz_attempts)
    return MailwizzClient(info.base_url, SecretStr(keys[tenant]), **kwargs)


# --- delivery server check ------------------------------------------------------------------------


async def check_delivery_server(tenant: str, url: str | None = None, **client_kwargs: Any) -> ServerCheck:
    """Is the tenant's MTA a sending delivery server in its MailWizz? Alerts (warning) when not."""
    info = await asyncio.to_thread(tenant_mailwizz, tenant, url)
    async with client_for(tenant, url=url, **client_kwargs) as mw:
        servers = await mw.delivery_servers()
    result = check_mta_server(servers, set(info.mta_names))
    if not result.ok:
        await deliver_alert(Alert(
            key=f"mailwizz-server/{tenant}", severity="warning", dedup_seconds=6 * 3600,
            title=f"MailWizz of {tenant}: MTA delivery server not active",
            body=f"{result.message}. MailWizz cannot send this tenant's campaigns through the MTA until "
                 "the delivery server exists and is active (MailWizz: Servers > Delivery servers).",
        ))
    return result


# --- daily figures --------------------------------------------------------------------------------


@dataclass
class TenantFigures:
    tenant: str
    day: str
    campaigns_read: int = 0
    totals: dict[str, int] = field(default_factory=dict)
    opens_by_ip: dict[str, int] = field(default_factory=dict)
    clicks_by_ip: dict[str, int] = field(default_factory=dict)
    attributed: bool = False


def record_readings(tenant: str, readings: dict[str, tuple[str, CampaignCounters]], day: dt.date,
                    url: str | None = None) -> TenantFigures:
    """One transaction: growth of each campaign's counters since the last reading becomes the day's
    tenant figures; opens and clicks are attributed to the tenant's IPs by their sent share that day
    (DailyStat.sent, from the MTA accounting). Re-running with the same readings adds nothing."""
    figures = TenantFigures(tenant=tenant, day=day.isoformat(), campaigns_read=len(readings))
    total = CampaignCounters()
    with session_scope(url) as s:
        # The tenant's row lock serializes readings of one tenant: each counter growth is taken from the
        # baseline once, even when two syncs overlap (they would both add it otherwise).
        t = s.exec(select(Tenant).where(Tenant.name == tenant).with_for_update()).one()
        prev = {r.campaign_uid: r for r in s.exec(
            select(MailwizzCampaignStat).where(MailwizzCampaignStat.tenant_id == t.id))}
        now = utcnow()
        for uid, (status, counters) in readings.items():
            row = prev.get(uid)
            if row is None:
                base = CampaignCounters() if status in FRESH_CAMPAIGN_STATUSES else counters
                row = MailwizzCampaignStat(tenant_id=t.id, campaign_uid=uid)  # type: ignore[arg-type]
            else:
                base = CampaignCounters(**{k: getattr(row, k) for k in FIELDS})
            total = total.plus(counters.minus(base))
            for k in FIELDS:
                setattr(row, k, getattr(counters, k))
            row.read_at = now
            s.add(row)
        ips = {ip.id: ip.address for ip in s.exec(select(SendingIp).where(SendingIp.tenant_id == t.id))}
        stats = {st.ip_id: st for st in s.exec(
            select(DailyStat).where(col(DailyStat.ip_id).in_(list(ips)), DailyStat.day == day))}
        attribution = attribute(total, {ips[i]: st.sent for i, st in stats.items()})
        ids = {address: i for i, address in ips.items() if i is not None}
        for addr in set(attribution.opens) | set(attribution.clicks):
            add_daily(s, ids[addr], day, opens=attribution.opens.get(addr, 0), clicks=attribution.clicks.get(addr, 0))
    figures.totals = asdict(total)
    figures.opens_by_ip = {a: n for a, n in attribution.opens.items() if n}
    figures.clicks_by_ip = {a: n for a, n in attribution.clicks.items() if n}
    figures.attributed = not attribution.unattributed
    return figures


async def ingest_stats(tenant: str, day: dt.date | None = None, url: str | None = None,
                       **client_kwargs: Any) -> TenantFigures:
    """Read the newest campaigns' stats and record the day's figures for the tenant."""
    day = day or utcnow().date()
    readings: dict[str, tuple[str, CampaignCounters]] = {}
    async with client_for(tenant, url=url, **client_kwargs) as mw:
        for c in await mw.campaigns():
            uid, status = str(c.get("campaign_uid") or ""), str(c.get("status") or "")
            if not uid or status in SKIP_CAMPAIGN_STATUSES:
                continue
            try:
                campaign_uid_(uid)
            except ValueError as exc:
                log.warning("MailWizz %s: campaign skipped: %s", tenant, exc)
                continue
            readings[uid] = (status, await mw.campaign_stats(uid))
    figures = await asyncio.to_thread(record_readings, tenant, readings, day, url)
    log.info("MailWizz %s %s: %d campaigns, totals %s, attributed=%s", tenant, figures.day,
             figures.campaigns_read, figures.totals, figures.attributed)
    return figures


@activity.defn(name="check_mailwizz_delivery_server")
@heartbeating
async def check_mailwizz_delivery_server(tenant: str) -> dict[str, Any]:
    """Activity: {"ok", "message"}; a MailWizz error is raised (retried by Temporal)."""
    r = await check_delivery_server(tenant)
    return {"ok": r.ok, "message": r.message}


@activity.defn(name="ingest_mailwizz_stats")
@heartbeating
async def ingest_mailwizz_stats(tenant: str) -> dict[str, Any]:
    """Activity: the tenant's figures for today (idempotent: a retry adds nothing twice)."""
    return asdict(await ingest_stats(tenant))


def configured_tenants(url: str | None = None, settings: Settings | None = None) -> list[str]:
    """Tenants with a MailWizz server in the inventory AND a key in EMAIL_ENGINE_MAILWIZZ_KEYS: only
    these are ever contacted (no key, no connection: the embedded defaults reach no MailWizz)."""
    settings = settings or get_settings()
    keys = parse_keys(settings.mailwizz_keys.get_secret_value())
    with session_scope(url) as s:
        names = list(s.exec(select(Tenant.name).join(MailwizzServer, col(MailwizzServer.tenant_id) == col(Tenant.id))
                            .order_by(Tenant.name)))
    return [n for n in names if n in keys]


@activity.defn(name="mailwizz_tenants")
@heartbeating
def mailwizz_tenants() -> list[str]:
    """Activity: the tenants the MailWizz sync reads (see configured_tenants)."""
    return configured_tenants()
