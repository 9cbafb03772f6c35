"""A real webhook receiver on loopback for the webhook tests: it verifies every request's signature with
the `standardwebhooks` library (the receivers' own reference implementation) and records what it got.

It can be down (not listening at all: connection refused) and come back on the same port, and it can
answer 500 to the first N valid requests.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook

from tests.support import free_port

#: A fixed test secret: base64 of 32 bytes.
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER_SECRET = "whsec_dGhpcyBpcyBhbm90aGVyIHNlY3JldCBrZXkhIQ=="


@dataclass
class Received:
    msg_id: str
    timestamp: str
    body: dict[str, Any]


@dataclass
class Receiver:
    host: str
    secret: str = SECRET
    #: Answer 500 to this many more valid requests (before accepting).
    fail_next: int = 0
    port: int = 0
    verified: list[Received] = field(default_factory=list)
    #: Requests whose signature did not verify (must stay empty).
    rejected: list[str] = field(default_factory=list)
    answered_500: int = 0
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.port = self.port or free_port(self.host)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hooks/email-engine"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self
        wh = Webhook(self.secret)

        class _H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    body = wh.verify(raw, headers)
                except Exception as exc:  # any verification failure is recorded and answered 401
                    with outer._lock:
                        outer.rejected.append(f"{type(exc).__name__}: {exc}")
                    self._answer(401)
                    return
                with outer._lock:
                    if outer.fail_next > 0:
                        outer.fail_next -= 1
                        outer.answered_500 += 1
                        status = 500
                    else:
                        outer.verified.append(Received(headers["webhook-id"], headers["webhook-timestamp"], body))
                        status = 204
                self._answer(status)

            def _answer(self, status: int) -> None:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        return _H

    def start(self) -> Receiver:
        class _Server(ThreadingHTTPServer):
            allow_reuse_address = True
            daemon_threads = True

        self._server = _Server((self.host, self.port), self._handler())
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def types(self) -> list[str]:
        return [r.body["type"] for r in self.verified]

    def ids(self) -> list[str]:
        return [r.msg_id for r in self.verified]

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def inventory_webhooks(*receivers: tuple[str, str, list[str]]) -> str:
    """`[[webhooks]]` entries for an inventory file: (name, url, events)."""
    lines = []
    for name, url, events in receivers:
        lines += ["[[webhooks]]", f'name = "{name}"', f'url = "{url}"', f"events = {json.dumps(events)}", ""]
    return "\n".join(lines)
