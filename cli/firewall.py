"""`email-engine firewall render`: the hosts' nftables rulesets from the inventory (issue 15).

Heavy imports stay inside the command (the CLI starts fast).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from cli.common import JsonOpt, console, fail, print_json

app = typer.Typer(help="Host firewalls: nftables rulesets rendered from the inventory's [firewall] section.",
                  no_args_is_help=True)


@app.command()
def render(
    host: list[str] = typer.Option(None, "--host", "-H", show_default=False,
                                   help="Only this host: `engine` (the Email Engine host) or an MTA host name; "
                                        "repeat for several (default: every host)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write <host>.nft files to this directory "
                                    "(default: print the rulesets)."),
    check: bool = typer.Option(False, "--check", help="Also run `nft -c -f` on each ruleset, inside a throwaway "
                               "network namespace (`unshare`; needs nftables installed here)."),
    as_json: bool = JsonOpt,
) -> None:
    """Render the nftables ruleset of the Email Engine host and of each MTA host (pure: the same inventory
    gives the same bytes). Each ruleset replaces only the table `inet email_engine` (`nft -f FILE`),
    leaving the host's other tables alone. The engine host's file is for the operator to install; MTA hosts
    get theirs with `email-engine mta deploy` when the inventory's [firewall] says `deploy = true`.

    Everything is rendered before anything is written: any error (no [firewall] section, an unknown host,
    an address that fails validation) exits 2 with nothing written. --check failing exits 1."""
    import hashlib

    from rich.markup import escape

    from activities.firewall import load_firewall, nft_check
    from models import firewall as fw
    from models import names

    for h in host or []:
        try:
            names.token(h, "host name")
        except names.NameError_ as err:
            fail(str(err), code=2)
    try:
        fleet = load_firewall()
    except fw.FirewallError as err:
        fail(str(err), code=2)
    if fleet is None:
        fail("the inventory has no [firewall] section: add one to the inventory file and load it "
             "(README, \"Host firewalls\")", code=2)
    wanted = list(dict.fromkeys(host)) if host else fleet.host_names
    unknown = [h for h in wanted if h not in fleet.host_names]
    if unknown:
        fail(f"unknown host {', '.join(map(repr, unknown))} (known: {', '.join(fleet.host_names)})", code=2)
    try:
        texts = {h: fw.render(fleet, h) for h in wanted}
    except (fw.FirewallError, names.NameError_) as err:
        fail(f"nothing written: {err}", code=2)

    rows: list[dict[str, Any]] = []
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    for h, text in texts.items():
        row: dict[str, Any] = {"host": h, "bytes": len(text.encode()), "lines": text.count("\n"),
                               "sha256": hashlib.sha256(text.encode()).hexdigest(),
                               "deployed_with_mta": h != fw.ENGINE and fleet.policy.deploy}
        if out is not None:
            path = out / f"{h}.nft"
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(text)
            tmp.replace(path)
            row["path"] = str(path)
        rows.append(row)
    failed = False
    if check:
        import tempfile

        with tempfile.TemporaryDirectory() as tmpdir:
            for row in rows:
                checked = str(row.get("path") or Path(tmpdir) / f"{row['host']}.nft")
                if "path" not in row:
                    Path(checked).write_text(texts[row["host"]])
                ok, output = nft_check(checked)
                row["nft_check"] = "ok" if ok else output
                failed = failed or not ok
    if as_json:
        for row in rows:
            if out is None:
                row["text"] = texts[row["host"]]
        print_json(rows)
    elif out is None and not check:
        typer.echo("\n".join(texts.values()), nl=False)
    else:
        for row in rows:
            where = f" -> {row['path']}" if "path" in row else ""
            check_out = row.get("nft_check")
            verdict = "" if check_out is None else " [green]nft -c ok[/]" if check_out == "ok" else (
                f" [red]nft -c failed:[/] {escape(check_out)}")
            console.print(f"[bold]{row['host']}[/]: {row['lines']} lines, {row['bytes']} bytes, sha256 "
                          f"{row['sha256'][:12]}{where}{verdict}", highlight=False)
    if failed:
        raise typer.Exit(1)
