"""The `email-engine` command: the operator's client scripts."""

from __future__ import annotations

import asyncio
import logging

import typer

from cli import db, dev, inventory

app = typer.Typer(
    help="Email Engine: keep a multi-tenant fleet of dedicated sending IPs healthy "
         "(warmup, rotation, blocklist failover, DNS checks, MTA config).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(db.app, name="db")
app.add_typer(inventory.app, name="inventory")
app.command(name="dev")(dev.dev)


@app.command()
def worker() -> None:
    """Run an engine worker on the task queue from settings (EMAIL_ENGINE_TASK_QUEUE).
    Stops gracefully on SIGTERM or Ctrl-C."""
    from workers import engine

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(engine.run())


def main() -> None:
    app()


if __name__ == "__main__":
    main()
