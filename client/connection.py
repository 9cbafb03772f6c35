"""Connecting to Temporal with the engine's settings: address, namespace, and the secure connection
(TLS with a CA of its own or the system's, mTLS client certificate, server name, API key); and
running a short client process."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from temporalio.client import Client
from temporalio.runtime import Runtime
from temporalio.service import TLSConfig

from models.errors import TemporalUnreachable
from models.settings import Settings, get_settings

T = TypeVar("T")

#: Seconds the loop keeps running after the client process's work is done (see run).
EXIT_GRACE = 0.05


def _read(path: Path, setting: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise TemporalUnreachable(f"EMAIL_ENGINE_{setting}: cannot read {path}: {err.strerror or err}") from None


def tls_config(settings: Settings) -> TLSConfig | bool:
    """False: plaintext. True: TLS with the system roots. Else the TLSConfig of the files and name set.
    TemporalUnreachable names the setting when a file cannot be read or cert and key are not paired."""
    if not settings.temporal_tls_enabled():
        return False
    cert, key = settings.temporal_tls_cert_file, settings.temporal_tls_key_file
    if bool(cert) != bool(key):
        raise TemporalUnreachable("EMAIL_ENGINE_TEMPORAL_TLS_CERT_FILE and EMAIL_ENGINE_TEMPORAL_TLS_KEY_FILE "
                                  "go together (mTLS needs the certificate and its key)")
    ca = settings.temporal_tls_ca_file
    if not (ca or cert or settings.temporal_tls_server_name):
        return True
    return TLSConfig(
        server_root_ca_cert=_read(ca, "TEMPORAL_TLS_CA_FILE") if ca else None,
        client_cert=_read(cert, "TEMPORAL_TLS_CERT_FILE") if cert else None,
        client_private_key=_read(key, "TEMPORAL_TLS_KEY_FILE") if key else None,
        domain=settings.temporal_tls_server_name or None,
    )


def connect_options(settings: Settings) -> dict[str, Any]:
    """The keyword arguments of Client.connect besides the address (the API key and the payload
    encryption codec among them)."""
    options: dict[str, Any] = {"namespace": settings.temporal_namespace, "tls": tls_config(settings)}
    api_key = settings.temporal_api_key.get_secret_value()
    if api_key:
        options["api_key"] = api_key
    keys = settings.temporal_payload_keys.get_secret_value()
    if keys.strip():
        import dataclasses

        from temporalio.converter import DataConverter

        from client.codec import CodecError, EncryptionCodec, parse_keys

        try:
            codec = EncryptionCodec(parse_keys(keys))
        except CodecError as err:
            raise TemporalUnreachable(str(err)) from None
        options["data_converter"] = dataclasses.replace(DataConverter.default, payload_codec=codec)
    return options


async def connect(settings: Settings | None = None, runtime: Runtime | None = None, wait: float = 0.0) -> Client:
    """`runtime`: e.g. the worker's Prometheus runtime (workers.metrics); None: the default runtime.
    `wait`: seconds to keep trying while the frontend is not up yet (a server just started answers
    "Frontend is not healthy yet" for a moment after its port opens); 0: one attempt.

    Raises TemporalUnreachable (a RuntimeError) when the frontend cannot be reached, refuses the
    TLS handshake (wrong CA, no client certificate), or a TLS file cannot be read."""
    settings = settings or get_settings()
    options = connect_options(settings)
    if runtime is not None:
        options["runtime"] = runtime
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        try:
            return await Client.connect(settings.temporal_address, **options)
        except RuntimeError as err:
            if loop.time() < deadline:
                await asyncio.sleep(0.5)
                continue
            message = settings.redact(str(err))
            raise TemporalUnreachable(f"cannot reach Temporal at {settings.temporal_address} "
                                      f"({settings.temporal_security()}): {message} "
                                      "(is `email-engine dev` or the production cluster running?)") from err


def run(main: Coroutine[Any, Any, T], grace: float = EXIT_GRACE) -> T:
    """`asyncio.run(main)` for a short process that used a Temporal client (a CLI command, a script).

    After `main` ends (its frame, and with it a client it connected, is dropped) the loop runs `grace`
    seconds more, so the SDK's Rust threads finish closing the connection before the interpreter
    finalizes. Without it about one such process in ten aborts at exit, after its work was done
    ("Fatal Python error: PyGILState_Release", temporalio/sdk-python#300). Keep the client in
    `main`'s locals, not in a global, so it is dropped inside the loop."""

    async def _main() -> T:
        try:
            return await main
        finally:
            await asyncio.sleep(grace)

    return asyncio.run(_main())
