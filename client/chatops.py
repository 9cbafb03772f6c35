"""ChatOps: a Telegram button press becomes the Temporal update or signal stored for that button.

Only presses from configured chats (EMAIL_ENGINE_TELEGRAM_CHAT_IDS) by configured users
(EMAIL_ENGINE_TELEGRAM_ADMIN_IDS) are obeyed; anything else is ignored and logged. A button acts
once (an atomic mark set before acting: two concurrent presses, one acts) and only until it expires;
a failover button acts only on the saga run that sent it, a warmup Resume only on its own pause.
A second press answers with what the first one did.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from activities import alert_store
from models.alerting import action_allowed, build_args

log = logging.getLogger("email_engine.chatops")

UPDATE_TIMEOUT = 30.0


@dataclass(frozen=True)
class Press:
    chat_id: int
    user_id: int
    username: str
    data: str

    @property
    def actor(self) -> str:
        return f"telegram:{self.user_id}" + (f" @{self.username}" if self.username else "")


@dataclass(frozen=True)
class Answer:
    text: str
    acted: bool = False  # the signal/update was delivered (the alert's buttons can go)


async def handle_press(client: Client, press: Press, chats: frozenset[int], admins: frozenset[int],
                       url: str | None = None) -> Answer | None:
    """The answer to show in the chat, or None when the press is ignored (not an allowed chat/user)."""
    if press.chat_id not in chats or press.user_id not in admins:
        log.warning("chatops: ignored button %r from user %s in chat %s (not configured)",
                    press.data[:64], press.user_id, press.chat_id)
        return None
    if not press.data.startswith("ee:"):
        log.warning("chatops: ignored unknown callback data %r from %s", press.data[:64], press.actor)
        return None
    token = press.data.removeprefix("ee:")
    button = await asyncio.to_thread(alert_store.load_button, token, url)
    if button is None:
        return Answer("This button is unknown or expired.")
    if not action_allowed(button.workflow_id, button.kind, button.name):
        log.error("chatops: stored button %s asks %s %s of %s, which the bot does not do",
                  token, button.kind, button.name, button.workflow_id)
        return Answer("This action is not allowed.")
    # Single use, decided before acting: of two presses (two admins, a double tap) exactly one passes.
    if not await asyncio.to_thread(alert_store.claim_button, token, press.actor, None, url):
        return await _not_claimed(token, url)
    # A run-bound button (a failover saga) acts on that run only: once it is over, Temporal answers
    # NOT_FOUND, and a later saga of the same IP (another incident) is never touched.
    handle = client.get_workflow_handle(button.workflow_id, run_id=button.run_id)
    args = build_args(button.kind, button.name, button.arg, press.actor)
    try:
        if button.kind == "update":
            result = await asyncio.wait_for(handle.execute_update(button.name, args=args), UPDATE_TIMEOUT)
            text = f"{button.label}: done" + (f" ({result})" if result not in (None, "") else "")
        else:
            await handle.signal(button.name, args=args)
            text = f"{button.label}: sent"
        refused = False
    except WorkflowUpdateFailedError as exc:
        refused = True
        cause = exc.cause.message if exc.cause is not None and hasattr(exc.cause, "message") else str(exc)
        text = f"{button.label}: refused: {cause}"
    except RPCError as exc:
        log.error("chatops: %s %s on %s (run %s): %s", button.kind, button.name, button.workflow_id,
                  button.run_id, exc)
        if exc.status == RPCStatusCode.NOT_FOUND:
            text = (f"{button.label}: nothing done: this button belongs to an incident that is over "
                    f"({button.workflow_id} run {button.run_id})" if button.run_id else
                    f"{button.label}: nothing done: workflow {button.workflow_id} is not running")
            await asyncio.to_thread(alert_store.record_use, token, press.actor, text, url)
            return Answer(text)
        await asyncio.to_thread(alert_store.release_button, token, press.actor, url)
        return Answer(f"{button.label}: Temporal error: {exc.message}")  # nothing done: may press again
    except TimeoutError:
        log.error("chatops: update %s on %s timed out (no worker?)", button.name, button.workflow_id)
        await asyncio.to_thread(alert_store.release_button, token, press.actor, url)
        return Answer(f"{button.label}: no answer from the workflow within {UPDATE_TIMEOUT:.0f}s "
                      "(is a worker running?)")
    log.info("chatops: %s pressed %s on %s: %s", press.actor, button.label, button.workflow_id, text)
    await asyncio.to_thread(alert_store.record_use, token, press.actor, text, url)
    return Answer(f"{text} ({button.workflow_id}, by {press.actor})", acted=not refused)


async def _not_claimed(token: str, url: str | None) -> Answer:
    """Why a press was not let through: used (by whom, with what result), or expired."""
    button = await asyncio.to_thread(alert_store.load_button, token, url)
    if button is None:
        return Answer("This button is unknown or expired.")
    if button.used_at is not None:
        if button.result is None:
            return Answer(f"Already being done by {button.used_by}; nothing else was sent.")
        return Answer(f"Already done by {button.used_by}: {button.result}")
    when = button.expires_at.isoformat(timespec="minutes") if button.expires_at else "?"
    return Answer(f"{button.label}: this button expired at {when}; nothing done. "
                  "Use the CLI or a newer alert.")
