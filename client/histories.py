"""Every run's history of a workflow that continues as new (scans, DNS validation, warmups): the chain
is followed from a run id through each run's last event, since Temporal's handle gives one run at a time.
"""

from __future__ import annotations

from temporalio.client import Client, WorkflowHistory


async def run_histories(client: Client, workflow_id: str, first_run_id: str) -> list[WorkflowHistory]:
    """The histories of `first_run_id` and of every run it continued as new into, in order."""
    out: list[WorkflowHistory] = []
    run_id = first_run_id
    while run_id:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        out.append(history)
        last = history.events[-1]
        run_id = (last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
                  if last.HasField("workflow_execution_continued_as_new_event_attributes") else "")
    return out
