"""Activity timeouts and retries live in workflows/activity_options.py, one named policy per need, so a
budget is changed in one place and read beside the others. The saga and the DNS validation keep none of
their own. That their values did not change is checked on the histories they record
(tests/test_failover_incidents.py SAGA_OPTIONS, tests/test_dns_workflow.py DNS_OPTIONS)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDED = ("workflows/failover.py", "workflows/dns_validation.py")


def _callee(node: ast.Call) -> str:
    f = node.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""


def test_the_saga_and_the_dns_validation_build_no_timeouts_or_retries_of_their_own() -> None:
    found = []
    for path in FOLDED:
        tree = ast.parse((ROOT / path).read_text())
        timers = {id(n) for call in ast.walk(tree) if isinstance(call, ast.Call) and _callee(call) == "wait_condition"
                  for n in ast.walk(call)}  # a timer's duration is not an activity option
        found += [f"{path}:{node.lineno}: {_callee(node)}(...)" for node in ast.walk(tree)
                  if isinstance(node, ast.Call) and _callee(node) in ("RetryPolicy", "timedelta")
                  and id(node) not in timers]
    assert found == []
