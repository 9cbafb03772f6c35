"""Pure rules of the batched DNS validation: progress folded batch by batch, evidence capped, counts exact."""

from __future__ import annotations

from models.dns_contracts import DnsBatchResult, DnsProgress
from models.dns_progress import FAILURES_KEPT, ROWS_KEPT, add_batch, changed, summary_alert


def _row(i: int, state: str, before: str | None) -> dict[str, object]:
    return {"domain": f"d{i}.example", "tenant": "t", "ip": f"192.0.2.{i % 250}", "state": state,
            "previous_state": before, "failing": [] if state == "pass" else ["DKIM invalid: x"]}


def test_rows_are_capped_counts_are_not() -> None:
    p = DnsProgress()
    p.status.total = 1000
    for b in range(5):  # 5 batches of 40 newly failing domains, and 10 errors each
        rows = [_row(b * 40 + i, "fail", "pass") for i in range(40)]
        add_batch(p, DnsBatchResult(checked=50, failing=40, errors=10, last_id=(b + 1) * 50, more=True,
                                    changes=rows, failures=[f"x{b}-{i}: boom" for i in range(10)]))
    assert (p.status.done, p.status.failing, p.status.errors, p.status.batches, p.cursor) == (250, 200, 50, 5, 250)
    assert p.change_counts == {"failing": 200} and len(p.change_rows["failing"]) == ROWS_KEPT
    assert len(p.failures) == FAILURES_KEPT and len(p.status.changes) == ROWS_KEPT
    text = summary_alert(p)
    assert text is not None
    title, body, severity = text
    assert title == "DNS checks: 200 newly failing (of 1000 domains)" and severity == "critical"
    assert "- ... and 150 more" in body and f"- ... and {50 - FAILURES_KEPT} more" in body


def test_only_changes_travel_and_a_quiet_day_says_nothing() -> None:
    summaries = [dict(_row(1, "pass", "pass"), items={"spf": {}}), dict(_row(2, "fail", "pass"), items={"spf": {}}),
                 dict(_row(3, "pass", None), items={})]
    slim = changed(summaries)
    assert [s["domain"] for s in slim] == ["d2.example"] and "items" not in slim[0]
    p = DnsProgress()
    add_batch(p, DnsBatchResult(checked=3, passing=3, last_id=3))
    assert summary_alert(p) is None and p.status.changes == []
