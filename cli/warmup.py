"""`email-engine warmup`: start, pause, resume and read IP warmups (IpWarmupWorkflow)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import typer
from rich.table import Table

from cli.common import JsonOpt, console, fail, print_json
from models import names

app = typer.Typer(help="Six-week IP warmups: one durable Temporal workflow per warming IP "
                       "(id warmup/<tenant>/<ip>).", no_args_is_help=True)

T = TypeVar("T")


def _run(fn: Callable[[Any], Awaitable[T]]) -> T:
    """Connect to Temporal and run `fn(client)`; connection and refusal errors become precise CLI errors."""
    from temporalio.service import RPCError

    from client.connection import connect
    from client.errors import EngineError

    async def main() -> T:
        return await fn(await connect())

    try:
        return asyncio.run(main())
    except EngineError as err:  # unreachable, unknown IP, not running, refused: the message says it
        fail(str(err))
    except RPCError as err:
        fail(f"Temporal refused: {err}")


def _address(value: str) -> str:
    try:
        return names.ip_address(value)
    except names.NameError_ as err:
        fail(str(err))


@app.command()
def start(
    ip: str | None = typer.Argument(None, help="IP address to warm up (standby/resting IPs move into warming)."),
    tenant: str | None = typer.Option(None, "--tenant", "-t", help="With --all-warming: only this tenant."),
    all_warming: bool = typer.Option(False, "--all-warming",
                                     help="Start a workflow for every IP the inventory records as warming, "
                                          "at its recorded phase and day."),
    override_dns: str | None = typer.Option(None, "--override-dns", metavar="REASON",
                                            help="Let the IP into warming although its DNS checks fail; the "
                                                 "reason is recorded in the audit."),
    reason: str = typer.Option("warmup started by operator", "--reason", help="Recorded in the audit row."),
    json_out: bool = JsonOpt,
) -> None:
    """Start warmups. Idempotent: an IP whose workflow is already running is left alone."""
    from client.warmups import start_all_warming, start_warmup

    if all_warming == (ip is not None):
        fail("give either an IP or --all-warming")
    if tenant is not None:
        try:
            names.tenant(tenant)
        except names.NameError_ as err:
            fail(str(err))
        if not all_warming:
            fail("--tenant only goes with --all-warming")
    if all_warming and override_dns:
        fail("--override-dns is for one IP entering warming, not with --all-warming")
    if override_dns is not None and not override_dns.strip():
        fail("--override-dns needs a reason")
    if ip is not None:
        address = _address(ip)
        outcome = _run(lambda c: start_warmup(c, address, reason, "cli", override_dns))
        outcomes = [outcome]
    else:
        outcomes = _run(lambda c: start_all_warming(c, tenant, reason))
    if json_out:
        print_json([{"workflow_id": o.workflow_id, "started": o.started, "address": o.plan.address,
                     "tenant": o.plan.tenant, "phase": o.plan.phase, "moved_from": o.plan.moved_from,
                     "dns_override": o.plan.dns_override} for o in outcomes])
        return
    for o in outcomes:
        moved = f" (moved from {o.plan.moved_from})" if o.plan.moved_from else ""
        state = "[green]started[/]" if o.started else "[dim]already running[/]"
        console.print(f"{state} {o.workflow_id} at {o.plan.phase}{moved}", highlight=False)
    started = sum(o.started for o in outcomes)
    console.print(f"{started} started, {len(outcomes) - started} already running")


@app.command()
def pause(
    ip: str = typer.Argument(..., help="IP address whose warmup to pause."),
    reason: str = typer.Option("paused by operator", "--reason", help="Shown in status and alerts."),
    days: float | None = typer.Option(None, "--days", min=0.01, max=365,
                                      help="Resume by itself after this many days (default: until resumed)."),
) -> None:
    """Pause a warmup (quota held). Pausing a paused warmup is harmless."""
    from client.warmups import pause_warmup

    address = _address(ip)
    wid = _run(lambda c: pause_warmup(c, address, reason, days))
    console.print(f"pause sent to {wid}" + (f" for {days:g} days" if days else " until resumed"), highlight=False)


@app.command()
def resume(
    ip: str = typer.Argument(..., help="IP address whose warmup to resume."),
    reason: str = typer.Option("", "--reason", help="Recorded in the workflow's history."),
) -> None:
    """Resume a paused warmup. Resuming a running warmup is harmless."""
    from client.warmups import resume_warmup

    address = _address(ip)
    wid = _run(lambda c: resume_warmup(c, address, reason))
    console.print(f"resume sent to {wid}", highlight=False)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


@app.command()
def status(
    tenant: str | None = typer.Option(None, "--tenant", "-t", help="Only this tenant's IPs."),
    json_out: bool = JsonOpt,
) -> None:
    """Every warming IP with its workflow's state (from the `status` query)."""
    from client.warmups import status_dict, warmup_statuses

    if tenant is not None:
        try:
            names.tenant(tenant)
        except names.NameError_ as err:
            fail(str(err))
    rows = _run(lambda c: warmup_statuses(c, tenant))
    if json_out:
        print_json([status_dict(p, s) for p, s in rows])
        return
    table = Table(title="Warmups" + (f" of {tenant}" if tenant else ""))
    cols = ("ip", "phase", "quota", "day", "bounce", "compl.", "opens", "gate", "paused")
    if tenant is None:
        table.add_column("tenant", no_wrap=True)
    for col in cols:
        table.add_column(col, justify="right" if col in ("quota", "day") else "left", no_wrap=col in ("ip", "phase"))
    for plan, st in rows:
        if st is None:
            cells = [plan.address, plan.phase, str(plan.quota), "-", "-", "-", "-", "-", "[red]no workflow[/]"]
            table.add_row(*([plan.tenant] if tenant is None else []), *cells)
            continue
        g = st.last_gate
        paused = "[yellow]yes[/]" if st.paused else ("done" if st.status != "warming" else "-")
        table.add_row(*([st.tenant] if tenant is None else []), st.address, st.phase or st.status, str(st.quota),
                      str(st.day_in_phase),
                      _pct(g.bounce_rate) if g else "-", _pct(g.complaint_rate) if g else "-",
                      _pct(g.open_rate) if g else "-",
                      ("[green]pass[/]" if g.passed else "[red]fail[/]") if g else "-", paused)
    console.print(table)
    for _, st in rows:
        if st is not None and st.paused:
            until = st.paused_until[:16] if st.paused_until else "resumed"
            console.print(f"[yellow]paused[/] {st.address} ({st.paused_by}): {st.pause_reason} - until {until}",
                          highlight=False)
    console.print(f"{len(rows)} warming IP(s); {sum(1 for _, s in rows if s is None)} without a workflow")
