"""Generate the sample PowerMTA accounting files in tests/data/.

Run: .venv/bin/python -m tests.data.make_accounting_samples

Shape (PowerMTA v5 User's Guide §11.2, notes/mta.md §1.8): one CSV file per day-range as `<acct-file>`
writes it with `records d,b,t,f,rb` and all fields: RFC 4180, UTF-8, CRLF-free `\n` line ends, a header
row first whose columns are the union of the record types' fields (first column `type`), unused cells
empty, times as `YYYY-MM-DD HH:MM:SS+0000` (iso-times yes). As in real files:
- `d` and `t` records carry `dlvSourceIp` and `vmta`;
- `b` records have no `dlv*` data (empty `dlvSourceIp`), only `vmta`;
- `rb` records (asynchronous DSNs) carry neither: only `rcpt`/`envId` tie them to an earlier `d`;
- `f` records (FBL/ARF complaints) carry `dlvSourceIp` (the IP that sent the reported message), no `vmta`;
- `dsnDiag` texts contain commas and double quotes, so quoting is exercised.

Files (7 days, 2026-11-01 .. 2026-11-07, IPs in the tests' range 127.0.12.0/24, VMTAs vmta-acme-N):
- acct-healthy.csv     127.0.12.41: 50/day, 1 bounce/day (2%), 1 transient/day, no complaints
- acct-bouncing.csv    127.0.12.42: 100/day, 10 sync + 2 remote bounces/day (12%)
- acct-complaints.csv  127.0.12.43: 200/day, 2 bounces/day (1%), 1 complaint/day (0.5% of delivered)
Deterministic (fixed seed): regenerating gives identical files. EXPECTED holds the per-IP-per-day figures.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
from collections.abc import Sequence
from pathlib import Path

HEADER = [
    "type", "timeLogged", "timeQueued", "orig", "rcpt", "orcpt", "dsnAction", "dsnStatus", "dsnDiag", "dsnMta",
    "bounceCat", "srcType", "srcMta", "dlvType", "dlvSourceIp", "dlvDestinationIp", "dlvSize", "vmta", "jobId",
    "envId", "queue", "vmtaPool", "repSourceIp", "feedbackType", "format", "userAgent", "reportingMta",
    "reportedDomain", "dsnReportingMta", "header_From",
]
DAYS = [dt.date(2026, 11, 1) + dt.timedelta(days=i) for i in range(7)]
#: name -> (ip, delivered/day, sync bounces/day, remote bounces/day, complaints/day, transients/day)
PROFILES = {
    "healthy": ("127.0.12.41", 49, 1, 0, 0, 1),
    "bouncing": ("127.0.12.42", 90, 10, 2, 0, 3),
    "complaints": ("127.0.12.43", 198, 2, 0, 1, 0),
}


def expected(name: str) -> dict[str, int]:
    """Per-day figures the ingest must store for the profile's IP (sent, delivered, bounced, complaints)."""
    _, d, b, rb, f, _ = PROFILES[name]
    return {"sent": d + b, "delivered": d, "bounced": b + rb, "complaints": f}


def _stamp(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S+0000")


def render(name: str, seed: int = 4, days: Sequence[dt.date] = DAYS,
           profile: tuple[str, int, int, int, int, int] | None = None) -> str:
    """The file of profile `name` (or of `profile`, same shape as PROFILES' values) over `days`."""
    ip, n_d, n_b, n_rb, n_f, n_t = profile or PROFILES[name]
    n = ip.rsplit(".", 1)[1]
    vmta, domain = f"vmta-acme-{n}", f"warm{n}.example"
    rnd = random.Random(f"{seed}-{name}")
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(HEADER)
    for day in days:
        events: list[tuple[dt.datetime, dict[str, str]]] = []
        delivered: list[tuple[str, str]] = []
        for i in range(n_d + n_b + n_t):
            t = dt.datetime.combine(day, dt.time(0), tzinfo=dt.UTC) + dt.timedelta(seconds=rnd.randrange(1, 80_000))
            rcpt = f"user{rnd.randrange(10**6)}@mx{rnd.randrange(40)}.example"
            env = f"{day:%m%d}-{i}"
            base = {"timeLogged": _stamp(t), "timeQueued": _stamp(t - dt.timedelta(seconds=rnd.randrange(1, 300))),
                    "orig": f"bounce@{domain}", "rcpt": rcpt, "srcType": "smtp", "srcMta": "mailwizz",
                    "vmta": vmta, "jobId": f"campaign-{day:%d}", "envId": env, "queue": rcpt.split("@")[1],
                    "vmtaPool": "acme-pool", "header_From": f'"Acme News" <news@{domain}>'}
            if i < n_d:
                rec = {**base, "type": "d", "dsnAction": "relayed", "dsnStatus": "2.0.0 (success)",
                       "dsnDiag": "smtp;250 2.0.0 OK, queued as " + env, "dsnMta": base["queue"],
                       "dlvType": "smtp", "dlvSourceIp": ip, "dlvDestinationIp": "192.0.2.25",
                       "dlvSize": str(rnd.randrange(8_000, 60_000))}
                delivered.append((rcpt, env))
            elif i < n_d + n_b:
                rec = {**base, "type": "b", "dsnAction": "failed", "dsnStatus": "5.1.1 (bad destination mailbox)",
                       "dsnDiag": 'smtp;550 5.1.1 <' + rcpt + '>: Recipient address rejected: "User unknown", sorry',
                       "dsnMta": base["queue"], "bounceCat": "bad-mailbox"}
            else:
                rec = {**base, "type": "t", "dsnAction": "delayed", "dsnStatus": "4.7.0 (temporary failure)",
                       "dsnDiag": "smtp;421 4.7.0 Try again later, closing connection", "dsnMta": base["queue"],
                       "dlvType": "smtp", "dlvSourceIp": ip, "dlvDestinationIp": "192.0.2.25", "bounceCat": "other"}
            events.append((t, rec))
        for rcpt, env in delivered[:n_rb]:
            t = dt.datetime.combine(day, dt.time(23, 0), tzinfo=dt.UTC) + dt.timedelta(seconds=rnd.randrange(3000))
            events.append((t, {"type": "rb", "timeLogged": _stamp(t), "orig": f"bounce@{domain}", "rcpt": rcpt,
                               "dsnAction": "failed", "dsnStatus": "5.2.2 (mailbox full)",
                               "dsnDiag": "smtp;552 5.2.2 Mailbox full", "dsnMta": rcpt.split("@")[1],
                               "dsnReportingMta": "dns;" + rcpt.split("@")[1], "bounceCat": "quota-issues",
                               "srcType": "smtp", "envId": env, "format": "dsn"}))
        for rcpt, env in delivered[n_rb:n_rb + n_f]:
            t = dt.datetime.combine(day, dt.time(23, 50), tzinfo=dt.UTC) + dt.timedelta(seconds=rnd.randrange(500))
            events.append((t, {"type": "f", "timeLogged": _stamp(t), "repSourceIp": "198.51.100.7",
                               "feedbackType": "abuse", "format": "arf", "userAgent": "ExampleFBL/1.0",
                               "envId": env, "orig": f"bounce@{domain}", "rcpt": rcpt,
                               "reportingMta": "dns;fbl.example", "dlvSourceIp": ip, "reportedDomain": domain,
                               "header_From": f'"Acme News" <news@{domain}>'}))
        for _, rec in sorted(events, key=lambda e: e[0]):
            w.writerow([rec.get(col, "") for col in HEADER])
    return out.getvalue()


def main() -> None:
    here = Path(__file__).resolve().parent
    for name in PROFILES:
        (here / f"acct-{name}.csv").write_text(render(name), encoding="utf-8")
        print(f"wrote {here / f'acct-{name}.csv'}")


if __name__ == "__main__":
    main()
