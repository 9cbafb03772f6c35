"""`email-engine warmup`: start, pause, resume and read IP warmups (IpWarmupWorkflow)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.table import Table

from cli.common import JsonOpt, console, fail, print_json, run_temporal
from models import names

if TYPE_CHECKING:
    from models.warmup_contracts import GateSnapshot

app = typer.Typer(help="Six-week IP warmups: one durable Temporal workflow per warming IP "
                       "(id warmup/<tenant>/<ip>).", no_args_is_help=True)

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
        outcome = run_temporal(lambda c: start_warmup(c, address, reason, "cli", override_dns))
        outcomes = [outcome]
    else:
        outcomes = run_temporal(lambda c: start_all_warming(c, tenant, reason))
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
    wid = run_temporal(lambda c: pause_warmup(c, address, reason, days))
    console.print(f"pause sent to {wid}" + (f" for {days:g} days" if days else " until resumed"), highlight=False)


@app.command()
def resume(
    ip: str = typer.Argument(..., help="IP address whose warmup to resume."),
    reason: str = typer.Option("", "--reason", help="Recorded in the workflow's history."),
) -> None:
    """Resume a paused warmup. Resuming a running warmup is harmless."""
    from client.warmups import resume_warmup

    address = _address(ip)
    wid = run_temporal(lambda c: resume_warmup(c, address, reason))
    console.print(f"resume sent to {wid}", highlight=False)


def _rate(rate: float | None, bounds: list[float] | None) -> str:
    """A rate with its Wilson bounds: "2.00% [0.97–4.07]" (bounds only on snapshots since issue 10)."""
    if rate is None:
        return "-"
    if not bounds:
        return f"{rate:.2%}"
    return f"{rate:.2%} [{bounds[0]:.2%}–{bounds[1]:.2%}]"


_DECISION_STYLE = {"advance": "green", "activate": "green", "pause": "red", "hold": "yellow"}


def gate_cells(g: GateSnapshot | None) -> list[str]:
    """The status table's gate columns: sent, delivered/required, bounce, complaints, opens, decision."""
    if g is None:
        return ["-"] * 6
    delivered = f"{g.delivered}/{g.required_delivered}" if g.required_delivered else str(g.delivered)
    if g.rule:
        decision = f"[{_DECISION_STYLE.get(g.action, 'white')}]{g.action}: {g.rule}[/]"
    else:  # a snapshot from before issue 10
        decision = "[green]pass[/]" if g.passed else "[red]fail[/]"
    opens = _rate(g.open_rate, g.open_bounds) if g.open_rate is not None else "unmeasured"
    return [str(g.sent), delivered, _rate(g.bounce_rate, g.bounce_bounds),
            _rate(g.complaint_rate, g.complaint_bounds), opens, decision]


def decision_line(address: str, g: GateSnapshot | None) -> str | None:
    """One line per IP under the table: the window, the counts and the rule that fired, in words."""
    if g is None or not g.rule:
        return None
    conf = f" at {g.confidence:.0%} confidence" if g.confidence else ""
    return (f"{address} {g.day} (window {g.window_from}..{g.window_to}): sent {g.sent}, delivered {g.delivered}, "
            f"bounced {g.bounced}, complaints {g.complaints}, opens "
            f"{g.opens if g.open_base else 'unmeasured'}{conf} -> {g.reason}")


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
    rows = run_temporal(lambda c: warmup_statuses(c, tenant))
    if json_out:
        print_json([status_dict(p, s) for p, s in rows])
        return
    table = Table(title="Warmups" + (f" of {tenant}" if tenant else ""))
    cols = ("ip", "phase", "quota", "day", "sent", "deliv./need", "bounce [bounds]", "compl. [bounds]", "opens",
            "decision", "paused")
    if tenant is None:
        table.add_column("tenant", no_wrap=True)
    for col in cols:
        table.add_column(col, justify="right" if col in ("quota", "day") else "left", no_wrap=col in ("ip", "phase"))
    for plan, st in rows:
        if st is None:
            cells = [plan.address, plan.phase, str(plan.quota), *(["-"] * 7), "[red]no workflow[/]"]
            table.add_row(*([plan.tenant] if tenant is None else []), *cells)
            continue
        paused = "[yellow]yes[/]" if st.paused else ("done" if st.status != "warming" else "-")
        table.add_row(*([st.tenant] if tenant is None else []), st.address, st.phase or st.status, str(st.quota),
                      str(st.day_in_phase), *gate_cells(st.last_gate), paused)
    console.print(table)
    for _, st in rows:
        line = decision_line(st.address, st.last_gate) if st is not None else None
        if line:
            console.print(line, highlight=False, markup=False)
    for _, st in rows:
        if st is not None and st.paused:
            until = st.paused_until[:16] if st.paused_until else "resumed"
            console.print(f"[yellow]paused[/] {st.address} ({st.paused_by}): {st.pause_reason} - until {until}",
                          highlight=False)
    console.print(f"{len(rows)} warming IP(s); {sum(1 for _, s in rows if s is None)} without a workflow")
