"""`email-engine guard`: the guard on active IPs: run it, read its steps, answer a held step, undo one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from cli.common import JsonOpt, console, fail, print_json, run_temporal
from models import names

if TYPE_CHECKING:
    from models.guard_contracts import GuardPlan, IpFigures

app = typer.Typer(help="Guard on active IPs: every active IP's own 7-day bounce and complaint rates, judged "
                       "like the warmup gate (Wilson bounds); a real excess steps the IP down to a warmup phase "
                       "or pauses it, by tenant policy. A tenant losing more than its set share of capacity in "
                       "a day holds further steps for approve/deny (GuardStepWorkflow guard/<tenant>/<ip>).",
                  no_args_is_help=True)

TenantOpt = typer.Option(None, "--tenant", "-t", help="Only this tenant.")
ReasonOpt = typer.Option(..., "--reason", "-r", help="Why (recorded in the audit table and the step's history).")


def _tenant(tenant: str | None) -> str | None:
    try:
        return None if tenant is None else names.tenant(tenant)
    except names.NameError_ as exc:
        fail(str(exc), 2)


def _rate(rate: float | None, bounds: list[float] | None) -> str:
    if rate is None or bounds is None:
        return "-"
    return f"{rate:.2%} [{bounds[0]:.2%}–{bounds[1]:.2%}]"


def _row(f: IpFigures) -> list[str]:
    note = f.skipped or f.reason
    step = {"auto": "[bold red]auto[/]", "held": "[bold yellow]held[/]"}.get(f.step, "")
    return [f.address, f.verdict or "-", step, f"{f.sent:,}", f"{f.delivered:,}/{f.required:,}",
            _rate(f.bounce_rate, f.bounce_bounds), _rate(f.complaint_rate, f.complaint_bounds), note]


def _print_plan(plan: GuardPlan, dry_run: bool) -> None:
    console.print(f"{'(dry run: nothing recorded or changed) ' if dry_run else ''}guard of {plan.day}: "
                  f"window {plan.window_from}..{plan.window_to}", highlight=False)
    for t in plan.tenants:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(t.counts.items())) or "no active IP"
        table = Table(title=f"{t.tenant}: policy {t.action}"
                            f"{' to ' + t.step_down_phase if t.action == 'step_down' else ''}; capacity "
                            f"{t.capacity:,}/day, at most {t.limit:,} ({t.max_capacity_loss_share:.0%}) removed "
                            f"a day without an operator; removed today {t.lost_before:,} -> {t.lost_after:,}; "
                            f"active IPs: {counts}")
        for col in ("ip", "verdict", "step", "sent", "delivered/need", "bounce [bounds]", "complaint [bounds]",
                    "why"):
            table.add_column(col, no_wrap=col not in ("why",))
        for f in t.ips:
            table.add_row(*_row(f))
        console.print(table)
    for s in plan.steps:
        what = f"step down to {s.to_phase} ({s.quota_before:,} -> {s.quota_after:,}/day)" if s.action == "step_down" \
            else f"pause ({s.quota_before:,} -> 0/day)"
        state = ("would be held" if dry_run else "HELD for approve/deny") if s.held else \
            ("would be taken" if dry_run else "taken")
        console.print(f"{s.tenant} {s.address}: {what}: {state}", highlight=False)
    if any(s.held for s in plan.steps) and not dry_run:
        console.print("held: answer with `email-engine guard approve|deny TENANT IP --reason ...`")


@app.command()
def run(tenant: str | None = TenantOpt,
        dry_run: bool = typer.Option(False, "--dry-run", help="Judge and print only: nothing is recorded, no IP "
                                                               "changes, no Temporal needed."),
        json_out: bool = JsonOpt) -> None:
    """Judge every active IP on its last 7 full days now and act on real excesses (step down or pause, by
    tenant policy; beyond the tenant's capacity-loss limit: held for approve/deny). Idempotent: a second
    run the same day acts on nothing twice. The Schedule `active-guard` runs it daily.

    Exit status (also with --json): 0 nothing to act on; 1 an IP with a real excess (stepped down, paused
    or held, today or by an earlier run today); 2 could not run; 3 nothing to act on but IPs held on
    insufficient data or not yet clear."""
    from dataclasses import asdict

    from client.connection import run as run_async
    from client.errors import EngineError
    from client.guard import plan_guard, run_guard
    from models.exit_status import guard_status

    tenant = _tenant(tenant)
    result: dict[str, Any] | None = None
    if dry_run:
        try:
            plan = run_async(plan_guard(tenant))
        except EngineError as exc:
            fail(str(exc), 2)
    else:
        outcome = run_temporal(lambda c: run_guard(c, tenant))
        plan = outcome.plan
        result = {"started": outcome.started, "blocked": outcome.blocked}
    if json_out:
        print_json({**asdict(plan), **(result or {})})
    else:
        _print_plan(plan, dry_run)
        if result and result["blocked"]:
            console.print(f"not taken (another step of the IP is open): {', '.join(result['blocked'])}")
    raise typer.Exit(guard_status(plan.ips(), bool(plan.steps)))


@app.command()
def status(tenant: str | None = TenantOpt,
           days: int = typer.Option(7, "--days", min=1, max=366, help="Steps of this many days (today included)."),
           json_out: bool = JsonOpt) -> None:
    """The guard's steps: IP, day, step down or pause, automatic or held, and what became of it (applied,
    denied, undone, failed), with the evidence. Database only."""
    from client.connection import run as run_async
    from client.errors import EngineError
    from client.guard import guard_steps

    tenant = _tenant(tenant)
    try:
        rows = run_async(guard_steps(tenant, days))
    except EngineError as exc:
        fail(str(exc), 2)
    if json_out:
        print_json(rows)
        return
    if not rows:
        console.print(f"no guard step in the last {days} day(s)")
        return
    table = Table(title=f"Guard steps, last {days} day(s)")
    for col in ("day", "tenant", "ip", "action", "quota", "held", "status", "by", "evidence"):
        table.add_column(col, no_wrap=col not in ("evidence",))
    for r in rows:
        action = f"step down to {r['to_phase']}" if r["action"] == "step_down" else "pause"
        style = {"held": "bold yellow", "applied": "bold red"}.get(r["status"], "")
        table.add_row(r["day"], r["tenant"], r["address"], action, f"{r['quota_before']:,} -> {r['quota_after']:,}",
                      "yes" if r["held"] else "", f"[{style}]{r['status']}[/]" if style else r["status"],
                      r["decided_by"], r["evidence"] + (f" ({r['note']})" if r["note"] else ""))
    console.print(table)
    if any(r["status"] == "held" for r in rows):
        console.print("held: answer with `email-engine guard approve|deny TENANT IP --reason ...`")


def _answer(tenant: str, ip: str, update: str, reason: str) -> None:
    import getpass

    from client.guard import answer

    try:
        tenant, ip = names.tenant(tenant), names.ip_address(ip)
    except names.NameError_ as exc:
        fail(str(exc))
    if not reason.strip():
        fail("--reason must not be empty")
    try:
        actor = f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        actor = "cli"
    console.print(run_temporal(lambda c: answer(c, tenant, ip, update, reason.strip(), actor=actor)), highlight=False)


@app.command()
def approve(tenant: str = typer.Argument(..., help="Tenant name."),
            ip: str = typer.Argument(..., help="The active IP whose step is held."),
            reason: str = ReasonOpt) -> None:
    """Approve a step held by the capacity-loss limit: the IP is stepped down (or paused) now."""
    _answer(tenant, ip, "approve", reason)


@app.command()
def deny(tenant: str = typer.Argument(..., help="Tenant name."),
         ip: str = typer.Argument(..., help="The active IP whose step is held."),
         reason: str = ReasonOpt) -> None:
    """Deny a held step: the IP stays active, and the guard does not act on it again while the window
    still holds today."""
    _answer(tenant, ip, "deny", reason)


@app.command()
def undo(tenant: str = typer.Argument(..., help="Tenant name."),
         ip: str = typer.Argument(..., help="The IP the guard stepped down or paused."),
         reason: str = ReasonOpt) -> None:
    """Undo a step within its undo window (EMAIL_ENGINE_GUARD_UNDO_HOURS): the IP is active again at the
    active quota (a step-down's warmup is stopped), and the pool is redeployed."""
    _answer(tenant, ip, "undo", reason)
