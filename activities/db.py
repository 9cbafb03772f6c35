"""Database engines, sessions and migrations (SQLite embedded default, PostgreSQL in production).

Only `db upgrade` (upgrade()) creates a database. Everything else opens an existing SQLite file
read-write (`mode=rw`) and checks once per engine that the schema is migrated: a moved or mistyped
database is a clear, non-retryable error ("DatabaseMissing"), never a silently created empty file.
"""

from __future__ import annotations

import sqlite3
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine import make_url
from sqlmodel import Session, create_engine

from models.settings import get_settings

_engines: dict[tuple[str, bool], Engine] = {}
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
#: ApplicationError type of a database that is missing or not migrated (retrying cannot fix it).
MISSING = "DatabaseMissing"
HINT = "run `email-engine db upgrade` to create it, or fix EMAIL_ENGINE_DATABASE_URL / EMAIL_ENGINE_VAR_DIR"


def database_missing(message: str) -> Exception:
    """A non-retryable ApplicationError of type MISSING (temporalio is imported here, when it happens:
    the CLI's database commands load no Temporal module)."""
    from temporalio.exceptions import ApplicationError

    return ApplicationError(message, type=MISSING, non_retryable=True)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def normalize_url(url: str) -> str:
    """Plain `postgresql://` URLs use psycopg 3, never the absent psycopg2."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _open_existing_sqlite(path: Path) -> sqlite3.Connection:
    """Connect to an existing SQLite file only (`mode=rw`: SQLite itself refuses to create it)."""
    if not path.is_file():
        raise database_missing(f"the SQLite database {path} does not exist; {HINT}")
    uri = f"file:{urllib.parse.quote(str(path.resolve()))}?mode=rw"
    return sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=30)


def _check_migrated(dbapi_conn: Any, _record: Any) -> None:
    """First connection of an engine: the Alembic version table must exist (the schema is migrated)."""
    cur = dbapi_conn.cursor()
    try:
        if isinstance(dbapi_conn, sqlite3.Connection):
            cur.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'")
            found = cur.fetchone() is not None
        else:
            cur.execute("SELECT to_regclass('alembic_version') IS NOT NULL")
            row = cur.fetchone()
            found = bool(row and row[0])
    finally:
        cur.close()
    if not found:
        raise database_missing(f"the database has no schema (not migrated); {HINT}")


def get_engine(url: str | None = None, check_migrated: bool = True) -> Engine:
    """The engine of `url` (default: settings). SQLite files must exist; with `check_migrated`, the
    first connection also checks that migrations ran."""
    url = normalize_url(url or get_settings().resolved_database_url())
    engine = _engines.get((url, check_migrated))
    if engine is None:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                path = Path(parsed.database)
                engine = create_engine(url, creator=lambda: _open_existing_sqlite(path))
            else:
                engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = create_engine(url, pool_pre_ping=True)
        if check_migrated:
            event.listen(engine, "first_connect", _check_migrated)
        _engines[(url, check_migrated)] = engine
    return engine


def dispose_engine(url: str) -> None:
    """Close and forget the engines of one URL (e.g. a throw-away database)."""
    for check in (True, False):
        engine = _engines.pop((normalize_url(url), check), None)
        if engine is not None:
            engine.dispose()


def check_ready(url: str | None = None) -> None:
    """Connect once: raises ApplicationError(type="DatabaseMissing") for a missing or unmigrated
    database, the driver's error when the server cannot be reached."""
    with get_engine(url).connect():
        pass


def dispose_engines() -> None:
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any error."""
    with Session(get_engine(url), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def alembic_config(url: str | None = None) -> Any:
    from alembic.config import Config

    cfg = Config()
    # Config options go through configparser interpolation: a '%' (e.g. in a password) must be doubled.
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    cfg.set_main_option("sqlalchemy.url",
                        normalize_url(url or get_settings().resolved_database_url()).replace("%", "%%"))
    return cfg


def upgrade(url: str | None = None, revision: str = "heads") -> None:
    """Apply migrations up to `revision` (idempotent); "heads" applies every branch."""
    from alembic import command

    parsed = make_url(normalize_url(url or get_settings().resolved_database_url()))
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)  # the one place that creates it
    command.upgrade(alembic_config(url), revision)


def head_revision() -> str:
    """The newest revision(s) of the migrations shipped with this code, as current_revision prints them."""
    from alembic.script import ScriptDirectory

    return ",".join(sorted(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()))


def sqlite_file_missing(url: str | None = None) -> bool:
    """True for a SQLite URL whose file does not exist (connecting would create it)."""
    parsed = make_url(normalize_url(url or get_settings().resolved_database_url()))
    database = parsed.database or ""
    return parsed.get_backend_name() == "sqlite" and database not in ("", ":memory:") and not Path(database).exists()


def current_revision(url: str | None = None) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with get_engine(url, check_migrated=False).connect() as conn:
        heads = MigrationContext.configure(conn).get_current_heads()
    return ",".join(sorted(heads)) or None
