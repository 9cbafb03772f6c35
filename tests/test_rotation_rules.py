"""Pure rotation rules (models.rotation): no database, no network."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from models.enums import IpStatus
from models.rotation import (
    Candidate,
    RotationError,
    RotationMode,
    eligible,
    last_hour_estimate,
    least_used,
    pick,
    require_candidates,
    round_robin,
    weighted_pick,
    weighted_random,
)


def ip(n: int, status: IpStatus = IpStatus.ACTIVE, quota: int = 10_000, weight: int = 100) -> Candidate:
    return Candidate(address=f"127.0.60.{n}", vmta=f"vmta-t-{n}", status=status, daily_quota=quota, weight=weight,
                     ip_id=n)


NON_SENDING = (IpStatus.STANDBY, IpStatus.QUARANTINE, IpStatus.RESTING, IpStatus.RETIRING)
#: Warming IPs send, but only as cold VirtualMTAs of active ones: never picked (X-Virtual-MTA would bypass the cap).
NEVER_PICKED = (*NON_SENDING, IpStatus.WARMING)


def test_eligible_keeps_only_pool_members_with_a_quota_in_address_order() -> None:
    ips = [ip(10), ip(2, quota=50), ip(3, IpStatus.WARMING, 50), *(ip(20 + i, s) for i, s in enumerate(NON_SENDING)),
           ip(9, quota=0), ip(1)]
    got = eligible(ips)
    # Numeric, not textual, order: .1, .2, .10 (".10" < ".2" as text).
    assert [c.address for c in got] == ["127.0.60.1", "127.0.60.2", "127.0.60.10"]
    assert eligible(reversed(ips)) == got


def test_ipv4_before_ipv6_in_the_stable_order() -> None:
    v6 = Candidate(address="::1", vmta="v6", status=IpStatus.ACTIVE, daily_quota=10, weight=1)
    assert [c.address for c in eligible([v6, ip(5)])] == ["127.0.60.5", "::1"]


@pytest.mark.parametrize("status", NEVER_PICKED)
def test_no_mode_ever_picks_a_warming_or_non_sending_ip(status: IpStatus) -> None:
    ips = [ip(1, status), ip(2), ip(3, status)]
    rng = random.Random(7)
    for mode in RotationMode:
        for position in range(30):
            chosen = pick("t", mode, ips, position=position, rng=rng, sent_last_hour={"127.0.60.2": 1e9})
            assert chosen.address == "127.0.60.2" and chosen.vmta == "vmta-t-2"


def test_precise_errors_when_nothing_can_be_picked() -> None:
    with pytest.raises(RotationError, match=r"'t' has no sending IP \(active or warming\): 1 quarantine, 2 standby"):
        require_candidates("t", [ip(1, IpStatus.STANDBY), ip(2, IpStatus.QUARANTINE), ip(3, IpStatus.STANDBY)])
    with pytest.raises(RotationError, match="has no IPs in the inventory"):
        require_candidates("t", [])
    with pytest.raises(RotationError, match="none with a positive daily quota"):
        require_candidates("t", [ip(1, quota=0)])
    with pytest.raises(RotationError, match=r"'t' has no active IP to pick \(2 standby, 1 warming\): warming IPs "
                                            r"are never picked .*send without X-Virtual-MTA"):
        require_candidates("t", [ip(1, IpStatus.WARMING, 50), ip(2, IpStatus.STANDBY), ip(3, IpStatus.STANDBY)])
    for mode in RotationMode:
        with pytest.raises(RotationError):
            pick("t", mode, [ip(1, IpStatus.RETIRING)])


def test_round_robin_cycles_in_order_and_is_exact() -> None:
    cands = eligible([ip(3), ip(1), ip(2)])
    assert [round_robin(cands, p).address[-1] for p in range(7)] == list("1231231")
    counts = Counter(round_robin(cands, p).address for p in range(3 * 400))
    assert set(counts.values()) == {400}
    with pytest.raises(ValueError):
        round_robin(cands, -1)


def test_weighted_pick_boundaries_are_exact() -> None:
    cands = [ip(1, quota=100), ip(2, quota=0), ip(3, quota=300)]
    assert weighted_pick(cands, 0.0).address == "127.0.60.1"
    assert weighted_pick(cands, 0.2499).address == "127.0.60.1"
    assert weighted_pick(cands, 0.25).address == "127.0.60.3"  # the zero-quota IP is skipped
    assert weighted_pick(cands, 0.9999).address == "127.0.60.3"
    with pytest.raises(ValueError):
        weighted_pick(cands, 1.0)
    with pytest.raises(RotationError, match="positive weight"):
        weighted_pick([ip(1, weight=0)], 0.5)


def test_weighted_random_is_deterministic_given_the_random_source() -> None:
    cands = eligible([ip(n) for n in range(1, 6)])
    r1, r2 = random.Random(42), random.Random(42)
    seq1 = [weighted_random(cands, r1).address for _ in range(50)]
    seq2 = [weighted_random(cands, r2).address for _ in range(50)]
    assert seq1 == seq2 and len(set(seq1)) > 1


def test_weighted_random_share_follows_quota_within_tolerance() -> None:
    # 4 active IPs at 10,000/day and three at 50, 250, 1,000; a warming IP (never picked).
    cands = eligible([ip(1), ip(2), ip(3), ip(4), ip(5, quota=50), ip(6, quota=250), ip(7, quota=1_000),
                      ip(8, IpStatus.STANDBY, 0), ip(9, weight=0), ip(10, IpStatus.WARMING, 1_000)])
    total = 4 * 10_000 + 50 + 250 + 1_000
    n = 200_000
    rng = random.Random(20261128)
    counts = Counter(weighted_random(cands, rng).address for _ in range(n))
    assert not {"127.0.60.8", "127.0.60.9", "127.0.60.10"} & set(counts)  # standby; weight 0; warming
    for c in cands:
        if c.weight == 0:
            continue
        p = c.daily_quota / total
        sd = math.sqrt(n * p * (1 - p))
        assert abs(counts[c.address] - n * p) < 5 * sd, (c.address, counts[c.address], n * p)
    # The small IPs' shares are in the ratio of their quotas (50 : 250 : 1,000), not equal.
    assert counts["127.0.60.5"] < counts["127.0.60.6"] < counts["127.0.60.7"]


def test_least_used_lowest_relative_load_and_stable_ties() -> None:
    cands = eligible([ip(1), ip(2, quota=240), ip(3)])
    # Capacities per hour: 416.7, 10, 416.7. Sends: 100 (0.24), 5 (0.5), 100 (0.24): tie -> .1 (first).
    chosen, load = least_used(cands, {"127.0.60.1": 100, "127.0.60.2": 5, "127.0.60.3": 100})
    assert chosen.address == "127.0.60.1" and load == pytest.approx(0.24)
    chosen, _ = least_used(cands, {"127.0.60.1": 101, "127.0.60.2": 5, "127.0.60.3": 100})
    assert chosen.address == "127.0.60.3"
    # The small IP with few absolute sends is not picked once it is past its pace.
    # Sends 300 (0.72), 7 (0.70), 300 (0.72) -> the small IP; 8 sends (0.80) is past the others' pace.
    chosen, _ = least_used(cands, {"127.0.60.1": 300, "127.0.60.2": 7, "127.0.60.3": 300})
    assert chosen.address == "127.0.60.2"
    chosen, _ = least_used(cands, {"127.0.60.1": 300, "127.0.60.2": 8, "127.0.60.3": 300})
    assert chosen.address == "127.0.60.1"
    # Missing counts are zero sends: all at 0 -> first in order.
    assert least_used(cands, {})[0].address == "127.0.60.1"


def test_least_used_fed_back_spreads_by_capacity() -> None:
    """Repeated least-used picks, each recorded, keep every IP at the same pace (share = quota share)."""
    cands = eligible([ip(1, quota=2_400), ip(2, quota=1_200), ip(3, quota=240), ip(4, IpStatus.WARMING, 240)])
    sent: Counter[str] = Counter()
    for _ in range(3_840):
        chosen, _ = least_used(cands, sent)
        sent[chosen.address] += 1
    assert sent == {"127.0.60.1": 2_400, "127.0.60.2": 1_200, "127.0.60.3": 240}


def test_last_hour_estimate_slides_over_two_buckets() -> None:
    assert last_hour_estimate(10, 100, 0) == 110
    assert last_hour_estimate(10, 100, 1800) == 60
    assert last_hour_estimate(10, 100, 3600) == 10
    assert last_hour_estimate(10, 100, 5000) == 10


def test_pick_header_and_dict() -> None:
    chosen = pick("t", RotationMode.ROUND_ROBIN, [ip(4)], position=5)
    assert chosen.header == "X-Virtual-MTA: vmta-t-4"
    assert chosen.to_dict()["ip"] == "127.0.60.4" and chosen.to_dict()["position"] == 5
    with pytest.raises(ValueError):
        RotationMode("random")
