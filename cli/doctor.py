"""`email-engine doctor`: the preflight an operator runs before and after go-live."""

from __future__ import annotations

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
    from client.doctor import temporal_checks
    from models import doctor as dm
    from models.settings import get_settings

    settings = get_settings()

    async def run() -> list[dm.Check]:
        areas = ("database", "temporal", "dns", "ssh", "telegram", "mailwizz")
        groups = await asyncio.gather(
            asyncio.to_thread(probes.database_checks, settings), temporal_checks(settings),
            probes.dns_checks(settings), probes.ssh_checks(settings), probes.telegram_checks(settings),
            probes.mailwizz_checks(settings), return_exceptions=True)
        checks: list[dm.Check] = []
        for area, group in zip(areas, groups, strict=True):
            if isinstance(group, BaseException):  # a probe's own bug must not hide the other areas
                checks.append(dm.fail(area, "probe", settings.redact(f"{type(group).__name__}: {group}")[:300],
                                      "report this: the check itself failed"))
            else:
                checks += group
        return checks

    checks = asyncio.run(run())
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
