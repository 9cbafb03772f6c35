"""`email-engine codec-server`: decrypted payloads in the Temporal Web UI for an operator with the key."""

from __future__ import annotations

import typer

from cli.common import console, fail


def codec_server(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (whoever reaches it can decrypt)."),
    port: int = typer.Option(8888, "--port", min=1, max=65535),
    origin: list[str] = typer.Option(["http://127.0.0.1:8233", "http://localhost:8233"], "--origin",
                                     help="Web UI origin allowed by CORS (repeatable)."),
) -> None:
    """Serve Temporal's remote codec protocol (POST /encode, /decode) with EMAIL_ENGINE_TEMPORAL_PAYLOAD_KEYS,
    so the Web UI shows payloads decrypted. Point the UI at it (its codec endpoint setting, or the dev
    server's `--ui-codec-endpoint http://127.0.0.1:8888`). Ctrl-C stops it."""
    from client.codec import CodecError, EncryptionCodec, parse_keys
    from client.codec_server import make_server
    from models.settings import get_settings

    try:
        codec = EncryptionCodec(parse_keys(get_settings().temporal_payload_keys.get_secret_value()))
    except CodecError as err:
        fail(f"{err} (set EMAIL_ENGINE_TEMPORAL_PAYLOAD_KEYS)" if str(err) == "no payload key" else str(err))
    try:
        server = make_server(codec, host, port, origin)
    except OSError as err:
        fail(f"cannot listen on {host}:{port}: {err.strerror or err}")
    console.print(f"codec server on http://{host}:{port} (key {codec.key_id!r} encrypts; origins: "
                  f"{', '.join(origin)}); Ctrl-C stops it", highlight=False)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
