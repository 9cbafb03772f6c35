"""PowerMTA accounting: the parser (samples, hostile input), the idempotent ingest into daily_stat on both
databases, the `stats` CLI, the SFTP ingest workflow against a real OpenSSH server, the hourly schedule
on the dev server."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlmodel import select
from temporalio.worker import Worker
from typer.testing import CliRunner

from activities.accounting import ingest_host_accounting, ingest_local, list_accounting_hosts
from activities.alerts import send_alert
from activities.db import session_scope
from cli.stats import app as stats_app
from models.accounting import MAX_RECORD_BYTES, parse_accounting
from models.accounting_tables import AccountingFile
from models.settings import get_settings
from models.tables import DailyStat, SendingIp
from tests.data.make_accounting_samples import DAYS, HEADER, PROFILES, expected, render
from tests.warmup_support import load

DATA = Path(__file__).resolve().parent / "data"
VMTAS = {f"vmta-acme-{n}": f"127.0.12.{n}" for n in (41, 42, 43)}
IPS = [(f"127.0.12.{n}", "warming", "week_1", None) for n in (41, 42, 43)]


def test_sample_files_are_what_the_generator_makes() -> None:
    for name in PROFILES:
        assert (DATA / f"acct-{name}.csv").read_text() == render(name), f"regenerate acct-{name}.csv"


@pytest.mark.parametrize("name", list(PROFILES))
def test_parser_on_samples(name: str) -> None:
    ip = PROFILES[name][0]
    r = parse_accounting((DATA / f"acct-{name}.csv").read_bytes(), VMTAS, set(VMTAS.values()))
    assert r.malformed == 0 and r.unattributed == 0
    assert sorted(r.totals) == [(ip, d) for d in DAYS]
    want = expected(name)
    for counts in r.totals.values():
        assert {"sent": counts.sent, "delivered": counts.delivered, "bounced": counts.bounced,
                "complaints": counts.complaints} == want
    assert r.transient == 7 * PROFILES[name][5]  # reported, not stored


def test_remote_bounce_without_a_matching_delivery_is_unattributed() -> None:
    data = ",".join(HEADER) + "\n" + "rb,2026-11-01 10:00:00+0000" + "," * (len(HEADER) - 2) + "\n"
    r = parse_accounting(data.encode(), VMTAS)
    assert r.unattributed == 1 and r.unattributed_by_type == {"rb": 1} and not r.totals and r.malformed == 0


def _line(**fields: str) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([fields.get(c, "") for c in HEADER])
    return buf.getvalue()


def test_hostile_input_is_counted_never_fatal() -> None:
    good = _line(type="d", timeLogged="2026-11-02 01:00:00+0000", dlvSourceIp="127.0.12.41")
    huge = "d," + "x" * (MAX_RECORD_BYTES + 10) + "\n"
    unbalanced = '"' + "y" * 100 + "\n"  # an opening quote never closed: bounded, then resynchronised
    data = (",".join(HEADER) + "\n" + good + "garbage without commas\n" + "d,1,2\n" + huge
            + _line(type="zz", timeLogged="2026-11-02 01:00:00+0000")
            + _line(type="d", timeLogged="yesterday-ish", dlvSourceIp="127.0.12.41")
            + _line(type="b", timeLogged="Mon, 02 Nov 2026 03:00:00 +0000", vmta="vmta-acme-41")
            + _line(type="d", timeLogged="2026-11-02 01:00:00+0000", dlvSourceIp="203.0.113.9")  # not ours
            ).encode() + b"\xff\xfe,bad utf8\n" + b"\x00\x00\x00\n" + good.encode() + unbalanced.encode() * 3
    r = parse_accounting(data + (",".join(HEADER) + "\n" + good).encode() * 700, VMTAS, set(VMTAS.values()))
    assert r.malformed >= 7 and len(r.samples) <= 20
    assert any("longer than" in s for s in r.samples)
    assert any("not UTF-8" in s for s in r.samples)
    assert any("unknown record type 'zz'" in s for s in r.samples)
    assert any("fields, header has" in s for s in r.samples)
    assert any("unparsable timeLogged" in s for s in r.samples)
    assert r.unattributed == 1
    c = r.totals[("127.0.12.41", dt.date(2026, 11, 2))]
    # 2 good + 1 RFC 822 bounce before the unbalanced quotes; the 700 good lines after them are recovered
    assert c.sent >= 3 + 690 and c.bounced == 1


def test_missing_columns_and_no_header() -> None:
    r = parse_accounting(b"type,rcpt\nd,a@b.example\n", VMTAS)
    assert r.malformed == 1 and "header lacks column(s) timeLogged" in r.samples[0]
    r = parse_accounting(b"d,2026-11-01 00:00:00+0000\n", VMTAS)
    assert r.malformed == 1 and "before any header" in r.samples[0]
    r = parse_accounting(b"", VMTAS)
    assert r.records == 0 and r.malformed == 0
    r = parse_accounting(b"x" * (3 * MAX_RECORD_BYTES), VMTAS, final=False)  # endless line: bounded
    assert r.malformed == 1 and r.consumed == 3 * MAX_RECORD_BYTES


def test_unfinished_last_record_waits() -> None:
    head = ",".join(HEADER) + "\n" + _line(type="d", timeLogged="2026-11-02 01:00:00+0000", dlvSourceIp="127.0.12.41")
    partial = 'd,2026-11-02 02:00:00+0000,"multi\nline'
    r = parse_accounting((head + partial).encode(), VMTAS, final=False)
    assert r.consumed == len(head.encode()) and r.records == 1 and r.malformed == 0


def _stats(url: str, address: str) -> dict[dt.date, tuple[int, int, int, int]]:
    with session_scope(url) as s:
        ip = s.exec(select(SendingIp).where(SendingIp.address == address)).one()
        return {r.day: (r.sent, r.delivered, r.bounced, r.complaints)
                for r in s.exec(select(DailyStat).where(DailyStat.ip_id == ip.id))}


async def test_ingest_is_idempotent_and_follows_growth(db_url: str, tmp_path: Path) -> None:
    load(db_url, IPS)
    for name in PROFILES:
        shutil.copy(DATA / f"acct-{name}.csv", tmp_path / f"acct-{name}.csv")
    for name in PROFILES:
        rep = await ingest_local(tmp_path / f"acct-{name}.csv", db_url)
        assert rep.malformed == 0 and rep.records > 0
    want = expected("bouncing")
    assert _stats(db_url, "127.0.12.42")[DAYS[3]] == (want["sent"], want["delivered"], want["bounced"], 0)
    before = {ip: _stats(db_url, ip) for ip in ("127.0.12.41", "127.0.12.42", "127.0.12.43")}
    again = await ingest_local(tmp_path / "acct-bouncing.csv", db_url)
    assert again.records == 0
    assert {ip: _stats(db_url, ip) for ip in before} == before
    # The MTA appends a record, the last one unfinished: only the complete one counts, then the rest.
    f = tmp_path / "acct-complaints.csv"
    with f.open("a") as out:
        out.write(_line(type="f", timeLogged="2026-11-07 23:59:59+0000", dlvSourceIp="127.0.12.43"))
        out.write("f,2026-11-07 23:59:59+0000")
    grown = await ingest_local(f, db_url)
    assert grown.records == 1 and grown.by_type == {"f": 1}
    assert _stats(db_url, "127.0.12.43")[DAYS[6]][3] == expected("complaints")["complaints"] + 1
    with f.open("a") as out:
        out.write("," * (len(HEADER) - 2) + "\n")
    finished = await ingest_local(f, db_url)  # the finished line lacks dlvSourceIp: counted as unattributed
    assert (finished.records, finished.unattributed) == (1, 1)
    assert _stats(db_url, "127.0.12.43")[DAYS[6]][3] == expected("complaints")["complaints"] + 1
    # A different file at the same path (rotation) is read from its start.
    f.write_text(",".join(HEADER) + "\n" + _line(type="d", timeLogged="2026-11-08 00:00:01+0000",
                                                 dlvSourceIp="127.0.12.43"))
    rotated = await ingest_local(f, db_url)
    assert rotated.restarted and rotated.records == 1
    with session_scope(db_url) as s:
        rows = list(s.exec(select(AccountingFile)))
    assert len(rows) == 3 and all(r.source == "local" for r in rows)


def test_stats_cli(db_url: str, cli: CliRunner, tmp_path: Path) -> None:
    load(db_url, IPS)
    res = cli.invoke(stats_app, ["ingest", str(DATA / "acct-healthy.csv"), str(DATA / "acct-bouncing.csv")])
    assert res.exit_code == 0, res.output
    assert "acct-healthy.csv" in res.output and "acct-bouncing.csv" in res.output
    res = cli.invoke(stats_app, ["ingest", str(DATA / "acct-healthy.csv"), "--json"])
    assert json.loads(res.output)[0]["records"] == 0
    res = cli.invoke(stats_app, ["ingest", str(tmp_path / "missing.csv")])
    assert res.exit_code == 1 and "not a readable file" in res.output
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"type,timeLogged\n\xff\xff\nd,2026-11-01 00:00:00+0000\n")
    res = cli.invoke(stats_app, ["ingest", str(bad)])
    assert res.exit_code == 0 and "malformed" in res.output and "not UTF-8" in res.output

    # `show` counts back from today: shift the sample days so they are the last 7 days
    with session_scope(db_url) as s:
        for r in s.exec(select(DailyStat)):
            r.day = r.day + (dt.datetime.now(dt.UTC).date() - DAYS[-1])
            s.add(r)
    res = cli.invoke(stats_app, ["show", "127.0.12.42", "--json"])
    rows = json.loads(res.output)
    assert len(rows) == 7 and [r["bounced"] for r in rows] == [12] * 7 and rows[0]["opens"] is None
    res = cli.invoke(stats_app, ["show", "127.0.12.42", "--days", "3"])
    assert res.exit_code == 0 and "bounce rate 12.00%" in res.output
    res = cli.invoke(stats_app, ["show", "127.0.12.99"])
    assert res.exit_code == 1 and "not in the inventory" in res.output
    res = cli.invoke(stats_app, ["show", "nope"])
    assert res.exit_code == 1 and "is not an IP address" in res.output


async def test_sftp_ingest_workflow_against_real_sshd(temporal_time_skipping, sqlite_url: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.servers.sshd import start_sshd
    from workflows.accounting import AccountingIngestInput, AccountingIngestResult, AccountingIngestWorkflow

    with start_sshd(tmp_path / "sshd", address="127.0.12.5") as server:
        for key, value in server.settings_env().items():
            monkeypatch.setenv(key, value)
        acct = server.files_dir / "acct"
        acct.mkdir()
        monkeypatch.setenv("EMAIL_ENGINE_ACCOUNTING_DIR", str(acct))
        get_settings.cache_clear()
        text = _inventory_with_host(server.address, server.port, server.user)
        from activities.inventory import apply_inventory
        from models.inventory import parse

        apply_inventory(parse(text), actor="test", url=sqlite_url)
        for n, name in enumerate(PROFILES, 1):  # named as PowerMTA names the rendered <acct-file> (11.3.1)
            shutil.copy(DATA / f"acct-{name}.csv", acct / f"email-engine-acct-2026-11-0{n}-0000.csv")
        (acct / "not-accounting.txt").write_text("ignored")
        shutil.copy(DATA / "acct-healthy.csv", acct / "acct-2026-11-01-0000.csv")  # the operator's own acct-file
        env = temporal_time_skipping
        queue = f"acct-{uuid.uuid4().hex[:8]}"
        with ThreadPoolExecutor(max_workers=4) as pool:
            async with Worker(env.client, task_queue=queue, workflows=[AccountingIngestWorkflow],
                              activities=[list_accounting_hosts, ingest_host_accounting, send_alert],
                              activity_executor=pool):
                result = await env.client.execute_workflow(
                    AccountingIngestWorkflow.run, AccountingIngestInput(), id=f"acct-{queue}", task_queue=queue,
                    result_type=AccountingIngestResult)
                assert not result.failed and len(result.hosts) == 1
                files = result.hosts[0].files
                assert len(files) == 3 and all(f.malformed == 0 for f in files)
                want = expected("complaints")
                assert _stats(sqlite_url, "127.0.12.43")[DAYS[0]] == tuple(want.values())
                again = await env.client.execute_workflow(
                    AccountingIngestWorkflow.run, AccountingIngestInput(), id=f"acct2-{queue}", task_queue=queue,
                    result_type=AccountingIngestResult)
                assert sum(f.records for h in again.hosts for f in h.files) == 0
                assert _stats(sqlite_url, "127.0.12.43")[DAYS[0]] == tuple(want.values())
    get_settings.cache_clear()


def _inventory_with_host(address: str, port: int, user: str) -> str:
    from tests.warmup_support import inventory_text

    text = inventory_text(IPS, host_enabled=True)
    return text.replace('address = "127.0.12.1"', f'address = "{address}"\nssh_port = {port}\nssh_user = "{user}"', 1)


async def test_hourly_schedule_on_dev_server(temporal_local, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    from client.schedules import apply_schedules
    from models.schedules import ACCOUNTING_INGEST as SCHEDULE_ID
    from workflows.accounting import AccountingIngestWorkflow

    queue = f"acct-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("EMAIL_ENGINE_TASK_QUEUE", queue)
    get_settings.cache_clear()
    client = temporal_local.client
    [first] = await apply_schedules(client, get_settings(), only=[SCHEDULE_ID])
    assert first.action == "created" and first.when == "every 1 h"
    [again] = await apply_schedules(client, get_settings(), only=[SCHEDULE_ID])
    assert again.line() == f"schedule {SCHEDULE_ID}: unchanged (every 1 h)"
    handle = client.get_schedule_handle(SCHEDULE_ID)
    desc = await handle.describe()
    assert desc.schedule.spec.intervals[0].every == dt.timedelta(hours=1)
    with ThreadPoolExecutor(max_workers=2) as pool:
        async with Worker(client, task_queue=queue, workflows=[AccountingIngestWorkflow],
                          activities=[list_accounting_hosts, ingest_host_accounting, send_alert],
                          activity_executor=pool):
            await handle.trigger()
            for _ in range(100):
                desc = await handle.describe()
                if desc.info.recent_actions:
                    run = desc.info.recent_actions[-1].action
                    wf = client.get_workflow_handle(run.workflow_id, run_id=run.first_execution_run_id)
                    result = await asyncio.wait_for(wf.result(), 30)
                    break
                await asyncio.sleep(0.2)
            else:
                raise AssertionError("the schedule never started a run")
    assert result["hosts"] == [] and result["failed"] == {}  # the test inventory has no enabled host
    await handle.delete()
    get_settings.cache_clear()
