"""Ingest PowerMTA accounting files into daily_stat, idempotently (issue 4).

Every file is tracked in `accounting_file` (source, path): the byte offset just after the last record
counted, the header row, and a fingerprint of its first bytes. Counting a chunk into daily_stat and
moving the offset happen in ONE transaction, so a retried, repeated or concurrent ingest never adds a
record twice. A different file at the same path (rotated, recreated: its first bytes differ, or it is
shorter than the offset) starts again from its beginning. Files are read in bounded chunks.

Remote bounces (and complaints without a usable IP) are attributed through the delivery index
(activities/delivery_index.py): every chunk's deliveries are written there in the same transaction, so
an `rb` read in a later run, chunk or file still finds the IP that delivered its message.

Sources: local files (`email-engine stats ingest FILE...`, source "local", keyed by absolute path) and
each enabled MTA host over SFTP (AccountingIngestWorkflow, source = host name, same SSH settings as
deploys), files `<accounting_dir>/<accounting_glob>`.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import fnmatch
import hashlib
import io
import posixpath
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.db import session_scope
from activities.delivery_index import add_stats, known_deliveries, prune, remember, retention_cutoff
from activities.keepalive import heartbeating
from activities.webhooks import queue_in, subscribers
from models import names
from models.accounting import AccountingParser, Contact
from models.accounting_tables import AccountingFile
from models.settings import get_settings
from models.tables import DailyStat, MtaHost, SendingIp, utcnow
from models.webhooks import ACCOUNTING_CONTACT_EVENTS, WebhookEvent, stable_id

FP_BYTES = 4096
CHUNK_BYTES = 8 * 1024 * 1024


class StaleOffset(Exception):
    """The file's offset moved between reading it and counting (a concurrent ingest): read again."""


@dataclass
class FileReport:
    source: str
    path: str
    start_offset: int = 0
    end_offset: int = 0
    records: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    malformed: int = 0
    unattributed: int = 0
    #: unattributed records per type: `rb` here is a remote bounce whose delivery is unknown
    unattributed_by_type: dict[str, int] = field(default_factory=dict)
    transient: int = 0
    samples: list[str] = field(default_factory=list)
    restarted: bool = False  # a different file than last time: read from the start
    ip_days: int = 0  # (IP, day) rows touched
    indexed: int = 0  # deliveries offered to the delivery index
    contacts: int = 0  # contact.* webhook events queued (0 unless a receiver subscribes)
    error: str = ""

    def merge(self, other: FileReport) -> None:
        self.end_offset = other.end_offset
        self.records += other.records
        self.by_type = dict(Counter(self.by_type) + Counter(other.by_type))
        self.malformed += other.malformed
        self.unattributed += other.unattributed
        self.unattributed_by_type = dict(Counter(self.unattributed_by_type) + Counter(other.unattributed_by_type))
        self.transient += other.transient
        self.samples = (self.samples + other.samples)[:20]
        self.restarted = self.restarted or other.restarted
        self.ip_days += other.ip_days
        self.indexed += other.indexed
        self.contacts += other.contacts


def _fingerprint(head: bytes) -> tuple[str, int]:
    n = min(len(head), FP_BYTES)
    return hashlib.sha256(head[:n]).hexdigest(), n


def _row(session: Session, source: str, path: str, lock: bool = False) -> AccountingFile | None:
    q = select(AccountingFile).where(AccountingFile.source == source, AccountingFile.path == path)
    if lock:
        q = q.with_for_update()
    return session.exec(q).first()


def _continues(row: AccountingFile | None, head: bytes, size: int) -> bool:
    """Whether the file now at the path is the one whose offset is stored."""
    if row is None or row.offset == 0:
        return False
    if size < row.offset or len(head) < row.fingerprint_len:
        return False
    return hashlib.sha256(head[:row.fingerprint_len]).hexdigest() == row.fingerprint


def resume_offset(source: str, path: str, head: bytes, size: int, url: str | None = None) -> int:
    """Where reading the file must start (0 for a new or replaced file)."""
    with session_scope(url) as session:
        row = _row(session, source, path)
        return row.offset if row is not None and _continues(row, head, size) else 0


def ingest_chunk(source: str, path: str, head: bytes, size: int, data: bytes, data_offset: int,
                 url: str | None = None) -> FileReport:
    """Count the complete records of `data` (the file's bytes from `data_offset`) and move the offset,
    in one transaction, with the deliveries it adds to the delivery index (pruned there to the retention).
    Raises StaleOffset if the stored offset is no longer `data_offset`."""
    report = FileReport(source, path, data_offset, data_offset)
    retention_days = get_settings().accounting_delivery_retention_days
    with session_scope(url) as session:
        row = _row(session, source, path, lock=True)
        start = row.offset if row is not None and _continues(row, head, size) else 0
        if start != data_offset:
            raise StaleOffset(f"{source}:{path}: offset is {start}, read from {data_offset}")
        header = next(csv.reader([row.header])) if (row is not None and start and row.header) else None
        inventory = list(session.exec(select(SendingIp.id, SendingIp.address, SendingIp.vmta_name)))
        ip_ids = {address: ip_id for ip_id, address, _ in inventory if ip_id is not None}
        vmtas = {vmta: address for _, address, vmta in inventory}
        # contact events (recipient addresses) are collected only for a subscribed receiver
        wanted = any(subscribers(session, set(ACCOUNTING_CONTACT_EVENTS)).values())
        parser = AccountingParser(vmtas, set(ip_ids), header, collect_contacts=wanted)
        consumed = parser.feed(data, final=False)
        r = parser.report
        report.contacts = len(_queue_contacts(session, r.contacts, source, path, start, head))
        # rb/f records without an IP: their deliveries, whichever run read them (one query per page)
        parser.resolve(known_deliveries(session, r.pending, {v: k for k, v in ip_ids.items()}))
        if r.deliveries:
            cutoff = retention_cutoff(max(d.at for d in r.deliveries), utcnow(), retention_days)
            report.indexed = remember(session, r.deliveries, ip_ids, cutoff)
            prune(session, cutoff)
        add_stats(session, r.totals, ip_ids)
        fp, fp_len = _fingerprint(head)
        if row is None:
            row = AccountingFile(source=source, path=path, fingerprint=fp, fingerprint_len=fp_len)
        elif start == 0 and row.offset:
            report.restarted = True
            row.records = row.malformed = row.unattributed = row.transient = 0
        buf = io.StringIO()
        csv.writer(buf, lineterminator="").writerow(r.header)
        row.header = buf.getvalue()[:8192]
        row.fingerprint, row.fingerprint_len = fp, fp_len
        row.offset = start + consumed
        row.records += r.records
        row.malformed += r.malformed
        row.unattributed += r.unattributed
        row.transient += r.transient
        row.last_ingest = utcnow()
        session.add(row)
    report.end_offset = start + consumed
    report.records, report.by_type = r.records, dict(r.by_type)
    report.malformed, report.unattributed, report.transient = r.malformed, r.unattributed, r.transient
    report.unattributed_by_type = dict(r.unattributed_by_type)
    report.samples, report.ip_days = list(r.samples), len(r.totals)
    return report


def _queue_contacts(session: Session, contacts: list[Contact], source: str, path: str, start: int,
                    head: bytes) -> list[WebhookEvent]:
    """contact.* events of this chunk, queued in the chunk's transaction: counted once, queued once
    (the id is the record's file, first bytes and offset, so a chunk read again queues nothing)."""
    fp, _ = _fingerprint(head)
    events = [WebhookEvent(id=stable_id("contact", source, path, fp, str(start + c.where)), type=c.event,
                           occurred_at=c.at.isoformat(),
                           data={"recipient": c.recipient, "category": c.category or None, "ip": c.ip,
                                 "source": "accounting"})
              for c in contacts]
    queue_in(session, events)
    return events


async def ingest_reader(source: str, path: str, size: int, read: Callable[[int, int], Awaitable[bytes]],
                        url: str | None = None, chunk: int = CHUNK_BYTES) -> FileReport:
    """Ingest one file through `read(offset, n)` in chunks, from where the last ingest stopped."""
    head = await read(0, FP_BYTES)
    total = FileReport(source, path)
    for _attempt in range(5):
        try:
            offset = await asyncio.to_thread(resume_offset, source, path, head, size, url)
            total.start_offset = total.end_offset = offset
            while offset < size:
                data = await read(offset, min(chunk, size - offset))
                if not data:
                    break
                part = await asyncio.to_thread(ingest_chunk, source, path, head, size, data, offset, url)
                total.merge(part)
                if part.end_offset == offset:  # only an unfinished record is left
                    if len(data) >= chunk:  # a record longer than a chunk cannot exist (bounded parser)
                        raise AssertionError("parser consumed nothing from a full chunk")
                    break
                offset = part.end_offset
            return total
        except StaleOffset:
            continue
    raise StaleOffset(f"{source}:{path}: kept changing under a concurrent ingest")


async def ingest_local(path: Path, url: str | None = None) -> FileReport:
    """Ingest a local accounting file (source "local", keyed by its absolute path)."""
    path = path.resolve()
    size = path.stat().st_size
    with path.open("rb") as f:

        async def read(offset: int, n: int) -> bytes:
            f.seek(offset)
            return f.read(n)

        return await ingest_reader("local", str(path), size, read, url)


# ----------------------------------------------------------------------------------- MTA hosts (SFTP)


@dataclass
class HostIngestRequest:
    host: str


@dataclass
class HostIngestReport:
    host: str
    files: list[FileReport] = field(default_factory=list)
    error: str = ""


def enabled_hosts(url: str | None = None) -> list[str]:
    with session_scope(url) as session:
        return [h.name for h in session.exec(select(MtaHost).where(col(MtaHost.enabled).is_(True))
                                             .order_by(col(MtaHost.name)))]


async def ingest_host(host: str, url: str | None = None) -> HostIngestReport:
    """Fetch new accounting data from one MTA host over SFTP and ingest it."""
    import asyncssh

    from activities.mta.ssh import SshEndpoint, SshTarget, safe_remote_path
    from activities.snapshot import load_snapshot

    settings = get_settings()
    view = (await asyncio.to_thread(load_snapshot, url)).host(names.token(host, "MTA host name"))
    directory = safe_remote_path(settings.accounting_dir)
    report = HostIngestReport(host)
    async with SshTarget(SshEndpoint.for_host(view, settings)) as target:
        sftp = target.sftp
        for name in await target.list_dir(directory):
            if not fnmatch.fnmatch(name, settings.accounting_glob):
                continue
            path = posixpath.join(directory, name)
            attrs = await sftp.stat(path)
            size = int(attrs.size or 0)
            async with sftp.open(path, "rb") as f:

                async def read(offset: int, n: int, f: asyncssh.SFTPClientFile = f) -> bytes:
                    await f.seek(offset)
                    data = await f.read(n)
                    return data if isinstance(data, bytes) else data.encode()

                try:
                    report.files.append(await ingest_reader(host, path, size, read, url))
                except StaleOffset as err:
                    report.files.append(FileReport(host, path, error=str(err)))
            with_heartbeat(f"{host}:{path}")
    return report


def with_heartbeat(detail: str) -> None:
    if activity.in_activity():
        activity.heartbeat(detail)


@activity.defn(name="list_accounting_hosts")
@heartbeating
def list_accounting_hosts() -> list[str]:
    """The MTA hosts accounting is fetched from (enabled ones only: the engine never contacts others)."""
    return enabled_hosts()


@activity.defn(name="ingest_host_accounting")
@heartbeating
async def ingest_host_accounting(req: HostIngestRequest) -> HostIngestReport:
    """Fetch and ingest new accounting records of one MTA host (idempotent: offsets in the database)."""
    from activities.mta.ssh import HostKeyMismatch, SshUnavailable

    try:
        return await ingest_host(req.host)
    except HostKeyMismatch as err:
        raise ApplicationError(str(err), type="HostKeyMismatch", non_retryable=True) from None
    except SshUnavailable as err:
        raise ApplicationError(str(err), type="SshUnavailable") from None


# ------------------------------------------------------------------------------------------ reading


def show_stats(address: str, days: int = 7, url: str | None = None, today: dt.date | None = None
               ) -> list[dict[str, object]]:
    """The IP's daily stats for the last `days` days (oldest first, today included)."""
    address = names.ip_address(address)
    today = today or dt.datetime.now(dt.UTC).date()
    first = today - dt.timedelta(days=days - 1)
    with session_scope(url) as session:
        ip = session.exec(select(SendingIp).where(SendingIp.address == address)).first()
        if ip is None:
            raise LookupError(f"IP {address} is not in the inventory")
        rows = {r.day: r for r in session.exec(select(DailyStat).where(DailyStat.ip_id == ip.id,
                                                                       col(DailyStat.day) >= first,
                                                                       col(DailyStat.day) <= today))}
        out = []
        for i in range(days):
            day = first + dt.timedelta(days=i)
            r = rows.get(day)
            out.append({"day": day.isoformat(), "sent": r.sent if r else 0, "delivered": r.delivered if r else 0,
                        "bounced": r.bounced if r else 0, "complaints": r.complaints if r else 0,
                        "opens": r.opens if r and r.opens_measured else None})
        return out
