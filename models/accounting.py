"""PowerMTA accounting files (CSV): a pure, bounded, never-crashing parser (notes/mta.md §1.8).

Format (PowerMTA v5 User's Guide §11.2): RFC 4180, UTF-8, header row first (first column `type`); a file
holding several record types has the union of their columns as header, unused cells empty. Fields are
looked up by header name, never by position.

What is counted, per sending IP and UTC day (from `timeLogged`):
- `d` (delivered): sent +1, delivered +1
- `b` (synchronous bounce): sent +1, bounced +1
- `rb` (remote/asynchronous bounce, after an earlier `d`): bounced +1
- `f` (feedback-loop complaint): complaints +1
- `t` (transient failure): counted in the report (`transient`, per IP too) but NOT stored: the message
  is still queued and ends later as `d` or `b`, so storing it would count a message twice.
- `tq`, `r`, `rs`: recognised and ignored.
Attribution: `dlvSourceIp` when present (for `f`, the ARF Source-IP `arf_Source-IP` first), else the `vmta`
column through the inventory's vmta -> IP map.
`b` records carry no `dlv*` data, so bounces use `vmta`. `rb` records carry neither (nor does an `f` whose
Source-IP is missing or not ours): they are attributed to the most recent earlier delivery of the same
message (`attribute`, keys from `message_key`), whichever ingest saw its `d`: the parser collects the
deliveries it sees and the records still to attribute, and the caller resolves them against the durable
delivery index (activities/accounting.py) plus this run's deliveries. One with no known delivery counts
as unattributed (`unattributed_by_type`). Records whose IP is not in the inventory are unattributed too.

Hostile input: a record that is not valid UTF-8 / CSV, has another number of fields than the header,
an unknown type, or an unparsable time is counted as malformed (with a sample reason) and skipped. A
record longer than MAX_RECORD_BYTES is skipped up to the next newline. An unterminated last line is left
for the next ingest (the MTA may still be writing it) unless it already exceeds the bound.
"""

from __future__ import annotations

import csv
import datetime as dt
import email.utils
import hashlib
import ipaddress
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

#: What the engine asks PowerMTA to write and everything the parser below reads, per record type
#: (rendered into `<acct-file>` as `records` and `record-fields`, User's Guide 3.3.11.11-12; `type` is
#: always written first, 11.2.2). `t` is left out: the guide advises it only for troubleshooting (large
#: files, 3.3.11.11) and it is never stored. `rb` has no IP: it is matched to a `d` by rcpt with envId,
#: else orig (fields both record types have, notes/mta.md §1.8; `jobId` is not an `rb` field).
#: `f` names the IP the complained-about message came from in the ARF report's Source-IP field (RFC
#: 5965), written as `arf_Source-IP` (`arf_<name>`, 11.2.8); its `dlvSourceIp` ("address of MTA from
#: which the message was received") is the fallback, then the delivery of the same rcpt/envId/orig.
#: `rcpt` and `bounceCat` of `b`/`rb` make the `contact.hard_bounce` webhook (issue 15: only categories
#: that say the address is bad, models.webhooks.contact_kind); `f` makes `contact.complaint`.
RECORD_FIELDS: dict[str, tuple[str, ...]] = {
    "d": ("timeLogged", "orig", "rcpt", "envId", "dlvSourceIp", "vmta"),
    "b": ("timeLogged", "vmta", "rcpt", "bounceCat"),
    "rb": ("timeLogged", "orig", "rcpt", "envId", "bounceCat"),
    "f": ("timeLogged", "orig", "rcpt", "envId", "arf_Source-IP", "dlvSourceIp"),
}
MAX_RECORD_BYTES = 64 * 1024
MAX_SAMPLES = 20
COUNTED = frozenset({"d", "b", "rb", "f", "t"})
IGNORED = frozenset({"tq", "r", "rs"})
REQUIRED = ("type", "timeLogged")


@dataclass
class Counts:
    sent: int = 0
    delivered: int = 0
    bounced: int = 0
    complaints: int = 0
    transient: int = 0

    def add(self, other: Counts) -> None:
        self.sent += other.sent
        self.delivered += other.delivered
        self.bounced += other.bounced
        self.complaints += other.complaints
        self.transient += other.transient


def _hash(value: str) -> int:
    """A signed 64-bit digest (0 for empty): compact keys for the delivery index, no address stored."""
    if not value:
        return 0
    return int.from_bytes(hashlib.blake2b(value.encode(), digest_size=8).digest(), "big", signed=True) or 1


@dataclass(frozen=True)
class MessageKey:
    """What ties a remote bounce or complaint to its delivery: rcpt (case-folded), envId, orig (folded)."""

    rcpt: int
    env: int = 0
    orig: int = 0


def message_key(rcpt: str, env_id: str = "", orig: str = "") -> MessageKey | None:
    """None without a recipient: such a record cannot be matched to any delivery."""
    rcpt = rcpt.strip().lower()
    if not rcpt:
        return None
    return MessageKey(_hash(rcpt), _hash(env_id.strip()), _hash(orig.strip().lower()))


@dataclass(frozen=True)
class Delivery:
    """A `d` record as the delivery index keeps it: which IP delivered which message, when (UTC)."""

    key: MessageKey
    ip: str
    at: dt.datetime


@dataclass(frozen=True)
class Unresolved:
    """An `rb` (or an `f` without a usable IP) waiting for its delivery to be looked up."""

    kind: str
    key: MessageKey
    at: dt.datetime


def matches(wanted: MessageKey, found: MessageKey) -> bool:
    """Same recipient, and the same envId when the record has one (a per-message id), else the same orig
    when it has one (a VERP or per-campaign return path), else the recipient alone."""
    if wanted.rcpt != found.rcpt:
        return False
    if wanted.env:
        return found.env == wanted.env
    return not wanted.orig or found.orig == wanted.orig


def attribute(pending: Iterable[Unresolved], deliveries: Iterable[Delivery]) -> list[str | None]:
    """For each pending record, the IP of the most recent matching delivery at or before its time (None:
    no known delivery). Ties at the same second go to the highest IP, so the answer never depends on the
    order rows come back from the database."""
    by_rcpt: dict[int, list[Delivery]] = defaultdict(list)
    for d in deliveries:
        by_rcpt[d.key.rcpt].append(d)
    out: list[str | None] = []
    for p in pending:
        best: Delivery | None = None
        for d in by_rcpt.get(p.key.rcpt, ()):
            if d.at <= p.at and matches(p.key, d.key) and (best is None or (d.at, d.ip) > (best.at, best.ip)):
                best = d
        out.append(best.ip if best else None)
    return out


@dataclass(frozen=True)
class Contact:
    """A recipient the lead sources should stop using (webhook `contact.*`); `where` is the record's
    byte offset in the parsed data (with the file and offset, it identifies the record)."""

    event: str
    recipient: str
    at: dt.datetime
    category: str
    ip: str | None
    where: int


@dataclass
class ParseReport:
    records: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    malformed: int = 0
    unattributed: int = 0
    #: the unattributed records per type (an `rb` whose delivery is unknown shows here, never vanishes)
    unattributed_by_type: Counter[str] = field(default_factory=Counter)
    transient: int = 0
    ignored: int = 0
    samples: list[str] = field(default_factory=list)
    totals: dict[tuple[str, dt.date], Counts] = field(default_factory=dict)
    #: byte offset (relative to the start of the parsed data) just after the last consumed record
    consumed: int = 0
    header: list[str] = field(default_factory=list)
    #: attributed `d` records with a recipient: what the delivery index learns from this data
    deliveries: list[Delivery] = field(default_factory=list)
    #: `rb` and IP-less `f` records not yet attributed (AccountingParser.resolve)
    pending: list[Unresolved] = field(default_factory=list)
    #: hard bounces and complaints with their recipient, only when the parser was asked to collect them
    contacts: list[Contact] = field(default_factory=list)

    def problem(self, where: int, why: str) -> None:
        self.malformed += 1
        if len(self.samples) < MAX_SAMPLES:
            self.samples.append(f"byte {where}: {why}")


def parse_time(value: str) -> dt.datetime | None:
    """`timeLogged`: ISO form (`2019-02-08 21:54:05+0000`, the default iso-times) or RFC 822 form."""
    value = value.strip()
    if not value:
        return None
    for fmt in ("%Y-%m-%d %H:%M:%S%z", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S"):
        try:
            t = dt.datetime.strptime(value, fmt)
        except ValueError:
            continue
        return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)
    try:
        t = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


def _ip(value: str) -> str | None:
    """The canonical address of an accounting field, None if it is not one (zone ids refused)."""
    if "%" in value:
        return None
    try:
        return ipaddress.ip_address(value.strip()).compressed
    except ValueError:
        return None


class AccountingParser:
    """Feed it the bytes of one file (from its start, or from an offset with the stored header)."""

    def __init__(self, vmta_ips: Mapping[str, str], known_ips: set[str] | None = None,
                 header: list[str] | None = None, collect_contacts: bool = False) -> None:
        self.collect_contacts = collect_contacts
        self.vmta_ips = dict(vmta_ips)
        self.known_ips = known_ips
        self.report = ParseReport(header=list(header or []))
        self._index: dict[str, int] = {}
        self._header_problem: str | None = None
        if header:
            self._set_header(header)

    def _set_header(self, header: list[str]) -> None:
        self.report.header = header
        self._index = {name: i for i, name in enumerate(header)}
        missing = [c for c in REQUIRED if c not in self._index]
        self._header_problem = f"header lacks column(s) {', '.join(missing)}" if missing else None
        if not missing and header[0] != "type":
            self._header_problem = "header's first column is not `type`"

    # ------------------------------------------------------------------------------------ framing

    def feed(self, data: bytes, final: bool = False) -> int:
        """Parse every complete record in `data`; returns the bytes consumed (the rest: an unfinished
        record to be fed again, with more bytes, next time)."""
        pos, n = 0, len(data)
        while pos < n:
            end, quoted = pos, False
            oversized = False
            while True:
                nl = data.find(b"\n", end)
                if nl == -1:
                    break
                quoted ^= data.count(b'"', end, nl) % 2 == 1
                end = nl + 1
                if not quoted:
                    break
                if end - pos > MAX_RECORD_BYTES:
                    oversized = True
                    break
            if nl == -1:
                # no (closing) newline in the data: the record is unfinished
                if n - pos > MAX_RECORD_BYTES:
                    self.report.problem(pos, f"record longer than {MAX_RECORD_BYTES} bytes without an end")
                    pos = n
                elif final and n > pos:
                    self._record(data[pos:n], pos)
                    pos = n
                break
            if oversized or end - pos > MAX_RECORD_BYTES:
                self.report.problem(pos, f"record longer than {MAX_RECORD_BYTES} bytes")
                # resynchronise at the first newline of this record, whatever the quotes say
                pos = data.find(b"\n", pos) + 1
                continue
            self._record(data[pos:end], pos)
            pos = end
        self.report.consumed += pos
        return pos

    # ------------------------------------------------------------------------------------ records

    def _record(self, raw: bytes, where: int) -> None:
        line = raw.rstrip(b"\r\n")
        if not line.strip():
            return
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            self.report.problem(where, "not UTF-8")
            return
        if "\x00" in text:
            self.report.problem(where, "NUL byte")
            return
        try:
            rows = list(csv.reader([text], strict=True))
        except csv.Error as err:
            self.report.problem(where, f"not CSV ({err})")
            return
        if len(rows) != 1:
            self.report.problem(where, "not one CSV record")
            return
        fields = rows[0]
        if fields and fields[0] == "type":
            self._set_header(fields)
            return
        if not self._index:
            self.report.problem(where, "record before any header row")
            return
        if self._header_problem:
            self.report.problem(where, self._header_problem)
            return
        if len(fields) != len(self.report.header):
            self.report.problem(where, f"{len(fields)} fields, header has {len(self.report.header)}")
            return
        self._count(fields, where)

    def _get(self, fields: list[str], name: str) -> str:
        i = self._index.get(name)
        return fields[i] if i is not None else ""

    def _count(self, fields: list[str], where: int) -> None:
        kind = fields[0].strip()
        if kind in IGNORED:
            self.report.records += 1
            self.report.by_type[kind] += 1
            self.report.ignored += 1
            return
        if kind not in COUNTED:
            self.report.problem(where, f"unknown record type {kind[:20]!r}")
            return
        when = parse_time(self._get(fields, "timeLogged"))
        if when is None:
            self.report.problem(where, f"unparsable timeLogged {self._get(fields, 'timeLogged')[:40]!r}")
            return
        self.report.records += 1
        self.report.by_type[kind] += 1
        ip = ((_ip(self._get(fields, "arf_Source-IP")) if kind == "f" else None)
              or _ip(self._get(fields, "dlvSourceIp")) or self.vmta_ips.get(self._get(fields, "vmta").strip()))
        known = ip is not None and (self.known_ips is None or ip in self.known_ips)
        if kind == "f" and not known:  # the ARF report names no IP of ours: look for the delivery instead
            ip = None
        if self.collect_contacts and kind in ("b", "rb", "f"):
            self._contact(fields, kind, when, ip if known else None, where)
        key = None
        if kind in ("d", "rb", "f"):
            key = message_key(self._get(fields, "rcpt"), self._get(fields, "envId") or self._get(fields, "envid"),
                              self._get(fields, "orig"))
        if ip is None and kind in ("rb", "f") and key is not None:
            self.report.pending.append(Unresolved(kind, key, when))
            return
        if ip is None or not known:
            self._unattributed(kind)
            return
        if kind == "d" and key is not None:
            self.report.deliveries.append(Delivery(key, ip, when))
        self._add(kind, ip, when)

    def _contact(self, fields: list[str], kind: str, when: dt.datetime, ip: str | None, where: int) -> None:
        from models.webhooks import contact_kind

        category = self._get(fields, "bounceCat").strip().lower()[:64]
        event = contact_kind(kind, category)
        rcpt = self._get(fields, "rcpt").strip()
        if event is None or not rcpt or len(rcpt) > 320 or any(c.isspace() for c in rcpt) or "@" not in rcpt:
            return
        self.report.contacts.append(Contact(event, rcpt, when, category, ip, where))

    def _unattributed(self, kind: str) -> None:
        self.report.unattributed += 1
        self.report.unattributed_by_type[kind] += 1
        if kind == "t":
            self.report.transient += 1

    def _add(self, kind: str, ip: str, when: dt.datetime) -> None:
        c = self.report.totals.setdefault((ip, when.date()), Counts())
        if kind == "d":
            c.sent += 1
            c.delivered += 1
        elif kind == "b":
            c.sent += 1
            c.bounced += 1
        elif kind == "rb":
            c.bounced += 1
        elif kind == "f":
            c.complaints += 1
        else:
            c.transient += 1
            self.report.transient += 1

    # ------------------------------------------------------------------------------------ attribution

    def resolve(self, known_deliveries: Iterable[Delivery] = ()) -> None:
        """Count the pending `rb`/`f` records for the IP of their delivery, found among `known_deliveries`
        (the delivery index's rows for their recipients) and this parser's own `d` records; counted on
        the record's own day (when the evidence arrived, so the gate's next window sees it). Unknown ones
        are unattributed. Call once after the last `feed`."""
        pending, self.report.pending = self.report.pending, []
        candidates = [*known_deliveries, *self.report.deliveries]
        for p, ip in zip(pending, attribute(pending, candidates), strict=True):
            if ip is None or (self.known_ips is not None and ip not in self.known_ips):
                self._unattributed(p.kind)
            else:
                self._add(p.kind, ip, p.at)


def parse_accounting(data: bytes, vmta_ips: Mapping[str, str], known_ips: set[str] | None = None,
                     header: list[str] | None = None, final: bool = True) -> ParseReport:
    """Parse a whole file's bytes (or the bytes after an offset, with the stored header); remote bounces
    are attributed to deliveries in the same data only (the ingest adds the delivery index)."""
    parser = AccountingParser(vmta_ips, known_ips, header)
    parser.feed(data, final=final)
    parser.resolve()
    return parser.report
