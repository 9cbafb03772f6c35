"""Outbound webhooks without Temporal: signing (checked by the `standardwebhooks` library), secrets,
receiver validation in the inventory, the outbox (SQLite and PostgreSQL), and in-order delivery to a
real HTTP receiver on loopback that is down, answers 500, or accepts."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from standardwebhooks import Webhook
from temporalio.exceptions import ApplicationError

from activities import webhooks as acts
from activities.inventory import apply_inventory
from cli.webhooks import parse_since
from models import webhooks as wh
from models.inventory import InventoryError, parse
from models.settings import get_settings
from tests import failover_support as fs
from tests.webhook_receiver import OTHER_SECRET, SECRET, Receiver, inventory_webhooks

FLEET: dict[str, list[tuple[str, str, str | None]]] = {"wh-u": [("127.0.15.41", "active", None)]}


def _event(n: int, etype: str = "ip.quarantined") -> wh.WebhookEvent:
    return wh.WebhookEvent(id=f"evt_{n:04d}", type=etype, occurred_at=f"2026-11-29T10:{n % 60:02d}:00+00:00",
                           data={"tenant": "wh-u", "ip": "127.0.15.41", "n": n})


def _load(url: str, *receivers: tuple[str, str, list[str]]) -> None:
    apply_inventory(parse(fs.inventory_text(FLEET) + "\n" + inventory_webhooks(*receivers)), actor="test", url=url)


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMAIL_ENGINE_WEBHOOK_SECRETS", f"lead={SECRET},other={SECRET}")
    get_settings.cache_clear()


# ------------------------------------------------------------------------------------------ signing


def test_signature_verifies_with_the_library_also_during_a_rotation() -> None:
    body = wh.payload(_event(1))
    now = dt.datetime.now(dt.UTC)
    hdrs = wh.headers([SECRET], "evt_0001", now, body)
    assert Webhook(SECRET).verify(body.encode(), hdrs)["data"]["n"] == 1
    assert hdrs["webhook-timestamp"] == str(int(now.timestamp())) and hdrs["webhook-id"] == "evt_0001"
    # the signature is the library's own
    assert hdrs["webhook-signature"] == Webhook(SECRET).sign("evt_0001", now, body)
    rotated = wh.headers([OTHER_SECRET, SECRET], "evt_0001", now, body)
    assert len(rotated["webhook-signature"].split(" ")) == 2
    for secret in (SECRET, OTHER_SECRET):  # receivers on the old or the new secret both verify
        Webhook(secret).verify(body.encode(), rotated)
    with pytest.raises(Exception, match="No matching signature"):
        Webhook(OTHER_SECRET).verify(body.encode(), hdrs)
    with pytest.raises(Exception, match="too old"):
        Webhook(SECRET).verify(body.encode(), wh.headers([SECRET], "evt_0001", now - dt.timedelta(hours=1), body))


def test_secrets_parse_and_errors_never_echo_them() -> None:
    assert wh.parse_secrets(f"a={SECRET}, b={SECRET} {OTHER_SECRET}") == {"a": [SECRET], "b": [SECRET, OTHER_SECRET]}
    assert wh.parse_secrets(f'{{"a": "{SECRET}"}}') == {"a": [SECRET]}
    assert wh.parse_secrets("") == {}
    for bad, why in [("a=whsec_c2hvcnQ=", "24-64 bytes"), ("a=whsec_short", "valid base64"),
                     ("a=nowhsec", "'whsec_'"), ("a=whsec_@@@@", "'whsec_'"),
                     ("a=", "empty"), ("=x", "not name=secret"), ("{", "JSON")]:
        with pytest.raises(wh.WebhookConfigError, match=why) as info:
            wh.parse_secrets(bad)
        assert bad.partition("=")[2] not in str(info.value) or not bad.partition("=")[2]


def test_contact_kind_only_for_bad_addresses() -> None:
    assert wh.contact_kind("f", "") == "contact.complaint"
    assert wh.contact_kind("b", "bad-mailbox") == "contact.hard_bounce"
    assert wh.contact_kind("rb", "inactive-mailbox") == "contact.hard_bounce"
    assert wh.contact_kind("b", "spam-related") is None and wh.contact_kind("b", "") is None
    assert wh.contact_kind("d", "bad-mailbox") is None


def test_dns_failed_only_for_invalid_checks_with_an_id_per_day_domain_and_failures() -> None:
    summary = {"tenant": "t1", "domain": "d.example", "ip": "192.0.2.1", "checked_at": "2026-11-29T06:00:00+00:00",
               "previous_state": "pass", "items": {
                   "spf": {"status": "invalid", "reason": "192.0.2.1 not authorized"},
                   "dkim": {"status": "valid", "reason": "matches"},
                   "dmarc": {"status": "unknown", "reason": "timeout"},
                   "ptr": {"status": "invalid", "reason": "no PTR"}}}
    ev = wh.dns_failed("2026-11-29", summary)
    assert ev is not None and ev.type == "dns.failed" and wh.event_id(ev.id) == ev.id
    assert ev.occurred_at == "2026-11-29T06:00:00+00:00"
    assert ev.data == {"tenant": "t1", "domain": "d.example", "ip": "192.0.2.1", "day": "2026-11-29",
                       "failed": [{"check": "spf", "reason": "192.0.2.1 not authorized"},
                                  {"check": "ptr", "reason": "no PTR"}],
                       "unknown": [{"check": "dmarc", "reason": "timeout"}], "previous_state": "pass"}
    again = wh.dns_failed("2026-11-29", {**summary, "checked_at": "2026-11-29T07:00:00+00:00"})
    assert again is not None and again.id == ev.id  # the same day and failures: the same event
    other_day = wh.dns_failed("2026-11-30", summary)
    fewer = wh.dns_failed("2026-11-29", {**summary, "items": {**summary["items"], "ptr": {"status": "valid"}}})
    assert other_day is not None and fewer is not None and len({ev.id, other_day.id, fewer.id}) == 3
    # an unknown answer is not a failure; nor is a warning
    unknown = {"spf": {"status": "unknown"}, "dkim": {"status": "warn"}}
    assert wh.dns_failed("2026-11-29", {**summary, "items": unknown}) is None


def test_since_parsing() -> None:
    now = dt.datetime(2026, 11, 29, 12, tzinfo=dt.UTC)
    assert parse_since("6h", now) == now - dt.timedelta(hours=6)
    assert parse_since("2026-11-28", now) == dt.datetime(2026, 11, 28, tzinfo=dt.UTC)
    with pytest.raises(ValueError, match="ISO"):
        parse_since("yesterday", now)


# ------------------------------------------------------------------------------------------ inventory


@pytest.mark.parametrize(("url", "events", "name", "message"), [
    ("http://hooks.example.com/in", ["ip.quarantined"], "lead", "plain http is allowed to loopback only"),
    ("https://user:pw@hooks.example.com/in", ["ip.quarantined"], "lead", "credentials in the URL"),
    ("https://hooks.example.com/in?token=x", ["ip.quarantined"], "lead", "no query or fragment"),
    ("ftp://hooks.example.com/in", ["ip.quarantined"], "lead", "not an http(s) URL"),
    ("https://hooks.example.com/in", ["ip.exploded"], "lead", "not a webhook event type"),
    ("https://hooks.example.com/in", [], "lead", "at least 1 item"),
    ("https://hooks.example.com/in", ["ip.retired", "ip.retired"], "lead", "twice"),
    ("https://hooks.example.com/in", ["ip.retired"], "bad name", "not a valid name"),
])
def test_inventory_refuses_bad_receivers(url: str, events: list[str], name: str, message: str) -> None:
    text = fs.inventory_text(FLEET) + "\n" + inventory_webhooks((name, url, events))
    with pytest.raises(InventoryError, match="webhooks") as info:
        parse(text)
    assert message in str(info.value)


def test_inventory_refuses_a_secret_and_duplicate_names() -> None:
    text = fs.inventory_text(FLEET) + "\n" + inventory_webhooks(("lead", "https://a.example/x", ["ip.retired"]),
                                                                 ("lead", "https://b.example/x", ["ip.retired"]))
    with pytest.raises(InventoryError, match="webhook receiver name 'lead' is already used"):
        parse(text)
    with pytest.raises(InventoryError, match=r"webhooks\[0\].*secret: unknown key"):
        parse(fs.inventory_text(FLEET) + '\n[[webhooks]]\nname = "a"\nurl = "https://a.example/x"\n'
              'events = ["ip.retired"]\nsecret = "whsec_x"\n')
    ok = parse(fs.inventory_text(FLEET) + "\n" + inventory_webhooks(
        ("lead", "https://a.example/x", ["ip.retired"]), ("local", "http://127.0.0.1:8080/h", ["dns.failed"])))
    assert [w.name for w in ok.webhooks] == ["lead", "local"]


def test_receivers_loaded_then_disabled_when_left_out(db_url: str) -> None:
    _load(db_url, ("lead", "https://a.example/x", ["ip.retired"]), ("other", "https://b.example/x", ["dns.failed"]))
    rows = {r["name"]: r for r in acts.list_receivers(db_url)}
    assert rows["lead"]["events"] == ["ip.retired"] and rows["lead"]["enabled"] and rows["lead"]["secret"] == "missing"
    report = apply_inventory(parse(fs.inventory_text(FLEET) + "\n" + inventory_webhooks(
        ("lead", "https://a.example/x", ["ip.retired", "dns.failed"]))), actor="test", url=db_url)
    assert "~ webhook other: enabled" in report.details and "~ webhook lead: events" in report.details
    rows = {r["name"]: r for r in acts.list_receivers(db_url)}
    assert not rows["other"]["enabled"] and rows["lead"]["events"] == ["ip.retired", "dns.failed"]


# ------------------------------------------------------------------------------------------ outbox


def test_outbox_queues_once_per_subscriber_in_order(db_url: str) -> None:
    _load(db_url, ("lead", "https://a.example/x", ["ip.quarantined", "dns.failed"]),
          ("other", "https://b.example/x", ["dns.failed"]))
    assert acts.queue_event(_event(1), db_url) == ["lead"]
    assert acts.queue_event(_event(1), db_url) == ["lead"]  # a retried activity: woken again, queued once
    assert acts.queue_event(_event(2, "dns.failed"), db_url) == ["lead", "other"]
    assert acts.queue_event(_event(3, "ip.retired"), db_url) == []  # nobody subscribes
    assert [r.event_id for r in acts.outbox("lead", db_url)] == ["evt_0001", "evt_0002"]
    assert [r.event_id for r in acts.outbox("other", db_url)] == ["evt_0002"]
    assert acts.receivers_with_pending(db_url) == ["lead", "other"]
    # a disabled receiver gets nothing new and is not woken
    _load(db_url, ("lead", "https://a.example/x", ["ip.quarantined", "dns.failed"]))
    assert acts.queue_event(_event(4, "dns.failed"), db_url) == ["lead"]
    assert acts.receivers_with_pending(db_url) == ["lead"]


# ------------------------------------------------------------------------------------------ delivery


async def test_delivery_in_order_through_an_outage_and_500s(sqlite_url: str, secrets: None) -> None:
    url = sqlite_url
    rec = Receiver("127.0.15.51")
    _load(url, ("lead", rec.url, ["ip.quarantined"]))
    for n in range(1, 6):
        acts.queue_event(_event(n), url)
    # down: nothing sent, the head row records the attempt, the error says why (no secret in it)
    with pytest.raises(ApplicationError, match="ConnectError") as info:
        await acts.deliver_pending("lead", url)
    assert info.value.type == "WebhookUndelivered" and SECRET not in str(info.value)
    head = acts.outbox("lead", url)[0]
    assert (head.status, head.attempts) == ("pending", 1)
    with rec:
        rec.fail_next = 1
        with pytest.raises(ApplicationError, match="HTTP 500"):
            await acts.deliver_pending("lead", url)
        res = await acts.deliver_pending("lead", url, limit=3)  # a batch: three, in order
        assert (res.delivered, res.remaining) == (3, True)
        res = await acts.deliver_pending("lead", url)
        assert (res.delivered, res.remaining) == (2, False)
        assert (await acts.deliver_pending("lead", url)).delivered == 0  # nothing left: a no-op
    assert rec.rejected == [] and rec.answered_500 == 1
    assert rec.ids() == [f"evt_{n:04d}" for n in range(1, 6)]
    rows = acts.outbox("lead", url)
    assert [r.status for r in rows] == ["delivered"] * 5 and rows[0].attempts == 3
    # replay sends them again with their ids; list shows the queue
    assert acts.replay(dt.datetime(2026, 11, 29, 10, 3, tzinfo=dt.UTC), "lead", url) == {"lead": 3}
    listed = acts.list_receivers(url)[0]
    assert (listed["pending"], listed["delivered"], listed["failed"], listed["secret"]) == (3, 2, 0, "set")
    with rec:
        assert (await acts.deliver_pending("lead", url)).delivered == 3
    assert rec.ids()[5:] == ["evt_0003", "evt_0004", "evt_0005"]


async def test_a_failure_mid_batch_keeps_the_order(sqlite_url: str, secrets: None) -> None:
    url = sqlite_url
    rec = Receiver("127.0.15.52")
    _load(url, ("lead", rec.url, ["ip.quarantined"]))
    for n in range(1, 4):
        acts.queue_event(_event(n), url)
    with rec:
        res = await acts.deliver_pending("lead", url, limit=1)
        assert res.delivered == 1
        rec.fail_next = 1  # the second event fails: the batch stops, the third is not sent before it
        with pytest.raises(ApplicationError):
            await acts.deliver_pending("lead", url)
        assert rec.ids() == ["evt_0001"]
        assert acts.give_up_head("lead", "test", url) == "evt_0002"  # the retry budget spent
        assert (await acts.deliver_pending("lead", url)).delivered == 1
    assert rec.ids() == ["evt_0001", "evt_0003"]
    assert [r.status for r in acts.outbox("lead", url)] == ["delivered", "failed", "delivered"]
    assert acts.list_receivers(url)[0]["failed"] == 1


async def test_missing_secret_and_disabled_receiver(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    url = sqlite_url
    monkeypatch.setenv("EMAIL_ENGINE_WEBHOOK_SECRETS", f"someone-else={SECRET}")
    get_settings.cache_clear()
    _load(url, ("lead", "http://127.0.15.53:9/x", ["ip.quarantined"]))
    acts.queue_event(_event(1), url)
    with pytest.raises(ApplicationError, match="no secret") as info:
        await acts.deliver_pending("lead", url)
    assert info.value.type == "WebhookSecretMissing"
    with pytest.raises(LookupError, match="no secret"):
        await acts.send_test("lead", url)
    _load(url)  # the receiver left the inventory: its rows wait, the workflow is told to end
    assert (await acts.deliver_pending("lead", url)).disabled
    assert acts.outbox("lead", url)[0].status == "pending"


async def test_cli_test_and_list(sqlite_url: str, secrets: None, cli) -> None:  # type: ignore[no-untyped-def]
    from cli.main import app

    rec = Receiver("127.0.15.54")
    _load(sqlite_url, ("lead", rec.url, ["ip.quarantined"]))
    with rec:
        result = await asyncio.to_thread(cli.invoke, app, ["webhooks", "test", "lead"])
    assert result.exit_code == 0, result.output
    assert "answered 2xx" in result.output and rec.types() == ["webhook.test"] and rec.rejected == []
    result = await asyncio.to_thread(cli.invoke, app, ["webhooks", "test", "lead"])  # down now
    assert result.exit_code == 1 and "ConnectError" in result.output
    result = await asyncio.to_thread(cli.invoke, app, ["webhooks", "list", "--json"])
    assert result.exit_code == 0 and '"secret": "set"' in result.output and SECRET not in result.output
    result = await asyncio.to_thread(cli.invoke, app, ["webhooks", "test", "nobody"])
    assert result.exit_code == 1 and "no enabled webhook receiver 'nobody'" in result.output


# ------------------------------------------------------------------------------------------ contacts


def _acct_file(tmp_path, rows):  # type: ignore[no-untyped-def]
    from tests.accounting_records import csv_text

    path = tmp_path / "email-engine-acct-2026-11-29-0000.csv"
    path.write_text(csv_text(rows))
    return path


async def test_contact_events_from_accounting_only_for_subscribers(db_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from activities.accounting import ingest_local
    from tests.accounting_records import delivery, remote_bounce, stamp

    at = dt.datetime(2026, 11, 29, 9, tzinfo=dt.UTC)
    ip = "127.0.15.41"
    rows = [delivery(at, ip, "gone@example.net", env="j1"), delivery(at, ip, "angry@example.net", env="j2"),
            {"type": "b", "timeLogged": stamp(at), "vmta": "vmta-wh-u-41", "rcpt": "nobody@example.org",
             "bounceCat": "bad-mailbox"},
            {"type": "b", "timeLogged": stamp(at), "vmta": "vmta-wh-u-41", "rcpt": "policy@example.org",
             "bounceCat": "policy-related"},  # not the address's fault: no event
            {**remote_bounce(at + dt.timedelta(minutes=5), "gone@example.net", env="j1"), "bounceCat": "bad-domain"},
            {"type": "f", "timeLogged": stamp(at + dt.timedelta(minutes=9)), "rcpt": "angry@example.net",
             "envId": "j2", "orig": "bounce@mail.example"}]
    # nobody subscribes to the accounting's contact events (contact.unsubscribe comes from MailWizz): no
    # recipient address is collected or written anywhere for webhooks
    _load(db_url, ("fleet-only", "https://a.example/x", ["ip.quarantined", "contact.unsubscribe"]))
    (tmp_path / "a").mkdir()
    first = _acct_file(tmp_path / "a", rows)
    report = await ingest_local(first, db_url)
    assert report.contacts == 0 and acts.outbox("fleet-only", db_url) == []
    # a lead source subscribes: the next file's bounces and complaints are queued, in file order
    _load(db_url, ("fleet-only", "https://a.example/x", ["ip.quarantined", "contact.unsubscribe"]),
          ("lead", "https://lead.example/in", ["contact.hard_bounce", "contact.complaint"]))
    (tmp_path / "b").mkdir()
    second = _acct_file(tmp_path / "b", rows)
    report = await ingest_local(second, db_url)
    assert report.contacts == 3
    queued = acts.outbox("lead", db_url)
    import json

    bodies = [json.loads(r.body) for r in queued]
    assert [(b["type"], b["data"]["recipient"], b["data"]["category"]) for b in bodies] == [
        ("contact.hard_bounce", "nobody@example.org", "bad-mailbox"),
        ("contact.hard_bounce", "gone@example.net", "bad-domain"),
        ("contact.complaint", "angry@example.net", None)]
    assert bodies[0]["data"]["ip"] == ip and bodies[0]["timestamp"].startswith("2026-11-29T09:00:00")
    assert acts.outbox("fleet-only", db_url) == []
    # reading the file again (or a retried chunk) queues nothing twice
    assert (await ingest_local(second, db_url)).contacts == 0 and len(acts.outbox("lead", db_url)) == 3
