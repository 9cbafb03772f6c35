"""Stale ChatOps buttons do nothing (issue 11): a failover button is bound to the saga run that sent
it, every button expires, and the single-use mark is one atomic UPDATE taken before acting.

Real parts: the Temporal dev server (temporal_local) with a stand-in workflow exposing the saga's
"approve"/"deny" updates (tests/test_ops_bot.py ChatOpsProbe), the database (SQLite and PostgreSQL),
and the Telegram Bot API double the alerts go through.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import random
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker

from activities import alert_store
from activities.alerts import Alert, AlertAction, deliver_alert, send_alert
from client.chatops import Answer, Press, handle_press
from models.settings import get_settings
from tests.servers.telegram import TelegramDouble
from tests.test_ops_bot import ChatOpsProbe

HOST = "127.0.50.14"
CHAT, ADMIN, ADMIN2 = -100888, 1001, 1002


@pytest.fixture
def telegram(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TelegramDouble]:
    with TelegramDouble(HOST) as tg:
        for k, v in {"TELEGRAM_BOT_TOKEN": tg.state.token, "TELEGRAM_BASE_URL": tg.base_url,
                     "TELEGRAM_CHAT_IDS": str(CHAT), "TELEGRAM_ADMIN_IDS": f"{ADMIN},{ADMIN2}"}.items():
            monkeypatch.setenv(f"EMAIL_ENGINE_{k}", v)
        get_settings.cache_clear()
        yield tg
    get_settings.cache_clear()


def tokens(tg: TelegramDouble) -> dict[str, str]:
    """Label -> token of the buttons of the newest message."""
    row = tg.state.messages[-1]["reply_markup"]["inline_keyboard"][0]
    return {b["text"]: b["callback_data"] for b in row}


async def press(client: Client, data: str, user: int = ADMIN) -> Answer:
    answer = await handle_press(client, Press(CHAT, user, "alice", data), frozenset({CHAT}),
                                frozenset({ADMIN, ADMIN2}))
    assert answer is not None
    return answer


async def held_alert(wf_id: str, run_id: str | None, key: str, **kw: object) -> None:
    assert await deliver_alert(Alert(key=key, title="held", severity="critical", actions=[
        AlertAction("Approve", wf_id, "approve", "update", arg="approved from the alert", run_id=run_id, **kw),
        AlertAction("Deny", wf_id, "deny", "update", arg="denied from the alert", run_id=run_id, **kw)]), key)


async def saga_alert(wf_id: str, run_id: str, key: str) -> None:
    """The held-failover alert exactly as the saga sends it: from its send_alert activity, no run id given."""
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, workflow_id=wf_id, workflow_run_id=run_id, activity_id=key)
    assert await env.run(send_alert, Alert(key=key, title="held", severity="critical", actions=[
        AlertAction("Approve", wf_id, "approve", "update", arg="approved from the alert"),
        AlertAction("Deny", wf_id, "deny", "update", arg="denied from the alert")]))


async def test_an_approve_from_an_earlier_saga_run_does_nothing(  # type: ignore[no-untyped-def]
        temporal_local, telegram: TelegramDouble) -> None:
    client: Client = temporal_local.client
    wf_id = f"failover/client-2/198.51.100.{random.randint(1, 254)}"
    queue = f"stale-{uuid.uuid4()}"
    async with Worker(client, task_queue=queue, workflows=[ChatOpsProbe]):
        first = await client.start_workflow(ChatOpsProbe.run, id=wf_id, task_queue=queue)
        assert first.result_run_id is not None
        await saga_alert(wf_id, first.result_run_id, f"{wf_id}/1")
        old = tokens(telegram)
        await first.signal(ChatOpsProbe.finish)  # the first saga timed out: its incident is over
        await first.result()
        second = await client.start_workflow(ChatOpsProbe.run, id=wf_id, task_queue=queue)  # next listing
        answer = await press(client, old["Approve"])
        assert not answer.acted
        assert answer.text.startswith("Approve: nothing done: this button belongs to an incident that is over")
        assert await second.query(ChatOpsProbe.seen) == []  # the held saga of the new listing is untouched
        again = await press(client, old["Approve"])
        assert again.text.startswith("Already done by telegram:1001 @alice: Approve: nothing done")
        # The second saga's own button acts on it.
        assert second.result_run_id is not None
        await saga_alert(wf_id, second.result_run_id, f"{wf_id}/2")
        answer = await press(client, tokens(telegram)["Approve"])
        assert answer.acted and answer.text.startswith("Approve: done (standby activated)")
        assert await second.query(ChatOpsProbe.seen) == [
            "approve by approved from the alert (by telegram:1001 @alice)"]
        await second.signal(ChatOpsProbe.finish)
        await second.result()


async def test_a_button_sent_by_the_saga_is_bound_to_its_run(telegram: TelegramDouble) -> None:
    """No run id given: the alerts activity binds a failover button to the run of the saga sending it."""
    wf_id = "failover/client-2/198.51.100.77"
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, workflow_id=wf_id, workflow_run_id="run-of-the-saga",
                                   activity_id="a1")
    before = dt.datetime.now(dt.UTC)
    await env.run(send_alert, Alert(key=f"{wf_id}/held", title="held", actions=[
        AlertAction("Approve", wf_id, "approve", "update"),
        AlertAction("Pause", "warmup/client-2/198.51.100.77", "pause")]))
    approve, pause = (alert_store.load_button(t.removeprefix("ee:")) for t in tokens(telegram).values())
    assert approve is not None and pause is not None
    assert approve.run_id == "run-of-the-saga"
    assert pause.run_id is None  # warmups continue as new: their buttons name their pause instead
    window = dt.timedelta(hours=get_settings().failover_approval_timeout_hours)
    assert approve.expires_at is not None and pause.expires_at is not None
    assert before + window <= approve.expires_at <= dt.datetime.now(dt.UTC) + window
    assert pause.expires_at - before >= dt.timedelta(days=8) - dt.timedelta(minutes=1)


async def test_an_expired_button_does_nothing(temporal_local, telegram: TelegramDouble) -> None:  # type: ignore[no-untyped-def]
    client: Client = temporal_local.client
    wf_id = f"failover/client-1/203.0.113.{random.randint(1, 254)}"
    queue = f"stale-{uuid.uuid4()}"
    async with Worker(client, task_queue=queue, workflows=[ChatOpsProbe]):
        h = await client.start_workflow(ChatOpsProbe.run, id=wf_id, task_queue=queue)
        await held_alert(wf_id, h.result_run_id, f"{wf_id}/held", expires_in_seconds=0)
        answer = await press(client, tokens(telegram)["Approve"])
        assert not answer.acted and "this button expired at" in answer.text and "nothing done" in answer.text
        assert await h.query(ChatOpsProbe.seen) == []
        await h.signal(ChatOpsProbe.finish)
        await h.result()


async def test_two_concurrent_presses_one_acts(temporal_local, telegram: TelegramDouble) -> None:  # type: ignore[no-untyped-def]
    client: Client = temporal_local.client
    wf_id = f"failover/client-1/192.0.2.{random.randint(1, 254)}"
    queue = f"stale-{uuid.uuid4()}"
    async with Worker(client, task_queue=queue, workflows=[ChatOpsProbe]):
        h = await client.start_workflow(ChatOpsProbe.run, id=wf_id, task_queue=queue)
        assert h.result_run_id is not None
        await saga_alert(wf_id, h.result_run_id, f"{wf_id}/held")
        b = tokens(telegram)
        # Approve by one admin and Deny by another at once, and the same Approve twice: one acts.
        answers = await asyncio.gather(press(client, b["Approve"], ADMIN), press(client, b["Approve"], ADMIN2),
                                       press(client, b["Approve"], ADMIN))
        assert sum(a.acted for a in answers) == 1, answers
        assert all(a.text.startswith("Already") for a in answers if not a.acted), answers
        seen = await h.query(ChatOpsProbe.seen)
        assert len(seen) == 1 and seen[0].startswith("approve by"), seen  # one approve reached the saga
        await h.signal(ChatOpsProbe.finish)
        await h.result()


def test_the_single_use_mark_is_atomic_under_contention(db_url: str) -> None:
    """Sixteen threads claim one button at once (on PostgreSQL: sixteen connections): one wins."""
    (token,) = alert_store.store_buttons("k", [alert_store.NewButton("Approve", "failover/t/10.0.0.1", "approve",
                                                                     "update", None, "r1", None)], db_url)
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda i: alert_store.claim_button(token, f"telegram:{i}", None, db_url), range(16)))
    assert results.count(True) == 1
    winner = f"telegram:{results.index(True)}"
    b = alert_store.load_button(token, db_url)
    assert b is not None and b.used_by == winner and b.used_at is not None
    # Releasing is only for the claimant, and only while nothing was recorded.
    alert_store.release_button(token, "telegram:other", db_url)
    assert alert_store.claim_button(token, "telegram:late", None, db_url) is False
    alert_store.record_use(token, winner, "done", db_url)
    alert_store.release_button(token, winner, db_url)
    assert alert_store.claim_button(token, "telegram:late", None, db_url) is False


@dataclass
class Decision:  # the shape of the saga's FailoverDecision (branch `saga`): reason and incident (run id)
    reason: str
    incident: str | None = None


@workflow.defn(name="DecisionProbe", sandboxed=False)  # test double of the saga's approve/deny contract
class DecisionProbe:
    def __init__(self) -> None:
        self.answers: list[str] = []
        self.done = False

    @workflow.run
    async def run(self) -> list[str]:
        await workflow.wait_condition(lambda: self.done)
        return self.answers

    @workflow.update
    async def approve(self, d: Decision) -> str:
        self.answers.append(f"approve: {d.reason} [{d.incident}]")
        return "standby activated"

    @approve.validator
    def _check(self, d: Decision) -> None:
        if d.incident is not None and d.incident != workflow.info().run_id:
            raise ValueError(f"this answer is for failover run {d.incident}, not {workflow.info().run_id}")

    @workflow.signal
    def finish(self) -> None:
        self.done = True

    @workflow.query
    def seen(self) -> list[str]:
        return self.answers


async def test_the_incident_travels_in_the_update_and_a_mismatch_is_refused(  # type: ignore[no-untyped-def]
        temporal_local, telegram: TelegramDouble) -> None:
    """The button's JSON arg carries the saga's run id as `incident`; the workflow's validator checks it
    (defence in depth behind the run-bound handle: even an unbound button cannot approve another run)."""
    client: Client = temporal_local.client
    wf_id = f"failover/client-1/192.0.2.{random.randint(1, 254)}"
    queue = f"stale-{uuid.uuid4()}"
    async with Worker(client, task_queue=queue, workflows=[DecisionProbe]):
        h = await client.start_workflow(DecisionProbe.run, id=wf_id, task_queue=queue)
        run = h.result_run_id
        for incident, run_id in ((run, run), ("an-earlier-run", None)):  # the second: unbound, wrong incident
            arg = json.dumps({"reason": "approved from the alert", "incident": incident})
            assert await deliver_alert(Alert(key=f"{wf_id}/{incident}", title="held", actions=[
                AlertAction("Approve", wf_id, "approve", "update", arg=arg, run_id=run_id)]), incident)
            answer = await press(client, tokens(telegram)["Approve"])
            if incident == run:
                assert answer.acted and answer.text.startswith("Approve: done (standby activated)")
            else:
                assert not answer.acted and "not " + str(run) in answer.text, answer.text
        assert await h.query(DecisionProbe.seen) == [
            f"approve: approved from the alert (by telegram:1001 @alice) [{run}]"]
        await h.signal(DecisionProbe.finish)
        await h.result()


def test_buttons_issued_before_the_binding_expire_at_upgrade(tmp_path: Path) -> None:
    """Old buttons carry no run id: the migration expires the unpressed ones (pressed ones keep their result)."""
    from sqlalchemy import text

    from activities import db

    url = f"sqlite:///{tmp_path / 'old.db'}"
    db.upgrade(url, "0014")
    with db.get_engine(url).begin() as conn:
        for token, used in (("old-unused", None), ("old-used", "2026-11-01 10:00:00.000000")):
            conn.execute(text("INSERT INTO alert_button (token, alert_key, label, workflow_id, name, kind, "
                              "created_at, used_at) VALUES (:t, 'k', 'Approve', 'failover/t/10.0.0.1', 'approve', "
                              "'update', '2026-11-01 09:00:00.000000', :u)"), {"t": token, "u": used})
    db.dispose_engine(url)
    db.upgrade(url)
    assert alert_store.claim_button("old-unused", "telegram:1", None, url) is False
    unused, used = alert_store.load_button("old-unused", url), alert_store.load_button("old-used", url)
    assert unused is not None and unused.expires_at is not None and unused.used_at is None
    assert used is not None and used.expires_at is None and used.used_at is not None
    db.dispose_engine(url)
