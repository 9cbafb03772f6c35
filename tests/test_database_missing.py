"""No silent new database (issue 11): outside `db upgrade`, a moved-away or unmigrated SQLite database is a
clear, non-retryable error in activities, the CLI and the worker, and no empty file is created."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from sqlmodel import select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities import db
from activities.warmup import WarmupContextRequest, load_warmup_context
from models.tables import SendingIp

REPO = Path(__file__).resolve().parent.parent


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), EMAIL_ENGINE_METRICS_ADDRESS="", EMAIL_ENGINE_FLEET_METRICS_ADDRESS="")
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def moved_away(sqlite_url: str, tmp_path: Path) -> Path:
    """The migrated database file, moved somewhere else; returns the path the settings still name."""
    path = Path(make_url(sqlite_url).database or "")
    db.dispose_engines()
    path.rename(tmp_path / "moved.db")
    return path


def test_activity_fails_non_retryable_and_creates_nothing(moved_away: Path) -> None:
    with pytest.raises(ApplicationError) as err:
        ActivityEnvironment().run(load_warmup_context, WarmupContextRequest("127.0.12.1", "2026-01-01"))
    assert err.value.type == db.MISSING and err.value.non_retryable
    assert "does not exist" in err.value.message and "db upgrade" in err.value.message
    assert not moved_away.exists()


def test_cli_and_worker_fail_clearly_and_create_nothing(moved_away: Path) -> None:
    for args in (["inventory", "show"], ["db", "current"], ["worker"]):
        res = _cli(*args)
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        assert "does not exist" in res.stderr and "db upgrade" in res.stderr, (args, res.stderr)
        assert "Traceback" not in res.stderr
        assert not moved_away.exists(), args
    # `db upgrade` is the one command that creates it
    res = _cli("db", "upgrade")
    assert res.returncode == 0, res.stderr
    assert moved_away.exists() and _cli("inventory", "show").returncode == 0


def test_an_unmigrated_database_is_refused(sqlite_url: str, tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()  # a file with no schema
    db.dispose_engines()
    with pytest.raises(ApplicationError) as err, db.session_scope(f"sqlite:///{empty}") as s:
        s.exec(select(SendingIp)).first()
    assert err.value.type == db.MISSING and "not migrated" in err.value.message
    # `db current` may read it (it reports the revision, here none)
    assert db.current_revision(f"sqlite:///{empty}") is None
