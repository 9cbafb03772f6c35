"""`email-engine failover`: answer a failover held by the circuit breaker, list open failovers."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from cli.common import JsonOpt, console, fail, print_json
from models import names

app = typer.Typer(help="Blocklist failovers (FailoverSaga): approve or deny a held failover, list open ones.",
                  no_args_is_help=True)

ReasonOpt = typer.Option(..., "--reason", "-r", help="Why (recorded in the audit table and the saga's history).")


def _validate(tenant: str, ip: str) -> tuple[str, str]:
    try:
        return names.tenant(tenant), names.ip_address(ip)
    except names.NameError_ as exc:
        fail(str(exc))


async def _answer(tenant: str, ip: str, update: str, reason: str) -> str:
    from client import failovers
    from client.connection import connect
    from client.errors import EngineError, TemporalUnreachable

    try:
        client = await connect()
    except TemporalUnreachable as exc:  # connection refused, bad address, ...
        fail(f"cannot reach Temporal: {exc.__cause__ or exc}")
    try:
        return await (failovers.approve if update == "approve" else failovers.deny)(client, tenant, ip, reason)
    except EngineError as exc:  # not running, refused by the saga's validator, Temporal error
        fail(str(exc))


def _answer_cmd(tenant: str, ip: str, update: str, reason: str) -> None:
    from client.connection import run

    tenant, ip = _validate(tenant, ip)
    if not reason.strip():
        fail("--reason must not be empty")
    console.print(run(_answer(tenant, ip, update, reason.strip())), highlight=False)


@app.command()
def approve(tenant: str = typer.Argument(..., help="Tenant name."),
            ip: str = typer.Argument(..., help="The listed IP whose failover is held."),
            reason: str = ReasonOpt) -> None:
    """Approve a failover held by the circuit breaker: a standby of TENANT is activated (warming)."""
    _answer_cmd(tenant, ip, "approve", reason)


@app.command()
def deny(tenant: str = typer.Argument(..., help="Tenant name."),
         ip: str = typer.Argument(..., help="The listed IP whose failover is held."),
         reason: str = ReasonOpt) -> None:
    """Deny a held failover: the listed IP stays quarantined and no standby is activated."""
    _answer_cmd(tenant, ip, "deny", reason)


#: What `failover list --json` shows of each saga's state.
LIST_FIELDS = ("tenant", "address", "step", "status", "decision", "standby", "reasons", "detections")


async def open_sagas() -> list[dict[str, Any]]:
    """Running FailoverSaga workflows with their queried state (client.failovers.list_failovers)."""
    from client.connection import connect
    from client.failovers import list_failovers

    rows: list[dict[str, Any]] = []
    for f in await list_failovers(await connect()):
        row: dict[str, Any] = {"workflow_id": f.workflow_id, "started": f.started}
        if f.error is not None:
            row["status"] = f"unknown ({f.error})"
        elif f.state is not None:
            row.update({k: getattr(f.state, k) for k in LIST_FIELDS})
        rows.append(row)
    return rows


@app.command(name="list")
def list_(json_out: bool = JsonOpt) -> None:
    """Open failovers: tenant, IP, current step, held or running, decision, standby."""
    from client.connection import run

    try:
        rows = run(open_sagas())
    except Exception as exc:
        fail(f"cannot list failovers: {exc}")
    if json_out:
        print_json(rows)
        return
    if not rows:
        console.print("no open failovers")
        return
    table = Table(title="Open failovers")
    for col in ("tenant", "ip", "step", "status", "decision", "standby", "started"):
        table.add_column(col, no_wrap=col in ("ip", "standby", "status"))
    for r in rows:
        status = r.get("status") or ""
        style = "bold red" if status == "held" else ""
        table.add_row(str(r.get("tenant") or ""), str(r.get("address") or r["workflow_id"]), str(r.get("step") or ""),
                      f"[{style}]{status}[/]" if style else status, str(r.get("decision") or ""),
                      str(r.get("standby") or ""), r["started"][5:16].replace("T", " "))
    console.print(table)
    if any(r.get("status") == "held" for r in rows):
        console.print("held: answer with `email-engine failover approve|deny TENANT IP --reason ...`")
