"""The reference warmup schedule: phase -> daily quota, and the quota of an active IP."""

from __future__ import annotations

from dataclasses import dataclass

from models.enums import IpStatus, WarmupPhase

PHASE_ORDER: tuple[WarmupPhase, ...] = tuple(WarmupPhase)

REFERENCE_QUOTAS: dict[WarmupPhase, int] = {
    WarmupPhase.WEEK_1: 50,
    WarmupPhase.WEEK_2: 100,
    WarmupPhase.WEEK_3: 250,
    WarmupPhase.WEEK_4: 500,
    WarmupPhase.WEEK_5: 1_000,
    WarmupPhase.WEEK_6: 2_000,
}
ACTIVE_QUOTA = 10_000
MIN_DAYS_PER_PHASE = 7


@dataclass(frozen=True)
class Schedule:
    """A tenant's warmup schedule (the reference one unless the tenant overrides it)."""

    quotas: tuple[tuple[WarmupPhase, int], ...] = tuple(REFERENCE_QUOTAS.items())
    active_quota: int = ACTIVE_QUOTA
    min_days: int = MIN_DAYS_PER_PHASE
    #: per-phase minimum days where a tenant's plan sets them (others: min_days)
    min_days_by_phase: tuple[tuple[WarmupPhase, int], ...] = ()

    def days(self, phase: WarmupPhase) -> int:
        """Minimum days in `phase`."""
        return dict(self.min_days_by_phase).get(phase, self.min_days)

    def quota(self, phase: WarmupPhase | None) -> int:
        if phase is None:
            return self.active_quota
        return dict(self.quotas)[phase]

    def next_phase(self, phase: WarmupPhase) -> WarmupPhase | None:
        """The phase after `phase`, or None when the IP becomes active."""
        order = [p for p, _ in self.quotas]
        i = order.index(phase)
        return order[i + 1] if i + 1 < len(order) else None


REFERENCE_SCHEDULE = Schedule()


def default_quota(status: IpStatus, phase: WarmupPhase | None, schedule: Schedule = REFERENCE_SCHEDULE) -> int:
    """Daily quota implied by status and phase: only warming and active IPs send."""
    if status == IpStatus.WARMING:
        return schedule.quota(phase)
    if status == IpStatus.ACTIVE:
        return schedule.active_quota
    return 0


def default_weight(status: IpStatus, quota: int, schedule: Schedule = REFERENCE_SCHEDULE) -> int:
    """Rotation weight 0-100: an IP's quota as a share of a fully active IP's quota."""
    if status not in (IpStatus.WARMING, IpStatus.ACTIVE) or quota <= 0:
        return 0
    return max(1, min(100, round(100 * quota / schedule.active_quota)))
