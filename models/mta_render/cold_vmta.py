"""Which warm VirtualMTA carries each warming IP as its cold VirtualMTA, and with which daily limits.

PowerMTA pools are round-robin with no weights (User's Guide 3.3.13, 8.3): a warming VMTA in the pool
would be offered the same share as an active one and queue everything beyond its `N/d` rate limit.
The guide's tool for warming is the cold VirtualMTA (3.3.12.4, 3.3.10.48, 10.7): a warm VMTA names
`cold-virtual-mta COLD` and, per recipient domain, `max-cold-virtual-mta-msg N/d`; the first N messages
per domain per day submitted to the warm VMTA are re-routed to COLD at reception, the rest stay warm.

The plan (pure, deterministic):
- The pool holds the active IPs only; each warming IP is the cold VMTA of one active IP (the i-th
  warming IP of the tenant goes to the i-th active IP). More warming than active IPs: a warm VMTA
  carries several cold VMTAs (used round-robin, the limit applying to each, 3.3.12.4) only when their
  quotas are equal, because the limit is written once in the warm VMTA. One that fits nowhere gets no
  traffic (listed in `unplaced`): better no mail, and a gate that holds for lack of it, than a backlog.
- The limits are per recipient domain, so a `<domain *>` limit would grant N to every distinct domain:
  no bound. The warming quota is therefore split over a fixed list of large mailbox providers
  (PROVIDERS, by weight, summing exactly to the quota); mail to other domains stays on warm IPs.
  The offered volume of a cold VMTA is then at most its quota; it reaches the quota when its warm VMTA
  receives at least the split to each provider (the share model, models/mta_share.py, checks it).
- The guide allows a ramp in the directive (`1/day,2/day,...`), but not from which day it counts across
  reloads; the engine re-renders a single limit when a phase changes instead.
- A tenant without any active IP keeps its warming IPs in the pool, rate-limited only: the guide says
  the feature needs a warm IP ("If you only have cold IP addresses then use rate limiting", 10.7).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from models.enums import IpStatus
from models.snapshot import IpView, TenantView

#: Recipient domains whose mail a warming IP takes over from its warm VMTA, with the weight of each
#: in the split of the warming quota. Large consumer mailbox providers (the seed's audience includes
#: French expatriates, hence orange.fr). Mail to other domains stays on active IPs.
PROVIDERS: tuple[tuple[str, int], ...] = (
    ("gmail.com", 40),
    ("yahoo.com", 15),
    ("hotmail.com", 15),
    ("outlook.com", 10),
    ("orange.fr", 10),
    ("icloud.com", 10),
)


def split_quota(quota: int, providers: tuple[tuple[str, int], ...] = PROVIDERS) -> dict[str, int]:
    """Per-provider daily limits summing exactly to `quota` (largest remainder; ties by list order)."""
    total = sum(w for _, w in providers)
    exact = [(d, quota * w / total) for d, w in providers]
    out = {d: int(x) for d, x in exact}
    left = quota - sum(out.values())
    for d, _ in sorted(exact, key=lambda e: -(e[1] - int(e[1])))[:left]:
        out[d] += 1
    return out


@dataclass(frozen=True)
class ColdPlan:
    #: VMTA names in the tenant's pool
    pool: tuple[str, ...]
    #: warm VMTA name -> its cold VMTAs (warming IPs)
    colds: dict[str, tuple[IpView, ...]] = field(default_factory=dict)
    #: warm VMTA name -> per-provider `max-cold-virtual-mta-msg` limits
    limits: dict[str, dict[str, int]] = field(default_factory=dict)
    #: warming IPs no warm VMTA could carry (no traffic)
    unplaced: tuple[IpView, ...] = ()
    #: no active IP: warming IPs are pool members limited by their rate only (10.7)
    rate_limit_only: bool = False

    @functools.cached_property
    def members(self) -> frozenset[str]:
        return frozenset(self.pool)

    @functools.cached_property
    def warm_of(self) -> dict[str, str]:
        """cold VMTA name -> its warm VMTA."""
        return {c.vmta: w for w, cs in self.colds.items() for c in cs}


def plan(t: TenantView) -> ColdPlan:
    active = [ip for ip in t.ips if ip.status == IpStatus.ACTIVE and ip.daily_quota > 0]
    warming = [ip for ip in t.ips if ip.status == IpStatus.WARMING and ip.daily_quota > 0]
    if not active:
        return ColdPlan(pool=tuple(ip.vmta for ip in warming), rate_limit_only=bool(warming))
    colds: dict[str, list[IpView]] = {}
    unplaced: list[IpView] = []
    for i, w in enumerate(warming):
        if i < len(active):
            colds[active[i].vmta] = [w]
            continue
        fits = [a for a in active if all(c.daily_quota == w.daily_quota for c in colds[a.vmta])]
        if fits:
            colds[min(fits, key=lambda a: len(colds[a.vmta])).vmta].append(w)
        else:
            unplaced.append(w)
    return ColdPlan(
        pool=tuple(ip.vmta for ip in active),
        colds={k: tuple(v) for k, v in colds.items()},
        limits={k: split_quota(v[0].daily_quota) for k, v in colds.items()},
        unplaced=tuple(unplaced),
    )
