"""Rotation picks per second per mode, on SQLite and PostgreSQL, with baselines in the same run.

    .venv/bin/python -m bench.rotation [--seconds 1.5] [--threads 8] [--no-postgres]

Fleet: the reference inventory (client-1: 40 pool members, its active IPs). For each database and mode it measures
one caller, N concurrent threads (each its own connection) and batches of 100 picks (`rotation pick
--count 100`, one transaction), for a bounded time each. Baselines:
- in-memory: the same pure rules with the state in a Python variable (no database): the ceiling;
- naive cursor: round robin as SELECT position, then UPDATE position = read + 1, without a lock (the
  usual cache/DB "get then set"): it is also wrong under concurrency, so the run counts the positions
  it handed out more than once and the per-IP imbalance; the engine's pick hands out none.
Durability is the same on both sides (no fsync wait per commit). Timings depend on the machine and
its load; the ratios printed are from this one run.
"""

from __future__ import annotations

import argparse
import functools
import os
import random
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select, text, update
from sqlalchemy.engine import make_url

from activities import db, rotation
from activities.inventory import apply_inventory
from models import rotation as rules
from models.inventory import parse
from models.rotation_tables import RotationCursor

REPO = Path(__file__).resolve().parent.parent
INVENTORY = REPO / "deploy" / "reference-inventory.toml"
TENANT = "client-1"
BATCH = 100


def timed(seconds: float, threads: int, fn: Callable[[], Any]) -> tuple[float, list[Any]]:
    """Call fn in `threads` threads until `seconds` pass; (calls per second, results)."""
    results: list[list[Any]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads + 1)
    stop = threading.Event()

    def run(i: int) -> None:
        barrier.wait()
        try:
            while not stop.is_set():
                results[i].append(fn())
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    flat = [r for rs in results for r in rs]
    return len(flat) / elapsed, flat


def naive_pick_factory(url: str, tenant_id: int, candidates: tuple[rules.Candidate, ...]) -> Callable[[], int]:
    """Round robin as read-modify-write without a lock: returns the position it used."""
    engine = db.get_engine(url)
    cursor = RotationCursor.__table__  # type: ignore[attr-defined]
    sqlite = engine.dialect.name == "sqlite"

    def pick() -> int:
        with engine.connect() as conn:
            if sqlite:
                conn.exec_driver_sql("PRAGMA synchronous=NORMAL")
            else:
                conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
            position = int(conn.execute(select(cursor.c.position).where(cursor.c.tenant_id == tenant_id)).scalar_one())
            rules.round_robin(candidates, position)
            conn.execute(update(cursor).where(cursor.c.tenant_id == tenant_id).values(position=position + 1))
            conn.commit()
            return position

    return pick


def in_memory_factory(mode: rules.RotationMode, ips: list[rules.Candidate]) -> Callable[[], Any]:
    state = {"position": 0}
    sent: Counter[str] = Counter()
    rng = random.Random(1)
    lock = threading.Lock()

    def pick() -> Any:
        with lock:
            chosen = rules.pick(TENANT, mode, ips, position=state["position"], rng=rng, sent_last_hour=sent)
            state["position"] += 1
            sent[chosen.address] += 1
            return chosen

    return pick


def candidates(url: str) -> tuple[int, list[rules.Candidate]]:
    with db.get_engine(url).connect() as conn:
        return rotation._tenant_ips(conn, TENANT)


def reset(url: str) -> None:
    with db.get_engine(url).begin() as conn:
        conn.execute(text("DELETE FROM ip_hourly_sent"))
        conn.execute(text("UPDATE rotation_cursor SET position = 0"))


def bench_database(label: str, url: str, seconds: float, threads: int) -> list[tuple[str, ...]]:
    db.upgrade(url)
    apply_inventory(parse(INVENTORY.read_text()), actor="bench", url=url)
    tenant_id, ips = candidates(url)
    eligible = rules.eligible(ips)
    rotation.pick(TENANT, "round_robin", url=url)  # creates the cursor row
    rows: list[tuple[str, ...]] = []
    for mode in rules.RotationMode:
        mem_rate, _ = timed(seconds, 1, in_memory_factory(mode, ips))
        for callers in (1, threads):
            reset(url)
            rate, picks = timed(seconds, callers, functools.partial(rotation.pick, TENANT, mode, url=url))
            dupes = "-"
            spread = "-"
            if mode == rules.RotationMode.ROUND_ROBIN:
                positions = Counter(p.position for p in picks)
                dupes = str(sum(n - 1 for n in positions.values() if n > 1))
                per_ip = Counter(p.address for p in picks)
                spread = str(max(per_ip.values()) - min(per_ip.get(c.address, 0) for c in eligible))
            rows.append((label, mode.value, "engine", str(callers), f"{rate:,.0f}", f"{rate / mem_rate:.4f}",
                         dupes, spread))
        reset(url)
        batch_rate, batches = timed(seconds, 1, functools.partial(rotation.pick_many, TENANT, mode, BATCH, url=url))
        batch_rate *= BATCH
        batch_dupes = "-"
        if mode == rules.RotationMode.ROUND_ROBIN:
            seen = Counter(p.position for b in batches for p in b)
            batch_dupes = str(sum(n - 1 for n in seen.values() if n > 1))
        rows.append((label, mode.value, f"engine, --count {BATCH}", "1", f"{batch_rate:,.0f}",
                     f"{batch_rate / mem_rate:.4f}", batch_dupes, "-"))
        rows.append((label, mode.value, "in-memory", "1", f"{mem_rate:,.0f}", "1", "-", "-"))
    for callers in (1, threads):
        reset(url)
        naive_rate, handed_out = timed(seconds, callers, naive_pick_factory(url, tenant_id, eligible))
        seen = Counter(handed_out)
        naive_dupes = sum(n - 1 for n in seen.values() if n > 1)
        naive_ip = Counter(rules.round_robin(eligible, p).address for p in handed_out)
        naive_spread = max(naive_ip.values()) - min(naive_ip.get(c.address, 0) for c in eligible)
        rows.append((label, "round_robin", "naive get+set", str(callers), f"{naive_rate:,.0f}", "-",
                     str(naive_dupes), str(naive_spread)))
    return rows


def engine_vs_naive(rows: list[tuple[str, ...]]) -> list[str]:
    lines = []
    for label in sorted({r[0] for r in rows}):
        for callers in sorted({r[3] for r in rows if r[0] == label}, key=int):
            eng = [r for r in rows if r[0] == label and r[1] == "round_robin" and r[2] == "engine" and r[3] == callers]
            nai = [r for r in rows if r[0] == label and r[2] == "naive get+set" and r[3] == callers]
            if eng and nai:
                e, n = float(eng[0][4].replace(",", "")), float(nai[0][4].replace(",", ""))
                lines.append(f"{label}, {callers} caller(s): engine round robin / naive get+set = {e / n:.2f}x "
                             f"(engine duplicates {eng[0][6]}, naive duplicates {nai[0][6]})")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1.5, help="measuring time per case (default 1.5)")
    parser.add_argument("--threads", type=int, default=8, help="concurrent callers (default 8)")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    args = parser.parse_args()
    seconds = max(0.2, min(args.seconds, 30.0))
    threads = max(2, min(args.threads, 64))
    rows: list[tuple[str, ...]] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["EMAIL_ENGINE_VAR_DIR"] = tmp
        rows += bench_database("sqlite", f"sqlite:///{tmp}/bench.db", seconds, threads)
        if not args.no_postgres:
            admin_url = db.normalize_url(os.environ.get(
                "EMAIL_ENGINE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"))
            name = f"ee_bench_rotation_{uuid.uuid4().hex[:8]}"
            admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
            try:
                with admin.connect() as conn:
                    conn.execute(text(f'CREATE DATABASE "{name}"'))
            except Exception as exc:
                print(f"PostgreSQL skipped: not reachable at {admin_url} ({type(exc).__name__})")
            else:
                url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
                try:
                    rows += bench_database("postgresql", url, seconds, threads)
                finally:
                    db.dispose_engines()
                    with admin.connect() as conn:
                        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
        db.dispose_engines()
    header = ("database", "mode", "implementation", "callers", "picks/s", "vs in-memory", "dup. positions",
              "max-min per IP")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print(f"rotation picks for {TENANT} (reference fleet), {seconds:g} s per case, cpu count {os.cpu_count()}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    print()
    for line in engine_vs_naive(rows):
        print(line)
    print(f"total {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
