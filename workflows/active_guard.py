"""The guard on active IPs (issue 15; rules: models/active_guard.py).

ActiveGuardWorkflow (daily, Schedule `active-guard`, or `email-engine guard run`): one activity judges
every active IP on its own last 7 full days and records the day's steps (automatic, or held by the
tenant's capacity-loss limit) in `guard_step`, one row per IP and day, so a second run the same day
acts on nothing twice; then it starts one GuardStepWorkflow per step and ends.

GuardStepWorkflow (id `guard/<tenant>/<ip>`), for one IP:
 1. held (capacity-loss hold): alert with the evidence and Approve/Deny buttons, wait for update
    "approve" or "deny" (timeout: deny), record the answer (audit row);
 2. apply through an idempotent activity that expects the IP active (step down: warming at the
    tenant's step-down phase and its quota; pause: resting, quota 0), audit row;
 3. step down: start the IP's IpWarmupWorkflow (the ordinary re-warm, its gate and phases);
 4. deploy the tenant's pool (the same `deploy_tenant_pool` request the saga and the warmup use);
 5. alert with the figures (counts, rates, Wilson bounds) and an Undo/Restore button; the update
    "undo" works for `undo_seconds` (step down: warmup stopped, active again; pause: active again),
    then redeploys. An IP no longer active when the step comes (a failover quarantined it meanwhile)
    is left alone: the step is recorded failed and alerted.
"""

from __future__ import annotations

import json
from datetime import UTC, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.active_guard import GuardApplyOutcome, GuardPlanRequest, GuardRecordRequest, GuardStepRequest
    from activities.alerts import Alert, AlertAction
    from models.deploys import DeployOutcome, DeployPoolRequest
    from models.guard_contracts import (
        GuardAnswer,
        GuardPlan,
        GuardRunInput,
        GuardRunResult,
        GuardStepInput,
        GuardStepState,
        StartGuardStepResult,
        answer_problem,
    )
    from models.search_attributes import IP_ADDRESS, TENANT
    from models.warmup_contracts import CancelWarmupRequest, StartWarmupRequest
    from workflows import activity_options as opt


def _cause(err: ActivityError) -> str:
    return err.cause.message if isinstance(err.cause, ApplicationError) else str(err.cause or err)


async def _db(name: str, arg: object, result_type: type | None = None) -> object:
    return await workflow.execute_activity(name, arg, result_type=result_type,
                                           start_to_close_timeout=opt.DB_START_TO_CLOSE,
                                           schedule_to_close_timeout=opt.DB_SCHEDULE_TO_CLOSE,
                                           heartbeat_timeout=opt.HEARTBEAT, retry_policy=opt.DB_RETRY)


async def _alert(key: str, title: str, body: str, severity: str, actions: list[AlertAction] | None = None) -> None:
    try:
        await workflow.execute_activity(
            "send_alert", Alert(key=key, title=title, body=body, severity=severity, actions=actions or []),
            result_type=bool, start_to_close_timeout=opt.ALERT_START_TO_CLOSE,
            schedule_to_close_timeout=opt.ALERT_SCHEDULE_TO_CLOSE, heartbeat_timeout=opt.HEARTBEAT,
            retry_policy=opt.ALERT_RETRY)
    except ActivityError:
        workflow.logger.exception("alert %s could not be sent", key)


@workflow.defn(name="ActiveGuardWorkflow")
class ActiveGuardWorkflow:
    @workflow.run
    async def run(self, inp: GuardRunInput) -> GuardRunResult:
        wid = workflow.info().workflow_id
        day = inp.day or workflow.now().astimezone(UTC).date().isoformat()
        plan = await _db("guard_plan_day", GuardPlanRequest(day, inp.tenant, wid), GuardPlan)
        assert isinstance(plan, GuardPlan)
        result = GuardRunResult(plan)
        for step in plan.steps:
            started = await workflow.execute_activity(
                "start_guard_step", step, result_type=StartGuardStepResult,
                start_to_close_timeout=opt.DB_START_TO_CLOSE, schedule_to_close_timeout=opt.DB_SCHEDULE_TO_CLOSE,
                heartbeat_timeout=opt.HEARTBEAT, retry_policy=opt.DB_RETRY)
            if started.started:
                result.started.append(started.workflow_id)
                continue
            # Another step of this IP is still open (an earlier day's undo window): this one is not taken.
            result.blocked.append(started.workflow_id)
            await _db("guard_record", GuardRecordRequest(
                GuardStepRequest(step.address, step.day, wid,
                                 f"another guard step of this IP is still open ({started.workflow_id})"), "failed"))
        return result


@workflow.defn(name="GuardStepWorkflow")
class GuardStepWorkflow:
    @workflow.init
    def __init__(self, inp: GuardStepInput) -> None:
        info = workflow.info()
        self._inp = inp
        self._state = GuardStepState(tenant=inp.tenant, address=inp.address, day=inp.day, action=inp.action,
                                     to_phase=inp.to_phase, workflow_id=info.workflow_id, run_id=info.run_id,
                                     status="held" if inp.held else "applying", held=inp.held,
                                     hold_reason=inp.hold_reason, evidence=inp.evidence)
        self._closed = False  # the undo window is over

    # ----------------------------------------------------------------- messages
    @workflow.query
    def state(self) -> GuardStepState:
        return self._state

    @workflow.update
    async def approve(self, answer: GuardAnswer) -> str:
        self._state.answer, self._state.approved = answer, True
        return f"approved: {answer.reason.strip()}"

    @approve.validator
    def _validate_approve(self, answer: GuardAnswer) -> None:
        self._check(answer, self._waiting_answer(), "an approve or deny")

    @workflow.update
    async def deny(self, answer: GuardAnswer) -> str:
        self._state.answer, self._state.approved = answer, False
        return f"denied: {answer.reason.strip()}"

    @deny.validator
    def _validate_deny(self, answer: GuardAnswer) -> None:
        self._check(answer, self._waiting_answer(), "an approve or deny")

    @workflow.update
    async def undo(self, answer: GuardAnswer) -> str:
        self._state.undo = answer
        return f"undo requested: {answer.reason.strip()}"

    @undo.validator
    def _validate_undo(self, answer: GuardAnswer) -> None:
        st = self._state
        self._check(answer, st.status == "applied" and st.undo is None and not self._closed, "an undo")

    def _waiting_answer(self) -> bool:
        return self._state.status == "held" and self._state.answer is None

    def _check(self, answer: GuardAnswer, waiting: bool, what: str) -> None:
        problem = answer_problem(answer, waiting, self._state.run_id, what)
        if problem:
            raise ValueError(problem)

    # ----------------------------------------------------------------- helpers
    def _note(self, text: str) -> None:
        self._state.log.append(f"{workflow.now():%Y-%m-%d %H:%M:%S} {text}")

    def _req(self, reason: str = "", by: str = "") -> GuardStepRequest:
        return GuardStepRequest(self._inp.address, self._inp.day, self._state.workflow_id, reason, by)

    def _what(self) -> str:
        inp = self._inp
        if inp.action == "pause":
            return "paused (resting, out of the pool)"
        return f"stepped down to {inp.to_phase} ({inp.quota_after}/day)"

    def _button(self, label: str, name: str, verb: str, seconds: int) -> AlertAction:
        arg = json.dumps({"reason": f"{verb} from the alert", "incident": self._state.run_id, "actor": "{actor}"})
        return AlertAction(label, self._state.workflow_id, name, kind="update", arg=arg, run_id=self._state.run_id,
                           expires_in_seconds=seconds)

    async def _deploy(self, reason: str) -> str:
        st = self._state
        try:
            out = await workflow.execute_activity(
                "deploy_tenant_pool", DeployPoolRequest(st.tenant, f"{st.address}: {reason}", st.workflow_id),
                result_type=DeployOutcome, start_to_close_timeout=opt.DEPLOY_START_TO_CLOSE,
                schedule_to_close_timeout=opt.POOL_DEPLOY_SCHEDULE_TO_CLOSE, heartbeat_timeout=opt.DEPLOY_HEARTBEAT,
                retry_policy=opt.POOL_DEPLOY_RETRY)
        except ActivityError as err:
            text = f"MTA deploy FAILED ({_cause(err)})"
            self._note(text)
            await _alert(f"{st.workflow_id}/{st.day}/deploy", f"Guard {st.tenant}/{st.address}: MTA deploy failed",
                         f"{_cause(err)}. The inventory holds the change ({reason}); the MTA gets it with the next "
                         f"deploy (`email-engine mta deploy`).", "critical")
            return text
        text = f"deployed {out.host} generation {out.generation}"
        self._note(text)
        return text

    # ----------------------------------------------------------------- the step
    @workflow.run
    async def run(self, inp: GuardStepInput) -> GuardStepState:
        st = self._state
        wid = st.workflow_id
        workflow.upsert_search_attributes([TENANT.value_set(inp.tenant), IP_ADDRESS.value_set(inp.address)])
        if inp.held and not await self._hold():
            return st
        st.status = "applying"
        try:
            out = await _db("guard_apply_step", self._req(), GuardApplyOutcome)
        except ActivityError as err:
            st.status, st.error = "failed", _cause(err)
            self._note(f"not applied: {st.error}")
            await _db("guard_record", GuardRecordRequest(self._req(f"not applied: {st.error}"), "failed"))
            await _alert(f"{wid}/{inp.day}/failed", f"Guard {inp.tenant}/{inp.address}: step not taken",
                         f"The guard would have {self._what()}, but: {st.error}. Nothing was changed.\n"
                         f"Evidence: {inp.evidence}", "warning")
            return st
        assert isinstance(out, GuardApplyOutcome)
        self._note(f"{self._what()}: quota {out.quota_before} -> {out.quota_after}")
        warmup = ""
        if inp.action == "step_down":
            try:
                warmup = await workflow.execute_activity(
                    "start_ip_warmup", StartWarmupRequest(inp.address, f"re-warm after the active guard's step down "
                                                          f"({inp.day})", wid),
                    result_type=str, start_to_close_timeout=opt.DB_START_TO_CLOSE, heartbeat_timeout=opt.HEARTBEAT,
                    schedule_to_close_timeout=opt.DB_SCHEDULE_TO_CLOSE, retry_policy=opt.WARMUP_CONTROL_RETRY)
                self._note(f"re-warm: {warmup}")
            except ActivityError as err:
                warmup = f"its warmup workflow could NOT be started ({_cause(err)}): `email-engine warmup start " \
                         f"{inp.address}`"
                self._note(warmup)
                await _alert(f"{wid}/{inp.day}/warmup", f"Guard {inp.tenant}/{inp.address}: re-warm not started",
                             f"{inp.address} is warming at {inp.to_phase} in the inventory but {warmup}.", "critical")
        deployed = await self._deploy(f"active guard: {self._what()}")
        now = workflow.now()
        st.status, st.undo_until = "applied", (now + timedelta(seconds=inp.undo_seconds)).isoformat()
        label = "Undo (active again)" if inp.action == "step_down" else "Restore (active again)"
        back = (f"It re-warms through {warmup} from {inp.to_phase}." if inp.action == "step_down" else
                f"It sends nothing until restored or re-warmed (`email-engine warmup start {inp.address}`).")
        await _alert(
            f"{wid}/{inp.day}/applied", f"Guard {inp.tenant}/{inp.address}: {self._what()}",
            f"{inp.evidence}\nQuota {out.quota_before} -> {out.quota_after}/day"
            + (f" (approved: {st.answer.reason})" if st.answer else "") + f". {back} MTA: {deployed}.\n"
            f"Undo until {now + timedelta(seconds=inp.undo_seconds):%Y-%m-%d %H:%M} UTC: the button or "
            f"`email-engine guard undo {inp.tenant} {inp.address} --reason ...`.", "warning",
            [self._button(label, "undo", "undone", inp.undo_seconds)])
        try:
            await workflow.wait_condition(lambda: st.undo is not None, timeout=timedelta(seconds=inp.undo_seconds),
                                          timeout_summary="undo window")
        except TimeoutError:
            self._note("undo window over")
        self._closed = True
        if st.undo is not None:
            await self._undo(st.undo)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return st

    async def _hold(self) -> bool:
        """Alert with Approve/Deny and wait; record the answer. True: approved."""
        st, inp = self._state, self._inp
        timeout = inp.approval_timeout_seconds
        self._note(f"held for an operator (deny after {timeout / 3600:g} h): {inp.hold_reason}")
        await _alert(
            f"{st.workflow_id}/{inp.day}/held", f"Guard {inp.tenant}/{inp.address}: {inp.action.replace('_', ' ')} "
            "held (capacity-loss limit)",
            f"{inp.evidence}\n{inp.hold_reason}.\nApprove to take the step ({self._what()}), deny to leave "
            f"{inp.address} active: `email-engine guard approve|deny {inp.tenant} {inp.address} --reason ...` "
            f"(incident {st.run_id}). No answer within {timeout / 3600:g} h means deny.", "critical",
            [self._button("Approve", "approve", "approved", timeout), self._button("Deny", "deny", "denied", timeout)])
        try:
            await workflow.wait_condition(lambda: st.answer is not None, timeout=timedelta(seconds=timeout),
                                          timeout_summary="operator's answer")
        except TimeoutError:
            st.answer = GuardAnswer(f"no operator answer within {timeout / 3600:g} h", actor="timeout")
            st.approved = False
        assert st.answer is not None
        verdict = "approved" if st.approved else "denied"
        self._note(f"{verdict} by {st.answer.actor}: {st.answer.reason}")
        await _db("guard_record", GuardRecordRequest(self._req(st.answer.reason, st.answer.actor), verdict))
        if st.approved:
            return True
        st.status = "denied"
        await _alert(f"{st.workflow_id}/{inp.day}/denied", f"Guard {inp.tenant}/{inp.address}: step denied",
                     f"{inp.address} stays active ({st.answer.reason}, by {st.answer.actor}). The guard does not act "
                     "on it again while the window holds today.", "info")
        return False

    async def _undo(self, answer: GuardAnswer) -> None:
        st, inp = self._state, self._inp
        reason = f"active guard step of {inp.day} undone by {answer.actor}: {answer.reason}"
        try:
            if inp.action == "step_down":
                await workflow.execute_activity(
                    "cancel_ip_warmup", CancelWarmupRequest(inp.address, "active", reason, st.workflow_id),
                    start_to_close_timeout=opt.DB_START_TO_CLOSE, heartbeat_timeout=opt.HEARTBEAT,
                    schedule_to_close_timeout=opt.DB_SCHEDULE_TO_CLOSE, retry_policy=opt.WARMUP_CONTROL_RETRY)
            else:
                await _db("guard_restore_active", self._req(answer.reason, answer.actor), bool)
        except ActivityError as err:
            st.error = f"undo refused: {_cause(err)}"
            self._note(st.error)
            await _alert(f"{st.workflow_id}/{inp.day}/undo", f"Guard {inp.tenant}/{inp.address}: undo not done",
                         f"{st.error}. Nothing was changed by the undo.", "warning")
            return
        await _db("guard_record", GuardRecordRequest(self._req(answer.reason, answer.actor), "undone"))
        st.status = "undone"
        deployed = await self._deploy(f"active guard step undone by {answer.actor}")
        await _alert(f"{st.workflow_id}/{inp.day}/undone", f"Guard {inp.tenant}/{inp.address}: active again",
                     f"Undone by {answer.actor}: {answer.reason}. MTA: {deployed}. The guard does not act on it again "
                     "while the window holds today.", "info")
