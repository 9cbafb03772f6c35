"""Shared CLI helpers: consoles, JSON output, precise errors."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

console = Console()
err_console = Console(stderr=True, soft_wrap=True)

JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON instead of a table.")


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def run_app(app: typer.Typer) -> None:
    """Run the CLI; a missing or unmigrated database is one line, exit 2; an unexpected error is printed
    with every secret of the settings masked (a database URL with its password can be part of a
    driver's or Alembic's message), exit 1."""
    try:
        app()
    except Exception as exc:
        import traceback

        from temporalio.exceptions import ApplicationError

        from activities.db import MISSING
        from models.settings import Settings

        if isinstance(exc, ApplicationError) and exc.type == MISSING:  # no database: say so, create nothing
            err_console.print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False)
            raise SystemExit(2) from None

        try:
            settings = Settings()
        except Exception:  # the settings themselves are invalid: nothing to mask with
            raise exc from None
        text = "".join(traceback.format_exception(exc))
        err_console.print(settings.redact(text), highlight=False, markup=False)
        raise SystemExit(1) from None


def fail(message: str, code: int = 1) -> NoReturn:
    """Print `message` as plain text (it often carries remote or user text: a `[/]` or `[link=...]`
    in it must not be read as Rich markup) and exit with `code`."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, markup=True)
    raise typer.Exit(code)


T = TypeVar("T")


def run_temporal(fn: Callable[[Any], Awaitable[T]]) -> T:
    """Connect to Temporal and run `fn(client)`; connection and refusal errors become precise CLI errors.

    Imports stay inside so that `--help` never loads the Temporal SDK."""
    from temporalio.service import RPCError

    from client.connection import connect, run
    from client.errors import EngineError

    async def main() -> T:
        return await fn(await connect())

    try:
        return run(main())
    except EngineError as err:  # unreachable, unknown IP, not running, refused: the message says it
        fail(str(err))
    except RPCError as err:
        fail(f"Temporal refused: {err}")
