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
    ScanDecision,
    StandbyCandidate,
    blast_radius_hold,
    blast_radius_limit,
    circuit_breaker,
    failover_summary,
    quarantine_verdict,
    saga_id,
    scan_decision,
    standby_order,
    tenant_scan_decisions,
    with_same_scan,
)
from models.failover_contracts import Compensation, FailoverDecision, decision_problem

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


# --- one decision per scan and tenant, blast radius, answers, unfinished sagas (issue 11) --------------------


def _start(tenant: str, address: str, zone: str = "zen.test") -> ScanDecision:
    return ScanDecision(tenant, address, ScanAction.START_SAGA, [Listing(zone, address)], "new listing")


def test_blast_radius_limit_allows_one_and_the_share() -> None:
    assert [blast_radius_limit(n, 0.2) for n in (1, 4, 5, 9, 10, 25, 40)] == [1, 1, 1, 1, 2, 5, 8]
    assert blast_radius_hold(1, 1, 0.2) is None  # a single listing of a tiny pool still fails over
    assert blast_radius_hold(8, 40, 0.2) is None
    held = blast_radius_hold(9, 40, 0.2)
    assert held and "9 of the tenant's 40" in held and "20%" in held and "at most 8" in held
    assert blast_radius_hold(1, 0, 0.2) is None  # nothing sending: the one listing is not a wave


def test_tenant_scan_decisions_give_siblings_and_one_blast_verdict() -> None:
    ds = [_start("a", "10.0.0.1"), _start("a", "10.0.0.2", "dbl.test"), _start("b", "10.0.1.1"),
          ScanDecision("a", "10.0.0.9", ScanAction.EXTEND, [Listing("zen.test", "10.0.0.9")])]
    out = {d.address: d for d in tenant_scan_decisions(ds, {"a": 4, "b": 10}, 0.2)}
    assert out["10.0.0.1"].same_scan == ["10.0.0.2 (dbl.test, this scan)"]
    assert out["10.0.0.2"].same_scan == ["10.0.0.1 (zen.test, this scan)"]
    assert out["10.0.1.1"].same_scan == [] and out["10.0.1.1"].blast_radius is None
    assert out["10.0.0.1"].blast_radius == out["10.0.0.2"].blast_radius and out["10.0.0.1"].blast_radius
    assert out["10.0.0.9"].same_scan == [] and out["10.0.0.9"].blast_radius is None  # not a new listing
    ok = {d.address: d for d in tenant_scan_decisions(ds, {"a": 10}, 0.2)}
    assert ok["10.0.0.1"].blast_radius is None


def test_same_scan_listings_close_the_breaker_whoever_looks_first() -> None:
    ev = BreakerEvidence("a", "10.0.0.1", sent_7d=100_000, complaints_7d=0,
                         other_listings=["10.0.0.2 (zen.test, 2026-11-28 10:00)"])
    merged = with_same_scan(ev, ["10.0.0.2 (zen.test, this scan)", "10.0.0.3 (zen.test, this scan)"])
    assert merged.other_listings == ["10.0.0.2 (zen.test, 2026-11-28 10:00)", "10.0.0.3 (zen.test, this scan)"]
    assert not circuit_breaker(merged).automatic
    alone = BreakerEvidence("a", "10.0.0.1", sent_7d=100_000, complaints_7d=0)
    assert with_same_scan(alone, []) is alone and circuit_breaker(alone).automatic


def test_decision_problem() -> None:
    assert decision_problem("checked", True, False, "run-1") is None
    assert decision_problem(FailoverDecision("checked", "run-1"), True, False, "run-1") is None
    assert decision_problem(FailoverDecision("checked"), True, False, "run-1") is None
    stale = decision_problem(FailoverDecision("checked", "run-0"), True, False, "run-1")
    assert stale and "run-0" in stale and "not the current run" in stale
    assert "not waiting" in (decision_problem("x", False, False, "r") or "")
    assert "not waiting" in (decision_problem("x", True, True, "r") or "")
    assert "reason" in (decision_problem("  ", True, False, "r") or "")


def test_unfinished_saga_is_run_again_before_quarantine_verdicts() -> None:
    over = NOW - dt.timedelta(hours=1)
    state = IpScanState("a", "10.0.0.1", "quarantine", over, 0, [], saga_unfinished=True)
    assert scan_decision(state, NOW, POLICY).action == ScanAction.RESUME_SAGA
    running = IpScanState("a", "10.0.0.1", "quarantine", NOW + dt.timedelta(days=2), 0, [], saga_unfinished=True)
    assert scan_decision(running, NOW, POLICY).action == ScanAction.RESUME_SAGA
    done = IpScanState("a", "10.0.0.1", "quarantine", NOW + dt.timedelta(days=2), 0, [])
    assert scan_decision(done, NOW, POLICY).action == ScanAction.NONE


def test_compensation_describes_its_failure() -> None:
    c = Compensation("cancel_warmup", "10.0.0.5")
    assert c.describe() == "cancel_warmup 10.0.0.5"
    c.problem = "10.0.0.5 is warming (week_1) with quota 50"
    assert c.describe() == "cancel_warmup 10.0.0.5 FAILED: 10.0.0.5 is warming (week_1) with quota 50"
