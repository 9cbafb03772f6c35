"""FailoverSaga: a blocklisted IP of a tenant is quarantined and replaced (DESIGN.md §5).

Workflow id `failover/<tenant>/<ip>`: a second detection of the same listing is started with
id_conflict_policy USE_EXISTING and attaches to the running saga instead of starting another.

Steps (each an idempotent activity with an audit row whose actor is this workflow's id):
 1. quarantine the listed IP (out of the pool at once; no compensation by design: a listed IP
    comes back only through resting and re-warming);
 2. circuit breaker: evidence from the database, decision by models.failover.circuit_breaker; when
    held, alert with approve/deny buttons and wait for update "approve"/"deny" (timeout: deny);
 3. activate a standby whose DNS gate passes: claim it (database guarantee), start its warmup
    (compensation: cancel the warmup restoring standby, release the claim);
 4. deploy the tenant's pool and wait (compensation: redeploy what the database says after undo);
 5. alert the operator; 6. record the outcome on the blocklist events.
If a step of 1-4 fails after its retries, the compensations run in reverse, the tenant's pool is
redeployed so the database and the MTA agree (the listed IP stays out), and a critical alert says
that action is required; the saga then fails with that message. Once the deploy is in effect, a
failure of 5 or 6 does not undo a working failover: it alerts instead.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

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
    from models.failover import BreakerEvidence, circuit_breaker, failover_summary
    from models.failover_contracts import FailoverInput, SagaState
    from models.search_attributes import IP_ADDRESS, TENANT
    from models.warmup_contracts import CancelWarmupRequest, StartWarmupRequest

DB_TIMEOUT = timedelta(seconds=60)
DB_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=5,
                       non_retryable_error_types=["UnexpectedStatus", "UnknownIp", "BadRequest"])
DEPLOY_TIMEOUT = timedelta(minutes=15)
DEPLOY_RETRY = RetryPolicy(initial_interval=timedelta(seconds=5), maximum_attempts=3,
                           non_retryable_error_types=["DeployFailed", "UnknownTenant"])
WARMUP_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_attempts=5,
                           non_retryable_error_types=["WarmupRefused", "WarmupCancelRefused"])


class FailoverFailed(Exception):
    pass


@workflow.defn(name="FailoverSaga")
class FailoverSaga:
    def __init__(self) -> None:
        self._state: SagaState | None = None
        self._answer: tuple[bool, str] | None = None
        self._held = False

    # ----------------------------------------------------------------- messages
    @workflow.query
    def state(self) -> SagaState | None:
        return self._state

    @workflow.update
    async def approve(self, reason: str) -> str:
        self._answer = (True, reason.strip())
        return f"approved: {reason.strip()}"

    @approve.validator
    def _validate_approve(self, reason: str) -> None:
        self._validate_answer(reason)

    @workflow.update
    async def deny(self, reason: str) -> str:
        self._answer = (False, reason.strip())
        return f"denied: {reason.strip()}"

    @deny.validator
    def _validate_deny(self, reason: str) -> None:
        self._validate_answer(reason)

    def _validate_answer(self, reason: str) -> None:
        if not self._held or self._answer is not None:
            raise ValueError("this failover is not waiting for an operator's decision")
        if not (reason or "").strip():
            raise ValueError("a reason is required")

    @workflow.signal
    def detected_again(self, zones: list[str]) -> None:
        """Another scan saw the same listing while the saga runs (informational)."""
        if self._state is not None:
            self._state.detections += 1
            self._state.log.append(f"{workflow.now():%Y-%m-%d %H:%M} detected again: {', '.join(zones)}")

    # ----------------------------------------------------------------- helpers
    def _note(self, step: str, text: str) -> None:
        assert self._state is not None
        self._state.step = step
        self._state.log.append(f"{workflow.now():%Y-%m-%d %H:%M:%S} {step}: {text}")

    async def _db(self, name: str, arg: Any, result_type: type | None = None) -> Any:
        return await workflow.execute_activity(name, arg, result_type=result_type, start_to_close_timeout=DB_TIMEOUT,
                                               retry_policy=DB_RETRY)

    async def _audit(self, reason: str) -> None:
        assert self._state is not None
        await self._db("failover_audit", AuditRequest(self._state.address, reason, self._state.workflow_id))

    async def _alert(self, key: str, title: str, body: str, severity: str,
                     actions: list[AlertAction] | None = None) -> None:
        await workflow.execute_activity("send_alert", Alert(key=key, title=title, body=body, severity=severity,
                                                            actions=actions or []),
                                        start_to_close_timeout=timedelta(seconds=60),
                                        retry_policy=RetryPolicy(maximum_attempts=3))

    async def _deploy(self, reason: str) -> DeployOutcome:
        assert self._state is not None
        return await workflow.execute_activity(
            "deploy_tenant_pool", DeployPoolRequest(self._state.tenant, reason, self._state.workflow_id),
            result_type=DeployOutcome, start_to_close_timeout=DEPLOY_TIMEOUT, heartbeat_timeout=timedelta(seconds=60),
            retry_policy=DEPLOY_RETRY)

    # ----------------------------------------------------------------- the saga
    @workflow.run
    async def run(self, inp: FailoverInput) -> SagaState:
        wid = workflow.info().workflow_id
        st = self._state = SagaState(tenant=inp.tenant, address=inp.address, workflow_id=wid,
                                     listings=[lst.describe() for lst in inp.listings])
        workflow.upsert_search_attributes([TENANT.value_set(inp.tenant), IP_ADDRESS.value_set(inp.address)])
        compensations: list[tuple[str, Any]] = []
        quarantined = False
        try:
            # 1. quarantine
            self._note("quarantine", f"{inp.address} listed ({', '.join(st.listings) or 'no detail'})")
            q: QuarantineResult = await self._db("failover_quarantine_ip",
                                                 QuarantineRequest(inp.tenant, inp.address, list(inp.listings), wid),
                                                 QuarantineResult)
            quarantined = True
            self._note("quarantine", f"out of the pool (was {q.previous_status}) until {q.quarantine_until:%Y-%m-%d}")

            # 2. circuit breaker
            ev: BreakerEvidence = await self._db("failover_breaker_evidence", EvidenceRequest(inp.tenant, inp.address),
                                                 BreakerEvidence)
            verdict = circuit_breaker(ev)
            st.reasons = list(verdict.reasons)
            if verdict.automatic:
                st.decision = "automatic"
                await self._audit(f"failover step 2: circuit breaker closed: {'; '.join(verdict.reasons)}")
            else:
                await self._audit(f"failover step 2: circuit breaker held: {'; '.join(verdict.reasons)}")
                approved = await self._hold(ev, verdict.reasons)
                st.decision = "approved" if approved else "denied"
            self._note("circuit breaker", st.decision)

            # 3. standby
            if st.decision in ("automatic", "approved"):
                await self._activate_standby(compensations)
            else:
                self._note("standby", "not activated (denied)")

            # 4. deploy
            self._note("deploy", "deploying the tenant's pool")
            out = await self._deploy(f"failover of {inp.address}" + (f", standby {st.standby}" if st.standby else ""))
            st.deploy = f"{out.host} generation {out.generation} ({out.message})"
            await self._audit(f"failover step 4: deployed {st.deploy}")
            self._note("deploy", st.deploy)
        except ActivityError as err:
            await asyncio.shield(asyncio.ensure_future(self._compensate(compensations, quarantined, err)))
            raise ApplicationError(f"failover of {inp.address} failed at step {st.step}; compensated: "
                                   f"{st.error}", type="FailoverFailed", non_retryable=True) from err

        # 5. alert; 6. record. The failover is in effect: failures here alert, they undo nothing.
        title, body = failover_summary(inp.tenant, inp.address, list(inp.listings), st.standby,
                                       f"{st.decision}: {'; '.join(st.reasons)}", st.deploy)
        self._note("alert", title)
        await self._alert(f"{wid}/done", title, body, "warning")
        outcome = f"quarantined; {st.decision}; " + (f"standby {st.standby} warming" if st.standby else "no standby")
        try:
            await self._db("failover_finish", FinishRequest(inp.address, wid, outcome))
            self._note("record", outcome)
        except ActivityError as err:
            st.error = f"recording the outcome failed: {err.cause or err}"
            await self._alert(f"{wid}/record", f"Failover {inp.tenant}/{inp.address}: action required",
                              f"The failover is in effect ({outcome}) but recording it failed: {st.error}", "critical")
        st.status = "completed"
        return st

    async def _hold(self, ev: BreakerEvidence, reasons: list[str]) -> bool:
        assert self._state is not None
        st = self._state
        st.status = "held"
        self._held = True
        timeout = ev.policy.approval_timeout_seconds
        self._note("circuit breaker", f"held for an operator (deny after {timeout // 3600}h {timeout % 3600 // 60}m)")
        actions = [AlertAction("Approve", st.workflow_id, "approve", kind="update", arg="approved from the alert"),
                   AlertAction("Deny", st.workflow_id, "deny", kind="update", arg="denied from the alert")]
        body = "\n".join([f"Listed: {', '.join(st.listings) or st.address}", "Evidence:",
                          *[f"  - {r}" for r in reasons],
                          f"{st.address} is quarantined. Approve to activate a standby of {st.tenant}, deny to "
                          f"continue without one: `email-engine failover approve|deny {st.tenant} {st.address} "
                          f"--reason ...`. No answer within {timeout / 3600:g} h means deny."])
        await self._alert(f"{st.workflow_id}/held", f"Failover {st.tenant}/{st.address} held by the circuit breaker",
                          body, "critical", actions)
        try:
            await workflow.wait_condition(lambda: self._answer is not None, timeout=timedelta(seconds=timeout))
        except TimeoutError:
            self._answer = (False, f"no operator answer within {timeout / 3600:g} h")
        self._held = False
        st.status = "running"
        approved, reason = self._answer or (False, "")
        await self._audit(f"failover step 2: {'approved' if approved else 'denied'}: {reason}")
        st.reasons.append(f"{'approved' if approved else 'denied'}: {reason}")
        return approved

    async def _activate_standby(self, compensations: list[tuple[str, Any]]) -> None:
        assert self._state is not None
        st = self._state
        wid = st.workflow_id
        candidates: list[str] = await self._db("failover_standby_candidates", StandbyQuery(st.tenant, st.address),
                                               list[str])
        skipped: list[str] = []
        for cand in candidates:
            failures: list[str] = await workflow.execute_activity(
                "check_dns_gate", cand, result_type=list[str], start_to_close_timeout=DB_TIMEOUT, retry_policy=DB_RETRY)
            if failures:
                skipped.append(f"{cand}: {'; '.join(failures)}")
                continue
            if not await self._db("failover_claim_standby", ClaimRequest(cand, wid), bool):
                skipped.append(f"{cand}: taken by another failover")
                continue
            compensations.append(("release", cand))
            self._note("standby", f"claimed {cand}")
            compensations.append(("cancel_warmup", cand))
            await workflow.execute_activity(
                "start_ip_warmup", StartWarmupRequest(cand, f"failover standby for {st.address}", wid),
                result_type=str, start_to_close_timeout=timedelta(minutes=2), retry_policy=WARMUP_RETRY)
            st.standby = cand
            await self._audit(f"failover step 3: standby {cand} activated (warming)")
            self._note("standby", f"{cand} warming")
            return
        detail = "; ".join(skipped) or "the tenant has no standby IP"
        await self._audit(f"failover step 3: no eligible standby ({detail})"[:1024])
        self._note("standby", f"no standby: {detail}")
        await self._alert(f"{wid}/no-standby", f"Failover {st.tenant}/{st.address}: no standby",
                          f"No standby of {st.tenant} could be activated ({detail}). The pool continues without "
                          f"{st.address}; add or fix a standby IP.", "warning")

    async def _compensate(self, compensations: list[tuple[str, Any]], quarantined: bool, err: ActivityError) -> None:
        assert self._state is not None
        st = self._state
        wid = st.workflow_id
        failed_step = st.step
        st.error = f"{failed_step}: {err.cause or err}"
        self._note("compensate", f"undoing after failure in {failed_step}")
        problems: list[str] = []
        for kind, address in reversed(compensations):
            try:
                if kind == "cancel_warmup":
                    await workflow.execute_activity(
                        "cancel_ip_warmup", CancelWarmupRequest(address, "standby", f"failover of {st.address} undone",
                                                                wid),
                        start_to_close_timeout=timedelta(minutes=2), retry_policy=WARMUP_RETRY)
                    if st.standby == address:
                        st.standby = None
                elif kind == "release":
                    await self._db("failover_release_standby", ClaimRequest(address, wid), bool)
                self._note("compensate", f"{kind} {address}")
            except ActivityError as cerr:
                problems.append(f"{kind} {address}: {cerr.cause or cerr}")
                workflow.logger.exception("compensation %s %s failed", kind, address)
        mta = "the MTA was not touched"
        if quarantined:
            # The listed IP stays out; redeploy so the MTA config matches the database after the undo.
            try:
                out = await self._deploy(f"failover of {st.address} undone: pool without the listed IP and standby")
                mta = f"redeployed {out.host} generation {out.generation}"
                await self._audit(f"failover compensation: {mta}")
            except ActivityError as derr:
                mta = f"REDEPLOY FAILED ({derr.cause or derr}): the MTA may still send from {st.address}"
                problems.append(mta)
        self._note("compensate", mta)
        outcome = f"failed at {failed_step}; compensated; {mta}"
        if quarantined:
            try:
                await self._db("failover_finish", FinishRequest(st.address, wid, outcome[:512]))
            except ActivityError as ferr:
                problems.append(f"recording the outcome: {ferr.cause or ferr}")
        st.status = "failed" if problems else "compensated"
        body = "\n".join([f"Failover of {st.address} (tenant {st.tenant}) failed at step {failed_step}: "
                          f"{err.cause or err}",
                          f"Listed IP {'stays quarantined (out of rotation)' if quarantined else 'was not changed'}.",
                          f"Undone: {', '.join(f'{k} {a}' for k, a in reversed(compensations)) or 'nothing to undo'}.",
                          f"MTA: {mta}.", *(f"Problem: {p}" for p in problems),
                          "Action required: fix the cause, then re-run the scan or activate a standby by hand."])
        await self._alert(f"{wid}/failed", f"Failover {st.tenant}/{st.address} failed: action required", body,
                          "critical")
