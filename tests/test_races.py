"""Row locks and atomic counters under concurrency, on real PostgreSQL (issue 11): a warmup phase step never
writes its status over a quarantine; `inventory load --apply-state` waits for a quarantine in progress and
writes the file's whole state over what it sees; accounting files ingested at once add up; overlapping
MailWizz syncs count a campaign's growth once."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlmodel import Session, select
from temporalio.exceptions import ApplicationError

from activities.accounting import ingest_local
from activities.db import get_engine, session_scope
from activities.inventory import apply_inventory
from activities.mailwizz import record_readings
from activities.warmup import PhaseStepRequest, apply_phase_step
from models.enums import IpStatus, WarmupPhase
from models.inventory import parse
from models.mailwizz import CampaignCounters
from models.tables import DailyStat, SendingIp
from tests.data.make_accounting_samples import DAYS, expected
from tests.warmup_support import add_stats, audit, inventory_text, ip_row, load

DATA = Path(__file__).resolve().parent / "data"
PG = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


@PG
def test_a_phase_step_never_writes_over_a_quarantine(db_url: str) -> None:
    address = "127.0.12.51"
    load(db_url, [(address, "warming", "week_1", (dt.date.today() - dt.timedelta(days=8)).isoformat())])
    step = PhaseStepRequest(address, "week_1", "week_2", 100, dt.date.today().isoformat(), "gate passed", "warmup/x")
    outcome: list[object] = []
    # This transaction stands for failover step 1 (quarantine_ip): it holds the IP's row lock while it
    # quarantines. The phase step starts meanwhile; it must wait for the lock, then see the quarantine.
    with Session(get_engine(db_url)) as quarantine:
        ip = quarantine.exec(select(SendingIp).where(SendingIp.address == address).with_for_update()).one()
        worker = threading.Thread(target=lambda: outcome.append(_try(lambda: apply_phase_step(step, db_url))))
        worker.start()
        time.sleep(1.0)  # the step has read the IP (or is waiting for its lock)
        ip.status, ip.warmup_phase, ip.daily_quota, ip.weight = IpStatus.QUARANTINE, None, 0, 0
        quarantine.add(ip)
        quarantine.commit()
    worker.join(30)
    row = ip_row(db_url, address)
    assert row.status == IpStatus.QUARANTINE and row.daily_quota == 0, (row.status, row.daily_quota, outcome)
    assert isinstance(outcome[0], ApplicationError) and outcome[0].type == "UnexpectedPhase", outcome


@PG
def test_inventory_apply_state_waits_for_a_quarantine_and_audits_what_it_replaced(db_url: str) -> None:
    """--apply-state writes the file's state: it must take the IP's row lock (SELECT ... FOR UPDATE) before
    reading it, as the other status writers do. Without the lock it read warming/week_1, then its UPDATE of
    the changed columns (phase, quota) landed on the committed quarantine: a quarantined IP with a week_2
    quota, and an audit row "warming/week_1 -> warming/week_2" that never happened."""
    address = "127.0.12.71"
    load(db_url, [(address, "warming", "week_1", None)])
    text = inventory_text([(address, "warming", "week_2", None)])
    outcome: list[object] = []
    with Session(get_engine(db_url)) as quarantine:  # failover step 1 holding the IP's row lock
        ip = quarantine.exec(select(SendingIp).where(SendingIp.address == address).with_for_update()).one()
        worker = threading.Thread(target=lambda: outcome.append(_try(lambda: apply_inventory(
            parse(text), actor="inventory:ops.toml", url=db_url, apply_state=True))))
        worker.start()
        time.sleep(1.0)  # the load has read the IP (or is waiting for its lock)
        ip.status, ip.warmup_phase, ip.daily_quota, ip.weight = IpStatus.QUARANTINE, None, 0, 0
        quarantine.add(ip)
        quarantine.commit()
    worker.join(30)
    assert not isinstance(outcome[0], Exception), outcome
    row = ip_row(db_url, address)
    assert (row.status, row.warmup_phase, row.daily_quota) == (IpStatus.WARMING, WarmupPhase.WEEK_2, 100), row
    last = audit(db_url, address)[-1]
    assert (last.from_status, last.from_phase, last.to_status, last.to_phase, last.actor) == (
        "quarantine", None, "warming", "week_2", "inventory:ops.toml")


def _try(fn):  # type: ignore[no-untyped-def]
    try:
        return fn()
    except Exception as exc:  # the outcome is asserted by the test
        return exc


@PG
def test_accounting_files_ingested_at_once_add_up(db_url: str, tmp_path: Path) -> None:
    load(db_url, [(f"127.0.12.{n}", "warming", "week_1", None) for n in (41, 42, 43)], tenant="acme")
    copies = 6
    for i in range(copies):  # six files (six sources of one MTA host) with the same records
        shutil.copy(DATA / "acct-bouncing.csv", tmp_path / f"acct-{i}.csv")
    with ThreadPoolExecutor(copies) as pool:
        reports = list(pool.map(lambda i: asyncio.run(ingest_local(tmp_path / f"acct-{i}.csv", db_url)),
                                range(copies)))
    assert all(r.records > 0 for r in reports)
    want = expected("bouncing")
    with session_scope(db_url) as s:
        ip = s.exec(select(SendingIp).where(SendingIp.address == "127.0.12.42")).one()
        stat = s.exec(select(DailyStat).where(DailyStat.ip_id == ip.id, DailyStat.day == DAYS[3])).one()
        assert (stat.sent, stat.delivered, stat.bounced) == (copies * want["sent"], copies * want["delivered"],
                                                              copies * want["bounced"])


@PG
def test_overlapping_mailwizz_syncs_count_growth_once(db_url: str) -> None:
    ips = ["127.0.12.61", "127.0.12.62"]
    load(db_url, [(a, "active", None, None) for a in ips], tenant="acme")
    day = dt.date.today()
    for a in ips:
        add_stats(db_url, a, day, sent=1000)
    record_readings("acme", {"c1": ("sending", CampaignCounters(opens=100, clicks=10))}, day, db_url)
    grown = {"c1": ("sending", CampaignCounters(opens=300, clicks=30))}
    with ThreadPoolExecutor(8) as pool:  # eight syncs read the same growth at the same time
        results = list(pool.map(lambda _: _try(lambda: record_readings("acme", grown, day, db_url)), range(8)))
    assert not [r for r in results if isinstance(r, Exception)], results
    with session_scope(db_url) as s:
        rows = s.exec(select(DailyStat).join(SendingIp).where(DailyStat.day == day)).all()
        assert (sum(r.opens for r in rows), sum(r.clicks for r in rows)) == (300, 30)
