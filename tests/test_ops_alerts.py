"""Alerts: HTML formatting, deduplication in the database, Telegram delivery (test double), outages.

Telegram itself cannot be reached from tests: tests/servers/telegram.py is a local HTTP server
speaking the Bot API, and python-telegram-bot's base_url points at it.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Iterator

import pytest
from temporalio.testing import ActivityEnvironment

from activities import alert_store
from activities.alerts import Alert, AlertAction, send_alert
from activities.telegram import RateLimiter
from models.alerting import action_allowed, format_html, parse_id_list
from models.settings import get_settings
from tests.servers.telegram import TelegramDouble

HOST = "127.0.50.1"
CHATS = (-100500, 4242)


@pytest.fixture
def telegram(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TelegramDouble]:
    with TelegramDouble(HOST) as tg:
        monkeypatch.setenv("EMAIL_ENGINE_TELEGRAM_BOT_TOKEN", tg.state.token)
        monkeypatch.setenv("EMAIL_ENGINE_TELEGRAM_BASE_URL", tg.base_url)
        monkeypatch.setenv("EMAIL_ENGINE_TELEGRAM_CHAT_IDS", ",".join(map(str, CHATS)))
        get_settings.cache_clear()
        yield tg
    get_settings.cache_clear()


def env_for(activity_id: str) -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, workflow_id="failover/client-2/45.124.20.7", activity_id=activity_id)
    return env


def test_html_is_escaped_and_bounded() -> None:
    a = Alert(key="k<1>", title="IP <45.124.20.7> & co", body="<script>x</script> " + "y" * 5000 + " &amp;",
              severity="critical")
    text = format_html(a)
    assert text.startswith("\U0001f6a8 <b>IP &lt;45.124.20.7&gt; &amp; co</b>\n&lt;script&gt;")
    assert "<script>" not in text and "<code>k&lt;1&gt;</code>" in text
    assert len(text) <= 4096 and text.endswith("</code>")
    short = format_html(Alert(key="k", title="t", body="a & b"))
    assert short == "\u2139\ufe0f <b>t</b>\na &amp; b\n\n<code>k</code>"


def test_id_lists_and_allowed_actions() -> None:
    assert parse_id_list(" -100500, 42 ,", "X") == {-100500, 42}
    with pytest.raises(ValueError, match="X: 'abc'"):
        parse_id_list("1,abc", "X")
    assert action_allowed("failover/client-2/45.124.20.7", "update", "approve")
    assert action_allowed("warmup/client-1/2001:db8::7", "signal", "resume")
    assert not action_allowed("warmup/client-1/45.1.2.3", "update", "pause")  # wrong kind
    assert not action_allowed("failover/client-2/45.124.20.7", "update", "terminate")
    assert not action_allowed("mta-deploy/pmta-1", "signal", "pause")
    for name in ("approve", "deny", "undo"):  # the active guard's step (issue 15)
        assert action_allowed("guard/client-1/45.123.10.7", "update", name)
    assert not action_allowed("guard/client-1/45.123.10.7", "signal", "undo")
    assert not action_allowed("guard/client-1/45.123.10.7", "update", "terminate")


def test_rate_limiter_spaces_messages_per_chat() -> None:
    lim = RateLimiter()
    waits = [lim.reserve(1, 3, now=100.0) for _ in range(4)]
    assert waits == [0.0, 0.0, 0.0, 60.0]
    assert lim.reserve(2, 3, now=100.0) == 0.0  # another chat has its own budget
    assert lim.reserve(1, 3, now=161.0) == 0.0 + max(0.0, 160.0 + 60 - 161.0 - 60)  # window slid


def test_dedup_claims_are_atomic_and_windowed(db_url: str) -> None:
    import datetime as dt

    t0 = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)
    assert alert_store.claim("k1", 600, "wf/run/1", now=t0, url=db_url)
    assert not alert_store.claim("k1", 600, "wf/run/2", now=t0 + dt.timedelta(seconds=10), url=db_url)
    # a retry of the same activity attempt may send again (its first try may have died mid-send)
    assert alert_store.claim("k1", 600, "wf/run/1", now=t0 + dt.timedelta(seconds=20), url=db_url)
    assert alert_store.claim("k1", 600, "wf/run/3", now=t0 + dt.timedelta(seconds=700), url=db_url)
    # a failed delivery releases the claim: the next alert with the key goes out
    alert_store.settle("k1", "wf/run/3", delivered=False, url=db_url)
    assert alert_store.claim("k1", 600, "wf/run/4", now=t0 + dt.timedelta(seconds=701), url=db_url)

    results: list[bool] = []
    barrier = threading.Barrier(8)

    def worker(n: int) -> None:
        barrier.wait()
        results.append(alert_store.claim("race", 600, f"wf/run/{n}", now=t0, url=db_url))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]


async def test_alert_goes_to_every_chat_as_html_with_buttons(telegram: TelegramDouble) -> None:
    alert = Alert(
        key="failover/client-2/45.124.20.7", severity="critical", title="Held failover: client-2 <45.124.20.7>",
        body="listed on zen & bl; circuit breaker open",
        actions=[AlertAction("Approve", "failover/client-2/45.124.20.7", "approve", "update"),
                 AlertAction("Deny", "failover/client-2/45.124.20.7", "deny", "update"),
                 AlertAction("Terminate", "failover/client-2/45.124.20.7", "terminate", "update")],
    )
    assert await env_for("1").run(send_alert, alert) is True
    msgs = telegram.state.messages
    assert sorted(m["chat_id"] for m in msgs) == sorted(CHATS)
    m = msgs[0]
    assert m["parse_mode"] == "HTML"
    assert "<b>Held failover: client-2 &lt;45.124.20.7&gt;</b>" in m["text"] and "zen &amp; bl" in m["text"]
    row = m["reply_markup"]["inline_keyboard"][0]
    assert [b["text"] for b in row] == ["Approve", "Deny"]  # the unknown action is left out
    button = alert_store.load_button(row[0]["callback_data"].removeprefix("ee:"))
    assert button is not None and (button.workflow_id, button.name, button.kind) == (
        "failover/client-2/45.124.20.7", "approve", "update")
    # the same key from another activity within the window: suppressed, nothing sent
    assert await env_for("2").run(send_alert, alert) is False
    assert len(telegram.state.messages) == len(CHATS)


async def test_telegram_outage_is_logged_not_raised(telegram: TelegramDouble, caplog: pytest.LogCaptureFixture,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import activities.telegram as tgmod

    monkeypatch.setattr(tgmod, "BACKOFF", 0.01)
    telegram.state.fail_send = 100
    alert = Alert(key="dns/client-1/x.example", title="DNS failing", severity="warning")
    with caplog.at_level(logging.ERROR, logger="email_engine.telegram"):
        assert await env_for("3").run(send_alert, alert) is False
    assert "unreachable after 3 attempts" in caplog.text
    assert telegram.state.messages == []
    # the claim was released: once Telegram is back, the next alert with the key goes out
    telegram.state.fail_send = 0
    assert await env_for("4").run(send_alert, alert) is True
    assert len(telegram.state.messages) == len(CHATS)


async def test_flood_control_is_waited_out(telegram: TelegramDouble) -> None:
    telegram.state.retry_after = 1
    assert await env_for("5").run(send_alert, Alert(key="flood", title="t")) is True
    assert len(telegram.state.messages) == len(CHATS)


async def test_without_token_alerts_go_to_the_log(sqlite_url: str, caplog: pytest.LogCaptureFixture) -> None:
    get_settings.cache_clear()
    assert get_settings().telegram_bot_token.get_secret_value() == ""
    alert = Alert(key="warmup/client-1/45.123.10.41", title="Warmup paused", body="bounce rate 7%",
                  severity="warning")
    with caplog.at_level(logging.INFO, logger="email_engine.alerts"):
        assert await env_for("6").run(send_alert, alert) is True
        assert await env_for("7").run(send_alert, alert) is False
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Warmup paused: bounce rate 7%" in warnings[0].getMessage()
    assert "suppressed" in caplog.text


async def test_database_down_still_alerts(monkeypatch: pytest.MonkeyPatch, tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    # an unmigrated database: the dedup table is missing -> the alert is still logged, never raised
    monkeypatch.setenv("EMAIL_ENGINE_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    get_settings.cache_clear()
    with caplog.at_level(logging.INFO, logger="email_engine.alerts"):
        assert await env_for("8").run(send_alert, Alert(key="k", title="still here")) is True
    assert "still here" in caplog.text and "dedup unavailable" in caplog.text
    get_settings.cache_clear()


def test_button_arguments() -> None:
    from models.alerting import build_args
    from models.warmup_contracts import PauseRequest, ResumeRequest

    who = "telegram:7 @bob"
    assert build_args("update", "approve", None, who) == ["approve via Telegram by telegram:7 @bob"]
    assert build_args("signal", "pause", None, who) == [PauseRequest(reason="pause via Telegram by telegram:7 @bob",
                                                                     actor=who)]
    assert build_args("signal", "resume", None, who) == [ResumeRequest(reason="resume via Telegram by telegram:7 @bob",
                                                                       actor=who)]
    assert build_args("update", "deny", "denied from the alert", who) == ["denied from the alert (by telegram:7 @bob)"]
    assert build_args("update", "deny", "{actor} said no", who) == ["telegram:7 @bob said no"]
    assert build_args("signal", "pause", '{"days": 2, "actor": "{actor}"}', who) == [PauseRequest(days=2, actor=who)]


async def test_slow_telegram_stays_within_the_budget(telegram: TelegramDouble, monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    import time

    import activities.alerts as alerts_mod

    monkeypatch.setattr(alerts_mod, "TELEGRAM_BUDGET_SECONDS", 0.5)
    telegram.state.send_delay = 2.0
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="email_engine.alerts"):
        assert await env_for("9").run(send_alert, Alert(key="slow", title="t")) is False
    assert time.monotonic() - started < 1.8
    assert "telegram delivery failed: TimeoutError" in caplog.text
