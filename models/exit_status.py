"""Exit statuses of the checks an operator runs from cron or monitoring (`scan blocklists`,
`dns check`): a script tells "all clear" from "something is wrong" from "could not tell" without
parsing the output.

0 clean; 1 a finding (a target listed, a domain failing); 2 the command could not run (bad input,
no database, unreadable catalogue); 3 incomplete (answers unknown or zones broken, nothing found).
A finding wins over incompleteness: a listing seen through a half-broken scan is still a listing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

CLEAN = 0
FOUND = 1
ERROR = 2
INCOMPLETE = 3

HELP = ("Exit status: 0 clean; 1 {found}; 2 could not run (bad input, no database); "
        "3 incomplete ({incomplete}) with nothing found.")


def scan_status(listed: int, unknown: int, broken: int) -> int:
    """`listed`: targets listed; `unknown`: answers neither listed nor not listed; `broken`: zones
    that failed their self-test (their answers were ignored)."""
    if listed:
        return FOUND
    return INCOMPLETE if unknown or broken else CLEAN


def dns_status(states: Mapping[str, int]) -> int:
    """`states`: how many domains ended in each state (pass, fail, unknown)."""
    if states.get("fail", 0):
        return FOUND
    return INCOMPLETE if states.get("unknown", 0) else CLEAN


class _Judged(Protocol):
    @property
    def verdict(self) -> str: ...


def guard_status(ips: Iterable[_Judged], steps: bool) -> int:
    """`email-engine guard run`: a real excess (a step taken or held now, or an IP judged step-down/pause
    that an earlier run already handled) is a finding; IPs held on insufficient data or not yet clear
    make it incomplete."""
    verdicts = {ip.verdict for ip in ips}
    if steps or verdicts & {"step-down", "pause"}:
        return FOUND
    return INCOMPLETE if verdicts & {"hold-insufficient-data", "not-yet-clear"} else CLEAN
