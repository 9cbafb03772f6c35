"""Forged DNS replies never decide a blocklist answer (a listing starts a failover), issue 11.

A small UDP server on loopback plays the resolver and, before (or instead of) the true answer, sends
the forgeries an off-path attacker would: a "listed" answer with a wrong query id, one with the right
id but the query name in another case (0x20), and one from another source port. The resolver must
take the true answer, or time out (`unknown`) when only forgeries come. It must also use fresh
random ids and case patterns and change its source ports during a scan.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from activities.dnsbl_resolver import MuxResolver, _Entropy, randomize_case
from models.blocklist import Rcode
from models.dnswire import encode_question, parse_reply

HOST = "127.0.50.15"


@dataclass
class Seen:
    ids: list[int] = field(default_factory=list)
    names: list[bytes] = field(default_factory=list)  # the question bytes exactly as received
    ports: set[int] = field(default_factory=set)


def reply(qid: int, question: bytes, rcode: int, addr: str | None) -> bytes:
    answers = 1 if addr else 0
    out = struct.pack("!HHHHHH", qid, 0x8180 | rcode, 1, answers, 0, 0) + question
    if addr:
        out += struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton(addr)
    return out


def swapcase(question: bytes) -> bytes:
    return bytes(b ^ 0x20 if chr(b).isascii() and chr(b).isalpha() else b for b in question)


class FakeResolver:
    """mode "forge_then_truth": three forgeries saying 127.0.0.2, then the truth (NXDOMAIN);
    "forge_only": the forgeries only; "honest": the truth only."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.seen = Seen()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # another source port, same host
        self.other.bind((HOST, 0))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> FakeResolver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
        self.other.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            qid = int.from_bytes(data[:2], "big")
            question = data[12:]
            self.seen.ids.append(qid)
            self.seen.names.append(question)
            self.seen.ports.add(peer[1])
            if self.mode != "honest":
                self.sock.sendto(reply(qid ^ 0x5A5A, question, 0, "127.0.0.2"), peer)  # wrong id
                self.sock.sendto(reply(qid, swapcase(question), 0, "127.0.0.2"), peer)  # wrong case
                self.other.sendto(reply(qid, question, 0, "127.0.0.2"), peer)  # wrong source port
            if self.mode != "forge_only":
                self.sock.sendto(reply(qid, question, 3, None), peer)  # NXDOMAIN: not listed


@pytest.fixture
def forger() -> Iterator[FakeResolver]:
    with FakeResolver("forge_then_truth") as f:
        yield f


def test_case_randomisation_keeps_the_name_and_the_reply_check_is_exact() -> None:
    q = encode_question("2.0.0.127.zen.spamhaus.org")
    entropy = _Entropy()
    patterns = {randomize_case(q, entropy) for _ in range(200)}
    assert all(p.lower() == q for p in patterns)
    assert len(patterns) > 100  # 15 letters: 2**15 patterns
    sent = next(p for p in patterns if p != q)
    nx = reply(7, sent, 3, None)
    assert parse_reply(nx, sent, exact=True)[0].rcode is Rcode.NXDOMAIN
    with pytest.raises(ValueError, match="another case"):
        parse_reply(reply(7, q, 3, None), sent, exact=True)
    assert randomize_case(encode_question("2.0.0.127"), entropy) == encode_question("2.0.0.127")  # no letters


async def test_forged_replies_are_discarded_and_the_true_answer_wins(forger: FakeResolver) -> None:
    names = [f"{i}.0.0.127.zen.test" for i in range(2, 42)]
    async with MuxResolver([(HOST, forger.port)], timeout=2.0) as mux:
        results = await mux.resolve_many(names)
    assert [r.rcode for r in results] == [Rcode.NXDOMAIN] * len(names)
    assert all(not r.addresses for r in results)
    # each query drew a wrong-id and a wrong-case forgery (the wrong port never reached the socket)
    assert mux.discarded >= 2 * len(names)


async def test_only_forgeries_means_unknown_never_listed() -> None:
    with FakeResolver("forge_only") as f:
        async with MuxResolver([(HOST, f.port)], timeout=0.6, attempts=2) as mux:
            results = await mux.resolve_many(["2.0.0.127.zen.test", "3.0.0.127.bl.test"])
    assert [r.rcode for r in results] == [Rcode.TIMEOUT, Rcode.TIMEOUT]


async def test_ids_and_case_are_random_and_source_ports_rotate() -> None:
    n = 1000
    with FakeResolver("honest") as f:
        async with MuxResolver([(HOST, f.port)], timeout=2.0, sockets_per_server=2,
                               queries_per_socket=50) as mux:
            results = await mux.resolve_many(["2.0.0.127.zen.spamhaus.test"] * n)
            assert not mux._retiring  # replaced sockets were closed once drained
            assert sum(len(s) for s in mux._slots) == 2
        seen = f.seen
    assert all(r.rcode is Rcode.NXDOMAIN for r in results)
    assert len(seen.ids) == n
    assert len(set(seen.ids)) > n * 0.97  # 16 random bits each (about 7 repeats expected by chance)
    assert len(set(seen.names)) > n * 0.9  # 15 letters: 32768 case patterns
    assert len(seen.ports) >= n // 50  # a new source port every 50 queries
    assert mux.sockets_opened >= n // 50
