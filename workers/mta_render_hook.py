"""Run-command hook: render every MTA host's config of the current inventory into <var_dir>/mta/<host>/.

Never contacts a host (deploys go through MtaDeployWorkflow once an operator enables one). The
directory holds exactly what a deploy would put under the host's config_dir (managed files plus the
operator files' managed blocks).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from temporalio.client import Client

from models.settings import Settings


def render_all(settings: Settings) -> list[str]:
    from activities.mta.base import MANAGED_DIR, backend_for
    from activities.mta.render_dir import write_render
    from activities.snapshot import load_snapshot

    snap = load_snapshot(settings.resolved_database_url())
    lines = []
    for host in snap.hosts:
        scoped = snap.for_host(host.name)
        impl = backend_for(host.backend)
        rendered = impl.render(scoped, config_dir=host.config_dir)
        out = Path(settings.var_dir) / "mta" / host.name
        existing = {m: (out / m).read_text() if (out / m).is_file() else None for m in impl.merged_files}
        write_render(out, {**rendered.files, **impl.materialize(rendered, existing)}, MANAGED_DIR)
        ips = sum(len(t.ips) for t in scoped.tenants)
        main = "main.conf" if host.backend.value == "powermta" else "main.cf"
        state = (f"host enabled: deploy with `email-engine mta deploy {host.name}`" if host.enabled
                 else "host disabled: not contacted")
        lines.append(f"MTA config of {host.name} ({host.backend.value}, {len(scoped.tenants)} tenants, {ips} IPs): "
                     f"rendered to {out}/ (main file {out}/{MANAGED_DIR}/{main}, digest {rendered.digest[:12]}; "
                     f"{state})")
    return lines


async def render_mta_configs(client: Client, settings: Settings) -> list[str]:
    return await asyncio.to_thread(render_all, settings)
