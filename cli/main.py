"""The `email-engine` command: the operator's client scripts."""

from __future__ import annotations

import typer

from cli import bot as bot_cli
from cli import codec as codec_cli
from cli import db, dev, inventory
from cli import dkim as dkim_cli
from cli import dns as dns_cli
from cli import doctor as doctor_cli
from cli import failover as failover_cli
from cli import firewall as firewall_cli
from cli import guard as guard_cli
from cli import mailwizz as mailwizz_cli
from cli import mta as mta_cli
from cli import rotation as rotation_cli
from cli import scan as scan_cli
from cli import schedules as schedules_cli
from cli import stats as stats_cli
from cli import status as status_cli
from cli import warmup as warmup_cli
from cli import webhooks as webhooks_cli

app = typer.Typer(
    help="Email Engine: keep a multi-tenant fleet of dedicated sending IPs healthy "
         "(warmup, rotation, blocklist failover, DNS checks, MTA config).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(db.app, name="db")
app.add_typer(inventory.app, name="inventory")
app.add_typer(dns_cli.app, name="dns")
app.add_typer(rotation_cli.app, name="rotation")
app.add_typer(failover_cli.app, name="failover")
app.add_typer(scan_cli.app, name="scan")
app.command(name="bot")(bot_cli.bot)
app.command(name="status")(status_cli.status)
app.add_typer(mailwizz_cli.app, name="mailwizz")
app.add_typer(warmup_cli.app, name="warmup")
app.add_typer(stats_cli.app, name="stats")
app.add_typer(mta_cli.app, name="mta")
app.add_typer(dkim_cli.app, name="dkim")
app.command(name="dev")(dev.dev)
app.add_typer(schedules_cli.app, name="schedules")
app.command(name="doctor")(doctor_cli.doctor)
app.command(name="codec-server")(codec_cli.codec_server)
app.add_typer(webhooks_cli.app, name="webhooks")
app.add_typer(firewall_cli.app, name="firewall")
app.add_typer(guard_cli.app, name="guard")


@app.command()
def worker() -> None:
    """Run an engine worker on the task queue from settings (EMAIL_ENGINE_TASK_QUEUE).
    Stops gracefully on SIGTERM or Ctrl-C."""
    import asyncio
    import logging

    from workers import engine

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(engine.run())


def main() -> None:
    from cli.common import run_app

    run_app(app)


if __name__ == "__main__":
    main()
