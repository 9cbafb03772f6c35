"""Settings parsing that later features rely on."""

from __future__ import annotations

import pytest

from models.settings import Settings, parse_resolvers


def test_resolvers_parse_host_port_and_ipv6() -> None:
    assert parse_resolvers("127.0.0.1, 127.0.0.2:5353,[::1]:53,::1") == [
        ("127.0.0.1", 53), ("127.0.0.2", 5353), ("::1", 53), ("::1", 53)]
    assert parse_resolvers("") == []


@pytest.mark.parametrize("bad", ["dns.example", "127.0.0.1:0", "127.0.0.1:x", "1.2.3.4:99999"])
def test_bad_resolvers_are_named(bad: str) -> None:
    with pytest.raises(ValueError, match="EMAIL_ENGINE_DNS_RESOLVERS"):
        parse_resolvers(bad)


def test_default_database_is_sqlite_under_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EMAIL_ENGINE_DATABASE_URL", raising=False)
    monkeypatch.setenv("EMAIL_ENGINE_VAR_DIR", "somewhere")
    assert Settings(_env_file=None).resolved_database_url() == "sqlite:///somewhere/email-engine.db"  # type: ignore[call-arg]
