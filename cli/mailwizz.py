"""`email-engine mailwizz`: check a tenant's MailWizz now, or read its campaign figures now."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import typer

from cli.common import JsonOpt, console, fail, print_json

app = typer.Typer(help="MailWizz (per tenant, API key from EMAIL_ENGINE_MAILWIZZ_KEYS): delivery-server check "
                       "and campaign figures. The hourly schedule `mailwizz-sync` does both.", no_args_is_help=True)


def _tenants(tenant: str | None) -> list[str]:
    from activities.mailwizz import configured_tenants

    names = configured_tenants()
    if tenant is None:
        if not names:
            fail("no tenant has both a MailWizz server in the inventory and a key in EMAIL_ENGINE_MAILWIZZ_KEYS")
        return names
    if tenant not in names:
        fail(f"tenant {tenant!r} has no MailWizz server in the inventory or no key in EMAIL_ENGINE_MAILWIZZ_KEYS")
    return [tenant]


@app.command()
def check(tenant: str | None = typer.Argument(None, help="Tenant (default: every configured tenant)."),
          json_out: bool = JsonOpt) -> None:
    """Is the tenant's MTA an active delivery server in its MailWizz? (Alerts when not.) Exit 1 if any is not."""
    import asyncio

    from activities.mailwizz import check_delivery_server
    from models.mailwizz import MailwizzError

    out: dict[str, Any] = {}
    for name in _tenants(tenant):
        try:
            r = asyncio.run(check_delivery_server(name))
            out[name] = {"ok": r.ok, "message": r.message}
        except MailwizzError as exc:
            out[name] = {"ok": False, "message": str(exc)}
    if json_out:
        print_json(out)
    else:
        for name, r in out.items():
            console.print(f"{name}: {'[green]ok[/]' if r['ok'] else '[red]NOT OK[/]'} {r['message']}", highlight=False)
    if not all(r["ok"] for r in out.values()):
        raise typer.Exit(1)


@app.command()
def sync(tenant: str | None = typer.Argument(None, help="Tenant (default: every configured tenant)."),
         json_out: bool = JsonOpt) -> None:
    """Read the newest campaigns' stats now and record today's figures (opens/clicks attributed to IPs)."""
    import asyncio

    from activities.mailwizz import ingest_stats
    from models.mailwizz import MailwizzError

    out: dict[str, Any] = {}
    for name in _tenants(tenant):
        try:
            out[name] = asdict(asyncio.run(ingest_stats(name)))
        except MailwizzError as exc:
            fail(f"{name}: {exc}")
    if json_out:
        print_json(out)
        return
    for name, f in out.items():
        t = f["totals"]
        console.print(f"{name} {f['day']}: {f['campaigns_read']} campaigns; new: {t['opens']} opens, "
                      f"{t['clicks']} clicks, {t['bounces']} bounces, {t['unsubscribes']} unsubscribes, "
                      f"{t['complaints']} complaints; "
                      + ("attributed to IPs by sent share" if f["attributed"] else "not attributed (no per-IP sent "
                         "figures today)"), highlight=False)
