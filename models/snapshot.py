"""A read-only, deterministic view of the fleet: what renderers, rotation and checks work from.

Pure data: loaded by activities.snapshot, consumed by pure functions (rendering the MTA config is
`render(snapshot) -> files`). Ordering is stable, so the same inventory gives the same snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from models.enums import SENDING_STATUSES, IpPurpose, IpStatus, MtaBackend, WarmupPhase


@dataclass(frozen=True)
class IpView:
    address: str
    version: int
    hostname: str
    tenant: str
    status: IpStatus
    phase: WarmupPhase | None
    daily_quota: int
    weight: int
    vmta: str
    domain: str
    dkim_selector: str
    dkim_key_path: str
    purpose: IpPurpose = IpPurpose.MARKETING

    @property
    def sending(self) -> bool:
        """In the tenant's pool: only warming and active IPs carry traffic."""
        return self.status in SENDING_STATUSES


@dataclass(frozen=True)
class TenantView:
    name: str
    pool: str
    mta_host: str
    feeder_ip: str
    mailwizz_url: str
    ips: tuple[IpView, ...] = ()
    #: where this tenant's asynchronous bounces and FBL reports arrive (None: not processed)
    bounce_domain: str | None = None
    fbl_domain: str | None = None

    @property
    def sending_ips(self) -> tuple[IpView, ...]:
        return tuple(ip for ip in self.ips if ip.sending)


@dataclass(frozen=True)
class MtaHostView:
    name: str
    address: str
    backend: MtaBackend
    ssh_port: int = 22
    ssh_user: str = "root"
    config_dir: str = "/etc/pmta"
    enabled: bool = False
    #: Owner of the deployed DKIM key files (None: the SSH user).
    mta_user: str | None = None


@dataclass(frozen=True)
class FleetSnapshot:
    hosts: tuple[MtaHostView, ...] = ()
    tenants: tuple[TenantView, ...] = field(default=())

    def host(self, name: str) -> MtaHostView:
        for h in self.hosts:
            if h.name == name:
                return h
        raise LookupError(f"no MTA host named {name!r}")

    def tenant(self, name: str) -> TenantView:
        for t in self.tenants:
            if t.name == name:
                return t
        raise LookupError(f"no tenant named {name!r}")

    def for_host(self, name: str) -> FleetSnapshot:
        """Only the given MTA host and the tenants it serves."""
        return replace(self, hosts=(self.host(name),),
                       tenants=tuple(t for t in self.tenants if t.mta_host == name))

    def for_tenant(self, name: str) -> FleetSnapshot:
        t = self.tenant(name)
        return replace(self, hosts=tuple(h for h in self.hosts if h.name == t.mta_host), tenants=(t,))
