"""Fast DNS A lookups for blocklist scans: one resolver object, a few UDP sockets, many queries in flight.

dnspython's async resolver opens a socket (a new asyncio datagram endpoint) for every query, and
sharing one socket between outstanding queries is not supported (dnspython #930): measured here at
about 900 queries/s against rbldnsd on loopback, six times slower than c-ares. `MuxResolver` keeps
a small pool of connected UDP sockets per configured resolver and matches replies to queries by id
AND the exact question bytes (a reply to anything else is dropped, and the query keeps waiting).

Answers of a blocklist start failovers, so a forged reply must be hard to get accepted (RFC 5452):
- query ids come from the operating system's CSPRNG (`secrets`), never from Mersenne Twister;
- the letters of each query name are sent in random case (0x20 encoding, draft-vixie-dnsext-dns0x20)
  and the reply must echo them exactly, adding one bit per letter of the zone name;
- sockets are connected (the kernel drops datagrams from any other address or port) and rotated:
  each one is replaced after `queries_per_socket` queries, so the source port changes during a scan.

- Concurrency is bounded by a window (queries beyond it wait in a queue, no per-query task); the
  window halves when queries are lost and grows back by one per window of replies (AIMD), so an
  overloaded resolver is not stormed with retransmissions.
- Each query has a deadline of `timeout` seconds split geometrically over `attempts` sends (at 0,
  1/7 and 3/7 of it for three), rotating through the resolvers; no reply by then is TIMEOUT.
- Every readable event drains all queued replies; SERVFAIL/REFUSED/network errors move on to the
  next resolver like dnspython does; a truncated reply is retried over TCP with dnspython.

`DnspythonResolver` is the plain dnspython path with the same interface (the reference in tests
and in the benchmark).
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

import dns.asyncquery
import dns.asyncresolver
import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype
import dns.resolver

from models.blocklist import DnsResult, Rcode
from models.dnswire import WireError, encode_query, encode_question, parse_reply, reply_id

OnResult = Callable[[int, DnsResult], None]

#: 0x20 at every ASCII letter, 0 elsewhere. Label length bytes (< 64), digits, '-' and the question
#: tail (root label, QTYPE, QCLASS) are never letters, so the mask only touches the name's letters.
_LETTER_MASK = bytes(0x20 if chr(b).isascii() and chr(b).isalpha() else 0 for b in range(256))


class _Entropy:
    """Random bytes from the OS CSPRNG, read in blocks (a syscall per query would cost more than the query)."""

    BLOCK = 1 << 16

    def __init__(self) -> None:
        self._buf = b""
        self._pos = 0

    def take(self, n: int) -> bytes:
        if self._pos + n > len(self._buf):
            self._buf, self._pos = os.urandom(max(self.BLOCK, n)), 0
        out = self._buf[self._pos:self._pos + n]
        self._pos += n
        return out

    def qid(self) -> int:
        return int.from_bytes(self.take(2), "big")


def randomize_case(question: bytes, entropy: _Entropy) -> bytes:
    """The question with each letter of its name in random case (0x20 encoding)."""
    mask = int.from_bytes(question.translate(_LETTER_MASK), "big")
    if not mask:
        return question
    flips = int.from_bytes(entropy.take(len(question)), "big") & mask
    return (int.from_bytes(question, "big") ^ flips).to_bytes(len(question), "big")


class Resolver(Protocol):
    async def resolve_many(self, qnames: Sequence[str], on_result: OnResult | None = None,
                           questions: Sequence[bytes | None] | None = None) -> list[DnsResult]: ...

    async def close(self) -> None: ...


def system_resolvers() -> list[tuple[str, int]]:
    """The system resolver from /etc/resolv.conf (only when EMAIL_ENGINE_DNS_RESOLVERS is empty)."""
    try:
        return [(str(ns), 53) for ns in dns.resolver.Resolver(configure=True).nameservers]
    except dns.exception.DNSException:
        return []


class _Query:
    __slots__ = ("attempt", "callback", "deadline", "index", "qid", "qname", "question", "sent", "slot")

    def __init__(self, index: int, qname: str, question: bytes, callback: Callable[[int, DnsResult], None]):
        self.index = index
        self.qname = qname
        self.question = question
        self.callback = callback
        self.attempt = 0
        self.qid = -1
        self.deadline = 0.0
        self.sent = question  # the question as last sent (0x20 case): a reply must echo it exactly
        self.slot: _Slot | None = None


class _Slot:
    """One connected, non-blocking UDP socket to one resolver, with the queries outstanding on it.
    Every readable event drains all queued replies (asyncio's datagram transport reads one per loop turn)."""

    def __init__(self, owner: MuxResolver, server: int, sock: socket.socket):
        self.owner = owner
        self.server = server
        self.sock = sock
        self.pending: dict[int, _Query] = {}
        self.used = 0  # queries sent on this socket
        self.retiring = False  # replaced: closed once its pending queries are answered or expired

    def readable(self) -> None:
        recv = self.sock.recv
        pending = self.pending
        owner = self.owner
        while True:
            try:
                data = recv(4096)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # ICMP port unreachable etc.: every query on this socket failed here
                queries = list(pending.values())
                pending.clear()
                for failed in queries:
                    owner._on_reply(failed, DnsResult(Rcode.ERROR, detail=f"{type(exc).__name__}: {exc}"), False)
                owner._retired(self)
                return
            try:
                q = pending.get(reply_id(data))
                if q is None:
                    owner.discarded += 1
                    continue  # late reply, or a guessed id: nothing outstanding has it
                result, truncated = parse_reply(data, q.sent, exact=True)
            except WireError:
                owner.discarded += 1
                continue  # not a reply to the question as sent (another name, another case): keep waiting
            del pending[q.qid]
            owner._on_reply(q, result, truncated)
            owner._retired(self)
            if self.sock.fileno() == -1:
                return  # a replaced socket, now drained and closed


class MuxResolver:
    """A-record lookups multiplexed over `sockets_per_server` UDP sockets per resolver."""

    SWEEP = 0.05  # seconds between deadline checks

    def __init__(self, servers: Sequence[tuple[str, int]], timeout: float = 3.0, concurrency: int = 100,
                 attempts: int = 3, sockets_per_server: int = 4, queries_per_socket: int = 200):
        if not servers:
            raise ValueError("no DNS resolver configured (EMAIL_ENGINE_DNS_RESOLVERS) and none in /etc/resolv.conf")
        if concurrency < 1 or attempts < 1 or sockets_per_server < 1 or queries_per_socket < 1 or timeout <= 0:
            raise ValueError("concurrency, attempts, sockets_per_server, queries_per_socket and timeout must be "
                             "positive")
        self.servers = list(servers)
        self.timeout = timeout
        # Geometric retransmission: with 3 attempts, sends at 0, 1/7 and 3/7 of the deadline.
        weights = [2.0 ** i for i in range(attempts)]
        self.attempt_timeouts = [timeout * w / sum(weights) for w in weights]
        self.attempts = attempts
        self.concurrency = concurrency
        self.sockets_per_server = sockets_per_server
        self.queries_per_socket = queries_per_socket
        self._slots: list[list[_Slot]] = []
        self._retiring: set[_Slot] = set()
        self._rr = 0
        self._entropy = _Entropy()
        self._queue: deque[_Query] = deque()
        # Deadlines in send order, one deque per attempt (same timeout within a deque: sorted).
        self._sent_order: list[deque[tuple[float, _Query, int]]] = [deque() for _ in range(attempts)]
        self._inflight = 0
        # Congestion window (AIMD): halved when a sweep finds lost queries, +1/window per reply, up to `concurrency`.
        self.window = float(concurrency)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.sent = 0  # packets sent (including retransmissions)
        self.discarded = 0  # datagrams that answered nothing outstanding (late, forged, wrong case)
        self.sockets_opened = 0

    async def open(self) -> MuxResolver:
        if self._slots:
            return self
        self._loop = asyncio.get_running_loop()
        for idx in range(len(self.servers)):
            self._slots.append([self._new_slot(idx) for _ in range(self.sockets_per_server)])
        return self

    def _new_slot(self, server: int) -> _Slot:
        """A connected UDP socket to resolver `server` (a fresh source port chosen by the kernel)."""
        assert self._loop is not None
        host, port = self.servers[server]
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            except OSError:
                pass
            sock.connect((host, port))
        except OSError:
            sock.close()
            raise
        slot = _Slot(self, server, sock)
        self._loop.add_reader(sock.fileno(), slot.readable)
        self.sockets_opened += 1
        return slot

    def _close_slot(self, slot: _Slot) -> None:
        slot.pending.clear()
        if self._loop is not None:
            self._loop.remove_reader(slot.sock.fileno())
        slot.sock.close()

    def _rotate(self, slot: _Slot, position: int) -> None:
        """Replace a worn socket: new queries go to a new one; the old one closes once drained."""
        try:
            fresh = self._new_slot(slot.server)
        except OSError:
            slot.used = 0  # no socket to be had right now: keep this one a while longer
            return
        self._slots[slot.server][position] = fresh
        slot.retiring = True
        self._retiring.add(slot)
        self._retired(slot)

    def _retired(self, slot: _Slot) -> None:
        if slot.retiring and not slot.pending and slot in self._retiring:
            self._retiring.discard(slot)
            self._close_slot(slot)

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for slots in self._slots:
            for s in slots:
                self._close_slot(s)
        for s in list(self._retiring):
            self._close_slot(s)
        self._retiring.clear()
        self._slots = []
        self._queue.clear()
        self._inflight = 0
        for order in self._sent_order:
            order.clear()
        for t in list(self._tasks):
            t.cancel()

    async def __aenter__(self) -> MuxResolver:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------------------- public API
    async def resolve(self, qname: str) -> DnsResult:
        return (await self.resolve_many([qname]))[0]

    async def resolve_many(self, qnames: Sequence[str], on_result: OnResult | None = None,
                           questions: Sequence[bytes | None] | None = None) -> list[DnsResult]:
        """Results in the order of `qnames`; `on_result(index, result)` is called as each one ends.
        `questions` (optional) are the pre-encoded questions of `qnames` (models.dnswire; None: invalid)."""
        await self.open()
        assert self._loop is not None
        results: list[DnsResult | None] = [None] * len(qnames)
        if not qnames:
            return []
        done = self._loop.create_future()
        remaining = len(qnames)

        def finished(index: int, result: DnsResult) -> None:
            nonlocal remaining
            results[index] = result
            if on_result is not None:
                on_result(index, result)
            remaining -= 1
            if remaining == 0 and not done.done():
                done.set_result(None)

        queue = self._queue
        for i, name in enumerate(qnames):
            question: bytes | None
            if questions is not None:
                question = questions[i]
            else:
                try:
                    question = encode_question(name)
                except WireError:
                    question = None
            if question is None:  # never echo the name: it may carry the DQS key
                finished(i, DnsResult(Rcode.ERROR, detail="invalid query name (too long?)"))
                continue
            queue.append(_Query(i, name, question, finished))
        self._pump()
        await done
        return results  # type: ignore[return-value]

    # ------------------------------------------------------------------------------- internals
    def _pump(self) -> None:
        queue = self._queue
        while queue and self._inflight < self.window:
            q = queue.popleft()
            self._inflight += 1
            self._send(q)

    def _send(self, q: _Query) -> None:
        assert self._loop is not None
        slots = self._slots[(q.index + q.attempt) % len(self._slots)]
        self._rr = (self._rr + 1) % len(slots)
        slot = slots[self._rr]
        if slot.used >= self.queries_per_socket:
            self._rotate(slot, self._rr)
            slot = slots[self._rr]
        slot.used += 1
        pending = slot.pending
        qid = self._entropy.qid()
        while qid in pending:
            qid = self._entropy.qid()
        q.qid = qid
        q.slot = slot
        q.sent = randomize_case(q.question, self._entropy)
        pending[qid] = q
        q.deadline = deadline = self._loop.time() + self.attempt_timeouts[min(q.attempt, self.attempts - 1)]
        self._sent_order[min(q.attempt, self.attempts - 1)].append((deadline, q, qid))
        if self._sweeper is None:
            self._sweeper = self._loop.call_later(self.SWEEP, self._sweep)
        try:
            slot.sock.send(encode_query(qid, q.sent))
        except (BlockingIOError, InterruptedError):
            pass  # socket buffer full: the deadline retransmits it
        except OSError as exc:
            del pending[qid]
            self._on_reply(q, DnsResult(Rcode.ERROR, detail=f"{type(exc).__name__}: {exc}"), False)
            self._retired(slot)
            return
        self.sent += 1

    def _sweep(self) -> None:
        assert self._loop is not None
        self._sweeper = None
        now = self._loop.time()
        expired = []
        for order in self._sent_order:
            while order and order[0][0] <= now:
                _deadline, q, qid = order.popleft()
                slot = q.slot
                if slot is not None and q.qid == qid and slot.pending.get(qid) is q:
                    del slot.pending[qid]
                    expired.append(q)
                    self._retired(slot)
        if expired:
            self.window = max(min(8.0, self.concurrency), self.window / 2)
        for q in expired:
            if q.attempt + 1 < self.attempts:
                q.attempt += 1
                self._send(q)
            else:
                self._finish(q, DnsResult(Rcode.TIMEOUT, detail=f"no reply within {self.timeout:g} s"))
        if any(self._sent_order) and self._sweeper is None:
            self._sweeper = self._loop.call_later(self.SWEEP, self._sweep)

    def _on_reply(self, q: _Query, result: DnsResult, truncated: bool) -> None:
        q.slot = None
        if self.window < self.concurrency:
            self.window = min(float(self.concurrency), self.window + 1.0 / self.window)
        if truncated:
            server = self.servers[(q.index + q.attempt) % len(self.servers)]
            task = asyncio.ensure_future(self._tcp(q, server))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        if result.rcode in (Rcode.SERVFAIL, Rcode.REFUSED, Rcode.ERROR) and q.attempt + 1 < len(self.servers):
            q.attempt += 1  # this resolver failed: ask the next one
            self._send(q)
            return
        self._finish(q, result)

    async def _tcp(self, q: _Query, server: tuple[str, int]) -> None:
        try:
            reply = await dns.asyncquery.tcp(dns.message.make_query(q.qname, "A"), server[0], timeout=self.timeout,
                                             port=server[1])
            result = from_message(reply)
        except (dns.exception.DNSException, OSError) as exc:
            result = DnsResult(Rcode.TIMEOUT if isinstance(exc, dns.exception.Timeout) else Rcode.ERROR,
                               detail=f"TCP after truncation: {type(exc).__name__}")
        self._finish(q, result)

    def _finish(self, q: _Query, result: DnsResult) -> None:
        self._inflight -= 1
        q.slot = None
        q.callback(q.index, result)
        self._pump()


def from_message(reply: dns.message.Message) -> DnsResult:
    rcode = reply.rcode()
    if rcode == dns.rcode.NXDOMAIN:
        return DnsResult(Rcode.NXDOMAIN)
    if rcode == dns.rcode.SERVFAIL:
        return DnsResult(Rcode.SERVFAIL)
    if rcode == dns.rcode.REFUSED:
        return DnsResult(Rcode.REFUSED)
    if rcode != dns.rcode.NOERROR:
        return DnsResult(Rcode.ERROR, detail=f"rcode {dns.rcode.to_text(rcode)}")
    addrs = tuple(rd.address for rrset in reply.answer if rrset.rdtype == dns.rdatatype.A for rd in rrset)
    return DnsResult(Rcode.ANSWER, addrs) if addrs else DnsResult(Rcode.NODATA)


class DnspythonResolver:
    """The same interface on dnspython's async resolver (one socket per query): the reference path."""

    def __init__(self, servers: Sequence[tuple[str, int]], timeout: float = 3.0, concurrency: int = 200):
        import dns.nameserver

        self.res = dns.asyncresolver.Resolver(configure=False)
        self.res.nameservers = [dns.nameserver.Do53Nameserver(h, p) for h, p in servers]
        self.res.lifetime = timeout
        self.res.timeout = timeout
        self.sem = asyncio.Semaphore(concurrency)

    async def resolve(self, qname: str) -> DnsResult:
        async with self.sem:
            try:
                ans = await self.res.resolve(qname, "A", raise_on_no_answer=False)
            except dns.resolver.NXDOMAIN:
                return DnsResult(Rcode.NXDOMAIN)
            except dns.exception.Timeout:
                return DnsResult(Rcode.TIMEOUT)
            except dns.resolver.NoNameservers as exc:
                return DnsResult(Rcode.SERVFAIL, detail=str(exc)[:200])
            except dns.exception.DNSException as exc:
                return DnsResult(Rcode.ERROR, detail=type(exc).__name__)
        if ans.rrset is None:
            return DnsResult(Rcode.NODATA)
        return DnsResult(Rcode.ANSWER, tuple(rd.address for rd in ans.rrset))

    async def resolve_many(self, qnames: Sequence[str], on_result: OnResult | None = None,
                           questions: Sequence[bytes | None] | None = None) -> list[DnsResult]:
        async def one(i: int, name: str) -> DnsResult:
            r = await self.resolve(name)
            if on_result is not None:
                on_result(i, r)
            return r
        return list(await asyncio.gather(*(one(i, n) for i, n in enumerate(qnames))))

    async def close(self) -> None:
        return None
