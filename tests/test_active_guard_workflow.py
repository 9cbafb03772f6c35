"""The guard on active IPs end to end (issue 15): PowerMTA accounting files (tests/data/make_accounting_samples.py,
dated relative to the test server's clock) go through the real ingest into daily_stat on a real database
(SQLite and PostgreSQL); ActiveGuardWorkflow and GuardStepWorkflow run on the time-skipping server with
the registry's real activities: the database steps, the warmup start/stop relays, IpWarmupWorkflow, and
MtaDeployWorkflow rendering the tenant's Postfix config (a disabled host: <var_dir>/mta/<host>/). Alerts go
through the real alerts activity (recorded on the way); in the capacity test to the Telegram Bot API double,
whose Approve button is pressed through the real ChatOps handler.

Done when: "an active IP with a real bounce excess is stepped down and one with a single bad day is not":
- 127.0.16.11: 1,070 sent a day, 70 bounced + 20 remote bounces: 630/7,490 = 8.41% [7.80%, 9.06%] -> stepped
  down to week_5 (quota 10,000 -> 1,000), warmup started, pool deployed, alert with an Undo button;
- 127.0.16.12: six days of 10 bounces in 1,100 and one of 340 in 1,100: 400/7,700 = 5.19% [4.72%, 5.71%]
  -> not yet clear: untouched;
- 127.0.16.13: 10 of 1,010 a day: ok.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select
from temporalio.client import Client
from temporalio.worker import Replayer
from typer.testing import CliRunner

from activities.accounting import ingest_local
from activities.active_guard import GuardPlanRequest, plan_day
from activities.db import session_scope
from activities.inventory import apply_inventory
from cli.main import app
from client.chatops import Press, handle_press
from client.guard import answer, run_guard
from models.alerting import action_allowed
from models.enums import IpStatus
from models.guard_contracts import GuardRunResult, IpFigures, step_workflow_id
from models.guard_tables import GuardStep
from models.inventory import parse
from models.settings import get_settings
from models.tables import DailyStat, SendingIp, Tenant
from tests import failover_support as fs
from tests.data.make_accounting_samples import render
from tests.servers.telegram import TelegramDouble
from tests.warmup_support import audit, ip_row
from workflows.active_guard import ActiveGuardWorkflow, GuardStepWorkflow

HOST, HOST_ADDR, TG_ADDR = "mta-gd", "127.0.16.1", "127.0.16.250"
BOUNCING, ONE_BAD_DAY, CLEAN = "127.0.16.11", "127.0.16.12", "127.0.16.13"
WARMING, STANDBY = "127.0.16.14", "127.0.16.21"
CHAT, ADMIN = -100777, 1001


def inventory(tenants: dict[str, tuple[str, list[tuple[str, str, str | None]]]]) -> str:
    """tenant -> (extra tenant lines, [(address, status, phase)]); a disabled Postfix host. VMTA names follow
    the accounting samples' `vmta-acme-N` (their synchronous bounces name only the VMTA)."""
    lines = ["[[mta_hosts]]", f'name = "{HOST}"', f'address = "{HOST_ADDR}"', 'backend = "postfix"',
             'config_dir = "/etc/postfix"', "enabled = false", ""]
    for i, (tenant, (extra, ips)) in enumerate(tenants.items()):
        lines += ["[[tenants]]", f'name = "{tenant}"', f'mta_host = "{HOST}"', 'dkim_key_dir = "/etc/opendkim/keys"',
                  extra, "[tenants.mailwizz]", f'base_url = "http://127.0.16.{200 + i}/api"',
                  f'source_ip = "127.0.16.{200 + i}"', ""]
        for address, status, phase in ips:
            n = address.rsplit(".", 1)[1]
            lines += ["[[tenants.ips]]", f'address = "{address}"', f'hostname = "mail.gd{n}.example"',
                      f'domain = "gd{n}.example"', f'vmta = "vmta-acme-{n}"', f'status = "{status}"']
            if phase:
                lines.append(f'phase = "{phase}"')
            lines.append("")
    return "\n".join(lines)


def seed(url: str, tenants: dict[str, tuple[str, list[tuple[str, str, str | None]]]]) -> None:
    apply_inventory(parse(inventory(tenants)), actor="test", url=url)


async def ingest(tmp: Path, url: str, address: str, days: list[dt.date], per_day: tuple[int, int, int, int]) -> None:
    """An accounting file as PowerMTA writes it: per day `per_day` = (delivered, bounced, remote bounces,
    complaints) of `address`, through the real ingest."""
    d, b, rb, f = per_day
    path = tmp / f"acct-{address}-{days[0]:%m%d}-{len(days)}.csv"
    path.write_text(render("guard", days=days, profile=(address, d, b, rb, f, 0)), encoding="utf-8")
    report = await ingest_local(path, url)
    assert report.malformed == 0 and report.unattributed == 0 and report.records > 0


def week_before(today: dt.date) -> list[dt.date]:
    return [today - dt.timedelta(days=7 - i) for i in range(7)]


def guard_rows(url: str) -> list[GuardStep]:
    with session_scope(url) as s:
        rows = list(s.exec(select(GuardStep).order_by(col(GuardStep.id))))
        for r in rows:
            s.expunge(r)
        return rows


def by_address(url: str) -> dict[str, GuardStep]:
    with session_scope(url) as s:
        ids = {ip.id: ip.address for ip in s.exec(select(SendingIp))}
    return {ids[r.ip_id]: r for r in guard_rows(url)}


def master_cf() -> str:
    return (get_settings().var_dir / "mta" / HOST / "email-engine" / "master.cf").read_text()


def figures(result: GuardRunResult) -> dict[str, IpFigures]:
    return {f.address: f for f in result.plan.ips()}


@asynccontextmanager
async def guard_worker(client: Client, alerts: fs.AlertLog, addresses: list[str]) -> AsyncIterator[str]:
    async with fs.engine_worker(client, [alerts.activity()]) as queue:
        try:
            yield queue
        finally:
            await fs.end_workflow(client, f"mta-deploy/{HOST}")
            for tenant in ("acme", "beta"):
                for address in addresses:
                    await fs.end_workflow(client, step_workflow_id(tenant, address))
                    await fs.end_workflow(client, f"warmup/{tenant}/{address}")


async def step_state(client: Client, address: str, status: str, tenant: str = "acme") -> dict[str, Any]:
    state: dict[str, Any] = await fs.wait_for(client.get_workflow_handle(step_workflow_id(tenant, address)),
                                              lambda s: s["status"] == status, timeout=60)
    return state


async def until_status(client: Client, wid: str, ok: Any, timeout: float = 60) -> dict[str, Any]:
    """Poll a warmup's `status` query until `ok(status)`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        st: dict[str, Any] = await client.get_workflow_handle(wid).query("status")
        if ok(st):
            return st
        assert asyncio.get_running_loop().time() < deadline, st
        await asyncio.sleep(0.1)


def cli_env(monkeypatch: pytest.MonkeyPatch, client: Client) -> None:
    monkeypatch.setenv("EMAIL_ENGINE_TEMPORAL_ADDRESS", client.service_client.config.target_host)
    get_settings.cache_clear()


async def invoke(*args: str) -> Any:
    return await asyncio.to_thread(CliRunner().invoke, app, list(args))


async def test_a_real_bounce_excess_is_stepped_down_and_a_single_bad_day_is_not(
        temporal_time_skipping, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = temporal_time_skipping
    client: Client = env.client
    today = (await env.get_current_time()).astimezone(dt.UTC).date()
    week = week_before(today)
    # min_delivered_share 0.1: the volume floor is 7,000 delivered a week (10,000/day), so the bad-day IP is
    # judged on its rates (not yet clear) rather than held on volume
    seed(db_url, {"acme": ("min_delivered_share = 0.1", [
        (BOUNCING, "active", None), (ONE_BAD_DAY, "active", None), (CLEAN, "active", None),
        (WARMING, "warming", "week_3"), (STANDBY, "standby", None)])})
    await ingest(tmp_path, db_url, BOUNCING, week, (1000, 70, 20, 0))
    await ingest(tmp_path, db_url, ONE_BAD_DAY, week[:3] + week[4:], (1090, 10, 0, 0))
    await ingest(tmp_path, db_url, ONE_BAD_DAY, week[3:4], (760, 340, 0, 0))  # the one bad day
    await ingest(tmp_path, db_url, CLEAN, week, (1000, 10, 0, 0))
    alerts = fs.AlertLog()
    wid = step_workflow_id("acme", BOUNCING)
    async with guard_worker(client, alerts, [BOUNCING, ONE_BAD_DAY, CLEAN]) as queue:
        with env.auto_time_skipping_disabled():
            result = await run_guard(client, "acme", task_queue=queue)
            assert result.started == [wid] and result.blocked == []
            t = result.plan.tenants[0]
            assert (t.capacity, t.limit, t.lost_before, t.lost_after) == (30_250, 6_050, 0, 9_000)
            assert t.counts == {"step-down": 1, "not-yet-clear": 1, "ok": 1}
            f = figures(result)
            b = f[BOUNCING]
            assert (b.verdict, b.step, b.loss) == ("step-down", "auto", 9_000)
            assert (b.sent, b.delivered, b.bounced, b.complaints) == (7490, 7000, 630, 0)
            assert (b.bounce_rate, b.bounce_bounds) == (0.084112, [0.078038, 0.090613])
            bad = f[ONE_BAD_DAY]
            assert (bad.verdict, bad.step) == ("not-yet-clear", "")
            assert (bad.sent, bad.delivered, bad.bounced, bad.required) == (7700, 7300, 400, 7000)
            assert (bad.bounce_rate, bad.bounce_bounds) == (0.051948, [0.047211, 0.057132])
            assert bad.reason == "not yet clear: bounce 5.19% > 5.00% but lower bound 4.72% is not"
            assert CLEAN not in f  # ok: counted, not listed in a workflow's result

            state = await step_state(client, BOUNCING, "applied")
            assert state["undo_until"] is not None and not state["held"]
        # the IP: warming at week_5 with its quota, from today, audited with the figures
        ip = ip_row(db_url, BOUNCING)
        assert (ip.status.value, ip.warmup_phase, ip.daily_quota, ip.phase_started_on) == (
            "warming", "week_5", 1000, today)
        last = audit(db_url, BOUNCING)[-1]
        assert (last.from_status, last.to_status, last.to_phase, last.actor) == ("active", "warming", "week_5", wid)
        assert "quota 10000 -> 1000/day" in last.reason
        assert "bounce rate 8.41% (630/7490), lower bound 7.80% > max 5.00%" in last.reason
        # the single bad day and the clean IP are untouched, with no audit row of the guard
        for address in (ONE_BAD_DAY, CLEAN):
            assert (ip_row(db_url, address).status.value, ip_row(db_url, address).daily_quota) == ("active", 10_000)
            assert not [r for r in audit(db_url, address) if r.actor.startswith("guard/")]
        rows = by_address(db_url)
        assert list(rows) == [BOUNCING] and rows[BOUNCING].status == "applied"
        # the re-warm: its own IpWarmupWorkflow at week_5; the pool deployed with the new quota
        warm = await client.get_workflow_handle(f"warmup/acme/{BOUNCING}").query("status")
        assert (warm["phase"], warm["quota"], warm["phase_started_on"]) == ("week_5", 1000, today.isoformat())
        assert f"{BOUNCING} (warming week_5, daily quota 1000)" in master_cf()
        assert f"{ONE_BAD_DAY} (active, daily quota 10000)" in master_cf()
        # the alert: figures, and an Undo button the ChatOps bot obeys
        [sent] = [a for a in alerts.alerts if a.title == f"Guard acme/{BOUNCING}: stepped down to week_5 (1000/day)"]
        assert "bounce 630/7490 = 8.41% [7.80%, 9.06%] (max 5.00%)" in sent.body and "10000 -> 1000/day" in sent.body
        [button] = sent.actions
        assert (button.workflow_id, button.name, button.kind) == (wid, "undo", "update")
        assert action_allowed(button.workflow_id, button.kind, button.name) and button.run_id == state["run_id"]

        # Running again the same day acts on nothing twice (the stepped-down IP is no longer active)
        with env.auto_time_skipping_disabled():
            again = await run_guard(client, "acme", task_queue=queue)
        assert again.started == [] and again.plan.steps == [] and again.plan.tenants[0].counts == {
            "not-yet-clear": 1, "ok": 1}
        assert len(guard_rows(db_url)) == 1 and len([r for r in audit(db_url, BOUNCING) if r.actor == wid]) == 1

        # the CLI: a dry run reads the same figures and exits 3 (incomplete: not yet clear, nothing to act on)
        cli_env(monkeypatch, client)
        res = await invoke("guard", "run", "--dry-run", "--tenant", "acme", "--json")
        assert res.exit_code == 3, res.output
        dry = json.loads(res.stdout)
        assert dry["dry_run"] and {f["address"]: f["verdict"] for f in dry["tenants"][0]["ips"]} == {
            ONE_BAD_DAY: "not-yet-clear", CLEAN: "ok"}
        res = await invoke("guard", "status", "--json")
        assert res.exit_code == 0 and [(r["address"], r["status"]) for r in json.loads(res.stdout)] == [
            (BOUNCING, "applied")]


@pytest.fixture
def telegram(monkeypatch: pytest.MonkeyPatch) -> Iterator[TelegramDouble]:
    with TelegramDouble(TG_ADDR) as tg:
        for k, v in {"TELEGRAM_BOT_TOKEN": tg.state.token, "TELEGRAM_BASE_URL": tg.base_url,
                     "TELEGRAM_CHAT_IDS": str(CHAT), "TELEGRAM_ADMIN_IDS": str(ADMIN),
                     "ALERT_RATE_PER_MINUTE": "60"}.items():  # both backends' runs within a minute
            monkeypatch.setenv(f"EMAIL_ENGINE_{k}", v)
        get_settings.cache_clear()
        yield tg
    get_settings.cache_clear()


async def buttons(tg: TelegramDouble, text: str, timeout: float = 60) -> dict[str, str]:
    """Label -> callback data of the newest message whose text contains `text` (waiting for it: a step's
    state says "held" before its alert has gone out)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        for msg in reversed(list(tg.state.messages)):
            if text in msg["text"] and msg.get("reply_markup"):
                return {b["text"]: b["callback_data"] for b in msg["reply_markup"]["inline_keyboard"][0]}
        assert asyncio.get_running_loop().time() < deadline, f"no message with buttons containing {text!r}"
        await asyncio.sleep(0.1)


FIVE = ["127.0.16.11", "127.0.16.12", "127.0.16.13", "127.0.16.14", "127.0.16.15"]
PAUSED, BETA_CLEAN = "127.0.16.31", "127.0.16.32"


async def test_capacity_loss_hold_then_approve_deny_undo_and_pause_policy(
        temporal_time_skipping, db_url: str, tmp_path: Path, telegram: TelegramDouble,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """acme: five active IPs (50,000/day; 20%: 10,000 a day without an operator). Three real excesses:
    complaints on .13 (28/7,000 = 0.40% [0.28%, 0.58%], the most evident) is stepped down at once; the
    step-downs of .12 (130/1,100 a day: 11.82% [11.12%, 12.56%]) and .11 (8.41%) would make 18,000: held.
    The Approve button takes .12's step, the CLI denies .11's, .13's is undone. beta (policy pause): its
    complaining IP leaves the pool (resting, quota 0) and the Restore update brings it back."""
    env = temporal_time_skipping
    client: Client = env.client
    today = (await env.get_current_time()).astimezone(dt.UTC).date()
    week = week_before(today)
    seed(db_url, {"acme": ("", [(a, "active", None) for a in FIVE]),
                  "beta": ('active_guard = "pause"', [(PAUSED, "active", None), (BETA_CLEAN, "active", None)])})
    await ingest(tmp_path, db_url, FIVE[0], week, (1000, 70, 20, 0))
    await ingest(tmp_path, db_url, FIVE[1], week, (1000, 100, 30, 0))
    await ingest(tmp_path, db_url, FIVE[2], week, (1000, 10, 0, 4))
    await ingest(tmp_path, db_url, PAUSED, week, (1000, 0, 0, 4))
    alerts = fs.AlertLog()
    async with guard_worker(client, alerts, [*FIVE, PAUSED, BETA_CLEAN]) as queue:
        with env.auto_time_skipping_disabled():
            result = await run_guard(client, task_queue=queue)
            acme, beta = result.plan.tenants
            assert (acme.capacity, acme.limit, acme.lost_after, beta.capacity, beta.lost_after) == (
                50_000, 10_000, 9_000, 20_000, 10_000)
            f = figures(result)
            assert (f[FIVE[2]].step, f[FIVE[1]].step, f[FIVE[0]].step, f[PAUSED].step) == ("auto", "held", "held",
                                                                                            "auto")
            assert (f[FIVE[2]].complaint_rate, f[FIVE[2]].complaint_bounds) == (0.004, [0.002769, 0.005775])
            assert (f[FIVE[1]].bounce_rate, f[FIVE[1]].bounce_bounds) == (0.118182, [0.111161, 0.125583])
            assert f[PAUSED].verdict == "pause" and f[PAUSED].loss == 10_000
            assert sorted(result.started) == sorted(step_workflow_id(t, a) for t, a in (
                ("acme", FIVE[2]), ("acme", FIVE[1]), ("acme", FIVE[0]), ("beta", PAUSED)))
            held = await step_state(client, FIVE[1], "held")
            await step_state(client, FIVE[0], "held")
            await step_state(client, FIVE[2], "applied")
            await step_state(client, PAUSED, "applied", "beta")
            assert held["hold_reason"] == (
                "capacity-loss hold: with this step acme would lose 18,000 of its 50,000/day capacity today (36.0%), "
                "more than 20% (at most 10,000 without an operator; 9,000 already removed by 1 step(s))")
            assert {a: ip_row(db_url, a).status.value for a in FIVE} == {
                FIVE[0]: "active", FIVE[1]: "active", FIVE[2]: "warming", FIVE[3]: "active", FIVE[4]: "active"}
            assert (ip_row(db_url, PAUSED).status.value, ip_row(db_url, PAUSED).daily_quota) == ("resting", 0)
            assert f"{PAUSED} (resting, daily quota 0): not in any pool" in master_cf()

            # a second run the same day: the held IPs are still active, and already decided: nothing new
            again = await run_guard(client, task_queue=queue)
            assert again.started == [] and again.plan.steps == []
            skipped = figures(again)
            assert skipped[FIVE[1]].skipped.startswith("already decided today: step_down held (active-guard/run/")
            assert len(guard_rows(db_url)) == 4

            # Approve .12 with the Telegram button of its held alert (the real ChatOps handler)
            data = (await buttons(telegram, f"{FIVE[1]}: step down held"))["Approve"]
            pressed = await handle_press(client, Press(CHAT, ADMIN, "alice", data), frozenset({CHAT}),
                                         frozenset({ADMIN}))
            assert pressed is not None and pressed.acted, pressed
            assert pressed.text.startswith("Approve: done (approved: approved from the alert (by telegram:1001 "
                                           "@alice))")
            await step_state(client, FIVE[1], "applied")
            # deny .11 with the CLI; answering .12 again is refused (it is no longer held)
            cli_env(monkeypatch, client)
            res = await invoke("guard", "deny", "acme", FIVE[0], "--reason", "list cleaned, bounces were one import")
            assert res.exit_code == 0 and "denied: list cleaned" in res.output, res.output
            await step_state(client, FIVE[0], "denied")
            res = await invoke("guard", "approve", "acme", FIVE[1], "--reason", "again")
            assert res.exit_code == 1 and "not waiting for an approve or deny" in res.output, res.output
            # undo .13 (warmup stopped, active again) and restore beta's paused IP
            assert (await answer(client, "acme", FIVE[2], "undo", "complaints came from a seed list",
                                 actor="cli:ops")).startswith("undo requested")
            await step_state(client, FIVE[2], "undone")
            await answer(client, "beta", PAUSED, "undo", "FBL reports were a test", actor="cli:ops")
            await step_state(client, PAUSED, "undone", "beta")
            # "undone" is recorded before the pool is deployed again: the rendered pools are read once the
            # two undone steps have finished (deploy and alert done)
            for tenant, address in (("acme", FIVE[2]), ("beta", PAUSED)):
                await client.get_workflow_handle(step_workflow_id(tenant, address)).result()

        assert {a: (ip_row(db_url, a).status.value, ip_row(db_url, a).daily_quota) for a in [*FIVE, PAUSED]} == {
            FIVE[0]: ("active", 10_000), FIVE[1]: ("warming", 1000), FIVE[2]: ("active", 10_000),
            FIVE[3]: ("active", 10_000), FIVE[4]: ("active", 10_000), PAUSED: ("active", 10_000)}
        rows = by_address(db_url)
        assert {a: (r.status, r.held, r.decided_by.split(":")[0]) for a, r in rows.items()} == {
            FIVE[2]: ("undone", False, "cli"), FIVE[1]: ("applied", True, "telegram"),
            FIVE[0]: ("denied", True, "cli"), PAUSED: ("undone", False, "cli")}
        assert rows[FIVE[1]].decided_by == "telegram:1001 @alice" and rows[FIVE[2]].decided_by == "cli:ops"
        reasons = [r.reason for r in audit(db_url, FIVE[1]) if r.actor == step_workflow_id("acme", FIVE[1])]
        assert reasons[0] == ("active guard: step_down of " + today.isoformat() + " approved by telegram:1001 @alice: "
                              "approved from the alert (by telegram:1001 @alice)")
        assert "approved by telegram:1001 @alice" in reasons[1] and "quota 10000 -> 1000/day" in reasons[1]
        warm = await client.get_workflow_handle(f"warmup/acme/{FIVE[2]}").describe()
        assert warm.status is not None and warm.status.name == "TERMINATED"  # the undo stopped the re-warm
        assert f"{FIVE[2]} (active, daily quota 10000)" in master_cf()
        assert f"{PAUSED} (active, daily quota 10000)" in master_cf()

        # the next run the same day leaves the denied and undone IPs alone
        with env.auto_time_skipping_disabled():
            third = await run_guard(client, task_queue=queue)
        assert third.started == [] and len(guard_rows(db_url)) == 4
        run = rows[FIVE[0]].run_workflow_id
        assert figures(third)[FIVE[0]].skipped == f"already decided today: step_down denied ({run})"
        res = await invoke("guard", "status", "--tenant", "acme", "--json")
        assert res.exit_code == 0 and sorted((r["address"], r["status"]) for r in json.loads(res.stdout)) == [
            (FIVE[0], "denied"), (FIVE[1], "applied"), (FIVE[2], "undone")]
        # the recorded histories replay (held, approved by a button, undone; the daily run)
        replayer = Replayer(workflows=[GuardStepWorkflow, ActiveGuardWorkflow])
        for wid in (step_workflow_id("acme", FIVE[1]), step_workflow_id("acme", FIVE[2]), run):
            await replayer.replay_workflow(await client.get_workflow_handle(wid).fetch_history())


def test_a_day_is_recorded_once(db_url: str) -> None:
    """The plan activity records the day's steps in its transaction: retried by the same run it returns
    that run's steps again and writes nothing; another run the same day finds them decided."""
    today = dt.date(2026, 11, 20)
    seed(db_url, {"acme": ("", [(a, "active", None) for a in FIVE])})
    with session_scope(db_url) as s:
        ids = {ip.address: ip.id for ip in s.exec(select(SendingIp))}
        for address in FIVE[:3]:  # 1,070 sent, 90 bounced a day: a real excess on three IPs
            for i in range(7):
                s.add(DailyStat(ip_id=ids[address], day=today - dt.timedelta(days=7 - i), sent=1070, delivered=1000,
                                bounced=90))
    first = plan_day(GuardPlanRequest(today.isoformat(), None, "run-1"), db_url)
    assert [(st.address, st.held) for st in first.steps] == [(FIVE[0], False), (FIVE[1], True), (FIVE[2], True)]
    assert [(r.status, r.run_workflow_id) for r in guard_rows(db_url)] == [("planned", "run-1"), ("held", "run-1"),
                                                                          ("held", "run-1")]
    retried = plan_day(GuardPlanRequest(today.isoformat(), None, "run-1"), db_url)
    assert retried.steps == first.steps and len(guard_rows(db_url)) == 3
    other = plan_day(GuardPlanRequest(today.isoformat(), None, "run-2"), db_url)
    assert other.steps == [] and len(guard_rows(db_url)) == 3
    assert {f.address: f.skipped for f in other.ips()} == {
        a: f"already decided today: step_down {st} (run-1)" for a, st in zip(FIVE[:3], ("planned", "held", "held"),
                                                                               strict=True)}
    dry = plan_day(GuardPlanRequest((today + dt.timedelta(days=1)).isoformat(), None, "run-3", dry_run=True,
                                    detail=True), db_url)
    # the next day: the two holds still wait for an operator; the planned step no workflow took is planned again
    assert [st.address for st in dry.steps] == [FIVE[0]] and len(guard_rows(db_url)) == 3  # dry: nothing recorded
    assert {f.address: f.skipped for f in dry.ips() if f.skipped} == {
        a: f"step_down of {today} held for an operator ({step_workflow_id('acme', a)})" for a in FIVE[1:3]}
    assert {f.address: f.verdict for f in dry.ips()} == {**dict.fromkeys(FIVE[:3], "step-down"),
                                                         **dict.fromkeys(FIVE[3:], "hold-insufficient-data")}
    # an operator denied .12's step on `today`: not acted on again while the window holds that day
    with session_scope(db_url) as s:
        row = s.exec(select(GuardStep).where(GuardStep.ip_id == ids[FIVE[1]])).one()
        row.status, row.decided_by = "denied", "cli:ops"
        row.decided_at = dt.datetime.combine(today, dt.time(9), tzinfo=dt.UTC)
        s.add(row)
        for i in range(1, 8):  # and it keeps bouncing the next week
            s.add(DailyStat(ip_id=ids[FIVE[1]], day=today + dt.timedelta(days=i), sent=1070, delivered=1000,
                            bounced=90))
    for days, kept in ((7, True), (8, False)):
        later = plan_day(GuardPlanRequest((today + dt.timedelta(days=days)).isoformat(), "acme", dry_run=True,
                                          detail=True), db_url)
        f = {x.address: x for x in later.ips()}[FIVE[1]]
        assert f.verdict == "step-down"
        why = (f"step_down of {today} denied by cli:ops: not acted on again before {today + dt.timedelta(days=8)} "
               "(the window still holds the day of that decision)")
        assert (f.skipped == why) is kept
        assert (FIVE[1] in [st.address for st in later.steps]) is not kept


BAD_POLICY = [
    ('active_guard = "delete"', "active_guard: Input should be 'step_down' or 'pause'"),
    ('guard_step_down_phase = "week_9"', "guard_step_down_phase: Input should be 'week_1'"),
    ("guard_max_capacity_loss_share = 0", "guard_max_capacity_loss_share: Input should be greater than 0"),
    ("guard_max_capacity_loss_share = 1.5", "guard_max_capacity_loss_share: Input should be less than or equal to 1"),
    ('guard_max_capacity_loss_share = "a lot"', "guard_max_capacity_loss_share: Input should be a valid number"),
]


def test_bad_policy_values_are_refused_and_nothing_is_written(db_url: str, tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(inventory({"acme": ('active_guard = "pause"\nguard_step_down_phase = "week_4"\n'
                                        "guard_max_capacity_loss_share = 0.3", [(CLEAN, "active", None)])}))
    cli = CliRunner()
    res = cli.invoke(app, ["inventory", "load", str(good)])
    assert res.exit_code == 0, res.output

    def tenant() -> tuple[str | None, str | None, float | None, int]:
        with session_scope(db_url) as s:
            t = s.exec(select(Tenant).where(Tenant.name == "acme")).one()
            n = len(list(s.exec(select(SendingIp))))
            return t.active_guard, t.guard_step_down_phase, t.guard_max_capacity_loss_share, n

    assert tenant() == ("pause", "week_4", 0.3, 1)
    bad = tmp_path / "bad.toml"
    bad.write_text(inventory({"acme": ("\n".join(line for line, _ in BAD_POLICY[:3]),
                                       [(CLEAN, "active", None), (STANDBY, "standby", None)])}))
    res = cli.invoke(app, ["inventory", "load", str(bad)])
    assert res.exit_code == 1 and "3 problem(s); nothing was written" in res.output, res.output
    for _, message in BAD_POLICY[:3]:
        assert message in res.output
    for line, message in BAD_POLICY[3:]:
        bad.write_text(inventory({"acme": (line, [(CLEAN, "active", None), (STANDBY, "standby", None)])}))
        res = cli.invoke(app, ["inventory", "load", str(bad)])
        assert res.exit_code == 1 and message in res.output, res.output
    assert tenant() == ("pause", "week_4", 0.3, 1)  # the policy and the fleet as before: nothing written
    # leaving the keys out goes back to the settings' defaults
    good.write_text(inventory({"acme": ("", [(CLEAN, "active", None)])}))
    assert cli.invoke(app, ["inventory", "load", str(good)]).exit_code == 0
    assert tenant() == (None, None, None, 1)
    plan = plan_day(GuardPlanRequest(dt.date(2026, 11, 20).isoformat(), "acme", dry_run=True), db_url)
    t = plan.tenants[0]
    assert (t.action, t.step_down_phase, t.max_capacity_loss_share) == ("step_down", "week_5", 0.2)


async def test_a_held_step_is_denied_without_an_answer_and_fails_when_the_ip_left_active(
        temporal_time_skipping, sqlite_url: str, tmp_path: Path) -> None:
    """Three step-downs in a five-IP tenant: one runs, two hold. .12 is quarantined (a failover) before
    its approval: the approved step finds it not active, changes nothing and is recorded failed. .13
    gets no answer: denied after 24 h (EMAIL_ENGINE_GUARD_APPROVAL_TIMEOUT_HOURS), skipped by the server."""
    env = temporal_time_skipping
    client: Client = env.client
    today = (await env.get_current_time()).astimezone(dt.UTC).date()
    seed(sqlite_url, {"acme": ("", [(a, "active", None) for a in FIVE])})
    for address in FIVE[:3]:
        await ingest(tmp_path, sqlite_url, address, week_before(today), (1000, 70, 20, 0))
    alerts = fs.AlertLog()
    async with guard_worker(client, alerts, FIVE) as queue:
        with env.auto_time_skipping_disabled():
            result = await run_guard(client, "acme", task_queue=queue)
            assert [(s.address, s.held) for s in result.plan.steps] == [(FIVE[0], False), (FIVE[1], True),
                                                                         (FIVE[2], True)]
            await step_state(client, FIVE[1], "held")
            await step_state(client, FIVE[2], "held")
            with session_scope(sqlite_url) as s:  # a failover takes .12 out meanwhile
                ip = s.exec(select(SendingIp).where(SendingIp.address == FIVE[1])).one()
                ip.status, ip.daily_quota, ip.weight = IpStatus.QUARANTINE, 0, 0
                s.add(ip)
            await answer(client, "acme", FIVE[1], "approve", "go ahead")
            failed = await step_state(client, FIVE[1], "failed")
            assert failed["error"] == f"{FIVE[1]} is quarantine with quota 0, expected active and sending"
            assert ip_row(sqlite_url, FIVE[1]).status == IpStatus.QUARANTINE
            handle = client.get_workflow_handle(step_workflow_id("acme", FIVE[2]))
            await env.sleep(dt.timedelta(hours=23))
            assert (await handle.query("state"))["status"] == "held"  # not yet
            await env.sleep(dt.timedelta(hours=2))
            denied = await step_state(client, FIVE[2], "denied")
            # the stepped-down IP's re-warm ticked meanwhile: its gate still sees the bad days and holds it
            # at the cut quota for 7 days (the README says so)
            warm = await until_status(client, f"warmup/acme/{FIVE[0]}", lambda st: st["paused"])
            assert (warm["phase"], warm["quota"], warm["paused"], warm["paused_by"]) == ("week_5", 1000, True, "gate")
            assert denied["answer"] == {"reason": "no operator answer within 24 h", "incident": None,
                                        "actor": "timeout"}
        rows = by_address(sqlite_url)
        assert {a: r.status for a, r in rows.items()} == {FIVE[0]: "applied", FIVE[1]: "failed", FIVE[2]: "denied"}
        assert rows[FIVE[1]].note.startswith("not applied: 127.0.16.12 is quarantine")
        assert rows[FIVE[2]].decided_by == "timeout"
        kept = ip_row(sqlite_url, FIVE[2])
        assert (kept.status, kept.daily_quota) == (IpStatus.ACTIVE, 10_000)
        assert any(a.title == f"Guard acme/{FIVE[1]}: step not taken" for a in alerts.alerts)
        assert any(a.title == f"Guard acme/{FIVE[2]}: step denied" for a in alerts.alerts)
