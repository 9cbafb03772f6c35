"""The hand-written migrations and the SQLModel tables describe the same schema, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

import models.all_tables  # noqa: F401  (every table module, as the migration environment sees them)
from activities import db


def test_migrated_schema_matches_the_models(db_url: str) -> None:
    with db.get_engine(db_url).connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": False})
        diff = compare_metadata(ctx, SQLModel.metadata)
    assert diff == [], diff


def test_single_head_and_upgrade_is_idempotent(sqlite_url: str) -> None:
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(db.alembic_config(sqlite_url)).get_heads()
    assert len(heads) == 1
    db.upgrade(sqlite_url)
    assert db.current_revision(sqlite_url) == heads[0]
