"""DNS validation at fleet scale: history events per run and payload sizes for N domains.

    .venv/bin/python -m bench.dns_validation_scale [--tenants 2] [--ips 5000] [--batch 200] [--per-run 20]

Loads scripts/make_fleet.py's fleet (N domains) into a fresh SQLite database and runs the real
DnsValidationWorkflow on the time-skipping server with the real span activity and the real batch
activity (keyset pages from the database, results persisted), except that the DNS lookups are left
out: a stand-in checker answers "unknown" at once (the fleet's .example domains have no zones to ask,
and this bench measures Temporal's side, not resolvers: bench/dns_checks.py does those). Prints the
runs, the history events of each run against the 51,200 limit, the largest batch result and the
carried progress (payload bytes), and the time.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import dataclasses
import os
import tempfile
import time
import uuid
from pathlib import Path

from temporalio import activity
from temporalio.converter import DataConverter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.alerts import Alert
from activities.db import upgrade
from activities.dns_checks import Checker, DnsTarget, DomainCheck, check_batch, dns_target_span
from activities.inventory import apply_inventory
from models.dns_auth import ITEMS, UNKNOWN, ItemResult
from models.dns_contracts import DnsBatchRequest, DnsBatchResult, DnsProgress, DnsValidationInput
from models.inventory import parse
from models.settings import get_settings
from scripts.make_fleet import fleet_toml
from workers.devserver import temporal_binary
from workflows.dns_validation import DnsValidationWorkflow

HISTORY_LIMIT = 51_200
sizes: list[int] = []


class NoDns(Checker):
    """Answers every item "unknown" without a query (see the module docstring)."""

    def check(self, t: DnsTarget) -> DomainCheck:
        return DomainCheck(t, {name: ItemResult(UNKNOWN, "not asked (bench)") for name in ITEMS})


@activity.defn(name="check_dns_batch")
def bench_batch(req: DnsBatchRequest) -> DnsBatchResult:
    out = check_batch(req, checker=NoDns([], 1.0), beat=lambda b: activity.heartbeat(b))
    sizes.append(len(DataConverter.default.payload_converter.to_payloads([out])[0].data))
    return out


@activity.defn(name="send_alert")
async def send_alert(alert: Alert) -> bool:
    return True


async def run(tenants: int, ips: int, batch: int, per_run: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'engine.db'}"
        os.environ["EMAIL_ENGINE_DATABASE_URL"] = url
        os.environ["EMAIL_ENGINE_VAR_DIR"] = str(Path(tmp) / "var")
        get_settings.cache_clear()
        upgrade(url)
        t = time.perf_counter()
        apply_inventory(parse(fleet_toml(tenants, ips)), actor="bench", url=url)
        print(f"fleet: {tenants} x {ips} = {tenants * ips} domains loaded in {time.perf_counter() - t:.1f} s")
        env = await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=str(temporal_binary("temporal-test-server")))
        try:
            client, queue, wid = env.client, "dns-bench", f"dns-validation-{uuid.uuid4().hex[:6]}"
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                async with Worker(client, task_queue=queue, workflows=[DnsValidationWorkflow], activity_executor=pool,
                                  activities=[dns_target_span, bench_batch, send_alert]):
                    t = time.perf_counter()
                    handle = await client.start_workflow(
                        DnsValidationWorkflow.run, DnsValidationInput(batch_size=batch, batches_per_run=per_run),
                        id=wid, task_queue=queue)
                    status = await handle.result()
                    elapsed = time.perf_counter() - t
            run_id, events, carried = handle.result_run_id or "", [], 0
            while run_id:
                history = await client.get_workflow_handle(wid, run_id=run_id).fetch_history()
                events.append(len(history.events))
                last = history.events[-1]
                run_id = ""
                if last.HasField("workflow_execution_continued_as_new_event_attributes"):
                    attrs = last.workflow_execution_continued_as_new_event_attributes
                    carried = max(carried, sum(len(p.data) for p in attrs.input.payloads))
                    run_id = attrs.new_execution_run_id
        finally:
            await env.shutdown()
    print(f"validation: {status.done}/{status.total} domains, {status.batches} batches of {batch}, "
          f"{status.runs} runs ({per_run} batches per run), {elapsed:.1f} s")
    print(f"history events per run: {events} (largest {max(events)}, limit {HISTORY_LIMIT}: "
          f"{max(events) / HISTORY_LIMIT:.2%})")
    print(f"largest batch result {max(sizes)} bytes, largest carried progress {carried} bytes "
          f"(payload limit 2 MB); progress fields: {[f.name for f in dataclasses.fields(DnsProgress)]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--tenants", type=int, default=2)
    ap.add_argument("--ips", type=int, default=5000)
    ap.add_argument("--batch", type=int, default=DnsValidationInput.batch_size)
    ap.add_argument("--per-run", type=int, default=DnsValidationInput.batches_per_run)
    a = ap.parse_args()
    asyncio.run(run(a.tenants, a.ips, a.batch, a.per_run))


if __name__ == "__main__":
    main()
