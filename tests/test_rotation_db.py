"""Rotation against the real databases (SQLite and PostgreSQL via the db_url fixture).

Concurrency tests use real parallel connections: threads (each with its own pooled connection) and
separate processes. Test IPs come from 127.0.60.0/24 and are only stored, never contacted.
"""

from __future__ import annotations

import json
import multiprocessing
import random
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func
from sqlmodel import col, select
from typer.testing import CliRunner

from activities import rotation
from activities.db import session_scope
from activities.inventory import apply_inventory
from cli.rotation import app as rotation_app
from models.enums import IpStatus
from models.inventory import parse
from models.names import NameError_
from models.rotation import (
    Candidate,
    Pick,
    RotationError,
    RotationMode,
    eligible,
    hour_of,
    least_used,
    weighted_random,
)
from models.rotation_tables import IpHourlySent, RotationCursor
from models.tables import SendingIp
from tests.rotation_worker import pick_positions

# Middle of a UTC hour: tests that pass `now` never straddle an hour boundary.
NOW = 1_795_000_000 // 3600 * 3600 + 1800.0

FLEET = """\
[[mta_hosts]]
name = "mta-rot"
address = "127.0.60.250"
backend = "postfix"

[[tenants]]
name = "rot-a"
mta_host = "mta-rot"
[tenants.mailwizz]
base_url = "http://127.0.60.251:9/api"
source_ip = "127.0.60.251"
{a_ips}

[[tenants]]
name = "rot-b"
mta_host = "mta-rot"
[tenants.mailwizz]
base_url = "http://127.0.60.252:9/api"
source_ip = "127.0.60.252"
{b_ips}

[[tenants]]
name = "rot-idle"
mta_host = "mta-rot"
[tenants.mailwizz]
base_url = "http://127.0.60.253:9/api"
source_ip = "127.0.60.253"
{idle_ips}
"""


def _ip(n: int, status: str, phase: str | None = None, quota: int | None = None) -> str:
    lines = ["[[tenants.ips]]", f'address = "127.0.60.{n}"', f'hostname = "mail.rot{n}.example"',
             f'domain = "rot{n}.example"', f'status = "{status}"']
    if phase:
        lines.append(f'phase = "{phase}"')
    if quota is not None:
        lines.append(f"daily_quota = {quota}")
    return "\n".join(lines)


# rot-a: .1-.4 active (10,000/day), .5 active at 100/day, .6 standby, .7 quarantine, .8 retiring, .9 warming
# week_2 (never picked: not a pool member).
A_SENDING = [f"127.0.60.{n}" for n in range(1, 6)]
A_IPS = [_ip(n, "active") for n in range(1, 5)] + [_ip(5, "active", quota=100), _ip(6, "standby"),
                                                   _ip(7, "quarantine"), _ip(8, "retiring"),
                                                   _ip(9, "warming", "week_2")]
B_IPS = [_ip(11, "active"), _ip(12, "active")]
IDLE_IPS = [_ip(21, "standby"), _ip(22, "standby"), _ip(23, "resting")]


def load_fleet(url: str) -> str:
    text = FLEET.format(a_ips="\n".join(A_IPS), b_ips="\n".join(B_IPS), idle_ips="\n".join(IDLE_IPS))
    apply_inventory(parse(text), actor="test", url=url)
    return url


@pytest.fixture
def fleet(db_url: str) -> str:
    return load_fleet(db_url)


def candidates(url: str) -> tuple[Candidate, ...]:
    with session_scope(url) as s:
        rows = s.exec(select(SendingIp)).all()
        return eligible(Candidate(address=r.address, vmta=r.vmta_name, status=r.status, daily_quota=r.daily_quota,
                                  weight=r.weight, ip_id=r.id) for r in rows if r.address in A_SENDING)


def recorded(url: str) -> dict[str, int]:
    with session_scope(url) as s:
        rows = s.exec(select(SendingIp.address, func.sum(IpHourlySent.sent))
                      .join(IpHourlySent, col(IpHourlySent.ip_id) == col(SendingIp.id))
                      .group_by(SendingIp.address)).all()
        return {a: int(n) for a, n in rows}


def in_threads(workers: int, per_worker: int, fn: Callable[[], Pick]) -> list[Pick]:
    barrier = threading.Barrier(workers)
    results: list[list[Pick]] = [[] for _ in range(workers)]
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            for _ in range(per_worker):
                results[i].append(fn())
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    return [p for r in results for p in r]


def test_round_robin_exact_under_8_concurrent_threads(fleet: str) -> None:
    picks = in_threads(8, 250, lambda: rotation.pick("rot-a", "round_robin", url=fleet))
    assert len(picks) == 2000
    # Every caller got its own position: no position handed out twice, none skipped.
    assert sorted(p.position for p in picks if p.position is not None) == list(range(2000))
    counts = Counter(p.address for p in picks)
    assert counts == dict.fromkeys(A_SENDING, 400)
    assert recorded(fleet) == dict.fromkeys(A_SENDING, 400)
    # The position maps to the stable (address) order.
    assert all(p.address == A_SENDING[p.position % 5] for p in picks if p.position is not None)
    with session_scope(fleet) as s:
        assert s.exec(select(RotationCursor.position)).all() == [2000]


def test_round_robin_exact_across_processes(sqlite_url: str) -> None:
    """SQLite across processes: BEGIN IMMEDIATE serializes them (threads of one process also queue on a
    process lock first; PostgreSQL's row lock is exercised by the 8-thread test, one connection each)."""
    fleet = load_fleet(sqlite_url)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    barrier = ctx.Barrier(3)  # all processes start picking at the same moment
    procs = [ctx.Process(target=pick_positions, args=(fleet, 50, NOW, barrier, queue)) for _ in range(3)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert all(isinstance(r, tuple) for r in results), results
    positions = sorted(pos for r in results for pos in r[0])
    assert positions == list(range(150))
    # rot-b: two equal IPs. Least-used picks serialized across processes: each pick of an IP saw a
    # different count of earlier picks of it (0, 1, ..., 74); a stale read would show one twice.
    least = [(a, load) for r in results for a, load in r[1]]
    assert Counter(a for a, _ in least) == {"127.0.60.11": 75, "127.0.60.12": 75}
    for address in ("127.0.60.11", "127.0.60.12"):
        assert sorted(round(load * 10_000 / 24) for a, load in least if a == address) == list(range(75))
    assert recorded(fleet) == {**dict.fromkeys(A_SENDING, 30), "127.0.60.11": 75, "127.0.60.12": 75}


def test_least_used_concurrent_picks_equal_the_serial_sequence(fleet: str) -> None:
    """Picks serialized per tenant: 8 threads end with exactly the counts of one caller picking alone."""
    picks = in_threads(8, 100, lambda: rotation.pick("rot-a", "least_used", url=fleet, now=NOW))
    cands = candidates(fleet)
    expected: Counter[str] = Counter()
    for _ in range(800):
        chosen, _ = least_used(cands, expected)
        expected[chosen.address] += 1
    assert Counter(p.address for p in picks) == expected
    assert recorded(fleet) == expected
    for c in cands:  # every pick of an IP saw a different count of its earlier picks (no stale read)
        seen = sorted(round((p.load or 0) * c.daily_quota / 24) for p in picks if p.address == c.address)
        assert seen == list(range(expected[c.address]))
    # 4 active IPs at 10,000/day and one at 100/day: it gets ~1/401 of the picks.
    assert expected["127.0.60.5"] == 2 and all(expected[a] in (199, 200) for a in A_SENDING[:4])


def test_least_used_reads_the_previous_hour_with_a_sliding_window(fleet: str) -> None:
    hour_start = hour_of(NOW) * 3600
    # Previous hour: 40 picks, all round robin: 8 per IP; then put 30 more on .1 by weighted picks stubbed
    # to always choose the first candidate.
    for _ in range(40):
        rotation.pick("rot-a", "round_robin", url=fleet, now=hour_start - 600)

    class First(random.Random):
        def random(self) -> float:
            return 0.0

    for _ in range(30):
        assert rotation.pick("rot-a", "weighted_random", url=fleet, rng=First(), now=hour_start - 600).address \
            == "127.0.60.1"
    # Early in the next hour the previous hour still counts almost fully: .1 is the busiest.
    st = rotation.status("rot-a", url=fleet, now=hour_start + 36)
    usage = {u.address: u.sent_last_hour for u in st.ips}
    assert usage["127.0.60.1"] == pytest.approx(38 * 0.99) and usage["127.0.60.2"] == pytest.approx(8 * 0.99)
    # least_used avoids .1 and the 100/day IP (8 sends against 100/24 per hour) while the others catch up.
    got = [rotation.pick("rot-a", "least_used", url=fleet, now=hour_start + 36).address for _ in range(3)]
    assert got == ["127.0.60.2", "127.0.60.3", "127.0.60.4"]


def test_weighted_random_uses_the_given_random_source_and_quotas(fleet: str) -> None:
    r_db, r_pure = random.Random(11), random.Random(11)
    got = [rotation.pick("rot-a", "weighted_random", url=fleet, rng=r_db, now=NOW).address for _ in range(150)]
    cands = candidates(fleet)
    assert got == [weighted_random(cands, r_pure).address for _ in range(150)]
    assert set(got) <= set(A_SENDING)
    assert recorded(fleet) == Counter(got)


def test_a_quarantined_ip_is_never_picked_afterwards(fleet: str) -> None:
    for mode in RotationMode:
        for _ in range(10):
            rotation.pick("rot-a", mode, url=fleet, now=NOW)
    with session_scope(fleet) as s:
        ip = s.exec(select(SendingIp).where(SendingIp.address == "127.0.60.3")).one()
        ip.status = IpStatus.QUARANTINE
        s.add(ip)
    after = {mode: [rotation.pick("rot-a", mode, url=fleet, now=NOW).address for _ in range(100)]
             for mode in RotationMode}
    assert all("127.0.60.3" not in picked for picked in after.values())
    rr = Counter(after[RotationMode.ROUND_ROBIN])
    assert rr == {"127.0.60.1": 25, "127.0.60.2": 25, "127.0.60.4": 25, "127.0.60.5": 25}
    # Another tenant's IPs are never picked for rot-a, and vice versa.
    assert all(a in A_SENDING for picked in after.values() for a in picked)
    assert {rotation.pick("rot-b", m, url=fleet).address for m in RotationMode} <= {"127.0.60.11", "127.0.60.12"}


def test_precise_errors(fleet: str) -> None:
    idle = r"'rot-idle' has no sending IP \(active or warming\): 1 resting, 2 standby"
    with pytest.raises(RotationError, match=idle):
        rotation.pick("rot-idle", "round_robin", url=fleet)
    with pytest.raises(RotationError, match="no tenant named 'nobody'"):
        rotation.pick("nobody", "least_used", url=fleet)
    # A bad name is refused before any SQL: the database URL here does not even resolve to a server.
    with pytest.raises(NameError_):
        rotation.pick("rot-a'; DROP TABLE tenant; --", "round_robin", url="postgresql://127.0.60.254:1/none")
    with pytest.raises(ValueError):
        rotation.pick("rot-a", "fastest", url=fleet)
    # A failed pick consumed nothing.
    with session_scope(fleet) as s:
        assert s.exec(select(func.count()).select_from(IpHourlySent)).one() == 0


def test_counter_table_is_pruned_to_two_hours(fleet: str) -> None:
    h = hour_of(NOW) * 3600
    for k in range(4):
        for mode in RotationMode:
            rotation.pick("rot-a", mode, url=fleet, now=h + k * 3600 + 10)
    with session_scope(fleet) as s:
        hours = sorted(set(s.exec(select(IpHourlySent.hour)).all()))
        assert hours == [hour_of(h) + 2, hour_of(h) + 3]
        assert s.exec(select(RotationCursor.pruned_hour)).one() == hour_of(h) + 3


def test_cli_pick_and_status(fleet: str, cli: CliRunner) -> None:
    out = cli.invoke(rotation_app, ["pick", "--tenant", "rot-a", "--mode", "round_robin", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["ip"] == "127.0.60.1" and data["vmta"] == "vmta-rot-a-1" and data["position"] == 0
    assert data["header"] == "X-Virtual-MTA: vmta-rot-a-1" and data["candidates"] == 5
    out = cli.invoke(rotation_app, ["pick", "-t", "rot-a"])
    assert out.exit_code == 0, out.output
    assert out.stdout.splitlines() == ["127.0.60.2 vmta-rot-a-2", "X-Virtual-MTA: vmta-rot-a-2"]
    out = cli.invoke(rotation_app, ["pick", "--tenant", "rot-a", "--mode", "least_used", "--json"])
    assert json.loads(out.stdout)["ip"] == "127.0.60.3"
    st = cli.invoke(rotation_app, ["status", "--tenant", "rot-a", "--json"])
    assert st.exit_code == 0, st.output
    status = json.loads(st.stdout)
    assert status["round_robin_position"] == 2
    assert [u["ip"] for u in status["ips"]] == A_SENDING
    assert [u["sent_last_hour"] > 0 for u in status["ips"]] == [True, True, True, False, False]
    bad = cli.invoke(rotation_app, ["pick", "--tenant", "Rot A"])
    assert bad.exit_code == 1 and "not a valid tenant name" in bad.stderr
    none = cli.invoke(rotation_app, ["pick", "--tenant", "rot-idle", "--json"])
    assert none.exit_code == 1 and "no sending IP" in none.stderr and none.stdout == ""
    mode = cli.invoke(rotation_app, ["pick", "--tenant", "rot-a", "--mode", "fastest"])
    assert mode.exit_code != 0
    batch = cli.invoke(rotation_app, ["pick", "--tenant", "rot-a", "--count", "7", "--json"])
    assert batch.exit_code == 0, batch.output
    assert [p["position"] for p in json.loads(batch.stdout)] == list(range(2, 9))
    lines = cli.invoke(rotation_app, ["pick", "--tenant", "rot-a", "-n", "3"]).stdout.splitlines()
    assert lines == ["127.0.60.5 vmta-rot-a-5", "127.0.60.1 vmta-rot-a-1", "127.0.60.2 vmta-rot-a-2"]
    too_many = cli.invoke(rotation_app, ["pick", "--tenant", "rot-a", "--count", "10001"])
    assert too_many.exit_code != 0


def test_registered_in_the_main_cli(cli: CliRunner) -> None:
    from cli.main import app

    out = cli.invoke(app, ["rotation", "pick", "--help"])
    assert out.exit_code == 0 and "round_robin" in out.stdout


@pytest.mark.parametrize("state", ["missing", "unmigrated"])
def test_cli_missing_or_unmigrated_database_is_a_precise_error(state: str, tmp_path: Any, monkeypatch: Any,
                                                               capsys: Any) -> None:
    """Through the CLI's real entry (run_app): one line naming `db upgrade`, exit 2, no file created."""
    import sqlite3
    import sys

    from cli.common import run_app
    from models.settings import get_settings

    path = tmp_path / "empty.db"
    if state == "unmigrated":
        sqlite3.connect(path).close()
    monkeypatch.setenv("EMAIL_ENGINE_DATABASE_URL", f"sqlite:///{path}")
    monkeypatch.setattr(sys, "argv", ["email-engine", "pick", "--tenant", "rot-a"])
    get_settings.cache_clear()
    try:
        with pytest.raises(SystemExit) as stop:
            run_app(rotation_app)
    finally:
        get_settings.cache_clear()
    err = capsys.readouterr().err
    assert stop.value.code == 2, err
    assert "db upgrade" in err and "Traceback" not in err
    assert path.exists() == (state == "unmigrated")


def test_a_batch_equals_the_same_number_of_single_picks(db_url: str) -> None:
    fleet = load_fleet(db_url)
    # Round robin: a batch of 10 after 10 single picks continues exactly where they left off (5 IPs).
    single = [rotation.pick("rot-a", "round_robin", url=fleet, now=NOW) for _ in range(10)]
    batch = rotation.pick_many("rot-a", "round_robin", 10, url=fleet, now=NOW)
    assert [p.position for p in batch] == [(p.position or 0) + 10 for p in single]
    assert single[0].position == 0
    assert [p.address for p in batch] == [p.address for p in single]
    r1, r2 = random.Random(8), random.Random(8)
    assert [p.address for p in rotation.pick_many("rot-a", "weighted_random", 40, url=fleet, rng=r1, now=NOW)] == \
        [weighted_random(candidates(fleet), r2).address for _ in range(40)]
    before = recorded(fleet)
    lu = rotation.pick_many("rot-a", "least_used", 500, url=fleet, now=NOW)
    sent = Counter({a: float(n) for a, n in before.items()})
    expected = []
    for _ in range(500):
        chosen, _ = least_used(candidates(fleet), sent)
        sent[chosen.address] += 1
        expected.append(chosen.address)
    assert [p.address for p in lu] == expected
    assert recorded(fleet) == {a: int(n) for a, n in sent.items() if n}
    with pytest.raises(ValueError):
        rotation.pick_many("rot-a", "round_robin", 0, url=fleet)


def test_picks_name_only_members_of_the_rendered_powermta_pool(db_url: str) -> None:
    """A pick goes into X-Virtual-MTA, which PowerMTA obeys: it must name a member of the tenant's rendered
    pool (an active IP), never a warming IP. A warming IP is the cold VirtualMTA of an active one, which
    re-routes at most its quota to it (max-cold-virtual-mta-msg); named directly it would bypass that cap.
    The reference fleet, its PowerMTA render parsed by models.mta_share, picks in every mode."""
    from activities.mta.base import backend_for
    from models.enums import MtaBackend
    from models.mta_render.from_inventory import snapshot_from_inventory
    from models.mta_share import parse_pmta
    from tests.conftest import REFERENCE_INVENTORY

    text = REFERENCE_INVENTORY.read_text()
    apply_inventory(parse(text), actor="test", url=db_url)
    snap = snapshot_from_inventory(parse(text)).for_host("pmta-1")
    cfg = parse_pmta(dict(backend_for(MtaBackend.POWERMTA).render(snap).files))
    for t in snap.tenants:
        pool = set(cfg.pools[t.pool])
        warming = {ip.vmta for ip in t.ips if ip.status == IpStatus.WARMING}
        colds = {c for v in cfg.vmtas.values() for c in v.colds}
        assert len(pool) == 40 and len(warming) == 7 and warming <= colds and not warming & pool
        rr = rotation.pick_many(t.name, "round_robin", 2 * len(pool), url=db_url)
        assert Counter(p.vmta for p in rr) == dict.fromkeys(pool, 2)  # every member, nothing else
        others = rotation.pick_many(t.name, "weighted_random", 2_000, url=db_url, now=NOW)
        others += rotation.pick_many(t.name, "least_used", 3 * len(pool), url=db_url, now=NOW)
        assert {p.vmta for p in others} <= pool and {p.status for p in rr + others} == {IpStatus.ACTIVE}
    st = rotation.status("client-1", url=db_url)
    assert {u.vmta for u in st.ips} == set(cfg.pools[snap.tenants[0].pool])


def test_a_tenant_with_only_warming_ips_gets_a_precise_error(fleet: str) -> None:
    with session_scope(fleet) as s:
        for ip in s.exec(select(SendingIp).where(col(SendingIp.address).in_(["127.0.60.11", "127.0.60.12"]))):
            ip.status, ip.warmup_phase, ip.daily_quota = IpStatus.WARMING, "week_1", 50  # type: ignore[assignment]
            s.add(ip)
    for mode in RotationMode:
        with pytest.raises(RotationError, match=r"'rot-b' has no active IP to pick \(2 warming\): warming IPs are "
                                                r"never picked .* send without X-Virtual-MTA"):
            rotation.pick("rot-b", mode, url=fleet)
