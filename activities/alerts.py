"""The one alerts activity every workflow uses. It never fails the workflow that sends it.

Every alert is deduplicated (the same key within the window is sent once: state in the database
table `alert_sent`, shared by worker threads and processes and surviving activity retries), written
to the log, and, with a bot token configured, sent to every configured Telegram chat as HTML with
ChatOps buttons (rate-limited per chat, retried). A Telegram or database outage is logged, never
raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from dataclasses import dataclass, field

from temporalio import activity

from activities.keepalive import heartbeating

log = logging.getLogger("email_engine.alerts")

#: Longest time one alert may spend on Telegram (callers give send_alert a 60 s start-to-close timeout).
TELEGRAM_BUDGET_SECONDS = 45.0


@dataclass(frozen=True)
class AlertAction:
    """A button for ChatOps: sends `name` (a signal or update) to `workflow_id`.

    Buttons the bot obeys: workflow "failover/<tenant>/<ip>" with updates "approve"/"deny", and
    "warmup/<tenant>/<ip>" with signals "pause"/"resume". What is sent (models.alerting.build_args):
    no `arg`: an update gets a reason string, a signal {"reason", "actor"}; a JSON-object `arg` is sent
    as that object; another `arg` as that string. `{actor}` in it becomes who pressed the button.
    """

    label: str
    workflow_id: str
    name: str
    kind: str = "signal"  # "signal" | "update"
    arg: str | None = None
    #: The run the press acts on. None: for a failover button sent by that saga itself, the saga's
    #: run (a later saga of the same IP is another incident); warmup buttons are never run-bound.
    run_id: str | None = None
    #: Seconds the button stays good. None: a failover's approval timeout, 8 days for a warmup.
    expires_in_seconds: int | None = None


@dataclass(frozen=True)
class Alert:
    key: str  # deduplication key: the same key within the dedup window is sent once
    title: str
    body: str = ""
    severity: str = "info"  # info | warning | critical
    actions: list[AlertAction] = field(default_factory=list)
    #: Dedup window for this alert in seconds (None: EMAIL_ENGINE_ALERT_DEDUP_SECONDS).
    dedup_seconds: int | None = None


def _sender() -> tuple[str, str]:
    """(workflow id, run id) of the workflow whose activity is sending, or ("", "")."""
    with contextlib.suppress(RuntimeError):
        info = activity.info()
        return info.workflow_id or "", info.workflow_run_id or ""
    return "", ""


def _claimant() -> str:
    """Who is sending: the activity attempt's identity (stable across its retries), or nobody."""
    with contextlib.suppress(RuntimeError):
        info = activity.info()
        return f"{info.workflow_id}/{info.workflow_run_id}/{info.activity_id}"
    return ""


async def deliver_alert(alert: Alert, claimant: str | None = None) -> bool:
    """Deduplicate, log and (with a token) send; True if it went out, False if suppressed or failed.
    `claimant` (default: the running activity's identity) lets a retry of the same sender resend."""
    if claimant is None:
        claimant = _claimant()
    from telegram.error import InvalidToken

    from activities import alert_store
    from activities.telegram import TOKEN_REJECTED, redact
    from models.alerting import action_allowed, binds_run, button_ttl, format_html, parse_id_list
    from models.settings import get_settings
    from models.tables import utcnow

    settings = get_settings()
    level = {"critical": logging.ERROR, "warning": logging.WARNING}.get(alert.severity, logging.INFO)
    window = settings.alert_dedup_seconds if alert.dedup_seconds is None else alert.dedup_seconds
    try:
        fresh = await asyncio.to_thread(alert_store.claim, alert.key, window, claimant)
    except Exception as exc:  # the database is down: better a duplicate than a lost alert
        log.warning("alert dedup unavailable (%s); sending anyway", exc)
        fresh = True
    if not fresh:
        log.info("[%s] duplicate within %ss, suppressed: %s", alert.key, window, alert.title)
        return False
    log.log(level, "[%s] %s: %s", alert.key, alert.title, alert.body)
    token = settings.telegram_bot_token.get_secret_value()
    if not token:  # the log is the delivery
        with contextlib.suppress(Exception):
            await asyncio.to_thread(alert_store.settle, alert.key, claimant, True)
        return True
    delivered = False
    try:
        chats = parse_id_list(settings.telegram_chat_ids, "EMAIL_ENGINE_TELEGRAM_CHAT_IDS")
        if not chats:
            log.error("telegram: a bot token is set but EMAIL_ENGINE_TELEGRAM_CHAT_IDS is empty")
        actions = [a for a in alert.actions if action_allowed(a.workflow_id, a.kind, a.name)]
        for a in alert.actions:
            if a not in actions:
                log.error("[%s] button %r (%s %s to %s) is not a ChatOps action the bot obeys; left out",
                          alert.key, a.label, a.kind, a.name, a.workflow_id)
        tokens: list[str] = []
        if actions and chats:
            now = utcnow()
            sender_id, sender_run = _sender()
            new = []
            for a in actions:
                run_id = a.run_id
                if run_id is None and binds_run(a.workflow_id) and a.workflow_id == sender_id:
                    run_id = sender_run or None
                ttl = (dt.timedelta(seconds=a.expires_in_seconds) if a.expires_in_seconds is not None
                       else button_ttl(a.workflow_id, settings.failover_approval_timeout_hours))
                new.append(alert_store.NewButton(a.label, a.workflow_id, a.name, a.kind, a.arg, run_id, now + ttl))
            tokens = await asyncio.to_thread(alert_store.store_buttons, alert.key, new)
        buttons = [(a.label, f"ee:{t}") for a, t in zip(actions, tokens, strict=True)] if tokens else []
        text = format_html(alert)
        if chats:
            from activities.telegram import make_bot, send_html

            results: list[bool] = []
            try:
                # callers give send_alert 60 s: stay inside, whatever Telegram does
                async with asyncio.timeout(TELEGRAM_BUDGET_SECONDS):
                    async with make_bot(token, settings.telegram_base_url) as bot:
                        for chat in sorted(chats):
                            results.append(await send_html(bot, chat, text, buttons,
                                                           settings.alert_rate_per_minute))
            finally:
                delivered = any(results)
    except InvalidToken:  # its message carries the token: a fixed text instead
        log.error("[%s] telegram delivery failed: %s", alert.key, TOKEN_REJECTED)
    except Exception as exc:  # never fail the workflow: a Telegram outage is logged
        log.error("[%s] telegram delivery failed: %s: %s", alert.key, type(exc).__name__, redact(str(exc), token))
    with contextlib.suppress(Exception):
        await asyncio.to_thread(alert_store.settle, alert.key, claimant, delivered)
    return delivered


@activity.defn(name="send_alert")
@heartbeating
async def send_alert(alert: Alert) -> bool:
    """Deliver an alert; returns whether it went out (False is logged, never raised)."""
    try:
        return await deliver_alert(alert, _claimant())
    except Exception as exc:  # the message may carry a secret (InvalidToken does): the type only
        log.error("[%s] alert not delivered: %s", alert.key, type(exc).__name__)
        return False
