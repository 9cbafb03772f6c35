"""DnsValidationWorkflow's contract (workflow "DnsValidationWorkflow"): id, input, the batch activity's
request and result, the progress carried across continue-as-new, and the status its `status` query and
result return. Shared by workflows/dns_validation.py, activities/dns_checks.py and its schedule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: The id of the scheduled run (the Schedule itself is models.schedules.DNS_VALIDATION).
WORKFLOW_ID = "dns-validation"


@dataclass
class DnsValidationStatus:
    total: int = 0
    done: int = 0
    passing: int = 0
    failing: int = 0
    unknown: int = 0
    errors: int = 0
    finished: bool = False
    #: "<failing|unknown|recovered>: <domain>", at most models.dns_progress.ROWS_KEPT per kind.
    changes: list[str] = field(default_factory=list)
    #: Runs of this workflow id so far (continue-as-new), and batches checked over all of them.
    runs: int = 0
    batches: int = 0


@dataclass
class DnsProgress:
    """Everything one run hands the next (continue-as-new): counts, the cursor, capped evidence."""

    status: DnsValidationStatus = field(default_factory=DnsValidationStatus)
    #: Domains with an id above `cursor` and at most `last_id` are still to be checked (ids at the start).
    cursor: int = 0
    last_id: int = 0
    #: Alert key date (the first run's day), so that a check crossing midnight alerts under one key.
    day: str = ""
    #: State changes by kind (failing / unknown / recovered): full counts, rows capped.
    change_counts: dict[str, int] = field(default_factory=dict)
    change_rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: Domains that could not be checked at all ("domain: why"), capped; the count is status.errors.
    failures: list[str] = field(default_factory=list)


@dataclass
class DnsValidationInput:
    tenant: str | None = None
    #: Domains checked at the same time inside one batch.
    concurrency: int = 8
    #: Domains per "check_dns_batch" activity call.
    batch_size: int = 200
    #: Batches per run before continue-as-new (earlier when the server suggests it).
    batches_per_run: int = 20
    #: None on the first run; the previous run's progress after a continue-as-new.
    progress: DnsProgress | None = None


@dataclass
class DnsSpan:
    """The domains of one validation: how many and the highest id (domains added later wait a day)."""

    total: int = 0
    last_id: int = 0


@dataclass
class DnsBatchRequest:
    tenant: str | None
    after_id: int
    through_id: int
    limit: int
    concurrency: int = 8
    #: The validation's day (YYYY-MM-DD): failing domains queue their `dns.failed` webhook event for it
    #: ("" on requests recorded before the event existed: none is queued).
    day: str = ""


@dataclass
class DnsBatchResult:
    """One page checked: counts, where the next page starts, and only the changes (slim rows)."""

    checked: int = 0
    passing: int = 0
    failing: int = 0
    unknown: int = 0
    errors: int = 0
    #: The highest domain id of this page that was handled (the next cursor).
    last_id: int = 0
    #: False when the page was not full: nothing is left up to `through_id`.
    more: bool = False
    changes: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    #: `dns.failed` events queued for at least one receiver (the workflow wakes the receivers).
    webhooks: int = 0
