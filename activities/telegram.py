"""Sending to Telegram with python-telegram-bot: rate limit per chat, retries, never raising."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
import time
import warnings
from collections import deque

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.constants import ParseMode
from telegram.error import Forbidden, InvalidToken, NetworkError, RetryAfter, TelegramError, TimedOut
from telegram.request import HTTPXRequest

log = logging.getLogger("email_engine.telegram")
# httpx logs each request URL at INFO, and a Bot API URL contains the token: never let it through.
logging.getLogger("httpx").setLevel(logging.WARNING)
# python-telegram-bot logs the Bot API URL (token included) at DEBUG when a bot is created.
for _name in ("telegram.Bot", "telegram.ext.ExtBot"):
    logging.getLogger(_name).setLevel(logging.INFO)

#: Attempts per message on network errors and Telegram's flood control, with exponential backoff.
ATTEMPTS = 3
BACKOFF = 0.5
#: Longest wait for the rate limit or a RetryAfter before the message is dropped (and logged).
MAX_WAIT = 30.0
#: What is logged when Telegram rejects the token. python-telegram-bot's InvalidToken message (and its
#: cause chain) can contain the token itself, so it is never logged or shown.
TOKEN_REJECTED = "the bot token was rejected by Telegram (EMAIL_ENGINE_TELEGRAM_BOT_TOKEN; not shown)"


class RateLimiter:
    """At most `per_minute` messages per chat in any 60 s; thread-safe, shared by the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sent: dict[int, deque[float]] = {}

    def reserve(self, chat_id: int, per_minute: int, now: float | None = None) -> float:
        """Reserve a slot; returns how long to wait before sending (0: now)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            q = self._sent.setdefault(chat_id, deque())
            while q and q[0] <= now - 60:
                q.popleft()
            start = now if len(q) < per_minute else q[-per_minute] + 60
            q.append(start)
            return max(start - now, 0.0)


LIMITER = RateLimiter()


def redact(text: str, token: str) -> str:
    """`text` with the bot token (and its numeric-id-less secret half) replaced: for messages of
    exceptions that are not known to be free of it."""
    for secret in {token, token.partition(":")[2]} - {""}:
        text = text.replace(secret, "<token>")
    return text


def make_bot(token: str, base_url: str, timeout: float = 10.0) -> Bot:
    request = HTTPXRequest(connect_timeout=timeout, read_timeout=timeout, write_timeout=timeout,
                           pool_timeout=timeout)
    return Bot(token, base_url=base_url, request=request)


def keyboard(buttons: list[tuple[str, str]]) -> InlineKeyboardMarkup | None:
    """(label, callback_data) pairs as one row of inline buttons."""
    if not buttons:
        return None
    return InlineKeyboardMarkup([[InlineKeyboardButton(label, callback_data=data) for label, data in buttons]])


async def send_html(bot: Bot, chat_id: int, text: str, buttons: list[tuple[str, str]],
                    per_minute: int) -> bool:
    """Send one message; True when Telegram accepted it. Errors are logged, never raised."""
    wait = LIMITER.reserve(chat_id, per_minute)
    if wait > MAX_WAIT:
        log.error("telegram: rate limit for chat %s would delay %.0fs; alert dropped", chat_id, wait)
        return False
    if wait:
        await asyncio.sleep(wait)
    for attempt in range(1, ATTEMPTS + 1):
        try:
            await bot.send_message(chat_id=chat_id, text=text, parse_mode=ParseMode.HTML,
                                   reply_markup=keyboard(buttons), disable_web_page_preview=True)
            return True
        except RetryAfter as exc:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ra = exc.retry_after
            delay = ra.total_seconds() if isinstance(ra, dt.timedelta) else float(ra)
            if delay > MAX_WAIT:
                log.error("telegram: flood control asks %.0fs for chat %s; alert dropped", delay, chat_id)
                return False
            log.warning("telegram: flood control, retrying in %.1fs", delay)
            await asyncio.sleep(delay)
        except (TimedOut, NetworkError) as exc:
            if attempt == ATTEMPTS:
                log.error("telegram: chat %s unreachable after %d attempts: %s", chat_id, ATTEMPTS, exc)
                return False
            delay = BACKOFF * 2 ** (attempt - 1)
            log.warning("telegram: %s (attempt %d/%d), retrying in %.1fs", exc, attempt, ATTEMPTS, delay)
            await asyncio.sleep(delay)
        except InvalidToken:
            log.error("telegram: chat %s: %s", chat_id, TOKEN_REJECTED)
            return False
        except Forbidden as exc:
            log.error("telegram: chat %s refused the bot (%s); check the chat IDs", chat_id, exc)
            return False
        except TelegramError as exc:
            log.error("telegram: chat %s: %s", chat_id, redact(str(exc), bot.token))
            return False
    return False
