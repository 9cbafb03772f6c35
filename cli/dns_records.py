"""`email-engine dns records`: what to publish per sending domain (registered on cli/dns.py's app)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from cli.common import JsonOpt, console, fail, print_json


def records(
    tenant: str | None = typer.Option(None, "--tenant", "-t", help="Only this tenant's domains."),
    key_dir: Path | None = typer.Option(None, "--key-dir", help="Read DKIM keys here (same file names) instead "
                                        "of each domain's configured dkim_key_path."),
    zone: bool = typer.Option(False, "--zone", help="Print zone-file lines instead of a table."),
    json_out: bool = JsonOpt,
) -> None:
    """Print the DNS records to publish per sending domain: A of the HELO host name, SPF
    (`v=spf1 ip4:IP -all`), the DKIM public key TXT (split into strings of at most 255 bytes; run
    `email-engine dkim generate` first), DMARC, and the PTR to ask the IP provider for; per tenant, the
    MX (and A) of its bounce and FBL report domains pointing at its MTA host, and the bounce domain's SPF."""
    from activities.dkim_keys import public_key_der
    from cli.dkim import key_file, load_ips
    from models.dns_records import records_for_ip

    out = []
    for ip in load_ips(tenant):
        path = key_file(ip.dkim_key_path, key_dir)
        try:
            der = public_key_der(path)
        except (ValueError, TypeError, OSError) as exc:
            fail(f"{path}: not a readable PEM private key ({exc})")
        out.extend(records_for_ip(ip, der))
    out.extend(report_domain_records(tenant))
    missing = [r for r in out if r.missing]
    if json_out:
        print_json([r.as_dict() for r in out])
    elif zone:
        for r in out:
            typer.echo(r.zone_line() if not r.missing else f"; {r.name} TXT: {r.note}")
    else:
        table = Table(title="DNS records to publish", show_lines=False)
        for col in ("tenant", "name", "type", "value", "note"):
            table.add_column(col, overflow="fold")
        for r in out:
            value = " ".join(f'"{v}"' for v in r.values) if r.type == "TXT" else " ".join(r.values)
            table.add_row(r.tenant, r.name, r.type, value or "[red]missing[/]", r.note)
        console.print(table)
    if missing:
        typer.echo(f"{len(missing)} DKIM key(s) missing: run `email-engine dkim generate`", err=True)


def report_domain_records(tenant: str | None) -> list:  # list[DnsRecord]
    """MX, A and SPF of each tenant's bounce and FBL report domains (see records_for_report_domains)."""
    from activities.snapshot import load_snapshot
    from models.dns_records import records_for_report_domains

    snap = load_snapshot()
    out = []
    for t in snap.tenants:
        if tenant is not None and t.name != tenant:
            continue
        host = next((h for h in snap.hosts if h.name == t.mta_host), None)
        if host is not None:
            out.extend(records_for_report_domains(t, host.address))
    return out
