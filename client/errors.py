"""The client's typed errors; their messages are what operators read (the CLI prints them as is).

Defined in models/errors.py (the inventory helpers raise some of them); this is where client code
and users' scripts import them from.
"""

from models.errors import EngineError, NotRunning, Refused, TemporalUnreachable, UnknownIp, WarmupError

__all__ = ["EngineError", "NotRunning", "Refused", "TemporalUnreachable", "UnknownIp", "WarmupError"]
