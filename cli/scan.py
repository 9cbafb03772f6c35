"""`email-engine scan blocklists`: run a blocklist scan of the fleet now and print what it found."""

from __future__ import annotations

import dataclasses

import typer

from cli.common import JsonOpt, console, err_console, fail, print_json
from models import names

app = typer.Typer(help="Run scans now (the scheduled scans run the same code).", no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Run scans now (the scheduled scans run the same code)."""


@app.command("blocklists")
def blocklists(
    tenant: str | None = typer.Option(None, "--tenant", "-t", help="Only this tenant's IPs and domains."),
    zone: list[str] | None = typer.Option(
        None, "--zone", "-z", help="Only this catalogue zone (repeatable), e.g. spamhaus-zen."),
    json_out: bool = JsonOpt,
) -> None:
    """Scan the warming, active and quarantined IPs and their domains against every blocklist zone.

    Every zone is first self-tested with its RFC 5782 test entries through the configured resolvers
    (EMAIL_ENGINE_DNS_RESOLVERS); a zone failing it is reported broken and its answers are ignored.
    Prints per IP/domain the lists that list it (code, meaning, delisting page), the unknown answers
    (timeouts, SERVFAIL/REFUSED, the lists' error codes) and the broken zones. Changes nothing.

    Exit status (also with --json): 0 nothing listed and every answer known; 1 at least one IP or
    domain listed; 2 could not run (bad input, no database, unreadable catalogue); 3 incomplete:
    nothing listed, but some answers were unknown or some zones failed their self-test.
    """
    import asyncio

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from activities.blocklists import configured_catalog, inventory_targets, scan
    from models.blocklist import CatalogError
    from models.exit_status import ERROR, scan_status
    from models.settings import get_settings

    settings = get_settings()
    if tenant is not None:
        try:
            tenant = names.tenant(tenant)
        except names.NameError_ as exc:
            fail(str(exc), code=ERROR)
    try:
        settings.resolvers()
    except ValueError as exc:
        fail(str(exc), code=ERROR)
    try:
        catalog = configured_catalog(settings)
        key = settings.spamhaus_dqs_key.get_secret_value() if settings.spamhaus_dqs_key else None
        catalog.active(key or None, only=zone or None)
    except CatalogError as exc:
        fail(f"blocklist catalogue {exc.source}:\n  " + "\n  ".join(exc.problems), code=ERROR)
    except ValueError as exc:
        fail(str(exc), code=ERROR)
    try:
        targets = inventory_targets(tenant)
    except LookupError as exc:
        fail(str(exc.args[0]) if exc.args else str(exc), code=ERROR)
    except Exception as exc:  # no database, not migrated, ...
        fail(f"cannot read the inventory database: {exc.__class__.__name__}: {str(exc).splitlines()[0]} "
             "(run `email-engine db upgrade` and `email-engine inventory load FILE`)", code=ERROR)

    if json_out or not targets:
        try:
            report = asyncio.run(scan(targets, zones=zone or None, catalog=catalog, settings=settings))
        except ValueError as exc:
            fail(str(exc), code=ERROR)
    else:
        with Progress(TextColumn("[bold]scanning blocklists"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=err_console, transient=True) as bar:
            task = bar.add_task("scan", total=None)

            def progress(done: int, total: int) -> None:
                if done == 1 or done % 200 == 0 or done == total:
                    bar.update(task, completed=done, total=total)

            try:
                report = asyncio.run(scan(targets, zones=zone or None, catalog=catalog, settings=settings,
                                          progress=progress))
            except ValueError as exc:
                fail(str(exc), code=ERROR)

    status = scan_status(len(report.listed_targets()), report.unknown, len(report.broken))
    if json_out:
        print_json(dataclasses.asdict(report))
        raise typer.Exit(status)
    if not targets:
        console.print("Nothing to scan: no warming, active or quarantined IPs"
                      + (f" for tenant {tenant}." if tenant else "."))
    listed = [t for t in report.targets if t.listed]
    if listed:
        table = Table(title="Listed", title_justify="left")
        for col in ("tenant", "target", "zone", "codes", "meaning", "delisting"):
            table.add_column(col, overflow="fold")
        for t in listed:
            for e in t.listed:
                table.add_row(t.tenant, t.value, e.zone, ", ".join(e.codes), e.meaning, e.delist_url)
        console.print(table)
    unknown = [(t, u) for t in report.targets for u in t.unknown]
    if unknown:
        table = Table(title="Unknown (not believed either way)", title_justify="left")
        for col in ("tenant", "target", "zone", "reason"):
            table.add_column(col, overflow="fold")
        for t, u in unknown:
            table.add_row(t.tenant, t.value, u.zone, u.reason)
        console.print(table)
    scores = [(t, r) for t in report.targets for r in t.reputation]
    if scores:
        table = Table(title="Reputation scores (not listings)", title_justify="left")
        for col in ("tenant", "target", "zone", "codes", "meaning"):
            table.add_column(col, overflow="fold")
        for t, r in scores:
            table.add_row(t.tenant, t.value, r.zone, ", ".join(r.codes), r.meaning)
        console.print(table)
    if report.broken:
        table = Table(title="Broken zones (failed the RFC 5782 self-test; answers ignored)", title_justify="left")
        table.add_column("zone")
        table.add_column("dns zone")
        table.add_column("reason", overflow="fold")
        for b in report.broken:
            table.add_row(b.zone, b.zone_name, b.reason)
        console.print(table)
    n_ips = sum(1 for t in report.targets if t.kind == "ip")
    console.print(
        f"{n_ips} IPs and {len(report.targets) - n_ips} domains against {len(report.zones)} zones "
        f"({len(report.broken)} broken): {len(listed)} targets listed ({report.listed} listings), "
        f"{report.unknown} unknown answers, {report.not_listed} not listed, {report.reputation} scores; "
        f"{report.queries} queries in {report.self_test_seconds + report.scan_seconds:.2f} s.",
        highlight=False,
    )
    raise typer.Exit(status)
