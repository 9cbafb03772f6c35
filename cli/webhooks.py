"""`email-engine webhooks`: outbound webhook receivers (issue 15): list, test, replay.

Receivers are declared in the inventory file (`[[webhooks]]`), their secrets in
EMAIL_ENGINE_WEBHOOK_SECRETS. Heavy imports stay inside the commands (the CLI starts fast).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import typer

from cli.common import JsonOpt, console, fail, print_json

app = typer.Typer(help="Outbound webhooks (signed, Standard Webhooks): list receivers, send a test, replay events.",
                  no_args_is_help=True)

_RELATIVE = re.compile(r"^(\d{1,5})([mhd])\Z")


def parse_since(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """`--since`: an ISO date or date-time (UTC unless it says otherwise), or `30m`, `6h`, `2d` ago."""
    now = now or dt.datetime.now(dt.UTC)
    m = _RELATIVE.match(text.strip())
    if m:
        n, unit = int(m.group(1)), m.group(2)
        return now - dt.timedelta(**{{"m": "minutes", "h": "hours", "d": "days"}[unit]: n})
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"--since {text!r}: give an ISO date/time (2026-11-29T06:00) or 30m, 6h, 2d") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


@app.command(name="list")
def list_(as_json: bool = JsonOpt) -> None:
    """Receivers with their URL, events, whether a secret is set, and their queue (pending, delivered,
    failed; the oldest pending event and its last error)."""
    from rich.table import Table

    from activities.webhooks import list_receivers

    rows: list[dict[str, Any]] = list_receivers()
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print("no webhook receivers (add [[webhooks]] entries to the inventory file)")
        return
    table = Table("receiver", "url", "events", "secret", "pending", "delivered", "failed", "oldest pending / error")
    for r in rows:
        name = r["name"] + ("" if r["enabled"] else " (disabled)")
        head = f"{r['oldest_pending'] or ''} {r['last_error']}".strip()
        table.add_row(name, r["url"], ", ".join(r["events"]), r["secret"], str(r["pending"]), str(r["delivered"]),
                      str(r["failed"]), head)
    console.print(table)


@app.command()
def test(receiver: str = typer.Argument(..., help="Receiver name (inventory [[webhooks]] name).")) -> None:
    """Send one signed `webhook.test` event to RECEIVER now (outside the queue); exit 1 unless it
    answers 2xx."""
    import asyncio

    from activities.webhooks import send_test

    try:
        error, seconds = asyncio.run(send_test(receiver))
    except LookupError as exc:
        fail(str(exc))
    if error:
        fail(f"{receiver}: {error} ({seconds * 1000:.0f} ms)")
    console.print(f"{receiver}: delivered and answered 2xx in {seconds * 1000:.0f} ms", highlight=False)


@app.command()
def replay(since: str = typer.Option(..., "--since", help="ISO date/time (UTC) or 30m, 6h, 2d ago."),
           receiver: str | None = typer.Option(None, "--receiver", help="Only this receiver (default: all)."),
           as_json: bool = JsonOpt) -> None:
    """Queue again every event that happened since --since (delivered or given up) with its original
    webhook-id, and wake the receivers' delivery workflows (needs Temporal)."""
    import asyncio

    try:
        when = parse_since(since)
    except ValueError as exc:
        fail(str(exc))

    async def go() -> dict[str, int]:
        from client import webhooks
        from client.connection import connect
        from models.errors import TemporalUnreachable
        from models.settings import get_settings

        try:
            client = await connect()
        except TemporalUnreachable as exc:
            fail(str(exc))
        return await webhooks.replay(client, when, get_settings().task_queue, receiver)

    counts = asyncio.run(go())
    if as_json:
        print_json({"since": when.isoformat(), "queued": counts})
        return
    if not counts:
        console.print(f"nothing to replay since {when.isoformat()}", highlight=False)
    for name, n in sorted(counts.items()):
        console.print(f"{name}: {n} event(s) queued again since {when.isoformat()}", highlight=False)
