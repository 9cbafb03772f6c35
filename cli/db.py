"""`email-engine db`: schema migrations."""

from __future__ import annotations

import typer

from cli.common import console

app = typer.Typer(help="Inventory database schema (Alembic migrations).", no_args_is_help=True)


@app.command()
def upgrade(revision: str = typer.Argument("heads", help="Target revision (default: all heads).")) -> None:
    """Apply migrations up to REVISION (default: the newest). Safe to run again."""
    from activities import db

    db.upgrade(revision=revision)
    console.print(f"database at revision [bold]{db.current_revision()}[/]")


@app.command()
def current() -> None:
    """Print the database's current migration revision."""
    from activities import db

    console.print(db.current_revision() or "(empty: run `email-engine db upgrade`)")
