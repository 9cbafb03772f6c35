"""Payload encryption (client/codec.py) on the dev server: a worker and a client with the key run a
workflow whose input and result Temporal stores as ciphertext (read back raw by a client without the
key); Schedules apply unchanged through it; the codec server decrypts for the Web UI (CORS) and
refuses a payload of an unknown key."""

from __future__ import annotations

import base64
import json
import os
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from client.codec import ENCODING, CodecError, EncryptionCodec, parse_keys
from client.connection import connect
from models.errors import TemporalUnreachable
from models.settings import Settings
from tests.support import free_port

SECRET = "campaign-for-tenant-acme-7731"


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@workflow.defn(name="CodecEcho")
class CodecEcho:
    @workflow.run
    async def run(self, text: str) -> str:
        return f"echo {text}"


def test_codec_rules() -> None:
    k1, k2 = _key(), _key()
    new = EncryptionCodec(parse_keys(f"k2:{k2},k1:{k1}"))
    old = EncryptionCodec(parse_keys(f"k1:{k1}"))
    plain = Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(SECRET).encode())
    [enc] = old.encrypt([plain])
    assert enc.metadata["encoding"] == ENCODING and SECRET.encode() not in enc.data
    assert new.decrypt([enc]) == [plain]  # rotation: the new key first, the old one still decrypts
    assert old.encrypt([plain])[0].data != enc.data  # a fresh nonce each time
    assert new.decrypt([plain]) == [plain]  # written before encryption: passed through
    with pytest.raises(CodecError, match="key 'k2', which"):
        old.decrypt(new.encrypt([plain]))
    relabelled = Payload(metadata={"encoding": ENCODING, "encryption-key-id": b"k2"}, data=enc.data)
    with pytest.raises(CodecError, match="does not decrypt"):
        new.decrypt([relabelled])
    for bad, msg in (("k1", "id:base64key"), ("k1:%%%", "not base64"), (f"k1:{base64.b64encode(b'x' * 16).decode()}",
                     "16 bytes, not 32"), (f"k1:{k1},k1:{k2}", "appears twice")):
        with pytest.raises(CodecError, match=msg):
            parse_keys(bad)
    with pytest.raises(TemporalUnreachable, match="not base64"):
        from client.connection import connect_options

        connect_options(Settings(temporal_payload_keys="k1:%%%"))  # type: ignore[arg-type]
    s = Settings(temporal_payload_keys=f"k1:{k1}")  # type: ignore[arg-type]
    assert k1 not in s.redact(f"error with {k1}")


async def test_encrypted_on_the_server_and_decoded_by_the_codec_server(temporal_local) -> None:
    from client.codec_server import make_server, serve_in_thread
    from client.schedules import apply_schedules

    address = temporal_local.client.service_client.config.target_host
    keys = f"k1:{_key()}"
    settings = Settings(temporal_address=address, temporal_payload_keys=keys,  # type: ignore[arg-type]
                        task_queue=f"codec-{uuid.uuid4().hex[:6]}")
    client = await connect(settings)
    raw = await Client.connect(address)  # no key: what Temporal (and its Web UI) holds
    wid = f"codec-{uuid.uuid4().hex[:8]}"
    with ThreadPoolExecutor(max_workers=2) as pool:
        # a test echo workflow: no sandbox (this module imports what the sandbox refuses)
        async with Worker(client, task_queue=settings.task_queue, workflows=[CodecEcho], activity_executor=pool,
                          workflow_runner=UnsandboxedWorkflowRunner()):
            result = await client.execute_workflow(CodecEcho.run, SECRET, id=wid, task_queue=settings.task_queue,
                                                   execution_timeout=timedelta(seconds=30))
    assert result == f"echo {SECRET}"
    history = await raw.get_workflow_handle(wid).fetch_history()
    payloads = [p for e in history.events for p in (
        list(e.workflow_execution_started_event_attributes.input.payloads)
        + list(e.workflow_execution_completed_event_attributes.result.payloads))]
    assert len(payloads) == 2
    assert all(p.metadata["encoding"] == ENCODING and SECRET.encode() not in p.data for p in payloads)
    assert SECRET.encode() not in history.to_json().encode()

    # Schedules through the codec: their action arguments are ciphertext too, and a rerun is unchanged
    try:
        first = await apply_schedules(client, settings)
        again = await apply_schedules(client, settings)
        assert {o.action for o in first} == {"created"} and {o.action for o in again} == {"unchanged"}
        desc = await raw.get_schedule_handle("dns-validation").describe()
        assert desc.schedule.action.args[0].metadata["encoding"] == ENCODING  # type: ignore[union-attr]
    finally:
        for name in ("blocklist-scan", "dns-validation", "accounting-ingest", "mailwizz-sync", "active-guard"):
            await raw.get_schedule_handle(name).delete()

    # the codec server, as the Web UI calls it
    port = free_port()
    server = make_server(EncryptionCodec(parse_keys(keys)), "127.0.0.1", port, ["http://127.0.0.1:8233"])
    serve_in_thread(server)
    try:
        body = json.dumps({"payloads": [{"metadata": {k: base64.b64encode(v).decode() for k, v in p.metadata.items()},
                                         "data": base64.b64encode(p.data).decode()} for p in payloads]}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/decode", data=body, method="POST", headers={
            "Content-Type": "application/json", "X-Namespace": "default", "Origin": "http://127.0.0.1:8233"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:8233"
            decoded = json.loads(resp.read())["payloads"]
        texts = [json.loads(base64.b64decode(p["data"])) for p in decoded]
        assert texts == [SECRET, f"echo {SECRET}"]
        pre = urllib.request.Request(f"http://127.0.0.1:{port}/decode", method="OPTIONS",
                                     headers={"Origin": "http://evil.example"})
        with urllib.request.urlopen(pre, timeout=10) as resp:
            assert resp.headers.get("Access-Control-Allow-Origin") is None  # other origins get no CORS grant
        other = EncryptionCodec(parse_keys(f"k9:{_key()}")).encrypt(payloads[:1])
        bad = json.dumps({"payloads": [{"metadata": {k: base64.b64encode(v).decode() for k, v in p.metadata.items()},
                                        "data": base64.b64encode(p.data).decode()} for p in other]}).encode()
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/decode", data=bad, method="POST"),
                                   timeout=10)
        assert refused.value.code == 400 and "k9" in refused.value.read().decode()
    finally:
        server.shutdown()
        server.server_close()
