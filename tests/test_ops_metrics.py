"""Prometheus: fleet gauges and the Temporal SDK runtime endpoint, both scraped over HTTP on loopback."""

from __future__ import annotations

import uuid

import httpx
from prometheus_client.parser import text_string_to_metric_families
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker

from activities.inventory import apply_inventory
from models.inventory import parse
from tests.conftest import REFERENCE_INVENTORY
from tests.support import free_port
from workers.metrics import serve_fleet_metrics, split_address, temporal_runtime


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_fleet_gauges_are_scraped(sqlite_url: str) -> None:
    apply_inventory(parse(REFERENCE_INVENTORY.read_text()), actor="test", url=sqlite_url)
    host = "127.0.50.4"
    port = free_port(host)
    server = serve_fleet_metrics(f"{host}:{port}", sqlite_url)
    try:
        resp = httpx.get(f"http://{host}:{port}/metrics", timeout=10)
    finally:
        server.shutdown()
    assert resp.status_code == 200
    got = samples(resp.text)
    assert got[("email_engine_fleet_scrape_ok", ())] == 1
    assert got[("email_engine_ips", (("status", "active"), ("tenant", "client-1")))] == 40
    assert got[("email_engine_ips", (("status", "standby"), ("tenant", "client-2")))] == 3
    assert got[("email_engine_daily_capacity", (("tenant", "client-2"),))] == 402_200
    assert got[("email_engine_open_listings", (("tenant", "client-1"),))] == 0


def test_metrics_address_validation() -> None:
    assert split_address("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert split_address("[::1]:9464") == ("::1", 9464)
    assert temporal_runtime("") is None
    for bad in ("9464", "host:", "host:99999"):
        try:
            split_address(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad} accepted")


@workflow.defn(name="MetricsProbe", sandboxed=False)
class MetricsProbe:
    @workflow.run
    async def run(self) -> str:
        return "ok"


async def test_temporal_sdk_metrics_endpoint(temporal_local) -> None:  # type: ignore[no-untyped-def]
    host = "127.0.50.5"
    address = f"{host}:{free_port(host)}"
    runtime = temporal_runtime(address)
    assert runtime is not None and temporal_runtime(address) is runtime
    target = temporal_local.client.service_client.config.target_host
    client = await Client.connect(target, runtime=runtime)
    queue = f"metrics-{uuid.uuid4()}"
    async with Worker(client, task_queue=queue, workflows=[MetricsProbe]):
        assert await client.execute_workflow(MetricsProbe.run, id=f"metrics-{uuid.uuid4()}", task_queue=queue) == "ok"
    async with httpx.AsyncClient() as http:
        resp = await http.get(f"http://{address}/metrics", timeout=10)
    assert resp.status_code == 200
    completed = [v for (name, labels), v in samples(resp.text).items()
                 if name.startswith("temporal_workflow_completed") and ("task_queue", queue) in labels]
    assert completed and completed[0] >= 1
