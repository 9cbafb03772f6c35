"""MtaDeployWorkflow: serialized, coalescing deploys of one MTA host (id `mta-deploy/<host>`).

Callers ask it to deploy the current inventory. Each request gets the number of the deploy
("generation") that will include it: the next deploy that has not started yet. Requests arriving
while a deploy runs are coalesced into one more deploy, and that deploy renders the newest inventory
when it executes, so no change is lost or overwritten by an older render. Callers take their
generation (update `request`, returns at once) and poll the `result(generation)` query until the
deploy has finished (client.deploys.request_deploy does this). The `deploy` update waits
in the workflow instead; it is fine for a few callers, but Temporal allows only 10 in-flight updates
per workflow, so library code uses request + query. The workflow lives as long as the host; it
continues as new when idle and its history grows.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.alerts import Alert
    from models.deploys import (
        DeployRequest,
        HostDeployRequest,
        HostDeployResult,
        MtaDeployInput,
        MtaDeployState,
        MtaDeployStatus,
    )
    from workflows import activity_options as opt

KEEP_RESULTS = 50
# Timeouts and retries: the HOST_DEPLOY_* policies of workflows/activity_options.py.


def _failure_message(err: BaseException) -> str:
    cause = err.__cause__ if isinstance(err, ActivityError) and err.__cause__ else err
    return str(cause) or type(cause).__name__


@workflow.defn(name="MtaDeployWorkflow")
class MtaDeployWorkflow:
    @workflow.init
    def __init__(self, inp: MtaDeployInput) -> None:
        self.host = inp.host
        self.state = inp.state or MtaDeployState()
        self._alerts: list[Any] = []  # failure alerts in flight (the loop does not wait for Telegram)

    # --- messages ---------------------------------------------------------------------------------

    def _enqueue(self, req: DeployRequest) -> int:
        s = self.state
        if s.requested <= s.started:  # nothing pending: this request opens the next deploy
            s.requested = s.started + 1
            s.pending_reasons = []
            s.pending = 0
            s.pending_replace_dkim_keys = False
        s.pending += 1
        s.pending_replace_dkim_keys = s.pending_replace_dkim_keys or req.replace_dkim_keys
        if req.reason and len(s.pending_reasons) < 20:
            s.pending_reasons.append(f"{req.reason} ({req.actor})" if req.actor else req.reason)
        return s.requested

    def _result(self, generation: int) -> HostDeployResult:
        for r in self.state.results:  # oldest first: the first deploy at or after `generation`
            if r.generation >= generation:
                return r
        return self.state.results[-1]

    @workflow.update
    async def deploy(self, req: DeployRequest) -> HostDeployResult:
        """Deploy the newest inventory; returns the result of the deploy that includes this request
        (ok=False: it failed and the previous config was restored)."""
        generation = self._enqueue(req)
        await workflow.wait_condition(lambda: self.state.completed >= generation)
        return self._result(generation)

    @workflow.update
    def request(self, req: DeployRequest) -> int:
        """Ask for a deploy without waiting; returns the generation that will include it."""
        return self._enqueue(req)

    @workflow.update
    async def wait_for(self, generation: int) -> HostDeployResult:
        """Wait until the deploy of `generation` (or a later one) has finished."""
        if generation < 1 or generation > self.state.requested:
            raise ApplicationError(f"generation {generation} was never requested", type="UnknownGeneration")
        await workflow.wait_condition(lambda: self.state.completed >= generation)
        return self._result(generation)

    @workflow.query
    def result(self, generation: int) -> HostDeployResult | None:
        """Result of the deploy that includes `generation`; None while it has not finished."""
        if generation > self.state.completed or not self.state.results:
            return None
        return self._result(generation)

    @workflow.query
    def status(self) -> MtaDeployStatus:
        s = self.state
        return MtaDeployStatus(host=self.host, requested=s.requested, started=s.started, completed=s.completed,
                               running=s.started > s.completed, last=s.results[-1] if s.results else None,
                               pending=s.pending if s.requested > s.started else 0)

    # --- main loop ----------------------------------------------------------------------------------

    def _history_large(self, max_history: int) -> bool:
        info = workflow.info()
        return info.is_continue_as_new_suggested() or (
            max_history > 0 and info.get_current_history_length() > max_history)

    @workflow.run
    async def run(self, inp: MtaDeployInput) -> None:
        s = self.state
        while True:
            await workflow.wait_condition(lambda: s.requested > s.started or self._history_large(inp.max_history))
            if s.requested <= s.started:
                # Idle with a large history: let update handlers return, then start afresh. A request
                # arriving meanwhile is served first (its handler cannot finish before its deploy).
                await self._settle_alerts()
                await workflow.wait_condition(lambda: workflow.all_handlers_finished() or s.requested > s.started)
                if s.requested > s.started:
                    continue
                workflow.continue_as_new(MtaDeployInput(host=self.host, state=s, url=inp.url,
                                                        max_history=inp.max_history))
            s.started = s.requested
            generation = s.started
            reasons = "; ".join(s.pending_reasons) or "deploy requested"
            replace_keys = s.pending_replace_dkim_keys
            s.pending_reasons = []
            s.pending = 0
            s.pending_replace_dkim_keys = False
            try:
                result = await workflow.execute_activity(
                    "deploy_mta_host",
                    HostDeployRequest(host=self.host, generation=generation, reason=reasons[:1000],
                                      actor="MtaDeployWorkflow", url=inp.url, replace_dkim_keys=replace_keys),
                    result_type=HostDeployResult,
                    start_to_close_timeout=opt.HOST_DEPLOY_START_TO_CLOSE,
                    schedule_to_close_timeout=opt.HOST_DEPLOY_SCHEDULE_TO_CLOSE,
                    heartbeat_timeout=opt.HOST_DEPLOY_HEARTBEAT,
                    retry_policy=opt.HOST_DEPLOY_RETRY,
                    summary=f"deploy generation {generation}",
                )
            except ActivityError as err:
                result = HostDeployResult(host=self.host, generation=generation, ok=False, changed=False,
                                          message=f"deploy failed: {_failure_message(err)}")
            s.results = [*s.results, result][-KEEP_RESULTS:]
            s.completed = generation
            if not result.ok:
                # Fired off, not awaited: the next deploy must not wait for Telegram (issue 11).
                self._alerts = [a for a in self._alerts if not a.done()]
                self._alerts.append(workflow.start_activity(
                    "send_alert",
                    Alert(key=f"mta-deploy-failed/{self.host}", severity="critical",
                          title=f"MTA deploy to {self.host} failed (generation {generation})",
                          body=result.message + ("\nThe previous configuration was restored."
                                                 if result.rolled_back else "")),
                    start_to_close_timeout=opt.HOST_DEPLOY_ALERT_START_TO_CLOSE,
                    schedule_to_close_timeout=opt.ALERT_SCHEDULE_TO_CLOSE, heartbeat_timeout=opt.HEARTBEAT,
                    retry_policy=opt.ALERT_RETRY,
                ))

    async def _settle_alerts(self) -> None:
        """Before continuing as new: the alerts still in flight finish (or give up, bounded) first."""
        for pending in self._alerts:
            try:
                await pending
            except ActivityError:
                workflow.logger.warning("a deploy-failure alert of %s was not delivered", self.host)
        self._alerts = []
