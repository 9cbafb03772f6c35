"""Approve a failover held by the circuit breaker, after looking at its evidence.

    python examples/approve_failover.py client-1 198.51.100.7 --reason "listing confirmed, tenant healthy"

Prints what the saga holds for (the breaker's reasons, the listings, how often it was detected, its
log), then asks for a yes (or takes --yes) and approves that incident (the saga run shown; a newer run
of the same IP refuses it): a standby IP of the tenant starts warming.
Refuses without asking when the failover is not held or names no listing: nothing acts without
evidence. Temporal comes from the settings (EMAIL_ENGINE_TEMPORAL_ADDRESS).
"""

from __future__ import annotations

import argparse
import sys

from client import failovers
from client.connection import connect, run
from client.errors import EngineError, Refused
from models import names
from models.failover_contracts import SagaState


def show(state: SagaState) -> None:
    print(f"{state.workflow_id} (run {state.run_id or '?'}): {state.status} at step {state.step!r}, "
          f"detected {state.detections} time(s)")
    for reason in state.reasons:
        print(f"  held because: {reason}")
    for listing in state.listings:
        print(f"  listed: {listing}")
    for line in state.log[-10:]:
        print(f"  log: {line}")


async def review_and_approve(tenant: str, address: str, reason: str, yes: bool) -> str:
    tenant, address = names.tenant(tenant), names.ip_address(address)  # a bad name: ValueError, nothing sent
    client = await connect()
    state = await failovers.failover_state(client, tenant, address)  # NotRunning when there is none
    if state is None:
        raise Refused(f"the failover of {address} has not begun yet; try again in a moment")
    show(state)
    if state.status != "held":
        raise Refused(f"the failover of {address} is {state.status}, not held: nothing to approve")
    if not state.listings:
        raise Refused(f"the failover of {address} names no listing: not approving without evidence")
    if not yes and input("Approve (a standby starts warming)? [y/N] ").strip().lower() not in ("y", "yes"):
        return "not approved"
    # the run whose evidence was shown: if the saga was replaced meanwhile, it refuses this approval
    return await failovers.approve(client, tenant, address, reason, incident=state.run_id or None)


def main() -> None:
    parser = argparse.ArgumentParser(description="Show a held failover's evidence, then approve it.")
    parser.add_argument("tenant", help="Tenant name, e.g. client-1.")
    parser.add_argument("ip", help="The listed IP whose failover is held.")
    parser.add_argument("--reason", required=True, help="Why (recorded in the audit and the saga's history).")
    parser.add_argument("--yes", action="store_true", help="Approve without asking (after printing the evidence).")
    args = parser.parse_args()
    try:
        print(run(review_and_approve(args.tenant, args.ip, args.reason, args.yes)))
    except (EngineError, ValueError) as err:  # bad name, not running, not held, refused by the saga, ...
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
