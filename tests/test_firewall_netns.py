"""A rendered MTA host ruleset loaded for real, in a throwaway user + network namespace (`unshare -rn`;
never this machine's own namespace): an SSH connection opened before the load survives it, new
connections are accepted or dropped as the ruleset says, over a real veth interface, IPv4 and IPv6, and
the kernel's outcome equals the nftables model's verdict for every probe (models/nft_model.py).
The probe program is tests/netns_firewall.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from models import firewall as fw
from models import nft_model as nft
from models.inventory import parse
from tests.firewall_support import accepts, fleet_of
from tests.support import require_tool, unavailable

HOST4, SENDING4, HOST6, SENDING6 = "10.99.0.1", "10.99.0.10", "fd99::1", "fd99::10"
ENGINE4, STRANGER4, FEEDER4, ADMIN6, STRANGER6 = "10.99.0.2", "10.99.0.3", "10.99.0.4", "fd99::2", "fd99::3"

INVENTORY = f"""
[[mta_hosts]]
name = "netns-mta"
address = "{HOST4}"

[[tenants]]
name = "netns"
mta_host = "netns-mta"

[tenants.mailwizz]
base_url = "https://mailwizz.netns.example/api"
source_ip = "{FEEDER4}"

[[tenants.ips]]
address = "{SENDING4}"
hostname = "mail.netns-1.example"
domain = "netns-1.example"
status = "active"

[[tenants.ips]]
address = "{SENDING6}"
hostname = "mail.netns-2.example"
domain = "netns-2.example"
status = "active"

[firewall]
deploy = true
admin_addresses = ["{ADMIN6}", "192.0.2.0/24"]
engine_addresses = ["{ENGINE4}"]
"""

#: The operator's own table, loaded before anything else. Without a `ct` expression conntrack is not
#: registered in the namespace, so the connections opened before the engine's table are unknown to it.
OPERATOR = """table inet operator_own {
\tchain input {
\t\ttype filter hook input priority 10; policy accept;
\t\ttcp dport 2222 counter
\t}
}
"""
#: The same with a `ct state` rule: conntrack tracks every connection from the start.
OPERATOR_CT = OPERATOR.replace("tcp dport 2222 counter", "ct state established counter")

#: (side, source, destination, port): "in" from the network to the host, "out" from the host.
PROBES = [
    ("in", ENGINE4, HOST4, 22),      # the engine's SSH
    ("in", STRANGER4, HOST4, 22),    # anyone else's SSH
    ("in", ADMIN6, HOST6, 22),       # admin SSH over IPv6
    ("in", STRANGER6, HOST6, 22),
    ("in", FEEDER4, SENDING4, 25),   # the feeder's SMTP
    ("in", STRANGER4, SENDING4, 25),
    ("in", STRANGER4, HOST4, 25),    # no bounce/FBL domain: the host is no MX
    ("out", SENDING4, ENGINE4, 25),  # mail out from a sending IP
    ("out", HOST4, ENGINE4, 25),     # ... never from the host's own address
    ("out", SENDING6, ADMIN6, 25),
    ("out", SENDING4, ENGINE4, 443),
]


def _model(text: str, side: str, src: str, dst: str, port: int) -> bool:
    return accepts(text, nft.Packet("input" if side == "in" else "output", src, dst, "tcp", dport=port))


def _run_probe(tmp_path: Path, text: str, operator: str, before: list[list[object]],
               probes: list[tuple[str, str, str, int]] = PROBES) -> dict:  # type: ignore[type-arg]
    for tool in ("unshare", "ip"):
        require_tool(tool)
    require_tool("nft", "/usr/sbin/nft")
    (tmp_path / "ruleset.nft").write_text(text)
    plan = {"caller_netns": os.readlink("/proc/self/ns/net"), "ruleset": str(tmp_path / "ruleset.nft"),
            "operator": operator, "host_addresses": [HOST4, SENDING4, HOST6, SENDING6],
            "peer_addresses": [ENGINE4, STRANGER4, FEEDER4, ADMIN6, STRANGER6],
            "listen": {"host": [22, 25], "peer": [25, 443]}, "before": before, "probes": probes}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    probe = Path(__file__).with_name("netns_firewall.py")
    proc = subprocess.run(["unshare", "--user", "--map-root-user", "--net", "--", sys.executable, str(probe),
                           str(tmp_path / "plan.json")], capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0 and "unshare:" in proc.stderr:
        unavailable(f"user and network namespaces are not available here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_ruleset_applied_in_a_throwaway_namespace(tmp_path: Path) -> None:
    text = fw.render(fleet_of(parse(INVENTORY)), "netns-mta")
    # sessions opened before the load, in a namespace where conntrack was not tracking them yet
    before = [[ENGINE4, HOST4, 22], [ADMIN6, HOST6, 22], [STRANGER4, HOST4, 22]]
    result = _run_probe(tmp_path, text, OPERATOR, before)

    # the engine's and the admin's sessions survive (picked up mid-stream: `new` packets, accepted by
    # address both ways); a stranger's is cut, exactly what the deployer's session check predicts
    assert result["before"] == ["alive", "alive", "timeout"]
    for (src, dst, port), outcome in zip(before, result["before"], strict=True):
        session = fw.SshSession(str(src), 40000, str(dst), int(port))  # type: ignore[call-overload]
        assert (fw.session_problems(text, session) == []) == (outcome == "alive"), (src, outcome)
    # the model's verdict is the kernel's, for every probe
    kernel = ["accepted" if r == "open" else "dropped" for r in result["probes"]]
    model = ["accepted" if _model(text, *p) else "dropped" for p in PROBES]
    assert kernel == model, list(zip(PROBES, result["probes"], strict=True))
    assert model == ["accepted", "dropped", "accepted", "dropped", "accepted", "dropped", "dropped",
                     "accepted", "dropped", "accepted", "dropped"]
    # a drop is a drop (no answer, or EPERM for our own packets on output), never a refusal (RST)
    assert all(r in ("open", "timeout") or "not permitted" in r for r in result["probes"]), result["probes"]
    # loading the file again replaces the table (same listing), the operator's table is untouched
    assert result["same_after_reload"]
    assert "table inet operator_own" in result["tables"] and "table inet email_engine" in result["tables"]


def test_a_tracked_connection_survives_as_established(tmp_path: Path) -> None:
    """With conntrack tracking from the start (the operator's table uses `ct state`), even a connection
    from an address the ruleset does not admit survives the load: its packets are `established`."""
    text = fw.render(fleet_of(parse(INVENTORY)), "netns-mta")
    result = _run_probe(tmp_path, text, OPERATOR_CT, [[STRANGER4, HOST4, 22], [STRANGER6, HOST6, 22]],
                        probes=[PROBES[1]])
    assert result["before"] == ["alive", "alive"]
    assert accepts(text, nft.Packet("input", STRANGER4, HOST4, "tcp", dport=22, ct_state="established"))
    assert not accepts(text, nft.Packet("input", STRANGER4, HOST4, "tcp", dport=22, ct_state="new"))
    assert result["probes"] == ["timeout"]  # a new connection from it is dropped
