"""Pause every warming IP of a tenant, e.g. while its sender cleans a list after a complaint spike.

    python examples/pause_tenant_warmups.py client-1 --reason "complaint spike" [--days 3]

The warming IPs come from the inventory (EMAIL_ENGINE_DATABASE_URL); Temporal from the settings
(EMAIL_ENGINE_TEMPORAL_ADDRESS, EMAIL_ENGINE_TEMPORAL_NAMESPACE). A paused warmup holds its quota.
Warmups already paused and IPs without a workflow are reported and left alone, so running the
script again changes nothing. Undo one with `email-engine warmup resume IP`.
"""

from __future__ import annotations

import argparse
import sys

from client.connection import connect, run
from client.errors import EngineError
from client.warmups import pause_warmup, warmup_statuses


async def pause_tenant(tenant: str, reason: str, days: float | None) -> int:
    """Pause the tenant's running warmups; returns how many were paused now."""
    client = await connect()
    paused = 0
    for plan, status in await warmup_statuses(client, tenant):
        if status is None:
            print(f"{plan.address}: no warmup workflow (start it with `email-engine warmup start {plan.address}`)")
        elif status.status != "warming":
            print(f"{plan.address}: warmup {status.status}, nothing to pause")
        elif status.paused:
            print(f"{plan.address}: already paused by {status.paused_by}: {status.pause_reason}")
        else:
            workflow_id = await pause_warmup(client, plan.address, reason, days, actor="script:pause_tenant_warmups")
            print(f"{plan.address}: paused ({workflow_id})")
            paused += 1
    return paused


def main() -> None:
    parser = argparse.ArgumentParser(description="Pause every warming IP of a tenant (quota held).")
    parser.add_argument("tenant", help="Tenant name, e.g. client-1.")
    parser.add_argument("--reason", required=True, help="Shown in `email-engine warmup status` and alerts.")
    parser.add_argument("--days", type=float, default=None, help="Resume by itself after this many days "
                        "(default: until resumed).")
    args = parser.parse_args()
    if not args.reason.strip():
        parser.error("--reason must not be empty")
    try:
        paused = run(pause_tenant(args.tenant, args.reason.strip(), args.days))
    except EngineError as err:  # unknown tenant, Temporal unreachable, a warmup that just ended, ...
        sys.exit(f"error: {err}")
    print(f"{paused} warmup(s) of {args.tenant} paused")


if __name__ == "__main__":
    main()
