"""IpWarmupWorkflow: one durable workflow per warming IP (id "warmup/<tenant>/<ip>"), issue 4.

Once a day (00:00 UTC plus a stable per-IP offset inside the wake window) it reads the IP's last 7 days
of stats, applies the safety gate, and holds, pauses 7 days (quota held, alert) or advances: persist the
new phase/quota through an idempotent activity stating the expected phase, ask the MTA deploy to put it
into effect ("deploy_tenant_pool"), alert, upsert the WarmupPhase search attribute and continue as new.
After week_6 the IP becomes active and the workflow completes.

Operator contract: signals "pause" (PauseRequest: reason, optional days) and "resume" (ResumeRequest,
optional), query "status" (WarmupStatus). Pausing twice or resuming a running warmup is harmless.

Webhooks (issue 15, workflows/webhook_events.py, under their own patch): `warmup.phase_changed` after a
step is written and deployed, `warmup.paused` / `warmup.resumed` whoever paused (signal, gate, refused
step). Signal handlers cannot run activities: they queue the event, the main loop sends it.
"""

from __future__ import annotations

import datetime as dt
import json
from datetime import timedelta

from temporalio import workflow
from temporalio.common import TypedSearchAttributes
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.alerts import Alert, AlertAction
    from activities.warmup import (
        PhaseStepOutcome,
        PhaseStepRequest,
        WarmupContext,
        WarmupContextRequest,
        schedule_from,
    )
    from models.deploys import DeployOutcome, DeployPoolRequest
    from models.enums import WarmupPhase
    from models.schedule import Schedule
    from models.search_attributes import IP_ADDRESS, IP_STATUS, TENANT, WARMUP_PHASE
    from models.warmup import (
        PAUSE_DAYS,
        StepAction,
        days_in_phase,
        decide_step,
        next_wake,
        pause_days,
        safety_gate,
        wake_offset,
    )
    from models.warmup_contracts import (
        GateSnapshot,
        PauseRequest,
        ResumeRequest,
        Transition,
        WarmupInput,
        WarmupState,
        WarmupStatus,
    )
    from models.warmup_gate import Decision, RateCheck, Rule, decide
    from workflows import activity_options as opt
    from workflows.webhook_events import emit

HISTORY_KEEP = 40  # transitions kept in the state (older ones are counted, not carried)
#: workflow.patched id of the evidence gate (issue 10): histories recorded before it take the old rule
EVIDENCE_GATE_PATCH = "warmup-gate-evidence"


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat()


@workflow.defn(name="IpWarmupWorkflow")
class IpWarmupWorkflow:
    @workflow.init
    def __init__(self, inp: WarmupInput) -> None:
        self._inp = inp
        now = workflow.now()
        if inp.state is not None:
            self._state = inp.state
            self._state.runs += 1
        else:
            started_on = inp.phase_started_on or now.date().isoformat()
            self._state = WarmupState(phase=inp.phase, phase_started_on=started_on, quota=inp.quota,
                                      deploy_pending=inp.deploy_at_start)
            if inp.first_tick_within_seconds:
                delay = wake_offset(inp.address, inp.first_tick_within_seconds) + 1
                self._state.first_tick_at = _iso(now + timedelta(seconds=delay))
            self._record("start", None, inp.phase, inp.reason)
        self._version = 0  # bumped by every signal that changes the state
        self._events: list[tuple[str, dict[str, object]]] = []  # webhook events not yet queued
        self._offset = wake_offset(inp.address, inp.wake_window_seconds)

    # ------------------------------------------------------------------------------------ messages

    @workflow.signal(name="pause")
    def pause(self, req: PauseRequest) -> None:
        days = pause_days(req.days)  # clamped: a huge or infinite `days` must not fail the workflow task
        until = None if days is None else _iso(workflow.now() + timedelta(days=days))
        self._pause(req.reason or "paused by operator", until, req.actor or "operator")

    @workflow.signal(name="resume")
    def resume(self, req: ResumeRequest | None = None) -> None:
        req = req or ResumeRequest()
        if not self._state.paused or self._state.done:
            return  # resuming a running warmup is harmless
        if req.incident is not None and req.incident != self._state.pause_incident:
            # A button of an earlier pause (already over): it must not end this one.
            workflow.logger.warning("resume by %s for pause %r ignored: the current pause is %r",
                                    req.actor, req.incident, self._state.pause_incident)
            return
        self._resume(req.reason or f"resumed by {req.actor or 'operator'}")

    @workflow.query(name="status")
    def status(self) -> WarmupStatus:
        s = self._state
        today = workflow.now().date()
        status = "active" if s.outcome == "active" else ("stopped" if s.done else "warming")
        wake = None if s.done else self._next_event(workflow.now())
        return WarmupStatus(
            workflow_id=workflow.info().workflow_id, tenant=self._inp.tenant, address=self._inp.address,
            domain=self._inp.domain, status=status, phase=None if status == "active" else s.phase, quota=s.quota,
            phase_started_on=s.phase_started_on,
            day_in_phase=days_in_phase(dt.date.fromisoformat(s.phase_started_on), today) + 1,
            paused=s.paused, pause_reason=s.pause_reason, paused_until=s.paused_until, paused_by=s.paused_by,
            next_wake=_iso(wake) if wake else None, last_gate=s.last_gate, history=list(s.history),
            history_dropped=s.history_dropped, deploy_pending=s.deploy_pending, ticks=s.ticks, runs=s.runs,
            pause_incident=s.pause_incident,
        )

    # ------------------------------------------------------------------------------------ state

    def _record(self, kind: str, from_phase: str | None, to_phase: str | None, reason: str) -> None:
        self._state.history.append(Transition(_iso(workflow.now()), kind, from_phase, to_phase, reason[:500]))
        if len(self._state.history) > HISTORY_KEEP:
            drop = len(self._state.history) - HISTORY_KEEP
            self._state.history = self._state.history[drop:]
            self._state.history_dropped += drop

    def _pause(self, reason: str, until: str | None, by: str) -> None:
        s = self._state
        if s.done:
            return
        if s.paused:
            # Pausing twice is harmless: only a longer pause (or an open-ended one) extends it.
            longer = s.paused_until is not None and (until is None or until > s.paused_until)
            if not longer:
                return
        if not s.paused:  # a new pause (extending one keeps its id: its Resume button still works)
            s.pauses += 1
            s.pause_incident = f"{workflow.info().run_id}/{s.pauses}"
        s.paused, s.pause_reason, s.paused_until, s.paused_by = True, reason[:500], until, by
        self._record("pause", s.phase, s.phase, f"{reason} (until {until or 'resumed'})")
        self._version += 1
        self._event("warmup.paused", {"phase": s.phase, "reason": s.pause_reason, "until": until, "by": by})

    def _resume(self, reason: str) -> None:
        s = self._state
        s.paused, s.pause_reason, s.paused_until, s.paused_by = False, "", None, ""
        s.pause_incident = ""
        self._record("resume", s.phase, s.phase, reason)
        self._version += 1
        self._event("warmup.resumed", {"phase": s.phase, "reason": reason[:500]})

    def _event(self, event_type: str, data: dict[str, object]) -> None:
        self._events.append((event_type, {"tenant": self._inp.tenant, "ip": self._inp.address,
                                          "domain": self._inp.domain, **data}))

    async def _flush_events(self) -> None:
        while self._events:
            event_type, data = self._events.pop(0)
            await emit(event_type, data)

    def _next_event(self, now: dt.datetime) -> dt.datetime | None:
        """When the loop wakes next: the end of a timed pause, the first (bench) tick, or the daily tick."""
        s = self._state
        if s.paused:
            return dt.datetime.fromisoformat(s.paused_until) if s.paused_until else None
        if s.ticks == 0 and s.first_tick_at:
            return max(dt.datetime.fromisoformat(s.first_tick_at), now)
        return next_wake(now, self._offset)

    def _should_continue_as_new(self) -> bool:
        info = workflow.info()
        if info.is_continue_as_new_suggested():
            return True
        return bool(self._inp.max_history_events) and info.get_current_history_length() > self._inp.max_history_events

    # ------------------------------------------------------------------------------------ run

    @workflow.run
    async def run(self, inp: WarmupInput) -> WarmupStatus:
        await self._sync_search_attributes(status="warming")
        while not self._state.done:
            await self._flush_events()
            if self._state.deploy_pending:
                await self._deploy("put the warmup quota into effect")
            now = workflow.now()
            wake = self._next_event(now)
            version = self._version

            def changed(v: int = version) -> bool:
                return self._version != v or self._should_continue_as_new()

            timed_out = False
            if wake is not None and wake <= now:
                timed_out = True
            else:
                try:
                    await workflow.wait_condition(
                        changed,
                        timeout=(wake - now) if wake is not None else None,
                        timeout_summary="next warmup tick" if not self._state.paused else "pause ends",
                    )
                except TimeoutError:
                    timed_out = True
            if not timed_out:
                if self._version == version and self._should_continue_as_new():
                    await self._continue_as_new()
                continue  # a signal changed the state: compute the next wake again
            now = workflow.now()
            if self._state.paused:
                if self._state.paused_until and now >= dt.datetime.fromisoformat(self._state.paused_until):
                    self._resume(f"pause of {self._state.paused_by} over")
                else:
                    continue
            phase_before = self._state.phase
            await self._tick(now)
            if not self._state.done and (self._state.phase != phase_before or self._should_continue_as_new()):
                await self._continue_as_new()
        await self._flush_events()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.status()

    async def _continue_as_new(self) -> None:
        await self._flush_events()
        await workflow.wait_condition(workflow.all_handlers_finished)
        next_input = WarmupInput(
            tenant=self._inp.tenant, address=self._inp.address, domain=self._inp.domain, phase=self._state.phase,
            phase_started_on=self._state.phase_started_on, quota=self._state.quota, reason=self._inp.reason,
            wake_window_seconds=self._inp.wake_window_seconds, max_history_events=self._inp.max_history_events,
            state=self._state,
        )
        workflow.continue_as_new(next_input)

    async def _sync_search_attributes(self, status: str) -> None:
        phase = "active" if status == "active" else self._state.phase
        wanted = [(TENANT, self._inp.tenant), (IP_ADDRESS, self._inp.address), (WARMUP_PHASE, phase),
                  (IP_STATUS, status)]
        current: TypedSearchAttributes = workflow.info().typed_search_attributes
        updates = [key.value_set(value) for key, value in wanted if current.get(key) != value]
        if updates:
            workflow.upsert_search_attributes(updates)

    async def _alert(self, key: str, title: str, body: str, severity: str = "info",
                     actions: list[AlertAction] | None = None) -> None:
        await workflow.execute_activity(
            "send_alert", Alert(key=key, title=title, body=body, severity=severity, actions=actions or []),
            result_type=bool, start_to_close_timeout=opt.ALERT_START_TO_CLOSE,
            schedule_to_close_timeout=opt.ALERT_SCHEDULE_TO_CLOSE, heartbeat_timeout=opt.HEARTBEAT,
            retry_policy=opt.ALERT_RETRY)

    def _resume_button(self, label: str) -> AlertAction:
        """A Resume button bound to the current pause: pressed after that pause is over, it does nothing."""
        arg = json.dumps({"reason": f"{label.lower()} via Telegram by {{actor}}", "actor": "{actor}",
                          "incident": self._state.pause_incident})
        return AlertAction(label, workflow.info().workflow_id, "resume", arg=arg)

    async def _deploy(self, reason: str) -> bool:
        wid = workflow.info().workflow_id
        try:
            outcome = await workflow.execute_activity(
                "deploy_tenant_pool", DeployPoolRequest(self._inp.tenant, f"{self._inp.address}: {reason}", wid),
                result_type=DeployOutcome, start_to_close_timeout=opt.DEPLOY_START_TO_CLOSE,
                schedule_to_close_timeout=opt.POOL_DEPLOY_SCHEDULE_TO_CLOSE, heartbeat_timeout=opt.DEPLOY_HEARTBEAT,
                retry_policy=opt.POOL_DEPLOY_RETRY)
        except ActivityError as err:
            self._state.deploy_pending = True
            cause = err.cause.message if isinstance(err.cause, ApplicationError) else str(err.cause or err)
            self._record("deploy_failed", self._state.phase, self._state.phase, cause)
            await self._alert(f"{wid}/deploy", f"Warmup {self._inp.address}: MTA deploy failed",
                              f"{cause}. The inventory holds phase {self._state.phase} (quota {self._state.quota}); "
                              "the deploy is retried at the next daily tick.", "critical")
            return False
        self._state.deploy_pending = False
        return outcome is not None

    async def _tick(self, now: dt.datetime) -> None:
        s = self._state
        today = now.date()
        if s.last_tick_day == today.isoformat():
            return
        wid = workflow.info().workflow_id
        ctx: WarmupContext = await workflow.execute_activity(
            "load_warmup_context", WarmupContextRequest(self._inp.address, today.isoformat()),
            result_type=WarmupContext, start_to_close_timeout=opt.DB_START_TO_CLOSE,
            schedule_to_close_timeout=opt.DB_SCHEDULE_TO_CLOSE, heartbeat_timeout=opt.HEARTBEAT,
            retry_policy=opt.DB_RETRY)
        s.last_tick_day, s.ticks = today.isoformat(), s.ticks + 1
        if ctx.status != "warming":
            s.done, s.outcome = True, "stopped"
            self._record("stopped", s.phase, ctx.phase, f"the inventory says {ctx.status}; warmup ends")
            await self._alert(f"{wid}/stopped", f"Warmup {self._inp.address} stopped",
                              f"The inventory records the IP as {ctx.status}; the warmup workflow ends.", "warning")
            return
        moved_on = bool(ctx.phase_started_on) and ctx.phase_started_on != s.phase_started_on
        if ctx.phase and (ctx.phase != s.phase or moved_on):
            # The inventory is the desired state: an operator (inventory load --apply-state) moved the IP.
            self._record("sync", s.phase, ctx.phase, "phase taken from the inventory")
            s.phase, s.phase_started_on = ctx.phase, ctx.phase_started_on or s.phase_started_on
        schedule = schedule_from(ctx.schedule, ctx.active_quota)
        phase = WarmupPhase(s.phase)
        s.quota = schedule.quota(phase)
        if not workflow.patched(EVIDENCE_GATE_PATCH):
            await self._legacy_tick(ctx, now, phase, schedule)
            return
        window_days = (dt.date.fromisoformat(ctx.window_to) - dt.date.fromisoformat(ctx.window_from)).days + 1
        decision = decide(phase, dt.date.fromisoformat(s.phase_started_on), today, ctx.stats, ctx.thresholds,
                          schedule, window_days)
        s.last_gate = _snapshot(today, ctx, decision)
        ev = decision.evaluation
        figures = f"Window {ctx.window_from}..{ctx.window_to}: {ev.figures()}"
        if decision.action == StepAction.HOLD:
            if decision.rule not in (Rule.INSUFFICIENT_DATA, Rule.NOT_YET_CLEAR):
                s.hold_rule, s.hold_since = "", None
            elif s.hold_rule != decision.rule.value:  # a new hold: alert once, name the figures
                s.hold_rule, s.hold_since = decision.rule.value, today.isoformat()
                self._record("hold", s.phase, s.phase, decision.reason)
                await self._alert(
                    f"{wid}/hold/{decision.rule.value}/{today.isoformat()}",
                    f"Warmup {self._inp.address} held at {s.phase}: {decision.rule.value.replace('-', ' ')}",
                    f"{decision.reason}. {figures}. Quota stays {s.quota}/day; the gate is read again every "
                    "day and this hold is not alerted again."
                    + (" Check that the MTA's accounting files reach the engine (`email-engine stats show "
                       f"{self._inp.address}`) and that the tenant's traffic reaches this IP."
                       if decision.rule == Rule.INSUFFICIENT_DATA else ""),
                    "warning", [AlertAction("Pause", wid, "pause")])
            return
        s.hold_rule, s.hold_since = "", None
        if decision.action == StepAction.PAUSE:
            until = _iso(now + timedelta(days=PAUSE_DAYS))
            self._pause(decision.reason, until, "gate")
            await self._alert(
                f"{wid}/gate", f"Warmup {self._inp.address} paused {PAUSE_DAYS} days: safety gate failed",
                f"{decision.reason}. {figures}. Quota held at {s.quota}/day ({s.phase}) until {until}.", "warning",
                [self._resume_button("Resume now")])
            return
        await self._step(decision.action, decision.phase, decision.quota, decision.reason, figures, today)

    async def _legacy_tick(self, ctx: WarmupContext, now: dt.datetime, phase: WarmupPhase,
                           schedule: Schedule) -> None:
        """The tick before issue 10 (point-estimate gate, a window with nothing sent passed), unchanged:
        only histories recorded before EVIDENCE_GATE_PATCH take it."""
        s = self._state
        today = now.date()
        wid = workflow.info().workflow_id
        gate = safety_gate(ctx.stats, ctx.thresholds)
        s.last_gate = GateSnapshot(
            day=today.isoformat(), passed=gate.passed, reasons=gate.reasons, window_from=ctx.window_from,
            window_to=ctx.window_to, sent=gate.sent, delivered=gate.delivered, bounced=gate.bounced,
            complaints=gate.complaints, opens=gate.opens, bounce_rate=gate.bounce_rate,
            complaint_rate=gate.complaint_rate, open_rate=gate.open_rate, max_bounce_rate=gate.max_bounce_rate,
            max_complaint_rate=gate.max_complaint_rate, min_open_rate=gate.min_open_rate)
        decision = decide_step(phase, dt.date.fromisoformat(s.phase_started_on), today, gate, schedule)
        if decision.action == StepAction.HOLD:
            return
        if decision.action == StepAction.PAUSE:
            until = _iso(now + timedelta(days=PAUSE_DAYS))
            self._pause(decision.reason, until, "gate")
            await self._alert(
                f"{wid}/gate", f"Warmup {self._inp.address} paused {PAUSE_DAYS} days: safety gate failed",
                f"{'; '.join(gate.reasons)}. Window {ctx.window_from}..{ctx.window_to}: {gate.summary()}. "
                f"Quota held at {s.quota}/day ({s.phase}) until {until}.", "warning",
                [self._resume_button("Resume now")])
            return
        await self._step(decision.action, decision.phase, decision.quota, decision.reason,
                         f"Gate on {ctx.window_from}..{ctx.window_to}: {gate.summary()}", today)

    async def _step(self, action: StepAction, to: WarmupPhase | None, quota: int, reason: str, figures: str,
                    today: dt.date) -> None:
        """Advance (or activate): persist through the idempotent activity, deploy, alert."""
        s = self._state
        wid = workflow.info().workflow_id
        to_phase = to.value if to else None
        try:
            step: PhaseStepOutcome = await workflow.execute_activity(
                "apply_warmup_step",
                PhaseStepRequest(self._inp.address, s.phase, to_phase, quota, today.isoformat(), reason, wid),
                result_type=PhaseStepOutcome, start_to_close_timeout=opt.DB_START_TO_CLOSE,
                schedule_to_close_timeout=opt.DB_SCHEDULE_TO_CLOSE, heartbeat_timeout=opt.HEARTBEAT,
                retry_policy=opt.DB_RETRY)
        except ActivityError as err:
            cause = err.cause.message if isinstance(err.cause, ApplicationError) else str(err.cause or err)
            self._pause(f"phase step refused: {cause}", None, "engine")
            await self._alert(f"{wid}/step", f"Warmup {self._inp.address} paused: phase step refused",
                              f"{cause}. Fix the inventory, then resume.", "critical",
                              [self._resume_button("Resume")])
            return
        from_phase = s.phase
        if action == StepAction.ACTIVATE:
            s.done, s.outcome, s.quota = True, "active", step.quota
            self._record("active", from_phase, None, reason)
        else:
            assert to_phase is not None
            s.phase, s.phase_started_on, s.quota = to_phase, today.isoformat(), step.quota
            self._record("advance", from_phase, to_phase, reason)
        await self._deploy(reason)
        await self._sync_search_attributes(status="active" if s.done else "warming")
        self._event("warmup.phase_changed", {"from_phase": from_phase, "to_phase": to_phase or "active",
                                             "daily_quota": s.quota, "reason": reason[:500]})
        await self._flush_events()
        await self._alert(
            f"{wid}/{to_phase or 'active'}",
            f"Warmup {self._inp.address}: {'active' if s.done else to_phase} ({s.quota}/day)",
            f"{reason}. {figures}.", actions=[] if s.done else [AlertAction("Pause", wid, "pause")])


def _bounds(c: RateCheck) -> list[float] | None:
    return None if c.lower is None or c.upper is None else [c.lower, c.upper]


def _snapshot(today: dt.date, ctx: WarmupContext, d: Decision) -> GateSnapshot:
    """What the status query shows of a decision: counts, rates, bounds, the rule that fired."""
    ev, st = d.evaluation, ctx.stats
    reasons = [c.text() for c in ev.checks if c.verdict.value in ("excess", "unclear")]
    if not ev.enough_mail:
        reasons.append(f"delivered {ev.delivered} < {ev.required} required")
    return GateSnapshot(
        day=today.isoformat(), passed=not reasons, reasons=reasons, window_from=ctx.window_from,
        window_to=ctx.window_to, sent=st.sent, delivered=st.delivered, bounced=st.bounced,
        complaints=st.complaints, opens=st.opens, bounce_rate=ev.bounce.rate or 0.0,
        complaint_rate=ev.complaint.rate or 0.0, open_rate=ev.open.rate, max_bounce_rate=ev.bounce.limit,
        max_complaint_rate=ev.complaint.limit, min_open_rate=ev.open.limit, action=d.action.value,
        rule=d.rule.value, reason=d.reason, required_delivered=ev.required,
        min_delivered_share=ev.min_delivered_share, confidence=ev.confidence, open_base=st.open_base,
        bounce_bounds=_bounds(ev.bounce), complaint_bounds=_bounds(ev.complaint), open_bounds=_bounds(ev.open))
