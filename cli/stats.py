"""`email-engine stats`: ingest PowerMTA accounting files, show an IP's daily stats."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from cli.common import JsonOpt, console, err_console, fail, print_json
from models import names

app = typer.Typer(help="Per-IP daily stats from PowerMTA accounting files (what the warmup gate reads).",
                  no_args_is_help=True)


@app.command()
def ingest(
    files: list[Path] = typer.Argument(..., help="Accounting CSV files (PowerMTA <acct-file>, header row first)."),
    json_out: bool = JsonOpt,
) -> None:
    """Count new records of each FILE into the daily stats. Ingesting a file again adds nothing twice
    (offsets are tracked); a grown file adds only its new records. Malformed lines are counted, skipped
    and reported."""
    import asyncio
    from dataclasses import asdict

    from activities.accounting import ingest_local

    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        fail(f"not a readable file: {', '.join(missing)}")
    reports = []
    for f in files:
        if not json_out:
            err_console.print(f"ingesting {f} ...", highlight=False)
        try:
            reports.append(asyncio.run(ingest_local(f)))
        except OSError as err:
            fail(f"{f}: {err}")
    if json_out:
        print_json([asdict(r) for r in reports])
        return
    table = Table(title="Accounting ingest")
    for c in ("file", "from byte", "to byte", "records", "d", "b", "rb", "f", "t", "malformed", "unattributed"):
        table.add_column(c, justify="left" if c == "file" else "right", no_wrap=c == "unattributed")
    for r in reports:
        t = r.by_type
        table.add_row(Path(r.path).name, str(r.start_offset), str(r.end_offset), str(r.records),
                      *(str(t.get(k, 0)) for k in ("d", "b", "rb", "f", "t")),
                      f"[red]{r.malformed}[/]" if r.malformed else "0", _unattributed(r.unattributed_by_type))
    console.print(table)
    for r in reports:
        if r.restarted:
            console.print(f"{Path(r.path).name}: a different file than last time at this path; read from the start")
        for s in r.samples[:5]:
            console.print(f"[red]malformed[/] {Path(r.path).name} {s}", highlight=False)
    if not sum(r.records for r in reports):
        console.print("nothing new")


def _unattributed(by_type: dict[str, int]) -> str:
    """e.g. `3 (rb 2, t 1)`: a remote bounce whose delivery is unknown is named, not hidden in a total."""
    total = sum(by_type.values())
    return f"{total} ({', '.join(f'{k} {v}' for k, v in sorted(by_type.items()))})" if total else "0"


@app.command()
def show(
    ip: str = typer.Argument(..., help="IP address."),
    days: int = typer.Option(7, "--days", min=1, max=366, help="How many days back (today included)."),
    json_out: bool = JsonOpt,
) -> None:
    """An IP's daily stats: sent, delivered, bounced, complaints, opens, and the rates over the period."""
    from activities.accounting import show_stats

    try:
        address = names.ip_address(ip)
    except names.NameError_ as err:
        fail(str(err))
    try:
        rows = show_stats(address, days)
    except LookupError as err:
        fail(str(err))
    if json_out:
        print_json(rows)
        return
    table = Table(title=f"{address}: last {days} days")
    for c in ("day", "sent", "delivered", "bounced", "complaints", "opens"):
        table.add_column(c, justify="left" if c == "day" else "right")
    for r in rows:
        table.add_row(str(r["day"]), str(r["sent"]), str(r["delivered"]), str(r["bounced"]), str(r["complaints"]),
                      "-" if r["opens"] is None else str(r["opens"]))
    console.print(table)
    sent = sum(int(r["sent"]) for r in rows)  # type: ignore[call-overload]
    delivered = sum(int(r["delivered"]) for r in rows)  # type: ignore[call-overload]
    bounced = sum(int(r["bounced"]) for r in rows)  # type: ignore[call-overload]
    complaints = sum(int(r["complaints"]) for r in rows)  # type: ignore[call-overload]
    console.print(f"bounce rate {bounced / sent:.2%}" if sent else "bounce rate -",
                  f"complaint rate {complaints / delivered:.3%}" if delivered else "complaint rate -")
