"""The inventory file (TOML): schema, validation, and the pure cross-entry rules.

Everything here runs before a single row is written: a file with any error is rejected whole,
with messages that name the entry and the field.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from models import firewall as fw
from models import names
from models import webhooks as wh
from models.active_guard import GuardAction
from models.enums import IpPurpose, IpStatus, MtaBackend, WarmupPhase

Hostname = Annotated[str, AfterValidator(names.hostname)]
Domain = Annotated[str, AfterValidator(names.domain)]
Selector = Annotated[str, AfterValidator(names.selector)]
TenantName = Annotated[str, AfterValidator(names.tenant)]
Token = Annotated[str, AfterValidator(lambda v: names.token(v, "name"))]
IpAddr = Annotated[str, AfterValidator(names.ip_address)]
KeyPath = Annotated[str, AfterValidator(names.key_path)]
UnixUser = Annotated[str, AfterValidator(names.unix_user)]


HttpUrl = Annotated[str, AfterValidator(names.http_base_url)]
EventType = Annotated[str, AfterValidator(wh.event_type)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MtaHostEntry(_Strict):
    name: Token
    address: IpAddr
    backend: MtaBackend = MtaBackend.POWERMTA
    ssh_port: int = Field(default=22, ge=1, le=65535)
    ssh_user: Token = "root"
    config_dir: KeyPath = "/etc/pmta"
    #: Owner of the deployed DKIM key files (mode 0600): the user the MTA reads keys as. None: ssh_user.
    mta_user: UnixUser | None = None
    enabled: bool = False


class MailwizzEntry(_Strict):
    base_url: HttpUrl
    source_ip: IpAddr


class IpEntry(_Strict):
    address: IpAddr
    hostname: Hostname
    domain: Domain
    vmta: Token | None = None
    dkim_selector: Selector = "default"
    dkim_key_path: KeyPath | None = None
    purpose: IpPurpose = IpPurpose.MARKETING
    status: IpStatus
    phase: WarmupPhase | None = None
    daily_quota: int | None = Field(default=None, ge=0, le=10_000_000)
    weight: int | None = Field(default=None, ge=0, le=100)
    #: First day of the current phase (default: the day the IP is first loaded).
    phase_started_on: dt.date | None = None

    @model_validator(mode="after")
    def _phase_matches_status(self) -> IpEntry:
        if self.status == IpStatus.WARMING and self.phase is None:
            raise ValueError("a warming IP needs a phase (week_1 .. week_6)")
        if self.status != IpStatus.WARMING and self.phase is not None:
            raise ValueError(f"phase is only for warming IPs, not {self.status.value}")
        return self


class TenantEntry(_Strict):
    name: TenantName
    mta_host: Token
    pool: Token | None = None
    dkim_key_dir: KeyPath = "/etc/pmta/dkim"
    max_bounce_rate: float | None = Field(default=None, ge=0, le=1)
    max_complaint_rate: float | None = Field(default=None, ge=0, le=1)
    min_open_rate: float | None = Field(default=None, ge=0, le=1)
    #: > 0: a phase never ends without delivered mail behind it (issue 10)
    min_delivered_share: float | None = Field(default=None, gt=0, le=1)
    #: Domain of the tenant's bounce (MAIL FROM / Return-Path) addresses. Its MX is the MTA host, where
    #: PowerMTA's <bounce-processor> turns asynchronous bounces into `rb` accounting records (User's
    #: Guide 12.6). None: remote bounces are not processed for this tenant (render note).
    bounce_domain: Domain | None = None
    #: Domain of the address registered with the mailbox providers' feedback loops (fbl@<domain>). Its
    #: MX is the MTA host, where <feedback-loop-processor> writes `f` records (User's Guide 12.7).
    fbl_domain: Domain | None = None
    #: Guard on active IPs (models/active_guard.py; None: the settings' defaults): what a real bounce or
    #: complaint excess of an active IP does (step_down: re-warm from `guard_step_down_phase`; pause: out
    #: of the pool), and the share of the tenant's daily capacity the guard may remove in a day without
    #: an operator (> 0: at 0 nothing could ever act on its own).
    active_guard: GuardAction | None = None
    guard_step_down_phase: WarmupPhase | None = None
    guard_max_capacity_loss_share: float | None = Field(default=None, gt=0, le=1)
    mailwizz: MailwizzEntry
    ips: list[IpEntry] = Field(min_length=1)

    @property
    def pool_name(self) -> str:
        return self.pool or f"{self.name}-pool"

    def vmta_name(self, ip: IpEntry, index: int) -> str:
        return ip.vmta or f"vmta-{self.name}-{index + 1}"

    def key_path(self, ip: IpEntry) -> str:
        return ip.dkim_key_path or f"{self.dkim_key_dir}/{ip.domain}.{ip.dkim_selector}.key"


class WebhookEntry(_Strict):
    """An outbound webhook receiver (issue 15). No secret here: the receiver's secret is its entry in
    EMAIL_ENGINE_WEBHOOK_SECRETS, so the file and the database never hold one."""

    name: Token
    #: https, or plain http to loopback only; no credentials, query or fragment.
    url: HttpUrl
    events: list[EventType] = Field(min_length=1)
    enabled: bool = True

    @model_validator(mode="after")
    def _distinct_events(self) -> WebhookEntry:
        if len(set(self.events)) != len(self.events):
            raise ValueError("events lists an event type twice")
        return self


class InventoryFile(_Strict):
    mta_hosts: list[MtaHostEntry] = Field(min_length=1)
    tenants: list[TenantEntry] = Field(min_length=1)
    webhooks: list[WebhookEntry] = Field(default_factory=list)
    #: Host firewalls (nftables rulesets rendered from the inventory); None: no rules rendered or deployed.
    firewall: fw.FirewallPolicy | None = None


class InventoryError(ValueError):
    """The inventory file is invalid; `errors` lists every problem found."""

    def __init__(self, errors: list[str]):
        super().__init__("\n".join(errors))
        self.errors = errors


def _entry_label(data: Any, loc: tuple[Any, ...]) -> str:
    """`tenants[0] (client-1).ips[3] (45.123.10.4).hostname` from a pydantic error location."""
    parts: list[str] = []
    node = data
    for item in loc:
        if isinstance(item, int):
            label = f"[{item}]"
            try:
                node = node[item]
                ident = node.get("name") or node.get("address") if isinstance(node, dict) else None
                if isinstance(ident, str):
                    label += f" ({ident!r})"
            except (IndexError, KeyError, TypeError):
                node = None
            parts.append(label)
        else:
            parts.append(("." if parts else "") + str(item))
            node = node.get(item) if isinstance(node, dict) else None
    return "".join(parts) or "(file)"


def parse(text: str) -> InventoryFile:
    """Parse and validate an inventory file's text; raise InventoryError listing every problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InventoryError([f"not valid TOML: {exc}"]) from None
    try:
        inv = InventoryFile.model_validate(data)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            where = _entry_label(data, tuple(err["loc"]))
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            errors.append(f"{where}: {msg}")
        raise InventoryError(errors) from None
    errors = cross_check(inv)
    if errors:
        raise InventoryError(errors)
    return inv


def _dupes(items: Iterable[tuple[str, str]], what: str) -> list[str]:
    seen: dict[str, str] = {}
    out = []
    for key, where in items:
        if key in seen:
            out.append(f"{where}: {what} {key!r} is already used by {seen[key]}")
        else:
            seen[key] = where
    return out


def cross_check(inv: InventoryFile) -> list[str]:
    """Rules that span entries: uniqueness, references, one domain per IP, isolation."""
    hosts = {h.name for h in inv.mta_hosts}
    errors = _dupes(((h.name, f"mta_hosts[{i}]") for i, h in enumerate(inv.mta_hosts)), "MTA host name")
    errors += _dupes(((t.name, f"tenants[{i}]") for i, t in enumerate(inv.tenants)), "tenant name")
    errors += _dupes(((t.pool_name, f"tenants[{i}] ({t.name!r}).pool") for i, t in enumerate(inv.tenants)),
                     "pool name")
    errors += _dupes(((w.name, f"webhooks[{i}]") for i, w in enumerate(inv.webhooks)), "webhook receiver name")
    addrs, domains, vmtas, feeders = [], [], [], []
    for ti, t in enumerate(inv.tenants):
        tw = f"tenants[{ti}] ({t.name!r})"
        if t.mta_host not in hosts:
            errors.append(f"{tw}.mta_host: unknown MTA host {t.mta_host!r}")
        feeders.append((t.mailwizz.source_ip, f"{tw}.mailwizz.source_ip"))
        for ii, ip in enumerate(t.ips):
            iw = f"{tw}.ips[{ii}] ({ip.address!r})"
            addrs.append((ip.address, f"{iw}.address"))
            domains.append((ip.domain, f"{iw}.domain"))
            vmtas.append((t.vmta_name(ip, ii), f"{iw}.vmta"))
    errors += _dupes(addrs, "address")
    errors += _dupes(domains, "domain (one domain per IP)")
    errors += _dupes(vmtas, "VMTA name")
    errors += _dupes(feeders, "MailWizz source IP")
    errors += _report_domain_errors(inv, {d for d, _ in domains})
    pools = {t.pool_name for t in inv.tenants}
    errors += [f"{w}: VMTA name {v!r} equals a pool name" for v, w in vmtas if v in pools]
    if inv.firewall is not None:
        errors += fw.cross_check(inv.firewall, [(h.name, h.address) for h in inv.mta_hosts],
                                 [t.name for t in inv.tenants],
                                 [fw.ReceiverView(w.name, w.url, w.enabled) for w in inv.webhooks])
    return errors


def _report_domain_errors(inv: InventoryFile, sending: set[str]) -> list[str]:
    """Bounce and FBL domains: each used once (one tenant, one role) and never a sending domain, so a
    report is attributed to exactly one tenant's processor."""
    used: list[tuple[str, str]] = []
    errors = []
    for ti, t in enumerate(inv.tenants):
        for key in ("bounce_domain", "fbl_domain"):
            value = getattr(t, key)
            if value is None:
                continue
            where = f"tenants[{ti}] ({t.name!r}).{key}"
            used.append((value, where))
            if value in sending:
                errors.append(f"{where}: {value!r} is a sending domain; use a domain of its own")
    return errors + _dupes(used, "bounce/FBL domain")


@dataclass(frozen=True)
class Ownership:
    """What the database already holds: address/domain -> owning tenant, domain -> its IP."""

    ip_tenant: dict[str, str] = field(default_factory=dict)
    domain_tenant: dict[str, str] = field(default_factory=dict)
    domain_ip: dict[str, str] = field(default_factory=dict)
    vmta_ip: dict[str, str] = field(default_factory=dict)
    ip_domain: dict[str, str] = field(default_factory=dict)


def check_against_database(inv: InventoryFile, owned: Ownership) -> list[str]:
    """An address or domain owned by another tenant, or a domain moved to another IP, is refused."""
    errors = []
    for ti, t in enumerate(inv.tenants):
        for ii, ip in enumerate(t.ips):
            iw = f"tenants[{ti}] ({t.name!r}).ips[{ii}] ({ip.address!r})"
            owner = owned.ip_tenant.get(ip.address)
            if owner is not None and owner != t.name:
                errors.append(f"{iw}.address: {ip.address} already belongs to tenant {owner!r}")
            downer = owned.domain_tenant.get(ip.domain)
            if downer is not None and downer != t.name:
                errors.append(f"{iw}.domain: {ip.domain} already belongs to tenant {downer!r}")
            dip = owned.domain_ip.get(ip.domain)
            if dip is not None and dip != ip.address:
                errors.append(f"{iw}.domain: {ip.domain} is already tied to IP {dip}")
            idom = owned.ip_domain.get(ip.address)
            if idom is not None and idom != ip.domain:
                errors.append(f"{iw}.domain: IP {ip.address} already sends for {idom}; "
                              "changing an IP's domain needs a new IP entry")
            vname = t.vmta_name(ip, ii)
            vip = owned.vmta_ip.get(vname)
            if vip is not None and vip != ip.address:
                errors.append(f"{iw}.vmta: VMTA name {vname!r} is already used by IP {vip}")
    return errors
