"""`email-engine bot`: the Telegram ChatOps bot (Approve/Deny held failovers, Pause/Resume warmups)."""

from __future__ import annotations

import html
import logging
from typing import TYPE_CHECKING

from cli.common import fail

if TYPE_CHECKING:  # the bot's libraries load when the bot runs, not with `email-engine --help`
    import asyncio

    from telegram import Update
    from telegram.ext import Application, ContextTypes
    from temporalio.client import Client

    from models.settings import Settings

log = logging.getLogger("email_engine.bot")


def build_application(settings: Settings, client: Client) -> Application:
    from telegram.ext import Application, CallbackQueryHandler

    from client.chatops import Press, handle_press
    from models.alerting import parse_id_list

    token = settings.telegram_bot_token.get_secret_value()
    chats = parse_id_list(settings.telegram_chat_ids, "EMAIL_ENGINE_TELEGRAM_CHAT_IDS")
    admins = parse_id_list(settings.telegram_admin_ids, "EMAIL_ENGINE_TELEGRAM_ADMIN_IDS")

    async def on_press(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        q = update.callback_query
        if q is None or q.message is None:
            return
        press = Press(chat_id=q.message.chat.id, user_id=q.from_user.id, username=q.from_user.username or "",
                      data=q.data or "")
        answer = await handle_press(client, press, chats, admins)
        if answer is None:
            return
        await q.answer(answer.text[:200])
        if answer.acted:  # the decision is taken: the buttons go, so nobody presses the other one by mistake
            try:
                await q.edit_message_reply_markup(reply_markup=None)
            except Exception as exc:
                log.warning("could not remove the buttons: %s", exc)
        await context.bot.send_message(chat_id=press.chat_id, text=html.escape(answer.text), parse_mode="HTML")

    app = (Application.builder().token(token).base_url(settings.telegram_base_url)
           .connect_timeout(10).read_timeout(30).build())
    app.add_handler(CallbackQueryHandler(on_press))
    return app


class BotTokenRejected(RuntimeError):
    """Telegram rejected the bot token (python-telegram-bot's InvalidToken, without the token it quotes)."""


async def run_bot(settings: Settings, client: Client, stop: asyncio.Event, poll_timeout: int = 10) -> None:
    """Poll Telegram until `stop` is set; BotTokenRejected if the token is refused."""
    from telegram.error import InvalidToken

    from activities.telegram import TOKEN_REJECTED

    app = build_application(settings, client)
    try:
        await app.initialize()
    except InvalidToken:
        raise BotTokenRejected(TOKEN_REJECTED) from None  # the original message quotes the token
    async with app:
        assert app.updater is not None
        await app.updater.start_polling(timeout=poll_timeout, allowed_updates=["callback_query"])
        await app.start()
        log.info("bot polling; obeying chats %s", settings.telegram_chat_ids)
        try:
            await stop.wait()
        finally:
            await app.updater.stop()
            await app.stop()


def bot() -> None:
    """Run the Telegram ChatOps bot: buttons on alerts approve/deny held failovers and pause/resume
    warmups. Needs EMAIL_ENGINE_TELEGRAM_BOT_TOKEN, _CHAT_IDS and _ADMIN_IDS; presses from other
    chats or users are ignored and logged. Ctrl-C stops it."""
    import asyncio

    from client import connection
    from models.alerting import parse_id_list
    from models.settings import get_settings

    settings = get_settings()
    if not settings.telegram_bot_token.get_secret_value():
        fail("EMAIL_ENGINE_TELEGRAM_BOT_TOKEN is not set")
    try:
        chats = parse_id_list(settings.telegram_chat_ids, "EMAIL_ENGINE_TELEGRAM_CHAT_IDS")
        admins = parse_id_list(settings.telegram_admin_ids, "EMAIL_ENGINE_TELEGRAM_ADMIN_IDS")
    except ValueError as exc:
        fail(str(exc))
    if not chats or not admins:
        fail("set EMAIL_ENGINE_TELEGRAM_CHAT_IDS and EMAIL_ENGINE_TELEGRAM_ADMIN_IDS: the bot obeys nobody else")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # its request lines contain the bot token

    async def main() -> None:
        from client.connection import connect

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        import signal

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        client = await connect(settings)
        await run_bot(settings, client, stop)

    try:
        connection.run(main())
    except BotTokenRejected as exc:
        fail(str(exc))
