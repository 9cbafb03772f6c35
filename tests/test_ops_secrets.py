"""No bot token in any log line: python-telegram-bot's InvalidToken says "The token `<token>` was
rejected by the server", and the alerts activity and the bot logged or raised it as is (issue 11).

Telegram cannot be reached from tests: the Bot API double (tests/servers/telegram.py) answers 401 to
any token but its own, as Telegram does.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from activities.alerts import Alert, AlertAction, deliver_alert
from activities.telegram import TOKEN_REJECTED
from cli.bot import BotTokenRejected, run_bot
from models.settings import get_settings
from tests.servers.telegram import TelegramDouble

HOST = "127.0.50.13"
BAD_TOKEN = "987654321:AAH-bad-SECRET-token-not-for-logs"
SECRET_HALF = BAD_TOKEN.split(":")[1]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def telegram(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TelegramDouble]:
    with TelegramDouble(HOST) as tg:
        for k, v in {"TELEGRAM_BOT_TOKEN": BAD_TOKEN, "TELEGRAM_BASE_URL": tg.base_url,
                     "TELEGRAM_CHAT_IDS": "-100500", "TELEGRAM_ADMIN_IDS": "42"}.items():
            monkeypatch.setenv(f"EMAIL_ENGINE_{k}", v)
        get_settings.cache_clear()
        yield tg
    get_settings.cache_clear()


def assert_no_secret(records: list[logging.LogRecord], *streams: str) -> None:
    for r in records:
        text = r.getMessage() + (logging.Formatter().formatException(r.exc_info) if r.exc_info else "")
        assert SECRET_HALF not in text, f"{r.name}: {text}"
    for s in streams:
        assert SECRET_HALF not in s, s


async def test_an_alert_with_a_rejected_token_logs_a_fixed_message(
        telegram: TelegramDouble, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    with caplog.at_level(logging.DEBUG):
        sent = await deliver_alert(Alert(key="secret/test", title="t", body="b", severity="critical",
                                         actions=[AlertAction("Resume", "warmup/t1/10.0.0.1", "resume")]), "c1")
    assert sent is False
    assert telegram.state.messages == []
    out, err = capfd.readouterr()
    assert_no_secret(caplog.records, out, err)
    assert f"[secret/test] telegram delivery failed: {TOKEN_REJECTED}" in caplog.text


async def test_the_bot_refuses_a_rejected_token_without_quoting_it(
        temporal_local, telegram: TelegramDouble, caplog: pytest.LogCaptureFixture,  # type: ignore[no-untyped-def]
        capfd: pytest.CaptureFixture[str]) -> None:
    with caplog.at_level(logging.DEBUG), pytest.raises(BotTokenRejected) as exc:
        await run_bot(get_settings(), temporal_local.client, asyncio.Event(), poll_timeout=1)
    assert str(exc.value) == TOKEN_REJECTED
    assert exc.value.__cause__ is None and exc.value.__suppress_context__
    out, err = capfd.readouterr()
    assert_no_secret(caplog.records, out, err)


def test_the_bot_command_prints_no_token(temporal_local, telegram: TelegramDouble, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The real `email-engine bot` process: what reaches its stdout and stderr."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EMAIL_ENGINE_VAR_DIR": str(tmp_path),
           "EMAIL_ENGINE_TEMPORAL_ADDRESS": temporal_local.client.service_client.config.target_host}
    proc = subprocess.run([sys.executable, "-c", "from cli.main import main; main()", "bot"], env=env,
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert TOKEN_REJECTED in proc.stderr
    assert SECRET_HALF not in proc.stdout + proc.stderr, proc.stderr
