"""From the rendered PowerMTA config to the warmup gate's input: the test reads the `<acct-file>` block
that was rendered, writes an accounting file with exactly the record types and fields it asks for
(User's Guide 11.2.9: header row = `type` + the union of the configured fields, unused cells empty),
names it as PowerMTA would (11.3.1), feeds it to the ingest, and reads the gate's 7-day window."""

from __future__ import annotations

import csv
import datetime as dt
import fnmatch
import io
import posixpath
from pathlib import Path

import pytest

from activities.accounting import ingest_local
from activities.inventory import apply_inventory
from activities.mta.base import backend_for
from activities.warmup import WarmupContextRequest, load_context
from models.accounting import RECORD_FIELDS
from models.enums import MtaBackend
from models.inventory import parse
from models.mta_render.from_inventory import snapshot_from_inventory
from models.mta_render.powermta import AccountingTarget
from models.names import NameError_
from models.settings import get_settings
from tests.conftest import REFERENCE_INVENTORY
from tests.mta_render_support import parse_pmta

IP, VMTA = "45.123.10.41", "vmta-client1-41"  # client-1, warming week_1 (50/day)
TODAY = dt.date(2026, 11, 28)


def rendered_acct_block() -> tuple[str, list[str], dict[str, list[str]]]:
    """(path, record types, fields per type) as the rendered config asks PowerMTA to write them."""
    snap = snapshot_from_inventory(parse(REFERENCE_INVENTORY.read_text())).for_host("pmta-1")
    files = dict(backend_for(MtaBackend.POWERMTA).render(snap).files)
    path, records, fields = "", [], {}
    for ln in parse_pmta(files):
        if ln.kind == "open" and ln.name == "acct-file":
            path = ln.value
        elif ln.scope == "acct-file" and ln.name == "records":
            records = ln.value.split(",")
        elif ln.scope == "acct-file" and ln.name == "record-fields":
            kind, cols = ln.value.split(" ", 1)
            fields[kind] = cols.split(",")
    return path, records, fields


def write_file(records: list[str], fields: dict[str, list[str]], rows: list[dict[str, str]]) -> str:
    header = ["type"]
    for kind in records:
        header += [c for c in fields[kind] if c not in header]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")  # RFC 4180 (11.2.9)
    w.writerow(header)
    for row in rows:
        asked = set(fields[row["type"]])
        extra = set(row) - asked - {"type"}
        assert not extra, f"{row['type']} record given fields the config does not ask for: {extra}"
        w.writerow([row.get(c, "") if c == "type" or c in asked else "" for c in header])
    return buf.getvalue()


def week_of_records() -> tuple[list[dict[str, str]], dict[str, int]]:
    """7 days before TODAY: 48 delivered + 2 bounced a day, one remote bounce of a delivered message on
    day 3, one FBL complaint on day 5."""
    rows: list[dict[str, str]] = []
    for n in range(7):
        day = TODAY - dt.timedelta(days=7 - n)
        at = f"{day.isoformat()} 10:{n:02}:00+0000"
        for i in range(48):
            rows.append({"type": "d", "timeLogged": at, "rcpt": f"user{n}-{i}@gmail.com", "envId": f"job{n}-{i}",
                         "dlvSourceIp": IP, "vmta": VMTA})
        rows += [{"type": "b", "timeLogged": at, "vmta": VMTA}] * 2
        if n == 3:
            rows.append({"type": "rb", "timeLogged": f"{day.isoformat()} 18:00:00+0000", "rcpt": "user3-7@gmail.com",
                         "envId": "job3-7"})
        if n == 5:  # ARF Source-IP names our IP; dlvSourceIp may be the reporting side's
            rows.append({"type": "f", "timeLogged": f"{day.isoformat()} 20:00:00+0000", "arf_Source-IP": IP,
                         "dlvSourceIp": "203.0.113.7"})
            rows.append({"type": "f", "timeLogged": f"{day.isoformat()} 21:00:00+0000", "dlvSourceIp": IP})
    return rows, {"sent": 7 * 50, "delivered": 7 * 48, "bounced": 7 * 2 + 1, "complaints": 2}


def test_rendered_accounting_asks_for_exactly_what_the_ingest_parses() -> None:
    path, records, fields = rendered_acct_block()
    settings = get_settings()
    assert records == list(RECORD_FIELDS) and "t" not in records
    assert {k: tuple(v) for k, v in fields.items()} == RECORD_FIELDS
    assert posixpath.dirname(path) == settings.accounting_dir
    stem = posixpath.basename(path).removesuffix(".csv")
    # PowerMTA adds the date to the name (11.3.1); the ingest must pick those files up, and only those
    assert fnmatch.fnmatch(f"{stem}-2026-11-28-0000.csv", settings.accounting_glob)
    assert fnmatch.fnmatch(f"{stem}-2026-11-28-0001.csv", settings.accounting_glob)
    assert not fnmatch.fnmatch("acct-2026-11-28-0000.csv", settings.accounting_glob)  # the operator's own
    with pytest.raises(NameError_, match=r"is not NAME-\*\.csv"):
        AccountingTarget("/var/log/pmta", "*.csv").path()
    with pytest.raises(NameError_, match="not a safe absolute path"):
        AccountingTarget("var/log\n<source 0/0>", "acct-*.csv").path()
    assert AccountingTarget("/data/acct/", "pmta-acct-*.csv").path() == "/data/acct/pmta-acct.csv"


async def test_rendered_format_reaches_the_warmup_gate(db_url: str, tmp_path: Path) -> None:
    apply_inventory(parse(REFERENCE_INVENTORY.read_text()), actor="test", url=db_url)
    path, records, fields = rendered_acct_block()
    rows, want = week_of_records()
    name = posixpath.basename(path).removesuffix(".csv") + f"-{TODAY.isoformat()}-0000.csv"
    assert fnmatch.fnmatch(name, get_settings().accounting_glob)
    f = tmp_path / name
    f.write_text(write_file(records, fields, rows))
    report = await ingest_local(f, url=db_url)
    assert report.malformed == 0 and report.unattributed == 0
    assert report.by_type == {"d": 7 * 48, "b": 14, "rb": 1, "f": 2}
    ctx = load_context(WarmupContextRequest(address=IP, today=TODAY.isoformat()), url=db_url)
    got = {"sent": ctx.stats.sent, "delivered": ctx.stats.delivered, "bounced": ctx.stats.bounced,
           "complaints": ctx.stats.complaints}
    assert got == want
    assert (ctx.window_from, ctx.window_to) == ((TODAY - dt.timedelta(days=7)).isoformat(),
                                                 (TODAY - dt.timedelta(days=1)).isoformat())
    again = await ingest_local(f, url=db_url)  # hourly re-run: nothing counted twice
    assert again.records == 0
    ctx2 = load_context(WarmupContextRequest(address=IP, today=TODAY.isoformat()), url=db_url)
    assert ctx2.stats == ctx.stats
