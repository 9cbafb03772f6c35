"""Per-IP figures behind the fleet gauges and the Grafana dashboards (issue 15). Pure.

The 7-day bounce and complaint rates are the warmup gate's own: `evaluate_for` over the counts of
the gate window (`gate_window`: the 7 full UTC days before today), with the tenant's thresholds and
confidence. So a dashboard shows the very figures the gate pauses on, lower bound included, and an IP
with nothing sent in the window has no rate (no series) rather than a made-up 0.

Cardinality: every per-IP family has one series per IP (labels tenant, ip, status, phase), so the
endpoint caps the IPs it exports (settings `fleet_metrics_max_ips`, `cap_ips`): the first IPs in
(tenant, address) order are kept and the number left out is exported, never silently dropped.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from models.enums import WarmupPhase
from models.warmup import GateThresholds, WindowStats, days_in_phase
from models.warmup_gate import RateCheck, evaluate_for

#: Label value of `phase` for an IP that is not in a warmup phase (an empty label would read as absent).
NO_PHASE = "none"
_WEEKS = {p.value: i for i, p in enumerate(WarmupPhase, start=1)}


@dataclass(frozen=True)
class IpRow:
    """One sending IP as the gauges label it."""

    tenant: str
    address: str
    status: str
    phase: str | None
    quota: int
    phase_started_on: dt.date | None = None

    @property
    def labels(self) -> list[str]:
        """tenant, ip, status, phase (in the families' label order)."""
        return [self.tenant, self.address, self.status, self.phase or NO_PHASE]


def warmup_week(phase: str | None) -> int | None:
    """week_1 -> 1 ... week_6 -> 6 (a number, so a phase plots as a line over time); None outside warmup."""
    return _WEEKS.get(phase or "")


def phase_days(row: IpRow, today: dt.date) -> int | None:
    """Full days the IP has spent in its current phase (the gate's own count); None without a phase start."""
    if row.phase is None or row.phase_started_on is None:
        return None
    return days_in_phase(row.phase_started_on, today)


def gate_rates(stats: WindowStats, thresholds: GateThresholds, quota: int) -> tuple[RateCheck, RateCheck]:
    """(bounce, complaint) exactly as the warmup gate judges this window: rate, Wilson bounds, verdict."""
    ev = evaluate_for(stats, thresholds, max(quota, 1))
    return ev.bounce, ev.complaint


def cap_ips(rows: Sequence[IpRow], limit: int) -> tuple[list[IpRow], int]:
    """(the first `limit` IPs in (tenant, address) order, how many were left out); limit 0 keeps none."""
    ordered = sorted(rows, key=lambda r: (r.tenant, r.address))
    return ordered[:max(limit, 0)], max(len(ordered) - max(limit, 0), 0)
