"""Accounting files in the rendered format (header = `type` + the union of RECORD_FIELDS, unused cells
empty, RFC 4180), for the delivery-index tests and bench/accounting_ingest.py."""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
from collections.abc import Sequence

from models.accounting import RECORD_FIELDS

HEADER = ["type", *dict.fromkeys(c for cols in RECORD_FIELDS.values() for c in cols)]


def stamp(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S+0000")


def csv_text(rows: Sequence[dict[str, str]], header: bool = True) -> str:
    """Rows as PowerMTA writes them; a field a record type does not carry is refused (a test mistake)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    if header:
        w.writerow(HEADER)
    for row in rows:
        extra = set(row) - set(RECORD_FIELDS[row["type"]]) - {"type"}
        assert not extra, f"{row['type']} records have no {extra}"
        w.writerow([row.get(c, "") for c in HEADER])
    return buf.getvalue()


def delivery(at: dt.datetime, ip: str, rcpt: str, env: str = "", orig: str = "bounce@mail.example") -> dict[str, str]:
    return {"type": "d", "timeLogged": stamp(at), "orig": orig, "rcpt": rcpt, "envId": env, "dlvSourceIp": ip}


def remote_bounce(at: dt.datetime, rcpt: str, env: str = "", orig: str = "bounce@mail.example") -> dict[str, str]:
    return {"type": "rb", "timeLogged": stamp(at), "orig": orig, "rcpt": rcpt, "envId": env}


def traffic(n: int, ips: Sequence[str], start: dt.datetime, seed: int = 7) -> tuple[list[dict[str, str]],
                                                                                     list[dict[str, str]]]:
    """(hour 1, hour 2): n records in all, like a busy MTA's hourly files. Hour 1: deliveries (90%) and
    synchronous bounces. Hour 2: deliveries, remote bounces of 2% of hour 1's deliveries (so they must be
    looked up in the index), a few complaints without a Source-IP, and remote bounces of unknown mail."""
    rnd = random.Random(seed)
    first, second = [], []
    half = n // 2
    for i in range(half):
        at = start + dt.timedelta(seconds=i * 3600 // half)
        ip = ips[i % len(ips)]
        if rnd.random() < 0.9:
            first.append(delivery(at, ip, f"user{i}@example.net", env=f"job1-{i}"))
        else:
            first.append({"type": "b", "timeLogged": stamp(at), "vmta": f"vmta-acme-{ip.rsplit('.', 1)[1]}"})
    delivered = [r for r in first if r["type"] == "d"]
    later = start + dt.timedelta(hours=1)
    for i in range(n - half):
        at = later + dt.timedelta(seconds=i * 3600 // (n - half))
        roll = rnd.random()
        if roll < 0.02:
            d = rnd.choice(delivered)
            second.append(remote_bounce(at, d["rcpt"], env=d["envId"]))
        elif roll < 0.025:
            d = rnd.choice(delivered)
            second.append({"type": "f", "timeLogged": stamp(at), "rcpt": d["rcpt"], "envId": d["envId"],
                           "orig": d["orig"]})
        elif roll < 0.03:
            second.append(remote_bounce(at, f"stranger{i}@example.org"))
        else:
            second.append(delivery(at, ips[i % len(ips)], f"user2-{i}@example.net", env=f"job2-{i}"))
    return first, second
