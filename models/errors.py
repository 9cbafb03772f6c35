"""Typed refusals an operator sees as they are (the CLI prints `str(err)`).

Defined below every layer because the inventory helpers (activities/) raise some of them and the
client (client/errors.py re-exports them all) raises the others.
"""

from __future__ import annotations


class EngineError(Exception):
    """A precise refusal; the message is what the operator reads."""


class Refused(EngineError, ValueError):
    """Bad input, or a state that does not allow the action (nothing was written)."""


class WarmupError(Refused):
    """A warmup refusal: bad address, status that cannot warm, DNS gate failed, unknown IP."""


class UnknownIp(WarmupError, LookupError):
    """The IP is not in the inventory (or not of the given tenant)."""


class NotRunning(EngineError):
    """No running workflow answers for this id."""


class TemporalUnreachable(EngineError, RuntimeError):
    """The Temporal frontend could not be reached with the engine's settings."""
