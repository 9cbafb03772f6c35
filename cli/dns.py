"""`email-engine dns ...`: sending-domain DNS authentication (SPF, DKIM, DMARC, PTR/FCrDNS)."""

from __future__ import annotations

from typing import Any

import typer

from cli.common import JsonOpt, console, err_console, fail, print_json

app = typer.Typer(help="DNS records and authentication checks of the sending domains.", no_args_is_help=True)


def _cell(item: dict[str, Any]) -> str:
    from models.dns_auth import ICONS

    return f"{ICONS.get(item.get('status', ''), '?')} {item.get('reason', '')}"


@app.command()
def check(
    tenant: str | None = typer.Option(None, "--tenant", "-t", help="Only this tenant's domains."),
    domain: str | None = typer.Option(None, "--domain", "-d", help="Only this sending domain."),
    json_out: bool = JsonOpt,
) -> None:
    """Check SPF, DKIM, DMARC and PTR/FCrDNS of the sending domains now and record the results.

    Queries go to EMAIL_ENGINE_DNS_RESOLVERS (default: the system resolver); the DNS gate of
    warmup starts reads the latest recorded check. Statuses: ✅ valid, ⚠️ warn (passes), ❌ invalid, ❔ unknown
    (the resolver did not answer: never counted as valid or invalid).

    Exit status (also with --json): 0 every domain passes; 1 at least one domain fails; 2 could not
    run (bad input, no database); 3 incomplete: none fails, but some could not be checked (unknown)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from activities.dns_checks import Checker, DomainCheck, load_targets, persist
    from models.exit_status import ERROR, dns_status
    from models.settings import get_settings

    if tenant and domain:
        fail("give --tenant or --domain, not both", code=ERROR)
    settings = get_settings()
    try:
        checker = Checker.from_settings(settings)
        targets = load_targets(tenant=tenant, domain=domain)
    except ValueError as exc:
        fail(str(exc), code=ERROR)
    if not targets:
        fail("no sending domains in the inventory (load one with `email-engine inventory load FILE`)", code=ERROR)
    results: list[dict[str, Any]] = []
    with Progress(TextColumn("checking DNS"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.description}"), console=err_console, transient=True,
                  disable=json_out or not err_console.is_terminal) as progress:
        task = progress.add_task("", total=len(targets))

        def done(result: DomainCheck) -> None:
            results.append(persist(result))
            progress.update(task, advance=1, description=result.target.domain)

        checker.check_many(targets, settings.dns_check_concurrency, done)
    results.sort(key=lambda r: (r["tenant"], r["domain"]))
    counts: dict[str, int] = {}
    for r in results:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    if json_out:
        print_json(results)
        raise typer.Exit(dns_status(counts))
    table = Table(title="DNS authentication", show_lines=True)
    for col in ("tenant", "domain", "IP", "SPF", "DKIM", "DMARC", "PTR"):
        table.add_column(col, overflow="fold")
    for r in results:
        cells = (_cell(r["items"][n]) for n in ("spf", "dkim", "dmarc", "ptr"))
        table.add_row(r["tenant"], r["domain"], r["ip"], *cells)
    console.print(table)
    console.print(f"{len(results)} domains: {counts.get('pass', 0)} pass, {counts.get('fail', 0)} fail, "
                  f"{counts.get('unknown', 0)} unknown", highlight=False)
    raise typer.Exit(dns_status(counts))


# `dns records` (MTA/DKIM feature): what to publish per domain.
from cli.dns_records import records  # noqa: E402

app.command(name="records")(records)
