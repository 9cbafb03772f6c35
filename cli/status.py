"""`email-engine status [--json]`: the fleet on one screen."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from cli.common import JsonOpt, console, fail, print_json
from models.enums import IpStatus

SHORT = {IpStatus.STANDBY: "stby", IpStatus.WARMING: "warm", IpStatus.ACTIVE: "active",
         IpStatus.QUARANTINE: "quar", IpStatus.RESTING: "rest", IpStatus.RETIRING: "retr"}


def _hours(h: float | None) -> str:
    return "-" if h is None else (f"{h:.1f} h ago" if h < 48 else f"{h / 24:.1f} days ago")


def render(data: dict[str, Any]) -> None:
    """Print the status sections (each says "not available" when its feature has no table yet)."""
    t = Table(title="IPs by status; capacity = today's quotas of warming+active IPs")
    t.add_column("tenant", no_wrap=True)
    for s in IpStatus:
        t.add_column(SHORT[s], justify="right")
    t.add_column("total", justify="right")
    t.add_column("capacity/day", justify="right", no_wrap=True)
    for name, row in data["tenants"].items():
        t.add_row(name, *(str(row["by_status"][s.value]) for s in IpStatus), str(row["total"]),
                  f"{row['capacity']:,}")
    console.print(t)

    tmp = data["temporal"]
    w = Table(title="Warmups (Temporal)" if tmp["available"] else "Warmups (inventory: Temporal unreachable)")
    w.add_column("tenant", no_wrap=True)
    w.add_column("by phase")
    w.add_column("running", justify="right")
    w.add_column("paused", justify="right")
    if tmp["available"]:
        for name, row in tmp["warmups"].items():
            w.add_row(name, ", ".join(f"{p}: {n}" for p, n in sorted(row["by_phase"].items())), str(row["running"]),
                      str(row["paused"]))
    else:
        for name, phases in data["inventory_warmups"].items():
            w.add_row(name, ", ".join(f"{p}: {n}" for p, n in sorted(phases.items())), str(sum(phases.values())),
                      "?")
    console.print(w)
    if not tmp["available"]:
        console.print(f"[yellow]note:[/] {tmp['note']}", highlight=False)
        console.print("[bold]Failovers, guard steps held for approval:[/] unknown (Temporal unreachable)")
    else:
        for p in tmp["paused"]:
            console.print(f"  paused {p['workflow_id']}: {p['reason']} (by {p['by']}"
                          + (f", until {p['until']}" if p["until"] else ", until resumed") + ")", highlight=False)
        held = tmp["failovers_held"]
        console.print(f"[bold]Failovers:[/] {tmp['failovers_running']} running, "
                      f"[{'red' if held else 'green'}]{len(held)} awaiting approval[/]", highlight=False)
        for h in held:
            console.print(f"  {h['workflow_id']}: {'; '.join(h['reasons'])} -> "
                          f"email-engine failover approve/deny or the Telegram buttons", highlight=False)
        render_guard_held(tmp)

    bl = data["blocklists"]
    listings = ", ".join(f"{t}: {n}" for t, n in bl["open_listings"].items()) or "none"
    console.print(f"[bold]Blocklists:[/] open listings {listings}", highlight=False)
    scan = bl["last_scan"]
    if not scan["available"]:
        console.print(f"  last scan: {scan['note']}")
    elif scan.get("never"):
        console.print("  last scan: none yet")
    else:
        broken = ", ".join(scan["broken_zones"]) or "none"
        console.print(f"  last scan {_hours(scan['age_hours'])}: {scan['ips_scanned']} IPs, {scan['listed']} listed, "
                      f"{scan['inconclusive']} inconclusive; broken zones: {broken}", highlight=False)

    dns = data["dns"]
    if not dns["available"]:
        console.print(f"[bold]DNS checks:[/] {dns['note']}")
    else:
        console.print(f"[bold]DNS checks:[/] {dns['checked_domains']} domains checked "
                      f"(last {_hours(dns['last_check_age_hours'])}), "
                      f"[{'red' if dns['failures'] else 'green'}]{dns['failures']} failing[/]", highlight=False)
        for f in dns["failing"]:
            console.print(f"  {f['tenant']} {f['domain']}: {f['overall']} ({', '.join(f['items']) or '?'})",
                          highlight=False)

    mw = data["mailwizz"]
    if mw["available"]:
        reads = ", ".join(f"{t} {_hours(h)}" for t, h in mw["last_read_age_hours"].items()) or "never read"
        console.print(f"[bold]MailWizz figures:[/] {reads}", highlight=False)
    else:
        console.print(f"[bold]MailWizz figures:[/] {mw['note']}")

    dep = data["deploys"]
    if not dep["available"]:
        console.print(f"[bold]MTA deploys:[/] {dep['note']}")
    else:
        d = Table(title="MTA deploys")
        for c in ("host", "enabled", "last deploy", "drift"):
            d.add_column(c, no_wrap=c in ("host", "last deploy"))
        for name, h in dep["hosts"].items():
            last = h["last_deploy"]
            last_s = "never"
            if last is not None:
                last_s = ("ok" if last["ok"] else "FAILED") + (" (rolled back)" if last["rolled_back"] else "")
                last_s += f" {last['at']:%Y-%m-%d %H:%M}"
            drift = {None: "?", True: "[red]yes: deploy pending[/]", False: "no"}[h["drift"]]
            d.add_row(name, "yes" if h["enabled"] else "no (rendered locally)", last_s, drift)
        console.print(d)


def render_guard_held(tmp: dict[str, Any]) -> None:
    """Active-guard steps waiting for an operator (capacity-loss hold): who, why, since when, how to answer
    (lines, not a table: the evidence and the command stay readable and copyable in 80 columns)."""
    held = tmp["guard_steps_held"]
    console.print(f"[bold]Guard steps held for approval:[/] [{'red' if held else 'green'}]{len(held)}[/] "
                  f"({tmp['guard_steps_running']} open; unanswered in time: denied)", highlight=False)
    for h in held:
        step = "pause" if h["action"] == "pause" else f"step down to {h['to_phase']}"
        console.print(f"  {h['tenant']} {h['address']}: {step}, held since {h['since']:%Y-%m-%d %H:%M} UTC",
                      highlight=False, markup=False)
        verdict = h["evidence"].split(". Window ", 1)[0]  # the verdict; the window's figures: --json, guard status
        console.print(f"    {verdict}; {h['hold_reason']}", highlight=False, markup=False)
        console.print(f"    -> {h['answer']}", highlight=False, markup=False, soft_wrap=True)


def status(json_out: bool = JsonOpt) -> None:
    """The fleet on one screen: IPs by status and today's capacity per tenant, warmups by phase and
    paused, failovers and active-guard steps awaiting approval, last blocklist scan and broken zones, DNS failures, MTA
    deploy drift. Works without Temporal (then warmups come from the inventory, with a note)."""
    from client.connection import run
    from client.status import collect

    try:
        data = run(collect())
    except Exception as exc:
        fail(f"cannot read the inventory database: {exc}")
    if json_out:
        print_json(data)
    else:
        render(data)
