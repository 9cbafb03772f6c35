"""No database password in what the CLI prints: the URL is shown masked, and unexpected errors (a
driver's or Alembic's message can quote the URL) are printed with every secret replaced by ***."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from models.settings import Settings, mask_url, redact
from tests.support import free_port

PASSWORD = "Zq7%25wordX"  # URL-encoded '%': ConfigParser interpolation used to echo the URL back


def test_mask_url() -> None:
    assert mask_url(f"postgresql+psycopg://ee:{PASSWORD}@db:5432/ee?sslmode=require") == \
        "postgresql+psycopg://ee:***@db:5432/ee?sslmode=require"
    assert mask_url("postgresql://ee@db/ee?password=hunter22&x=1") == "postgresql://ee@db/ee?password=***&x=1"
    assert mask_url("sqlite:///var/email-engine.db") == "sqlite:///var/email-engine.db"
    assert mask_url("postgresql://ee@db/ee") == "postgresql://ee@db/ee"
    s = Settings(database_url=f"postgresql://ee:{PASSWORD}@db/ee", telegram_bot_token="123:tok-en")  # type: ignore[arg-type]
    assert PASSWORD not in s.display_database_url()
    text = s.redact(f"failed: {PASSWORD} / Zq7%wordX / 123:tok-en")
    assert text == "failed: *** / *** / ***"
    assert redact("nothing here", "sqlite:///x.db") == "nothing here"


@pytest.mark.parametrize("url", [
    f"postgresql+psycopg://nobody:{PASSWORD}@127.0.0.1:{{port}}/ee",  # nothing listens: driver error
    f"postgresql+psycopg://nobody:{PASSWORD}@127.0.0.1:notaport/ee",  # malformed: parse error
])
def test_cli_errors_never_print_the_password(url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {**os.environ, "EMAIL_ENGINE_DATABASE_URL": url.format(port=free_port()),
           "EMAIL_ENGINE_VAR_DIR": str(tmp_path)}
    for args in (["db", "upgrade"], ["db", "current"], ["doctor", "--json"]):
        proc = subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True, text=True, env=env,
                              timeout=120, cwd=tmp_path)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0, out
        assert "Zq7" not in out, out
