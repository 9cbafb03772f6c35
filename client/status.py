"""The fleet at a glance (`email-engine status`): the inventory's sections (activities.status) plus
Temporal's: warmups by tenant and phase (visibility with the engine's search attributes, then the
typed `status` query per workflow, paused ones counted), failovers and active-guard steps held for
approval (the same way: visibility, then each workflow's `state` query). When
Temporal is unreachable the warmups fall back to the inventory and the status says so.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from temporalio.client import Client

from activities.status import database_sections
from client.failovers import RUNNING as RUNNING_FAILOVERS
from client.failovers import query_state
from client.guard import RUNNING as RUNNING_GUARD_STEPS
from client.guard import query_state as query_guard_state
from client.warmups import query_status
from models.search_attributes import IP_ADDRESS, TENANT, WARMUP_PHASE

log = logging.getLogger("email_engine.status")

#: Most workflows queried per status call (visibility lists them all; queries cost a round trip each).
MAX_QUERIES = 200


async def temporal_sections(client: Client) -> dict[str, Any]:
    """Warmups by tenant and phase (paused ones counted), failovers and guard steps held for approval."""
    warmups: dict[str, dict[str, Any]] = {}
    paused: list[dict[str, Any]] = []
    n = 0
    async for wf in client.list_workflows('WorkflowType="IpWarmupWorkflow" AND ExecutionStatus="Running"'):
        sa = wf.typed_search_attributes
        tenant = sa.get(TENANT) or (wf.id.split("/")[1] if wf.id.count("/") >= 2 else "?")
        phase = sa.get(WARMUP_PHASE) or "?"
        t = warmups.setdefault(tenant, {"by_phase": {}, "paused": 0, "running": 0})
        t["by_phase"][phase] = t["by_phase"].get(phase, 0) + 1
        t["running"] += 1
        if n < MAX_QUERIES:
            n += 1
            try:
                st = await query_status(client.get_workflow_handle(wf.id))
                if st.paused:
                    t["paused"] += 1
                    paused.append({"workflow_id": wf.id, "reason": st.pause_reason, "until": st.paused_until,
                                   "by": st.paused_by})
            except Exception as exc:
                log.warning("status query of %s failed: %s", wf.id, exc)
    held: list[dict[str, Any]] = []
    running_failovers = 0
    async for wf in client.list_workflows(RUNNING_FAILOVERS):
        running_failovers += 1
        try:
            state = await query_state(client.get_workflow_handle(wf.id))
        except Exception as exc:
            log.warning("state query of %s failed: %s", wf.id, exc)
            continue
        if state is not None and state.status == "held":
            held.append({"workflow_id": wf.id, "tenant": state.tenant, "address": state.address,
                         "reasons": state.reasons, "listings": state.listings})
    guard_running, guard_held = await held_guard_steps(client)
    return {"available": True, "warmups": dict(sorted(warmups.items())), "paused": paused,
            "failovers_running": running_failovers, "failovers_held": held,
            "guard_steps_running": guard_running, "guard_steps_held": guard_held}


async def held_guard_steps(client: Client) -> tuple[int, list[dict[str, Any]]]:
    """Open GuardStepWorkflows, and those waiting for `email-engine guard approve|deny` (capacity-loss
    hold), oldest first: `since` is the workflow's start, which is when the hold began (holding is its
    first step)."""
    running = 0
    held: list[dict[str, Any]] = []
    async for wf in client.list_workflows(RUNNING_GUARD_STEPS):
        running += 1
        try:
            state = await query_guard_state(client.get_workflow_handle(wf.id, run_id=wf.run_id))
        except Exception as exc:  # a step whose worker is down cannot answer queries
            log.warning("state query of %s failed: %s", wf.id, exc)
            continue
        if state.status != "held":
            continue
        sa = wf.typed_search_attributes
        tenant, address = sa.get(TENANT) or state.tenant, sa.get(IP_ADDRESS) or state.address
        held.append({"workflow_id": wf.id, "run_id": wf.run_id, "tenant": tenant, "address": address,
                     "day": state.day, "action": state.action, "to_phase": state.to_phase,
                     "evidence": state.evidence, "hold_reason": state.hold_reason, "since": wf.start_time,
                     "answer": f"email-engine guard approve|deny {tenant} {address} --reason ..."})
    return running, sorted(held, key=lambda h: (h["since"], h["workflow_id"]))


async def collect(url: str | None = None, client: Client | None = None, connect_timeout: float = 3.0
                  ) -> dict[str, Any]:
    """The whole status; `client` None: connect with the settings (a failure is a note, not an error)."""
    data = await asyncio.to_thread(database_sections, url)
    try:
        if client is None:
            from client.connection import connect

            client = await asyncio.wait_for(connect(), connect_timeout)
        data["temporal"] = await asyncio.wait_for(temporal_sections(client), 30)
    except Exception as exc:
        data["temporal"] = {"available": False,
                            "note": f"Temporal unreachable ({type(exc).__name__}); "
                                    "warmups below are the inventory's warming IPs, pause state unknown"}
    return data
