"""Pure failover rules: circuit breaker, standby order, quarantine verdicts, scan decisions, alert text."""

from __future__ import annotations

import datetime as dt

import pytest

from models.failover import (
    BreakerEvidence,
    BreakerPolicy,
    IpScanState,
    Listing,
    QuarantinePolicy,
    QuarantineVerdict,
    ScanAction,
    StandbyCandidate,
    circuit_breaker,
    failover_summary,
    quarantine_verdict,
    saga_id,
    scan_decision,
    standby_order,
)

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)
POLICY = QuarantinePolicy(days=7, max_extensions=3)


def test_saga_id() -> None:
    assert saga_id("client-1", "127.0.40.5") == "failover/client-1/127.0.40.5"


@pytest.mark.parametrize(("sent", "complaints", "others", "automatic"), [
    (100_000, 99, [], True),  # 0.099% < 0.1%
    (100_000, 100, [], False),  # exactly 0.1% is not under it
    (0, 0, [], True),  # nothing sent: no complaints
    (100_000, 0, ["127.0.40.9 (zen, 2026-11-27 10:00)"], False),
    (100_000, 500, ["127.0.40.9 (zen, 2026-11-27 10:00)"], False),
])
def test_circuit_breaker(sent: int, complaints: int, others: list[str], automatic: bool) -> None:
    ev = BreakerEvidence("client-1", "127.0.40.5", sent, complaints, others, BreakerPolicy(max_complaint_rate=0.001))
    decision = circuit_breaker(ev)
    assert decision.automatic is automatic
    if not automatic:
        assert len(decision.reasons) == (complaints * 1000 >= sent and sent > 0) + bool(others)


def test_circuit_breaker_threshold_is_a_setting() -> None:
    ev = BreakerEvidence("t", "127.0.40.5", 1000, 5, [], BreakerPolicy(max_complaint_rate=0.01))
    assert circuit_breaker(ev).automatic
    ev = BreakerEvidence("t", "127.0.40.5", 1000, 5, [], BreakerPolicy(max_complaint_rate=0.005))
    assert not circuit_breaker(ev).automatic


def test_standby_order() -> None:
    cands = [
        StandbyCandidate("127.0.40.30", "marketing"),
        StandbyCandidate("127.0.40.4", "marketing"),
        StandbyCandidate("127.0.40.20", "transactional"),
        StandbyCandidate("127.0.40.25", "marketing", past_listings=1, last_sent=dt.date(2026, 11, 1)),
        StandbyCandidate("127.0.40.26", "marketing", last_sent=dt.date(2026, 10, 1)),
        StandbyCandidate("127.0.40.27", "marketing", last_sent=dt.date(2026, 11, 1)),
    ]
    assert standby_order(cands, "marketing") == [
        "127.0.40.27", "127.0.40.26",  # history, most recent first
        "127.0.40.4", "127.0.40.30",  # numeric, not string order
        "127.0.40.25",  # listed before
        "127.0.40.20",  # other purpose last
    ]
    assert standby_order(cands, "transactional")[0] == "127.0.40.20"
    assert standby_order([], "marketing") == []


@pytest.mark.parametrize(("until_delta", "extensions", "listed", "verdict"), [
    (dt.timedelta(days=1), 0, True, QuarantineVerdict.WAIT),
    (dt.timedelta(days=1), 0, False, QuarantineVerdict.WAIT),
    (dt.timedelta(0), 0, False, QuarantineVerdict.REST),
    (-dt.timedelta(hours=1), 2, False, QuarantineVerdict.REST),
    (-dt.timedelta(hours=1), 0, True, QuarantineVerdict.EXTEND),
    (-dt.timedelta(hours=1), 2, True, QuarantineVerdict.EXTEND),
    (-dt.timedelta(hours=1), 3, True, QuarantineVerdict.RETIRE),
])
def test_quarantine_verdict(until_delta: dt.timedelta, extensions: int, listed: bool,
                            verdict: QuarantineVerdict) -> None:
    assert quarantine_verdict(NOW, NOW + until_delta, extensions, listed, POLICY) == verdict


def _state(status: str, listed: bool, until: dt.datetime | None = None, ext: int = 0,
           inconclusive: bool = False) -> IpScanState:
    listings = [Listing("zen.test", "127.0.40.5", "127.0.0.2", "SBL")] if listed else []
    return IpScanState("t", "127.0.40.5", status, until, ext, listings, inconclusive)


def test_scan_decisions() -> None:
    past = NOW - dt.timedelta(minutes=1)
    assert scan_decision(_state("active", True), NOW, POLICY).action == ScanAction.START_SAGA
    assert scan_decision(_state("warming", True), NOW, POLICY).action == ScanAction.START_SAGA
    assert scan_decision(_state("active", False), NOW, POLICY).action == ScanAction.NONE
    assert scan_decision(_state("standby", True), NOW, POLICY).action == ScanAction.NONE
    assert scan_decision(_state("quarantine", True, NOW + dt.timedelta(days=2)), NOW, POLICY).action == ScanAction.NONE
    assert scan_decision(_state("quarantine", True, past, 1), NOW, POLICY).action == ScanAction.EXTEND
    assert scan_decision(_state("quarantine", True, past, 3), NOW, POLICY).action == ScanAction.RETIRE
    assert scan_decision(_state("quarantine", False, past), NOW, POLICY).action == ScanAction.REST_AND_REWARM
    # unknown answers never bring a quarantined IP back
    assert scan_decision(_state("quarantine", False, past, inconclusive=True), NOW, POLICY).action == ScanAction.NONE


def test_summary_names_listing_delisting_and_standby() -> None:
    lst = Listing("zen.spamhaus.org", "127.0.40.5", "127.0.0.2", "SBL", "https://check.spamhaus.org/")
    title, body = failover_summary("client-1", "127.0.40.5", [lst], "127.0.40.21", "automatic: healthy", "mta-1 gen 3")
    assert "127.0.40.5" in title and "127.0.40.21" in title
    assert "zen.spamhaus.org" in body and "https://check.spamhaus.org/" in body and "mta-1 gen 3" in body
    _, body = failover_summary("client-1", "127.0.40.5", [lst], None, "denied: no", None)
    assert "no standby" in body
