"""`email-engine schedules`: the engine's Temporal Schedules on any cluster (apply, list, pause, unpause)."""

from __future__ import annotations

import dataclasses
import getpass

import typer

from cli.common import JsonOpt, console, print_json, run_temporal

app = typer.Typer(help="The engine's Temporal Schedules: blocklist-scan, dns-validation, accounting-ingest, "
                       "mailwizz-sync, active-guard.", no_args_is_help=True)

@app.command()
def apply(
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would change; change nothing."),
    json_out: bool = JsonOpt,
) -> None:
    """Create or update every Schedule from the settings (idempotent); prints created/updated/unchanged.

    Intervals, the DNS check hour and the task queue come from EMAIL_ENGINE_* settings. A Schedule an
    operator paused stays paused. The worker's systemd unit runs this before the worker starts."""
    from client.schedules import apply_schedules
    from models.settings import get_settings

    settings = get_settings()
    outcomes = run_temporal(lambda c: apply_schedules(c, settings, dry_run=dry_run))
    if json_out:
        print_json({"dry_run": dry_run, "schedules": [dataclasses.asdict(o) for o in outcomes]})
        return
    prefix = "(dry run) " if dry_run else ""
    for o in outcomes:
        typer.echo(prefix + o.line())


@app.command("list")
def list_(json_out: bool = JsonOpt) -> None:
    """Each Schedule: installed or missing, paused (with its note), next run, last run and its result."""
    from rich.table import Table

    from client.schedules import list_schedules
    from models.settings import get_settings

    rows = run_temporal(lambda c: list_schedules(c, get_settings()))
    if json_out:
        print_json([dataclasses.asdict(r) for r in rows])
        return
    table = Table(title="Temporal Schedules")
    for col in ("schedule", "when", "state", "next run (UTC)", "last run (UTC)", "last result"):
        table.add_column(col, overflow="fold")
    for r in rows:
        state = "MISSING" if not r.present else (f"paused: {r.note}" if r.paused else "active")
        table.add_row(r.name, r.when, state, r.next_run or "-", r.last_started or "-", r.last_result or "-")
    console.print(table)
    if any(not r.present for r in rows):
        console.print("missing Schedules: run `email-engine schedules apply`", highlight=False)


NAME_HELP = "blocklist-scan, dns-validation, accounting-ingest, mailwizz-sync or active-guard"


def _actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "operator"


@app.command()
def pause(
    name: str = typer.Argument(..., help=NAME_HELP),
    reason: str = typer.Option(..., "--reason", "-r", help="Why (shown in the Web UI and `schedules list`)."),
) -> None:
    """Pause one Schedule: no runs until it is unpaused (`schedules apply` keeps it paused)."""
    from client.schedules import pause_schedule

    note = run_temporal(lambda c: pause_schedule(c, name, reason, _actor()))
    typer.echo(f"schedule {name}: {note}")


@app.command()
def unpause(
    name: str = typer.Argument(..., help=NAME_HELP),
    reason: str = typer.Option(..., "--reason", "-r", help="Why (shown in the Web UI and `schedules list`)."),
) -> None:
    """Unpause one Schedule: its runs start again at the next scheduled time."""
    from client.schedules import unpause_schedule

    note = run_temporal(lambda c: unpause_schedule(c, name, reason, _actor()))
    typer.echo(f"schedule {name}: {note}")
