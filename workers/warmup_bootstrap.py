"""Run-command hook: start the warmup workflow of every IP the inventory records as warming."""

from __future__ import annotations

from temporalio.client import Client

from models.settings import Settings

WEB_UI_FILTER = 'Tenant="client-2" AND WarmupPhase="week_3"'


async def start_warming_ips(client: Client, settings: Settings) -> list[str]:
    """Idempotent: a running warmup is left alone. Returns the lines the run command prints."""
    from client.warmups import start_all_warming

    outcomes = await start_all_warming(client, reason="started by the run command", task_queue=settings.task_queue)
    started = sum(o.started for o in outcomes)
    return [f"warmups: {len(outcomes)} warming IPs, {started} workflows started, "
            f"{len(outcomes) - started} already running "
            "(`email-engine warmup status`)",
            f"Web UI filter example: {WEB_UI_FILTER}"]
