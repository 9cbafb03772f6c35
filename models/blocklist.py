"""Blocklist catalogue, query names and answer classification (pure: no I/O beyond reading a file).

DESIGN.md §5: an answer is `listed`, `not_listed` (NXDOMAIN only) or `unknown` (timeouts,
REFUSED/SERVFAIL, the list's own error codes, answers outside 127/8, NOERROR without an A record).
Reputation zones (Mailspike rep, Spamhaus ZRD) answer scores: those answers are `reputation`,
reported but never a listing. Every zone is self-tested with its RFC 5782 test entries before its
answers are believed (`self_test_verdict`).
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any

from models.names import NameError_
from models.names import domain as valid_domain

SHIPPED_CATALOG = "blocklists.toml"
LOOPBACK_NET = ipaddress.IPv4Network("127.0.0.0/8")
_ZONE_ID_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62})$")
_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")
_DQS_KEY_RE = re.compile(r"^[A-Za-z0-9]{1,63}$")
DQS_SUFFIX = "dq.spamhaus.net"


class Kind(StrEnum):
    IP = "ip"
    DOMAIN = "domain"


class Effect(StrEnum):
    LISTED = "listed"
    ERROR = "error"
    REPUTATION = "reputation"


class Status(StrEnum):
    LISTED = "listed"
    NOT_LISTED = "not_listed"
    UNKNOWN = "unknown"
    REPUTATION = "reputation"


class CatalogError(ValueError):
    """A catalogue file that cannot be used; `problems` has one precise message per problem."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


@dataclass(frozen=True)
class Code:
    effect: Effect
    meaning: str


@dataclass(frozen=True)
class Zone:
    name: str
    zone: str
    kind: Kind
    provider: str
    delist_url: str
    codes: Mapping[str, Code] = field(default_factory=dict)
    bits: Mapping[int, str] = field(default_factory=dict)
    error_ranges: tuple[ipaddress.IPv4Network, ...] = ()
    other_codes: Effect = Effect.ERROR  # ERROR here means "unknown" (never a listing)
    ipv6: bool = False
    dqs: str | None = None
    dqs_only: bool = False
    test_positive: str = ""
    test_negative: str = ""
    test_codes: tuple[str, ...] = ()
    test_ipv6: bool = False  # also self-test the RFC 5782 IPv6 entries ::ffff:7f00:2 / ::ffff:7f00:1

    @property
    def expected_test_status(self) -> Status:
        """What the positive test entry must classify as: a listing, or a score for reputation zones."""
        if (self.bits or self.other_codes is Effect.LISTED
                or any(c.effect is Effect.LISTED for c in self.codes.values())):
            return Status.LISTED
        return Status.REPUTATION


@dataclass(frozen=True)
class ActiveZone:
    """A catalogue zone as queried in one scan. `query_zone` may contain the DQS key: never print it;
    `display` is safe to show and log."""

    spec: Zone
    query_zone: str = field(repr=False)
    display: str

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class Catalog:
    zones: tuple[Zone, ...]
    source: str = SHIPPED_CATALOG

    def names(self) -> list[str]:
        return [z.name for z in self.zones]

    def active(self, dqs_key: str | None = None, only: Iterable[str] | None = None) -> list[ActiveZone]:
        """Zones for a scan: DQS zones rewritten to `<key>.<zone>.dq.spamhaus.net` when a key is given,
        DQS-only zones skipped without one; `only` filters by zone name (unknown names: ValueError)."""
        if dqs_key is not None and not _DQS_KEY_RE.match(dqs_key):
            raise ValueError("EMAIL_ENGINE_SPAMHAUS_DQS_KEY must be letters and digits only (a DQS key)")
        wanted = None
        if only is not None:
            wanted = set(only)
            unknown = sorted(wanted - set(self.names()))
            if unknown:
                raise ValueError(f"unknown blocklist zone(s): {', '.join(unknown)} (catalogue: {self.source})")
        out = []
        for z in self.zones:
            if wanted is not None and z.name not in wanted:
                continue
            if z.dqs and dqs_key:
                out.append(ActiveZone(z, f"{dqs_key}.{z.dqs}.{DQS_SUFFIX}", f"<dqs-key>.{z.dqs}.{DQS_SUFFIX}"))
            elif z.dqs_only:
                continue
            else:
                out.append(ActiveZone(z, z.zone, z.zone))
        return out


# --------------------------------------------------------------------------------- catalogue loading

def load_catalog(path: str | Path | None = None) -> Catalog:
    """The shipped catalogue, or the operator's file. CatalogError lists every problem."""
    if path is None:
        text = resources.files("models").joinpath(SHIPPED_CATALOG).read_text(encoding="utf-8")
        source = SHIPPED_CATALOG
    else:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise CatalogError(source, [f"cannot read the file: {exc.strerror or exc}"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(source, [f"not valid TOML: {exc}"]) from None
    return parse_catalog(data, source)


_ZONE_KEYS = {"name", "zone", "kind", "provider", "delist_url", "codes", "bits", "error_ranges", "other_codes",
              "ipv6", "dqs", "dqs_only", "test_positive", "test_negative", "test_codes", "test_ipv6"}
IPV6_TEST_POSITIVE = "::ffff:7f00:2"
IPV6_TEST_NEGATIVE = "::ffff:7f00:1"


def parse_catalog(data: Mapping[str, Any], source: str = "<catalogue>") -> Catalog:
    problems: list[str] = []
    unknown_top = sorted(set(data) - {"version", "zones"})
    if unknown_top:
        problems.append(f"unknown top-level key(s): {', '.join(unknown_top)}")
    if data.get("version", 1) != 1:
        problems.append(f"version must be 1, got {data.get('version')!r}")
    raw_zones = data.get("zones")
    if not isinstance(raw_zones, list) or not raw_zones:
        problems.append("no [[zones]] entries")
        raise CatalogError(source, problems)
    zones: list[Zone] = []
    seen_names: dict[str, int] = {}
    seen_zones: dict[str, int] = {}
    for i, raw in enumerate(raw_zones):
        where = f"zones[{i}]"
        if not isinstance(raw, dict):
            problems.append(f"{where}: must be a table")
            continue
        if isinstance(raw.get("name"), str):
            where = f"zones[{i}] ({raw['name']})"
        errs: list[str] = []
        zone = _parse_zone(raw, errs)
        problems.extend(f"{where}: {e}" for e in errs)
        if zone is None:
            continue
        if zone.name in seen_names:
            problems.append(f"{where}: duplicate name {zone.name!r} (also zones[{seen_names[zone.name]}])")
        if zone.zone in seen_zones:
            problems.append(f"{where}: duplicate zone {zone.zone!r} (also zones[{seen_zones[zone.zone]}])")
        seen_names.setdefault(zone.name, i)
        seen_zones.setdefault(zone.zone, i)
        zones.append(zone)
    if problems:
        raise CatalogError(source, problems)
    return Catalog(tuple(zones), source)


def _code_text(value: str) -> str | None:
    try:
        addr = ipaddress.IPv4Address(value)
    except (ipaddress.AddressValueError, ValueError):
        return None
    return str(addr) if addr in LOOPBACK_NET else None


def _parse_zone(raw: Mapping[str, Any], errs: list[str]) -> Zone | None:
    extra = sorted(set(raw) - _ZONE_KEYS)
    if extra:
        errs.append(f"unknown key(s): {', '.join(extra)}")

    def text(key: str, required: bool = True) -> str:
        value = raw.get(key)
        if value is None:
            if required:
                errs.append(f"{key} is required")
            return ""
        if not isinstance(value, str) or not value.strip():
            errs.append(f"{key} must be a non-empty string")
            return ""
        return value.strip()

    def flag(key: str) -> bool:
        value = raw.get(key, False)
        if not isinstance(value, bool):
            errs.append(f"{key} must be true or false, got {value!r}")
            return False
        return value

    name = text("name")
    if name and not _ZONE_ID_RE.match(name):
        errs.append(f"name {name!r} must be lower-case letters, digits and '-'")
    zone_name = text("zone").lower().rstrip(".")
    if zone_name and (len(zone_name) > 200 or not all(_LABEL_RE.match(lab) for lab in zone_name.split("."))
                      or "." not in zone_name):
        errs.append(f"zone {zone_name!r} is not a valid DNS zone name")
    kind_text = text("kind")
    kind = None
    if kind_text:
        try:
            kind = Kind(kind_text)
        except ValueError:
            errs.append(f"kind must be 'ip' or 'domain', got {kind_text!r}")
    provider = text("provider")
    delist_url = text("delist_url")
    if delist_url and not delist_url.startswith(("https://", "http://")):
        errs.append(f"delist_url must be an http(s) URL, got {delist_url!r}")

    codes: dict[str, Code] = {}
    raw_codes = raw.get("codes", {})
    if not isinstance(raw_codes, dict):
        errs.append("codes must be a table of code = { effect, meaning }")
        raw_codes = {}
    for code, spec in raw_codes.items():
        norm = _code_text(code)
        if norm is None:
            errs.append(f"codes: {code!r} is not an IPv4 address inside 127.0.0.0/8")
            continue
        if not isinstance(spec, dict) or set(spec) - {"effect", "meaning"} or "effect" not in spec:
            errs.append(f"codes.{code}: must be {{ effect = \"listed|error|reputation\", meaning = \"...\" }}")
            continue
        try:
            effect = Effect(spec["effect"])
        except ValueError:
            errs.append(f"codes.{code}.effect must be listed, error or reputation, got {spec['effect']!r}")
            continue
        meaning = spec.get("meaning", "")
        if not isinstance(meaning, str):
            errs.append(f"codes.{code}.meaning must be a string")
            continue
        codes[norm] = Code(effect, meaning)

    bits: dict[int, str] = {}
    raw_bits = raw.get("bits", {})
    if not isinstance(raw_bits, dict):
        errs.append("bits must be a table of bit value = meaning")
        raw_bits = {}
    for key, meaning in raw_bits.items():
        try:
            bit = int(key)
        except ValueError:
            bit = -1
        if bit <= 0 or bit > 128 or bit & (bit - 1):
            errs.append(f"bits: {key!r} is not a single bit value of the last octet (1, 2, 4, ... 128)")
            continue
        if not isinstance(meaning, str) or not meaning:
            errs.append(f"bits.{key} must be a non-empty string")
            continue
        bits[bit] = meaning

    ranges: list[ipaddress.IPv4Network] = []
    raw_ranges = raw.get("error_ranges", [])
    if not isinstance(raw_ranges, list):
        errs.append("error_ranges must be a list of CIDR ranges")
        raw_ranges = []
    for r in raw_ranges:
        try:
            net = ipaddress.IPv4Network(str(r))
        except ValueError:
            errs.append(f"error_ranges: {r!r} is not an IPv4 CIDR range (host bits must be zero)")
            continue
        if not net.subnet_of(LOOPBACK_NET):
            errs.append(f"error_ranges: {r!r} is not inside 127.0.0.0/8")
            continue
        ranges.append(net)
    for code, spec in codes.items():
        if spec.effect is not Effect.ERROR and any(ipaddress.IPv4Address(code) in n for n in ranges):
            errs.append(f"codes.{code}: is inside an error range but has effect {spec.effect.value!r}")

    other_text = raw.get("other_codes", "unknown")
    other = Effect.ERROR
    if other_text == "listed":
        other = Effect.LISTED
    elif other_text != "unknown":
        errs.append(f"other_codes must be 'listed' or 'unknown', got {other_text!r}")

    ipv6 = flag("ipv6")
    dqs_only = flag("dqs_only")
    dqs = text("dqs", required=False) or None
    if dqs is not None and not _LABEL_RE.match(dqs):
        errs.append(f"dqs {dqs!r} must be one DNS label (e.g. zen, dbl)")
    if dqs_only and dqs is None:
        errs.append("dqs_only needs dqs (the DQS zone label)")
    if kind is Kind.DOMAIN and ipv6:
        errs.append("ipv6 applies to ip zones only")
    test_ipv6 = flag("test_ipv6")
    if test_ipv6 and not ipv6:
        errs.append("test_ipv6 needs ipv6 = true")

    pos_default, neg_default = ("127.0.0.2", "127.0.0.1") if kind is not Kind.DOMAIN else ("test", "invalid")
    test_pos = text("test_positive", required=False) or pos_default
    test_neg = text("test_negative", required=False) or neg_default
    for key, value in (("test_positive", test_pos), ("test_negative", test_neg)):
        if kind is Kind.IP:
            try:
                ipaddress.ip_address(value)
            except ValueError:
                errs.append(f"{key} {value!r} must be an IP address for an ip zone")
        elif kind is Kind.DOMAIN and not all(_LABEL_RE.match(lab) for lab in value.split(".")):
            errs.append(f"{key} {value!r} must be a domain name for a domain zone")
    if test_pos == test_neg:
        errs.append("test_positive and test_negative must differ")

    test_codes: list[str] = []
    raw_tc = raw.get("test_codes", [])
    if not isinstance(raw_tc, list):
        errs.append("test_codes must be a list of codes")
        raw_tc = []
    for c in raw_tc:
        norm = _code_text(str(c))
        if norm is None:
            errs.append(f"test_codes: {c!r} is not an IPv4 address inside 127.0.0.0/8")
            continue
        spec = codes.get(norm)
        if spec is not None and spec.effect is Effect.ERROR:
            errs.append(f"test_codes: {norm} is an error code")
        test_codes.append(norm)

    if not codes and not bits and other is not Effect.LISTED:
        errs.append("defines no listing or reputation code (codes, bits or other_codes = 'listed')")
    if not name or not zone_name or kind is None:
        return None
    return Zone(
        name=name, zone=zone_name, kind=kind, provider=provider, delist_url=delist_url, codes=codes, bits=bits,
        error_ranges=tuple(ranges), other_codes=other, ipv6=ipv6, dqs=dqs, dqs_only=dqs_only,
        test_positive=test_pos, test_negative=test_neg, test_codes=tuple(test_codes), test_ipv6=test_ipv6,
    )


# --------------------------------------------------------------------------------------- query names

def ip_labels(address: str) -> str:
    """The query prefix of an IP: reversed octets (IPv4), or the 32 reversed nibbles of the expanded
    address (IPv6, RFC 5782 §2.4; IPv4-mapped addresses such as ::ffff:7f00:2 stay IPv6 nibbles)."""
    addr = ipaddress.ip_address(address)
    if addr.version == 4:
        return ".".join(reversed(str(addr).split(".")))
    return ".".join(reversed(addr.exploded.replace(":", "")))


def target_labels(kind: Kind | str, value: str) -> str:
    """The query prefix of a target: an IP in reverse form, or the domain as is (lower-case, validated)."""
    if kind == Kind.IP:
        return ip_labels(value)
    if kind == Kind.DOMAIN:
        if value.lower() in ("test", "invalid"):  # RFC 5782 reserved test names
            return value.lower()
        try:
            return valid_domain(value)
        except NameError_ as exc:
            raise ValueError(str(exc)) from None
    raise ValueError(f"target kind must be 'ip' or 'domain', got {kind!r}")


def query_name(zone: str, kind: Kind | str, value: str) -> str:
    return f"{target_labels(kind, value)}.{zone}"


def applies(zone: Zone, kind: Kind | str, value: str) -> bool:
    """Whether `zone` is queried for this target (domain zones take domains; IPv6 only where supported)."""
    if zone.kind != kind:
        return False
    if kind == Kind.IP and not zone.ipv6:
        return ipaddress.ip_address(value).version == 4
    return True


# ------------------------------------------------------------------------------------ classification

class Rcode(StrEnum):
    """How a DNS query ended, as far as classification is concerned."""

    ANSWER = "answer"  # NOERROR with A records
    NODATA = "nodata"  # NOERROR without an A record
    NXDOMAIN = "nxdomain"
    SERVFAIL = "servfail"
    REFUSED = "refused"
    TIMEOUT = "timeout"
    ERROR = "error"  # any other rcode, a network error, a malformed reply


@dataclass(frozen=True)
class DnsResult:
    rcode: Rcode
    addresses: tuple[str, ...] = ()
    detail: str = ""


@dataclass(frozen=True)
class Hit:
    code: str
    meaning: str


@dataclass(frozen=True)
class Verdict:
    status: Status
    hits: tuple[Hit, ...] = ()  # listings (LISTED) or scores (REPUTATION)
    reason: str = ""  # why UNKNOWN; notes for the others

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(h.code for h in self.hits)


_RCODE_REASON = {
    Rcode.TIMEOUT: "timeout", Rcode.SERVFAIL: "SERVFAIL", Rcode.REFUSED: "REFUSED",
    Rcode.NODATA: "NOERROR without an A record",
}


def _code_effect(zone: Zone, code: str) -> tuple[Effect, str]:
    spec = zone.codes.get(code)
    if spec is not None:
        return spec.effect, spec.meaning
    try:
        addr = ipaddress.IPv4Address(code)
    except ValueError:
        return Effect.ERROR, f"answer {code!r} is not an IPv4 address"
    if addr not in LOOPBACK_NET:
        return Effect.ERROR, f"answer {code} is outside 127.0.0.0/8 (NXDOMAIN rewriting or a broken resolver?)"
    for net in zone.error_ranges:
        if addr in net:
            return Effect.ERROR, f"error code {code} (range {net})"
    if zone.bits and code.startswith("127.0.0."):
        octet = int(code.rsplit(".", 1)[1])
        meanings = [m for bit, m in sorted(zone.bits.items()) if octet & bit]
        if meanings:
            rest = octet & ~sum(zone.bits)
            suffix = f" (unknown bits {rest})" if rest else ""
            return Effect.LISTED, ", ".join(meanings) + suffix
    if zone.other_codes is Effect.LISTED and code.startswith("127.0.0."):
        return Effect.LISTED, f"{zone.provider}: listed (code {code})"
    return Effect.ERROR, f"unexpected code {code}"


def classify(zone: Zone, result: DnsResult) -> Verdict:
    """listed / not_listed (NXDOMAIN only) / unknown / reputation. Any error code among several A records
    makes the whole answer unknown: a list that says it could not answer is not believed."""
    if result.rcode is Rcode.NXDOMAIN:
        return Verdict(Status.NOT_LISTED)
    if result.rcode is not Rcode.ANSWER or not result.addresses:
        reason = _RCODE_REASON.get(result.rcode, "DNS error")
        return Verdict(Status.UNKNOWN, reason=f"{reason}: {result.detail}" if result.detail else reason)
    listed: list[Hit] = []
    scores: list[Hit] = []
    codes = result.addresses if len(result.addresses) == 1 else sorted(set(result.addresses), key=_sort_key)
    for code in codes:
        effect, meaning = _code_effect(zone, code)
        if effect is Effect.ERROR:
            return Verdict(Status.UNKNOWN, (Hit(code, meaning),), reason=meaning)
        (listed if effect is Effect.LISTED else scores).append(Hit(code, meaning))
    if listed:
        return Verdict(Status.LISTED, tuple(listed))
    return Verdict(Status.REPUTATION, tuple(scores))


def _sort_key(code: str) -> tuple[int, str]:
    try:
        return int(ipaddress.IPv4Address(code)), code
    except ValueError:
        return 1 << 33, code


# -------------------------------------------------------------------------------------- self-test

@dataclass(frozen=True)
class SelfTest:
    """The RFC 5782 self-test of one zone: the two answers and the verdict."""

    zone: str
    ok: bool
    reason: str = ""


def self_test_entries(zone: Zone) -> list[tuple[str, str]]:
    """(positive, negative) test entry pairs of a zone: its own, plus the IPv6 ones with test_ipv6."""
    pairs = [(zone.test_positive, zone.test_negative)]
    if zone.test_ipv6:
        pairs.append((IPV6_TEST_POSITIVE, IPV6_TEST_NEGATIVE))
    return pairs


def self_test_verdict(zone: Zone, positive: DnsResult, negative: DnsResult,
                      entries: tuple[str, str] | None = None) -> SelfTest:
    """A zone is usable only if its positive test entry is listed (or scored, for a reputation zone)
    with an expected code and its negative test entry is NXDOMAIN. Anything else: broken.
    `entries` names the pair tested (default: the zone's test_positive/test_negative)."""
    pos_entry, neg_entry = entries or (zone.test_positive, zone.test_negative)
    pv = classify(zone, positive)
    expected = zone.expected_test_status
    problems = []
    if pv.status is not expected:
        got = {Status.UNKNOWN: pv.reason, Status.NOT_LISTED: "NXDOMAIN"}.get(pv.status, pv.status.value)
        problems.append(f"test entry {pos_entry} is not {expected.value} ({got})")
    elif zone.test_codes and not set(pv.codes) & set(zone.test_codes):
        problems.append(f"test entry {pos_entry} answered {', '.join(pv.codes)}, "
                        f"expected one of {', '.join(zone.test_codes)}")
    if negative.rcode is not Rcode.NXDOMAIN:
        nv = classify(zone, negative)
        got = ", ".join(negative.addresses) if negative.addresses else (nv.reason or negative.rcode.value)
        problems.append(f"negative test entry {neg_entry} is not NXDOMAIN ({got}); "
                        "the list may be listing the world")
    return SelfTest(zone.name, not problems, "; ".join(problems))


def summarize_codes(hits: Sequence[Hit]) -> str:
    return ", ".join(f"{h.code} {h.meaning}" for h in hits)
