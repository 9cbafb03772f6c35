"""Start N IpWarmupWorkflows on a local dev server with one or two workers; baseline: a trivial workflow.

    .venv/bin/python -m bench.warmup_start [--n 100 1000 10000] [--workers 1 2] [--tick-window 5]
                                           [--max-seconds 300] [--parallel]

For each N, worker count and kind, a fresh Temporal dev server (in memory, the engine's search
attributes) and the workers, each in a child process (so its peak RSS, VmHWM, is its own), sized by the
engine's settings (EMAIL_ENGINE_WORKER_MAX_CACHED_WORKFLOWS, ..._MAX_CONCURRENT_WORKFLOW_TASKS,
..._MAX_CONCURRENT_ACTIVITIES). The client starts N workflows (EMAIL_ENGINE_WARMUP_START_CONCURRENCY in
flight, as `warmup start --all-warming` does) with the same search attributes and memo; each workflow's
first daily tick comes within --tick-window seconds of its start (WarmupInput.first_tick_within_seconds,
stable per IP): a compressed wake window (the default window is 3,600 s). "Last tick behind schedule" is
how long after the last scheduled first tick (all started + window + 1 s) the last one was done: about 0
means the workers kept up with the wake window; more means ticks queued.
Measured: start throughput (workflows/s), worker peak memory, and the time from the first start until
every workflow has passed its first tick (the tick runs the real `load_warmup_context` activity against a
SQLite inventory of N IPs in 198.18.0.0/15, addresses that are only stored, never contacted).
Baseline, same run, same way: a trivial workflow that waits for the same per-IP timer and then completes
with no activity. Printed side by side with the ratio warmup/baseline. Each run stops itself after
--max-seconds; a run that did not finish is reported as such, and the largest N that finished is named.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import ipaddress
import os
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes

with workflow.unsafe.imports_passed_through():
    from activities.warmup import WarmupContext, WarmupContextRequest, load_context
    from models.warmup import wake_offset

TENANT = "bench"


@dataclass
class NoopInput:
    address: str
    tick_window: int


@workflow.defn(name="BenchNoopWorkflow", sandboxed=False)
class BenchNoopWorkflow:
    """Baseline: the same per-IP first-tick timer, then done (no activity)."""

    @workflow.run
    async def run(self, inp: NoopInput) -> str:
        await workflow.sleep(wake_offset(inp.address, inp.tick_window) + 1)
        if not workflow.unsafe.is_replaying():
            os.write(1, f"TICK {time.time():.6f}\n".encode())  # one atomic write per line
        return "done"


# ------------------------------------------------------------------------------------------ worker


@activity.defn(name="load_warmup_context")
def load_warmup_context(req: WarmupContextRequest) -> WarmupContext:
    """The real activity, plus a line per completed tick so the parent can time "all passed"."""
    ctx = load_context(req)
    os.write(1, f"TICK {time.time():.6f}\n".encode())  # one atomic write per line
    return ctx


def _peak_rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


async def serve(address: str, queue: str, url: str, kind: str) -> None:
    from temporalio.worker import Worker

    from models.settings import get_settings
    from workflows.warmup import IpWarmupWorkflow

    os.environ["EMAIL_ENGINE_DATABASE_URL"] = url
    settings = get_settings()
    client = await Client.connect(address)
    with ThreadPoolExecutor(max_workers=settings.worker_max_concurrent_activities) as pool:
        workflows = [IpWarmupWorkflow] if kind == "warmup" else [BenchNoopWorkflow]
        acts = [load_warmup_context] if kind == "warmup" else []
        # sized as workers/engine.build_worker sizes the engine worker
        async with Worker(client, task_queue=queue, workflows=workflows, activities=acts, activity_executor=pool,
                          max_cached_workflows=settings.worker_max_cached_workflows,
                          max_concurrent_workflow_tasks=settings.worker_max_concurrent_workflow_tasks,
                          max_concurrent_activities=settings.worker_max_concurrent_activities):
            print("READY", flush=True)
            await asyncio.to_thread(sys.stdin.read)  # until the parent closes stdin
    print(f"PEAK_RSS_KB {_peak_rss_kb()}", flush=True)


# ------------------------------------------------------------------------------------------ parent


def _addresses(n: int) -> list[str]:
    base = int(ipaddress.IPv4Address("198.18.0.1"))
    return [str(ipaddress.IPv4Address(base + i)) for i in range(n)]


def make_inventory(url: str, addresses: list[str]) -> None:
    """N warming IPs of one tenant, inserted in bulk (apply_inventory validates one by one: too slow here)."""
    from sqlalchemy import insert

    from activities import db
    from models.tables import MtaHost, SendingDomain, SendingIp, Tenant

    db.upgrade(url)
    today = dt.datetime.now(dt.UTC).date()
    with db.session_scope(url) as s:
        host = MtaHost(name="pmta-bench", address="127.0.12.1", backend="powermta")  # type: ignore[arg-type]
        s.add(host)
        s.flush()
        tenant = Tenant(name=TENANT, mta_host_id=host.id, pool_name="bench-pool")
        s.add(tenant)
        s.flush()
        s.execute(insert(SendingIp), [
            {"address": a, "version": 4, "hostname": f"mail{i}.bench.example", "tenant_id": tenant.id,
             "purpose": "marketing", "status": "warming", "warmup_phase": "week_1", "phase_started_on": today,
             "daily_quota": 50, "weight": 1, "vmta_name": f"vmta-bench-{i}", "quarantine_extensions": 0,
             "status_changed_at": dt.datetime.now(dt.UTC)}
            for i, a in enumerate(addresses)])
        ids: dict[str, int] = dict(s.execute(SendingIp.__table__.select().with_only_columns(  # type: ignore[attr-defined]
            SendingIp.__table__.c.address, SendingIp.__table__.c.id)).all())  # type: ignore[attr-defined]
        s.execute(insert(SendingDomain), [
            {"name": f"bench{i}.example", "tenant_id": tenant.id, "ip_id": ids[a], "dkim_selector": "default",
             "dkim_key_path": f"/etc/pmta/dkim/bench{i}.key"} for i, a in enumerate(addresses)])


@dataclass
class Result:
    kind: str
    n: int
    workers: int = 1
    start_rate: float = 0.0
    started_after: float | None = None
    all_ticked: float | None = None
    #: peak RSS of the largest worker, and of all workers together
    peak_rss_mb: float = 0.0
    total_rss_mb: float = 0.0
    finished: bool = False
    note: str = ""


_MIGRATING = asyncio.Lock()


async def run_one(kind: str, n: int, tick_window: int, max_seconds: float, tmp: Path, workers: int = 1) -> Result:
    from temporalio.testing import WorkflowEnvironment

    from models.search_attributes import ALL, IP_ADDRESS, IP_STATUS, WARMUP_PHASE
    from models.search_attributes import TENANT as TENANT_KEY
    from models.settings import get_settings
    from models.warmup_contracts import WarmupInput
    from workers.devserver import temporal_binary
    from workflows.warmup import IpWarmupWorkflow

    result = Result(kind, n, workers)
    addresses = _addresses(n)
    url = f"sqlite:///{tmp / f'{kind}-{n}-{workers}.db'}"
    if kind == "warmup":
        async with _MIGRATING:  # Alembic's context is process-global: one migration at a time
            await asyncio.to_thread(make_inventory, url, addresses)
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary("temporal")), search_attributes=ALL, ip="127.0.0.1",
        ui=False, dev_server_log_level="error", dev_server_startup_timeout=timedelta(seconds=60))
    queue = f"bench-{uuid.uuid4().hex[:6]}"
    target = env.client.service_client.config.target_host
    procs = [subprocess.Popen([sys.executable, "-m", "bench.warmup_start", "--serve", target, queue, url, kind],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(workers)]
    ticks: list[float] = []
    peak: list[int] = []

    def read_worker(worker: subprocess.Popen[str]) -> None:
        assert worker.stdout is not None
        for line in worker.stdout:
            if line.startswith("TICK "):
                try:
                    ticks.append(float(line.split()[1]))
                except (IndexError, ValueError):
                    pass
            elif line.startswith("PEAK_RSS_KB"):
                peak.append(int(line.split()[1]))

    for worker in procs:
        assert worker.stdout is not None
        if worker.stdout.readline().strip() != "READY":
            raise RuntimeError("bench worker did not start")
    loop = asyncio.get_running_loop()
    readers = [loop.run_in_executor(None, read_worker, w) for w in procs]
    deadline = time.monotonic() + max_seconds
    today = dt.datetime.now(dt.UTC).date().isoformat()
    sem = asyncio.Semaphore(get_settings().warmup_start_concurrency)

    async def start(i: int, address: str) -> None:
        async with sem:
            if kind == "warmup":
                await env.client.start_workflow(
                    IpWarmupWorkflow.run,
                    WarmupInput(tenant=TENANT, address=address, domain=f"bench{i}.example", phase="week_1",
                                phase_started_on=today, quota=50, first_tick_within_seconds=tick_window),
                    id=f"warmup/{TENANT}/{address}", task_queue=queue,
                    search_attributes=TypedSearchAttributes([
                        SearchAttributePair(TENANT_KEY, TENANT), SearchAttributePair(IP_ADDRESS, address),
                        SearchAttributePair(WARMUP_PHASE, "week_1"), SearchAttributePair(IP_STATUS, "warming")]),
                    memo={"tenant": TENANT, "ip": address, "domain": f"bench{i}.example"})
            else:
                await env.client.start_workflow(BenchNoopWorkflow.run, NoopInput(address, tick_window),
                                                id=f"noop/{address}", task_queue=queue)

    t0 = time.time()
    try:
        await asyncio.wait_for(asyncio.gather(*(start(i, a) for i, a in enumerate(addresses))),
                               timeout=max(1.0, deadline - time.monotonic()))
        result.started_after = time.time() - t0
        result.start_rate = n / result.started_after
        while len(ticks) < n and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        if len(ticks) >= n:
            result.all_ticked = max(ticks) - t0
            result.finished = True
        else:
            result.note = f"only {len(ticks)}/{n} ticked within {max_seconds:.0f} s"
    except TimeoutError:
        result.note = f"starting did not finish within {max_seconds:.0f} s"
    finally:
        for worker in procs:
            assert worker.stdin is not None
            worker.stdin.close()
        for worker in procs:
            try:
                await asyncio.wait_for(asyncio.to_thread(worker.wait), 60)
            except TimeoutError:
                worker.kill()
        await asyncio.gather(*readers)
        await env.shutdown()
    result.peak_rss_mb = max(peak, default=0) / 1024
    result.total_rss_mb = sum(peak) / 1024
    return result


def _fmt(v: float | None, unit: str) -> str:
    return "-" if v is None else f"{v:,.1f}{unit}"


async def main(ns: list[int], tick_window: int, max_seconds: float, worker_counts: list[int],
               parallel: bool = False) -> None:
    from models.settings import get_settings

    st = get_settings()
    print(f"worker: cache {st.worker_max_cached_workflows}, workflow tasks {st.worker_max_concurrent_workflow_tasks}, "
          f"activities {st.worker_max_concurrent_activities}; starts in flight {st.warmup_start_concurrency}")
    largest: dict[int, int] = {}
    failed: set[int] = set()
    with tempfile.TemporaryDirectory(prefix="bench-warmup-") as d:
        for n in ns:
            counts = [w for w in worker_counts if w not in failed]  # a smaller N that did not finish: skip
            runs = [(kind, workers) for workers in counts for kind in ("warmup", "baseline")]
            if parallel:  # every run at once, each on its own dev server: for long (real) wake windows
                done = await asyncio.gather(*(run_one(k, n, tick_window, max_seconds, Path(d), w) for k, w in runs))
            else:
                done = [await run_one(k, n, tick_window, max_seconds, Path(d), w) for k, w in runs]
            for workers in counts:
                pair = [r for r in done if r.workers == workers]
                w, b = pair
                print(f"\nN = {n:,}, {workers} worker(s), first tick within {tick_window} s of each start")
                print(f"{'':28}{'warmup':>14}{'baseline':>14}{'ratio':>10}")
                rows = [("starts / s", w.start_rate, b.start_rate, ""),
                        ("all started after", w.started_after, b.started_after, " s"),
                        ("all first ticks after", w.all_ticked, b.all_ticked, " s"),
                        ("peak RSS, largest worker", w.peak_rss_mb, b.peak_rss_mb, " MB"),
                        ("peak RSS, all workers", w.total_rss_mb, b.total_rss_mb, " MB")]
                for label, a, c, unit in rows:
                    ratio = f"{a / c:.2f}x" if a and c else "-"
                    print(f"{label:28}{_fmt(a, unit):>14}{_fmt(c, unit):>14}{ratio:>10}")
                lag = [None if r.all_ticked is None or r.started_after is None
                       else max(0.0, r.all_ticked - (r.started_after + tick_window + 1)) for r in pair]
                print(f"{'last tick behind schedule':28}{_fmt(lag[0], ' s'):>14}{_fmt(lag[1], ' s'):>14}")
                for r in pair:
                    if r.note:
                        print(f"  {r.kind}: {r.note}")
                if w.finished:
                    largest[workers] = n
                else:
                    failed.add(workers)
    for workers in worker_counts:
        print(f"largest N that finished with {workers} worker(s): {largest.get(workers, 'none')}")


def cli() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        asyncio.run(serve(*sys.argv[2:6]))
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, nargs="+", default=[100, 1000, 10000])
    p.add_argument("--tick-window", type=int, default=5)
    p.add_argument("--max-seconds", type=float, default=300)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--parallel", action="store_true",
                   help="run every worker count and the baseline at once (each on its own dev server), so a "
                        "real 3,600 s wake window is measured in about an hour instead of four")
    a = p.parse_args()
    asyncio.run(main(a.n, a.tick_window, a.max_seconds, a.workers, a.parallel))


if __name__ == "__main__":
    cli()
