"""Custom search attributes: the Web UI filters the fleet by these (DESIGN.md §6).

A workflow contract: workflows set them, client/ reads them. Registered by the run command on the
dev server (`--search-attribute`), and in production with `temporal operator search-attribute create`
(deploy/ documents it).
"""

from temporalio.common import SearchAttributeKey

TENANT = SearchAttributeKey.for_keyword("Tenant")
IP_ADDRESS = SearchAttributeKey.for_keyword("IpAddress")
WARMUP_PHASE = SearchAttributeKey.for_keyword("WarmupPhase")
IP_STATUS = SearchAttributeKey.for_keyword("IpStatus")

ALL = (TENANT, IP_ADDRESS, WARMUP_PHASE, IP_STATUS)
