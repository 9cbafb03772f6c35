"""Helpers of the failover tests: a two-tenant inventory on 127.0.40.0/24 (this feature's loopback
range) with a disabled Postfix host (deploys render to <var_dir>/mta/<host>/), passing DNS checks for
the standbys, and an engine worker built from workers.registry with named activities replaced."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlmodel import col, select
from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from activities.alerts import Alert
from activities.db import session_scope
from activities.inventory import apply_inventory
from models.dns_tables import DnsCheck
from models.failover_tables import StandbyClaim
from models.inventory import parse
from models.settings import get_settings
from models.tables import BlocklistEvent, DailyStat, SendingDomain, SendingIp, StatusChange
from workers import registry

HOST = "mta-fo"
HOST_ADDR = "127.0.40.1"
# tenant -> [(address, status, phase)]
FLEET: dict[str, list[tuple[str, str, str | None]]] = {
    "fo-a": [("127.0.40.11", "active", None), ("127.0.40.12", "active", None), ("127.0.40.13", "active", None),
             ("127.0.40.14", "warming", "week_3"), ("127.0.40.21", "standby", None),
             ("127.0.40.22", "standby", None)],
    "fo-b": [("127.0.40.31", "active", None), ("127.0.40.32", "active", None), ("127.0.40.41", "standby", None)],
}


def inventory_text(fleet: dict[str, list[tuple[str, str, str | None]]] = FLEET, backend: str = "postfix",
                   config_dir: str = "/etc/postfix", host_addr: str = HOST_ADDR, enabled: bool = False,
                   ssh: str = "") -> str:
    lines = ["[[mta_hosts]]", f'name = "{HOST}"', f'address = "{host_addr}"', f'backend = "{backend}"',
             f'config_dir = "{config_dir}"', f"enabled = {'true' if enabled else 'false'}", ssh, ""]
    for i, (tenant, ips) in enumerate(fleet.items()):
        lines += ["[[tenants]]", f'name = "{tenant}"', f'mta_host = "{HOST}"', 'dkim_key_dir = "/etc/opendkim/keys"',
                  "[tenants.mailwizz]", f'base_url = "http://127.0.40.{200 + i}/api"',
                  f'source_ip = "127.0.40.{200 + i}"', ""]
        for address, status, phase in ips:
            n = address.rsplit(".", 1)[1]
            lines += ["[[tenants.ips]]", f'address = "{address}"', f'hostname = "mail.fo{n}.example"',
                      f'domain = "fo{n}.example"', f'vmta = "vmta-{tenant}-{n}"', f'status = "{status}"']
            if phase:
                lines.append(f'phase = "{phase}"')
            lines.append("")
    return "\n".join(lines)


def seed(url: str, fleet: dict[str, list[tuple[str, str, str | None]]] = FLEET, **kw: Any) -> None:
    apply_inventory(parse(inventory_text(fleet, **kw)), actor="test", url=url)
    passing = {name: {"status": "valid", "reason": "test fixture"} for name in ("spf", "dkim", "dmarc", "ptr")}
    with session_scope(url) as s:
        for ip, domain in s.exec(select(SendingIp, SendingDomain).join(
                SendingDomain, col(SendingDomain.ip_id) == col(SendingIp.id))):
            assert domain.id is not None
            s.add(DnsCheck(domain_id=domain.id, ip_address=ip.address, overall="valid", items=passing))


def fail_dns(url: str, address: str) -> None:
    """A newer DNS check of `address`'s domain where SPF does not authorize it (the gate fails)."""
    with session_scope(url) as s:
        ip = s.exec(select(SendingIp).where(SendingIp.address == address)).one()
        domain = s.exec(select(SendingDomain).where(SendingDomain.ip_id == ip.id)).one()
        assert domain.id is not None
        items = {name: {"status": "valid", "reason": "ok"} for name in ("dkim", "dmarc", "ptr")}
        items["spf"] = {"status": "invalid", "reason": f"SPF does not authorize {address}"}
        s.add(DnsCheck(domain_id=domain.id, ip_address=address, overall="invalid", items=items,
                       checked_at=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)))


def add_stats(url: str, address: str, sent: int, complaints: int, days_ago: int = 1) -> None:
    with session_scope(url) as s:
        ip = s.exec(select(SendingIp).where(SendingIp.address == address)).one()
        assert ip.id is not None
        s.add(DailyStat(ip_id=ip.id, day=dt.date.today() - dt.timedelta(days=days_ago), sent=sent,
                        delivered=sent, complaints=complaints))


def ip_row(url: str, address: str) -> SendingIp:
    with session_scope(url) as s:
        ip = s.exec(select(SendingIp).where(SendingIp.address == address)).one()
        s.expunge(ip)
        return ip


def statuses(url: str) -> dict[str, str]:
    with session_scope(url) as s:
        return {ip.address: ip.status.value for ip in s.exec(select(SendingIp))}


def audit(url: str, address: str) -> list[StatusChange]:
    with session_scope(url) as s:
        ip = s.exec(select(SendingIp).where(SendingIp.address == address)).one()
        rows = list(s.exec(select(StatusChange).where(StatusChange.ip_id == ip.id).order_by(col(StatusChange.id))))
        for r in rows:
            s.expunge(r)
        return rows


def events(url: str, address: str) -> list[BlocklistEvent]:
    with session_scope(url) as s:
        ip = s.exec(select(SendingIp).where(SendingIp.address == address)).one()
        rows = list(s.exec(select(BlocklistEvent).where(BlocklistEvent.ip_id == ip.id)
                           .order_by(col(BlocklistEvent.id))))
        for r in rows:
            s.expunge(r)
        return rows


def claims(url: str) -> list[str]:
    with session_scope(url) as s:
        return [str(c.workflow_id) for c in s.exec(select(StandbyClaim))]


def rendered_dir() -> Path:
    return get_settings().var_dir / "mta" / HOST


def bound_addresses() -> set[str]:
    """Addresses in the tenants' pools of the deployed (rendered) Postfix config: the transports the
    randmaps in main.cf choose from, mapped to their `smtp_bind_address` in master.cf."""
    root = rendered_dir() / "email-engine"
    bind: dict[str, str] = {}
    transport = None
    for line in (root / "master.cf").read_text().splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            transport = line.split()[0]
        elif "smtp_bind_address=" in line and transport:
            bind[transport] = line.split("smtp_bind_address=", 1)[1].split()[0]
    out = set()
    for line in (root / "main.cf").read_text().splitlines():
        if line.startswith("ee_tenant_") and "randmap:{" in line:
            out |= {bind[t] for t in line.split("randmap:{", 1)[1].split("}", 1)[0].split(",")}
    return out


def activity_name(fn: Callable[..., Any]) -> str:
    defn = activity._Definition.must_from_callable(fn)
    assert defn.name is not None
    return defn.name


class AlertLog:
    """Records every alert, then delivers it with the real activity (log; Telegram when configured)."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    def activity(self) -> Callable[..., Any]:
        from activities.alerts import send_alert as real

        @activity.defn(name="send_alert")
        async def send_alert(alert: Alert) -> bool:
            self.alerts.append(alert)
            return await real(alert)

        return send_alert

    def titles(self) -> list[str]:
        return [a.title for a in self.alerts]


@asynccontextmanager
async def engine_worker(client: Client, overrides: list[Callable[..., Any]] = (),  # type: ignore[assignment]
                        extra_workflows: list[type] = ()) -> AsyncIterator[str]:  # type: ignore[assignment]
    """A worker serving the registry's workflows and activities on a fresh task queue; `overrides`
    replace activities of the same name. Yields the task queue."""
    from tests.warmup_support import register_search_attributes

    await register_search_attributes(client)  # the time-skipping server starts without them
    queue = f"fo-{uuid.uuid4().hex[:8]}"
    replaced = {activity_name(fn) for fn in overrides}
    acts = [fn for fn in registry.activities() if activity_name(fn) not in replaced] + list(overrides)
    with ThreadPoolExecutor(max_workers=16) as executor:
        try:
            async with Worker(client, task_queue=queue, workflows=[*registry.workflows(), *extra_workflows],
                              activities=acts, activity_executor=executor):
                yield queue
        finally:
            # workflows that outlive a saga (deploys serialize per host, warmups last weeks): not past this test
            await end_workflow(client, f"mta-deploy/{HOST}")
            for tenant, ips in FLEET.items():
                for address, _, _ in ips:
                    await end_workflow(client, f"warmup/{tenant}/{address}")


async def end_workflow(client: Client, workflow_id: str) -> None:
    from temporalio.service import RPCError

    try:
        await client.get_workflow_handle(workflow_id).terminate("test over")
    except RPCError:
        pass  # not running


async def wait_for(handle: WorkflowHandle[Any, Any], predicate: Callable[[Any], bool], timeout: float = 20.0) -> Any:
    """Poll the saga's `state` query until `predicate(state)` holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        state = await handle.query("state")
        if state is not None and predicate(state):
            return state
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not reached; state: {state}")
        await asyncio.sleep(0.1)


DATA = Path(__file__).resolve().parent / "data"
# Set EMAIL_ENGINE_RECORD_HISTORIES=1 to rewrite the committed histories (after an intended change).
RECORD = os.environ.get("EMAIL_ENGINE_RECORD_HISTORIES") == "1"


async def keep_history(client: Any, workflow_id: str, name: str) -> None:
    if RECORD:
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        (DATA / f"failover-history-{name}.json").write_text(_scrub(json.loads(history.to_json())))


def _scrub(node: Any) -> str:
    """Stack traces name this machine's paths: dropped from committed histories (replay ignores them)."""
    def walk(n: Any) -> None:
        if isinstance(n, dict):
            for k in n:
                if k == "stackTrace":
                    n[k] = ""
                else:
                    walk(n[k])
        elif isinstance(n, list):
            for x in n:
                walk(x)
    walk(node)
    return json.dumps(node, indent=1)
