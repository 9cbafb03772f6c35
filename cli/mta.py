"""`email-engine mta ...`: render, deploy and diff the MTA configuration."""

from __future__ import annotations

import typer

from cli import mta_deploy, mta_render

app = typer.Typer(help="MTA configuration (PowerMTA, Postfix): render, deploy over SSH with rollback, drift.",
                  no_args_is_help=True)
app.command(name="render")(mta_render.render)
app.command(name="deploy")(mta_deploy.deploy)
app.command(name="diff")(mta_deploy.diff)
app.command(name="history")(mta_deploy.history)
