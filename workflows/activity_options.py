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

# ------------------------------------------------------------------------------- webhook events
# Emitting an event is one database write: the caller waits seconds, never for a receiver. A worker
# without the activity fails it at once ("NotFoundError"): the event is dropped with a log line.

WEBHOOK_EMIT_START_TO_CLOSE = timedelta(seconds=30)
WEBHOOK_EMIT_SCHEDULE_TO_CLOSE = timedelta(minutes=10)
WEBHOOK_EMIT_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10),
                                 non_retryable_error_types=["NotFoundError"])

# ------------------------------------------------------------------------------- webhook delivery
# Giving up a head event uses DB_START_TO_CLOSE / DB_SCHEDULE_TO_CLOSE, its alert the ALERT_* ones.

#: How long the head event of a queue is retried before it is given up (Standard Webhooks senders
#: retry for days; the issue asks at least 24 h), backing off from 10 s to 10 min.
WEBHOOK_DELIVERY_SCHEDULE_TO_CLOSE = timedelta(hours=72)
WEBHOOK_DELIVERY_RETRY = RetryPolicy(initial_interval=timedelta(seconds=10), backoff_coefficient=2.0,
                                     maximum_interval=timedelta(minutes=10), maximum_attempts=0)
#: One batch: at most ~60 s of POSTs (10 s timeout each), heartbeating per event.
WEBHOOK_BATCH_START_TO_CLOSE = timedelta(minutes=3)
WEBHOOK_BATCH_HEARTBEAT = timedelta(seconds=30)
#: Marking the head event given up.
WEBHOOK_DB_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))

# ------------------------------------------------------------------------------- MailWizz sync
#: A tenant whose MailWizz cannot be read within this budget is alerted; the next run retries.
MAILWIZZ_TENANT_SCHEDULE_TO_CLOSE = timedelta(minutes=20)
MAILWIZZ_CHECK_START_TO_CLOSE = timedelta(minutes=2)
#: Reading the day's campaign figures, and the new unsubscribes.
MAILWIZZ_INGEST_START_TO_CLOSE = timedelta(minutes=10)
#: The listed types are MailWizz answers that retrying cannot fix (wrong key, API disabled for the
#: customer, wrong URL).
MAILWIZZ_RETRY = retry("MailwizzAuthError", "MailwizzForbidden", "MailwizzNotFound", "MailwizzProtocolError",
                       "LookupError", initial=10.0, maximum=120.0)

# ------------------------------------------------------------------------------- accounting ingest
#: A host whose files cannot be fetched within this budget is reported; the next hourly run resumes
#: (also the budget of listing the hosts).
ACCOUNTING_SCHEDULE_TO_CLOSE = timedelta(minutes=50)
#: One host's new accounting files over SFTP.
ACCOUNTING_HOST_START_TO_CLOSE = timedelta(minutes=30)
ACCOUNTING_HOST_HEARTBEAT = timedelta(seconds=30)
ACCOUNTING_HOST_RETRY = retry("HostKeyMismatch", "SshLoginRefused", initial=5.0, maximum=60.0)

# ------------------------------------------------------------------------------- warmup and active guard
#: Their pool deploys (DEPLOY_START_TO_CLOSE a try, heartbeating): a failed deploy is retried for this
#: long, then the warmup's next daily tick, or the guard's next change, deploys the pool again.
POOL_DEPLOY_SCHEDULE_TO_CLOSE = timedelta(hours=1)
POOL_DEPLOY_RETRY = retry("DeployFailed", "UnknownTenant", initial=5.0, maximum=60.0)

# ------------------------------------------------------------------------------- blocklist scan
#: Retries bounded by time, not a count: a database failover of a minute must not lose a scan's actions
#: (its database steps, its pool deploys, its re-warm starts).
SCAN_SCHEDULE_TO_CLOSE = timedelta(hours=1)
SCAN_DB_START_TO_CLOSE = timedelta(minutes=2)
SCAN_DB_RETRY = retry("UnknownTenant", "BadRequest", "UnknownIp", maximum=30.0)
#: The scan itself ("blocklist_fleet_scan"), heartbeating: retried for 90 min (a database or resolver
#: outage), inside the scheduled run's 2 h; an attempt records its answers afresh, so a retry is safe.
SCAN_START_TO_CLOSE = timedelta(minutes=30)
SCAN_FLEET_SCHEDULE_TO_CLOSE = timedelta(minutes=90)
SCAN_HEARTBEAT = timedelta(seconds=60)
SCAN_RETRY = retry("BadScanRequest", "UnknownTenant", initial=5.0, maximum=60.0)
#: "scan_blocklists", of scans started before the fleet scan, kept for their replay only.
SCAN_V1_RETRY = RetryPolicy(maximum_attempts=3, non_retryable_error_types=["BadScanRequest"])
#: Converging the pool of a tenant whose failover did not finish (DEPLOY_START_TO_CLOSE a try).
SCAN_DEPLOY_HEARTBEAT = timedelta(seconds=30)
SCAN_DEPLOY_RETRY = retry("DeployFailed", "UnknownTenant", maximum=30.0)
#: Re-warming an IP that left quarantine clean (DB_START_TO_CLOSE a try).
SCAN_REWARM_RETRY = retry("WarmupRefused", maximum=30.0)
SCAN_ALERT_START_TO_CLOSE = timedelta(seconds=30)
SCAN_ALERT_SCHEDULE_TO_CLOSE = timedelta(minutes=2)
SCAN_ALERT_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=10))

# ------------------------------------------------------------------------------- MTA host deploy
#: One deploy of a host ("deploy_mta_host"). It heartbeats every 5 s: a worker that died mid-deploy is
#: noticed within HOST_DEPLOY_HEARTBEAT, and the retry reclaims the host lock and restores the previous
#: release before deploying again. Retries are bounded by time (an unreachable host gets
#: HOST_DEPLOY_SCHEDULE_TO_CLOSE to come back); the listed types are not fixed by retrying.
HOST_DEPLOY_START_TO_CLOSE = timedelta(minutes=10)
HOST_DEPLOY_HEARTBEAT = timedelta(seconds=15)
HOST_DEPLOY_SCHEDULE_TO_CLOSE = timedelta(minutes=30)
HOST_DEPLOY_RETRY = retry("HostKeyMismatch", "SshLoginRefused", "UnsafePath", "DeployConfigError",
                          "DkimKeyChangeRefused", "LookupError", "NameError_", "FirewallRefused", "FirewallError",
                          initial=5.0, maximum=60.0)
#: Its failure alert, fired off (the next deploy never waits for Telegram).
HOST_DEPLOY_ALERT_START_TO_CLOSE = timedelta(seconds=30)
