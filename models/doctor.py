"""`email-engine doctor`: what each preflight finding means and how to fix it (pure; the probes are in
activities/doctor.py and client/doctor.py).

A check is ✅ ok, ⚠️ warn (works, but not as production should) or ❌ fail (something the engine needs
is missing or wrong); every non-ok check carries a one-line fix. Any ❌ makes the command exit 1.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum


class Level(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


ICONS = {Level.OK: "✅", Level.WARN: "⚠️", Level.FAIL: "❌"}


@dataclass(frozen=True)
class Check:
    area: str  # database | temporal | dns | ssh | telegram | mailwizz
    name: str
    level: Level
    detail: str
    fix: str = ""

    @property
    def icon(self) -> str:
        return ICONS[self.level]


def ok(area: str, name: str, detail: str) -> Check:
    return Check(area, name, Level.OK, detail)


def warn(area: str, name: str, detail: str, fix: str) -> Check:
    return Check(area, name, Level.WARN, detail, fix)


def fail(area: str, name: str, detail: str, fix: str) -> Check:
    return Check(area, name, Level.FAIL, detail, fix)


def exit_code(checks: Sequence[Check]) -> int:
    return 1 if any(c.level is Level.FAIL for c in checks) else 0


def counts(checks: Sequence[Check]) -> dict[str, int]:
    return {level.value: sum(c.level is level for c in checks) for level in Level}


# --- database ---------------------------------------------------------------------------------------

def migration(current: str | None, heads: Sequence[str]) -> Check:
    want = ",".join(sorted(heads))
    if current == want:
        return ok("database", "migrated to head", f"revision {current}")
    have = current or "empty (no migration applied)"
    return fail("database", "migrated to head", f"at {have}, head is {want}", "run `email-engine db upgrade`")


# --- Temporal ---------------------------------------------------------------------------------------

def transport(address: str, security: str) -> Check:
    """Plaintext is fine on loopback (the embedded dev server); anywhere else anyone on the path can
    read histories and approve failovers."""
    host = address.rpartition(":")[0].strip("[]") or address
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if security != "plaintext" or loopback:
        return ok("temporal", "connection security", security)
    return warn("temporal", "connection security", f"plaintext to {address}",
                "set EMAIL_ENGINE_TEMPORAL_TLS_CA_FILE (and the client certificate for mTLS) or the API key")


def search_attributes(registered: Mapping[str, str], wanted: Sequence[str], namespace: str) -> Check:
    """`registered`: custom attribute name -> type name ("KEYWORD", ...), as the server lists them."""
    missing = [n for n in wanted if n not in registered]
    wrong = [f"{n} is {registered[n]}" for n in wanted if n in registered and registered[n].upper() != "KEYWORD"]
    if not missing and not wrong:
        return ok("temporal", "search attributes", ", ".join(wanted) + " registered")
    problems = ([f"not registered: {', '.join(missing)}"] if missing else []) + [f"{w}, not Keyword" for w in wrong]
    return fail("temporal", "search attributes", "; ".join(problems),
                f"run deploy/register-search-attributes.sh (TEMPORAL_NAMESPACE={namespace}); warmups cannot "
                "start without them")


def schedule(name: str, present: bool, paused: bool, note: str) -> Check:
    if not present:
        return fail("temporal", f"schedule {name}", "not installed", "run `email-engine schedules apply`")
    if paused:
        return fail("temporal", f"schedule {name}", f"paused ({note or 'no note'})",
                    f"`email-engine schedules unpause {name} --reason ...` once the cause is fixed")
    return ok("temporal", f"schedule {name}", "present, not paused")


#: A poller not seen for this long is a worker that stopped (the server keeps it listed a few minutes).
POLLER_MAX_AGE_SECONDS = 150.0


def pollers(queue: str, kind: str, ages: Mapping[str, float]) -> Check:
    """`ages`: poller identity -> seconds since it last polled `queue` for `kind` tasks."""
    live = sorted(identity for identity, age in ages.items() if age <= POLLER_MAX_AGE_SECONDS)
    name = f"worker polling {queue} ({kind})"
    if live:
        return ok("temporal", name, f"{len(live)} poller(s): {', '.join(live[:3])}")
    detail = "no worker polls it" if not ages else f"last poll {min(ages.values()):.0f} s ago"
    return fail("temporal", name, detail,
                f"start one: `systemctl start email-engine-worker@{queue}` (or `email-engine worker`)")


# --- DNS --------------------------------------------------------------------------------------------

#: Anycast resolvers of the big public DNS services: blocklists refuse them (Spamhaus answers
#: 127.255.255.254), so a scan through them sees nothing.
PUBLIC_RESOLVERS = frozenset({
    "8.8.8.8", "8.8.4.4", "1.1.1.1", "1.0.0.1", "9.9.9.9", "149.112.112.112", "208.67.222.222", "208.67.220.220",
    "64.6.64.6", "64.6.65.6", "94.140.14.14", "94.140.15.15", "185.228.168.9", "76.76.2.0", "76.76.10.0",
    "2001:4860:4860::8888", "2001:4860:4860::8844", "2606:4700:4700::1111", "2606:4700:4700::1001",
    "2620:fe::fe", "2620:fe::9", "2620:119:35::35", "2620:119:53::53",
})


def is_public_resolver(address: str) -> bool:
    return str(ipaddress.ip_address(address)) in PUBLIC_RESOLVERS


def resolvers_configured(servers: Sequence[tuple[str, int]], from_settings: bool) -> list[Check]:
    checks = []
    if not servers:
        return [fail("dns", "resolvers configured", "none configured and no system resolver found",
                     "set EMAIL_ENGINE_DNS_RESOLVERS=host[:port] (your own recursive resolver)")]
    listed = ", ".join(f"{h}:{p}" for h, p in servers)
    if from_settings:
        checks.append(ok("dns", "resolvers configured", listed))
    else:
        checks.append(warn("dns", "resolvers configured",
                           f"EMAIL_ENGINE_DNS_RESOLVERS is empty: system resolver {listed}",
                           "set EMAIL_ENGINE_DNS_RESOLVERS to the resolver the blocklists allow you to query"))
    public = [f"{h}:{p}" for h, p in servers if is_public_resolver(h)]
    if public:
        checks.append(fail("dns", "not a public resolver", f"public resolver(s): {', '.join(public)}",
                           "use your own recursive resolver: blocklists refuse queries from public ones"))
    else:
        checks.append(ok("dns", "not a public resolver", "none of the resolvers is a public DNS service"))
    return checks


def resolver_answers(server: str, error: str | None) -> Check:
    if error is None:
        return ok("dns", f"resolver {server} answers", "answered")
    return fail("dns", f"resolver {server} answers", error,
                "start the resolver or fix EMAIL_ENGINE_DNS_RESOLVERS (host:port)")


def self_test(usable: Sequence[str], broken: Mapping[str, str]) -> Check:
    """RFC 5782 self-test of every active blocklist zone through the resolvers (broken: zone -> reason)."""
    total = len(usable) + len(broken)
    if not total:
        return warn("dns", "blocklist self-test", "no active blocklist zone in the catalogue",
                    "check EMAIL_ENGINE_BLOCKLIST_CATALOG")
    if not broken:
        return ok("dns", "blocklist self-test", f"{total} zones pass (RFC 5782 test entries)")
    names = ", ".join(sorted(broken)[:6]) + (" ..." if len(broken) > 6 else "")
    first = broken[sorted(broken)[0]]
    return fail("dns", "blocklist self-test", f"{len(broken)} of {total} zones fail: {names} ({first})",
                "their listings are ignored: check the resolver reaches them (and the Spamhaus DQS key)")
