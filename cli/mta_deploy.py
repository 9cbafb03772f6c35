"""`email-engine mta deploy` and `email-engine mta diff` (registered on cli/mta.py's app)."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import typer

from cli.common import JsonOpt, console, err_console, fail, print_json
from models import names

if TYPE_CHECKING:
    from models.snapshot import FleetSnapshot, MtaHostView

HostArg = typer.Argument(None, help="MTA host name from the inventory (default: every host).", show_default=False)


def _hosts(host: str | None) -> tuple[FleetSnapshot, list[MtaHostView]]:
    from activities.snapshot import load_snapshot

    if host is not None:
        try:
            names.token(host, "MTA host name")
        except names.NameError_ as err:
            fail(str(err), code=2)
    try:
        snapshot = load_snapshot()
    except Exception as err:  # no database / not migrated
        fail(f"cannot read the inventory database: {err}", code=2)
    if host is None:
        if not snapshot.hosts:
            fail("the inventory has no MTA hosts (load one with `email-engine inventory load FILE`)", code=2)
        return snapshot, list(snapshot.hosts)
    try:
        return snapshot, [snapshot.host(host)]
    except LookupError as err:
        known = ", ".join(h.name for h in snapshot.hosts) or "none"
        fail(f"{err} (known: {known})", code=2)


async def _temporal_client() -> Any:
    import asyncio

    from client.connection import connect

    try:
        return await asyncio.wait_for(connect(), 5)
    except Exception:
        return None


def _print_result(r: Any, as_json: bool) -> None:
    if as_json:
        return
    colour = "green" if r.ok else "red"
    state = ("deployed" if r.changed else "unchanged") if r.ok else "FAILED, rolled back" if r.rolled_back else "FAILED"
    console.print(f"[bold]{r.host}[/] generation {r.generation}: [{colour}]{state}[/] {r.message}", highlight=False)


def deploy(
    host: str | None = HostArg,
    wait: bool = typer.Option(True, "--wait/--no-wait",
                              help="Wait for the deploy that includes this request (default), or only queue it."),
    direct: bool = typer.Option(False, "--direct",
                                help="Deploy from this process without Temporal (not serialized with the engine's "
                                     "deploys; also used automatically when no Temporal server is reachable)."),
    timeout: float = typer.Option(600, min=1, help="Seconds to wait for the deploy (--wait) or for the workflow "
                                                   "to accept the request (--no-wait)."),
    replace_dkim_keys: bool = typer.Option(
        False, "--replace-dkim-keys",
        help="Replace DKIM keys deployed on the host that differ from the engine's (a key rotation: publish the "
             "new DNS record first). Without it such a deploy is refused and nothing changes."),
    as_json: bool = JsonOpt,
) -> None:
    """Deploy the newest inventory to HOST (SSH, validate, reload, verify; rollback on failure).

    Upload, atomic switch, `pmta test config`, `pmta reload`, read-back; on any failure the previous
    config is restored and reloaded. Goes through the host's MtaDeployWorkflow (`mta-deploy/<host>`), so
    it queues behind a running deploy and is coalesced with other requests. A disabled host is only
    rendered to <var_dir>/mta/<host>/. Exit status 1 if any deploy failed, 2 on an error."""
    import asyncio

    from client.connection import run as run_client
    from models.settings import get_settings

    settings = get_settings()
    _, hosts = _hosts(host)

    async def run() -> list[dict[str, Any]]:
        from temporalio.client import WorkflowUpdateRPCTimeoutOrCancelledError

        from client.deploys import request_deploy, request_deploy_nowait
        from models.deploys import HostDeployRequest

        client = None if direct else await _temporal_client()
        if client is None and not direct:
            err_console.print(f"[yellow]Temporal is not reachable at {settings.temporal_address}: deploying "
                              "directly from this process (not serialized with the engine's deploys).[/]")
        out: list[dict[str, Any]] = []
        for h in hosts:
            if client is None:
                from activities.mta.deploy import deploy_host

                if not as_json:
                    console.print(f"deploying {h.name} ...")
                r = await deploy_host(HostDeployRequest(host=h.name, reason="email-engine mta deploy --direct",
                                                        actor="cli", replace_dkim_keys=replace_dkim_keys))
            elif not wait:
                try:  # an update needs a worker to accept it
                    gen = await asyncio.wait_for(request_deploy_nowait(
                        client, h.name, "email-engine mta deploy", "cli", task_queue=settings.task_queue,
                        replace_dkim_keys=replace_dkim_keys), timeout)
                except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
                    fail(f"mta-deploy/{h.name} did not accept the request within {timeout:g}s: is a worker "
                         f"running on {settings.task_queue} (`email-engine worker`)?", code=2)
                if not as_json:
                    console.print(f"[bold]{h.name}[/]: queued as generation {gen} "
                                  f"(workflow mta-deploy/{h.name}; a worker on {settings.task_queue} runs it)")
                out.append({"host": h.name, "generation": gen, "queued": True})
                continue
            else:
                if not as_json:
                    console.print(f"deploying {h.name} through mta-deploy/{h.name} ...")
                try:
                    r = await asyncio.wait_for(request_deploy(client, h.name, "email-engine mta deploy", "cli",
                                                              task_queue=settings.task_queue,
                                                              replace_dkim_keys=replace_dkim_keys), timeout)
                except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
                    fail(f"no result for {h.name} within {timeout:g}s: the request stays queued in "
                         f"mta-deploy/{h.name}; is a worker running (`email-engine worker`)?", code=2)
            _print_result(r, as_json)
            out.append(asdict(r))
        return out

    try:
        results = run_client(run())
    except typer.Exit:
        raise
    except Exception as err:
        fail(f"{type(err).__name__}: {err}", code=2)
    if as_json:
        print_json(results)
    if any(r.get("ok") is False for r in results):
        raise typer.Exit(1)


def diff(host: str | None = HostArg, as_json: bool = JsonOpt) -> None:
    """Show drift: deployed vs rendered config as a unified diff (exit 1 if anything drifted).

    Reads the deployed files over SSH for an enabled host, or the render in <var_dir>/mta/<host>/ for a
    disabled one, and compares them with a fresh render of the inventory. Exit status 0: no drift,
    1: drift, 2: an error (host unknown or unreachable, host key refused)."""
    import asyncio

    snapshot, hosts = _hosts(host)

    async def one(h: MtaHostView) -> tuple[str, str]:
        from activities.mta.base import backend_for
        from activities.mta.deploy import _read_tree, add_firewall, drift, expected_local_files, local_render_dir
        from activities.mta.ssh import SshEndpoint, SshTarget
        from models.settings import get_settings

        backend = backend_for(h.backend)
        rendered = backend.render(snapshot.for_host(h.name), config_dir=h.config_dir)
        local = h.name in {x.strip() for x in get_settings().mta_local_hosts.split(",")}
        rendered, _ = add_firewall(rendered, h, snapshot.for_host(h.name), None, local)
        if not h.enabled:
            out = local_render_dir(h.name)
            current = _read_tree(out)
            expected = expected_local_files(backend, rendered, {m: current.get(m) for m in backend.merged_files})
            return str(out), drift(expected, current)
        async with SshTarget(SshEndpoint.for_host(h)) as target:
            deployed = await backend.read_back(target, rendered.config_dir)
            return target.describe(), drift(backend.expected_read_back(rendered), deployed)

    report = []
    for h in hosts:
        try:
            where, text = asyncio.run(one(h))
        except typer.Exit:
            raise
        except Exception as err:
            fail(f"{h.name}: {type(err).__name__}: {err}", code=2)
        report.append({"host": h.name, "target": where, "drift": bool(text), "diff": text})
        if not as_json:
            if text:
                console.print(f"[bold]{h.name}[/] ({where}): [red]drift[/]", highlight=False)
                typer.echo(text, nl=False)
            else:
                console.print(f"[bold]{h.name}[/] ({where}): [green]no drift[/]", highlight=False)
    if as_json:
        print_json(report)
    if any(r["drift"] for r in report):
        raise typer.Exit(1)


def history(host: str | None = HostArg,
            limit: int = typer.Option(20, min=1, max=1000, help="Newest N deploys."),
            as_json: bool = JsonOpt) -> None:
    """List recent deploys (newest first): generation, outcome, digest, message."""
    from rich.table import Table
    from sqlmodel import col, select

    from activities.db import session_scope
    from models.deploy_history import MtaDeployRecord

    if host is not None:
        try:
            names.token(host, "MTA host name")
        except names.NameError_ as err:
            fail(str(err), code=2)
    try:
        with session_scope() as s:
            q = select(MtaDeployRecord).order_by(col(MtaDeployRecord.id).desc()).limit(limit)
            if host is not None:
                q = q.where(MtaDeployRecord.host == host)
            rows = [r.model_dump() for r in s.exec(q)]
    except Exception as err:
        fail(f"cannot read the deploy history: {err}", code=2)
    if as_json:
        print_json(rows)
        return
    table = Table()
    host_width = max([len(r["host"]) for r in rows] + [4])
    for name, width in (("at (UTC)", 14), ("host", host_width), ("gen", 3), ("outcome", 11), ("digest", 8)):
        table.add_column(name, no_wrap=True, min_width=width)
    table.add_column("message", overflow="ellipsis", no_wrap=True)
    for r in rows:
        outcome = ("[green]deployed[/]" if r["changed"] else "unchanged") if r["ok"] else "[red]rolled back[/]" \
            if r["rolled_back"] else "[red]failed[/]"
        table.add_row(f"{r['at']:%m-%d %H:%M:%S}", r["host"], str(r["generation"]), outcome, r["digest"][:8],
                      r["message"])
    console.print(table)
