"""Print each warming IP's progress through the six-week warmup as a table.

    python examples/warmup_progress.py [--tenant client-1]

Rows come from the inventory's warming IPs (EMAIL_ENGINE_DATABASE_URL), each with its workflow's
`status` query (Temporal from EMAIL_ENGINE_TEMPORAL_ADDRESS): phase, day in phase, today's quota,
the last safety gate, and whether it is paused. Progress counts the reference schedule's minimum
days (7 per phase): 100% is the day the IP may become active.
"""

from __future__ import annotations

import argparse
import sys

from rich.console import Console
from rich.table import Table

from client.connection import connect, run
from client.errors import EngineError
from client.warmups import warmup_statuses
from models.schedule import MIN_DAYS_PER_PHASE, PHASE_ORDER
from models.warmup_contracts import StartPlan, WarmupStatus


def progress(phase: str | None, day_in_phase: int) -> float:
    """Share of the minimum warmup done (phases before this one, plus days into it), 0..1."""
    if phase is None:  # active
        return 1.0
    index = [p.value for p in PHASE_ORDER].index(phase)
    return min(1.0, (index + min(day_in_phase, MIN_DAYS_PER_PHASE) / MIN_DAYS_PER_PHASE) / len(PHASE_ORDER))


def table(rows: list[tuple[StartPlan, WarmupStatus | None]]) -> Table:
    out = Table(title="Warmup progress")
    for col in ("tenant", "ip", "phase", "day", "quota/day", "progress", "last gate", "paused"):
        out.add_column(col, justify="right" if col in ("day", "quota/day", "progress") else "left", no_wrap=True)
    for plan, st in rows:
        if st is None:
            out.add_row(plan.tenant, plan.address, plan.phase, "-", f"{plan.quota:,}", "-", "-", "no workflow")
            continue
        share = progress(st.phase, st.day_in_phase)
        bar = "#" * round(share * 12) + "." * (12 - round(share * 12))
        gate = "-" if st.last_gate is None else ("pass" if st.last_gate.passed else "fail")
        paused = f"yes: {st.pause_reason}" if st.paused else "no"
        out.add_row(st.tenant, st.address, st.phase or st.status, str(st.day_in_phase), f"{st.quota:,}",
                    f"{bar} {share:4.0%}", gate, paused)
    return out


async def collect(tenant: str | None) -> list[tuple[StartPlan, WarmupStatus | None]]:
    return await warmup_statuses(await connect(), tenant)


def main() -> None:
    parser = argparse.ArgumentParser(description="Print each warming IP's warmup progress as a table.")
    parser.add_argument("--tenant", default=None, help="Only this tenant's IPs.")
    args = parser.parse_args()
    try:
        rows = run(collect(args.tenant))
    except EngineError as err:  # unknown tenant, Temporal unreachable
        sys.exit(f"error: {err}")
    Console(width=120).print(table(rows))
    print(f"{len(rows)} warming IP(s), {sum(1 for _, st in rows if st is None)} without a workflow")


if __name__ == "__main__":
    main()
