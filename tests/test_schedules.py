"""`email-engine schedules apply|list|pause|unpause` against the Temporal dev server (real Schedules;
the time-skipping server has none), and the pure comparison that makes "unchanged" a fact."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from models import schedules as sm
from models.settings import get_settings


def test_differences_name_each_changed_field_and_ignore_the_note() -> None:
    base = sm.ScheduleDef("x", "W", "x", "q", args={"a": 1}, every_seconds=3600, note="one")
    assert sm.differences(base, sm.ScheduleDef("x", "W", "x", "q", args={"a": 1}, every_seconds=3600,
                                                note="paused by ops: noisy")) == []
    other = sm.ScheduleDef("x", "W", "x", "other", args={"a": 2}, every_seconds=7200)
    assert sm.differences(base, other) == ["task_queue: 'other' -> 'q'", "args: {'a': 2} -> {'a': 1}",
                                           "every_seconds: 7200 -> 3600"]
    assert base.when() == "every 1 h"
    assert sm.ScheduleDef("d", "W", "d", "q", daily_hour_utc=6).when() == "daily at 06:00 UTC"
    assert sm.ScheduleDef("m", "W", "m", "q", every_seconds=3600, offset_seconds=1200).when() == "every 1 h (+20 min)"
    assert sm.unknown_name("blocklist-scan") is None
    assert "the engine's Schedules are blocklist-scan, dns-validation" in (sm.unknown_name("nope") or "")


def test_scheduled_scans_act_with_the_setting() -> None:
    """EMAIL_ENGINE_BLOCKLIST_ACT_CONCURRENCY reaches the Schedule's ScanInput (out of range: refused)."""
    from pydantic import ValidationError

    from client.schedules import wanted
    from models.settings import Settings

    [scan] = wanted(Settings(blocklist_act_concurrency=7), [sm.BLOCKLIST_SCAN])
    assert scan.args["act_concurrency"] == 7 and scan.execution_timeout_seconds == 2 * 3600
    [default] = wanted(Settings(), [sm.BLOCKLIST_SCAN])
    assert default.args["act_concurrency"] == 20
    for bad in (0, 501):
        with pytest.raises(ValidationError, match="blocklist_act_concurrency"):
            Settings(blocklist_act_concurrency=bad)


@pytest.fixture
def engine_cli(temporal_local, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    """The CLI pointed at the session's dev server, on a task queue of its own; deletes the Schedules after."""
    monkeypatch.setenv("EMAIL_ENGINE_TEMPORAL_ADDRESS", temporal_local.client.service_client.config.target_host)
    monkeypatch.setenv("EMAIL_ENGINE_TASK_QUEUE", f"sched-{uuid.uuid4().hex[:8]}")
    get_settings.cache_clear()
    from cli.main import app

    runner = CliRunner()

    async def run(*args: str) -> Any:  # in a thread: the CLI runs its own event loop
        return await asyncio.to_thread(runner.invoke, app, list(args))

    yield run
    get_settings.cache_clear()


async def _delete_all(client: Any) -> None:
    from temporalio.service import RPCError

    for name in sm.NAMES:
        try:
            await client.get_schedule_handle(name).delete()
        except RPCError:  # not installed: nothing to delete
            pass


async def test_apply_is_idempotent_keeps_a_pause_and_lists(temporal_local, engine_cli,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    client = temporal_local.client
    await _delete_all(client)
    try:
        r = await engine_cli("schedules", "list", "--json")
        assert r.exit_code == 0, r.output
        assert [(row["name"], row["present"]) for row in json.loads(r.output)] == [(n, False) for n in sm.NAMES]

        r = await engine_cli("schedules", "apply", "--dry-run", "--json")
        assert r.exit_code == 0, r.output
        assert {o["name"]: o["action"] for o in json.loads(r.output)["schedules"]} == dict.fromkeys(sm.NAMES, "created")
        r = await engine_cli("schedules", "list", "--json")
        assert not any(row["present"] for row in json.loads(r.output))  # a dry run wrote nothing

        r = await engine_cli("schedules", "apply")
        assert r.exit_code == 0, r.output
        for line in ("schedule blocklist-scan: created (every 4 h)", "schedule dns-validation: created (daily at "
                     "06:00 UTC)", "schedule accounting-ingest: created (every 1 h)",
                     "schedule mailwizz-sync: created (every 1 h (+20 min))",
                     "schedule active-guard: created (daily at 02:00 UTC)"):
            assert line in r.output
        r = await engine_cli("schedules", "apply", "--json")
        assert {o["name"]: o["action"] for o in json.loads(r.output)["schedules"]} == dict.fromkeys(sm.NAMES,
                                                                                                  "unchanged")

        r = await engine_cli("schedules", "pause", "blocklist-scan", "--reason", "zone maintenance")
        assert r.exit_code == 0 and "paused by" in r.output and "zone maintenance" in r.output, r.output
        monkeypatch.setenv("EMAIL_ENGINE_BLOCKLIST_SCAN_INTERVAL_HOURS", "2")
        monkeypatch.setenv("EMAIL_ENGINE_DNS_CHECK_HOUR", "7")
        get_settings.cache_clear()
        r = await engine_cli("schedules", "apply", "--dry-run")
        assert "(dry run) schedule blocklist-scan: updated (every 2 h): every_seconds: 14400 -> 7200" in r.output
        assert "daily_hour_utc: 6 -> 7" in r.output
        desc = await client.get_schedule_handle("dns-validation").describe()
        assert [x.start for x in desc.schedule.spec.calendars[0].hour] == [6]  # dry run: untouched
        r = await engine_cli("schedules", "apply", "--json")
        out = {o["name"]: o for o in json.loads(r.output)["schedules"]}
        assert out["blocklist-scan"]["action"] == "updated" and out["blocklist-scan"]["paused"] is True
        assert out["accounting-ingest"]["action"] == "unchanged"
        desc = await client.get_schedule_handle("blocklist-scan").describe()
        assert desc.schedule.state.paused and "zone maintenance" in (desc.schedule.state.note or "")
        assert desc.schedule.spec.intervals[0].every.total_seconds() == 7200

        # a Schedule edited by hand (another queue) is seen as different and put back
        handle = client.get_schedule_handle("mailwizz-sync")
        from temporalio.client import ScheduleUpdate

        async def elsewhere(inp: Any) -> ScheduleUpdate:
            sched = inp.description.schedule
            sched.action.task_queue = "somewhere-else"
            return ScheduleUpdate(schedule=sched)

        await handle.update(elsewhere)
        r = await engine_cli("schedules", "apply")
        assert "schedule mailwizz-sync: updated" in r.output and "'somewhere-else' -> 'sched-" in r.output

        await client.get_schedule_handle("accounting-ingest").trigger()
        r = await engine_cli("schedules", "list", "--json")
        rows = {row["name"]: row for row in json.loads(r.output)}
        assert all(row["present"] for row in rows.values())
        assert rows["blocklist-scan"]["paused"] and "zone maintenance" in rows["blocklist-scan"]["note"]
        assert rows["dns-validation"]["next_run"].endswith("07:00:00+00:00")
        assert rows["accounting-ingest"]["last_workflow_id"].startswith("accounting-ingest-run")
        assert rows["accounting-ingest"]["last_result"] == "RUNNING"  # no worker on this queue
        r = await engine_cli("schedules", "list")
        assert r.exit_code == 0 and "paused by" in r.output and "RUNNING" in r.output

        r = await engine_cli("schedules", "unpause", "blocklist-scan", "--reason", "maintenance over")
        assert r.exit_code == 0, r.output
        assert not (await client.get_schedule_handle("blocklist-scan").describe()).schedule.state.paused

        for args, msg in ((("pause", "nope", "--reason", "x"), "no Schedule 'nope'"),
                          (("pause", "dns-validation", "--reason", "  "), "a reason is required")):
            r = await engine_cli("schedules", *args)
            assert r.exit_code == 1 and msg in r.output, r.output
        await client.get_schedule_handle("dns-validation").delete()
        r = await engine_cli("schedules", "unpause", "dns-validation", "--reason", "x")
        assert r.exit_code == 1 and "not installed: run `email-engine schedules apply`" in r.output
        r = await engine_cli("schedules", "list")
        assert "MISSING" in r.output and "missing Schedules" in r.output
    finally:
        for wf in [w async for w in client.list_workflows('WorkflowId STARTS_WITH "accounting-ingest-run"')]:
            if wf.status is not None and wf.status.name == "RUNNING":
                await client.get_workflow_handle(wf.id, run_id=wf.run_id).terminate("test done")
        await _delete_all(client)


def test_unreachable_temporal_is_a_precise_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.main import app
    from tests.support import free_port

    monkeypatch.setenv("EMAIL_ENGINE_TEMPORAL_ADDRESS", f"127.0.0.1:{free_port()}")
    get_settings.cache_clear()
    try:
        r = CliRunner().invoke(app, ["schedules", "apply"])
        assert r.exit_code == 1 and "cannot reach Temporal at 127.0.0.1:" in r.output
    finally:
        get_settings.cache_clear()
