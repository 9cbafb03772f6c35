"""How much mail each VirtualMTA / transport is offered in a day: a pure model of the MTAs' documented
selection rules, fed from the RENDERED config (parsed here), never from the renderer's inputs.

PowerMTA (User's Guide v5.0 sections):
1. A feeder's mail goes to its `<source>`'s `default-virtual-mta`, here a pool (3.3.7.29, 8.4).
2. A pool hands out its members round-robin (3.3.13, 8.3), with no weights. Modelled per message at
   reception, independent of the recipient domain: each member gets 1/m of each domain's messages.
3. At reception the chosen VirtualMTA re-routes, per recipient domain and day, its first N messages to
   its cold VirtualMTA, N from `max-cold-virtual-mta-msg` in the warm VMTA's `<domain>` block for that
   domain (else `<domain *>`, else the default 0/d); several cold VMTAs are used round-robin, the limit
   applying to each; counters reset at midnight (3.3.10.48, 3.3.12.4, 10.7). A ramp `a/d,b/d,...`
   uses its `day`-th value, the last one repeating.
   (The guide does not say in so many words that a member picked from a pool is "the VirtualMTA
   selected" for re-selection; both happen at reception, and this model assumes they compose so.)
4. A VirtualMTA sends at most its `max-smtp-msg-rate N/d` recipients a day (3.3.12.2, 3.3.10.33); the
   rest stays queued (and expires after `bounce-after`, 3.3.10.11).
Not modelled: mail that names a VirtualMTA itself (X-Virtual-MTA, 8.4), MX rollup (we render none).

Postfix: the tenant's restriction class picks a transport with `randmap:{...}`, a uniform random
choice among the listed results, repeated entries weighting it (RELEASE_NOTES-3.0, DATABASE_README;
notes/mta.md 3.2). Expected offered volume = volume x repetitions / entries. Postfix has no daily
cap: everything offered is sent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

#: An ASSUMED recipient-domain mix (shares of a tenant's daily mail) for the share tables and tests;
#: not a sourced figure. 30 % goes to 300 small domains of 0.1 % each.
REFERENCE_MIX: dict[str, float] = {
    "gmail.com": 0.30, "yahoo.com": 0.10, "hotmail.com": 0.10, "outlook.com": 0.07, "orange.fr": 0.08,
    "icloud.com": 0.05, **{f"other-{i}.example": 0.001 for i in range(300)},
}


def split_counts(total: int, shares: Mapping[str, float]) -> dict[str, int]:
    """`total` messages over `shares` (normalised), summing exactly (largest remainder)."""
    s = sum(shares.values())
    exact = {k: total * v / s for k, v in shares.items()}
    out = {k: int(x) for k, x in exact.items()}
    for k in sorted(exact, key=lambda k: -(exact[k] - int(exact[k])))[:total - sum(out.values())]:
        out[k] += 1
    return out


# ------------------------------------------------------------------------------- PowerMTA structure


@dataclass
class Vmta:
    name: str
    source_ip: str = ""
    #: max-smtp-msg-rate per day (None: no daily limit rendered)
    daily_rate: int | None = None
    colds: list[str] = field(default_factory=list)
    #: domain pattern -> max-cold-virtual-mta-msg daily limits (a ramp)
    cold_limits: dict[str, list[int]] = field(default_factory=dict)


@dataclass
class PmtaConfig:
    vmtas: dict[str, Vmta] = field(default_factory=dict)
    pools: dict[str, list[str]] = field(default_factory=dict)
    #: source (feeder IP) -> default-virtual-mta
    sources: dict[str, str] = field(default_factory=dict)


_OPEN = re.compile(r"^<([a-z-]+)(?: (.+))?>$")
_CLOSE = re.compile(r"^</([a-z-]+)>$")
_RATE = re.compile(r"^([0-9]+)/([0-9]*)(d|day|h|hr|m|min|s|sec)$")
_PER_DAY = {"d": 1, "day": 1, "h": 24, "hr": 24, "m": 1440, "min": 1440, "s": 86400, "sec": 86400}


def _per_day(value: str) -> int | None:
    if value == "unlimited":
        return None
    if value == "0":
        return 0
    m = _RATE.match(value)
    if not m:
        raise ValueError(f"not a rate: {value!r}")
    return int(m.group(1)) * _PER_DAY[m.group(3)] // int(m.group(2) or 1)


def parse_pmta(files: Mapping[str, str]) -> PmtaConfig:
    """The selection-relevant structure of PowerMTA config text (comments from `#`, 3.1)."""
    cfg = PmtaConfig()
    for _name, text in sorted(files.items()):
        stack: list[tuple[str, str]] = []
        for raw in text.split("\n"):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            if m := _CLOSE.match(line):
                stack.pop()
                continue
            if m := _OPEN.match(line):
                tag, value = m.group(1), (m.group(2) or "").strip()
                stack.append((tag, value))
                if tag == "virtual-mta":
                    cfg.vmtas.setdefault(value, Vmta(value))
                elif tag == "virtual-mta-pool":
                    cfg.pools.setdefault(value, [])
                continue
            key, _, value = line.partition(" ")
            value = value.strip()
            scope = [t for t, _ in stack]
            if scope == ["virtual-mta"]:
                v = cfg.vmtas[stack[0][1]]
                if key == "smtp-source-host":
                    v.source_ip = value.split()[0]
                elif key == "max-smtp-msg-rate":
                    v.daily_rate = _per_day(value)
                elif key == "cold-virtual-mta":
                    v.colds.append(value)
            elif scope == ["virtual-mta", "domain"] and key == "max-cold-virtual-mta-msg":
                cfg.vmtas[stack[0][1]].cold_limits[stack[1][1]] = [
                    int(_RATE.match(r.strip()).group(1)) for r in value.split(",")  # type: ignore[union-attr]
                ]
            elif scope == ["virtual-mta-pool"] and key == "virtual-mta":
                cfg.pools[stack[0][1]].append(value)
            elif scope == ["source"] and key == "default-virtual-mta":
                cfg.sources[stack[0][1]] = value
    return cfg


@dataclass(frozen=True)
class Offered:
    """One VirtualMTA's (or transport's) day: offered at reception, sent, left queued."""

    name: str
    ip: str
    daily_cap: int | None
    offered: int

    @property
    def sent(self) -> int:
        return self.offered if self.daily_cap is None else min(self.offered, self.daily_cap)

    @property
    def queued(self) -> int:
        return self.offered - self.sent


def _cold_limit(v: Vmta, domain: str, day: int) -> int:
    ramp = v.cold_limits.get(domain, v.cold_limits.get("*", [0]))
    return ramp[min(day, len(ramp)) - 1]


def pmta_day(cfg: PmtaConfig, feeder_ip: str, volume: int, mix: Mapping[str, float] = REFERENCE_MIX,
             day: int = 1) -> dict[str, Offered]:
    """What each VirtualMTA is offered in one day when the feeder submits `volume` messages with the
    recipient-domain `mix` (rules 1-4 of the module docstring)."""
    target = cfg.sources[feeder_ip]
    members = cfg.pools.get(target, [target])
    counts = {name: 0 for name in cfg.vmtas}
    for domain, c in split_counts(volume, mix).items():
        for j, name in enumerate(members):  # rule 2: round-robin, each domain spread evenly
            got = c // len(members) + (1 if j < c % len(members) else 0)
            v = cfg.vmtas[name]
            k = len(v.colds)
            diverted = min(got, k * _cold_limit(v, domain, day)) if k else 0  # rule 3
            for i, cold in enumerate(v.colds):
                counts[cold] += diverted // k + (1 if i < diverted % k else 0)
            counts[name] += got - diverted
    return {n: Offered(n, cfg.vmtas[n].source_ip, cfg.vmtas[n].daily_rate, counts[n]) for n in cfg.vmtas}


# --------------------------------------------------------------------------------- Postfix structure


def parse_postfix(main_cf: str, master_cf: str) -> tuple[dict[str, list[str]], dict[str, str]]:
    """restriction class -> randmap entries (repeated per weight), transport -> bind address."""
    slots: dict[str, list[str]] = {}
    for line in main_cf.split("\n"):
        m = re.match(r"^(\S+) = .*randmap:\{([^}]*)\}", line)
        if m:
            slots[m.group(1)] = [s.strip() for s in m.group(2).split(",")]
    bind: dict[str, str] = {}
    current = ""
    for line in master_cf.split("\n"):
        if m := re.match(r"^(\S+) unix ", line):
            current = m.group(1)
        elif m := re.match(r"^\s+-o smtp_bind_address6?=(\S+)$", line):
            bind[current] = m.group(1)
    return slots, bind


def postfix_day(entries: list[str], bind: Mapping[str, str], volume: int) -> dict[str, Offered]:
    """Expected offered volume per transport: randmap's uniform choice over repeated entries."""
    out: dict[str, Offered] = {}
    for name in dict.fromkeys(entries):
        out[name] = Offered(name, bind.get(name, ""), None, round(volume * entries.count(name) / len(entries)))
    return out
