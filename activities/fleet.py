"""Fleet read activities (used by workflows that report on the fleet)."""

from __future__ import annotations

from typing import Any

from temporalio import activity

from activities.inventory import fleet
from activities.keepalive import heartbeating


@activity.defn(name="fleet_snapshot")
@heartbeating
def fleet_snapshot(tenant: str | None = None) -> dict[str, Any]:
    """Counts by status per tenant and one row per IP, as stored in the inventory database."""
    return fleet(tenant=tenant)
