"""Minimal DNS wire format for DNSBL lookups: an A query and the parts of a reply that classification
needs (rcode, TC flag, question echo, A records). Pure functions; checked against dnspython in tests.

Why not dns.message for every packet: at fleet scale the scanner sends tens of thousands of queries
per scan, and building/parsing full dnspython Message objects costs more than the network round trip
on loopback. dnspython is still used for TCP fallback (truncated replies) and in the tests.
"""

from __future__ import annotations

import struct

from models.blocklist import DnsResult, Rcode

QTYPE_A = 1
QCLASS_IN = 1
_HEADER = struct.Struct("!HHHHHH")
_RR = struct.Struct("!HHIH")
_A_IN_TAIL = struct.pack("!HH", QTYPE_A, QCLASS_IN)
FLAG_RD = 0x0100
FLAG_TC = 0x0200
FLAG_QR = 0x8000


class WireError(ValueError):
    pass


def encode_labels(name: str) -> bytes:
    """Length-prefixed labels of `name`, lower-cased, without the root label."""
    out = bytearray()
    for label in name.rstrip(".").lower().split("."):
        raw = label.encode("ascii")
        if not 0 < len(raw) < 64:
            raise WireError(f"bad label {label!r} in {name!r}")
        out.append(len(raw))
        out += raw
    return bytes(out)


def question_tail(zone: str) -> bytes:
    """The zone's labels, the root label, QTYPE A and QCLASS IN: what follows a target's labels."""
    return encode_labels(zone) + b"\x00" + _A_IN_TAIL


def join_question(prefix: bytes, tail: bytes) -> bytes:
    """A question from pre-encoded target labels and a zone's question_tail()."""
    if len(prefix) + len(tail) - 4 > 255:
        raise WireError("query name too long")
    return prefix + tail


def encode_question(qname: str) -> bytes:
    """QNAME + QTYPE A + QCLASS IN, lower-cased (replies are matched on these bytes)."""
    labels = encode_labels(qname)
    if len(labels) + 1 > 255:
        raise WireError(f"query name too long: {qname!r}")
    return labels + b"\x00" + _A_IN_TAIL


def encode_query(qid: int, question: bytes) -> bytes:
    """A standard query with recursion desired (the configured resolvers may be recursive)."""
    return _HEADER.pack(qid, FLAG_RD, 1, 0, 0, 0) + question


def reply_id(packet: bytes) -> int:
    if len(packet) < 12:
        raise WireError("short packet")
    return int.from_bytes(packet[:2], "big")


def _skip_name(packet: bytes, pos: int) -> int:
    end = len(packet)
    while True:
        if pos >= end:
            raise WireError("name runs past the packet")
        n = packet[pos]
        if n == 0:
            return pos + 1
        if n & 0xC0 == 0xC0:
            return pos + 2
        if n & 0xC0:
            raise WireError("bad label type")
        pos += 1 + n


_RCODES = {0: Rcode.ANSWER, 2: Rcode.SERVFAIL, 3: Rcode.NXDOMAIN, 5: Rcode.REFUSED}


def parse_reply(packet: bytes, question: bytes, exact: bool = False) -> tuple[DnsResult, bool]:
    """(result, truncated). Raises WireError when the packet is not a reply to `question`; with
    `exact`, the echoed question must match byte for byte (the 0x20 case pattern that was sent)."""
    if len(packet) < 12 + len(question):
        raise WireError("short packet")
    _qid, flags, qdcount, ancount, _ns, _ar = _HEADER.unpack_from(packet)
    if not flags & FLAG_QR:
        raise WireError("not a response")
    echoed = packet[12:12 + len(question)]
    if qdcount != 1 or (echoed != question if exact else echoed.lower() != question):
        raise WireError("reply to another question" if echoed.lower() != question.lower()
                        else "reply with the question in another case (0x20)")
    truncated = bool(flags & FLAG_TC)
    rcode = flags & 0x000F
    kind = _RCODES.get(rcode, Rcode.ERROR)
    if kind is not Rcode.ANSWER:
        return DnsResult(kind, detail="" if kind is not Rcode.ERROR else f"rcode {rcode}"), truncated
    pos = 12 + len(question)
    addrs = []
    for _ in range(ancount):
        pos = _skip_name(packet, pos)
        if pos + 10 > len(packet):
            raise WireError("truncated resource record")
        rtype, rclass, _ttl, rdlen = _RR.unpack_from(packet, pos)
        pos += 10
        if pos + rdlen > len(packet):
            raise WireError("truncated rdata")
        if rtype == QTYPE_A and rclass == QCLASS_IN and rdlen == 4:
            a, b, c, d = packet[pos:pos + 4]
            addrs.append(f"{a}.{b}.{c}.{d}")
        pos += rdlen
    if not addrs:
        return DnsResult(Rcode.NODATA), truncated
    return DnsResult(Rcode.ANSWER, tuple(addrs)), truncated
