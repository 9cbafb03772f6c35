"""Pure failover rules (DESIGN.md §4, §5): circuit breaker, standby order, quarantine verdicts,
what a blocklist scan means for each IP, and the operator's alert text. No I/O here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import math
from dataclasses import dataclass, field
from enum import StrEnum

from models.enums import IpStatus

SAGA_PREFIX = "failover"


def saga_id(tenant: str, address: str) -> str:
    """Workflow id of the failover saga for one listed IP: a repeated detection joins it."""
    return f"{SAGA_PREFIX}/{tenant}/{address}"


# --------------------------------------------------------------------------------------------
# Circuit breaker


@dataclass(frozen=True)
class BreakerPolicy:
    max_complaint_rate: float = 0.001  # auto-activate only if the 7-day complaint rate is below
    window_days: int = 7  # both the complaint window and the "other listings" window
    approval_timeout_seconds: int = 24 * 3600  # a held saga denies after this long


@dataclass(frozen=True)
class BreakerEvidence:
    """What the circuit breaker looks at, collected by an activity from the database."""

    tenant: str
    address: str
    sent_7d: int
    complaints_7d: int
    #: Other IPs of the tenant listed within the window: "address (zone, detected_at)".
    other_listings: list[str] = field(default_factory=list)
    policy: BreakerPolicy = field(default_factory=BreakerPolicy)

    @property
    def complaint_rate(self) -> float:
        return self.complaints_7d / self.sent_7d if self.sent_7d else 0.0


@dataclass(frozen=True)
class BreakerDecision:
    automatic: bool
    reasons: list[str]


def circuit_breaker(ev: BreakerEvidence) -> BreakerDecision:
    """Automatic standby activation only for a healthy tenant; otherwise an operator decides."""
    reasons = []
    if ev.complaint_rate >= ev.policy.max_complaint_rate:
        reasons.append(f"7-day complaint rate {ev.complaint_rate:.3%} ({ev.complaints_7d}/{ev.sent_7d}) is not "
                       f"under {ev.policy.max_complaint_rate:.3%}")
    if ev.other_listings:
        reasons.append(f"{len(ev.other_listings)} other IP(s) of {ev.tenant} listed in the last "
                       f"{ev.policy.window_days} days: {', '.join(ev.other_listings)}")
    if reasons:
        return BreakerDecision(False, reasons)
    return BreakerDecision(True, [f"tenant healthy: complaint rate {ev.complaint_rate:.3%} ({ev.complaints_7d}/"
                                  f"{ev.sent_7d}), no other listing in {ev.policy.window_days} days"])


def with_same_scan(ev: BreakerEvidence, same_scan: list[str]) -> BreakerEvidence:
    """Listings of the tenant found by the same scan are evidence for each other, whichever saga
    looks first: they join the database's other listings (one entry per address)."""
    seen = {entry.split(" ", 1)[0] for entry in ev.other_listings}
    extra = [s for s in same_scan if s.split(" ", 1)[0] not in seen and s.split(" ", 1)[0] != ev.address]
    return dataclasses.replace(ev, other_listings=[*ev.other_listings, *extra]) if extra else ev


# --------------------------------------------------------------------------------------------
# Blast radius


def blast_radius_limit(sending: int, share: float) -> int:
    """How many of a tenant's `sending` IPs one scan may quarantine automatically: the share, but at
    least one (a single listing of a small pool still fails over)."""
    return max(1, math.floor(sending * share + 1e-9))


def blast_radius_hold(listed: int, sending: int, share: float) -> str | None:
    """The evidence text when one scan lists more of a tenant's sending IPs than the blast radius
    allows (a zone gone bad must not empty a pool), else None."""
    limit = blast_radius_limit(sending, share)
    if listed <= limit:
        return None
    return (f"blast radius: this scan lists {listed} of the tenant's {sending} sending IPs, more than "
            f"{share:.0%} (at most {limit} quarantined automatically): none is quarantined without an operator")


# --------------------------------------------------------------------------------------------
# Standby choice


@dataclass(frozen=True)
class StandbyCandidate:
    address: str
    purpose: str
    past_listings: int = 0  # blocklist events ever recorded for this IP
    last_sent: dt.date | None = None  # last day with sent mail (None: never sent)


def standby_order(candidates: list[StandbyCandidate], listed_purpose: str) -> list[str]:
    """Order to try standbys in: same purpose as the listed IP first, then a clean record (fewest
    past listings), then an IP with sending history (it can resume at a later phase; most recent
    first), then the address (numeric order) so the choice is deterministic."""

    def key(c: StandbyCandidate) -> tuple[int, int, int, int, int]:
        ip = ipaddress.ip_address(c.address)
        recency = -c.last_sent.toordinal() if c.last_sent else 0
        return (c.purpose != listed_purpose, c.past_listings, c.last_sent is None, recency,
                int(ip) + (ip.version << 128))

    return [c.address for c in sorted(candidates, key=key)]


# --------------------------------------------------------------------------------------------
# Quarantine


class QuarantineVerdict(StrEnum):
    WAIT = "wait"  # quarantine not over yet: nothing to do
    EXTEND = "extend"  # quarantine over, still listed: another period
    RETIRE = "retire"  # still listed after the maximum number of extensions
    REST = "rest"  # quarantine over and clean: resting, then re-warm


@dataclass(frozen=True)
class QuarantinePolicy:
    days: int = 7
    max_extensions: int = 3


def quarantine_until(now: dt.datetime, policy: QuarantinePolicy) -> dt.datetime:
    return now + dt.timedelta(days=policy.days)


def quarantine_verdict(now: dt.datetime, until: dt.datetime | None, extensions: int, listed: bool,
                       policy: QuarantinePolicy) -> QuarantineVerdict:
    """A quarantined IP at scan time. Decisions are taken when the quarantine period is over: clean
    -> resting (then re-warm); still listed -> extend, unless it was already extended
    `max_extensions` times -> retiring. While the period runs, nothing changes."""
    if until is not None and now < until:
        return QuarantineVerdict.WAIT
    if not listed:
        return QuarantineVerdict.REST
    if extensions >= policy.max_extensions:
        return QuarantineVerdict.RETIRE
    return QuarantineVerdict.EXTEND


# --------------------------------------------------------------------------------------------
# Scan results -> actions


class ScanAction(StrEnum):
    NONE = "none"
    START_SAGA = "start_saga"
    RESUME_SAGA = "resume_saga"  # quarantined, but its failover never completed: run it again
    EXTEND = "extend"
    RETIRE = "retire"
    REST_AND_REWARM = "rest_and_rewarm"


@dataclass(frozen=True)
class Listing:
    """One `listed` answer for an IP or its domain (unknowns and broken zones never get here)."""

    zone: str
    target: str  # the IP address or the domain that is listed
    code: str | None = None
    meaning: str | None = None
    delist_url: str | None = None

    def describe(self) -> str:
        what = f"{self.target} on {self.zone}"
        if self.code:
            what += f" ({self.code}{': ' + self.meaning if self.meaning else ''})"
        return what


@dataclass(frozen=True)
class IpScanState:
    tenant: str
    address: str
    status: str
    quarantine_until: dt.datetime | None
    quarantine_extensions: int
    listings: list[Listing]
    #: The scan could not tell (unknown answers or only broken zones): never acted on.
    inconclusive: bool = False
    #: Quarantined by a failover that never completed (failed, or stopped before recording an outcome).
    saga_unfinished: bool = False


@dataclass(frozen=True)
class ScanDecision:
    tenant: str
    address: str
    action: ScanAction
    listings: list[Listing]
    detail: str = ""
    #: Other IPs of the tenant this scan starts a failover for: "address (zones)" (breaker evidence).
    same_scan: list[str] = field(default_factory=list)
    #: Set when this scan exceeds the tenant's blast radius: the saga holds before quarantining.
    blast_radius: str | None = None


#: Same-scan evidence names at most this many other IPs, then their number: a decision's size stays
#: bounded when a zone lists a whole tenant (each saga's input, and the scan's pages, carry it).
SAME_SCAN_SHOWN = 50


def tenant_scan_decisions(decisions: list[ScanDecision], sending: dict[str, int],
                          share: float) -> list[ScanDecision]:
    """One decision per scan and tenant: each new failover of a tenant gets the tenant's other new
    listings of this scan as evidence, and all of them hold for an operator when together they exceed
    the blast radius (`sending`: the tenant's active and warming IPs)."""
    new: dict[str, list[ScanDecision]] = {}
    for d in decisions:
        if d.action == ScanAction.START_SAGA:
            new.setdefault(d.tenant, []).append(d)
    # The first SAME_SCAN_SHOWN + 1 of each tenant, written once: each decision takes them minus itself.
    shown = {t: [(o.address, f"{o.address} ({', '.join(sorted({lst.zone for lst in o.listings})) or 'listed'}, "
                             "this scan)") for o in group[:SAME_SCAN_SHOWN + 1]] for t, group in new.items()}
    out = []
    for d in decisions:
        if d.action != ScanAction.START_SAGA:
            out.append(d)
            continue
        group = new[d.tenant]
        siblings = [text for address, text in shown[d.tenant] if address != d.address][:SAME_SCAN_SHOWN]
        if len(group) - 1 > SAME_SCAN_SHOWN:
            siblings.append(f"+{len(group) - 1 - SAME_SCAN_SHOWN}{_MORE} {d.tenant} (listed by this scan)")
        hold = blast_radius_hold(len(group), sending.get(d.tenant, 0), share)
        out.append(dataclasses.replace(d, same_scan=siblings, blast_radius=hold))
    return out


_MORE = " more IPs of"


def listed_by_scan(d: ScanDecision) -> int:
    """How many new listings of d's tenant the scan found, from the decision alone: itself, the
    siblings it names and the "+N more" tenant_scan_decisions writes past SAME_SCAN_SHOWN."""
    n = 1
    for text in d.same_scan:
        count, more, _ = text.partition(_MORE)
        n += int(count[1:]) if more and count[:1] == "+" and count[1:].isdigit() else 1
    return n


def scan_decision(state: IpScanState, now: dt.datetime, policy: QuarantinePolicy) -> ScanDecision:
    """What one IP's scan result means. A listing of an IP's own domain counts as a listing of the
    IP (the two send together). Inconclusive answers never move a quarantined IP back to sending."""
    listed = bool(state.listings)
    status = IpStatus(state.status)
    action = ScanAction.NONE
    detail = ""
    if status in (IpStatus.WARMING, IpStatus.ACTIVE):
        if listed:
            action = ScanAction.START_SAGA
            detail = "new listing of a sending IP"
    elif status == IpStatus.QUARANTINE:
        if state.saga_unfinished:
            return ScanDecision(state.tenant, state.address, ScanAction.RESUME_SAGA, list(state.listings),
                                "quarantined by a failover that did not complete: run it again")
        if not listed and state.inconclusive:
            return ScanDecision(state.tenant, state.address, ScanAction.NONE, [], "inconclusive answers")
        verdict = quarantine_verdict(now, state.quarantine_until, state.quarantine_extensions, listed, policy)
        action = {QuarantineVerdict.WAIT: ScanAction.NONE, QuarantineVerdict.EXTEND: ScanAction.EXTEND,
                  QuarantineVerdict.RETIRE: ScanAction.RETIRE,
                  QuarantineVerdict.REST: ScanAction.REST_AND_REWARM}[verdict]
        detail = {QuarantineVerdict.WAIT: "quarantine running",
                  QuarantineVerdict.EXTEND: f"still listed: extension {state.quarantine_extensions + 1}"
                                            f"/{policy.max_extensions}",
                  QuarantineVerdict.RETIRE: f"listed again after {state.quarantine_extensions} extensions",
                  QuarantineVerdict.REST: "quarantine over and clean"}[verdict]
    return ScanDecision(state.tenant, state.address, action, list(state.listings), detail)


# --------------------------------------------------------------------------------------------
# Alert text


def failover_summary(tenant: str, address: str, listings: list[Listing], standby: str | None,
                     decision: str, deployed: str | None) -> tuple[str, str]:
    """Title and body of the operator's alert after a failover: what, where, how to delist, what
    was activated, what to do."""
    title = f"Failover {tenant}: {address} quarantined" + (f", standby {standby} warming" if standby else "")
    lines = [f"Listed: {address} (tenant {tenant})"]
    for lst in listings:
        lines.append(f"  - {lst.describe()}" + (f"  delist: {lst.delist_url}" if lst.delist_url else ""))
    lines.append(f"Decision: {decision}")
    lines.append(f"Activated: {standby} enters warming at the phase its history allows" if standby
                 else "Activated: no standby (the pool continues without the listed IP)")
    if deployed:
        lines.append(f"MTA: {deployed}")
    lines.append("To do: find the cause (list, campaign, source), request delisting at the links above; "
                 "the IP returns through resting and re-warming once clean and its quarantine is over.")
    return title, "\n".join(lines)
