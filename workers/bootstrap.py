"""Start-up steps the run command performs once the worker is up (schedules, warmups, ...).

A feature registers an async hook here; each returns lines to show the operator.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from temporalio.client import Client

from models.settings import Settings

Hook = Callable[[Client, Settings], Awaitable[list[str]]]
HOOKS: list[Hook] = []


async def run_hooks(client: Client, settings: Settings) -> list[str]:
    lines: list[str] = []
    for hook in HOOKS:
        lines += await hook(client, settings)
    return lines
