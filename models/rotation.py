"""Rotation: which of a tenant's IPs the next message leaves from (pure rules, no I/O).

The caller (activities.rotation) loads the candidates and the durable state (round-robin position,
last hour's sent counts) and records the pick; everything here is a plain function of its inputs.

Eligible IPs: the members of the tenant's MTA pool, that is its ACTIVE IPs with a positive daily quota
(a zero quota means the MTA lets nothing out of it), as the PowerMTA render puts them in the pool
(models/mta_render/cold_vmta.py). A warming IP is never picked: it is the cold VirtualMTA of an active
IP, which re-routes at most its daily quota to it (max-cold-virtual-mta-msg); a message naming the
warming VMTA itself in X-Virtual-MTA would bypass that cap. Standby, quarantined, resting and retiring
IPs are never picked either. Candidates are ordered by address (IPv4 before IPv6, then numerically),
so the round-robin order does not depend on database ids or load order.

- round_robin: candidate[position % n] for a durable, atomically incremented position.
- weighted_random: share proportional to the daily quota (an active IP at 5,000/day gets half the
  share of one at 10,000/day). An IP whose rotation weight is 0 is left out: weight 0 is the
  operator's "no rotation share". The quota, not the 0-100 weight, sets the share because the weight
  is rounded. Deterministic given the random number, so it is testable.
- least_used: lowest load = sent in the last hour / hourly capacity (daily_quota / 24); ties go to
  the first candidate in the stable order. The last hour is estimated from hourly counters
  (sliding-window estimate: this hour's count + last hour's count x the part of last hour still
  inside the window).
"""

from __future__ import annotations

import bisect
import functools
import ipaddress
import itertools
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from models.enums import SENDING_STATUSES, IpStatus

#: Statuses rotation picks from: the pool members (warming IPs take mail only as cold VirtualMTAs).
POOL_STATUSES = frozenset({IpStatus.ACTIVE})

HOUR_SECONDS = 3600


class RotationMode(StrEnum):
    ROUND_ROBIN = "round_robin"
    WEIGHTED_RANDOM = "weighted_random"
    LEAST_USED = "least_used"


class RotationError(LookupError):
    """No IP can be picked (unknown tenant, no sending IP, no positive quota)."""


@dataclass(frozen=True)
class Candidate:
    """One IP as rotation sees it."""

    address: str
    vmta: str
    status: IpStatus
    daily_quota: int
    weight: int
    ip_id: int | None = None

    @property
    def hourly_capacity(self) -> float:
        return self.daily_quota / 24


@dataclass(frozen=True)
class Pick:
    """The chosen IP and what to put in the message so the MTA sends it from there."""

    tenant: str
    mode: RotationMode
    address: str
    vmta: str
    status: IpStatus
    #: round_robin: the position consumed (0-based, per tenant); None for the other modes.
    position: int | None = None
    #: least_used: the chosen IP's estimated sends in the last hour (before this pick) over its hourly capacity.
    load: float | None = None
    candidates: int = 0

    @property
    def header(self) -> str:
        """The header line a feeder adds; PowerMTA honours it where `process-x-virtual-mta yes`."""
        return f"X-Virtual-MTA: {self.vmta}"

    def to_dict(self) -> dict[str, object]:
        return {
            "tenant": self.tenant, "mode": self.mode.value, "ip": self.address, "vmta": self.vmta,
            "status": self.status.value, "header": self.header, "position": self.position,
            "load": self.load, "candidates": self.candidates,
        }


@functools.lru_cache(maxsize=65_536)
def _address_order(address: str) -> tuple[int, int]:
    addr = ipaddress.ip_address(address)
    return addr.version, int(addr)


def _address_key(c: Candidate) -> tuple[int, int]:
    return _address_order(c.address)


def eligible(ips: Iterable[Candidate]) -> tuple[Candidate, ...]:
    """The IPs rotation may pick, in the stable order: pool members (active, positive quota), by address."""
    return tuple(sorted((c for c in ips if c.status in POOL_STATUSES and c.daily_quota > 0), key=_address_key))


def require_candidates(tenant: str, ips: Sequence[Candidate]) -> tuple[Candidate, ...]:
    """`eligible(ips)`, or a RotationError saying why nothing can be picked."""
    chosen = eligible(ips)
    if chosen:
        return chosen
    if not ips:
        raise RotationError(f"tenant {tenant!r} has no IPs in the inventory")
    by_status: dict[str, int] = {}
    for c in ips:
        by_status[c.status.value] = by_status.get(c.status.value, 0) + 1
    counts = ", ".join(f"{n} {s}" for s, n in sorted(by_status.items()))
    active = sum(1 for c in ips if c.status in POOL_STATUSES)
    if active:
        raise RotationError(f"tenant {tenant!r} has {active} active IP(s) but none with a positive daily quota "
                            f"({counts})")
    if any(c.status in SENDING_STATUSES for c in ips):
        raise RotationError(f"tenant {tenant!r} has no active IP to pick ({counts}): warming IPs are never "
                            "picked (naming one in X-Virtual-MTA would bypass its cold VirtualMTA cap); without an "
                            "active IP the MTA pool holds the warming IPs, rate-limited: send without X-Virtual-MTA")
    raise RotationError(f"tenant {tenant!r} has no sending IP (active or warming): {counts}")


def round_robin(candidates: Sequence[Candidate], position: int) -> Candidate:
    """The candidate for a 0-based position: each of n candidates once every n positions."""
    if not candidates:
        raise RotationError("no candidates")
    if position < 0:
        raise ValueError("position must be >= 0")
    return candidates[position % len(candidates)]


def share_weight(c: Candidate) -> int:
    """Weighted-random weight: the daily quota, or 0 when the operator set the rotation weight to 0."""
    return c.daily_quota if c.weight > 0 and c.status in POOL_STATUSES else 0


def weighted_pick(candidates: Sequence[Candidate], u: float) -> Candidate:
    """The candidate a uniform number u in [0, 1) selects, each with probability weight / total."""
    if not 0.0 <= u < 1.0:
        raise ValueError("u must be in [0, 1)")
    cumulative = list(itertools.accumulate(share_weight(c) for c in candidates))
    total = cumulative[-1] if cumulative else 0
    if total <= 0:
        raise RotationError("no candidate has a positive weight (quota and rotation weight)")
    # First candidate whose cumulative weight exceeds u * total (zero-weight candidates are skipped).
    return candidates[bisect.bisect_right(cumulative, u * total)]


def weighted_random(candidates: Sequence[Candidate], rng: random.Random) -> Candidate:
    return weighted_pick(candidates, rng.random())


def last_hour_estimate(current: int, previous: int, seconds_into_hour: float) -> float:
    """Sends in the last 60 minutes from two hourly counters (sliding-window estimate)."""
    frac = min(max(seconds_into_hour / HOUR_SECONDS, 0.0), 1.0)
    return current + previous * (1.0 - frac)


def load(c: Candidate, sent_last_hour: float) -> float:
    """Sends in the last hour relative to the hourly capacity (1.0 = at the daily quota's pace)."""
    return sent_last_hour / c.hourly_capacity if c.daily_quota > 0 else float("inf")


def least_used(candidates: Sequence[Candidate], sent_last_hour: Mapping[str, float]) -> tuple[Candidate, float]:
    """The candidate with the lowest load (first in order on ties) and that load."""
    if not candidates:
        raise RotationError("no candidates")
    best = min(range(len(candidates)), key=lambda i: (load(candidates[i], sent_last_hour.get(candidates[i].address,
                                                                                               0.0)), i))
    c = candidates[best]
    return c, load(c, sent_last_hour.get(c.address, 0.0))


def hour_of(epoch_seconds: float) -> int:
    """The UTC hour bucket (hours since the Unix epoch) of a timestamp."""
    return int(epoch_seconds // HOUR_SECONDS)


def pick(tenant: str, mode: RotationMode, ips: Sequence[Candidate], *, position: int = 0,
         rng: random.Random | None = None, sent_last_hour: Mapping[str, float] | None = None) -> Pick:
    """In-memory pick (no durable state): the same rules the database-backed pick applies."""
    candidates = require_candidates(tenant, ips)
    chosen_load: float | None = None
    pos: int | None = None
    if mode == RotationMode.ROUND_ROBIN:
        chosen, pos = round_robin(candidates, position), position
    elif mode == RotationMode.WEIGHTED_RANDOM:
        chosen = weighted_random(candidates, rng or random.Random())
    elif mode == RotationMode.LEAST_USED:
        chosen, chosen_load = least_used(candidates, sent_last_hour or {})
    else:  # pragma: no cover - StrEnum exhausts the modes
        raise ValueError(f"unknown rotation mode {mode!r}")
    return Pick(tenant=tenant, mode=mode, address=chosen.address, vmta=chosen.vmta, status=chosen.status,
                position=pos, load=chosen_load, candidates=len(candidates))
