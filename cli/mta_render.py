"""`email-engine mta render`: write the rendered MTA config to a directory (registered on cli/mta.py's app)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from cli.common import JsonOpt, console, fail, print_json


def render(
    out: Path = typer.Option(..., "--out", "-o", help="Directory to write to (one subdirectory per MTA host "
                             "when several hosts are rendered)."),
    backend: str | None = typer.Option(None, "--backend", "-b", help="powermta or postfix (default: each "
                                       "host's backend from the inventory)."),
    tenant: str | None = typer.Option(None, "--tenant", "-t", help="Only this tenant (and its MTA host)."),
    host: str | None = typer.Option(None, "--host", help="Only this MTA host."),
    config_dir: str | None = typer.Option(None, "--config-dir", help="MTA config directory the files will live "
                                          "in on the host (rendered into include lines and map paths)."),
    json_out: bool = JsonOpt,
) -> None:
    """Render the MTA config of the current inventory (pure: same inventory, byte-identical files) and write
    it to --out, with the operator files' managed blocks (PowerMTA `config`, Postfix `main.cf`/`master.cf`).
    Nothing is deployed; see `email-engine mta deploy`."""
    from activities.mta.base import MANAGED_DIR, backend_for
    from activities.mta.deploy import add_firewall
    from activities.mta.render_dir import write_render
    from activities.snapshot import load_snapshot
    from models import names
    from models.enums import MtaBackend
    from models.firewall import FirewallError
    from models.settings import get_settings

    try:
        kind = MtaBackend(backend) if backend else None
    except ValueError:
        fail(f"unknown backend {backend!r} (powermta or postfix)")
    try:
        if tenant is not None:
            names.tenant(tenant)
        if host is not None:
            names.token(host, "MTA host name")
        if config_dir is not None:
            names.key_path(config_dir)
    except names.NameError_ as exc:
        fail(str(exc))
    snap = load_snapshot()
    try:
        if tenant:
            snap = snap.for_tenant(tenant)
        if host:
            snap = snap.for_host(host)
    except LookupError as exc:
        fail(str(exc.args[0]) if exc.args else "not found")
    hosts = [h for h in snap.hosts if any(t.mta_host == h.name for t in snap.tenants)]
    if not hosts:
        fail("nothing to render: no tenant in the inventory matches (load one with `email-engine inventory load`)")
    results: list[dict[str, Any]] = []
    for h in hosts:
        scoped = snap.for_host(h.name)
        impl = backend_for(kind or h.backend)
        try:
            rendered = impl.render(scoped, config_dir=config_dir or (h.config_dir if impl.kind == h.backend
                                                                    else impl.default_config_dir))
            # the host's firewall ruleset is a file of the release when the inventory's [firewall] deploys
            # it (not in a one-tenant preview: the ruleset covers every tenant of the host)
            local = h.name in {x.strip() for x in get_settings().mta_local_hosts.split(",")}
            if tenant is None:
                rendered, _ = add_firewall(rendered, h, scoped, None, local)
        except (names.NameError_, FirewallError) as exc:
            fail(f"{h.name}: {exc}")
        dest = out if len(hosts) == 1 else out / h.name
        existing = {m: (dest / m).read_text() if (dest / m).is_file() else None for m in impl.merged_files}
        files = {**rendered.files, **impl.materialize(rendered, existing)}
        write_render(dest, files, MANAGED_DIR)
        results.append({"host": h.name, "backend": impl.kind.value, "config_dir": rendered.config_dir,
                        "out": str(dest), "digest": rendered.digest, "files": sorted(files),
                        "notes": list(rendered.notes)})
    if json_out:
        print_json(results)
        return
    for r in results:
        console.print(f"[bold]{r['host']}[/] ({r['backend']}, for {r['config_dir']}): {len(r['files'])} files "
                      f"written to {r['out']}/ (digest {r['digest'][:12]})", highlight=False)
        for note in r["notes"]:
            console.print(f"  [yellow]note:[/] {note}", highlight=False)
