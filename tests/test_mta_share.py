"""Warming traffic share: the rendered reference fleet against the pure model of the MTAs' documented
selection rules (models/mta_share.py). The model reads the rendered text (parsed), quotas to compare
with come from the inventory: for 10 %, 100 % and 300 % of a tenant's capacity each warming IP is
offered at most its daily quota, at least 90 % of it from 100 % on, and nothing is left queued on it."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from activities.mta.base import backend_for
from models.enums import IpStatus, MtaBackend
from models.inventory import parse
from models.mta_render import postfix as pf_render
from models.mta_render.cold_vmta import PROVIDERS, split_quota
from models.mta_render.from_inventory import snapshot_from_inventory
from models.mta_share import (
    REFERENCE_MIX,
    parse_pmta,
    parse_postfix,
    pmta_day,
    postfix_day,
    split_counts,
)
from models.snapshot import FleetSnapshot
from tests.conftest import REFERENCE_INVENTORY
from tests.mta_render_support import parse_pmta as grammar_check

VOLUMES = (0.1, 1.0, 3.0)


@pytest.fixture(scope="module")
def fleet() -> FleetSnapshot:
    return snapshot_from_inventory(parse(REFERENCE_INVENTORY.read_text())).for_host("pmta-1")


@pytest.mark.parametrize("fraction", VOLUMES)
def test_reference_fleet_warming_share_on_powermta(fleet: FleetSnapshot, fraction: float) -> None:
    files = dict(backend_for(MtaBackend.POWERMTA).render(fleet).files)
    grammar_check(files)  # only directives of the guide
    cfg = parse_pmta(files)
    for t in fleet.tenants:
        capacity = sum(ip.daily_quota for ip in t.sending_ips)
        assert capacity == 40 * 10_000 + 50 + 100 + 250 + 500 + 1000 + 50 + 250
        volume = round(capacity * fraction)
        day = pmta_day(cfg, t.feeder_ip, volume, REFERENCE_MIX)
        assert sum(o.offered for o in day.values() if o.ip in {ip.address for ip in t.ips}) == volume
        warming = [ip for ip in t.ips if ip.status == IpStatus.WARMING]
        assert len(warming) == 7
        for ip in warming:
            o = day[ip.vmta]
            assert o.ip == ip.address and o.daily_cap == ip.daily_quota  # the MTA's own hard cap
            assert o.offered <= ip.daily_quota, (ip.address, o)
            assert o.queued == 0  # nothing waits beyond what it may send today
            if fraction >= 1:
                assert o.offered >= 0.9 * ip.daily_quota, (ip.address, o)
        # non-sending IPs get nothing
        for ip in t.ips:
            if not ip.sending:
                assert day[ip.vmta].offered == 0
        if fraction <= 0.1:
            assert all(day[ip.vmta].queued == 0 for ip in t.ips)


def test_the_old_layout_fails_the_same_model(fleet: FleetSnapshot) -> None:
    """Warming IPs as plain pool members (the layout before cold VirtualMTAs): a round-robin pool offers
    a week_1 IP an active IP's share, ~170 times its quota at 300 %; the model catches it."""
    t = fleet.tenants[0]
    sending = [ip for ip in t.ips if ip.sending]
    text = "".join(f"<virtual-mta {ip.vmta}>\n smtp-source-host {ip.address} {ip.hostname}\n"
                   f" max-smtp-msg-rate {ip.daily_quota}/d\n</virtual-mta>\n" for ip in sending)
    text += f"<virtual-mta-pool p>\n{''.join(f' virtual-mta {ip.vmta}' + chr(10) for ip in sending)}" \
            f"</virtual-mta-pool>\n<source {t.feeder_ip}>\n default-virtual-mta p\n</source>\n"
    day = pmta_day(parse_pmta({"old": text}), t.feeder_ip, 3 * 402_200)
    week1 = next(ip for ip in sending if ip.phase and ip.phase.value == "week_1")
    assert day[week1.vmta].offered == pytest.approx(3 * 402_200 / 47, rel=0.01)
    assert day[week1.vmta].queued > 25_000


def test_model_rules_on_small_configs() -> None:
    """Rules 2-4: round-robin pool, per-domain cold limits with a ramp and several cold VMTAs, rate cap;
    a <domain *> limit counts each recipient domain separately (why the renderer names providers)."""
    text = """
<virtual-mta w1>
  smtp-source-host 10.0.0.1 a.example.com
  max-smtp-msg-rate 1000/d
  cold-virtual-mta c1
  cold-virtual-mta c2
  <domain gmail.com>
    max-cold-virtual-mta-msg 10/d,20/d
  </domain>
</virtual-mta>
<virtual-mta w2>
  smtp-source-host 10.0.0.2 b.example.com
  max-smtp-msg-rate 100/h # 2400 a day
  cold-virtual-mta c3
  <domain *>
    max-cold-virtual-mta-msg 5/d
  </domain>
</virtual-mta>
<virtual-mta c1>
  smtp-source-host 10.0.0.3 c.example.com
  max-smtp-msg-rate 15/d
</virtual-mta>
<virtual-mta c2>
</virtual-mta>
<virtual-mta c3>
</virtual-mta>
<virtual-mta-pool p>
  virtual-mta w1
  virtual-mta w2
</virtual-mta-pool>
<source 192.0.2.1>
  default-virtual-mta p
</source>
"""
    cfg = parse_pmta({"x": text})
    mix = {"gmail.com": 0.5, **{f"d{i}.example": 0.05 for i in range(10)}}
    day1 = pmta_day(cfg, "192.0.2.1", 4000, mix, day=1)
    assert (day1["c1"].offered, day1["c2"].offered) == (10, 10)  # 10/d each, round-robin
    assert day1["c3"].offered == 55  # 5 per domain x 11 domains: <domain *> is per domain
    assert day1["w1"].offered == 2000 - 20 and day1["w2"].offered == 2000 - 55
    assert day1["w2"].daily_cap == 2400 and day1["w2"].queued == 0
    day2 = pmta_day(cfg, "192.0.2.1", 4000, mix, day=5)  # the ramp's last value repeats
    assert day2["c1"].offered == 20 and day2["c1"].sent == 15 and day2["c1"].queued == 5
    small = pmta_day(cfg, "192.0.2.1", 30, {"gmail.com": 1.0})
    assert small["c1"].offered + small["c2"].offered == 15  # w1 got 15 gmail messages, all re-routed


def test_quota_split_is_exact() -> None:
    for q in (0, 1, 7, 50, 100, 250, 500, 1000, 2000, 9999):
        parts = split_quota(q)
        assert sum(parts.values()) == q and list(parts) == [d for d, _ in PROVIDERS]
    assert split_counts(10, {"a": 1, "b": 1, "c": 1}) == {"a": 4, "b": 3, "c": 3}


def test_postfix_share_matches_a_seeded_simulation(fleet: FleetSnapshot) -> None:
    """Postfix's expected share (randmap: uniform over repeated entries) against 100,000 seeded draws."""
    r = backend_for(MtaBackend.POSTFIX).render(fleet, config_dir="/etc/postfix")
    slots, bind = parse_postfix(r.files["email-engine/main.cf"], r.files["email-engine/master.cf"])
    t = fleet.tenants[0]
    entries = slots[pf_render.restriction_class(t.name)]
    expected = postfix_day(entries, bind, 100_000)
    rng = random.Random(10)
    drawn = Counter(rng.choice(entries) for _ in range(100_000))
    for name, o in expected.items():
        assert abs(drawn[name] - o.offered) <= 5 * (o.offered ** 0.5) + 5, name
    week1 = next(ip for ip in t.ips if ip.phase and ip.phase.value == "week_1")
    assert bind[pf_render.transport_name(week1)] == week1.address
