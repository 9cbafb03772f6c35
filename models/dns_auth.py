"""Pure evaluation of sending-domain DNS authentication (SPF, DKIM, DMARC, PTR/FCrDNS).

No I/O here: activities/dns_checks.py fetches the records (dnspython, checkdmarc on our
resolvers) and hands them to these functions. Every item ends in one of four statuses:
valid, warn (passes, with advice), invalid (fails), unknown (the resolver could not tell:
timeout, SERVFAIL, no answer from any server; never promoted to valid or invalid).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

VALID, WARN, INVALID, UNKNOWN = "valid", "warn", "invalid", "unknown"
STATUSES = (VALID, WARN, INVALID, UNKNOWN)
ITEMS = ("spf", "dkim", "dmarc", "ptr")
PASSING = frozenset({VALID, WARN})
_SEVERITY = {VALID: 0, WARN: 1, UNKNOWN: 2, INVALID: 3}
ICONS = {VALID: "✅", WARN: "⚠️", INVALID: "❌", UNKNOWN: "❔"}


@dataclass(frozen=True)
class ItemResult:
    status: str
    reason: str
    details: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "reason": self.reason, "details": list(self.details)}


def worst(statuses: list[str]) -> str:
    """Overall status: invalid > unknown > warn > valid (nothing at all is unknown)."""
    return max(statuses, key=_SEVERITY.__getitem__) if statuses else UNKNOWN


def flag(status: str) -> bool | None:
    """SendingDomain flag for an item status: passing True, invalid False, unknown None."""
    if status in PASSING:
        return True
    return False if status == INVALID else None


def gate_failures(items: dict[str, Any], *, checked_at: dt.datetime, now: dt.datetime, checked_ip: str,
                  current_ip: str, max_age: dt.timedelta | None) -> list[str]:
    """Why a persisted check does not let its IP into warming (empty: it passes).

    All four items must be valid or warn; the check must be for the IP the domain points at now
    and (with max_age) recent enough.
    """
    failures: list[str] = []
    if checked_ip != current_ip:
        failures.append(f"latest DNS check was for IP {checked_ip}, not {current_ip}: check again")
    if max_age is not None:
        at = checked_at if checked_at.tzinfo else checked_at.replace(tzinfo=dt.UTC)
        if now - at > max_age:
            failures.append(f"latest DNS check ({at:%Y-%m-%d %H:%M} UTC) is older than {max_age}: check again")
    for name in ITEMS:
        item = items.get(name)
        if not isinstance(item, dict):
            failures.append(f"{name.upper()} not checked")
            continue
        status = item.get("status", UNKNOWN)
        if status not in PASSING:
            failures.append(f"{name.upper()} {status}: {item.get('reason', '')}")
    return failures


# --------------------------------------------------------------------------- SPF

_ALL_RE = re.compile(r"^[+\-~?]?all$", re.IGNORECASE)
_QUALIFIER = {"pass": "pass", "fail": "fail", "softfail": "softfail", "neutral": "neutral"}


def _in_network(ip: str, value: str, default_prefix: int | None = None) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
        if "/" not in value and default_prefix is not None:
            value = f"{value}/{default_prefix}"
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return addr.version == net.version and addr in net


def _split_cidr(value: str) -> tuple[str, int | None, int | None]:
    """`host/24//64` -> (host, 24, 64) for a/mx mechanisms."""
    host, v4, v6 = value, None, None
    if "//" in host:
        host, _, six = host.partition("//")
        v6 = int(six) if six.isdigit() else None
    if "/" in host:
        host, _, four = host.partition("/")
        v4 = int(four) if four.isdigit() else None
    return host, v4, v6


def _addr_match(ip: str, addresses: list[str], v4: int | None, v6: int | None) -> bool:
    version = ipaddress.ip_address(ip).version
    prefix = (v4 if version == 4 else v6)
    for a in addresses:
        try:
            if ipaddress.ip_address(a).version != version:
                continue
        except ValueError:
            continue
        if _in_network(ip, a, prefix if prefix is not None else (32 if version == 4 else 128)):
            return True
    return False


def spf_mx_hosts(parsed: dict[str, Any] | None) -> set[str]:
    """Every host named by an `mx` mechanism anywhere in checkdmarc's parsed tree."""
    hosts: set[str] = set()
    if not parsed:
        return hosts
    for mech in parsed.get("mechanisms") or []:
        if mech.get("mechanism") == "mx":
            hosts |= {str(h.get("hostname", "")).rstrip(".").lower() for h in mech.get("hosts") or []}
        elif mech.get("mechanism") == "include":
            hosts |= spf_mx_hosts(mech.get("parsed"))
    redirect = parsed.get("redirect")
    if isinstance(redirect, dict):
        hosts |= spf_mx_hosts(redirect.get("parsed"))
    return hosts - {""}


def spf_result_for_ip(record: str, parsed: dict[str, Any], ip: str, mx_addresses: dict[str, list[str]],
                      trail: list[str] | None = None) -> tuple[str, list[str]]:
    """RFC 7208 §4.6/§5 evaluation of checkdmarc's parsed record for one IP.

    checkdmarc parses the record, follows include/redirect, counts lookups and resolves `a`
    mechanisms, but it does not answer "does this record authorize IP X"; this function does, on
    top of its parsed tree. `mx` hosts are resolved by the caller (`mx_addresses`); `exists`
    and `ptr` cannot be evaluated for a sending IP here and never count as a match.
    Returns (result, trail): result is pass/fail/softfail/neutral, trail says which term decided.
    """
    trail = list(trail or [])
    for mech in parsed.get("mechanisms") or []:
        kind = str(mech.get("mechanism", "")).lower()
        action = _QUALIFIER.get(str(mech.get("action", "pass")), "pass")
        value = str(mech.get("value", ""))
        matched = False
        sub_trail: list[str] = []
        if kind in ("ip4", "ip6"):
            matched = _in_network(ip, value)
        elif kind == "a":
            _, v4, v6 = _split_cidr(value)
            matched = _addr_match(ip, [str(a) for a in mech.get("addresses") or []], v4, v6)
        elif kind == "mx":
            _, v4, v6 = _split_cidr(value)
            for h in mech.get("hosts") or []:
                host = str(h.get("hostname", "")).rstrip(".").lower()
                if _addr_match(ip, mx_addresses.get(host, []), v4, v6):
                    matched = True
                    break
        elif kind == "include":
            sub = mech.get("parsed")
            if isinstance(sub, dict):
                result, sub_trail = spf_result_for_ip(str(mech.get("record", "")), sub, ip, mx_addresses)
                matched = result == "pass"
        if matched:
            return action, [*trail, f"{'' if action == 'pass' else action + ' '}{kind}:{value}".rstrip(":"),
                            *sub_trail]
    has_all = any(_ALL_RE.match(t) for t in record.split())
    if has_all:
        return _QUALIFIER.get(str(parsed.get("all")), "neutral"), [*trail, "all"]
    redirect = parsed.get("redirect")
    if isinstance(redirect, dict) and isinstance(redirect.get("parsed"), dict):
        return spf_result_for_ip(str(redirect.get("record", "")), redirect["parsed"], ip, mx_addresses,
                                 [*trail, f"redirect={redirect.get('domain')}"])
    return "neutral", [*trail, "no match, no all"]


def evaluate_spf(result: dict[str, Any], ip: str, mx_addresses: dict[str, list[str]]) -> ItemResult:
    """SPF item from checkdmarc's `check_spf` result (already known not to hide a resolver error)."""
    details = [str(w) for w in result.get("warnings") or []]
    record = result.get("record")
    error = result.get("error")
    if not record:
        if error and "multiple" in str(error).lower():
            return ItemResult(INVALID, "more than one SPF record (RFC 7208 §4.5: permerror)", details)
        return ItemResult(INVALID, f"no SPF record ({error or 'not found'})", details)
    lookups, voids = result.get("dns_lookups"), result.get("void_dns_lookups")
    details.insert(0, f"record: {record}")
    details.append(f"DNS lookups: {lookups}, void lookups: {voids}")
    if error:
        return ItemResult(INVALID, str(error), details)
    if isinstance(lookups, int) and lookups > 10:
        return ItemResult(INVALID, f"{lookups} DNS lookups, over the RFC 7208 limit of 10", details)
    if isinstance(voids, int) and voids > 2:
        return ItemResult(INVALID, f"{voids} void lookups, over the RFC 7208 limit of 2", details)
    parsed = result.get("parsed") or {}
    all_q = parsed.get("all")
    if all_q not in ("fail", "softfail"):
        shown = {"pass": "+all", "neutral": "?all"}.get(str(all_q), "no all")
        return ItemResult(INVALID, f"record ends in {shown}, not -all or ~all", details)
    verdict, trail = spf_result_for_ip(str(record), parsed, ip, mx_addresses)
    details.append("evaluation: " + " -> ".join(trail))
    if verdict != "pass":
        return ItemResult(INVALID, f"does not authorize {ip} (result {verdict})", details)
    ending = "-all" if all_q == "fail" else "~all"
    reason = f"authorizes {ip} via {' -> '.join(trail)}; {lookups} lookups; ends in {ending}"
    warnings = result.get("warnings") or []
    if warnings:
        return ItemResult(WARN, reason + f"; {len(warnings)} warning(s): {warnings[0]}", details)
    return ItemResult(VALID, reason, details)


# --------------------------------------------------------------------------- DKIM

def parse_tags(record: str) -> dict[str, str]:
    """`k=v; k2=v2` tag list (RFC 6376 §3.2); whitespace inside values removed."""
    tags: dict[str, str] = {}
    for part in record.split(";"):
        if "=" not in part:
            continue
        key, _, value = part.partition("=")
        tags[key.strip().lower()] = re.sub(r"\s+", "", value)
    return tags


def evaluate_dkim(records: list[str], private_key_pem: bytes | None, key_problem: str | None = None) -> ItemResult:
    """DKIM item: the TXT strings at <selector>._domainkey.<domain> (each joined) vs our private key.

    Empty list: no record. `key_problem`: why the private key could not be read (unknown).
    """
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    keyrecs = [r for r in records if "p=" in r.replace(" ", "") or r.strip().lower().startswith("v=dkim1")]
    if not keyrecs:
        return ItemResult(INVALID, "no DKIM key record published")
    if len(keyrecs) > 1:
        return ItemResult(INVALID, f"{len(keyrecs)} DKIM key records at the selector, expected one")
    tags = parse_tags(keyrecs[0])
    details = [f"record: {keyrecs[0][:120]}{'...' if len(keyrecs[0]) > 120 else ''}"]
    if "v" in tags and tags["v"] != "DKIM1":
        return ItemResult(INVALID, f"v={tags['v']}, expected DKIM1", details)
    if "p" not in tags:
        return ItemResult(INVALID, "DKIM record has no p= tag", details)
    if tags["p"] == "":
        return ItemResult(INVALID, "DKIM key revoked (empty p=)", details)
    k = tags.get("k", "rsa").lower()
    if k not in ("rsa", "ed25519"):
        return ItemResult(INVALID, f"unsupported key type k={k}", details)
    if "h" in tags and "sha256" not in tags["h"].lower().split(":"):
        return ItemResult(INVALID, f"h={tags['h']} does not allow sha256 (rsa-sha1 is obsolete, RFC 8301)", details)
    try:
        blob = base64.b64decode(tags["p"], validate=True)
    except (ValueError, binascii.Error):
        return ItemResult(INVALID, "p= is not valid base64", details)
    if private_key_pem is None:
        return ItemResult(UNKNOWN, f"published key not compared: {key_problem or 'no private key'}", details)
    try:
        # Only the public half is compared (nothing is signed here): skip the costly RSA consistency check.
        private = serialization.load_pem_private_key(private_key_pem, password=None,
                                                     unsafe_skip_rsa_key_validation=True)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        return ItemResult(INVALID, f"private key unreadable: {exc}", details)
    warn: list[str] = []
    if tags.get("t", "").lower().split(":").count("y"):
        warn.append("t=y (testing mode)")
    if k == "ed25519":
        if not isinstance(private, ed25519.Ed25519PrivateKey):
            return ItemResult(INVALID, "published k=ed25519 but the private key is not ed25519", details)
        if len(blob) != 32:
            return ItemResult(INVALID, f"ed25519 p= is {len(blob)} bytes, expected 32 (raw key, RFC 8463)", details)
        ours = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        if blob != ours:
            return ItemResult(INVALID, "published ed25519 key does not match the private key", details)
        return ItemResult(WARN if warn else VALID, "ed25519 key matches the private key" +
                          (f"; {', '.join(warn)}" if warn else ""), details)
    if not isinstance(private, rsa.RSAPrivateKey):
        return ItemResult(INVALID, "published k=rsa but the private key is not RSA", details)
    try:
        public = serialization.load_der_public_key(blob)
    except (ValueError, UnsupportedAlgorithm):
        return ItemResult(INVALID, "p= is not a DER RSA public key", details)
    if not isinstance(public, rsa.RSAPublicKey):
        return ItemResult(INVALID, "p= is not an RSA public key", details)
    if public.public_numbers() != private.public_key().public_numbers():
        return ItemResult(INVALID, "published key does not match the private key", details)
    bits = public.key_size
    if bits < 1024:
        return ItemResult(INVALID, f"RSA {bits} bits: under the 1024-bit minimum (Gmail, Yahoo)", details)
    if bits < 2048:
        warn.insert(0, f"RSA {bits} bits: 2048 recommended")
    reason = f"RSA {bits}-bit key matches the private key" + (f"; {', '.join(warn)}" if warn else "")
    return ItemResult(WARN if warn else VALID, reason, details)


# --------------------------------------------------------------------------- DMARC

def evaluate_dmarc(result: dict[str, Any], domain: str = "") -> ItemResult:
    """DMARC item from checkdmarc's `check_dmarc` result (at the domain or organizational domain)."""
    details = [str(w) for w in result.get("warnings") or []]
    if not result.get("record"):
        return ItemResult(INVALID, f"no DMARC record ({result.get('error') or 'not found'})", details)
    location = result.get("location")
    details.insert(0, f"record at _dmarc.{location}: {result['record']}")
    if result.get("error") or not result.get("valid", False):
        return ItemResult(INVALID, str(result.get("error") or "invalid DMARC record"), details)
    tags = result.get("tags") or {}
    policy = str((tags.get("p") or {}).get("value", "none"))
    rua = (tags.get("rua") or {}).get("value") or []
    at_org = bool(domain) and bool(location) and str(location).rstrip(".").lower() != domain.rstrip(".").lower()
    reason = f"p={policy}" + (f" (at organizational domain {location})" if at_org else "")
    warn = []
    if not rua:
        warn.append("no rua: no aggregate reports")
    if policy == "none":
        warn.append("p=none: not enforced")
    if len(details) > 1:
        warn.append(f"{len(details) - 1} checkdmarc warning(s)")
    if warn:
        return ItemResult(WARN, reason + "; " + "; ".join(warn), details)
    return ItemResult(VALID, reason + f"; rua={','.join(str(u.get('address', u)) for u in rua)}", details)


# --------------------------------------------------------------------------- PTR / FCrDNS

def _host(name: str) -> str:
    return name.rstrip(".").lower()


def evaluate_ptr(ip: str, helo: str, ptr_names: list[str], forward: dict[str, list[str]]) -> ItemResult:
    """FCrDNS: a PTR name whose A/AAAA (`forward`) includes `ip`, equal to the IP's HELO host name."""
    if not ptr_names:
        return ItemResult(INVALID, f"no PTR record for {ip}")
    names = [_host(n) for n in ptr_names]
    details = [f"PTR: {', '.join(names)}"] + [f"{n} -> {', '.join(forward.get(n, [])) or 'no address'}"
                                               for n in names]
    confirmed = [n for n in names if ip in {str(ipaddress.ip_address(a)) for a in forward.get(n, [])}]
    if not confirmed:
        return ItemResult(INVALID, f"PTR {', '.join(names)} not forward-confirmed: no A/AAAA resolves to {ip}",
                          details)
    if _host(helo) not in confirmed:
        return ItemResult(INVALID, f"PTR {confirmed[0]} is forward-confirmed but the HELO name is {_host(helo)}",
                          details)
    if len(names) > 1:
        return ItemResult(WARN, f"{_host(helo)} forward-confirmed; {len(names)} PTR records (one expected)", details)
    return ItemResult(VALID, f"{_host(helo)} forward-confirmed, matches HELO", details)


# --------------------------------------------------------------------------- daily alerts

def changes(summaries: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Domains whose gate state changed since their previous check, grouped for one alert.

    States: pass / fail / unknown (None: never checked). A first check that passes is not news;
    the same state as yesterday is not news either (no daily repeats of a known failure).
    """
    out: dict[str, list[dict[str, Any]]] = {"failing": [], "unknown": [], "recovered": []}
    for s in summaries:
        before, now = s.get("previous_state"), s.get("state")
        if before == now or (before is None and now == "pass"):
            continue
        key = {"fail": "failing", "unknown": "unknown", "pass": "recovered"}.get(str(now))
        if key:
            out[key].append(s)
    return out


def change_alert_text(grouped: dict[str, list[dict[str, Any]]], total: int,
                      counts: dict[str, int] | None = None) -> tuple[str, str, str] | None:
    """(title, body, severity) of the one summary message, or None when nothing changed.

    `counts` (per kind) when `grouped` holds only some of the rows (a validation in batches keeps 50).
    """
    def count(kind: str) -> int:
        return max(len(grouped.get(kind, [])), (counts or {}).get(kind, 0))

    n_fail, n_unknown, n_ok = (count(k) for k in ("failing", "unknown", "recovered"))
    if not (n_fail or n_unknown or n_ok):
        return None
    parts = [f"{n} {what}" for n, what in ((n_fail, "newly failing"), (n_unknown, "not checkable"),
                                            (n_ok, "recovered")) if n]
    title = f"DNS checks: {', '.join(parts)} (of {total} domains)"
    lines: list[str] = []
    for key, head in (("failing", "Newly failing"), ("unknown", "Could not be checked (resolver errors)"),
                      ("recovered", "Recovered")):
        rows = sorted(grouped.get(key, []), key=lambda s: (s.get("tenant", ""), s.get("domain", "")))
        if not rows:
            continue
        lines.append(f"{head}:")
        for s in rows[:50]:
            why = "; ".join(s.get("failing") or []) if key != "recovered" else "all four checks pass"
            lines.append(f"- {s.get('tenant')}/{s.get('domain')} ({s.get('ip')}): {why}")
        if count(key) > min(len(rows), 50):
            lines.append(f"- ... and {count(key) - min(len(rows), 50)} more")
    severity = "critical" if n_fail else "warning" if n_unknown else "info"
    return title, "\n".join(lines), severity
