"""Property tests: names that would break a config line never reach a file.

1. Any inventory value containing a character that could break out of a PowerMTA/Postfix/OpenDKIM line
   (whitespace, line breaks, '#', '<', '>', quotes, ',', ':', '=', '{', '}', ';') is refused by the
   inventory loader (models.names validators) before anything is rendered.
2. For any valid names, every rendered line still parses as exactly one directive/entry of its file.
"""

from __future__ import annotations

import json
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from activities.mta.base import backend_for
from models.enums import MtaBackend
from models.inventory import InventoryError, parse
from models.mta_render.from_inventory import snapshot_from_inventory
from tests.mta_render_support import parse_pmta

BREAKERS = [" ", "\t", "\n", "\r", "#", "<", ">", '"', "'", ",", ":", "=", "{", "}", ";", "\x00", "\u2028"]

label = st.from_regex(r"\A[a-z0-9](?:[a-z0-9-]{0,10}[a-z0-9])?\Z")
hostname = st.builds(lambda a, b: f"{a}.{b}.example", label, label)
token = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,20}\Z")
tenant_name = st.from_regex(r"\A[a-z0-9](?:[a-z0-9-]{0,12}[a-z0-9])?\Z")
path = st.builds(lambda parts: "/" + "/".join(parts), st.lists(st.from_regex(r"\A[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,8}\Z"),
                                                                min_size=1, max_size=4))


def inventory_text(v: dict[str, str]) -> str:
    q = json.dumps
    return f"""
[[mta_hosts]]
name = {q(v["host"])}
address = "127.0.10.1"
backend = "powermta"
config_dir = {q(v["config_dir"])}

[[tenants]]
name = {q(v["tenant"])}
mta_host = {q(v["host"])}
pool = {q(v["pool"])}

[tenants.mailwizz]
base_url = "http://127.0.0.1:1/api"
source_ip = {q(v["feeder"])}

[[tenants.ips]]
address = {q(v["address"])}
hostname = {q(v["hostname"])}
domain = {q(v["domain"])}
vmta = {q(v["vmta"])}
dkim_selector = {q(v["selector"])}
dkim_key_path = {q(v["key_path"])}
status = "active"

[[tenants.ips]]
address = "127.0.10.3"
hostname = "mta3.other.example"
domain = "other3.example"
status = "warming"
phase = "week_2"
"""


VALID = {"host": "pf-1", "config_dir": "/etc/pmta", "tenant": "t1", "pool": "t1-pool", "feeder": "127.0.10.200",
         "address": "127.0.10.2", "hostname": "mta2.t1.example", "domain": "t1-2.example", "vmta": "v2",
         "selector": "s1", "key_path": "/etc/pmta/dkim/t1.key"}


def test_the_valid_template_loads() -> None:
    parse(inventory_text(VALID))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(sorted(VALID)), breaker=st.sampled_from(BREAKERS),
       where=st.sampled_from(["prefix", "middle", "suffix"]))
def test_breaking_characters_are_refused_before_rendering(field: str, breaker: str, where: str) -> None:
    good = VALID[field]
    bad = {"prefix": breaker + good, "middle": good[:2] + breaker + good[2:], "suffix": good + breaker}[where]
    values = {**VALID, field: bad}
    try:
        parse(inventory_text(values))
    except InventoryError as exc:
        assert exc.errors
    else:
        raise AssertionError(f"{field}={bad!r} was accepted")


def _check_postfix_lines(files: dict[str, str]) -> None:
    patterns = {
        "email-engine/master.cf": [r"# [^\n]*", r"ee-[A-Za-z0-9._-]+ unix - - n - - smtp",
                                   r"  -o [a-z_0-9]+=[^\s]+"],
        "email-engine/main.cf": [r"# [^\n]*", r"[a-z_0-9]+ = [^\n]*"],
        "email-engine/sender_tenants": [r"# [^\n]*", r"[a-z0-9.-]+ (ee_tenant_[a-z0-9_]+|450 4\.7\.1 [^\n]*)"],
        "email-engine/filters": [r"# [^\n]*", r"(ee-[A-Za-z0-9._-]+) FILTER \1:"],
        "email-engine/opendkim/KeyTable": [
            r"[a-z0-9.-]+\._domainkey\.[a-z0-9.-]+ [a-z0-9.-]+:[a-z0-9.-]+:/[A-Za-z0-9._+/-]+"],
        "email-engine/opendkim/SigningTable": [r"[a-z0-9.-]+ [a-z0-9.-]+\._domainkey\.[a-z0-9.-]+"],
    }
    for name, text in files.items():
        assert text.endswith("\n")
        for line in text[:-1].split("\n"):
            assert any(re.fullmatch(p, line) for p in patterns[name]), f"{name}: {line!r}"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tenant=tenant_name, host=token, vmta=token, selector=label, h1=hostname, d1=hostname, key=path)
def test_valid_names_render_one_entry_per_line(tenant: str, host: str, vmta: str, selector: str, h1: str,
                                               d1: str, key: str) -> None:
    values = {**VALID, "tenant": tenant, "pool": f"{tenant}-pool", "host": host, "vmta": vmta,
              "selector": selector, "hostname": h1, "domain": d1, "key_path": key}
    try:
        inv = parse(inventory_text(values))
    except InventoryError:
        return  # e.g. a VMTA name equal to the pool name, or a duplicate domain: refused, never rendered
    snap = snapshot_from_inventory(inv)
    pm = backend_for(MtaBackend.POWERMTA).render(snap)
    lines = parse_pmta(dict(pm.files))
    assert sum(1 for ln in lines if ln.kind == "open" and ln.name == "virtual-mta") == 2
    pf = backend_for(MtaBackend.POSTFIX).render(snap, config_dir="/etc/postfix")
    _check_postfix_lines(dict(pf.files))
    assert pf.files["email-engine/master.cf"].count(" unix - - n - - smtp\n") == 2
