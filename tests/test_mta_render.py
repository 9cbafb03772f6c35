"""Pure renderer tests: PowerMTA against the directive list, Postfix structure, determinism, isolation."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from activities.mta.base import (
    BLOCK_BEGIN,
    MANAGED_DIR,
    MtaBackendImpl,
    RenderedConfig,
    backend_for,
    extract_block,
    replace_block,
)
from models.enums import IpStatus, MtaBackend, WarmupPhase
from models.inventory import parse
from models.mta_render import postfix as pf_render
from models.mta_render.from_inventory import snapshot_from_inventory
from models.names import NameError_
from models.snapshot import FleetSnapshot
from tests.conftest import REFERENCE_INVENTORY
from tests.mta_render_support import load_grammar, parse_pmta


@pytest.fixture(scope="module")
def fleet() -> FleetSnapshot:
    return snapshot_from_inventory(parse(REFERENCE_INVENTORY.read_text())).for_host("pmta-1")


def with_statuses(fleet: FleetSnapshot) -> FleetSnapshot:
    """The reference fleet with one IP of each non-sending status in client-1."""
    t = fleet.tenants[0]
    ips = list(t.ips)
    for i, st in zip((0, 1, 2), (IpStatus.QUARANTINE, IpStatus.RESTING, IpStatus.RETIRING), strict=True):
        ips[i] = replace(ips[i], status=st, phase=None, daily_quota=0)
    return replace(fleet, tenants=(replace(t, ips=tuple(ips)), *fleet.tenants[1:]))


@pytest.mark.parametrize("kind", list(MtaBackend))
def test_render_is_byte_identical_and_digest_tracks_content(fleet: FleetSnapshot, kind: MtaBackend) -> None:
    b = backend_for(kind)
    assert isinstance(b, MtaBackendImpl)
    one, two = b.render(fleet), b.render(snapshot_from_inventory(parse(REFERENCE_INVENTORY.read_text()))
                                         .for_host("pmta-1"))
    assert one.files == two.files and one.digest == two.digest
    assert all(p.startswith(MANAGED_DIR + "/") for p in one.files)
    changed = b.render(with_statuses(fleet))
    assert changed.digest != one.digest


def test_powermta_directives_and_scopes_match_the_list(fleet: FleetSnapshot) -> None:
    rendered = backend_for(MtaBackend.POWERMTA).render(with_statuses(fleet))
    lines = parse_pmta(dict(rendered.files))
    used = {ln.name for ln in lines if ln.kind in ("open", "directive")}
    grammar = load_grammar()
    # the list holds exactly what the renderer emits (no stale entries)
    assert used == set(grammar["tags"]) | set(grammar["directives"])
    for entry in list(grammar["tags"].values()) + list(grammar["directives"].values()):
        assert entry["section"], "every entry names its User's Guide section"


def test_parser_rejects_what_the_guide_lacks() -> None:
    with pytest.raises(AssertionError, match="bad value 'a weight 100'"):
        parse_pmta({"x": "<virtual-mta-pool p>\n  virtual-mta a weight 100\n</virtual-mta-pool>\n"})
    with pytest.raises(AssertionError, match="not in the directive list"):
        parse_pmta({"x": "<virtual-mta v>\n  max-rcpt-rate 5/h\n</virtual-mta>\n"})
    with pytest.raises(AssertionError, match="not allowed in"):
        parse_pmta({"x": "dkim-sign yes\n"})
    with pytest.raises(AssertionError, match="bad value"):
        parse_pmta({"x": "<virtual-mta v>\n  smtp-source-host mail.example.com 1.2.3.4\n</virtual-mta>\n"})


def _pmta_structure(files: dict[str, str], colds: dict[str, list[str]] | None = None
                    ) -> tuple[dict[str, list[str]], dict[str, str], dict[str, str]]:
    """pool -> members, vmta -> source IP, source IP -> default-virtual-mta (and warm -> cold VMTAs)."""
    colds = {} if colds is None else colds
    pools: dict[str, list[str]] = {}
    vmta_ip: dict[str, str] = {}
    source_default: dict[str, str] = {}
    current: tuple[str, str] | None = None
    for ln in parse_pmta(files):
        if ln.kind == "open" and ln.name in ("virtual-mta", "virtual-mta-pool", "source"):
            current = (ln.name, ln.value)
        elif ln.kind == "close" and ln.name in ("virtual-mta", "virtual-mta-pool", "source"):
            current = None
        elif ln.kind == "directive" and current:
            if current[0] == "virtual-mta-pool" and ln.name == "virtual-mta":
                pools.setdefault(current[1], []).append(ln.value)
            elif current[0] == "virtual-mta" and ln.name == "smtp-source-host":
                vmta_ip[current[1]] = ln.value.split()[0]
            elif current[0] == "virtual-mta" and ln.name == "cold-virtual-mta":
                colds.setdefault(current[1], []).append(ln.value)
            elif current[0] == "source" and ln.name == "default-virtual-mta":
                source_default[current[1]] = ln.value
    return pools, vmta_ip, source_default


def test_pools_hold_only_sending_ips_and_tenants_are_isolated(fleet: FleetSnapshot) -> None:
    snap = with_statuses(fleet)
    rendered = backend_for(MtaBackend.POWERMTA).render(snap)
    for t in snap.tenants:
        frag = {k: v for k, v in rendered.files.items() if k.endswith(f"/{t.name}.conf")}
        colds: dict[str, list[str]] = {}
        pools, vmta_ip, defaults = _pmta_structure(frag, colds)
        assert list(pools) == [t.pool]
        # the pool is round-robin (3.3.13): active IPs only; each warming IP is the cold VirtualMTA of
        # exactly one active IP of the same tenant (3.3.12.4)
        active = [ip.vmta for ip in t.ips if ip.status == IpStatus.ACTIVE]
        assert pools[t.pool] == active
        assert set(colds) <= set(active) and all(len(c) == 1 for c in colds.values())
        assert sorted(c for cs in colds.values() for c in cs) == sorted(
            ip.vmta for ip in t.ips if ip.status == IpStatus.WARMING)
        # every VMTA of the tenant is defined (non-sending ones too: queued mail must not bounce)
        assert vmta_ip == {ip.vmta: ip.address for ip in t.ips}
        assert defaults == {t.feeder_ip: t.pool}
    text = rendered.files["email-engine/tenants/client-1.conf"]
    assert "NOT in any pool" in text and "5.3.5" in text
    main = rendered.files["email-engine/main.conf"]
    assert main.count("include /etc/pmta/email-engine/tenants/") == len(snap.tenants)


def test_every_rate_limit_says_which_quota_it_implements(fleet: FleetSnapshot) -> None:
    rendered = backend_for(MtaBackend.POWERMTA).render(fleet)
    limits = 0
    for text in rendered.files.values():
        lines = text.split("\n")
        for i, line in enumerate(lines):
            if m := re.match(r"^\s+max-smtp-msg-rate (\d+)/d$", line):
                limits += 1
                comment = "\n".join(lines[max(0, i - 3):i])
                assert f"may send {m.group(1)} messages/day" in comment, comment
    quotas = [ip.daily_quota for t in fleet.tenants for ip in t.ips if ip.daily_quota > 0]
    assert limits == len(quotas) == 94  # 2 x (40 active + 7 warming)
    assert "max-smtp-msg-rate 50/d" in rendered.files["email-engine/tenants/client-1.conf"]  # week_1


def test_tenant_without_sending_ip_gets_no_pool_and_no_relaying(fleet: FleetSnapshot) -> None:
    t = fleet.tenants[1]
    idle = replace(t, ips=tuple(replace(ip, status=IpStatus.STANDBY, phase=None, daily_quota=0) for ip in t.ips))
    snap = replace(fleet, tenants=(fleet.tenants[0], idle))
    r = backend_for(MtaBackend.POWERMTA).render(snap)
    pools, _, defaults = _pmta_structure({"f": r.files[f"email-engine/tenants/{t.name}.conf"]})
    assert pools == {} and defaults == {}
    assert "always-allow-relaying no" in r.files[f"email-engine/tenants/{t.name}.conf"]
    assert r.notes == (f"tenant {t.name} has no active or warming IP",)
    p = backend_for(MtaBackend.POSTFIX).render(snap)
    assert f"450 4.7.1 tenant {t.name} has no sending IP" in p.files["email-engine/sender_tenants"]


def test_postfix_transports_weights_and_isolation(fleet: FleetSnapshot) -> None:
    snap = with_statuses(fleet)
    r = backend_for(MtaBackend.POSTFIX).render(snap, config_dir="/etc/postfix")
    master = r.files["email-engine/master.cf"]
    main = r.files["email-engine/main.cf"]
    for t in snap.tenants:
        cls = pf_render.restriction_class(t.name)
        line = next(ln for ln in main.split("\n") if ln.startswith(f"{cls} = "))
        slots = re.search(r"randmap:\{([^}]*)\}", line).group(1).split(",")  # type: ignore[union-attr]
        sending = {pf_render.transport_name(ip): ip for ip in t.ips if ip.sending}
        assert set(slots) == set(sending)  # only this tenant's sending IPs
        assert line.endswith(f", check_client_access inline:{{{t.feeder_ip}=OK}}, reject")  # own feeder only
        counts = {name: slots.count(name) for name in sending}
        active = next(ip for ip in t.ips if ip.status == IpStatus.ACTIVE)
        week1 = next(ip for ip in t.ips if ip.phase == WarmupPhase.WEEK_1)
        week5 = next(ip for ip in t.ips if ip.phase == WarmupPhase.WEEK_5)
        a, w5 = counts[pf_render.transport_name(active)], counts[pf_render.transport_name(week5)]
        assert a / w5 == pytest.approx(10_000 / 1_000, rel=0.1)  # scaled to MAX_SLOTS, rounded
        assert counts[pf_render.transport_name(week1)] >= 1
        for ip in t.ips:
            assert f"{ip.domain} {cls}" in r.files["email-engine/sender_tenants"]
            entry = f"{pf_render.transport_name(ip)} unix - - n - - smtp\n  -o smtp_bind_address={ip.address}\n"
            assert entry in master
            assert f"-o syslog_name=postfix-{ip.vmta}\n" in master
            assert f"-o smtp_helo_name={ip.hostname}\n" in master
    assert "smtpd_sender_restrictions = check_sender_access texthash:/etc/postfix/email-engine/sender_tenants, " \
           "reject" in main
    assert "sos-mail-1.com default._domainkey.sos-mail-1.com" in r.files["email-engine/opendkim/SigningTable"]
    # the key path is where the deploy ships the key: inside the release, beside the tables
    assert "default._domainkey.sos-mail-1.com sos-mail-1.com:default:" \
           "/etc/postfix/email-engine/dkim/sos-mail-1.com.default.key" in r.files["email-engine/opendkim/KeyTable"]


def test_postfix_weights_are_bounded_and_gcd_reduced(fleet: FleetSnapshot) -> None:
    ips = [ip for t in fleet.tenants for ip in t.ips if ip.sending]
    w = pf_render.weights(ips)
    assert sum(w.values()) <= pf_render.MAX_SLOTS + len(ips)
    small = pf_render.weights([replace(ips[0], daily_quota=100), replace(ips[1], daily_quota=300, vmta="x")])
    assert small == {pf_render.transport_name(ips[0]): 1, "ee-x": 3}
    assert pf_render.weights([replace(ips[0], daily_quota=0)]) == {}


def test_ipv6_uses_bind_address6(fleet: FleetSnapshot) -> None:
    t = fleet.tenants[0]
    v6 = replace(t.ips[0], address="2001:db8::10", version=6)
    snap = replace(fleet, tenants=(replace(t, ips=(v6, *t.ips[1:])),))
    r = backend_for(MtaBackend.POSTFIX).render(snap)
    assert "-o smtp_bind_address6=2001:db8::10\n" in r.files["email-engine/master.cf"]
    p = backend_for(MtaBackend.POWERMTA).render(snap)
    parse_pmta(dict(p.files))
    assert "smtp-source-host 2001:db8::10 " in p.files["email-engine/tenants/client-1.conf"]


@pytest.mark.parametrize("kind", list(MtaBackend))
def test_materialize_is_idempotent_and_keeps_operator_text(fleet: FleetSnapshot, kind: MtaBackend) -> None:
    b = backend_for(kind)
    r = b.render(fleet)
    existing = {m: f"# operator settings of {m}\nsome = value\n" for m in b.merged_files}
    once = b.materialize(r, existing)
    twice = b.materialize(r, once)
    assert once == twice
    for m, text in once.items():
        assert text.startswith(existing[m]) and text.count(BLOCK_BEGIN) == 1
    assert b.expected_read_back(r) == {**r.files, **{f"{m}#block": extract_block(t) for m, t in once.items()}}
    assert replace_block("a\nb", "x") == f"a\nb\n{BLOCK_BEGIN}\nx\n# END email-engine managed block\n"


def test_rendered_config_refuses_paths_outside_the_managed_dir() -> None:
    for bad in ("../etc/passwd", "/etc/pmta/config", "config", "email-engine/../config", "email-engine/./a"):
        with pytest.raises(ValueError):
            RenderedConfig(backend=MtaBackend.POWERMTA, config_dir="/etc/pmta", files={bad: ""})


def test_unknown_backend_is_a_lookup_error() -> None:
    with pytest.raises(LookupError, match="known: postfix, powermta"):
        backend_for("kumomta")


def test_renderer_rechecks_values_it_writes(fleet: FleetSnapshot) -> None:
    t = fleet.tenants[0]
    bad = replace(t, ips=(replace(t.ips[0], hostname="mail.example.com\n<source 0/0>"), *t.ips[1:]))
    for kind in MtaBackend:
        with pytest.raises(NameError_):
            backend_for(kind).render(replace(fleet, tenants=(bad,)))


def _tenant_with(fleet: FleetSnapshot, statuses: list[tuple[IpStatus, WarmupPhase | None, int]]) -> FleetSnapshot:
    t = fleet.tenants[0]
    ips = tuple(replace(ip, status=st, phase=ph, daily_quota=q)
                for ip, (st, ph, q) in zip(t.ips, statuses, strict=False))
    return replace(fleet, tenants=(replace(t, ips=ips),))


def test_cold_vmtas_when_warming_ips_outnumber_active_ones(fleet: FleetSnapshot) -> None:
    """Two active IPs, five warming: a warm VirtualMTA carries several cold ones only if their quotas are
    equal (its per-domain limit applies to each, 3.3.12.4); one that fits nowhere gets no mail."""
    from models.mta_share import parse_pmta as share_parse
    from models.mta_share import pmta_day

    A, W = IpStatus.ACTIVE, IpStatus.WARMING
    snap = _tenant_with(fleet, [(A, None, 10_000), (A, None, 10_000), (W, WarmupPhase.WEEK_1, 50),
                                (W, WarmupPhase.WEEK_1, 50), (W, WarmupPhase.WEEK_2, 100),
                                (W, WarmupPhase.WEEK_1, 50), (W, WarmupPhase.WEEK_3, 250)])
    t = snap.tenants[0]
    r = backend_for(MtaBackend.POWERMTA).render(snap)
    colds: dict[str, list[str]] = {}
    pools, _, _ = _pmta_structure({"f": r.files["email-engine/tenants/client-1.conf"]}, colds)
    assert pools[t.pool] == [t.ips[0].vmta, t.ips[1].vmta]
    assert sorted(map(len, colds.values())) == [1, 2]
    placed = sorted(c for cs in colds.values() for c in cs)
    assert placed == sorted([t.ips[2].vmta, t.ips[3].vmta, t.ips[5].vmta])
    assert r.notes == tuple(f"tenant client-1: warming IP {t.ips[i].address} gets no mail (no warm VirtualMTA with "
                            "a cold VirtualMTA of the same quota is free)" for i in (4, 6))
    day = pmta_day(share_parse(dict(r.files)), t.feeder_ip, 100_000)
    for i in (2, 3, 5):
        assert day[t.ips[i].vmta].offered == 50
    assert day[t.ips[4].vmta].offered == day[t.ips[6].vmta].offered == 0


def test_tenant_with_only_warming_ips_falls_back_to_rate_limits(fleet: FleetSnapshot) -> None:
    W = IpStatus.WARMING
    snap = _tenant_with(fleet, [(W, WarmupPhase.WEEK_1, 50), (W, WarmupPhase.WEEK_2, 100)])
    t = snap.tenants[0]
    r = backend_for(MtaBackend.POWERMTA).render(replace(snap, tenants=(replace(t, ips=t.ips[:2]),)))
    pools, _, _ = _pmta_structure(dict(r.files))
    assert pools[t.pool] == [t.ips[0].vmta, t.ips[1].vmta]
    assert "cold-virtual-mta" not in "".join(r.files.values()).replace("# (cold-virtual-mta", "")
    assert any("no active IP" in n and "10.7" in n for n in r.notes)


def test_report_domains_are_optional_and_rechecked(fleet: FleetSnapshot) -> None:
    t = fleet.tenants[0]
    bare = replace(fleet, tenants=(replace(t, bounce_domain=None, fbl_domain=None),))
    r = backend_for(MtaBackend.POWERMTA).render(bare)
    main = r.files["email-engine/main.conf"]
    tags = {ln.name for ln in parse_pmta(dict(r.files)) if ln.kind == "open"}
    assert "bounce-processor" not in tags and "feedback-loop-processor" not in tags
    assert "acct-file" in tags  # d and b records are still written
    assert "relay-domain" not in main
    assert r.notes == ("tenant client-1 has no bounce_domain: remote bounces (rb) are not counted",
                       "tenant client-1 has no fbl_domain: feedback-loop complaints (f) are not counted")
    bad = replace(fleet, tenants=(replace(t, fbl_domain="fbl.example.com\n<source 0/0>"),))
    with pytest.raises(NameError_):
        backend_for(MtaBackend.POWERMTA).render(bad)
