"""Start-up time of the `email-engine` command against a bare interpreter, side by side.

    .venv/bin/python -m bench.cli_startup [--reps 15]

Each case is a fresh process, timed from spawn to exit: `email-engine --help` and several
`email-engine COMMAND --help`, plus two baselines run the same way in the same rounds: `python -c pass`
(the floor of any Python command) and a bare typer app's `--help` and `group one --help` (what typer
and rich cost by themselves when they print a help page; a command's page also loads pydantic, which
typer uses to convert options). Rounds interleave the cases, so a busy machine slows them
alike; the median of the rounds is printed with the ratio to `python -c pass` and the time above it.
The code measured is the one on PYTHONPATH (the checkout the bench is started from).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

#: The helps an operator asks for most, and the commands with the heaviest libraries (bot: Telegram,
#: dev/worker: the Temporal worker, mta deploy: SSH, scan/dns: dnspython).
COMMANDS: list[list[str]] = [
    ["--help"],
    ["warmup", "--help"],
    ["warmup", "status", "--help"],
    ["failover", "approve", "--help"],
    ["status", "--help"],
    ["mta", "deploy", "--help"],
    ["scan", "blocklists", "--help"],
    ["bot", "--help"],
    ["dev", "--help"],
    ["worker", "--help"],
]

BARE_TYPER = """
import typer
app = typer.Typer(help="A bare typer app.", no_args_is_help=True)
sub = typer.Typer(help="A group.")
app.add_typer(sub, name="group")
@sub.command()
def one(tenant: str = typer.Option(None, "--tenant", help="A tenant.")) -> None:
    "A command."
@app.command()
def two() -> None:
    "Another command."
app()
"""


def _engine() -> list[str]:
    """The console script next to this interpreter, else the same entry point through `-c`."""
    script = Path(sys.executable).with_name("email-engine")
    if script.exists():
        return [str(script)]
    found = shutil.which("email-engine")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from cli.main import main; sys.exit(main())"]


def _time(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.decode()[-500:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15, help="Rounds (each runs every case once).")
    args = parser.parse_args()
    env = {**os.environ, "COLUMNS": "100"}
    engine = _engine()
    cases: dict[str, list[str]] = {
        "python -c pass (baseline)": [sys.executable, "-c", "pass"],
        "bare typer app --help": [sys.executable, "-c", BARE_TYPER, "--help"],
        "bare typer app group one --help": [sys.executable, "-c", BARE_TYPER, "group", "one", "--help"],
    }
    cases.update({"email-engine " + " ".join(c): [*engine, *c] for c in COMMANDS})
    for argv in cases.values():  # warm the page cache and the .pyc files; not counted
        _time(argv, env)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.reps):
        for name, argv in cases.items():
            times[name].append(_time(argv, env))
    base = statistics.median(times["python -c pass (baseline)"])
    width = max(len(n) for n in cases)
    print(f"{args.reps} rounds, median wall time per process; PYTHONPATH={os.environ.get('PYTHONPATH', '')!r}")
    print(f"{'case':<{width}}  {'median':>8}  {'min':>8}  {'max':>8}  {'x baseline':>10}  {'above':>8}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:<{width}}  {med:7.3f}s  {min(ts):7.3f}s  {max(ts):7.3f}s  {med / base:9.1f}x  "
              f"{med - base:7.3f}s")


if __name__ == "__main__":
    main()
