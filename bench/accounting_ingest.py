"""Accounting ingest of 100,000 records with and without the delivery index, side by side, on SQLite and
PostgreSQL.

    .venv/bin/python -m bench.accounting_ingest [--records 100000] [--rounds 2] [--no-postgres]

Traffic (tests/accounting_records.py `traffic`): two hourly files of half the records each, 3 IPs; hour 2
holds remote bounces of 2% of hour 1's deliveries, complaints without a Source-IP and bounces of unknown
mail. Each side ingests both files into a fresh, migrated database (the same code, the baseline with the
index's lookup, writes and pruning switched off, which is how remote bounces were counted before: only
when their delivery was in the same chunk). Printed: seconds per side (best of the rounds, sides
alternating), records/s, the ratio, and how many remote bounces each side attributed. Timings depend on
the machine and its load; the ratio is from this one run.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any
from unittest import mock

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from activities import accounting, db
from activities.inventory import apply_inventory
from models.inventory import parse
from tests.accounting_records import csv_text, traffic
from tests.warmup_support import inventory_text

IPS = ["127.0.12.41", "127.0.12.42", "127.0.12.43"]
START = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)


@contextmanager
def without_index() -> Iterator[None]:
    """The baseline: no lookups, no index rows, no pruning (remote bounces resolved within a chunk only)."""
    with mock.patch.object(accounting, "known_deliveries", lambda *a: []), \
            mock.patch.object(accounting, "remember", lambda *a: 0), \
            mock.patch.object(accounting, "prune", lambda *a: None):
        yield


def one_side(url: str, files: list[Path], baseline: bool) -> tuple[float, int, int]:
    """(seconds, remote bounces attributed, remote bounces unattributed) for one fresh database."""
    db.upgrade(url)
    apply_inventory(parse(inventory_text([(ip, "warming", "week_1", None) for ip in IPS])), actor="bench", url=url)
    ctx = without_index() if baseline else nullcontext()
    attributed = unattributed = 0
    with ctx:
        started = time.perf_counter()
        for f in files:
            rep = asyncio.run(accounting.ingest_local(f, url))
            lost = rep.unattributed_by_type.get("rb", 0)
            attributed += rep.by_type.get("rb", 0) - lost
            unattributed += lost
        elapsed = time.perf_counter() - started
    return elapsed, attributed, unattributed


def fresh_databases(tmp: str, postgres: bool) -> Iterator[tuple[str, Callable[[], Any]]]:
    """(label, factory of a new empty database URL, dropped afterwards)."""
    counter = iter(range(1_000_000))
    yield "sqlite", lambda: f"sqlite:///{tmp}/bench-{next(counter)}.db"
    if not postgres:
        return
    admin_url = db.normalize_url(os.environ.get(
        "EMAIL_ENGINE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"))
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    made: list[str] = []

    def new() -> str:
        name = f"ee_bench_acct_{uuid.uuid4().hex[:8]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        made.append(name)
        return make_url(admin_url).set(database=name).render_as_string(hide_password=False)

    try:
        with admin.connect():
            pass
    except Exception as exc:
        print(f"PostgreSQL skipped: not reachable at {admin_url} ({type(exc).__name__})")
        return
    try:
        yield "postgresql", new
    finally:
        db.dispose_engines()
        with admin.connect() as conn:
            for name in made:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000, help="records in all (default 100000)")
    parser.add_argument("--rounds", type=int, default=2, help="runs per side, best kept (default 2)")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    args = parser.parse_args()
    n = max(1_000, min(args.records, 2_000_000))
    rounds = max(1, min(args.rounds, 10))
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["EMAIL_ENGINE_VAR_DIR"] = tmp
        first, second = traffic(n, IPS, START)
        files = [Path(tmp) / "acct-hour-1.csv", Path(tmp) / "acct-hour-2.csv"]
        for f, rows in zip(files, (first, second), strict=True):
            f.write_text(csv_text(rows))
        size = sum(f.stat().st_size for f in files)
        print(f"accounting ingest: {n} records in 2 files ({size / 1e6:.1f} MB), {len(IPS)} IPs, "
              f"{rounds} round(s) per side, best kept; cpu count {os.cpu_count()}")
        print(f"{'database':<11} {'side':<15} {'seconds':>8} {'records/s':>10} {'rb attributed':>14} "
              f"{'rb unattributed':>16}")
        for label, new_url in fresh_databases(tmp, not args.no_postgres):
            best: dict[bool, tuple[float, int, int]] = {}
            for _ in range(rounds):
                for baseline in (True, False):
                    got = one_side(new_url(), files, baseline)
                    if baseline not in best or got[0] < best[baseline][0]:
                        best[baseline] = got
                    db.dispose_engines()
            for baseline in (True, False):
                secs, ok, lost = best[baseline]
                side = "without index" if baseline else "with index"
                print(f"{label:<11} {side:<15} {secs:>8.2f} {n / secs:>10.0f} {ok:>14} {lost:>16}")
            print(f"{label:<11} with / without index: {best[False][0] / best[True][0]:.2f}x the time")


if __name__ == "__main__":
    main()
