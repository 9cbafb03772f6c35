"""A Telegram Bot API test double on loopback (python-telegram-bot's `base_url` points at it).

Telegram cannot be reached from tests, so this server speaks the Bot API methods the engine uses:
getMe, deleteWebhook, getUpdates (long polling, with queued callback queries), sendMessage,
answerCallbackQuery, editMessageReplyMarkup; responses are `{"ok": true, "result": ...}` or
`{"ok": false, "error_code": N, "description": "..."}` as documented at core.telegram.org/bots/api.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tests.servers.http_double import HttpDouble

BOT_USER = {"id": 777000111, "is_bot": True, "first_name": "Email Engine", "username": "email_engine_bot",
            "can_join_groups": True, "can_read_all_group_messages": False, "supports_inline_queries": False}


@dataclass
class TelegramState:
    token: str = "123456:TEST-token"
    messages: list[dict[str, Any]] = field(default_factory=list)
    answers: list[dict[str, Any]] = field(default_factory=list)
    edits: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    fail_send: int = 0  # answer this many sendMessage calls with 502
    retry_after: int = 0  # answer the next sendMessage with 429 retry_after=N
    send_delay: float = 0.0  # seconds before answering sendMessage (a slow Telegram)
    next_update_id: int = 1000
    next_message_id: int = 1
    #: Chats the bot is a member of (getChat answers them; others are "chat not found"); None: every chat.
    chats: set[int] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class TelegramDouble(HttpDouble):
    def __init__(self, host: str, state: TelegramState | None = None) -> None:
        self.state = state or TelegramState()
        super().__init__(host, self._handle)

    @property
    def base_url(self) -> str:
        return f"{self.url}/bot"

    def press(self, chat_id: int, user_id: int, data: str, username: str = "alice",
              chat_type: str = "group") -> int:
        """Queue a callback query, as if user_id pressed a button with callback_data `data`."""
        with self.state.lock:
            uid = self.state.next_update_id
            self.state.next_update_id += 1
            self.state.updates.append({"update_id": uid, "callback_query": {
                "id": f"cq{uid}", "chat_instance": "ci1", "data": data,
                "from": {"id": user_id, "is_bot": False, "first_name": username, "username": username},
                "message": {"message_id": 1, "date": int(time.time()), "text": "alert",
                            "chat": {"id": chat_id, "type": chat_type, "title": "ops"}},
            }})
        return uid

    def _handle(self, method: str, path: str, query: dict[str, str], headers: dict[str, str],
                params: dict[str, Any]) -> tuple[int, Any]:
        st = self.state
        m = re.match(r"^/bot([^/]+)/(\w+)$", path)
        if not m:
            return 404, {"ok": False, "error_code": 404, "description": "Not Found"}
        if m.group(1) != st.token:
            return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
        name = m.group(2)
        params = {**query, **params}
        if name == "getMe":
            return 200, {"ok": True, "result": BOT_USER}
        if name == "getChat":
            chat_id = int(params.get("chat_id") or 0)
            if st.chats is not None and chat_id not in st.chats:
                return 400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}
            return 200, {"ok": True, "result": {"id": chat_id, "type": "group", "title": "ops",
                                                "accent_color_id": 0, "max_reaction_count": 11}}
        if name in ("deleteWebhook", "setMyCommands"):
            return 200, {"ok": True, "result": True}
        if name == "getUpdates":
            offset = int(params.get("offset") or 0)
            deadline = time.monotonic() + min(float(params.get("timeout") or 0), 0.5)
            while True:
                with st.lock:
                    if offset:
                        st.updates = [u for u in st.updates if u["update_id"] >= offset]
                    result = list(st.updates)
                if result or time.monotonic() >= deadline:
                    return 200, {"ok": True, "result": result}
                time.sleep(0.05)
        if name == "sendMessage":
            if st.send_delay:
                time.sleep(st.send_delay)
            with st.lock:
                if st.retry_after:
                    n, st.retry_after = st.retry_after, 0
                    return 429, {"ok": False, "error_code": 429, "description": f"Too Many Requests: retry after {n}",
                                 "parameters": {"retry_after": n}}
                if st.fail_send > 0:
                    st.fail_send -= 1
                    return 502, {"ok": False, "error_code": 502, "description": "Bad Gateway"}
                mid = st.next_message_id
                st.next_message_id += 1
                msg = dict(params)
                if isinstance(msg.get("reply_markup"), str):
                    msg["reply_markup"] = json.loads(msg["reply_markup"])
                msg["chat_id"] = int(msg["chat_id"])
                msg["message_id"] = mid
                st.messages.append(msg)
            return 200, {"ok": True, "result": {"message_id": mid, "date": int(time.time()), "text": params["text"],
                                                "chat": {"id": int(params["chat_id"]), "type": "group",
                                                         "title": "ops"}}}
        if name == "answerCallbackQuery":
            with st.lock:
                st.answers.append(dict(params))
            return 200, {"ok": True, "result": True}
        if name == "editMessageReplyMarkup":
            with st.lock:
                st.edits.append(dict(params))
            return 200, {"ok": True, "result": True}
        return 400, {"ok": False, "error_code": 400, "description": f"Bad Request: method {name} not found"}
