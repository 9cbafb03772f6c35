"""Blocklist scan of a whole fleet through the real BlocklistScanWorkflow: time with pydnsbl side by side,
and the largest payload of everything that crosses Temporal.

    .venv/bin/python -m bench.fleet_scan [--ips 10000] [--tenants 20] [--rounds 2] [--concurrency 100]
                                         [--listed-every 20] [--act-concurrency 20]

Loads scripts/make_fleet.py's fleet, sized so that --ips IPs are scanned (active and warming; standbys
are not), into a fresh SQLite database; a real rbldnsd on loopback serves the shipped catalogue's 12 IP
zones (one IP in --listed-every listed in two zones, 5% by default, and 1% answering an error code:
bench/blocklists.seed_listings). Then the real BlocklistScanWorkflow runs on a Temporal dev server (it
suggests continue-as-new at 4,096 events, as a default cluster does) with the engine's activities,
through a data converter that records the serialized size of every payload it writes by type:
temporalio's default converter, so the bytes are those Temporal stores (workflow inputs, continue-as-new
inputs, activity inputs and results, the result). Two stand-ins: "blocklist_fleet_scan" asks the 12 IP
zones only (the sending domains have no zones here) and is timed; "start_failover_saga" serializes the
saga's input (FailoverInput, measured) and returns without starting it (the saga is
bench/failover_latency.py's business).

Acting side by side: the workflow runs twice on the same fleet, listings, dev server and worker, first
acting on one decision at a time (act_concurrency 1: what scans did before CONCURRENT_ACT_PATCH), then
--act-concurrency at a time; the saga starts are stand-ins, so both scans take the same decisions. Acting
time is measured on the server's clock, from the scan activity's completion in the first run to the
completion of the last run (pages, continue-as-new, saga starts, webhook events, alerts).

Side by side, alternating for --rounds rounds on the same IPs, zones, rbldnsd and concurrency: the
engine's scanner alone (self-test, queries, classification; no database) and pydnsbl. Prints the fleet
scan activity's time (targets, DNS, evaluation, records), the scanner and pydnsbl times and their ratio,
acting time one at a time and concurrently with their ratio, the workflow's runs and events per run,
and the largest payload per type against Temporal's 2 MB limit.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlmodel import col, select
from temporalio import activity
from temporalio.api.common.v1 import Payload
from temporalio.converter import DataConverter, DefaultPayloadConverter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.db import session_scope, upgrade
from activities.fleet_scan import fleet_scan
from activities.inventory import apply_inventory
from bench.blocklists import _ours, _pydnsbl, seed_listings
from client.histories import run_histories
from models.blocklist import Catalog, Kind, load_catalog
from models.failover import saga_id
from models.failover_contracts import FailoverInput, StartSagaRequest, StartSagaResult
from models.inventory import parse
from models.scan_contracts import (
    ACT_CONCURRENCY,
    MAX_ACT_CONCURRENCY,
    FleetScanRequest,
    ScanInput,
    ScanOutcome,
    ScanSummary,
)
from models.settings import Settings, get_settings
from models.tables import IpStatus, SendingIp
from scripts.make_fleet import SENDING_NET, fleet_toml
from tests.servers.rbldnsd import Rbldnsd
from workers import registry
from workers.devserver import temporal_binary
from workflows.blocklist_scan import BlocklistScanWorkflow

LIMIT = 2 * 1024 * 1024  # Temporal's default payload size limit (blob size error)
#: Largest serialized payload and count per type label.
SIZES: dict[str, tuple[int, int]] = {}


def _label(value: Any) -> str:
    if isinstance(value, list):
        return f"list[{type(value[0]).__name__}]" if value else "list (empty)"
    if isinstance(value, ScanInput) and value.progress is not None:
        return "ScanInput (continue-as-new)"
    return type(value).__name__


class Measured(DefaultPayloadConverter):
    """temporalio's default payload converter, recording the size of each payload it writes."""

    def to_payloads(self, values: Sequence[Any]) -> list[Payload]:
        payloads = super().to_payloads(values)
        for value, p in zip(values, payloads, strict=True):
            size, n = SIZES.get(_label(value), (0, 0))
            SIZES[_label(value)] = (max(size, p.ByteSize()), n + 1)
        return payloads


CONVERTER = dataclasses.replace(DataConverter.default, payload_converter_class=Measured)
IP_ZONES = [z for z in load_catalog().zones if z.kind is Kind.IP]
scan_seconds: list[float] = []
outcomes: list[ScanOutcome] = []


@activity.defn(name="blocklist_fleet_scan")
async def timed_fleet_scan(req: FleetScanRequest) -> ScanOutcome:
    t = time.perf_counter()
    out = await fleet_scan(dataclasses.replace(req, zones=[z.name for z in IP_ZONES]))
    scan_seconds.append(time.perf_counter() - t)
    outcomes.append(out)
    return out


@activity.defn(name="start_failover_saga")
async def measured_saga_start(req: StartSagaRequest) -> StartSagaResult:
    CONVERTER.payload_converter.to_payloads([FailoverInput(req.tenant, req.address, list(req.listings),
                                                           req.detected_by, list(req.same_scan), req.blast_radius)])
    return StartSagaResult(saga_id(req.tenant, req.address), "not-started (bench)", False)


def _fleet_shape(ips: int, tenants: int) -> int:
    """IPs per tenant so that `ips` of them are scanned (make_fleet: 94% of a tenant is active or warming)."""
    per = -(-ips // tenants)
    while per * 94 // 100 * tenants < ips:
        per += 1
    return per


@dataclasses.dataclass
class Scan:
    act_concurrency: int
    summary: ScanSummary
    elapsed: float
    acting: float  # seconds, the server's event times: the scan activity's completion to the scan's end
    events: list[int]


def _acting_seconds(histories: list[Any]) -> float:
    first, last = histories[0].events, histories[-1].events
    scan = next(e.event_id for e in first if e.HasField("activity_task_scheduled_event_attributes")
                and e.activity_task_scheduled_event_attributes.activity_type.name == "blocklist_fleet_scan")
    done = next(e for e in first if e.HasField("activity_task_completed_event_attributes")
                and e.activity_task_completed_event_attributes.scheduled_event_id == scan)
    return float((last[-1].event_time.ToDatetime() - done.event_time.ToDatetime()).total_seconds())


async def _workflow(queue: str, concurrency: list[int]) -> list[Scan]:
    from models.search_attributes import ALL

    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary("temporal")), search_attributes=ALL, ip="127.0.0.1", ui=False,
        dev_server_log_level="error", dev_server_startup_timeout=dt.timedelta(seconds=60), data_converter=CONVERTER)
    try:
        client, scans = env.client, []
        replaced = {"blocklist_fleet_scan", "start_failover_saga"}
        acts = [fn for fn in registry.activities()
                if activity._Definition.must_from_callable(fn).name not in replaced]
        with ThreadPoolExecutor(max_workers=16) as pool:
            async with Worker(client, task_queue=queue, workflows=[BlocklistScanWorkflow], activity_executor=pool,
                              activities=[*acts, timed_fleet_scan, measured_saga_start]):
                for n in concurrency:
                    wid = f"blocklist-scan/bench/{uuid.uuid4().hex[:8]}"
                    t = time.perf_counter()
                    handle = await client.start_workflow(BlocklistScanWorkflow.run, ScanInput(act_concurrency=n),
                                                         id=wid, task_queue=queue)
                    summary = await handle.result()
                    elapsed = time.perf_counter() - t
                    histories = await run_histories(client, wid, handle.result_run_id or "")
                    scans.append(Scan(n, summary, elapsed, _acting_seconds(histories),
                                      [len(h.events) for h in histories]))
        return scans
    finally:
        await env.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--ips", type=int, default=10_000, help="IPs scanned (active and warming)")
    ap.add_argument("--tenants", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=100, help="DNS queries in flight")
    ap.add_argument("--listed-every", type=int, default=20, help="one IP in N listed (20: 5%%)")
    ap.add_argument("--act-concurrency", type=int, default=ACT_CONCURRENCY,
                    help="decisions acted on at once in the second scan (the first: one at a time)")
    a = ap.parse_args()
    if a.listed_every < 1 or not 1 <= a.act_concurrency <= MAX_ACT_CONCURRENCY:
        ap.error(f"--listed-every must be >= 1 and --act-concurrency within 1..{MAX_ACT_CONCURRENCY}")
    per = _fleet_shape(a.ips, a.tenants)
    if per * a.tenants > SENDING_NET.num_addresses - 2:
        ap.error("fleet too large for the benchmarking range")
    catalog = Catalog(tuple(IP_ZONES), "bench")
    with tempfile.TemporaryDirectory() as tmp, Rbldnsd.for_catalog(catalog) as bl:
        url = f"sqlite:///{Path(tmp) / 'engine.db'}"
        os.environ.update({"EMAIL_ENGINE_DATABASE_URL": url, "EMAIL_ENGINE_VAR_DIR": str(Path(tmp) / "var"),
                           "EMAIL_ENGINE_DNS_RESOLVERS": bl.resolver, "EMAIL_ENGINE_DNS_TIMEOUT": "2.0",
                           "EMAIL_ENGINE_BLOCKLIST_CONCURRENCY": str(a.concurrency)})
        get_settings.cache_clear()
        upgrade(url)
        t = time.perf_counter()
        apply_inventory(parse(fleet_toml(a.tenants, per)), actor="bench", url=url)
        with session_scope(url) as s:
            ips = sorted(s.exec(select(SendingIp.address).where(
                col(SendingIp.status).in_([IpStatus.ACTIVE, IpStatus.WARMING]))).all())
        print(f"fleet: {a.tenants} tenants x {per} IPs, {len(ips)} scanned, loaded in {time.perf_counter() - t:.1f} s")
        seed_listings(bl, IP_ZONES, ips, a.listed_every)

        one, many = asyncio.run(_workflow(f"bench-{uuid.uuid4().hex[:6]}", [1, a.act_concurrency]))
        if (one.summary.actions, one.summary.sagas) != (many.summary.actions, many.summary.sagas):
            raise SystemExit("the two scans took different decisions: not comparable")
        out = outcomes[-1]
        settings = Settings(dns_resolvers=bl.resolver, dns_timeout=2.0)
        zones = [z.zone for z in IP_ZONES]

        async def side_by_side() -> tuple[list[float], list[float], int, int]:
            ours, theirs, q_ours, q_py = [], [], 0, 0
            for r in range(a.rounds):
                t1, q_ours, listed, unknown = await _ours(ips, catalog, settings, a.concurrency)
                t2, q_py, py_listed, py_failed = await _pydnsbl(ips, zones, bl.port, a.concurrency)
                ours.append(t1)
                theirs.append(t2)
                print(f"round {r + 1}: scanner {t1:6.2f} s ({listed} listed, {unknown} unknown)   "
                      f"pydnsbl {t2:6.2f} s ({py_listed} 'listed', {py_failed} failed)")
            return ours, theirs, q_ours, q_py

        ours, theirs, q_ours, q_py = asyncio.run(asyncio.wait_for(side_by_side(), timeout=1800))

    print()
    print(f"{len(ips)} IPs x {len(zones)} IP zones, concurrency {a.concurrency}, rbldnsd on loopback, dev server")
    print(f"  fleet scan activity (targets, self-test, {out.queries} queries, evaluation, records): "
          f"{scan_seconds[-1]:.2f} s, of which DNS {out.seconds:.2f} s ({scan_seconds[0]:.2f} s in the first scan); "
          f"{out.listed} listed, {out.unknown} unknown")
    done = many.summary
    print(f"  acting on {done.actions} decisions in {done.pages} pages (saga start stand-in + webhook event each):")
    for scan in (one, many):
        print(f"    act_concurrency {scan.act_concurrency:>3}: acting {scan.acting:7.2f} s "
              f"({scan.acting / max(1, scan.summary.actions) * 1000:6.1f} ms per decision), whole workflow "
              f"{scan.elapsed:7.2f} s, {scan.summary.runs} runs, events per run {scan.events} (51,200 limit)")
    print(f"    ratio one at a time / {many.act_concurrency} at a time: acting {one.acting / many.acting:.2f}x, "
          f"whole workflow {one.elapsed / many.elapsed:.2f}x")
    best_ours, best_py = min(ours), min(theirs)
    print(f"  scanner alone (self-test + classification): best {best_ours:.2f} s ({q_ours / best_ours:.0f} q/s), "
          f"median {statistics.median(ours):.2f} s")
    print(f"  pydnsbl (any answer = listed): best {best_py:.2f} s ({q_py / best_py:.0f} q/s), "
          f"median {statistics.median(theirs):.2f} s")
    print(f"  ratio pydnsbl time / scanner time: {best_py / best_ours:.2f}x best rounds, "
          f"{statistics.median(theirs) / statistics.median(ours):.2f}x medians; "
          f"pydnsbl / whole fleet scan activity: {best_py / scan_seconds[-1]:.2f}x")
    print()
    print(f"  largest serialized payload per type (bytes; limit {LIMIT}):")
    for label, (size, n) in sorted(SIZES.items(), key=lambda kv: -kv[1][0]):
        print(f"    {label:32} {size:>9}  ({n} payloads, {size / LIMIT:.2%} of the limit)")
    print("  (str and int: the scan activity's heartbeat details; list (empty): the webhook relay's result)")


if __name__ == "__main__":
    main()
