"""Pure rules of a DNS validation in batches: fold a batch into the carried progress (rows capped, so
the progress crossing continue-as-new stays small at any fleet size), and the one summary alert."""

from __future__ import annotations

from typing import Any

from models.dns_auth import change_alert_text, changes
from models.dns_contracts import DnsBatchResult, DnsProgress

#: Rows kept per kind of change: the alert lists 50 (models.dns_auth.change_alert_text), counts stay exact.
ROWS_KEPT = 50
#: Check errors kept for the alert (the count stays exact).
FAILURES_KEPT = 20
#: The fields of a check summary the alert needs (a batch returns only these, only for changes).
SLIM_FIELDS = ("domain", "tenant", "ip", "state", "previous_state", "failing")


def slim(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: summary.get(k) for k in SLIM_FIELDS}


def changed(summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The summaries whose state changed (models.dns_auth.changes), slimmed, in their order."""
    keep = {id(s) for rows in changes(summaries).values() for s in rows}
    return [slim(s) for s in summaries if id(s) in keep]


def add_batch(p: DnsProgress, batch: DnsBatchResult) -> None:
    """Fold one checked page into the progress and move the cursor past it."""
    st = p.status
    st.done += batch.checked
    st.passing += batch.passing
    st.failing += batch.failing
    st.unknown += batch.unknown
    st.errors += batch.errors
    st.batches += 1
    p.cursor = max(p.cursor, batch.last_id)
    for kind, rows in changes(batch.changes).items():
        if not rows:
            continue
        p.change_counts[kind] = p.change_counts.get(kind, 0) + len(rows)
        kept = p.change_rows.setdefault(kind, [])
        kept += rows[:max(0, ROWS_KEPT - len(kept))]
    p.failures += batch.failures[:max(0, FAILURES_KEPT - len(p.failures))]
    st.changes = [f"{kind}: {s['domain']}" for kind, rows in p.change_rows.items() for s in rows]


def summary_alert(p: DnsProgress) -> tuple[str, str, str] | None:
    """(title, body, severity) of the one message at the end, or None when nothing changed or failed."""
    st = p.status
    text = change_alert_text(p.change_rows, st.total, counts=p.change_counts)
    if not (text or st.errors):
        return None
    title, body, severity = text or (f"DNS checks: {st.errors} domain(s) could not be checked", "", "warning")
    if p.failures:
        more = st.errors - len(p.failures)
        body += ("\n" if body else "") + "Check errors:\n" + "\n".join(f"- {f}" for f in p.failures)
        if more > 0:
            body += f"\n- ... and {more} more"
    return title, body, severity
