"""Validation of every name and address that can end up in SQL, a config file or a shell.

Patterns are anchored at the very end of the text (`$` would also match before a trailing newline).

The rules are deliberately narrower than what DNS allows: anything rendered into an MTA config
line must not be able to break out of it (no whitespace, quotes, `<`, `>`, `#`, control characters).
"""

from __future__ import annotations

import ipaddress
import re

_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_HOSTNAME_RE = re.compile(rf"^{_LABEL}(?:\.{_LABEL})+\Z")
_SELECTOR_RE = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*\Z")
_TENANT_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
_TOKEN_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62})\Z")
_PATH_RE = re.compile(r"^/(?:[A-Za-z0-9._+-]+/)*[A-Za-z0-9._+-]+\Z")


class NameError_(ValueError):
    """A name or address that must not be stored or rendered."""


def _describe(value: str) -> str:
    return repr(value) if len(value) <= 80 else repr(value[:77] + "...")


def hostname(value: str) -> str:
    """A fully qualified host name (at least two labels), lower-cased."""
    if not isinstance(value, str) or len(value) > 253 or not _HOSTNAME_RE.match(value):
        raise NameError_(f"{_describe(str(value))} is not a valid host name (letters, digits, '-', dots)")
    return value.lower()


def domain(value: str) -> str:
    """A sending domain: same rules as a host name."""
    try:
        return hostname(value)
    except NameError_:
        raise NameError_(f"{_describe(str(value))} is not a valid domain name") from None


def selector(value: str) -> str:
    """A DKIM selector: one or more DNS labels."""
    if not isinstance(value, str) or len(value) > 253 or not _SELECTOR_RE.match(value):
        raise NameError_(f"{_describe(str(value))} is not a valid DKIM selector (DNS labels only)")
    return value.lower()


def tenant(value: str) -> str:
    """A tenant name: a lower-case DNS label (used in workflow ids, file names and pool names)."""
    if not isinstance(value, str) or not _TENANT_RE.match(value):
        raise NameError_(f"{_describe(str(value))} is not a valid tenant name (lower-case letters, digits, '-')")
    return value


def token(value: str, what: str = "name") -> str:
    """A config token such as a VMTA or MTA host name: letters, digits, '.', '_', '-'."""
    if not isinstance(value, str) or not _TOKEN_RE.match(value):
        raise NameError_(f"{_describe(str(value))} is not a valid {what} (letters, digits, '.', '_', '-')")
    return value


_UNIX_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}\Z")


def unix_user(value: str) -> str:
    """A user name on an MTA host (Debian's NAME_REGEX, at most 32 characters): safe in a command."""
    if not isinstance(value, str) or not _UNIX_USER_RE.match(value):
        raise NameError_(f"{_describe(str(value))} is not a valid user name (lower-case letters, digits, '_', '-')")
    return value


def key_path(value: str) -> str:
    """An absolute file path safe to render into a config line."""
    if not isinstance(value, str) or len(value) > 1024 or not _PATH_RE.match(value) or "/../" in value + "/":
        raise NameError_(f"{_describe(str(value))} is not a safe absolute path")
    return value


_BROADCAST = ipaddress.IPv4Address("255.255.255.255")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
#: canonical IPv4 text (decimal, no leading zeros) outside 0/8 (holds 0.0.0.0), 224/4 (multicast) and
#: 255/8 (holds the broadcast address): surely canonical and unicast; every other text takes the parser
_PLAIN_V4_RE = re.compile(rf"(?!0\.|22[4-9]\.|23[0-9]\.|255\.){_OCTET}(?:\.{_OCTET}){{3}}")


def ip_address(value: str) -> str:
    """A unicast IPv4 or IPv6 address, returned in canonical text form (`2001:DB8:0::1` -> `2001:db8::1`).

    Zone ids (`fe80::1%eth0`) are refused: the text after `%` is free-form and would otherwise reach
    config lines, shells and URLs verbatim (Python keeps it in `str(address)`)."""
    text = value if isinstance(value, str) else str(value)
    if "%" in text:
        raise NameError_(f"{_describe(text)}: zone ids ('%...') are not allowed in an address")
    if text != text.strip():
        raise NameError_(f"{_describe(text)} has surrounding whitespace")
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise NameError_(f"{_describe(text)} is not an IP address") from None
    canonical = addr.compressed
    if addr.is_unspecified or addr.is_multicast:
        raise NameError_(f"{canonical} is not a unicast address")
    if isinstance(addr, ipaddress.IPv4Address) and addr == _BROADCAST:
        raise NameError_(f"{canonical} is the broadcast address")
    return canonical


def canonical_ip(value: str) -> str:
    """An address exactly as `ip_address` would store it: what a renderer accepts (defence in depth,
    a row written around the loader must not reach a config line in another spelling).

    Fast path: renders re-check 10,000s of addresses; a canonical unicast IPv4 text is recognised by one
    regex (same answer as the parser, tests/test_mta_names_property.py); anything else goes the full way."""
    if type(value) is str and _PLAIN_V4_RE.fullmatch(value):
        return value
    canonical = ip_address(value)
    if value != canonical:
        raise NameError_(f"{_describe(value)} is not in canonical form ({canonical})")
    return canonical


def ip_version(address: str) -> int:
    return ipaddress.ip_address(address).version


_PREFIX_RE = re.compile(r"[0-9]{1,3}")


def ip_network(value: str) -> str:
    """An address or a CIDR network (`203.0.113.0/28`, `2001:db8::/48`), canonical: the address part
    passes `ip_address` (no zone id, no whitespace, unicast), the prefix is plain digits, host bits are
    refused (`203.0.113.5/24` is a typo, not a network), a full-length prefix is written as the bare
    address. A /0 cannot pass: its only networks are 0.0.0.0 and ::, which are not unicast. Used for
    firewall address lists."""
    text = value if isinstance(value, str) else str(value)
    address, sep, prefix = text.partition("/")
    canonical = ip_address(address)
    if not sep:
        return canonical
    if not _PREFIX_RE.fullmatch(prefix):
        raise NameError_(f"{_describe(text)}: the prefix length after '/' must be a number")
    try:
        net = ipaddress.ip_network(f"{canonical}/{int(prefix)}", strict=True)
    except ValueError as err:
        if "host bits" in str(err):
            loose = ipaddress.ip_network(f"{canonical}/{int(prefix)}", strict=False)
            raise NameError_(f"{_describe(text)} has host bits set (the network is {loose})") from None
        raise NameError_(f"{_describe(text)} is not a network (prefix length out of range)") from None
    return canonical if net.prefixlen == net.max_prefixlen else net.compressed


def canonical_network(value: str) -> str:
    """A network exactly as `ip_network` writes it (what the firewall renderer accepts)."""
    if type(value) is str and _PLAIN_V4_RE.fullmatch(value):
        return value
    canonical = ip_network(value)
    if value != canonical:
        raise NameError_(f"{_describe(str(value))} is not in canonical form ({canonical})")
    return canonical


_URL_HOST_RE = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*\Z")
_URL_PATH_RE = re.compile(r"^(?:/[A-Za-z0-9._~+-]+)*/?\Z")


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def http_base_url(value: str) -> str:
    """An API base URL (MailWizz): https, or plain http to a loopback address only; no credentials,
    query or fragment; host a DNS name or canonical IP literal; a plain path. Keys travel in headers,
    so a plain-http URL to another machine would hand them to anyone on the path."""
    from urllib.parse import urlsplit

    if not isinstance(value, str) or len(value) > 2048 or any(c.isspace() or ord(c) < 32 or ord(c) == 127
                                                               for c in value):
        raise NameError_(f"{_describe(str(value))} is not an http(s) URL (whitespace or control characters)")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise NameError_(f"{_describe(value)} is not an http(s) URL") from None
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        raise NameError_(f"{_describe(value)} is not an http(s) URL")
    if "@" in parts.netloc:
        raise NameError_(f"{_describe(value)}: credentials in the URL are not allowed (keys go in settings)")
    if parts.query or parts.fragment or "?" in value or "#" in value:
        raise NameError_(f"{_describe(value)}: a base URL has no query or fragment")
    bracketed = parts.netloc.startswith("[")
    if bracketed or host.replace(".", "").isdigit():
        ip_address(host)  # canonical literal, no zone id
    elif not _URL_HOST_RE.match(host):
        raise NameError_(f"{_describe(value)}: {host!r} is not a valid host name")
    if port is not None and not 0 < port < 65536:
        raise NameError_(f"{_describe(value)}: port out of range")
    if not _URL_PATH_RE.match(parts.path) or "/../" in parts.path + "/" or "/./" in parts.path + "/":
        raise NameError_(f"{_describe(value)}: the path may only hold letters, digits and . _ ~ + -")
    if parts.scheme == "http" and not _loopback(host):
        raise NameError_(f"{_describe(value)}: plain http is allowed to loopback only; use https")
    return value
