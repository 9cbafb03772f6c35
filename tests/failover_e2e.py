"""The failover end-to-end setup, shared by tests/test_failover_e2e.py and bench/failover_latency.py:
real Postfix (tests/servers/postfix.py) and real rbldnsd (tests/servers/rbldnsd.py) on loopback, the
fleet of tests/failover_support.py with its MTA host pointed at the Postfix instance's config dir and
deployed on this machine (EMAIL_ENGINE_MTA_LOCAL_HOSTS: validate, reload, verify, roll back with local
files and commands, through the real deploy_mta_host activity)."""

from __future__ import annotations

import datetime as dt

from sqlmodel import col, select

from activities.db import session_scope
from models.deploy_history import MtaDeployRecord
from models.failover_tables import BlocklistScanRun
from tests import failover_support as fs

FEEDER_A = "127.0.40.200"  # fo-a's MailWizz source IP (failover_support.inventory_text)


def seed_for(url: str, config_dir: str) -> None:
    fs.seed(url, config_dir=config_dir, host_addr="127.0.0.1", enabled=True)


def env_for(resolver: str) -> dict[str, str]:
    return {"EMAIL_ENGINE_DNS_RESOLVERS": resolver, "EMAIL_ENGINE_MTA_LOCAL_HOSTS": fs.HOST}


def _aware(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def reloads_since(url: str, since: dt.datetime) -> list[dt.datetime]:
    """Times of the deploys to the MTA host that changed its config and reloaded it (ok), after `since`."""
    with session_scope(url) as s:
        rows = s.exec(select(MtaDeployRecord.at).where(MtaDeployRecord.host == fs.HOST, col(MtaDeployRecord.ok),
                                                       col(MtaDeployRecord.changed)))
        return sorted(t for t in map(_aware, rows) if t > since)


def detected_at(url: str, scan_workflow_id: str) -> dt.datetime:
    """When the scan's evaluation decided (the detection)."""
    with session_scope(url) as s:
        run = s.exec(select(BlocklistScanRun).where(BlocklistScanRun.workflow_id == scan_workflow_id)).one()
        assert run.finished_at is not None
        return _aware(run.finished_at)
