"""FailoverSaga: a blocklisted IP of a tenant is quarantined and replaced (DESIGN.md §5).

Workflow id `failover/<tenant>/<ip>`: a second detection of the same listing is started with
id_conflict_policy USE_EXISTING and attaches to the running saga instead of starting another.

Steps (each an idempotent activity with an audit row whose actor is this workflow's id):
 0. blast radius (scan input only): when one scan lists too many of the tenant's sending IPs, hold
    BEFORE quarantining and wait for an operator (deny or no answer: nothing is quarantined);
 1. quarantine the listed IP and deploy the tenant's pool at once, before any decision or hold, so a
    held saga never leaves the IP sending (no compensation by design: a listed IP comes back only
    through resting and re-warming);
 2. circuit breaker: evidence from the database plus the tenant's other listings of the same scan
    (one decision per scan and tenant), decision by models.failover.circuit_breaker; when held, alert
    with approve/deny buttons and wait for update "approve"/"deny" (timeout: deny);
 3. activate a standby whose DNS gate passes: claim it (database guarantee), start its warmup
    (compensations: cancel the warmup restoring standby, release the claim);
 4. deploy the tenant's pool and wait (compensation: redeploy what the database says after undo);
 5. alert the operator; 6. record the outcome (one audit row per ending, whatever the ending).
Database steps and compensations retry for hours with backoff up to 30 s (a database failover
must not fail the saga); every call has a 10 s heartbeat timeout (the activities heartbeat every 2 s),
so the attempt of a killed worker is retried within seconds. If a step of 1-4 still fails, the compensations run
in reverse under asyncio.shield (a cancellation cannot stop them halfway), the pool is redeployed so
the database and the MTA agree (the listed IP stays out), the outcome names the step that failed and
every compensation that failed with the state it left, and a critical alert says action is
required; the saga then fails. The next scan runs a failed saga again (same id). Once the deploy is
in effect, a failure of 5 or 6 does not undo a working failover: it alerts instead.

Replay: `workflow.patched(PATCH)` keeps histories of the earlier code (no deploy after step 1, no
outcome row when step 1 failed, no state read after a failed compensation) replaying unchanged.

Webhooks (issue 15, workflows/webhook_events.py, under their own patch): `ip.quarantined` once the IP is
out of the pool, `failover.held` when an operator is asked, `ip.standby_activated`, `failover.completed`.
Each waits only for the outbox write, never for a receiver.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Coroutine
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from workflows import activity_options as opt

with workflow.unsafe.imports_passed_through():
    from activities.alerts import Alert, AlertAction
    from activities.failover import (
        AuditRequest,
        ClaimRequest,
        EvidenceRequest,
        FinishRequest,
        QuarantineRequest,
        QuarantineResult,
        StandbyQuery,
    )
    from models.deploys import DeployOutcome, DeployPoolRequest
    from models.failover import BreakerEvidence, circuit_breaker, failover_summary, with_same_scan
    from models.failover_contracts import (
        Compensation,
        FailoverDecision,
        FailoverInput,
        SagaState,
        decision_problem,
    )
    from models.search_attributes import IP_ADDRESS, TENANT
    from models.warmup_contracts import CancelWarmupRequest, StartWarmupRequest
    from workflows.webhook_events import emit

#: Marker of this version's command sequence (see the module docstring).
PATCH = "saga-quarantine-deploy-first"

# Timeouts and retries: the SAGA_* policies of workflows/activity_options.py (budgets of time, not attempt
# counts; short attempts with a heartbeat timeout).


class FailoverFailed(Exception):
    pass


class Compensations:
    """The saga's undo list (kept in SagaState, so a query shows it): recorded as each forward step
    starts, run in reverse; one failing undo does not stop the others and stays recorded as failed."""

    def __init__(self, items: list[Compensation]) -> None:
        self.items = items

    def add(self, kind: str, address: str) -> None:
        self.items.append(Compensation(kind, address))

    async def run(self, undo: Callable[[Compensation], Awaitable[None]]) -> None:
        for comp in reversed(self.items):
            if not comp.done and comp.problem is None:
                await undo(comp)

    def done(self) -> list[str]:
        return [c.describe() for c in reversed(self.items) if c.done]

    def failed(self) -> list[str]:
        return [c.describe() for c in reversed(self.items) if c.problem]


async def shielded(coro: Coroutine[Any, Any, None]) -> bool:
    """Run `coro` to its end even if the workflow is cancelled meanwhile; True if a cancel came."""
    task = asyncio.ensure_future(coro)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    task.result()
    return cancelled


def _as_decision(answer: FailoverDecision | str) -> FailoverDecision:
    return FailoverDecision(answer) if isinstance(answer, str) else answer


@workflow.defn(name="FailoverSaga")
class FailoverSaga:
    @workflow.init
    def __init__(self, inp: FailoverInput) -> None:
        # State exists before the first workflow task runs: a signal delivered first is not dropped.
        info = workflow.info()
        self._state = SagaState(tenant=inp.tenant, address=inp.address, workflow_id=info.workflow_id,
                                run_id=info.run_id, listings=[lst.describe() for lst in inp.listings])
        self._undo = Compensations(self._state.compensations)
        self._v2 = True

    # ----------------------------------------------------------------- messages
    @workflow.query
    def state(self) -> SagaState:
        return self._state

    @workflow.update
    async def approve(self, decision: FailoverDecision | str) -> str:
        d = _as_decision(decision)
        self._state.answer, self._state.approved = FailoverDecision(d.reason.strip(), d.incident), True
        return f"approved: {d.reason.strip()}"

    @approve.validator
    def _validate_approve(self, decision: FailoverDecision | str) -> None:
        self._validate_answer(decision)

    @workflow.update
    async def deny(self, decision: FailoverDecision | str) -> str:
        d = _as_decision(decision)
        self._state.answer, self._state.approved = FailoverDecision(d.reason.strip(), d.incident), False
        return f"denied: {d.reason.strip()}"

    @deny.validator
    def _validate_deny(self, decision: FailoverDecision | str) -> None:
        self._validate_answer(decision)

    def _validate_answer(self, decision: FailoverDecision | str) -> None:
        st = self._state
        problem = decision_problem(decision, st.held, st.answer is not None, workflow.info().run_id)
        if problem:
            raise ValueError(problem)

    @workflow.signal
    def detected_again(self, zones: list[str]) -> None:
        """Another scan saw the same listing while the saga runs (informational)."""
        self._state.detections += 1
        self._state.log.append(f"{workflow.now():%Y-%m-%d %H:%M} detected again: {', '.join(zones)}")

    # ----------------------------------------------------------------- helpers
    def _note(self, step: str, text: str) -> None:
        self._state.step = step
        self._state.log.append(f"{workflow.now():%Y-%m-%d %H:%M:%S} {step}: {text}")

    async def _db(self, name: str, arg: Any, result_type: type | None = None,
                  budget: timedelta = opt.DB_SCHEDULE_TO_CLOSE) -> Any:
        return await workflow.execute_activity(name, arg, result_type=result_type,
                                               start_to_close_timeout=opt.DB_START_TO_CLOSE,
                                               heartbeat_timeout=opt.HEARTBEAT, schedule_to_close_timeout=budget,
                                               retry_policy=opt.SAGA_RETRY)

    async def _audit(self, reason: str) -> None:
        st = self._state
        run = st.run_id if self._v2 else ""
        await self._db("failover_audit", AuditRequest(st.address, reason, st.workflow_id, run))

    async def _alert(self, key: str, title: str, body: str, severity: str,
                     actions: list[AlertAction] | None = None) -> None:
        try:
            await workflow.execute_activity("send_alert", Alert(key=key, title=title, body=body, severity=severity,
                                                                actions=actions or []),
                                            start_to_close_timeout=opt.SAGA_ALERT_START_TO_CLOSE,
                                            heartbeat_timeout=opt.HEARTBEAT,
                                            schedule_to_close_timeout=opt.SAGA_ALERT_SCHEDULE_TO_CLOSE,
                                            retry_policy=opt.SAGA_ALERT_RETRY)
        except ActivityError:
            workflow.logger.exception("alert %s could not be sent", key)

    async def _deploy(self, reason: str) -> DeployOutcome:
        st = self._state
        return await workflow.execute_activity(
            "deploy_tenant_pool", DeployPoolRequest(st.tenant, reason, st.workflow_id),
            result_type=DeployOutcome, start_to_close_timeout=opt.DEPLOY_START_TO_CLOSE,
            heartbeat_timeout=opt.DEPLOY_HEARTBEAT, schedule_to_close_timeout=opt.SAGA_DEPLOY_SCHEDULE_TO_CLOSE,
            retry_policy=opt.SAGA_DEPLOY_RETRY)

    async def _finish(self, outcome: str) -> None:
        st = self._state
        await self._db("failover_finish", FinishRequest(st.address, st.workflow_id, outcome[:900],
                                                        st.run_id if self._v2 else ""))

    # ----------------------------------------------------------------- the saga
    @workflow.run
    async def run(self, inp: FailoverInput) -> SagaState:
        st = self._state
        wid = st.workflow_id
        self._v2 = v2 = workflow.patched(PATCH)
        workflow.upsert_search_attributes([TENANT.value_set(inp.tenant), IP_ADDRESS.value_set(inp.address)])
        try:
            # 0. blast radius: an operator decides before anything is quarantined
            if inp.blast_radius:
                self._note("blast radius", "collecting evidence")
                ev = with_same_scan(await self._evidence(inp), inp.same_scan)
                reasons = [inp.blast_radius, *circuit_breaker(ev).reasons]
                st.reasons = list(reasons)
                if not await self._hold("blast radius", reasons, ev.policy.approval_timeout_seconds):
                    return await self._not_quarantined()
                st.decision = "approved"

            # 1. quarantine, and take it out of the MTA pool at once
            self._note("quarantine", f"{inp.address} listed ({', '.join(st.listings) or 'no detail'})")
            q: QuarantineResult = await self._db("failover_quarantine_ip",
                                                 QuarantineRequest(inp.tenant, inp.address, list(inp.listings), wid),
                                                 QuarantineResult)
            st.quarantined = True
            self._note("quarantine", f"quarantined (was {q.previous_status}) until {q.quarantine_until:%Y-%m-%d}")
            if v2:
                self._note("quarantine deploy", "deploying the tenant's pool without the listed IP")
                out = await self._deploy(f"quarantine of {inp.address}")
                await self._audit(f"failover step 1: out of the pool: deployed {out.host} generation {out.generation}")
                self._note("quarantine deploy", f"{out.host} generation {out.generation} ({out.message})")
            await emit("ip.quarantined", {"tenant": inp.tenant, "ip": inp.address, "listings": st.listings,
                                          "previous_status": q.previous_status,
                                          "quarantine_until": q.quarantine_until.isoformat()})

            # 2. circuit breaker (unless an operator already decided on the blast radius)
            if st.decision is None:
                self._note("circuit breaker", "collecting evidence")
                ev = with_same_scan(await self._evidence(inp), inp.same_scan)
                verdict = circuit_breaker(ev)
                st.reasons = list(verdict.reasons)
                if verdict.automatic:
                    st.decision = "automatic"
                    await self._audit(f"failover step 2: circuit breaker closed: {'; '.join(verdict.reasons)}")
                else:
                    await self._audit(f"failover step 2: circuit breaker held: {'; '.join(verdict.reasons)}")
                    approved = await self._hold("circuit breaker", verdict.reasons,
                                                ev.policy.approval_timeout_seconds)
                    st.decision = "approved" if approved else "denied"
                self._note("circuit breaker", st.decision)

            # 3. standby
            if st.decision in ("automatic", "approved"):
                await self._activate_standby()
            else:
                self._note("standby", "not activated (denied)")

            # 4. deploy
            self._note("deploy", "deploying the tenant's pool")
            out = await self._deploy(f"failover of {inp.address}" + (f", standby {st.standby}" if st.standby else ""))
            st.deploy = f"{out.host} generation {out.generation} ({out.message})"
            await self._audit(f"failover step 4: deployed {st.deploy}")
            self._note("deploy", st.deploy)
        except ActivityError as err:
            await shielded(self._compensate(err))
            raise ApplicationError(f"failover of {inp.address} failed at step {st.failed_step}; "
                                   f"{'compensated' if st.status == 'compensated' else 'compensation FAILED'}: "
                                   f"{st.error}", type="FailoverFailed", non_retryable=True) from err
        except asyncio.CancelledError:
            if v2:  # cancelled from outside: undo what was done, to its end
                await shielded(self._compensate(None))
            raise

        # 5. alert; 6. record. The failover is in effect: failures here alert, they undo nothing.
        title, body = failover_summary(inp.tenant, inp.address, list(inp.listings), st.standby,
                                       f"{st.decision}: {'; '.join(st.reasons)}", st.deploy)
        self._note("alert", title)
        await self._alert(f"{wid}/done", title, body, "warning")
        outcome = f"quarantined; {st.decision}; " + (f"standby {st.standby} warming" if st.standby else "no standby")
        try:
            self._note("record", "recording the outcome")
            await self._finish(outcome)
            self._note("record", outcome)
        except ActivityError as err:
            st.error = f"recording the outcome failed: {err.cause or err}"
            await self._alert(f"{wid}/record", f"Failover {inp.tenant}/{inp.address}: action required",
                              f"The failover is in effect ({outcome}) but recording it failed: {st.error}", "critical")
        st.status = "completed"
        await self._completed(outcome)
        return st

    async def _completed(self, outcome: str) -> None:
        st = self._state
        await emit("failover.completed", {"tenant": st.tenant, "ip": st.address, "decision": st.decision,
                                          "standby": st.standby, "outcome": outcome})

    async def _evidence(self, inp: FailoverInput) -> BreakerEvidence:
        ev: BreakerEvidence = await self._db("failover_breaker_evidence", EvidenceRequest(inp.tenant, inp.address),
                                             BreakerEvidence)
        return ev

    async def _not_quarantined(self) -> SagaState:
        """The operator denied (or did not answer) a blast-radius hold: nothing was changed."""
        st = self._state
        st.decision = "denied"
        outcome = f"not quarantined (blast radius): {st.answer.reason if st.answer else 'denied'}"
        self._note("record", outcome)
        await self._finish(outcome)
        st.status = "completed"
        await self._completed(outcome)
        return st

    async def _hold(self, kind: str, reasons: list[str], timeout: int) -> bool:
        st = self._state
        st.status, st.held, st.hold, st.answer, st.approved = "held", True, kind, None, None
        self._note(kind, f"held for an operator (deny after {timeout // 3600}h {timeout % 3600 // 60}m)")
        # The buttons name this run (FailoverDecision.incident): the validator refuses them in a later run.
        actions = [AlertAction(label, st.workflow_id, name, kind="update",
                               arg=json.dumps({"reason": f"{verb} from the alert", "incident": st.run_id}))
                   for label, name, verb in (("Approve", "approve", "approved"), ("Deny", "deny", "denied"))]
        if kind == "blast radius":
            state_line = (f"{st.address} is NOT quarantined and still sends. Approve to quarantine it and activate "
                          f"a standby of {st.tenant}, deny to leave it in the pool")
        else:
            state_line = (f"{st.address} is quarantined and out of the MTA pool. Approve to activate a standby of "
                          f"{st.tenant}, deny to continue without one")
        body = "\n".join([f"Listed: {', '.join(st.listings) or st.address}", "Evidence:",
                          *[f"  - {r}" for r in reasons],
                          f"{state_line}: `email-engine failover approve|deny {st.tenant} {st.address} "
                          f"--reason ...` (incident {st.run_id}). No answer within {timeout / 3600:g} h means deny."])
        await self._alert(f"{st.workflow_id}/held", f"Failover {st.tenant}/{st.address} held by the {kind}",
                          body, "critical", actions)
        await emit("failover.held", {"tenant": st.tenant, "ip": st.address, "hold": kind, "reasons": reasons,
                                     "quarantined": st.quarantined, "deny_after_seconds": timeout})
        try:
            await workflow.wait_condition(lambda: st.answer is not None, timeout=timedelta(seconds=timeout))
        except TimeoutError:
            st.answer, st.approved = FailoverDecision(f"no operator answer within {timeout / 3600:g} h"), False
        st.held = False
        st.status = "running"
        approved = bool(st.approved)
        reason = st.answer.reason if st.answer else ""
        step = "failover step 2" if kind == "circuit breaker" else "failover step 0 (blast radius)"
        await self._audit(f"{step}: {'approved' if approved else 'denied'}: {reason}")
        st.reasons.append(f"{'approved' if approved else 'denied'}: {reason}")
        return approved

    async def _activate_standby(self) -> None:
        st = self._state
        wid = st.workflow_id
        self._note("standby", "choosing a standby")
        candidates: list[str] = await self._db("failover_standby_candidates", StandbyQuery(st.tenant, st.address),
                                               list[str])
        skipped: list[str] = []
        for cand in candidates:
            failures: list[str] = await workflow.execute_activity(
                "check_dns_gate", cand, result_type=list[str], start_to_close_timeout=opt.DB_START_TO_CLOSE,
                heartbeat_timeout=opt.HEARTBEAT, schedule_to_close_timeout=opt.DB_SCHEDULE_TO_CLOSE,
                retry_policy=opt.SAGA_RETRY)
            if failures:
                skipped.append(f"{cand}: {'; '.join(failures)}")
                continue
            if not await self._db("failover_claim_standby", ClaimRequest(cand, wid), bool):
                skipped.append(f"{cand}: taken by another failover")
                continue
            self._undo.add("release", cand)
            self._note("standby", f"claimed {cand}; starting its warmup")
            self._undo.add("cancel_warmup", cand)
            await workflow.execute_activity(
                "start_ip_warmup", StartWarmupRequest(cand, f"failover standby for {st.address}", wid),
                result_type=str, start_to_close_timeout=opt.DB_START_TO_CLOSE, heartbeat_timeout=opt.HEARTBEAT,
                schedule_to_close_timeout=opt.DB_SCHEDULE_TO_CLOSE, retry_policy=opt.WARMUP_CONTROL_RETRY)
            st.standby = cand
            await self._audit(f"failover step 3: standby {cand} activated (warming)")
            self._note("standby", f"{cand} warming")
            await emit("ip.standby_activated", {"tenant": st.tenant, "ip": cand, "replaces": st.address,
                                                "status": "warming"})
            return
        detail = "; ".join(skipped) or "the tenant has no standby IP"
        await self._audit(f"failover step 3: no eligible standby ({detail})"[:1024])
        self._note("standby", f"no standby: {detail}")
        await self._alert(f"{wid}/no-standby", f"Failover {st.tenant}/{st.address}: no standby",
                          f"No standby of {st.tenant} could be activated ({detail}). The pool continues without "
                          f"{st.address}; add or fix a standby IP.", "warning")

    async def _undo_one(self, comp: Compensation) -> None:
        st = self._state
        try:
            if comp.kind == "cancel_warmup":
                await workflow.execute_activity(
                    "cancel_ip_warmup", CancelWarmupRequest(comp.address, "standby",
                                                            f"failover of {st.address} undone", st.workflow_id),
                    start_to_close_timeout=opt.DB_START_TO_CLOSE, heartbeat_timeout=opt.HEARTBEAT,
                    schedule_to_close_timeout=opt.DB_SCHEDULE_TO_CLOSE, retry_policy=opt.WARMUP_CONTROL_RETRY)
                if st.standby == comp.address:
                    st.standby = None
            elif comp.kind == "release":
                await self._db("failover_release_standby", ClaimRequest(comp.address, st.workflow_id), bool)
            comp.done = True
            self._note("compensate", comp.describe())
        except ActivityError as err:
            left = "state not read"
            if self._v2:  # name the state the failed undo left (for the alert and the outcome row)
                try:
                    left = await self._db("failover_describe_ip", comp.address, str,
                                          budget=opt.SAGA_DESCRIBE_SCHEDULE_TO_CLOSE)
                except ActivityError:
                    left = f"the state of {comp.address} could not be read"
            comp.problem = f"{left} ({err.cause or err})"
            self._note("compensate", comp.describe())
            workflow.logger.exception("compensation %s %s failed", comp.kind, comp.address)

    async def _compensate(self, err: ActivityError | None) -> None:
        st = self._state
        wid = st.workflow_id
        what = f" ({err.activity_type})" if err is not None and err.activity_type else ""
        failed_step = st.failed_step = f"{st.step}{what}"
        cause = (err.cause or err) if err is not None else "the saga was cancelled"
        st.error = f"{failed_step}: {cause}"
        self._note("compensate", f"undoing after failure in {failed_step}")
        await self._undo.run(self._undo_one)
        problems = self._undo.failed()
        mta = "the MTA was not touched"
        if st.quarantined:
            # The listed IP stays out; redeploy so the MTA config matches the database after the undo.
            try:
                out = await self._deploy(f"failover of {st.address} undone: pool without the listed IP and standby")
                mta = f"redeployed {out.host} generation {out.generation}"
                await self._audit(f"failover compensation: {mta}")
            except ActivityError as derr:
                mta = f"REDEPLOY FAILED ({derr.cause or derr}): the MTA may still send from {st.address}"
                problems.append(mta)
        self._note("compensate", mta)
        undo = f"compensation FAILED: {'; '.join(self._undo.failed())}" if self._undo.failed() else "compensated"
        outcome = f"failed at {failed_step}; {undo}; {mta}"
        if st.quarantined or self._v2:
            try:
                await self._finish(outcome[:512] if not self._v2 else outcome)
            except ActivityError as ferr:
                problems.append(f"recording the outcome: {ferr.cause or ferr}")
        st.status = "failed" if problems else "compensated"
        done = self._undo.done()
        body = "\n".join([f"Failover of {st.address} (tenant {st.tenant}) failed at step {failed_step}: {cause}",
                          f"Listed IP {'stays quarantined (out of rotation)' if st.quarantined else 'was not changed'}"
                          ".",
                          f"Undone: {', '.join(done) or 'nothing to undo'}.",
                          *(f"NOT undone: {p}" for p in self._undo.failed()),
                          f"MTA: {mta}.", *(f"Problem: {p}" for p in problems if p not in self._undo.failed()),
                          "Action required: fix the cause; the next blocklist scan runs this failover again."])
        await self._alert(f"{wid}/failed", f"Failover {st.tenant}/{st.address} failed: action required", body,
                          "critical")
