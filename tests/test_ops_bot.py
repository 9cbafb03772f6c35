"""ChatOps end to end: an alert with buttons goes to the Telegram double, a press runs the Temporal
update/signal on a real dev server (temporal_local), and the bot answers in the chat.

Telegram cannot be reached from tests: tests/servers/telegram.py speaks the Bot API on loopback.
The workflow below is a tiny stand-in exposing the same update/signal names as the failover saga
("approve"/"deny") and the warmup ("pause"/"resume").
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker

from activities.alerts import Alert, AlertAction, deliver_alert
from cli.bot import run_bot
from models.settings import get_settings
from tests.servers.telegram import TelegramDouble

HOST = "127.0.50.3"


@dataclass
class Req:  # the shape of the warmup's PauseRequest/ResumeRequest
    reason: str = ""
    actor: str = ""
CHAT, ADMIN, STRANGER = -100777, 1001, 2002


@workflow.defn(name="ChatOpsProbe", sandboxed=False)  # test double; this module imports I/O libraries
class ChatOpsProbe:
    def __init__(self) -> None:
        self.events: list[str] = []
        self.done = False

    @workflow.run
    async def run(self) -> list[str]:
        await workflow.wait_condition(lambda: self.done)
        return self.events

    @workflow.update
    async def approve(self, actor: str) -> str:
        self.events.append(f"approve by {actor}")
        return "standby activated"

    @approve.validator
    def _check(self, actor: str) -> None:
        if "approve" in " ".join(self.events):
            raise ValueError("already approved")

    @workflow.update
    async def deny(self, actor: str) -> str:
        self.events.append(f"deny by {actor}")
        return "kept in quarantine"

    @workflow.signal
    def pause(self, req: Req) -> None:
        self.events.append(f"pause by {req.actor}")

    @workflow.signal
    def resume(self, req: Req) -> None:
        self.events.append(f"resume by {req.actor}: {req.reason}")

    @workflow.signal
    def finish(self) -> None:
        self.done = True

    @workflow.query
    def seen(self) -> list[str]:
        return self.events


async def until(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def test_buttons_drive_temporal(temporal_local, sqlite_url: str, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
                                      caplog: pytest.LogCaptureFixture) -> None:
    client: Client = temporal_local.client
    ip = f"198.51.100.{random.randint(1, 254)}"
    queue = f"chatops-{uuid.uuid4()}"
    with TelegramDouble(HOST) as tg:
        for k, v in {"TELEGRAM_BOT_TOKEN": tg.state.token, "TELEGRAM_BASE_URL": tg.base_url,
                     "TELEGRAM_CHAT_IDS": str(CHAT), "TELEGRAM_ADMIN_IDS": f"{ADMIN}, 3003"}.items():
            monkeypatch.setenv(f"EMAIL_ENGINE_{k}", v)
        get_settings.cache_clear()
        settings = get_settings()
        async with Worker(client, task_queue=queue, workflows=[ChatOpsProbe]):
            fo = await client.start_workflow(ChatOpsProbe.run, id=f"failover/client-2/{ip}", task_queue=queue)
            wu = await client.start_workflow(ChatOpsProbe.run, id=f"warmup/client-2/{ip}", task_queue=queue)
            assert await deliver_alert(Alert(
                key=f"failover/client-2/{ip}", severity="critical", title=f"Failover held for {ip}",
                actions=[AlertAction("Approve", fo.id, "approve", "update", arg="approved from the alert"),
                         AlertAction("Deny", fo.id, "deny", "update", arg="{actor} denied")]), "t1")
            assert await deliver_alert(Alert(
                key=f"warmup/client-2/{ip}", severity="warning", title=f"Warmup of {ip} paused by the gate",
                actions=[AlertAction("Pause", wu.id, "pause"), AlertAction("Resume", wu.id, "resume")]), "t2")
            buttons = {b["text"]: b["callback_data"] for m in tg.state.messages
                       for b in m["reply_markup"]["inline_keyboard"][0]}
            assert set(buttons) == {"Approve", "Deny", "Pause", "Resume"}

            stop = asyncio.Event()
            bot = asyncio.create_task(run_bot(settings, client, stop, poll_timeout=1))
            try:
                with caplog.at_level(logging.WARNING, logger="email_engine.chatops"):
                    tg.press(CHAT, STRANGER, buttons["Approve"], username="mallory")  # not an admin
                    tg.press(12345, ADMIN, buttons["Approve"])  # not a configured chat
                    tg.press(CHAT, ADMIN, buttons["Approve"])
                    await until(lambda: len(tg.state.answers) >= 1)
                    tg.press(CHAT, ADMIN, buttons["Resume"])
                    await until(lambda: len(tg.state.answers) >= 2)
                    tg.press(CHAT, ADMIN, buttons["Approve"])  # the same button again
                    await until(lambda: len(tg.state.answers) >= 3)
            finally:
                stop.set()
                await bot
            answers = [a["text"] for a in tg.state.answers]
            assert answers[0].startswith("Approve: done (standby activated)")
            assert answers[1].startswith("Resume: sent")
            assert answers[2].startswith("Already done by telegram:1001 @alice")
            assert len(answers) == 3  # the two foreign presses got no answer
            assert len(tg.state.edits) == 2  # after Approve and Resume the alert's buttons were removed
            assert "from user 2002" in caplog.text and "in chat 12345" in caplog.text
            said = [m["text"] for m in tg.state.messages if m.get("reply_markup") is None]
            assert any(f"failover/client-2/{ip}" in t and "standby activated" in t for t in said)
            assert await fo.query(ChatOpsProbe.seen) == ["approve by approved from the alert (by telegram:1001 @alice)"]
            who = "telegram:1001 @alice"
            assert await wu.query(ChatOpsProbe.seen) == [f"resume by {who}: resume via Telegram by {who}"]
            for h in (fo, wu):
                await h.signal(ChatOpsProbe.finish)
                await h.result()
    get_settings.cache_clear()


def test_bot_command_refuses_incomplete_settings(cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from cli.main import app

    monkeypatch.delenv("EMAIL_ENGINE_TELEGRAM_BOT_TOKEN", raising=False)
    get_settings.cache_clear()
    r = cli.invoke(app, ["bot"])
    assert r.exit_code == 1 and "EMAIL_ENGINE_TELEGRAM_BOT_TOKEN is not set" in r.output
    monkeypatch.setenv("EMAIL_ENGINE_TELEGRAM_BOT_TOKEN", "123:abc")
    monkeypatch.setenv("EMAIL_ENGINE_TELEGRAM_CHAT_IDS", "-100, x")
    get_settings.cache_clear()
    r = cli.invoke(app, ["bot"])
    assert r.exit_code == 1 and "EMAIL_ENGINE_TELEGRAM_CHAT_IDS: 'x' is not an integer" in r.output
    monkeypatch.setenv("EMAIL_ENGINE_TELEGRAM_CHAT_IDS", "-100")
    get_settings.cache_clear()
    r = cli.invoke(app, ["bot"])
    assert r.exit_code == 1 and "the bot obeys nobody else" in r.output
    assert "123:abc" not in r.output
    get_settings.cache_clear()
