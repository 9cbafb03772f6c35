"""Paging a scan's decisions by size: what crosses Temporal stays far below its 2 MB payload limit.

A decision's size is bounded (its listings by the catalogue's zones, its same-scan evidence by
models.failover.SAME_SCAN_SHOWN), so a page of at most PAGE_BYTES plus one decision is too, whatever
the number of listings (a zone listing a whole 100,000-IP fleet is the worst case).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from models.failover import ScanDecision

#: Target JSON size of one page of decisions (the first travels in the scan's result). The scan acts
#: page by page and may continue as new between pages only: 64 KB holds at most about 390 decisions
#: (the smallest: a clean quarantine's end, 169 bytes, two activities, 12 history events), so one page
#: adds at most about 4,700 events (7,000 if every re-warm were refused and alerted), and a run stays
#: far below the 51,200-event limit whatever the server's continue-as-new suggestion.
PAGE_BYTES = 64 * 1024


#: JSON overhead of a decision's and a listing's keys and punctuation beyond their values.
_DECISION_KEYS = 110
_LISTING_KEYS = 70


def decision_size(d: ScanDecision) -> int:
    """JSON bytes of one decision as Temporal's default converter writes it (compact dataclass JSON),
    from its values without building the JSON (a worst-case scan has 100,000 of them)."""
    values = [d.tenant, d.address, d.action.value, d.detail, d.blast_radius or "", *d.same_scan]
    for lst in d.listings:
        values += [lst.zone, lst.target, lst.code or "", lst.meaning or "", lst.delist_url or ""]
    return (sum(len(json.dumps(v)) for v in values) + _DECISION_KEYS + 3 * len(d.same_scan)
            + _LISTING_KEYS * len(d.listings))


def paginate(decisions: Sequence[ScanDecision], page_bytes: int = PAGE_BYTES) -> list[list[ScanDecision]]:
    """Consecutive pages, each closed once it reaches page_bytes (at least one decision per page);
    at least one (possibly empty) page."""
    pages: list[list[ScanDecision]] = [[]]
    size = 0
    for d in decisions:
        if pages[-1] and size >= page_bytes:
            pages.append([])
            size = 0
        pages[-1].append(d)
        size += decision_size(d) + 1
    return pages
