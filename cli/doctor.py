"""`email-engine doctor`: the preflight an operator runs before and after go-live."""

from __future__ import annotations

from typing import Any

import typer

from cli.common import JsonOpt, print_json


def doctor(json_out: bool = JsonOpt) -> None:
    """Check everything the engine needs, each with ✅ ok, ⚠️ warning or ❌ failure and a one-line fix.

    Database reachable and migrated to head; Temporal reachable, namespace present, search attributes
    registered, every Schedule present and not paused, a worker polling the task queue; DNS resolvers
    configured, answering, not public, blocklist zones passing their RFC 5782 self-test; SSH known_hosts,
    key and host key of every enabled MTA host; Telegram token (never shown) and chats; MailWizz key of
    each tenant. Changes nothing. Exit status: 1 if any check fails, else 0 (warnings pass)."""
    import asyncio
    import dataclasses

    from activities import doctor as probes
    from client.connection import run as run_client
    from client.doctor import temporal_checks
    from models import doctor as dm
    from models.settings import get_settings

    settings = get_settings()

    async def run() -> list[dm.Check]:
        def crashed(area: str, err: BaseException) -> dm.Check:  # a probe's bug must not hide the others
            return dm.fail(area, "probe", settings.redact(f"{type(err).__name__}: {err}")[:300],
                           "report this: the check itself failed")

        try:
            checks = await asyncio.to_thread(probes.database_checks, settings)
        except Exception as err:
            checks = [crashed("database", err)]
        inventory_ok = dm.exit_code(checks) == 0
        # ssh and mailwizz read the inventory: without a usable database they would only repeat its failure
        areas: list[tuple[str, Any]] = [
            ("temporal", temporal_checks(settings)), ("dns", probes.dns_checks(settings)),
            *([("ssh", probes.ssh_checks(settings))] if inventory_ok else []),
            ("telegram", probes.telegram_checks(settings)),
            *([("mailwizz", probes.mailwizz_checks(settings))] if inventory_ok else [])]
        groups = await asyncio.gather(*(coro for _, coro in areas), return_exceptions=True)
        for (area, _), group in zip(areas, groups, strict=True):
            checks += [crashed(area, group)] if isinstance(group, BaseException) else group
        if not inventory_ok:
            checks += [dm.warn(area, "not checked", "reads the inventory: the database check failed",
                               "fix the database first") for area in ("ssh", "mailwizz")]
        return checks

    checks = run_client(run())
    code = dm.exit_code(checks)
    if json_out:
        print_json({"ok": code == 0, "counts": dm.counts(checks),
                    "checks": [{**dataclasses.asdict(c), "icon": c.icon} for c in checks]})
    else:
        for c in checks:
            typer.echo(f"{c.icon} {c.area:<9} {c.name}: {c.detail}")
            if c.fix:
                typer.echo(f"   {'':<9} fix: {c.fix}")
        n = dm.counts(checks)
        typer.echo(f"\n{n['ok']} ok, {n['warn']} warning(s), {n['fail']} failure(s)")
    raise typer.Exit(code)
