"""The secure Temporal connection (client/connection.py): TLS with the engine's CA, mTLS, server name,
API key. The dev server speaks plaintext only, so a TLS-terminating proxy on loopback stands in front
of it (tests/servers/tls_proxy.py); a wrong CA, a missing client certificate or a name the certificate
does not carry is refused, and the worker and the CLI connect through the same settings."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.service import TLSConfig

from client.connection import connect, connect_options
from models.errors import TemporalUnreachable
from models.settings import Settings, get_settings
from tests.servers.tls_proxy import Pki, TlsProxy


def _upstream(temporal_local: Any) -> tuple[str, int]:
    host, _, port = temporal_local.client.service_client.config.target_host.rpartition(":")
    return host, int(port)


def _settings(address: str, **kw: Any) -> Settings:
    return Settings(temporal_address=address, **kw)


def test_options_from_the_settings(tmp_path: Path) -> None:
    assert connect_options(Settings())["tls"] is False and "api_key" not in connect_options(Settings())
    assert connect_options(Settings(temporal_tls=True))["tls"] is True  # system roots
    key = Settings(temporal_api_key="k-123456")  # type: ignore[arg-type]
    assert connect_options(key) == {"namespace": "default", "tls": True, "api_key": "k-123456"}
    assert key.temporal_security() == "TLS (system CAs), API key" and "k-123456" not in repr(key)
    pki = Pki.create(tmp_path, server_names=["temporal.test"])
    tls = connect_options(Settings(temporal_tls_ca_file=pki.ca_cert, temporal_tls_cert_file=pki.client_cert,
                                   temporal_tls_key_file=pki.client_key,
                                   temporal_tls_server_name="temporal.test"))["tls"]
    assert isinstance(tls, TLSConfig) and tls.domain == "temporal.test"
    assert tls.server_root_ca_cert == pki.ca_cert.read_bytes() and tls.client_cert == pki.client_cert.read_bytes()
    with pytest.raises(TemporalUnreachable, match="go together"):
        connect_options(Settings(temporal_tls_cert_file=pki.client_cert))
    with pytest.raises(TemporalUnreachable, match=r"EMAIL_ENGINE_TEMPORAL_TLS_CA_FILE: cannot read .*absent\.pem"):
        connect_options(Settings(temporal_tls_ca_file=tmp_path / "absent.pem"))
    # empty values in an env file mean "not set"
    assert Settings(temporal_tls_ca_file="").temporal_tls_ca_file is None  # type: ignore[arg-type]


async def test_tls_through_a_terminating_proxy_and_a_wrong_ca_refused(temporal_local, tmp_path: Path) -> None:
    pki = Pki.create(tmp_path / "good", server_names=["localhost"], ips=["127.0.0.1"])
    other = Pki.create(tmp_path / "other", server_names=["localhost"], ips=["127.0.0.1"], label="other")
    async with TlsProxy(_upstream(temporal_local), pki.server_cert, pki.server_key) as proxy:
        client = await connect(_settings(proxy.address, temporal_tls_ca_file=pki.ca_cert))
        info = await client.workflow_service.get_system_info(GetSystemInfoRequest())
        assert info.server_version and proxy.connections >= 1
        seen = proxy.connections
        with pytest.raises(TemporalUnreachable) as refused:
            await connect(_settings(proxy.address, temporal_tls_ca_file=other.ca_cert))
        assert f"cannot reach Temporal at {proxy.address} (TLS (CA {other.ca_cert}))" in str(refused.value)
        assert "UnknownIssuer" in str(refused.value)  # rustls: the certificate is not from a CA we trust
        with pytest.raises(TemporalUnreachable):  # the system roots do not know the test CA either
            await connect(_settings(proxy.address, temporal_tls=True))
        with pytest.raises(TemporalUnreachable):  # plaintext to a TLS port
            await connect(_settings(proxy.address))
        assert proxy.connections == seen  # no refused handshake reached the server


async def test_mtls_and_server_name(temporal_local, tmp_path: Path) -> None:
    # the certificate carries a name only, not the IP the client dials: the server name setting says it
    pki = Pki.create(tmp_path, server_names=["temporal.internal"])
    async with TlsProxy(_upstream(temporal_local), pki.server_cert, pki.server_key, client_ca=pki.ca_cert) as proxy:
        mtls = {"temporal_tls_ca_file": pki.ca_cert, "temporal_tls_cert_file": pki.client_cert,
                "temporal_tls_key_file": pki.client_key}
        client = await connect(_settings(proxy.address, temporal_tls_server_name="temporal.internal", **mtls))
        assert (await client.workflow_service.get_system_info(GetSystemInfoRequest())).server_version
        with pytest.raises(TemporalUnreachable):  # no client certificate
            await connect(_settings(proxy.address, temporal_tls_ca_file=pki.ca_cert,
                                    temporal_tls_server_name="temporal.internal"))
        with pytest.raises(TemporalUnreachable):  # 127.0.0.1 is not a name of the certificate
            await connect(_settings(proxy.address, **mtls))


async def test_worker_and_cli_connect_through_tls(temporal_local, sqlite_url: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine worker polls through the proxy (seen by the server as a poller); `schedules list`
    from the CLI reads through it; the same settings, nothing else."""
    from typer.testing import CliRunner

    from cli.main import app
    from client.doctor import _pollers
    from workers import engine

    pki = Pki.create(tmp_path, server_names=["localhost"], ips=["127.0.0.1"])
    queue = "tls-worker-q"
    async with TlsProxy(_upstream(temporal_local), pki.server_cert, pki.server_key, client_ca=pki.ca_cert) as proxy:
        env = {"EMAIL_ENGINE_TEMPORAL_ADDRESS": proxy.address, "EMAIL_ENGINE_TEMPORAL_TLS_CA_FILE": str(pki.ca_cert),
               "EMAIL_ENGINE_TEMPORAL_TLS_CERT_FILE": str(pki.client_cert),
               "EMAIL_ENGINE_TEMPORAL_TLS_KEY_FILE": str(pki.client_key), "EMAIL_ENGINE_TASK_QUEUE": queue,
               "EMAIL_ENGINE_METRICS_ADDRESS": "", "EMAIL_ENGINE_FLEET_METRICS_ADDRESS": ""}
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        get_settings.cache_clear()
        try:
            stop = asyncio.Event()
            worker = asyncio.create_task(engine.run(get_settings(), stop))
            try:
                for _ in range(100):
                    checks = await _pollers(temporal_local.client, "default", queue)
                    if all(c.level.value == "ok" for c in checks):
                        break
                    await asyncio.sleep(0.1)
                assert all(c.level.value == "ok" for c in checks), checks
            finally:
                stop.set()
                await asyncio.wait_for(worker, 30)
            r = await asyncio.to_thread(CliRunner().invoke, app, ["schedules", "list", "--json"])
            assert r.exit_code == 0, r.output
            monkeypatch.delenv("EMAIL_ENGINE_TEMPORAL_TLS_CERT_FILE")
            monkeypatch.delenv("EMAIL_ENGINE_TEMPORAL_TLS_KEY_FILE")
            get_settings.cache_clear()
            r = await asyncio.to_thread(CliRunner().invoke, app, ["schedules", "list"])
            assert r.exit_code == 1 and "cannot reach Temporal" in r.output and "TLS (CA" in r.output
        finally:
            get_settings.cache_clear()
