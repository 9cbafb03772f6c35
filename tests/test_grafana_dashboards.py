"""The Grafana dashboards (issue 15): the committed files are exactly what the code writes, and every query
names a metric, with labels, that a real worker exports (both endpoints scraped over HTTP)."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.worker import Worker

from scripts import grafana_dashboards as gd
from scripts.dashboard_queries import exported, problems, queries, rule_queries, uses
from tests.fleet_seed import seed_fleet
from tests.support import free_port, until
from workers.metrics import serve_fleet_metrics, temporal_runtime

COMMITTED = gd.OUT


def committed_dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted((COMMITTED / "dashboards").glob("*.json"))}


def test_committed_files_are_byte_for_byte_what_the_code_writes(tmp_path: Path) -> None:
    written = gd.write(tmp_path)
    assert len(written) == 5
    for path in written:
        rel = path.relative_to(tmp_path)
        assert (COMMITTED / rel).read_bytes() == path.read_bytes(), f"deploy/grafana/{rel}: regenerate it"
    on_disk = {p.relative_to(COMMITTED) for p in COMMITTED.rglob("*") if p.is_file()}
    assert on_disk == {p.relative_to(tmp_path) for p in written}  # nothing stale left beside them
    assert gd.differences() == [] and gd.main(["--check"]) == 0


def test_check_mode_reports_a_hand_edit(tmp_path: Path) -> None:
    gd.write(tmp_path)
    target = tmp_path / "dashboards" / "email-engine-fleet.json"
    target.write_text(target.read_text().replace("Email Engine / Fleet", "Fleet (edited by hand)"))
    assert gd.differences(tmp_path) == ["dashboards/email-engine-fleet.json"]


def test_provisioning_points_grafana_at_the_dashboards() -> None:
    provider = yaml.safe_load((COMMITTED / "provisioning/dashboards/email-engine.yaml").read_text())
    (p,) = provider["providers"]
    assert p["type"] == "file" and p["options"]["path"] == gd.DASHBOARD_DIR and p["folder"] == "Email Engine"
    (ds,) = yaml.safe_load((COMMITTED / "provisioning/datasources/email-engine-prometheus.yaml").read_text())[
        "datasources"]
    assert ds["type"] == "prometheus"
    dashboards = committed_dashboards()
    assert len({d["uid"] for d in dashboards.values()}) == 3
    for d in dashboards.values():
        ids = [p["id"] for p in d["panels"]]
        assert len(set(ids)) == len(ids) and 0 not in ids
        assert all(p.get("datasource") == {"type": "prometheus", "uid": "${datasource}"} for p in d["panels"]
                   if p["type"] != "row")


# --------------------------------------------------------------------------------- the checker itself

EXPOSITION = """\
# HELP temporal_workflow_completed Count of successfully completed workflows
# TYPE temporal_workflow_completed counter
temporal_workflow_completed{namespace="default",task_queue="q",workflow_type="W"} 1
# HELP email_engine_ips Sending IPs by tenant and status
# TYPE email_engine_ips gauge
email_engine_ips{tenant="client-1",status="active"} 40.0
# HELP lat Latency
# TYPE lat histogram
lat_bucket{le="100"} 1
lat_bucket{le="+Inf"} 1
lat_count 1
lat_sum 3
"""


def board_of(*exprs: str) -> dict[str, dict[str, Any]]:
    return {"d": {"title": "d", "panels": [{"title": "p", "targets": [{"refId": "A", "expr": e} for e in exprs]}]}}


def test_the_checker_fails_on_what_prometheus_would_not_find() -> None:
    metrics = exported(EXPOSITION)
    assert set(metrics) == {"temporal_workflow_completed", "email_engine_ips", "lat_bucket", "lat_count", "lat_sum"}
    good = ['sum by (status) (email_engine_ips{tenant=~"$tenant"})',
            f"rate(temporal_workflow_completed{{task_queue=~\"${{task_queue}}\"}}[{gd.RI}])",
            f"histogram_quantile(0.95, sum by (le) (rate(lat_bucket[{gd.RI}])))",
            'email_engine_ips{instance="w1:9465"}']
    assert problems(board_of(*good), metrics) == []
    assert problems(board_of("sum(email_engine_made_up_metric)"), metrics) == [
        "d / p / A: email_engine_made_up_metric is not exported"]
    # prometheus_client's parser would call this sample `..._total`; Prometheus stores it without
    assert problems(board_of("rate(temporal_workflow_completed_total[5m])"), metrics) == [
        "d / p / A: temporal_workflow_completed_total is not exported"]
    assert problems(board_of('email_engine_ips{tennant="a"}'), metrics) == [
        "d / p / A: email_engine_ips has no label tennant"]
    assert problems(board_of("lat"), metrics) == ["d / p / A: lat is not exported"]
    assert "cannot be checked" in problems(board_of('{__name__=~"email_engine_.*"}'), metrics)[0]
    assert "does not parse" in problems(board_of("sum(email_engine_ips"), metrics)[0]
    variable = {"v": {"title": "v", "templating": {"list": [
        {"type": "query", "name": "t", "query": "label_values(email_engine_ips, tenants)"}]}}}
    assert problems(variable, metrics) == ["v / variable t: email_engine_ips has no label tenants"]


# --------------------------------------------------------------------------------- against a real worker

ATTEMPTS: dict[str, int] = {}


@activity.defn(name="grafana_probe_step")
async def probe_step(key: str) -> str:
    """Fails its first attempt (temporal_activity_execution_failed), then succeeds."""
    ATTEMPTS[key] = ATTEMPTS.get(key, 0) + 1
    if ATTEMPTS[key] == 1:
        raise RuntimeError("first attempt fails")
    return "ok"


@workflow.defn(name="GrafanaProbe", sandboxed=False)
class GrafanaProbe:
    """Makes each workflow outcome the Temporal dashboard plots happen once."""

    @workflow.run
    async def run(self, mode: str) -> str:
        if mode == "continue":
            workflow.continue_as_new("ok")
        if mode == "task-failure":  # a bug in workflow code: its task fails and is retried, not the workflow
            raise RuntimeError("workflow task failure")
        result = await workflow.execute_activity(
            probe_step, workflow.info().workflow_id, start_to_close_timeout=dt.timedelta(seconds=10),
            retry_policy=RetryPolicy(initial_interval=dt.timedelta(milliseconds=50), maximum_attempts=3))
        if mode == "fail":
            raise ApplicationError("probe failure", non_retryable=True)
        return result


async def drive_workflows(client: Client, queue: str, sdk_url: str) -> None:
    run = f"grafana-{uuid.uuid4().hex[:8]}"
    assert await client.execute_workflow(GrafanaProbe.run, "ok", id=f"{run}-ok", task_queue=queue) == "ok"
    assert await client.execute_workflow(GrafanaProbe.run, "continue", id=f"{run}-can", task_queue=queue) == "ok"
    with pytest.raises(WorkflowFailureError):
        await client.execute_workflow(GrafanaProbe.run, "fail", id=f"{run}-fail", task_queue=queue)
    stuck = await client.start_workflow(GrafanaProbe.run, "task-failure", id=f"{run}-stuck", task_queue=queue)
    with pytest.raises(RPCError):  # a request the server refuses: temporal_request_failure
        await client.get_workflow_handle(f"{run}-no-such-workflow").describe()

    async def task_failed() -> bool:
        async with httpx.AsyncClient() as http:
            return "temporal_workflow_task_execution_failed{" in (await http.get(sdk_url, timeout=10)).text

    await until("a workflow task failure in the SDK metrics", task_failed, timeout=60)
    await stuck.terminate("probe done")


async def test_every_dashboard_query_names_an_exported_metric(postgres_url: str, temporal_local: Any,
                                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    from tests.conftest import _truncate

    _truncate(postgres_url)
    monkeypatch.setenv("EMAIL_ENGINE_VAR_DIR", str(tmp_path / "var"))
    await seed_fleet(postgres_url, tmp_path)
    host = "127.0.50.6"
    fleet_address, sdk_address = f"{host}:{free_port(host)}", f"{host}:{free_port(host)}"
    server = serve_fleet_metrics(fleet_address, postgres_url)
    runtime = temporal_runtime(sdk_address)
    assert runtime is not None
    try:
        client = await Client.connect(temporal_local.client.service_client.config.target_host, runtime=runtime)
        queue = f"grafana-{uuid.uuid4().hex[:8]}"
        async with Worker(client, task_queue=queue, workflows=[GrafanaProbe], activities=[probe_step]):
            await drive_workflows(client, queue, f"http://{sdk_address}/metrics")
            async with httpx.AsyncClient() as http:
                texts = await asyncio.gather(*(http.get(f"http://{a}/metrics", timeout=30)
                                               for a in (fleet_address, sdk_address)))
    finally:
        server.shutdown()
    metrics: dict[str, set[str]] = {}
    for resp in texts:
        assert resp.status_code == 200
        for name, labels in exported(resp.text).items():
            metrics.setdefault(name, set()).update(labels)
    dashboards = committed_dashboards()
    used = {u.metric for d in dashboards.values() for where, e in queries(d) for u in uses(where, e)}
    assert len(used) >= 35 and {m for m in used if m and m.startswith("temporal_")}  # not a vacuous pass
    rules = list(rule_queries(yaml.safe_load((COMMITTED.parent / "prometheus" / "alerts.yml").read_text())))
    assert len(rules) >= 6
    assert problems(dashboards, metrics, rules) == []  # the example alert rules too
    # the same check fails when one query of the committed dashboards names a metric nobody exports
    broken = copy.deepcopy(dashboards)
    target = broken["email-engine-ips.json"]["panels"][1]["targets"][0]
    target["expr"] = target["expr"].replace("email_engine_ip_bounce_rate_7d", "email_engine_ip_bounce_ratio_7d")
    assert problems(broken, metrics) == [
        "Email Engine / IP reputation and warmup / Bounce rate per IP / A: email_engine_ip_bounce_ratio_7d is not "
        "exported"]
