"""DnsValidationWorkflow's contract (workflow "DnsValidationWorkflow"): id, input, and the status
its `status` query and result return. Shared by workflows/dns_validation.py and its schedule.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: The id of the scheduled run (the Schedule itself is models.schedules.DNS_VALIDATION).
WORKFLOW_ID = "dns-validation"


@dataclass
class DnsValidationInput:
    tenant: str | None = None
    concurrency: int = 8


@dataclass
class DnsValidationStatus:
    total: int = 0
    done: int = 0
    passing: int = 0
    failing: int = 0
    unknown: int = 0
    errors: int = 0
    finished: bool = False
    changes: list[str] = field(default_factory=list)
