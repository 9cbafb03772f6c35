"""A tiny threaded HTTP server on loopback for API test doubles (MailWizz, Telegram Bot API)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.support import free_port

# handler(method, path, query, headers, params) -> (status, json body)
Handler = Callable[[str, str, dict[str, str], dict[str, str], dict[str, Any]], tuple[int, Any]]


class HttpDouble:
    def __init__(self, host: str, handler: Handler) -> None:
        self.host = host
        self.port = free_port(host)
        self.handler = handler
        self.requests: list[tuple[str, str]] = []
        outer = self

        class _H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _do(self) -> None:
                parts = urlsplit(self.path)
                query = dict(parse_qsl(parts.query))
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                ctype = self.headers.get("Content-Type", "")
                params: dict[str, Any] = {}
                if raw and "json" in ctype:
                    params = json.loads(raw)
                elif raw:
                    params = dict(parse_qsl(raw.decode()))
                outer.requests.append((self.command, parts.path))
                status, body = outer.handler(self.command, parts.path, query,
                                             {k.lower(): v for k, v in self.headers.items()}, params)
                data = json.dumps(body).encode() if not isinstance(body, bytes) else body
                self.send_response(status)
                self.send_header("Content-Type", "application/json" if not isinstance(body, bytes) else "text/html")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _do

            def log_message(self, *args: Any) -> None:
                pass

        class _Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that gave up (timeout tests) is not an error of the double

        self.server = _Server((host, self.port), _H)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> HttpDouble:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
