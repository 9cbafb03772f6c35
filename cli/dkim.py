"""`email-engine dkim ...`: DKIM signing keys of the sending domains."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from cli.common import JsonOpt, console, fail, print_json

app = typer.Typer(help="DKIM signing keys of the sending domains (one key per domain and selector).",
                  no_args_is_help=True)


def key_file(configured: str, key_dir: Path | None) -> Path:
    """The key's path: as configured in the inventory, or the same file name under --key-dir."""
    return key_dir / Path(configured).name if key_dir else Path(configured)


def load_ips(tenant: str | None) -> list:  # list[IpView]
    from activities.snapshot import load_snapshot
    from models import names

    if tenant is not None:
        try:
            names.tenant(tenant)
        except names.NameError_ as exc:
            fail(str(exc))
    snap = load_snapshot()
    if tenant is not None:
        try:
            snap = snap.for_tenant(tenant)
        except LookupError:
            fail(f"no tenant named {tenant!r} in the inventory")
    ips = [ip for t in snap.tenants for ip in t.ips]
    if not ips:
        fail("no sending IPs in the inventory (load one with `email-engine inventory load FILE`)")
    return ips


@app.command()
def generate(
    tenant: str | None = typer.Option(None, "--tenant", "-t", help="Only this tenant's domains."),
    key_dir: Path | None = typer.Option(None, "--key-dir", help="Write keys here (same file names) instead of "
                                        "each domain's configured dkim_key_path."),
    bits: int = typer.Option(2048, "--bits", min=1024, max=4096, help="RSA key size."),
    json_out: bool = JsonOpt,
) -> None:
    """Create the missing DKIM private keys (RSA, file mode 0600). An existing key is never overwritten:
    it is reported as kept. Publish the public keys with `email-engine dns records`."""
    from activities.dkim_keys import ensure_key

    rows = []
    seen: set[Path] = set()
    for ip in load_ips(tenant):
        path = key_file(ip.dkim_key_path, key_dir)
        if path in seen:
            continue
        seen.add(path)
        try:
            created = ensure_key(path, bits)
        except OSError as exc:
            fail(f"{path}: {exc.strerror or exc}")
        rows.append({"tenant": ip.tenant, "domain": ip.domain, "selector": ip.dkim_selector, "path": str(path),
                     "result": "created" if created else "kept"})
    if json_out:
        print_json(rows)
        return
    table = Table(title="DKIM keys")
    for col in ("tenant", "domain", "selector", "path", "result"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["tenant"], r["domain"], r["selector"], r["path"],
                      f"[green]{r['result']}[/]" if r["result"] == "created" else r["result"])
    console.print(table)
    created_n = sum(r["result"] == "created" for r in rows)
    console.print(f"{created_n} created, {len(rows) - created_n} kept")
