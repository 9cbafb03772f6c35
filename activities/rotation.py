"""Rotation picks against the inventory database: durable round-robin state, pick-and-record counters.

One pick is one short transaction, safe under any number of concurrent callers (threads or processes):
- round_robin: `UPDATE rotation_cursor SET position = position + 1 ... RETURNING position` holds the
  tenant's cursor row until commit, so every caller gets its own position and N picks over n IPs give
  each IP exactly N/n (N a multiple of n, candidate set unchanged).
- least_used: `SELECT ... FOR UPDATE` on the same row serializes the tenant's least-used picks, so two
  callers never both see the same counts and pick the same IP.
- weighted_random: no tenant lock (the counter upsert is atomic).
On SQLite every pick runs in `BEGIN IMMEDIATE` (the write lock is taken first, waiting up to the
connection's busy_timeout), which serializes picks across threads and processes.

Durability: a pick commits without waiting for the disk flush (PostgreSQL `synchronous_commit off`
for that transaction only; SQLite `synchronous=NORMAL` in WAL mode for that connection during the
pick, restored afterwards). The state survives process and server restarts; only an OS crash or power
loss can drop the last fraction of a second of picks, which merely repeats an IP once. Without it each
pick waits for an fsync (several milliseconds), the bottleneck of every pick.

Every pick records itself in ip_hourly_sent (`INSERT ... ON CONFLICT DO UPDATE SET sent = sent + 1`)
for least_used; the first pick of a tenant in a new UTC hour prunes that tenant's rows older than the
previous hour, so the table holds at most two rows per IP. Locks are always taken in the same order
(cursor row, then counter rows), so picks cannot deadlock one another.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from activities.db import get_engine
from models import names
from models.rotation import (
    HOUR_SECONDS,
    Candidate,
    Pick,
    RotationError,
    RotationMode,
    eligible,
    hour_of,
    last_hour_estimate,
    least_used,
    load,
    require_candidates,
    round_robin,
    share_weight,
    weighted_random,
)
from models.rotation_tables import IpHourlySent, RotationCursor
from models.tables import SendingIp, Tenant

_cursor = RotationCursor.__table__  # type: ignore[attr-defined]
_sent = IpHourlySent.__table__  # type: ignore[attr-defined]
_ip = SendingIp.__table__  # type: ignore[attr-defined]
_tenant = Tenant.__table__  # type: ignore[attr-defined]

_rng = random.SystemRandom()


# Statements are built once (bound parameters), so a pick spends its time in the database, not in
# building SQL. Dialect-specific upserts: one per dialect.
_TENANT_IPS = (
    select(_tenant.c.id.label("tenant_id"), _ip.c.id, _ip.c.address, _ip.c.vmta_name, _ip.c.status,
           _ip.c.daily_quota, _ip.c.weight)
    .select_from(_tenant.outerjoin(_ip, _ip.c.tenant_id == _tenant.c.id)).where(_tenant.c.name == bindparam("b_name"))
)
_ADVANCE = (update(_cursor).where(_cursor.c.tenant_id == bindparam("b_tid"))
            .values(position=_cursor.c.position + bindparam("b_n"))
            .returning(_cursor.c.position, _cursor.c.pruned_hour))
_READ = select(_cursor.c.pruned_hour).where(_cursor.c.tenant_id == bindparam("b_tid"))
_READ_LOCKED = _READ.with_for_update()
_CLAIM_PRUNE = (update(_cursor).where(_cursor.c.tenant_id == bindparam("b_tid"))
                .where(_cursor.c.pruned_hour.is_(None) | (_cursor.c.pruned_hour < bindparam("b_hour")))
                .values(pruned_hour=bindparam("b_hour")))
_PRUNE = (delete(_sent).where(_sent.c.hour < bindparam("b_before"))
          .where(_sent.c.ip_id.in_(select(_ip.c.id).where(_ip.c.tenant_id == bindparam("b_tid")))))
_LAST_HOURS = (select(_sent.c.ip_id, _sent.c.hour, _sent.c.sent)
               .where(_sent.c.ip_id.in_(bindparam("b_ids", expanding=True)))
               .where(_sent.c.hour.in_(bindparam("b_hours", expanding=True))))
_ENSURE: dict[str, Any] = {}
_RECORD: dict[str, Any] = {}
for _dialect, _ins in (("postgresql", pg_insert), ("sqlite", sqlite_insert)):
    _ENSURE[_dialect] = (_ins(_cursor).values(tenant_id=bindparam("b_tid"), position=0)
                         .on_conflict_do_nothing(index_elements=["tenant_id"]))
    _new = _ins(_sent).values(ip_id=bindparam("b_ip"), hour=bindparam("b_hour"), sent=bindparam("b_k"))
    _RECORD[_dialect] = _new.on_conflict_do_update(index_elements=["ip_id", "hour"],
                                                   set_={"sent": _sent.c.sent + _new.excluded.sent})


def _relax_sync(conn: Connection) -> int | None:
    """No fsync wait at this pick's commit; returns the SQLite connection's synchronous level to restore."""
    if conn.dialect.name == "sqlite":
        previous = int(conn.exec_driver_sql("PRAGMA synchronous").scalar() or 0)
        conn.exec_driver_sql("PRAGMA synchronous=NORMAL")
        return previous
    conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
    return None


def _begin(conn: Connection) -> None:
    if conn.dialect.name == "sqlite":
        # pysqlite would BEGIN (deferred) only at the first write; take the write lock up front instead.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _end(conn: Connection, sqlite_synchronous: int | None) -> None:
    if sqlite_synchronous is not None:
        conn.exec_driver_sql(f"PRAGMA synchronous={int(sqlite_synchronous)}")
        conn.commit()


def _tenant_ips(conn: Connection, tenant: str) -> tuple[int, list[Candidate]]:
    """The tenant's id and all its IPs, in one query."""
    rows = conn.execute(_TENANT_IPS, {"b_name": tenant}).all()
    if not rows:
        raise RotationError(f"no tenant named {tenant!r} in the inventory")
    return int(rows[0].tenant_id), [
        Candidate(address=r.address, vmta=r.vmta_name, status=r.status, daily_quota=r.daily_quota, weight=r.weight,
                  ip_id=r.id) for r in rows if r.id is not None]


def _advance(conn: Connection, tenant_id: int, n: int) -> tuple[int, int | None]:
    """Consume the tenant's next n round-robin positions (row locked until commit); (first, pruned_hour)."""
    row = conn.execute(_ADVANCE, {"b_tid": tenant_id, "b_n": n}).first()
    if row is None:
        conn.execute(_ENSURE[conn.dialect.name], {"b_tid": tenant_id})
        row = conn.execute(_ADVANCE, {"b_tid": tenant_id, "b_n": n}).one()
    return int(row[0]) - n, row[1]


def _read_cursor(conn: Connection, tenant_id: int, lock: bool) -> int | None:
    stmt = _READ_LOCKED if lock else _READ
    row = conn.execute(stmt, {"b_tid": tenant_id}).first()
    if row is None:
        conn.execute(_ENSURE[conn.dialect.name], {"b_tid": tenant_id})
        row = conn.execute(stmt, {"b_tid": tenant_id}).one()
    return row[0]


def _prune(conn: Connection, tenant_id: int, hour: int, pruned_hour: int | None) -> None:
    """Once per tenant and hour: drop counter rows older than the previous hour."""
    if pruned_hour is not None and pruned_hour >= hour:
        return
    if conn.execute(_CLAIM_PRUNE, {"b_tid": tenant_id, "b_hour": hour}).rowcount:
        conn.execute(_PRUNE, {"b_tid": tenant_id, "b_before": hour - 1})


def _last_hour(conn: Connection, candidates: Sequence[Candidate], now: float) -> dict[str, float]:
    hour = hour_of(now)
    by_id = {c.ip_id: c.address for c in candidates}
    counts: dict[str, list[int]] = {a: [0, 0] for a in by_id.values()}
    rows = conn.execute(_LAST_HOURS, {"b_ids": list(by_id), "b_hours": [hour, hour - 1]})
    for ip_id, h, sent in rows:
        counts[by_id[ip_id]][0 if h == hour else 1] += int(sent)
    into = now - hour * HOUR_SECONDS
    return {a: last_hour_estimate(cur, prev, into) for a, (cur, prev) in counts.items()}


def _record(conn: Connection, picks: Counter[int], hour: int) -> None:
    conn.execute(_RECORD[conn.dialect.name],
                 [{"b_ip": ip_id, "b_hour": hour, "b_k": k} for ip_id, k in sorted(picks.items())])



_sqlite_locks: dict[int, threading.Lock] = {}
_sqlite_locks_guard = threading.Lock()


def _local_lock(engine: Engine) -> AbstractContextManager[object]:
    """SQLite: threads of one process queue on a lock instead of SQLite's sleeping busy handler
    (BEGIN IMMEDIATE still serializes processes). PostgreSQL: no process lock, the row lock does it."""
    if engine.dialect.name != "sqlite":
        return nullcontext()
    lock = _sqlite_locks.get(id(engine))
    if lock is None:
        with _sqlite_locks_guard:
            lock = _sqlite_locks.setdefault(id(engine), threading.Lock())
    return lock


#: (engine, tenant id) -> newest hour this process saw pruned: a monotonic fact, so caching it is safe.
_pruned_seen: dict[tuple[int, int], int] = {}


MAX_BATCH = 10_000


def pick(tenant: str, mode: RotationMode | str, *, url: str | None = None, rng: random.Random | None = None,
         now: float | None = None) -> Pick:
    """Pick one of the tenant's sending IPs and record the pick (one transaction).

    Raises ValueError for a bad tenant name or mode (before any SQL) and RotationError when the
    tenant does not exist or has nothing to pick from. The tenant's IPs are read first, without a
    lock (a status change committed before the pick starts is always seen); the locked part is kept
    to the cursor update, the counter upsert and the commit.
    """
    return pick_many(tenant, mode, 1, url=url, rng=rng, now=now)[0]


def pick_many(tenant: str, mode: RotationMode | str, count: int, *, url: str | None = None,
              rng: random.Random | None = None, now: float | None = None) -> list[Pick]:
    """`count` consecutive picks in one transaction: the same IPs as `count` single picks in a row
    (round robin reserves `count` consecutive positions; least used feeds each pick back into the
    counts), recorded together. For feeders that assign IPs to a batch of messages at once."""
    name = names.tenant(tenant)
    mode = RotationMode(mode)
    if not 1 <= count <= MAX_BATCH:
        raise ValueError(f"count must be between 1 and {MAX_BATCH}")
    t = time.time() if now is None else now
    hour = hour_of(t)
    engine = get_engine(url)
    restore: int | None = None
    chosen: list[tuple[Candidate, int | None, float | None]] = []
    with _local_lock(engine), engine.connect() as conn:
        try:
            tenant_id, ips = _tenant_ips(conn, name)
            candidates = require_candidates(name, ips)
            restore = _relax_sync(conn)
            _begin(conn)
            seen_key = (id(engine), tenant_id)
            if mode == RotationMode.ROUND_ROBIN:
                first, pruned = _advance(conn, tenant_id, count)
                chosen = [(round_robin(candidates, p), p, None) for p in range(first, first + count)]
            elif mode == RotationMode.LEAST_USED:
                pruned = _read_cursor(conn, tenant_id, lock=True)
                sent = _last_hour(conn, candidates, t)
                for _ in range(count):
                    c, c_load = least_used(candidates, sent)
                    sent[c.address] = sent.get(c.address, 0.0) + 1
                    chosen.append((c, None, c_load))
            else:
                source = rng or _rng
                chosen = [(weighted_random(candidates, source), None, None) for _ in range(count)]
                seen = _pruned_seen.get(seen_key)
                pruned = seen if seen is not None and seen >= hour else _read_cursor(conn, tenant_id, lock=False)
            _prune(conn, tenant_id, hour, pruned)
            _pruned_seen[seen_key] = max(hour, _pruned_seen.get(seen_key, hour))
            _record(conn, Counter(c.ip_id for c, _, _ in chosen if c.ip_id is not None), hour)
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            if restore is not None:
                _end(conn, restore)
    return [Pick(tenant=name, mode=mode, address=c.address, vmta=c.vmta, status=c.status, position=p, load=lo,
                 candidates=len(candidates)) for c, p, lo in chosen]


@dataclass(frozen=True)
class IpUsage:
    address: str
    vmta: str
    status: str
    daily_quota: int
    sent_last_hour: float
    load: float
    share: float

    def to_dict(self) -> dict[str, Any]:
        return {"ip": self.address, "vmta": self.vmta, "status": self.status, "daily_quota": self.daily_quota,
                "sent_last_hour": round(self.sent_last_hour, 2), "load": round(self.load, 4),
                "weighted_share": round(self.share, 6)}


@dataclass(frozen=True)
class RotationStatus:
    tenant: str
    position: int
    ips: tuple[IpUsage, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "round_robin_position": self.position, "ips": [u.to_dict() for u in self.ips]}


def status(tenant: str, *, url: str | None = None, now: float | None = None) -> RotationStatus:
    """What rotation sees for a tenant: the eligible IPs in order, last hour's sends, load and share."""
    name = names.tenant(tenant)
    t = time.time() if now is None else now
    with get_engine(url).connect() as conn:
        tenant_id, ips = _tenant_ips(conn, name)
        position = conn.execute(select(_cursor.c.position).where(_cursor.c.tenant_id == tenant_id)).scalar()
        candidates = eligible(ips)
        sent = _last_hour(conn, candidates, t) if candidates else {}
        conn.rollback()
    total = sum(share_weight(c) for c in candidates) or 1
    return RotationStatus(tenant=name, position=int(position or 0), ips=tuple(
        IpUsage(address=c.address, vmta=c.vmta, status=c.status.value, daily_quota=c.daily_quota,
                sent_last_hour=sent[c.address], load=load(c, sent[c.address]), share=share_weight(c) / total)
        for c in candidates))
