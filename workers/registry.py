"""What the engine worker runs: every workflow and activity on the engine task queue.

Each feature adds its workflows and activities to the two lists below.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from activities.alerts import send_alert
from activities.fleet import fleet_snapshot


def workflows() -> list[type]:
    return []


def activities() -> list[Callable[..., Any]]:
    return [fleet_snapshot, send_alert]
