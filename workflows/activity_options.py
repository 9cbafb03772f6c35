"""Activity timeouts and retries shared by the workflows (issue 11: recover in seconds, survive a blip).

Why these numbers: a worker killed mid-activity is noticed by the server only through a timeout. Every
activity heartbeats while it runs (activities.keepalive), so a short heartbeat_timeout finds a dead
worker in seconds, and a short start_to_close_timeout bounds a call that hangs. How long to keep
retrying is a budget of time (schedule_to_close_timeout), never a small attempt count: a database
failover of a minute, or a Telegram outage, must not fail a workflow that retries every few seconds.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

#: A worker that stops heartbeating for this long is dead: the attempt is retried on another worker.
HEARTBEAT = timedelta(seconds=10)

#: Database activities: one attempt is short; retries go on for hours (an outage, a failover).
DB_START_TO_CLOSE = timedelta(seconds=30)
DB_SCHEDULE_TO_CLOSE = timedelta(hours=6)

#: Alerts: a Telegram outage must not hold up the workflow for long, nor retry forever.
ALERT_START_TO_CLOSE = timedelta(seconds=60)
ALERT_SCHEDULE_TO_CLOSE = timedelta(minutes=10)

#: MTA deploys (render, upload, validate, reload, verify) and waiting for one.
DEPLOY_START_TO_CLOSE = timedelta(minutes=15)
DEPLOY_HEARTBEAT = HEARTBEAT  # deploy_tenant_pool heartbeats every 2 s (activities.keepalive)


def retry(*non_retryable: str, initial: float = 1.0, maximum: float = 10.0) -> RetryPolicy:
    """Unlimited attempts (the schedule_to_close_timeout is the budget), backing off to `maximum`
    seconds so a recovered database is used within seconds; `non_retryable` error types fail at once."""
    return RetryPolicy(initial_interval=timedelta(seconds=initial), backoff_coefficient=2.0,
                       maximum_interval=timedelta(seconds=maximum), maximum_attempts=0,
                       non_retryable_error_types=list(non_retryable))


#: Retries of database activities. The listed types say the data is wrong, not the database down.
DB_RETRY = retry("UnexpectedStatus", "UnknownIp", "UnknownTenant", "BadRequest", "UnexpectedPhase",
                 "DatabaseMissing")
ALERT_RETRY = retry(initial=2.0, maximum=30.0)


# ------------------------------------------------------------------------------- failover saga
# Database steps and compensations ride out a database failover or restart (hours), backing off to 30 s;
# one attempt is short, so a crashed worker's attempt is retried within seconds.

#: The saga's database steps and compensations (and the standby's DNS gate).
SAGA_RETRY = retry("UnexpectedStatus", "UnknownIp", "BadRequest", maximum=30.0)
#: The saga's deploy waits for the serialized host deploy (DEPLOY_START_TO_CLOSE a try, heartbeating).
SAGA_DEPLOY_SCHEDULE_TO_CLOSE = timedelta(hours=2)
SAGA_DEPLOY_RETRY = retry("DeployFailed", "UnknownTenant", initial=5.0, maximum=30.0)
#: Start and cancel of an IP's warmup (a database write and a workflow start/terminate): the saga's standby,
#: the active guard's step-down.
WARMUP_CONTROL_RETRY = retry("WarmupRefused", "WarmupCancelRefused", initial=2.0, maximum=30.0)
#: The saga's alerts never hold it for long (Telegram down: logged, the saga goes on).
SAGA_ALERT_START_TO_CLOSE = timedelta(seconds=20)
SAGA_ALERT_SCHEDULE_TO_CLOSE = timedelta(minutes=2)
SAGA_ALERT_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=10))
#: Reading an IP's state for the alert after a compensation failed.
SAGA_DESCRIBE_SCHEDULE_TO_CLOSE = timedelta(minutes=5)

# ------------------------------------------------------------------------------- DNS validation
# Retries bounded by time, not a count: a database failover of a few minutes must not lose the day's check.

DNS_DB_START_TO_CLOSE = timedelta(minutes=2)
DNS_SCHEDULE_TO_CLOSE = timedelta(hours=2)
DNS_RETRY = retry("UnknownTenant", "BadRequest", maximum=30.0)
#: One batch: 200 domains at 8 at a time, each at most a few resolver timeouts (unknown, not waiting).
DNS_BATCH_START_TO_CLOSE = timedelta(minutes=30)
DNS_BATCH_HEARTBEAT = timedelta(minutes=1)
DNS_ALERT_START_TO_CLOSE = timedelta(minutes=1)
DNS_ALERT_SCHEDULE_TO_CLOSE = timedelta(minutes=5)
DNS_ALERT_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=30))
#: Validations started before the batches, kept for their replay only: counted attempts, as recorded.
DNS_V1_LIST_START_TO_CLOSE = timedelta(minutes=2)
DNS_V1_CHECK_START_TO_CLOSE = timedelta(minutes=3)
DNS_V1_RETRY = RetryPolicy(initial_interval=timedelta(seconds=5), maximum_attempts=3)
