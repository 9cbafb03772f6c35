"""The codec server the Temporal Web UI calls to show decrypted payloads (Temporal's remote codec
protocol: POST /encode and /decode with `{"payloads": [...]}` in protobuf JSON, CORS for the UI).

Whoever can reach it can decrypt: run it where only the operator's browser reaches it (loopback on
the operator's machine, the default), and point the UI's codec endpoint at it.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from client.codec import CodecError, EncryptionCodec


def transcode(codec: EncryptionCodec, action: str, body: bytes) -> dict[str, Any]:
    """`action` "encode" or "decode" over a request body; ValueError/CodecError on bad input."""
    message = json_format.Parse(body or b"{}", Payloads())
    payloads = list(message.payloads)
    out = codec.encrypt(payloads) if action == "encode" else codec.decrypt(payloads)
    return json_format.MessageToDict(Payloads(payloads=out))


def make_server(codec: EncryptionCodec, host: str, port: int, origins: list[str]) -> ThreadingHTTPServer:
    allowed = set(origins)

    class Handler(BaseHTTPRequestHandler):
        def _cors(self) -> None:
            origin = self.headers.get("Origin", "")
            if origin in allowed:
                self.send_header("Access-Control-Allow-Origin", origin)
                self.send_header("Access-Control-Allow-Methods", "POST, OPTIONS")
                self.send_header("Access-Control-Allow-Headers", "Content-Type, X-Namespace, Authorization")
                self.send_header("Access-Control-Allow-Credentials", "true")
                self.send_header("Vary", "Origin")

        def _reply(self, status: int, doc: dict[str, Any]) -> None:
            data = json.dumps(doc).encode()
            self.send_response(status)
            self._cors()
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_OPTIONS(self) -> None:
            self.send_response(200)
            self._cors()
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self) -> None:
            action = self.path.rstrip("/").rsplit("/", 1)[-1]
            if action not in ("encode", "decode"):
                self._reply(404, {"error": "POST /encode or /decode"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > 16 * 1024 * 1024:
                self._reply(413, {"error": "request too large"})
                return
            try:
                self._reply(200, transcode(codec, action, self.rfile.read(length)))
            except (CodecError, json_format.ParseError, ValueError) as err:
                self._reply(400, {"error": str(err)})

        def log_message(self, *args: Any) -> None:  # payloads never go to a log
            pass

    return ThreadingHTTPServer((host, port), Handler)


def serve_in_thread(server: ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="codec-server", daemon=True)
    thread.start()
    return thread
