"""Smaller hardening items of issue 11, each against the real part where there is one: CLI errors print
remote text literally, MailWizz uids and base URLs are validated before any request, Alembic takes a
database password with '%', and `inventory load --dry-run` writes nothing (no migration, no new file)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from sqlalchemy import inspect
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from activities import db
from activities.mailwizz import MailwizzClient, ingest_stats
from cli.common import fail
from cli.main import app
from models.mailwizz import MailwizzError, campaign_uid
from models.settings import get_settings
from tests.servers.mailwizz import MailwizzDouble
from tests.test_inventory import BASE
from tests.test_ops_mailwizz import KEY

MW_HOST = "127.0.50.12"


def test_fail_prints_remote_text_literally(capsys: pytest.CaptureFixture[str]) -> None:
    remote = "server said [/] [bold]x[/bold] [link=https://evil.example]click[/link] \\[y]"
    with pytest.raises(typer.Exit) as exc:
        fail(remote)
    assert exc.value.exit_code == 1
    err = capsys.readouterr().err
    assert remote in err.replace("\n", ""), err


@pytest.fixture
def mailwizz() -> Iterator[MailwizzDouble]:
    with MailwizzDouble(MW_HOST) as mw:
        yield mw


@pytest.mark.parametrize("uid", ["../customers", "abc/def", "a?b=1", "a%2e%2e", "x y", "", "a\nb", "a#b", 7])
async def test_campaign_uids_are_validated_before_any_request(mailwizz: MailwizzDouble, uid: object) -> None:
    with pytest.raises(ValueError, match="campaign uid"):
        campaign_uid(uid)
    async with MailwizzClient(mailwizz.base_url, KEY, backoff=0.01) as mw:
        for call in (mw.campaign_stats, mw.campaign_bounces, mw.campaign_unsubscribes):
            with pytest.raises(ValueError, match="campaign uid"):
                await call(uid)  # type: ignore[arg-type]
    assert mailwizz.requests == []


async def test_a_bad_uid_from_the_server_is_skipped_not_requested(
        sqlite_url: str, mailwizz: MailwizzDouble, monkeypatch: pytest.MonkeyPatch) -> None:
    from activities.inventory import apply_inventory
    from models.inventory import parse

    inv = BASE.replace('base_url = "http://127.0.0.1:9/api"', f'base_url = "{mailwizz.base_url}"', 1)
    apply_inventory(parse(inv), actor="test", url=sqlite_url)
    monkeypatch.setenv("EMAIL_ENGINE_MAILWIZZ_KEYS", f"t1={KEY}")
    get_settings.cache_clear()
    mailwizz.state.api_key = KEY
    mailwizz.state.campaigns = {
        "goodcampaign1": {"name": "ok", "status": "sending", "stats": {"processed_count": 5}},
        "../../customers": {"name": "evil", "status": "sending", "stats": {}},
    }
    figures = await ingest_stats("t1", backoff=0.01)
    assert figures.campaigns_read == 1
    paths = [p for _, p in mailwizz.requests]
    assert "/api/campaigns/goodcampaign1/stats" in paths
    assert not any("customers" in p for p in paths), paths


@pytest.mark.parametrize("url", ["http://mailwizz.example/api", "https://u:p@mailwizz.example/api",
                                 "https://mailwizz.example/api?x=1"])
def test_mailwizz_client_refuses_a_base_url_loaded_before_the_rule(url: str) -> None:
    with pytest.raises(MailwizzError, match="MailWizz base URL refused"):
        MailwizzClient(url, KEY)


def test_alembic_takes_a_percent_in_the_database_password(postgres_url: str) -> None:
    """PostgreSQL here trusts loopback, so any password connects: what is tested is that the URL with
    '%' (url-encoded as %25) survives Alembic's configparser interpolation."""
    url = make_url(postgres_url).set(password="p%ss%(word)s%").render_as_string(hide_password=False)
    assert "%25" in url
    db.upgrade(url)
    assert db.current_revision(url) == db.head_revision()
    db.dispose_engine(url)


def test_alembic_takes_a_percent_in_a_sqlite_path(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / '100%' / 'engine.db'}"
    db.upgrade(url)
    assert db.current_revision(url) == db.head_revision()
    db.dispose_engine(url)


def test_dry_run_on_a_missing_database_creates_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       cli: CliRunner) -> None:
    target = tmp_path / "var" / "engine.db"
    monkeypatch.setenv("EMAIL_ENGINE_DATABASE_URL", f"sqlite:///{target}")
    monkeypatch.setenv("EMAIL_ENGINE_VAR_DIR", str(tmp_path / "var"))
    get_settings.cache_clear()
    f = tmp_path / "inv.toml"
    f.write_text(BASE)
    result = cli.invoke(app, ["inventory", "load", str(f), "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    assert '"ip": 3' in result.stdout
    assert not target.exists() and not target.parent.exists()
    get_settings.cache_clear()


def test_dry_run_never_migrates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: CliRunner) -> None:
    url = f"sqlite:///{tmp_path / 'engine.db'}"
    db.upgrade(url, "0001")  # an old database: a dry run must not bring it forward
    monkeypatch.setenv("EMAIL_ENGINE_DATABASE_URL", url)
    get_settings.cache_clear()
    before = db.current_revision(url)
    tables = set(inspect(db.get_engine(url)).get_table_names())
    f = tmp_path / "inv.toml"
    f.write_text(BASE)
    result = cli.invoke(app, ["inventory", "load", str(f), "--dry-run"])
    assert result.exit_code == 1
    assert "run `email-engine db upgrade` first (a dry run never migrates)" in result.output
    assert db.current_revision(url) == before
    db.dispose_engine(url)
    assert set(inspect(db.get_engine(url)).get_table_names()) == tables
    db.dispose_engine(url)
    get_settings.cache_clear()
