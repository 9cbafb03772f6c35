"""Start-up steps the run command performs once the worker is up (schedules, warmups, ...).

A feature registers an async hook here; each returns lines to show the operator.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from temporalio.client import Client

from models.settings import Settings

Hook = Callable[[Client, Settings], Awaitable[list[str]]]
HOOKS: list[Hook] = []


def _dns_schedule_hook() -> Hook:
    from workers.dns_schedule import install_dns_schedule

    return install_dns_schedule


HOOKS.append(_dns_schedule_hook())


def _warmup_hook() -> Hook:
    from workers.warmup_bootstrap import start_warming_ips

    return start_warming_ips


HOOKS.append(_warmup_hook())


def _accounting_hook() -> Hook:
    from workers.accounting_schedule import install_accounting_schedule

    return install_accounting_schedule


HOOKS.append(_accounting_hook())


def _mta_render_hook() -> Hook:
    from workers.mta_render_hook import render_mta_configs

    return render_mta_configs


HOOKS.append(_mta_render_hook())


def _ops_hook() -> Hook:
    from workers.ops_bootstrap import install_ops

    return install_ops


HOOKS.append(_ops_hook())


def _blocklist_schedule_hook() -> Hook:
    from workers.blocklist_schedule import install_blocklist_schedule

    return install_blocklist_schedule


HOOKS.append(_blocklist_schedule_hook())


async def run_hooks(client: Client, settings: Settings) -> list[str]:
    lines: list[str] = []
    for hook in HOOKS:
        lines += await hook(client, settings)
    return lines
