"""The fleet gauges' metric families, built from what the database reads returned (workers/metrics.py).

Names and meanings are the contract of the Grafana dashboards (deploy/grafana/, scripts/
grafana_dashboards.py); tests/test_grafana_dashboards.py checks every dashboard query against a real
scrape. Per-IP families carry the labels tenant, ip, status, phase; the warmup week carries only
tenant and ip, so one IP's line continues across its phase changes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client.core import GaugeMetricFamily

from activities.fleet_metrics import IpFigures
from models.enums import SENDING_STATUSES, IpStatus
from models.fleet_metrics import cap_ips, gate_rates, phase_days, warmup_week

IP_LABELS = ["tenant", "ip", "status", "phase"]
_SENDING = {s.value for s in SENDING_STATUSES}


def gauge(name: str, doc: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


def fleet_families(data: dict[str, Any]) -> Iterator[GaugeMetricFamily]:
    """Per tenant: IPs by status, capacity, open listings, DNS failures; the last blocklist scan."""
    ips = gauge("email_engine_ips", "Sending IPs by tenant and status", ["tenant", "status"])
    cap = gauge("email_engine_daily_capacity", "Sum of today's quotas of warming and active IPs", ["tenant"])
    for tenant, row in data["tenants"].items():
        for status, n in row["by_status"].items():
            ips.add_metric([tenant, status], n)
        cap.add_metric([tenant], row["capacity"])
    yield ips
    yield cap
    bl = data["blocklists"]
    listings = gauge("email_engine_open_listings", "Blocklist listings not cleared yet", ["tenant"])
    for tenant in data["tenants"]:
        listings.add_metric([tenant], bl["open_listings"].get(tenant, 0))
    yield listings
    scan = bl["last_scan"]
    if scan.get("available") and not scan.get("never") and scan.get("age_hours") is not None:
        age = gauge("email_engine_last_scan_age_seconds", "Seconds since the last blocklist scan")
        age.add_metric([], scan["age_hours"] * 3600)
        yield age
        broken = gauge("email_engine_broken_zones", "Zones that failed their self-test in the last scan")
        broken.add_metric([], len(scan["broken_zones"]))
        yield broken
    dns = data["dns"]
    if dns.get("available"):
        fails = gauge("email_engine_dns_failures", "Domains whose latest DNS check did not pass", ["tenant"])
        per: dict[str, int] = {t: 0 for t in data["tenants"]}
        for f in dns["failing"]:
            per[f["tenant"]] = per.get(f["tenant"], 0) + 1
        for tenant, n in per.items():
            fails.add_metric([tenant], n)
        yield fails


def ip_families(fig: IpFigures, max_ips: int) -> Iterator[GaugeMetricFamily]:
    """Per IP: quota, 7-day volume and the gate's bounce/complaint rates with lower bounds, warmup week;
    per tenant: the gate's limits; per tenant and zone: listed IPs."""
    kept, dropped = cap_ips(fig.ips, max_ips)
    quota = gauge("email_engine_ip_daily_quota", "Today's quota of each warming or active IP", IP_LABELS)
    sent = gauge("email_engine_ip_sent_7d", "Messages the IP sent over the warmup gate's window (the 7 full "
                 "UTC days before today); absent when it sent nothing", IP_LABELS)
    bounce = gauge("email_engine_ip_bounce_rate_7d", "Bounced / sent over the gate window, the warmup gate's "
                   "own figure", IP_LABELS)
    bounce_lo = gauge("email_engine_ip_bounce_rate_7d_lower_bound", "Wilson lower bound of the 7-day bounce "
                      "rate at the gate's confidence: above the limit is an excess with confidence", IP_LABELS)
    complaint = gauge("email_engine_ip_complaint_rate_7d", "Complaints / delivered over the gate window, the "
                      "warmup gate's own figure", IP_LABELS)
    complaint_lo = gauge("email_engine_ip_complaint_rate_7d_lower_bound", "Wilson lower bound of the 7-day "
                         "complaint rate at the gate's confidence", IP_LABELS)
    week = gauge("email_engine_ip_warmup_week", "Warmup phase of a warming IP as a number: week_1 = 1 ... "
                 "week_6 = 6", ["tenant", "ip"])
    days = gauge("email_engine_ip_warmup_phase_days", "Full days a warming IP has been in its current phase",
                 ["tenant", "ip"])
    for row in kept:
        labels = row.labels
        if row.status in _SENDING:
            quota.add_metric(labels, row.quota)
        stats = fig.windows.get(row.address)
        if stats is not None and (stats.sent or stats.delivered):
            b, c = gate_rates(stats, fig.thresholds[row.tenant], row.quota)
            sent.add_metric(labels, stats.sent)
            for check, rate, lower in ((b, bounce, bounce_lo), (c, complaint, complaint_lo)):
                if check.rate is not None and check.lower is not None:
                    rate.add_metric(labels, check.rate)
                    lower.add_metric(labels, check.lower)
        n = warmup_week(row.phase)
        if row.status == IpStatus.WARMING.value and n is not None:
            week.add_metric([row.tenant, row.address], n)
            d = phase_days(row, fig.today)
            if d is not None:
                days.add_metric([row.tenant, row.address], d)
    yield from (quota, sent, bounce, bounce_lo, complaint, complaint_lo, week, days)
    capped = gauge("email_engine_ip_series_dropped", "IPs left out of the per-IP families by the cap "
                   "(EMAIL_ENGINE_FLEET_METRICS_MAX_IPS); 0 when every IP is exported")
    capped.add_metric([], dropped)
    yield capped
    max_b = gauge("email_engine_tenant_max_bounce_rate", "The warmup gate's bounce rate limit of the tenant",
                  ["tenant"])
    max_c = gauge("email_engine_tenant_max_complaint_rate", "The warmup gate's complaint rate limit of the "
                  "tenant", ["tenant"])
    for tenant, th in sorted(fig.thresholds.items()):
        max_b.add_metric([tenant], th.max_bounce_rate)
        max_c.add_metric([tenant], th.max_complaint_rate)
    yield max_b
    yield max_c
    listed = gauge("email_engine_listed_ips", "IPs with a blocklist listing not cleared yet, per tenant and zone",
                   ["tenant", "zone"])
    for (tenant, zone), n in sorted(fig.listed.items()):
        listed.add_metric([tenant, zone], n)
    yield listed


def deploy_families(deploys: dict[str, Any], age_seconds: float) -> Iterator[GaugeMetricFamily]:
    """Per MTA host (activities.status.deploys_section): drift between the config the inventory renders
    now and the last successful deploy, enabled, the last deploy's outcome and time."""
    if not deploys.get("available"):
        return
    drift = gauge("email_engine_mta_config_drift", "1: the inventory renders a config different from the last "
                  "successful deploy (or none yet); 0: in sync; absent: could not render", ["host", "backend"])
    enabled = gauge("email_engine_mta_host_enabled", "1 if deploys may reach the MTA host", ["host"])
    ok = gauge("email_engine_mta_last_deploy_ok", "1 if the host's last deploy succeeded, 0 if it failed or "
               "was rolled back", ["host"])
    at = gauge("email_engine_mta_last_deploy_timestamp_seconds", "Unix time of the host's last deploy", ["host"])
    for host, h in sorted(deploys["hosts"].items()):
        if h["drift"] is not None:
            drift.add_metric([host, str(h["backend"])], int(h["drift"]))
        enabled.add_metric([host], int(h["enabled"]))
        last = h["last_deploy"]
        if last is not None:
            ok.add_metric([host], int(last["ok"] and not last["rolled_back"]))
            if last["at"] is not None:
                at.add_metric([host], last["at"].timestamp())
    age = gauge("email_engine_mta_drift_age_seconds", "Seconds since the drift was computed (it is cached: "
                "rendering every host's config is the costly part of a scrape)")
    age.add_metric([], age_seconds)
    yield from (drift, enabled, ok, at, age)
