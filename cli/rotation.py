"""`email-engine rotation`: pick the IP (and its VMTA) the next message of a tenant leaves from."""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

import typer

from cli.common import JsonOpt, console, fail, print_json
from models import names
from models.rotation import RotationError, RotationMode

if TYPE_CHECKING:
    from sqlalchemy.exc import SQLAlchemyError

app = typer.Typer(
    help="IP rotation across a tenant's MTA pool (its active IPs; a warming IP is never picked, it takes mail "
         "only through its warm VirtualMTA's capped cold re-routing): round-robin with a durable cursor, "
         "weighted random by daily quota, or least used in the last hour.",
    no_args_is_help=True,
)

TenantOpt = typer.Option(..., "--tenant", "-t", help="Tenant name (e.g. client-1).")


def _tenant(value: str) -> str:
    try:
        return names.tenant(value)
    except ValueError as exc:
        fail(str(exc))


def _db_error(exc: SQLAlchemyError) -> NoReturn:
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:200]
    fail(f"database error: {detail} (if a table is missing: `email-engine db upgrade`)")


@app.command()
def pick(
    tenant: str = TenantOpt,
    mode: RotationMode = typer.Option(
        RotationMode.ROUND_ROBIN, "--mode", "-m", case_sensitive=False,
        help="round_robin: each IP in turn (durable, exact under concurrent callers); weighted_random: "
             "share proportional to the daily quota; least_used: lowest sends in the last hour relative "
             "to daily_quota/24."),
    count: int = typer.Option(
        1, "--count", "-n", min=1, max=10_000,
        help="Picks for a batch of messages, in one transaction (the same IPs as that many single picks)."),
    json_out: bool = typer.Option(False, "--json", help="Print the pick as a JSON object (a list with --count > 1)."),
) -> None:
    """Pick one active IP (pool member) of TENANT and record the pick. Prints `IP VMTA` and the header line to add
    to the message (`X-Virtual-MTA: VMTA`; PowerMTA honours it where `process-x-virtual-mta yes`).
    With --count N: N lines `IP VMTA`."""
    from sqlalchemy.exc import SQLAlchemyError

    from activities import rotation

    name = _tenant(tenant)
    try:
        picks = rotation.pick_many(name, mode, count)
    except RotationError as exc:
        fail(str(exc))
    except SQLAlchemyError as exc:
        _db_error(exc)
    if json_out:
        print_json(picks[0].to_dict() if count == 1 else [p.to_dict() for p in picks])
        return
    for p in picks:
        typer.echo(f"{p.address} {p.vmta}")
    if count == 1:
        typer.echo(picks[0].header)


@app.command()
def status(tenant: str = TenantOpt, json_out: bool = JsonOpt) -> None:
    """What rotation sees for TENANT: eligible IPs in round-robin order, sends in the last hour
    (picks recorded by `rotation pick`), load against daily_quota/24, and weighted-random share."""
    from sqlalchemy.exc import SQLAlchemyError

    from activities import rotation

    name = _tenant(tenant)
    try:
        st = rotation.status(name)
    except RotationError as exc:
        fail(str(exc))
    except SQLAlchemyError as exc:
        _db_error(exc)
    if json_out:
        print_json(st.to_dict())
        return
    from rich.table import Table

    table = Table(title=f"rotation of {name}: {len(st.ips)} eligible IP(s), round-robin position {st.position}")
    for col in ("ip", "vmta", "status", "daily quota", "sent last hour", "load", "weighted share"):
        table.add_column(col, justify="left" if col in ("ip", "vmta", "status") else "right")
    for u in st.ips:
        table.add_row(u.address, u.vmta, u.status, str(u.daily_quota), f"{u.sent_last_hour:.1f}", f"{u.load:.3f}",
                      f"{100 * u.share:.2f}%")
    console.print(table)
