"""A scrape of the fleet gauges at 10,000 IPs, with main's collector as the baseline, side by side.

    .venv/bin/python -m bench.fleet_metrics [--tenants 2] [--ips 5000] [--days 90] [--rounds 3] [--sqlite]

Fleet: scripts/make_fleet.py (2 tenants x 5,000 IPs, one MTA host each), `daily_stat` filled for every
IP over the last `--days` days (900,000 rows by default, written with one INSERT ... SELECT), a few open
listings and one deploy per host. Sides, each the best of the rounds:
- baseline: what the collector did before issue 15: `database_sections` (every section of `email-engine
  status`, the MTA drift render included) and the same tenant families, at every cache expiry;
- scrape, cold: this collector's first scrape (the drift render included) with the per-IP families;
- scrape, warm: a later scrape (cache expired, drift still cached: the usual case);
  a scrape is collect + writing the exposition text (`generate_latest`), as over HTTP;
- window sum with / without ix_daily_stat_day (migration 0023): the per-IP 7-day sums alone.
Also printed: series and bytes of one exposition. Timings depend on the machine and its load; the
ratios are from this one run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from activities import db
from activities.fleet_metrics import window_totals
from activities.inventory import apply_inventory
from activities.status import database_sections
from models.inventory import parse
from models.tables import utcnow
from models.warmup import gate_window
from scripts.make_fleet import fleet_toml
from workers import metrics
from workers.fleet_gauges import fleet_families
from workers.metrics import FleetCollector


def best(rounds: int, fn: Callable[[], Any]) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def fill(url: str, tenants: int, ips: int, days: int) -> None:
    db.upgrade(url)
    apply_inventory(parse(fleet_toml(tenants, ips)), actor="bench", url=url)
    today = utcnow().date()
    with db.get_engine(url).begin() as conn:
        ids = [r[0] for r in conn.execute(text("SELECT id FROM sending_ip ORDER BY id"))]
        pg = conn.dialect.name == "postgresql"
        days_from = "generate_series(1, :days) AS d(n)" if pg else "d"
        day = "CAST(:today AS date) - d.n" if pg else "date(:today, '-' || d.n || ' day')"
        conn.execute(text(("" if pg else "WITH RECURSIVE d(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM d WHERE "
                                         "n < :days) ")
                          + "INSERT INTO daily_stat (ip_id, day, sent, delivered, bounced, complaints, opens, "
                          f"clicks, opens_measured) SELECT i.id, {day}, 1000 + i.id % 50, 980, 20 + i.id % 7, "
                          f"i.id % 3, 0, 0, false FROM sending_ip i, {days_from}"),
                     {"today": today.isoformat(), "days": days})
        conn.execute(text("INSERT INTO blocklist_event (ip_id, zone, detected_at) VALUES (:ip, 'zen.spamhaus.org', "
                          ":at)"), [{"ip": i, "at": utcnow()} for i in ids[:20]])
        conn.execute(text("INSERT INTO mta_deploy (host, generation, digest, ok, changed, rolled_back, message, "
                          "target, reason, actor, at) SELECT name, 1, '', true, true, false, '', '', '', 'bench', "
                          ":at FROM mta_host"), {"at": utcnow()})
        if conn.dialect.name == "postgresql":
            conn.execute(text("ANALYZE"))


class Baseline(Collector):
    """The collector before issue 15: every status section, drift included, then its families."""

    def __init__(self, url: str) -> None:
        self.url = url

    def collect(self) -> Iterator[Metric]:
        yield from fleet_families(database_sections(self.url))


def scraper(collector: Collector) -> Callable[[], bytes]:
    """What an HTTP scrape does: collect, then write the exposition text."""
    registry = CollectorRegistry()
    registry.register(collector)
    return lambda: generate_latest(registry)


@contextmanager
def without_day_index(url: str) -> Iterator[None]:
    with db.get_engine(url).begin() as conn:
        conn.execute(text("DROP INDEX ix_daily_stat_day"))
    try:
        yield
    finally:
        with db.get_engine(url).begin() as conn:
            conn.execute(text("CREATE INDEX ix_daily_stat_day ON daily_stat (day)"))


def window_sum(url: str) -> None:
    first, last = gate_window(utcnow().date())
    with db.get_engine(url).connect() as conn:
        window_totals(conn, first, last)


def measure(label: str, url: str, rounds: int) -> None:
    metrics.CACHE_SECONDS = -1.0  # every scrape reads the database (the cache is what is measured away)
    base = best(rounds, scraper(Baseline(url)))
    cold = best(rounds, lambda: scraper(FleetCollector(url))())
    warm_scrape = scraper(FleetCollector(url))
    body = warm_scrape()
    warm = best(rounds, warm_scrape)
    with_index = best(rounds, lambda: window_sum(url))
    with without_day_index(url):
        without = best(rounds, lambda: window_sum(url))
    series = sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))
    print(f"{label:<11} {'baseline (main: status sections + drift)':<44} {base:>8.3f}")
    print(f"{label:<11} {'scrape, cold (drift rendered)':<44} {cold:>8.3f}   {cold / base:.2f}x the baseline")
    print(f"{label:<11} {'scrape, warm (drift cached)':<44} {warm:>8.3f}   {warm / base:.2f}x the baseline")
    print(f"{label:<11} {'7-day sums, without ix_daily_stat_day':<44} {without:>8.3f}")
    print(f"{label:<11} {'7-day sums, with ix_daily_stat_day':<44} {with_index:>8.3f}   "
          f"{with_index / without:.2f}x without")
    print(f"{label:<11} exposition: {series} series, {len(body) / 1e6:.1f} MB")


def databases(tmp: str, sqlite: bool) -> Iterator[tuple[str, str]]:
    if sqlite:
        yield "sqlite", f"sqlite:///{tmp}/bench.db"
    admin_url = db.normalize_url(os.environ.get(
        "EMAIL_ENGINE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"))
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"ee_bench_metrics_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        print(f"PostgreSQL skipped: not reachable at {admin_url} ({type(exc).__name__})")
        return
    try:
        yield "postgresql", make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        db.dispose_engines()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=2)
    parser.add_argument("--ips", type=int, default=5000, help="IPs per tenant (default 5000)")
    parser.add_argument("--days", type=int, default=90, help="days of daily_stat per IP (default 90)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per side, best kept (default 3)")
    parser.add_argument("--sqlite", action="store_true", help="also on SQLite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["EMAIL_ENGINE_VAR_DIR"] = tmp
        print(f"fleet gauges: {args.tenants} x {args.ips} IPs, {args.days} days of daily_stat, best of "
              f"{args.rounds}; cpu count {os.cpu_count()}")
        print(f"{'database':<11} {'side':<44} {'seconds':>8}")
        for label, url in databases(tmp, args.sqlite):
            started = time.perf_counter()
            fill(url, args.tenants, args.ips, args.days)
            print(f"{label:<11} (fleet loaded in {time.perf_counter() - started:.0f} s)")
            measure(label, url, max(1, args.rounds))


if __name__ == "__main__":
    main()
