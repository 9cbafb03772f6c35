"""`email-engine doctor` against real servers: a Temporal dev server this test starts, the engine
worker, SQLite and PostgreSQL, rbldnsd serving the catalogue's zones, a real sshd, and the Telegram and
MailWizz doubles (tests/servers: neither service can run here). All green first, then each fault is
injected alone and must turn the right line ❌ with its fix, and exit 1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from activities import db
from activities import doctor as probes
from activities.inventory import apply_inventory
from models import doctor as dm
from models.inventory import parse
from models.settings import Settings, get_settings
from tests.support import free_port
from tests.warmup_support import inventory_text

# --- the rules, without servers ---------------------------------------------------------------------


def test_rules() -> None:
    assert dm.migration("0014", ["0014"]).level is dm.Level.OK
    bad = dm.migration("0012", ["0014"])
    assert bad.level is dm.Level.FAIL and bad.detail == "at 0012, head is 0014" and "db upgrade" in bad.fix
    assert "empty" in dm.migration(None, ["0014"]).detail
    wanted = ["Tenant", "IpAddress", "WarmupPhase", "IpStatus"]
    assert dm.search_attributes(dict.fromkeys(wanted, "KEYWORD"), wanted, "default").level is dm.Level.OK
    sa = dm.search_attributes({"Tenant": "KEYWORD", "IpAddress": "TEXT", "WarmupPhase": "KEYWORD"}, wanted, "prod")
    assert sa.detail == "not registered: IpStatus; IpAddress is TEXT, not Keyword"
    assert "TEMPORAL_NAMESPACE=prod" in sa.fix
    assert dm.schedule("dns-validation", False, False, "").fix == "run `email-engine schedules apply`"
    paused = dm.schedule("dns-validation", True, True, "paused by ops: x")
    assert paused.level is dm.Level.FAIL and "schedules unpause dns-validation" in paused.fix
    assert dm.pollers("q", "workflows", {"w1": 3.0}).level is dm.Level.OK
    stale = dm.pollers("q", "workflows", {"w1": dm.POLLER_MAX_AGE_SECONDS + 1})
    assert stale.level is dm.Level.FAIL and "last poll" in stale.detail and "email-engine-worker@q" in stale.fix
    # public resolvers are judged from their address alone (never contacted here)
    public = dm.resolvers_configured([("8.8.8.8", 53), ("10.0.0.53", 53)], True)
    assert [c.level for c in public] == [dm.Level.OK, dm.Level.FAIL] and "8.8.8.8:53" in public[1].detail
    assert dm.resolvers_configured([("2606:4700:4700::1111", 53)], True)[1].level is dm.Level.FAIL
    system = dm.resolvers_configured([("127.0.0.53", 53)], False)
    assert [c.level for c in system] == [dm.Level.WARN, dm.Level.OK]
    assert dm.resolvers_configured([], False)[0].level is dm.Level.FAIL
    assert dm.self_test(["a", "b"], {}).level is dm.Level.OK
    broken = dm.self_test(["a"], {"b": "test entry not listed"})
    assert broken.level is dm.Level.FAIL and broken.detail == "1 of 2 zones fail: b (test entry not listed)"
    assert dm.transport("127.0.0.1:7233", "plaintext").level is dm.Level.OK
    assert dm.transport("temporal.example:7233", "TLS (system CAs)").level is dm.Level.OK
    plain = dm.transport("10.0.0.5:7233", "plaintext")
    assert plain.level is dm.Level.WARN and "EMAIL_ENGINE_TEMPORAL_TLS_CA_FILE" in plain.fix
    assert dm.exit_code([paused, dm.ok("x", "y", "z")]) == 1
    assert dm.exit_code([dm.warn("x", "y", "z", "f"), dm.ok("x", "y", "z")]) == 0


def test_database_on_both_backends(db_url: str) -> None:
    """Reachable and at head; one migration missing is ❌ with the fix; unreachable is ❌, password masked."""
    from alembic import command

    settings = Settings(database_url=db_url)
    assert [c.level for c in probes.database_checks(settings)] == [dm.Level.OK, dm.Level.OK]
    command.downgrade(db.alembic_config(db_url), "-1")
    try:
        reachable, head = probes.database_checks(settings)
        assert reachable.level is dm.Level.OK and head.level is dm.Level.FAIL
        assert head.detail.startswith("at ") and head.fix == "run `email-engine db upgrade`"
    finally:
        db.upgrade(db_url)
    dead = Settings(database_url=f"postgresql+psycopg://ee:Pw-Sekrit9@127.0.0.1:{free_port()}/ee")
    [check] = probes.database_checks(dead)
    assert check.level is dm.Level.FAIL and "Pw-Sekrit9" not in check.detail and "ee:***@127.0.0.1" in check.detail


# --- everything together --------------------------------------------------------------------------

@pytest.fixture
def stack(tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Every real part the doctor looks at, healthy, with the settings pointing at them."""
    from models.blocklist import load_catalog
    from tests.servers.mailwizz import MailwizzDouble
    from tests.servers.rbldnsd import Rbldnsd
    from tests.servers.sshd import start_sshd
    from tests.servers.telegram import TelegramDouble
    from workers import devserver

    port = free_port()
    server = devserver.start(tmp_path / "temporal.db", port=port, ui_port=free_port(),
                             log_file=tmp_path / "temporal.log")
    try:
        with Rbldnsd.for_catalog(load_catalog()) as bl, start_sshd(tmp_path / "sshd") as ssh, \
                TelegramDouble("127.0.61.2") as tg, MailwizzDouble("127.0.61.3") as mw:
            text = inventory_text([("127.0.61.41", "warming", "week_1", None)], host_enabled=True)
            text = text.replace('address = "127.0.12.1"', f'address = "{ssh.address}"\nssh_port = {ssh.port}\n'
                                f'ssh_user = "{ssh.user}"', 1).replace("http://127.0.12.2/api", mw.base_url)
            apply_inventory(parse(text), actor="test", url=sqlite_url)
            tg.state.chats = {-1001}
            env = {"EMAIL_ENGINE_TEMPORAL_ADDRESS": f"127.0.0.1:{port}", "EMAIL_ENGINE_TASK_QUEUE": "doctor-q",
                   "EMAIL_ENGINE_DNS_RESOLVERS": bl.resolver, "EMAIL_ENGINE_DNS_TIMEOUT": "1",
                   "EMAIL_ENGINE_TELEGRAM_BOT_TOKEN": tg.state.token, "EMAIL_ENGINE_TELEGRAM_BASE_URL": tg.base_url,
                   "EMAIL_ENGINE_TELEGRAM_CHAT_IDS": "-1001",
                   "EMAIL_ENGINE_MAILWIZZ_KEYS": f"acme={mw.state.api_key}", **ssh.settings_env()}
            for k, v in env.items():
                monkeypatch.setenv(k, v)
            get_settings.cache_clear()
            yield {"url": sqlite_url, "resolver": bl.resolver, "ssh": ssh, "tg": tg, "mw": mw, "port": port}
    finally:
        get_settings.cache_clear()
        devserver.stop(server)


async def _cli(*args: str) -> Any:
    from cli.main import app

    get_settings.cache_clear()
    return await asyncio.to_thread(CliRunner().invoke, app, list(args))


async def _doctor() -> tuple[int, dict[str, dict[str, Any]]]:
    r = await _cli("doctor", "--json")
    assert r.output, (r.exit_code, r.exception)
    out = json.loads(r.output)
    return r.exit_code, {f"{c['area']}/{c['name']}": c for c in out["checks"]}


def _failing(checks: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {k: c["fix"] for k, c in checks.items() if c["level"] == "fail"}


async def test_all_green_then_each_fault(stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, RemoveSearchAttributesRequest
    from temporalio.client import Client

    from workers.engine import build_worker

    r = await _cli("schedules", "apply")
    assert r.exit_code == 0, r.output
    client = await Client.connect(f"127.0.0.1:{stack['port']}")
    with ThreadPoolExecutor(max_workers=32) as pool:
        async with build_worker(client, "doctor-q", pool):
            code, checks = await _doctor()
            assert code == 0 and _failing(checks) == {}
            assert {c["level"] for c in checks.values()} == {"ok"}, [c for c in checks.values() if c["level"] != "ok"]
            for key in ("database/migrated to head", "temporal/search attributes", "temporal/schedule blocklist-scan",
                        "temporal/schedule mailwizz-sync", "temporal/worker polling doctor-q (workflows)",
                        "dns/not a public resolver", "dns/blocklist self-test", "ssh/MTA host pmta-t",
                        "telegram/bot token", "telegram/chat -1001", "mailwizz/key of acme"):
                assert key in checks
            r = await _cli("doctor")
            assert r.exit_code == 0 and "✅ ssh       MTA host pmta-t: ssh://" in r.output and "❌" not in r.output
            assert stack["tg"].state.token not in r.output and stack["mw"].state.api_key not in r.output

            async def only_fails(expected: dict[str, str]) -> None:
                code, checks = await _doctor()
                assert code == 1
                failing = _failing(checks)
                assert set(failing) == set(expected), failing
                for key, fix in expected.items():
                    assert fix in failing[key], (key, failing[key])

            # a migration missing
            from alembic import command

            command.downgrade(db.alembic_config(stack["url"]), "-1")
            await only_fails({"database/migrated to head": "email-engine db upgrade"})
            db.upgrade(stack["url"])

            # a search attribute not registered
            await client.operator_service.remove_search_attributes(
                RemoveSearchAttributesRequest(namespace="default", search_attributes=["IpStatus"]))
            await only_fails({"temporal/search attributes": "register-search-attributes.sh"})
            await client.operator_service.add_search_attributes(AddSearchAttributesRequest(
                namespace="default", search_attributes={"IpStatus": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD}))

            # a paused Schedule
            r = await _cli("schedules", "pause", "dns-validation", "--reason", "doctor test")
            assert r.exit_code == 0, r.output
            await only_fails({"temporal/schedule dns-validation": "schedules unpause dns-validation"})
            await _cli("schedules", "unpause", "dns-validation", "--reason", "done")

            # a dead resolver
            from tests.servers.nsd import dead_port

            monkeypatch.setenv("EMAIL_ENGINE_DNS_RESOLVERS", f"127.0.0.1:{dead_port()}")
            code, checks = await _doctor()
            failing = _failing(checks)
            assert code == 1 and set(failing) == {f"dns/resolver {get_settings().dns_resolvers} answers",
                                                  "dns/blocklist self-test"}, failing
            assert "no answer within 1 s" in checks[f"dns/resolver {get_settings().dns_resolvers} answers"]["detail"]
            monkeypatch.setenv("EMAIL_ENGINE_DNS_RESOLVERS", stack["resolver"])

            # a host key that does not match known_hosts
            ssh = stack["ssh"]
            wrong = ssh.known_hosts_with_wrong_key(ssh.root / "known_hosts.wrong")
            monkeypatch.setenv("EMAIL_ENGINE_SSH_KNOWN_HOSTS", str(wrong))
            await only_fails({"ssh/MTA host pmta-t": "replace its line in"})
            code, checks = await _doctor()
            assert "host key does not match" in checks["ssh/MTA host pmta-t"]["detail"]
            monkeypatch.setenv("EMAIL_ENGINE_SSH_KNOWN_HOSTS", str(ssh.known_hosts))

            # a bad Telegram token (never printed), a chat the bot is not in, a rejected MailWizz key
            monkeypatch.setenv("EMAIL_ENGINE_TELEGRAM_BOT_TOKEN", "999:not-the-token")
            monkeypatch.setenv("EMAIL_ENGINE_TELEGRAM_CHAT_IDS", "-1001,-2002")
            monkeypatch.setenv("EMAIL_ENGINE_MAILWIZZ_KEYS", "acme=wrong-key")
            r = await _cli("doctor")
            assert r.exit_code == 1 and "not-the-token" not in r.output and "wrong-key" not in r.output
            assert "❌ telegram  bot token: rejected by the Bot API (not shown)" in r.output
            assert "❌ mailwizz  key of acme: rejected by" in r.output
            monkeypatch.setenv("EMAIL_ENGINE_TELEGRAM_BOT_TOKEN", stack["tg"].state.token)
            monkeypatch.setenv("EMAIL_ENGINE_MAILWIZZ_KEYS", f"acme={stack['mw'].state.api_key}")
            await only_fails({"telegram/chat -2002": "add the bot to that chat"})
            monkeypatch.setenv("EMAIL_ENGINE_TELEGRAM_CHAT_IDS", "-1001")

            # everything restored: green again
            code, checks = await _doctor()
            assert code == 0 and _failing(checks) == {}

        # no worker polls the task queue (the engine's queue has none after the worker is gone, and
        # the server lists a stopped poller for a few minutes: an unserved queue is the same fault)
        monkeypatch.setenv("EMAIL_ENGINE_TASK_QUEUE", "doctor-unserved")
        await only_fails({"temporal/worker polling doctor-unserved (workflows)": "email-engine-worker@doctor-unserved",
                          "temporal/worker polling doctor-unserved (activities)": "email-engine worker"})
