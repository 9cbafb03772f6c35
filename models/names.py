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


def key_path(value: str) -> str:
    """An absolute file path safe to render into a config line."""
    if not isinstance(value, str) or len(value) > 1024 or not _PATH_RE.match(value) or "/../" in value + "/":
        raise NameError_(f"{_describe(str(value))} is not a safe absolute path")
    return value


def ip_address(value: str) -> str:
    """A unicast IPv4 or IPv6 address in canonical text form."""
    try:
        addr = ipaddress.ip_address(str(value).strip() if isinstance(value, str) else value)
    except ValueError:
        raise NameError_(f"{_describe(str(value))} is not an IP address") from None
    if str(value) != str(value).strip():
        raise NameError_(f"{_describe(str(value))} has surrounding whitespace")
    if addr.is_unspecified or addr.is_multicast:
        raise NameError_(f"{addr} is not a unicast address")
    if isinstance(addr, ipaddress.IPv4Address) and addr == ipaddress.IPv4Address("255.255.255.255"):
        raise NameError_(f"{addr} is the broadcast address")
    return str(addr)


def ip_version(address: str) -> int:
    return ipaddress.ip_address(address).version
