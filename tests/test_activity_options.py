"""Activity timeouts and retries live in workflows/activity_options.py, one named policy per need, so a
budget is changed in one place and read beside the others. No workflow module keeps any of its own. That
the saga's and the DNS validation's values did not change is checked on the histories they record
(tests/test_failover_incidents.py SAGA_OPTIONS, tests/test_dns_workflow.py DNS_OPTIONS)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OPTIONS = "workflows/activity_options.py"
WORKFLOWS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "workflows").glob("*.py") if p.name != "__init__.py"
                   and str(p.relative_to(ROOT)) != OPTIONS)
#: The keyword arguments of execute_activity / start_activity that are activity options.
OPTION_KEYWORDS = {"start_to_close_timeout", "schedule_to_close_timeout", "schedule_to_start_timeout",
                   "heartbeat_timeout", "retry_policy"}
TIMERS = ("wait_condition", "sleep")  # a timer's duration is not an activity option


def _callee(node: ast.Call) -> str:
    f = node.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""


def _is_opt(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "opt"


def _params_from_opt(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    """Parameters whose default is a policy of activity_options (the saga's `budget=opt.DB_...`)."""
    a = fn.args
    positional = [*a.posonlyargs, *a.args]
    pairs = [*zip(positional[len(positional) - len(a.defaults):], a.defaults, strict=True),
             *zip(a.kwonlyargs, a.kw_defaults, strict=True)]
    return {arg.arg for arg, default in pairs if _is_opt(default)}


def own_options(source: str) -> list[str]:
    """What a workflow module builds or names of its own for an activity's options (empty: none)."""
    tree = ast.parse(source)
    exempt = {id(n) for node in ast.walk(tree) for n in ast.walk(node)
              if (isinstance(node, ast.Call) and _callee(node) in TIMERS)
              or isinstance(node, ast.BinOp)}  # a timer, or date arithmetic (now + timedelta(days=...))
    found = [(node.lineno, f"{_callee(node)}(...)") for node in ast.walk(tree)
             if isinstance(node, ast.Call) and (_callee(node) in ("RetryPolicy", "retry")
                                                or (_callee(node) == "timedelta" and id(node) not in exempt))]
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        params = _params_from_opt(fn)
        found += [(kw.value.lineno, f"{kw.arg}={ast.unparse(kw.value)}") for call in ast.walk(fn)
                  if isinstance(call, ast.Call) for kw in call.keywords if kw.arg in OPTION_KEYWORDS
                  and not _is_opt(kw.value) and not (isinstance(kw.value, ast.Name) and kw.value.id in params)]
    return [f"{line}: {what}" for line, what in sorted(set(found))]


def test_every_workflow_module_is_checked() -> None:
    assert {"workflows/failover.py", "workflows/dns_validation.py", "workflows/blocklist_scan.py",
            "workflows/webhooks.py"} <= set(WORKFLOWS)


def test_no_workflow_builds_timeouts_or_retries_of_its_own() -> None:
    found = {path: own for path in WORKFLOWS if (own := own_options((ROOT / path).read_text()))}
    assert found == {}


def test_the_check_finds_options_of_a_workflows_own() -> None:
    """Each way a module kept its own options before they were folded into activity_options."""
    own = own_options('''
BUDGET = timedelta(hours=1)
RETRY = RetryPolicy(maximum_interval=timedelta(seconds=30))
ALIAS = opt.DB_RETRY
async def run(now, budget=opt.DB_SCHEDULE_TO_CLOSE, other=BUDGET):
    await workflow.wait_condition(lambda: True, timeout=timedelta(seconds=5))
    until = now + timedelta(days=2)
    await workflow.execute_activity("a", start_to_close_timeout=opt.DB_START_TO_CLOSE, schedule_to_close_timeout=budget,
                                    heartbeat_timeout=opt.HEARTBEAT, retry_policy=opt.retry("X", maximum=60.0))
    await workflow.execute_activity("b", schedule_to_close_timeout=BUDGET, retry_policy=ALIAS,
                                    start_to_close_timeout=timedelta(seconds=30), heartbeat_timeout=other)
''')
    assert own == ["2: timedelta(...)", "3: RetryPolicy(...)", "3: timedelta(...)", "9: retry(...)",
                   "9: retry_policy=opt.retry('X', maximum=60.0)", "10: retry_policy=ALIAS",
                   "10: schedule_to_close_timeout=BUDGET", "11: heartbeat_timeout=other",
                   "11: start_to_close_timeout=timedelta(seconds=30)", "11: timedelta(...)"]
