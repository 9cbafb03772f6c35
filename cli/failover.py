"""`email-engine failover`: answer a failover held by the circuit breaker, list open failovers."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import typer
from rich.table import Table

from cli.common import JsonOpt, console, fail, print_json
from models import names
from models.failover import saga_id

app = typer.Typer(help="Blocklist failovers (FailoverSaga): approve or deny a held failover, list open ones.",
                  no_args_is_help=True)

ReasonOpt = typer.Option(..., "--reason", "-r", help="Why (recorded in the audit table and the saga's history).")


def _validate(tenant: str, ip: str) -> tuple[str, str]:
    try:
        return names.tenant(tenant), names.ip_address(ip)
    except names.NameError_ as exc:
        fail(str(exc))


async def _answer(tenant: str, ip: str, update: str, reason: str) -> str:
    from temporalio.client import WorkflowUpdateFailedError
    from temporalio.service import RPCError, RPCStatusCode

    from workers.temporal_client import connect

    wid = saga_id(tenant, ip)
    try:
        client = await connect()
    except Exception as exc:  # connection refused, bad address, ...
        fail(f"cannot reach Temporal: {exc}")
    handle = client.get_workflow_handle(wid)
    try:
        result: str = await handle.execute_update(update, reason, result_type=str)
        return result
    except WorkflowUpdateFailedError as exc:
        fail(f"{wid}: {getattr(exc.cause, 'message', None) or exc.cause or exc}")
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            fail(f"no running failover {wid}")
        fail(f"{wid}: {exc.message}")


def _answer_cmd(tenant: str, ip: str, update: str, reason: str) -> None:
    tenant, ip = _validate(tenant, ip)
    if not reason.strip():
        fail("--reason must not be empty")
    console.print(asyncio.run(_answer(tenant, ip, update, reason.strip())), highlight=False)


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


async def open_sagas() -> list[dict[str, Any]]:
    """Running FailoverSaga workflows with their queried state."""
    from workers.temporal_client import connect

    client = await connect()
    rows: list[dict[str, Any]] = []
    async for wf in client.list_workflows('WorkflowType = "FailoverSaga" AND ExecutionStatus = "Running"'):
        row: dict[str, Any] = {"workflow_id": wf.id, "started": wf.start_time.isoformat()}
        try:
            state = await client.get_workflow_handle(wf.id, run_id=wf.run_id).query("state")
            if isinstance(state, dict):
                row.update({k: state.get(k) for k in ("tenant", "address", "step", "status", "decision", "standby",
                                                      "reasons", "detections")})
            elif state is not None and dataclasses.is_dataclass(state):
                row.update(dataclasses.asdict(state))  # type: ignore[arg-type]
        except Exception as exc:  # a saga whose worker is down cannot answer queries
            row["status"] = f"unknown ({exc})"
        rows.append(row)
    return sorted(rows, key=lambda r: r["workflow_id"])


@app.command(name="list")
def list_(json_out: bool = JsonOpt) -> None:
    """Open failovers: tenant, IP, current step, held or running, decision, standby."""
    try:
        rows = asyncio.run(open_sagas())
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
