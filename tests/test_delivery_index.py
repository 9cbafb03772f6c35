"""Remote bounces (and complaints without a usable IP) attributed through the durable delivery index,
whichever ingest run read the delivery (issue 10): the pure matching rules, then the ingest on SQLite and
PostgreSQL (d in run 1 and rb in run 2, unknown deliveries, retention, re-ingest, statement counts)."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, select
from sqlmodel import col
from typer.testing import CliRunner

from activities import db
from activities.accounting import ingest_local
from activities.db import session_scope
from activities.delivery_index import PAGE, retention_cutoff
from cli.stats import app as stats_app
from models.accounting import Delivery, Unresolved, attribute, message_key, parse_accounting
from models.accounting_tables import DeliveryIndex
from models.tables import DailyStat, SendingIp
from tests.accounting_records import csv_text, delivery, remote_bounce, stamp, traffic
from tests.warmup_support import load

A, B, C = "127.0.12.41", "127.0.12.42", "127.0.12.43"
IPS = [(ip, "warming", "week_1", None) for ip in (A, B, C)]
T0 = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)


# ------------------------------------------------------------------------------------ pure rules


def _d(ip: str, at: dt.datetime, rcpt: str = "u@x.example", env: str = "", orig: str = "") -> Delivery:
    key = message_key(rcpt, env, orig)
    assert key is not None
    return Delivery(key, ip, at)


def _rb(at: dt.datetime, rcpt: str = "u@x.example", env: str = "", orig: str = "") -> Unresolved:
    key = message_key(rcpt, env, orig)
    assert key is not None
    return Unresolved("rb", key, at)


def test_attribution_goes_to_the_most_recent_delivery_before_the_bounce() -> None:
    h = dt.timedelta(hours=1)
    deliveries = [_d(A, T0), _d(B, T0 + 2 * h), _d(C, T0 + 5 * h)]  # C delivered after the bounce
    assert attribute([_rb(T0 + 3 * h)], deliveries) == [B]
    assert attribute([_rb(T0 + 2 * h)], deliveries) == [B]  # the same second counts as before
    assert attribute([_rb(T0 - h)], deliveries) == [None]  # nothing delivered yet
    assert attribute([_rb(T0 + 3 * h, rcpt="other@x.example")], deliveries) == [None]
    assert attribute([_rb(T0 + 3 * h, rcpt="U@X.EXAMPLE ")], deliveries) == [B]  # addresses fold case
    # same second, two IPs: the answer does not depend on the order of the rows
    tie = [_d(B, T0), _d(A, T0)]
    assert attribute([_rb(T0 + h)], tie) == attribute([_rb(T0 + h)], tie[::-1]) == [B]


def test_envid_then_orig_then_recipient() -> None:
    h = dt.timedelta(hours=1)
    deliveries = [_d(A, T0, env="job-1", orig="a@bounce.example"), _d(B, T0 + h, env="job-2", orig="b@bounce.example")]
    assert attribute([_rb(T0 + 2 * h, env="job-1")], deliveries) == [A]  # older, but its envId
    assert attribute([_rb(T0 + 2 * h, env="job-1", orig="b@bounce.example")], deliveries) == [A]  # envId wins
    assert attribute([_rb(T0 + 2 * h, env="job-9")], deliveries) == [None]  # an envId nobody sent
    assert attribute([_rb(T0 + 2 * h, orig="A@bounce.example")], deliveries) == [A]
    assert attribute([_rb(T0 + 2 * h)], deliveries) == [B]  # recipient only: the most recent


def test_parser_keeps_unmatched_bounces_visible() -> None:
    rows = [remote_bounce(T0, "nobody@x.example"), {"type": "rb", "timeLogged": stamp(T0)},
            delivery(T0, A, "u@x.example", env="e1"), remote_bounce(T0 + dt.timedelta(minutes=5), "u@x.example", "e1")]
    r = parse_accounting(csv_text(rows).encode(), {}, {A})
    assert r.unattributed == 2 and r.unattributed_by_type == {"rb": 2}  # unknown delivery; no recipient
    assert r.totals[(A, T0.date())].bounced == 1 and r.pending == []
    assert [d.ip for d in r.deliveries] == [A]


def test_retention_is_measured_from_the_data_but_never_the_future() -> None:
    now = dt.datetime(2026, 11, 29, tzinfo=dt.UTC)
    assert retention_cutoff(T0, now, 10) == T0 - dt.timedelta(days=10)  # back-filled old file
    assert retention_cutoff(dt.datetime(2099, 1, 1, tzinfo=dt.UTC), now, 10) == now - dt.timedelta(days=10)


# ------------------------------------------------------------------------------------ the ingest


def _stats(url: str) -> dict[tuple[str, dt.date], tuple[int, int, int, int]]:
    with session_scope(url) as s:
        q = select(SendingIp.address, DailyStat.day, DailyStat.sent, DailyStat.delivered, DailyStat.bounced,
                   DailyStat.complaints).join(SendingIp, col(SendingIp.id) == DailyStat.ip_id)
        return {(a, d): (sent, dl, b, c) for a, d, sent, dl, b, c in s.execute(q)}


def _index_rows(url: str) -> int:
    with session_scope(url) as s:
        return int(s.execute(select(func.count()).select_from(DeliveryIndex)).scalar_one())


def _write(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text(csv_text(rows))
    return path


async def test_remote_bounce_of_an_earlier_run_counts_for_the_delivering_ip(db_url: str, tmp_path: Path) -> None:
    load(db_url, IPS)
    day1, day2 = T0.date(), (T0 + dt.timedelta(days=1)).date()
    run1 = [delivery(T0, A, "alice@x.example", env="j1"), delivery(T0, B, "bob@x.example", env="j2"),
            delivery(T0 + dt.timedelta(hours=1), C, "alice@x.example", env="j3")]  # alice again, from C
    r1 = await ingest_local(_write(tmp_path / "acct-1.csv", run1), db_url)
    assert (r1.records, r1.indexed, r1.unattributed) == (3, 3, 0)
    later = T0 + dt.timedelta(days=1, hours=3)
    run2 = [remote_bounce(later, "alice@x.example", env="j1"),  # the first alice mail: A, not C
            remote_bounce(later, "bob@x.example"),  # no envId in the DSN: by recipient (and orig)
            {"type": "f", "timeLogged": stamp(later), "rcpt": "alice@x.example", "envId": "j3",
             "dlvSourceIp": "203.0.113.7"},  # the reporter's address, not ours: by the delivery
            remote_bounce(later, "stranger@x.example", env="j9")]  # never delivered by us
    r2 = await ingest_local(_write(tmp_path / "acct-2.csv", run2), db_url)
    assert r2.by_type == {"rb": 3, "f": 1}
    assert r2.unattributed == 1 and r2.unattributed_by_type == {"rb": 1}
    stats = _stats(db_url)
    assert stats[(A, day1)] == (1, 1, 0, 0) and stats[(A, day2)] == (0, 0, 1, 0)  # counted on the bounce's day
    assert stats[(B, day2)] == (0, 0, 1, 0)
    assert stats[(C, day2)] == (0, 0, 0, 1)
    # re-ingesting either file adds nothing (offsets), and the index holds each delivery once
    assert (await ingest_local(tmp_path / "acct-2.csv", db_url)).records == 0
    assert (await ingest_local(tmp_path / "acct-1.csv", db_url)).records == 0
    assert _stats(db_url) == stats and _index_rows(db_url) == 3
    # the same deliveries read again from another path (copied file): the index gains no duplicates
    await ingest_local(_write(tmp_path / "copy-of-1.csv", run1), db_url)
    assert _index_rows(db_url) == 3


async def test_a_file_growing_between_runs_and_chunks(db_url: str, tmp_path: Path) -> None:
    """The d and its rb in the same file, read by two runs (the file grew): still attributed once."""
    load(db_url, IPS)
    f = _write(tmp_path / "acct.csv", [delivery(T0, A, "carol@x.example", env="k1")])
    await ingest_local(f, db_url)
    with f.open("a") as out:
        out.write(csv_text([remote_bounce(T0 + dt.timedelta(hours=2), "carol@x.example", env="k1")], header=False))
    grown = await ingest_local(f, db_url)
    assert (grown.records, grown.unattributed) == (1, 0)
    assert _stats(db_url)[(A, T0.date())] == (1, 1, 1, 0)


async def test_retention_prunes_old_deliveries(db_url: str, tmp_path: Path) -> None:
    load(db_url, IPS)
    old, new = T0 - dt.timedelta(days=12), T0
    await ingest_local(_write(tmp_path / "acct-old.csv", [delivery(old, A, "dave@x.example", env="o1"),
                                                          delivery(old + dt.timedelta(days=3), B, "erin@x.example")]),
                       db_url)
    assert _index_rows(db_url) == 2
    # 12 days later: the first delivery is beyond the 10-day retention, the second (9 days) is kept
    await ingest_local(_write(tmp_path / "acct-new.csv", [delivery(new, C, "frank@x.example")]), db_url)
    assert _index_rows(db_url) == 2
    rep = await ingest_local(_write(tmp_path / "acct-rb.csv", [
        remote_bounce(new + dt.timedelta(hours=1), "dave@x.example", env="o1"),
        remote_bounce(new + dt.timedelta(hours=1), "erin@x.example")]), db_url)
    assert rep.unattributed_by_type == {"rb": 1}  # dave's delivery was forgotten: reported, not guessed
    assert _stats(db_url)[(B, new.date())] == (0, 0, 1, 0)


@contextmanager
def count_statements(url: str) -> Iterator[dict[str, int]]:
    """Statements the ingest sends (an executemany counts once per parameter set: no hidden loop)."""
    counts = {"statements": 0, "inserts": 0, "selects": 0}
    engine = db.get_engine(url)

    def before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        n = len(parameters) if executemany else 1
        counts["statements"] += n
        head = statement.lstrip().split(None, 1)[0].upper()
        if head == "INSERT":
            counts["inserts"] += n
        elif head == "SELECT":
            counts["selects"] += n

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield counts
    finally:
        event.remove(engine, "before_cursor_execute", before)


async def test_ten_thousand_records_take_a_bounded_number_of_statements(db_url: str, tmp_path: Path) -> None:
    load(db_url, IPS)
    first, second = traffic(20_000, [A, B, C], T0)  # the measured file (hour 2) holds 10,000 records
    await ingest_local(_write(tmp_path / "hour-1.csv", first), db_url)  # the deliveries the rbs refer to
    big, rows = _write(tmp_path / "hour-2.csv", second), second
    with count_statements(db_url) as counts:
        rep = await ingest_local(big, db_url)
    assert rep.records == len(rows) == 10_000 and rep.malformed == 0
    n_rb = sum(r["type"] == "rb" for r in rows)
    strangers = sum(r["type"] == "rb" and r["rcpt"].startswith("stranger") for r in rows)
    assert rep.unattributed_by_type == {"rb": strangers} and n_rb - strangers > 50
    # per chunk: offset read, file row, inventory, ceil(keys/PAGE) lookups, ceil(d/PAGE) index pages,
    # prune, stats upsert, file row write (+ SQLite's connection pragmas)
    looked_up = n_rb + sum(r["type"] == "f" for r in rows)
    bound = 12 + math.ceil(looked_up / PAGE) + math.ceil(rep.indexed / PAGE)
    assert counts["statements"] <= bound, counts
    assert counts["inserts"] <= 2 + math.ceil(rep.indexed / PAGE), counts
    # and the result is what one statement per record would have given: the bounces are on their IPs
    assert {day for _, day in _stats(db_url)} == {T0.date()}  # both hours are on one day
    bounced = sum(v[2] for v in _stats(db_url).values())
    assert bounced == sum(r["type"] == "b" for r in first) + n_rb - strangers
    print(f"\n{db_url.split(':')[0]}: {len(rows)} records, {rep.indexed} indexed, {looked_up} looked up: {counts}")


def test_stats_cli_names_unattributed_remote_bounces(sqlite_url: str, cli: CliRunner, tmp_path: Path) -> None:
    load(sqlite_url, IPS)
    f = _write(tmp_path / "acct.csv", [remote_bounce(T0, "nobody@x.example", env="z")])
    res = cli.invoke(stats_app, ["ingest", str(f)])
    assert res.exit_code == 0 and "1 (rb 1)" in res.output, res.output
    res = cli.invoke(stats_app, ["ingest", str(_write(tmp_path / "acct2.csv", [remote_bounce(T0, "n@x.example")])),
                                 "--json"])
    assert json.loads(res.output)[0]["unattributed_by_type"] == {"rb": 1}
