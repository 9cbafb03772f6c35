"""The per-IP fleet gauges (issue 15): the warmup gate's figures per IP, warmup weeks, quotas, listings per
zone, deploy drift, the cardinality cap; on SQLite and PostgreSQL, from rows the features persist."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import select

from activities.db import session_scope
from activities.mta.base import backend_for
from activities.snapshot import load_snapshot
from activities.warmup import PhaseStepRequest, apply_phase_step
from models.deploy_history import MtaDeployRecord
from models.tables import SendingIp, Tenant, utcnow
from models.warmup_gate import wilson_interval, z_for
from tests.fleet_seed import BUSY, IDLE, LISTED, SPREAD, seed_fleet
from workers import metrics
from workers.metrics import FleetCollector

Key = tuple[str, tuple[tuple[str, str], ...]]


def scrape(collector: FleetCollector) -> dict[Key, float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for fam in collector.collect() for s in fam.samples}


def ip_key(name: str, ip: str, status: str = "active", phase: str = "none", tenant: str = "client-1") -> Key:
    return name, (("ip", ip), ("phase", phase), ("status", status), ("tenant", tenant))


def names(got: dict[Key, float], name: str) -> dict[Key, float]:
    return {k: v for k, v in got.items() if k[0] == name}


@pytest.fixture(autouse=True)
def no_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "CACHE_SECONDS", -1.0)


async def test_ip_gauges_are_the_gate_figures(db_url: str, tmp_path: Path) -> None:
    await seed_fleet(db_url, tmp_path)
    with session_scope(db_url) as s:
        t2 = s.exec(select(Tenant).where(Tenant.name == "client-2")).one()
        t2.max_bounce_rate = 0.02
        s.add(t2)
    got = scrape(FleetCollector(db_url))
    z = z_for(0.95)
    # yesterday only: sent = delivered + synchronous bounces; complaints over delivered
    assert got[ip_key("email_engine_ip_sent_7d", BUSY)] == 110
    assert got[ip_key("email_engine_ip_bounce_rate_7d", BUSY)] == round(10 / 110, 6)
    assert got[ip_key("email_engine_ip_bounce_rate_7d_lower_bound", BUSY)] == round(wilson_interval(10, 110, z)[0], 6)
    assert got[ip_key("email_engine_ip_complaint_rate_7d", BUSY)] == round(1 / 100, 6)
    assert got[ip_key("email_engine_ip_complaint_rate_7d_lower_bound", BUSY)] == round(
        wilson_interval(1, 100, z)[0], 6)
    # three days inside the window; today's and 8 days ago's 1,000 bounces are outside it
    assert got[ip_key("email_engine_ip_sent_7d", SPREAD)] == 330
    assert got[ip_key("email_engine_ip_bounce_rate_7d", SPREAD)] == round(30 / 330, 6)
    # nothing sent: no rate at all (not a 0 that would read as a clean IP), still a quota
    assert not [k for k in got if IDLE in dict(k[1]).values() and "rate" in k[0]]
    assert got[ip_key("email_engine_ip_daily_quota", IDLE)] > 0
    assert got[("email_engine_tenant_max_bounce_rate", (("tenant", "client-1"),))] == 0.05
    assert got[("email_engine_tenant_max_bounce_rate", (("tenant", "client-2"),))] == 0.02
    assert got[("email_engine_tenant_max_complaint_rate", (("tenant", "client-2"),))] == 0.001


async def test_quota_warmup_week_and_listings(db_url: str, tmp_path: Path) -> None:
    await seed_fleet(db_url, tmp_path)
    got = scrape(FleetCollector(db_url))
    quotas = names(got, "email_engine_ip_daily_quota")
    # warming and active IPs of both tenants (47 each), never the standby ones
    assert len(quotas) == 94 and not [k for k in quotas if ("status", "standby") in k[1]]
    assert got[ip_key("email_engine_ip_daily_quota", "45.123.10.41", "warming", "week_1")] == 50
    weeks = {dict(k[1])["ip"]: v for k, v in names(got, "email_engine_ip_warmup_week").items()
             if ("tenant", "client-1") in k[1]}
    assert weeks == {f"45.123.10.{n}": float(w) for n, w in zip(range(41, 48), (1, 2, 3, 4, 5, 1, 3), strict=True)}
    assert set(names(got, "email_engine_ip_warmup_phase_days").values()) == {0}  # loaded today
    # distinct IPs per zone among listings not cleared; the cleared one does not count
    assert names(got, "email_engine_listed_ips") == {
        ("email_engine_listed_ips", (("tenant", "client-1"), ("zone", "b.barracudacentral.org"))): 1,
        ("email_engine_listed_ips", (("tenant", "client-1"), ("zone", "zen.spamhaus.org"))): len(LISTED)}
    assert got[("email_engine_open_listings", (("tenant", "client-1"),))] == 3
    assert got[("email_engine_broken_zones", ())] == 1
    assert got[("email_engine_ip_series_dropped", ())] == 0


async def test_drift_follows_deploys_and_phase_steps(sqlite_url: str, tmp_path: Path) -> None:
    await seed_fleet(sqlite_url, tmp_path)
    collector = FleetCollector(sqlite_url)
    got = scrape(collector)
    drift = ("email_engine_mta_config_drift", (("backend", "powermta"), ("host", "pmta-1")))
    assert got[drift] == 1  # the only deploy was rolled back
    assert got[("email_engine_mta_last_deploy_ok", (("host", "pmta-1"),))] == 0
    assert got[("email_engine_mta_host_enabled", (("host", "pmta-1"),))] == 0
    snap = load_snapshot(sqlite_url)
    view = snap.host("pmta-1")
    digest = backend_for(view.backend).render(snap.for_host("pmta-1"), config_dir=view.config_dir).digest
    at = utcnow()
    with session_scope(sqlite_url) as s:
        s.add(MtaDeployRecord(host="pmta-1", generation=2, digest=digest, ok=True, changed=True, at=at))
    got = scrape(collector)  # a new deploy row: recomputed at once, not after DRIFT_SECONDS
    assert got[drift] == 0
    assert got[("email_engine_mta_last_deploy_ok", (("host", "pmta-1"),))] == 1
    assert got[("email_engine_mta_last_deploy_timestamp_seconds", (("host", "pmta-1"),))] == pytest.approx(
        at.timestamp(), abs=1)
    apply_phase_step(PhaseStepRequest("45.123.10.41", "week_1", "week_2", 100, utcnow().date().isoformat(),
                                      "test", "test"), sqlite_url)
    got = scrape(collector)  # the quota change renders differently: drift again
    assert got[drift] == 1
    assert got[ip_key("email_engine_ip_daily_quota", "45.123.10.41", "warming", "week_2")] == 100


async def test_the_cap_limits_per_ip_series_and_says_so(sqlite_url: str, tmp_path: Path) -> None:
    await seed_fleet(sqlite_url, tmp_path)
    with session_scope(sqlite_url) as s:
        total = len(s.exec(select(SendingIp)).all())
    got = scrape(FleetCollector(sqlite_url, max_ips=10))
    assert got[("email_engine_ip_series_dropped", ())] == total - 10
    kept = {dict(k[1])["ip"] for k in got if k[0].startswith("email_engine_ip_") and "ip" in dict(k[1])}
    assert len(kept) <= 10
    assert got[("email_engine_ips", (("status", "active"), ("tenant", "client-1")))] == 40  # per tenant: whole


async def test_an_unreadable_database_is_reported_not_raised(tmp_path: Path) -> None:
    got = scrape(FleetCollector(f"sqlite:///{tmp_path / 'missing.db'}"))
    assert got == {("email_engine_fleet_scrape_ok", ()): 0}
    assert not (tmp_path / "missing.db").exists()
