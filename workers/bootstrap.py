"""Start-up steps the run command performs once the worker is up (schedules, warmups, ...).

A feature registers an async hook here; each returns lines to show the operator.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from temporalio.client import Client

from models.settings import Settings

Hook = Callable[[Client, Settings], Awaitable[list[str]]]
HOOKS: list[Hook] = []


async def install_schedules(client: Client, settings: Settings) -> list[str]:
    """Every Temporal Schedule, the same code as `email-engine schedules apply` (client/schedules.py)."""
    from client.schedules import apply_schedules

    return [o.line() for o in await apply_schedules(client, settings)]


HOOKS.append(install_schedules)


def _warmup_hook() -> Hook:
    from workers.warmup_bootstrap import start_warming_ips

    return start_warming_ips


HOOKS.append(_warmup_hook())


def _mta_render_hook() -> Hook:
    from workers.mta_render_hook import render_mta_configs

    return render_mta_configs


HOOKS.append(_mta_render_hook())


def _ops_hook() -> Hook:
    from workers.ops_bootstrap import install_ops

    return install_ops


HOOKS.append(_ops_hook())


async def run_hooks(client: Client, settings: Settings) -> list[str]:
    lines: list[str] = []
    for hook in HOOKS:
        lines += await hook(client, settings)
    return lines
