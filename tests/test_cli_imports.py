"""The CLI starts in a blink: `import cli.main` and any `--help` load typer and rich, not the engine.

Each check runs a fresh interpreter (an import already made by another test would hide a regression)
and reads its sys.modules. The libraries a command needs (Temporal, SQLAlchemy, asyncssh, Telegram,
dnspython, ...) are imported inside the command's function, so only that command pays for them.
Timing is not asserted here (bench/cli_startup.py measures it against a bare interpreter).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from activities import db

ROOT = Path(__file__).resolve().parent.parent

#: Never loaded by `import cli.main` nor by a `--help` (issue 12): no worker, bot, SSH, workflows or workers.
FORBIDDEN = ("temporalio.worker", "telegram", "asyncssh", "workflows", "workers")
#: The heavy libraries of the engine: loaded only by the commands that use them.
HEAVY = ("temporalio", "sqlalchemy", "sqlmodel", "alembic", "psycopg", "dns", "checkdmarc", "httpx",
         "cryptography", "pydantic_settings", "activities", "client")

PROBE = """
import json, sys
try:
    from cli.main import main
    if sys.argv[1:]:
        main()
except SystemExit as exc:
    if exc.code not in (0, None):
        raise
print(json.dumps(sorted(sys.modules)))
"""


def _loaded(*args: str) -> set[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "100"}
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


def _hits(modules: set[str], packages: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in packages))


def test_import_cli_main_loads_no_worker_bot_ssh_workflows_or_workers() -> None:
    modules = _loaded()
    assert "cli.main" in modules and "typer" in modules  # the probe did import the CLI
    assert _hits(modules, FORBIDDEN) == []
    assert _hits(modules, HEAVY) == []


@pytest.mark.parametrize("args", [["--help"], ["warmup", "--help"], ["failover", "approve", "--help"],
                                  ["bot", "--help"], ["dev", "--help"], ["worker", "--help"],
                                  ["mta", "deploy", "--help"], ["scan", "blocklists", "--help"]])
def test_help_loads_none_of_the_engine(args: list[str]) -> None:
    modules = _loaded(*args)
    assert "typer.rich_utils" in modules  # the help page was rendered
    assert _hits(modules, FORBIDDEN) == []
    assert _hits(modules, HEAVY) == []


def test_email_engine_help_works() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "100"}
    proc = subprocess.run([sys.executable, "-c", "from cli.main import main; main()", "--help"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    for command in ("warmup", "failover", "scan", "mta", "status", "bot", "dev", "worker", "inventory"):
        assert f" {command} " in proc.stdout
    assert "Email Engine: keep a multi-tenant fleet" in proc.stdout


def test_a_command_loads_what_it_uses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The other side of laziness: `db current` loads the database libraries it needs and still no
    Temporal, bot or SSH module."""
    url = f"sqlite:///{tmp_path / 'cli-imports.db'}"
    db.upgrade(url)  # only `db upgrade` creates a database; `db current` reads it
    db.dispose_engines()
    monkeypatch.setenv("EMAIL_ENGINE_DATABASE_URL", url)
    modules = _loaded("db", "current")
    assert {"sqlalchemy", "alembic", "activities.db"} <= modules
    assert _hits(modules, ("temporalio", *FORBIDDEN)) == []
