"""`email-engine dev`: the run command on embedded defaults (SQLite, Temporal dev server, worker)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path

import typer

from cli.common import console, fail

REFERENCE_INVENTORY = Path("deploy/reference-inventory.toml")
LOOPBACK_RESOLVER = "127.0.0.1:53"


def dev(
    inventory: Path = typer.Option(REFERENCE_INVENTORY, "--inventory", "-i",
                                   help="Inventory file to load at start-up."),
    once: bool = typer.Option(False, "--once", help="Start everything, print the status, then stop "
                              "(a smoke test of the run command)."),
) -> None:
    """Run the engine locally: migrate, start the Temporal dev server (Web UI) and a worker, load the
    inventory, print the fleet. Ctrl-C stops everything this command started."""
    import asyncio

    from activities import db
    from cli.inventory import load_file
    from models.inventory import InventoryError
    from models.settings import get_settings
    from workers import devserver

    if not get_settings().dns_resolvers:
        # The run command never reaches a non-loopback address: without a configured resolver its
        # scheduled DNS and blocklist checks ask 127.0.0.1 (and report `unknown` if none runs there).
        os.environ["EMAIL_ENGINE_DNS_RESOLVERS"] = LOOPBACK_RESOLVER
        get_settings.cache_clear()
    settings = get_settings()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    console.print(f"DNS resolvers: {settings.dns_resolvers} (EMAIL_ENGINE_DNS_RESOLVERS)")
    var = settings.var_dir
    var.mkdir(parents=True, exist_ok=True)
    db.upgrade()
    console.print(f"database: {settings.display_database_url()} (revision {db.current_revision()})")
    try:
        report = load_file(inventory)
    except InventoryError as exc:
        fail(f"{inventory}: " + "; ".join(exc.errors))
    console.print(f"inventory {inventory}: added {sum(report.added.values())}, "
                  f"updated {sum(report.updated.values())}, unchanged {sum(report.unchanged.values())}")
    host, _, port = settings.temporal_address.rpartition(":")
    console.print("starting the Temporal dev server ...")
    server = devserver.start(var / "temporal.db", host=host or "127.0.0.1", port=int(port),
                             ui_port=settings.temporal_ui_port, log_file=var / "temporal.log")
    try:
        asyncio.run(_serve(once))
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:
        _detach_output()  # the output went away while serving (`scripts/run | tee log` and Ctrl-C)
    finally:
        try:
            _say("stopping the Temporal dev server ...")
        finally:
            try:
                devserver.stop(server)
            finally:
                db.dispose_engines()
    _say("stopped.")


def _detach_output() -> None:
    """Point stdout at /dev/null: with `scripts/run | tee log`, Ctrl-C ends tee first, and any later
    write (or the interpreter's final flush) would raise BrokenPipeError instead of cleaning up."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _say(text: str) -> None:
    """Print during shutdown without ever stopping it: a closed output pipe is ignored (Rich itself
    answers a broken pipe with SystemExit(1), which would skip the rest of the cleanup)."""
    try:
        console.print(text)
        console.file.flush()
    except (OSError, ValueError, SystemExit):
        _detach_output()


async def _serve(once: bool) -> None:
    import asyncio

    from activities.inventory import fleet
    from cli.inventory import print_fleet
    from client.connection import connect
    from models.settings import get_settings
    from workers import bootstrap, engine

    settings = get_settings()
    stop = asyncio.Event()
    # the dev server's port opens a moment before its frontend answers: wait for it, then start the worker
    client = await connect(settings, wait=30)
    worker_task = asyncio.create_task(engine.run(settings, stop))
    lines = await bootstrap.run_hooks(client, settings)
    print_fleet(fleet(), show_ips=False)
    for line in lines:
        console.print(line, highlight=False)
    host = settings.temporal_address.rpartition(":")[0] or "127.0.0.1"
    console.print(f"\n[bold]Temporal Web UI:[/] http://{host}:{settings.temporal_ui_port}"
                  f"/namespaces/{settings.temporal_namespace}/workflows")
    console.print(f"worker on task queue [bold]{settings.task_queue}[/]; Ctrl-C stops everything.")
    if once:
        stop.set()
    await worker_task
