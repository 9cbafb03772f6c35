"""Host firewalls (issue 15): read the policy from the inventory database, and put an MTA host's ruleset
into its release. Rendering itself is pure (models/firewall.py); applying it on a host is part of the MTA
deploy (activities/mta/deploy.py: `nft -c -f` before the switch, `nft -f` after the reload, rolled back
with the rest)."""

from __future__ import annotations

import dataclasses

from pydantic import ValidationError
from sqlmodel import col, select

from activities.db import session_scope
from activities.mta.base import MANAGED_DIR, RenderedConfig
from models import firewall as fw
from models.snapshot import FleetSnapshot, MtaHostView

#: The ruleset's path in a rendered MTA config (relative to the MTA's config dir).
RELEASE_PATH = f"{MANAGED_DIR}/{fw.RULESET_FILE}"


def load_firewall(url: str | None = None, snapshot: FleetSnapshot | None = None) -> fw.FirewallFleet | None:
    """The policy, the fleet and the webhook receivers; None when the inventory has no [firewall] section.
    The stored policy is validated again (a row written around the loader is refused, not rendered)."""
    from activities.snapshot import load_snapshot
    from models.firewall_tables import FirewallPolicyRow
    from models.webhook_tables import WebhookReceiver

    with session_scope(url) as s:
        row = s.exec(select(FirewallPolicyRow)).first()
        if row is None:
            return None
        try:
            policy = fw.FirewallPolicy.model_validate_json(row.document)
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}"
                                 for e in err.errors())
            raise fw.FirewallError(f"the stored firewall policy is invalid ({problems}); load the inventory "
                                   "file again") from None
        receivers = tuple(fw.ReceiverView(r.name, r.url, r.enabled)
                          for r in s.exec(select(WebhookReceiver).order_by(col(WebhookReceiver.name))))
    return fw.FirewallFleet(policy=policy, snapshot=snapshot or load_snapshot(url), receivers=receivers)


def deploys_firewall(fleet: fw.FirewallFleet | None, host: MtaHostView, local: bool = False) -> bool:
    """Whether deploys to `host` carry its ruleset: the policy opts in, and the host is not this machine
    (EMAIL_ENGINE_MTA_LOCAL_HOSTS: the engine never applies a ruleset to its own network namespace)."""
    return fleet is not None and fleet.policy.deploy and not local


def with_ruleset(rendered: RenderedConfig, fleet: fw.FirewallFleet, host: MtaHostView) -> RenderedConfig:
    """The MTA config plus the host's ruleset (a file of the release: switched, read back, diffed and
    rolled back with the rest). The digest covers it, so a ruleset change is a deploy."""
    text = fw.render_mta(fleet, host.name)
    return dataclasses.replace(rendered, files={**rendered.files, RELEASE_PATH: text}, digest="")


def nft_check(path: str, timeout: float = 60.0) -> tuple[bool, str]:
    """`nft -c -f PATH` on this machine, always inside a throwaway network namespace: nothing is ever
    loaded into this machine's own namespace. The check needs CAP_NET_ADMIN (unprivileged `nft -c` fails
    with "cache initialization failed: Operation not permitted"): as root, `unshare --net`; otherwise a
    user namespace too (`unshare -rn`), where the kernel refuses nft's larger netlink buffer
    (SO_SNDBUFFORCE), so a file of more than about 5,000 set intervals fails there with "Message too
    long" (it loads as root; bench/firewall_render.py). (ok, output); a missing `unshare` or `nft`, or
    namespaces disabled, is (False, why)."""
    import os
    import shutil
    import subprocess

    unshare = shutil.which("unshare")
    nft = shutil.which("nft") or next((p for p in ("/usr/sbin/nft", "/sbin/nft") if os.path.exists(p)), None)
    if unshare is None or nft is None:
        return False, "nft -c needs `unshare` (util-linux) and `nft` (Debian package nftables)"
    try:
        user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
        proc = subprocess.run([unshare, *user, "--net", "--", nft, "-c", "-f", path],
                              capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return False, f"nft -c -f {path} did not finish in {timeout:g} s"
    return proc.returncode == 0, (proc.stderr or proc.stdout).strip()
