"""What the engine worker runs: every workflow and activity on the engine task queue (the relay
activities, which act as a Temporal client, come from client/relay.py).

Each feature adds its workflows and activities to the two lists below.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from activities.accounting import ingest_host_accounting, list_accounting_hosts
from activities.active_guard import ACTIVITIES as GUARD_ACTIVITIES
from activities.alerts import send_alert
from activities.blocklists import blocklist_scan_targets, scan_blocklists
from activities.dns_checks import check_dns_batch, check_dns_domain, dns_target_span, list_dns_targets
from activities.dns_gate import check_dns_gate
from activities.failover import ACTIVITIES as FAILOVER_ACTIVITIES
from activities.fleet import fleet_snapshot
from activities.fleet_scan import ACTIVITIES as FLEET_SCAN_ACTIVITIES
from activities.mailwizz import check_mailwizz_delivery_server, ingest_mailwizz_stats, mailwizz_tenants
from activities.mailwizz_unsubscribes import ingest_mailwizz_unsubscribes
from activities.mta.deploy import deploy_mta_host
from activities.warmup import apply_warmup_step, load_warmup_context
from activities.webhooks import deliver_webhooks, give_up_webhook
from client.relay import RELAY_ACTIVITIES


def workflows() -> list[type]:
    from workflows.accounting import AccountingIngestWorkflow
    from workflows.active_guard import ActiveGuardWorkflow, GuardStepWorkflow
    from workflows.blocklist_scan import BlocklistScanWorkflow
    from workflows.dns_validation import DnsValidationWorkflow
    from workflows.failover import FailoverSaga
    from workflows.mailwizz_sync import MailwizzSyncWorkflow
    from workflows.mta_deploy import MtaDeployWorkflow
    from workflows.warmup import IpWarmupWorkflow
    from workflows.webhooks import WebhookDeliveryWorkflow

    return [MtaDeployWorkflow, FailoverSaga, BlocklistScanWorkflow, DnsValidationWorkflow, IpWarmupWorkflow,
            AccountingIngestWorkflow, MailwizzSyncWorkflow, WebhookDeliveryWorkflow, ActiveGuardWorkflow,
            GuardStepWorkflow]


def activities() -> list[Callable[..., Any]]:
    return [fleet_snapshot, send_alert, deploy_mta_host, check_dns_gate,
            dns_target_span, check_dns_batch,
            check_dns_domain, list_dns_targets,  # validations started before the batches (replay)
            *FAILOVER_ACTIVITIES, *FLEET_SCAN_ACTIVITIES, scan_blocklists, blocklist_scan_targets,
            check_mailwizz_delivery_server, ingest_mailwizz_stats, ingest_mailwizz_unsubscribes, mailwizz_tenants,
            load_warmup_context, apply_warmup_step,
            list_accounting_hosts, ingest_host_accounting,
            deliver_webhooks, give_up_webhook,
            *GUARD_ACTIVITIES,
            # relays (start_failover_saga, start_ip_warmup, cancel_ip_warmup, deploy_tenant_pool, webhooks,
            # start_guard_step)
            *RELAY_ACTIVITIES]
