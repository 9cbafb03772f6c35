"""Where the MTA reads each DKIM private key: inside the deployed release, next to the config.

The inventory's `dkim_key_path` is the engine's own copy (written by `dkim generate`, read by the DNS
check). A deploy ships each key into the release it switches to, as
`<config_dir>/email-engine/dkim/<domain>.<selector>.key`, so the key and the config lines naming it
(`domain-key`, OpenDKIM's KeyTable) change, and roll back, together. Pure: no I/O.
"""

from __future__ import annotations

import posixpath
from dataclasses import replace

from models import names
from models.snapshot import FleetSnapshot, IpView

MANAGED = "email-engine"
KEY_SUBDIR = "dkim"


def key_file_name(domain: str, selector: str) -> str:
    """`<domain>.<selector>.key`: one file per domain and selector (validated: safe as a file name)."""
    return f"{names.domain(domain)}.{names.selector(selector)}.key"


def deployed_key_path(config_dir: str, domain: str, selector: str) -> str:
    return posixpath.join(names.key_path(config_dir), MANAGED, KEY_SUBDIR, key_file_name(domain, selector))


def with_deployed_key_paths(snapshot: FleetSnapshot, config_dir: str) -> FleetSnapshot:
    """The snapshot a renderer sees: every IP's key path is where the deploy puts its key.

    Same paths as deployed_key_path, with config_dir checked once per snapshot rather than per IP and
    IpView copied through its constructor (dataclasses.replace costs 2.5x that at 10,000 IPs)."""
    prefix = posixpath.join(names.key_path(config_dir), MANAGED, KEY_SUBDIR) + "/"

    def ip_view(ip: IpView) -> IpView:
        return IpView(**{**vars(ip), "dkim_key_path": prefix + key_file_name(ip.domain, ip.dkim_selector)})

    return replace(snapshot, tenants=tuple(replace(t, ips=tuple(ip_view(ip) for ip in t.ips))
                                           for t in snapshot.tenants))


def keys_to_ship(snapshot: FleetSnapshot) -> dict[str, str]:
    """{key file name: the engine's copy (inventory dkim_key_path)} for every IP the render names.
    Two IPs with the same domain and selector must use the same key file (else: NameError_)."""
    out: dict[str, str] = {}
    for t in snapshot.tenants:
        for ip in t.ips:
            name = key_file_name(ip.domain, ip.dkim_selector)
            source = names.key_path(ip.dkim_key_path)
            if out.setdefault(name, source) != source:
                raise names.NameError_(f"domain {ip.domain} selector {ip.dkim_selector} has two key files in the "
                                       f"inventory ({out[name]} and {source}): one key per domain and selector")
    return out
