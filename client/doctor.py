"""The doctor's Temporal probes: reachable, namespace present, search attributes registered, every
Schedule present and not paused, a worker polling the task queue (describe_task_queue)."""

from __future__ import annotations

import datetime as dt

from temporalio.api.enums.v1 import IndexedValueType, TaskQueueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from models import doctor as dm
from models import schedules as sm
from models.doctor import Check
from models.errors import TemporalUnreachable
from models.search_attributes import ALL as SEARCH_ATTRIBUTES
from models.settings import Settings


async def temporal_checks(settings: Settings) -> list[Check]:
    from client.connection import connect

    try:
        client = await connect(settings)
    except TemporalUnreachable as err:
        return [dm.fail("temporal", "reachable", settings.redact(str(err)),
                        "start the cluster, or fix EMAIL_ENGINE_TEMPORAL_ADDRESS and its TLS settings")]
    checks = [dm.ok("temporal", "reachable", settings.temporal_address),
              dm.transport(settings.temporal_address, settings.temporal_security())]
    ns = settings.temporal_namespace
    try:
        await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=ns))
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return [*checks, dm.fail("temporal", "namespace", f"{ns!r} does not exist",
                                     f"temporal operator namespace create --namespace {ns} (or fix "
                                     "EMAIL_ENGINE_TEMPORAL_NAMESPACE)")]
        return [*checks, dm.fail("temporal", "namespace", f"{ns!r}: {err}", "check the client's permissions")]
    checks.append(dm.ok("temporal", "namespace", ns))
    checks.append(await _search_attributes(client, ns))
    checks += await _schedules(client)
    checks += await _pollers(client, ns, settings.task_queue)
    return checks


async def _search_attributes(client: Client, ns: str) -> Check:
    try:
        resp = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=ns))
    except RPCError as err:
        return dm.fail("temporal", "search attributes", f"cannot list them: {err}",
                       "check the client's permissions (operator API)")
    registered = {name: IndexedValueType.Name(kind).removeprefix("INDEXED_VALUE_TYPE_")
                  for name, kind in resp.custom_attributes.items()}
    return dm.search_attributes(registered, [k.name for k in SEARCH_ATTRIBUTES], ns)


async def _schedules(client: Client) -> list[Check]:
    from client.schedules import describe

    checks = []
    for name in sm.NAMES:
        desc = await describe(client, name)
        state = desc.schedule.state if desc else None
        checks.append(dm.schedule(name, desc is not None, bool(state and state.paused),
                                  (state.note or "") if state else ""))
    return checks


async def _pollers(client: Client, ns: str, queue: str) -> list[Check]:
    now = dt.datetime.now(dt.UTC)
    checks = []
    for kind, qtype in (("workflows", TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW),
                        ("activities", TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY)):
        resp = await client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
            namespace=ns, task_queue=TaskQueue(name=queue), task_queue_type=qtype))
        ages = {p.identity: (now - p.last_access_time.ToDatetime(dt.UTC)).total_seconds() for p in resp.pollers}
        checks.append(dm.pollers(queue, kind, ages))
    return checks
