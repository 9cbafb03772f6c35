"""Sending an operator's answer (an update) to a running workflow, with the client's typed errors: the
failover saga's and the active guard's approve/deny/undo read the same way to an operator."""

from __future__ import annotations

from typing import Any

from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from models.errors import EngineError, NotRunning, Refused


async def send_update(handle: WorkflowHandle[Any, Any], update: str, arg: object, what: str) -> str:
    """`update` with `arg` on `handle`, its string result. Refused: the workflow's validator or handler
    said no (its message); NotRunning: no running `what` (e.g. "failover") with that id; EngineError: any
    other server error."""
    try:
        result: str = await handle.execute_update(update, arg, result_type=str)
        return result
    except WorkflowUpdateFailedError as exc:
        raise Refused(f"{handle.id}: {getattr(exc.cause, 'message', None) or exc.cause or exc}") from None
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise NotRunning(f"no running {what} {handle.id}") from None
        raise EngineError(f"{handle.id}: {exc.message}") from None
