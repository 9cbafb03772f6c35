"""Pure rules for alerts: HTML formatting (escaped), ID lists, what a ChatOps button may do."""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import json
import re
from typing import Any, Protocol

from models.warmup_contracts import PauseRequest, ResumeRequest

#: Telegram's limit for one message's text (after entity parsing).
MAX_MESSAGE = 4096

SEVERITY_ICON = {"critical": "\U0001f6a8", "warning": "\u26a0\ufe0f", "info": "\u2139\ufe0f"}

#: What a button may ask of which workflow: (workflow id prefix, kind, names).
ALLOWED_ACTIONS: tuple[tuple[str, str, frozenset[str]], ...] = (
    ("failover/", "update", frozenset({"approve", "deny"})),
    ("warmup/", "signal", frozenset({"pause", "resume"})),
    ("guard/", "update", frozenset({"approve", "deny", "undo"})),
)
_WORKFLOW_ID = re.compile(r"^[a-z]+/[a-z0-9][a-z0-9-]{0,62}/[0-9A-Fa-f.:]{2,45}$")


class AlertLike(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def body(self) -> str: ...
    @property
    def severity(self) -> str: ...


def format_html(alert: AlertLike) -> str:
    """Telegram HTML (parse_mode=HTML): every piece of alert text is escaped; at most 4096 chars."""
    icon = SEVERITY_ICON.get(alert.severity, SEVERITY_ICON["info"])
    head = f"{icon} <b>{html.escape(alert.title)}</b>"
    foot = f"<code>{html.escape(alert.key)}</code>"
    body = html.escape(alert.body)
    room = MAX_MESSAGE - len(head) - len(foot) - 4
    if len(body) > room:
        body = body[: max(room - 1, 0)]
        # never cut an entity such as &amp; in half
        amp = body.rfind("&")
        if amp != -1 and ";" not in body[amp:]:
            body = body[:amp]
        body += "\u2026"
    return f"{head}\n{body}\n\n{foot}" if body else f"{head}\n\n{foot}"


def parse_id_list(text: str, setting: str) -> frozenset[int]:
    """`"-100123, 42"` -> {-100123, 42}; ValueError names the setting and the bad entry."""
    out = set()
    for raw in (p.strip() for p in text.split(",")):
        if not raw:
            continue
        try:
            out.add(int(raw))
        except ValueError:
            raise ValueError(f"{setting}: {raw!r} is not an integer Telegram ID") from None
    return frozenset(out)


def action_allowed(workflow_id: str, kind: str, name: str) -> bool:
    """Only the ChatOps actions the engine defines: failover approve/deny, warmup pause/resume, guard
    step approve/deny/undo."""
    if not _WORKFLOW_ID.match(workflow_id):
        return False
    return any(workflow_id.startswith(prefix) and kind == k and name in names
               for prefix, k, names in ALLOWED_ACTIONS)


#: How long a warmup button (pause/resume) stays good: a gate pause lasts PAUSE_DAYS (7), plus a day.
WARMUP_BUTTON_TTL = dt.timedelta(days=8)


def binds_run(workflow_id: str) -> bool:
    """Whether a button is bound to the run that sent it. A failover saga or a guard step is one
    incident per run (its id is reused per IP); a warmup continues as new, so its buttons name their
    pause instead."""
    return workflow_id.startswith(("failover/", "guard/"))


def button_ttl(workflow_id: str, approval_timeout_hours: float) -> dt.timedelta:
    """How long a button may act: a failover's approval window, a warmup's WARMUP_BUTTON_TTL."""
    if workflow_id.startswith("failover/"):
        return dt.timedelta(hours=approval_timeout_hours)
    return WARMUP_BUTTON_TTL


def build_args(kind: str, name: str, arg: str | None, actor: str) -> list[Any]:
    """The arguments a button press sends with its signal/update (`{actor}`: who pressed it).

    - no `arg`: an update gets a reason string ("approve via Telegram by <actor>"); a signal gets
      {"reason": ..., "actor": ...}: the warmup's real PauseRequest/ResumeRequest for "pause"/"resume";
    - `arg` holding a JSON object: that object, `{actor}` substituted in its string values (for
      "pause"/"resume" signals: the request dataclass built from the object's known fields; for an
      update, a "reason" without `{actor}` gets "(by <actor>)" appended). This is how a failover
      button carries its incident: `{"reason": "approved from the alert", "incident": "<run id>"}`;
    - any other `arg`: that string, with `{actor}` substituted, or "(by <actor>)" appended.
    """
    reason = f"{name} via Telegram by {actor}"
    if arg is None:
        return [reason] if kind == "update" else [_signal_payload(name, {"reason": reason, "actor": actor})]
    if arg.lstrip().startswith("{"):
        try:
            obj = json.loads(arg)
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict):
            if kind == "update" and isinstance(obj.get("reason"), str) and "{actor}" not in obj["reason"]:
                obj["reason"] = f"{obj['reason']} (by {actor})"
            obj = {k: v.replace("{actor}", actor) if isinstance(v, str) else v for k, v in obj.items()}
            return [_signal_payload(name, obj) if kind == "signal" else obj]
    return [arg.replace("{actor}", actor) if "{actor}" in arg else f"{arg} (by {actor})"]


_SIGNAL_PAYLOADS: dict[str, type[PauseRequest] | type[ResumeRequest]] = {"pause": PauseRequest,
                                                                          "resume": ResumeRequest}


def _signal_payload(name: str, obj: dict[str, Any]) -> Any:
    """The warmup signal's request dataclass (its known fields of `obj`); other signals: `obj` as is."""
    cls = _SIGNAL_PAYLOADS.get(name)
    if cls is None:
        return obj
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in obj.items() if k in known})
