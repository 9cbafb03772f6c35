"""`email-engine inventory`: load the fleet description, show the fleet."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape

from cli.common import JsonOpt, console, err_console, fail, print_json

if TYPE_CHECKING:
    from activities.inventory import LoadReport
    from models.inventory import InventoryFile

app = typer.Typer(help="Load and show the fleet inventory (tenants, IPs, domains, MTA hosts).",
                  no_args_is_help=True)

STATUS_STYLE = {"active": "green", "warming": "yellow", "standby": "cyan", "quarantine": "red",
                "resting": "magenta", "retiring": "dim"}


def load_file(path: Path, *, dry_run: bool = False, apply_state: bool = False) -> LoadReport:
    """Parse, validate and apply; InventoryError lists every problem and nothing is written."""
    from activities.inventory import apply_inventory
    from models.inventory import InventoryError, parse

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryError([f"cannot read {path}: {exc}"]) from None
    inv = parse(text)
    if dry_run:
        return _dry_run(inv, path, apply_state)
    return apply_inventory(inv, actor=f"inventory:{path.name}", dry_run=False, apply_state=apply_state)


def _dry_run(inv: InventoryFile, path: Path, apply_state: bool) -> LoadReport:
    """A dry run writes nothing, not even a migration or a new SQLite file: a database that is not
    there yet is compared as empty (a throw-away copy of the schema); one behind the code is refused."""
    from activities import db
    from activities.inventory import apply_inventory
    from models.inventory import InventoryError

    actor = f"inventory:{path.name}"
    if not db.sqlite_file_missing():
        current = db.current_revision()
        if current == db.head_revision():
            return apply_inventory(inv, actor=actor, dry_run=True, apply_state=apply_state)
        if current is not None:
            raise InventoryError([f"the database is at revision {current}, this code expects "
                                  f"{db.head_revision()}: run `email-engine db upgrade` first "
                                  "(a dry run never migrates)"])
    with tempfile.TemporaryDirectory(prefix="ee-dry-run-") as tmp:
        url = f"sqlite:///{Path(tmp, 'empty.db').as_posix()}"
        try:
            db.upgrade(url)
            return apply_inventory(inv, actor=actor, url=url, dry_run=True, apply_state=apply_state)
        finally:
            db.dispose_engine(url)


@app.command()
def load(
    file: Path = typer.Argument(..., help="Inventory TOML file (see deploy/reference-inventory.toml)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate and show changes; write nothing."),
    apply_state: bool = typer.Option(
        False, "--apply-state",
        help="Also reset status/phase/quota of existing IPs to the file's values (normally the engine "
             "owns them after the first load, so a reload never rewinds a warmup)."),
    json_out: bool = JsonOpt,
) -> None:
    """Validate the whole FILE, then apply it in one transaction. Loading it again changes nothing."""
    from rich.table import Table

    from models.inventory import InventoryError

    try:
        report = load_file(file, dry_run=dry_run, apply_state=apply_state)
    except InventoryError as exc:
        for line in exc.errors:
            err_console.print(f"[red]✗[/] {escape(line)}", highlight=False, markup=True)
        fail(f"{file}: {len(exc.errors)} problem(s); nothing was written")
    if json_out:
        print_json(report.to_dict())
        return
    kinds = sorted(set(report.added) | set(report.updated) | set(report.unchanged))
    table = Table(title=f"{file}{' (dry run: nothing written)' if dry_run else ''}")
    for col in ("kind", "added", "updated", "unchanged"):
        table.add_column(col, justify="left" if col == "kind" else "right")
    for kind in kinds:
        table.add_row(kind, str(report.added[kind]), str(report.updated[kind]), str(report.unchanged[kind]))
    console.print(table)
    for line in report.details[:200]:
        console.print(line, highlight=False, markup=False)
    if len(report.details) > 200:
        console.print(f"... and {len(report.details) - 200} more")
    for line in report.kept_state:
        console.print(f"[yellow]kept engine state[/] {line}", highlight=False)
    if not report.changed:
        console.print("no changes")


def print_fleet(data: dict[str, Any], show_ips: bool = True) -> None:
    from rich.table import Table

    from models.enums import IpStatus

    summary = Table(title="Fleet by tenant")
    summary.add_column("tenant")
    for s in IpStatus:
        summary.add_column(s.value, justify="right")
    summary.add_column("total", justify="right")
    for name, t in data["tenants"].items():
        summary.add_row(name, *(str(t["by_status"][s.value]) for s in IpStatus), str(t["total"]))
    console.print(summary)
    if not show_ips:
        return
    ips = Table(title="Sending IPs")
    for col in ("tenant", "address", "domain", "vmta", "status", "phase", "quota/day", "weight"):
        ips.add_column(col, justify="right" if col in ("quota/day", "weight") else "left")
    for r in data["ips"]:
        style = STATUS_STYLE.get(r["status"], "")
        ips.add_row(r["tenant"], r["address"], r["domain"] or "-", r["vmta"], f"[{style}]{r['status']}[/]",
                    r["phase"] or "-", f"{r['daily_quota']:,}", str(r["weight"]))
    console.print(ips)


@app.command()
def show(
    tenant: str | None = typer.Option(None, "--tenant", "-t", help="Only this tenant."),
    json_out: bool = JsonOpt,
    summary_only: bool = typer.Option(False, "--summary", help="Counts only, no IP table."),
) -> None:
    """Counts by status per tenant and the table of IPs."""
    from activities.inventory import fleet

    try:
        data = fleet(tenant=tenant)
    except LookupError as exc:
        fail(str(exc))
    if json_out:
        print_json(data)
    else:
        print_fleet(data, show_ips=not summary_only)
