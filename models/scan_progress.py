"""Pure rules of a blocklist scan that acts page by page across continue-as-new runs: the summary
keeps exact counts but at most SHOWN names per list (what one run hands the next, the result and the
`summary` query stay small at any fleet size), and the texts of its alerts.
"""

from __future__ import annotations

from models.failover import ScanDecision, listed_by_scan
from models.scan_contracts import ScanProgress, ScanSummary

#: Entries kept per list of the summary (sagas, extended, ...); the counts stay exact.
SHOWN = 100
#: Characters kept of one problem (an activity's error can carry a long cause chain).
PROBLEM_CHARS = 300


def remember(s: ScanSummary, name: str, value: str) -> None:
    """Count `value` under the summary list `name` and keep it while the list is short."""
    items: list[str] = getattr(s, name)
    s.counts[name] = total(s, name) + 1
    if len(items) < SHOWN:
        items.append(value[:PROBLEM_CHARS] if name == "problems" else value)


def total(s: ScanSummary, name: str) -> int:
    """The exact length of a summary list (a summary from before the counts: its length)."""
    return s.counts.get(name, len(getattr(s, name)))


def first_blast_alert(p: ScanProgress, tenant: str) -> bool:
    """True once per scan and tenant (then remembered among the last SHOWN tenants)."""
    if tenant in p.blast_alerted:
        return False
    p.blast_alerted = [*p.blast_alerted[-(SHOWN - 1):], tenant]
    return True


def problems_text(s: ScanSummary) -> str:
    more = total(s, "problems") - len(s.problems)
    return "\n".join(s.problems) + (f"\n... and {more} more" if more > 0 else "")


def blast_radius_alert(d: ScanDecision) -> tuple[str, str]:
    """Title and body of the one urgent alert per scan and tenant over its blast radius, from the
    tenant's first held decision (its evidence names the others: models.failover.tenant_scan_decisions)."""
    zones = ", ".join(sorted({lst.zone for lst in d.listings})) or "listed"
    title = f"Blast radius: {listed_by_scan(d)} IPs of {d.tenant} listed by one scan, none quarantined"
    body = "\n".join([d.blast_radius or "", f"IPs: {', '.join([f'{d.address} ({zones}, this scan)', *d.same_scan])}",
                      "Each failover is held and the IPs still send: check the zone, then approve or deny each "
                      "(`email-engine failover list`). No answer means deny."])
    return title, body
