"""Imports every table module, so SQLModel.metadata knows the whole schema (migrations, tests)."""

import models.accounting_tables
import models.deploy_history
import models.dns_tables
import models.failover_tables
import models.firewall_tables
import models.guard_tables
import models.ops_tables
import models.rotation_tables
import models.tables
import models.webhook_tables  # noqa: F401
