"""Email Engine's Grafana dashboards, generated from code with grafana-foundation-sdk (issue 15).

    .venv/bin/python -m scripts.grafana_dashboards           # (re)write deploy/grafana/
    .venv/bin/python -m scripts.grafana_dashboards --check   # exit 1 if deploy/grafana/ differs from the code

Writes three dashboards into deploy/grafana/dashboards/ (fleet; IP reputation and warmup; Temporal
workers) and the Grafana provisioning files into deploy/grafana/provisioning/. The output is
deterministic (sorted keys, fixed uids and panel ids), so the committed files are exactly what this
code writes (tests/test_grafana_dashboards.py regenerates and compares them byte for byte, and checks
every query against what a real worker exports). Needs the `grafana` extra; the engine never imports
this module.

Panel builders: scripts/grafana_panels.py. Every panel reads the Prometheus data source chosen in
the `datasource` variable. The fleet gauges are workers/fleet_gauges.py; the Temporal panels read
the SDK's own metrics (EMAIL_ENGINE_METRICS_ADDRESS), whose latencies are in milliseconds and whose
counters have no `_total` suffix.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from scripts.grafana_panels import board, grid, label_variable, q, single, states, ts

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "deploy" / "grafana"
HEADER = "# Written by scripts/grafana_dashboards.py: edit the code and regenerate, not this file.\n"
#: Where the provisioning file tells Grafana to read the dashboards (copy deploy/grafana/dashboards/ there).
DASHBOARD_DIR = "/var/lib/grafana/dashboards/email-engine"

T = 'tenant=~"$tenant"'
TI = 'tenant=~"$tenant", ip=~"$ip"'
TQ = 'namespace=~"$namespace", task_queue=~"$task_queue"'
RI = "$__rate_interval"


def rate_limit(name: str) -> Dataquery:
    return q(f"max by (tenant) (email_engine_tenant_max_{name}_rate{{{T}}})", "{{tenant}} limit")


# ------------------------------------------------------------------------------------------ dashboards


def fleet() -> db.Dashboard:
    return (
        board("email-engine-fleet", "Email Engine / Fleet", "IPs by status, capacity, blocklist listings, DNS "
              "checks and MTA config drift, from the worker's fleet gauges (EMAIL_ENGINE_FLEET_METRICS_ADDRESS).",
              "now-7d")
        .with_variable(label_variable("tenant", "Tenant", "label_values(email_engine_ips, tenant)"))
        .with_row(db.Row("Fleet"))
        .with_panel(single("Inventory database readable", "0: the worker's fleet endpoint cannot read the "
                           "inventory database (every other panel then stops).", q("min(email_engine_fleet_scrape_ok)"),
                           w=4))
        .with_panel(single("Sending IPs", "Warming and active IPs of the selected tenants.",
                           q(f'sum(email_engine_ips{{{T}, status=~"warming|active"}})'), w=4))
        .with_panel(single("Daily capacity", "Sum of today's quotas of warming and active IPs.",
                           q(f"sum(email_engine_daily_capacity{{{T}}})"), unit="short", w=4))
        .with_panel(single("IPs in quarantine", "Listed IPs taken out of the pools.",
                           q(f'sum(email_engine_ips{{{T}, status="quarantine"}})'), w=4, red_from=1))
        .with_panel(single("Per-IP series left out", "IPs over EMAIL_ENGINE_FLEET_METRICS_MAX_IPS: the per-IP "
                           "panels miss them; raise the cap.", q("max(email_engine_ip_series_dropped)"), w=4,
                           red_from=1))
        .with_panel(single("MTA drift checked", "Age of the cached drift computation.",
                           q("max(email_engine_mta_drift_age_seconds)"), unit="s", w=4))
        .with_panel(ts("IPs by status per tenant", "Every IP of the inventory by tenant and status, stacked.",
                       q(f"sum by (tenant, status) (email_engine_ips{{{T}}})", "{{tenant}} {{status}}"),
                       stacked=True, legend_table=True))
        .with_panel(ts("Capacity per day", "Today's quota sum of warming and active IPs per tenant, and the "
                       "mail actually sent per day (mean of the last 7 full days).",
                       q(f"sum by (tenant) (email_engine_daily_capacity{{{T}}})", "{{tenant}} capacity"),
                       q(f"sum by (tenant) (email_engine_ip_sent_7d{{{T}}}) / 7", "{{tenant}} sent per day"),
                       unit="short", min_val=0))
        .with_row(db.Row("Blocklists and DNS"))
        .with_panel(ts("Listed IPs per tenant and zone", "IPs with a listing not cleared yet, per blocklist zone.",
                       q(f"sum by (tenant, zone) (email_engine_listed_ips{{{T}}})", "{{tenant}} {{zone}}"),
                       stacked=True, min_val=0))
        .with_panel(single("Open listings", "Listings not cleared yet (an IP listed on two zones counts twice).",
                           q(f"sum(email_engine_open_listings{{{T}}})"), w=4, red_from=1))
        .with_panel(single("Last blocklist scan", "Seconds since the last scan (Schedule every 4 h).",
                           q("max(email_engine_last_scan_age_seconds)"), unit="s", w=4, red_from=6 * 3600))
        .with_panel(single("Broken zones", "Zones that failed their self-test in the last scan.",
                           q("max(email_engine_broken_zones)"), w=4, red_from=1))
        .with_panel(ts("Domains failing DNS checks", "Sending domains whose latest SPF/DKIM/DMARC/PTR check did "
                       "not pass, per tenant.", q(f"sum by (tenant) (email_engine_dns_failures{{{T}}})",
                                                  "{{tenant}}"), min_val=0))
        .with_panel(states("Blocklisted zones", "When each tenant had IPs listed on each zone.",
                           q(f"sum by (tenant, zone) (email_engine_listed_ips{{{T}}}) > bool 0", "{{tenant}} {{zone}}"),
                           {"1": ("listed", "red")}))
        .with_row(db.Row("MTA config deploys"))
        .with_panel(states("Config drift per MTA host", "Whether the inventory renders a config different from "
                           "the host's last successful deploy (drift until the first deploy).",
                           q("max by (host) (email_engine_mta_config_drift)", "{{host}}"),
                           {"0": ("in sync", "green"), "1": ("drift", "orange")}))
        .with_panel(states("Last deploy per MTA host", "Outcome of each host's last deploy (failed includes "
                           "rolled back).", q("max by (host) (email_engine_mta_last_deploy_ok)", "{{host}}"),
                           {"0": ("failed", "red"), "1": ("ok", "green")}))
        .with_panel(grid("MTA hosts", "Now, per host: drift, deploys enabled, last deploy ok, seconds since it.",
                         ("drift", "max by (host, backend) (email_engine_mta_config_drift)"),
                         ("enabled", "max by (host) (email_engine_mta_host_enabled)"),
                         ("last deploy ok", "max by (host) (email_engine_mta_last_deploy_ok)"),
                         ("seconds since", "time() - max by (host) (email_engine_mta_last_deploy_timestamp_seconds)"),
                         h=7))
    )


def ips() -> db.Dashboard:
    sel = f"{{{TI}}}"
    return (
        board("email-engine-ips", "Email Engine / IP reputation and warmup", "Per IP: the 7-day bounce and "
              "complaint rates the warmup gate judges (with their Wilson lower bounds: above the limit is an "
              "excess with confidence), quotas and warmup weeks. Rate panels show the 20 highest IPs of the "
              "selection.", "now-30d")
        .with_variable(label_variable("tenant", "Tenant", "label_values(email_engine_ips, tenant)"))
        .with_variable(label_variable("ip", "IP", f"label_values(email_engine_ip_daily_quota{{{T}}}, ip)"))
        .with_row(db.Row("Bounce and complaint rates (last 7 full UTC days)"))
        .with_panel(ts("Bounce rate per IP", "bounced / sent over the gate window; the line per tenant is its limit.",
                       q(f"topk(20, email_engine_ip_bounce_rate_7d{sel})", "{{ip}}"), rate_limit("bounce"),
                       unit="percentunit", min_val=0))
        .with_panel(ts("Bounce rate lower bound per IP", "Wilson lower bound at the gate's confidence: an IP above "
                       "its limit here is paused by the warmup gate.",
                       q(f"topk(20, email_engine_ip_bounce_rate_7d_lower_bound{sel})", "{{ip}}"), rate_limit("bounce"),
                       unit="percentunit", min_val=0))
        .with_panel(ts("Complaint rate per IP", "complaints / delivered over the gate window; the line per tenant is "
                       "its limit.", q(f"topk(20, email_engine_ip_complaint_rate_7d{sel})", "{{ip}}"),
                       rate_limit("complaint"), unit="percentunit", min_val=0))
        .with_panel(ts("Complaint rate lower bound per IP", "Wilson lower bound at the gate's confidence.",
                       q(f"topk(20, email_engine_ip_complaint_rate_7d_lower_bound{sel})", "{{ip}}"),
                       rate_limit("complaint"), unit="percentunit", min_val=0))
        .with_panel(grid("IPs over a limit with confidence", "IPs whose lower bound is above their tenant's limit "
                         "now: the gate's 'excess' (bounce, then complaint).",
                         ("bounce lower bound", f"email_engine_ip_bounce_rate_7d_lower_bound{sel} > on (tenant) "
                          "group_left () email_engine_tenant_max_bounce_rate"),
                         ("complaint lower bound", f"email_engine_ip_complaint_rate_7d_lower_bound{sel} > on "
                          "(tenant) group_left () email_engine_tenant_max_complaint_rate"), h=7))
        .with_row(db.Row("Warmup"))
        .with_panel(ts("Warmup week per IP", "week_1 = 1 ... week_6 = 6; the line ends when the IP becomes active.",
                       q(f"email_engine_ip_warmup_week{sel}", "{{ip}}"), steps=True, min_val=1))
        .with_panel(ts("Days in the current phase", "A line that keeps rising past the phase's minimum days is "
                       "held by the gate (insufficient data, not yet clear, or paused).",
                       q(f"email_engine_ip_warmup_phase_days{sel}", "{{ip}}"), min_val=0))
        .with_panel(ts("Daily quota per warming IP", "Today's quota of each warming IP (it steps up with the phase).",
                       q(f'email_engine_ip_daily_quota{{{TI}, status="warming"}}', "{{ip}}"), steps=True,
                       unit="short", min_val=0))
        .with_panel(ts("Warming IPs per tenant", "IPs in warmup, per tenant.",
                       q(f'sum by (tenant) (email_engine_ips{{{T}, status="warming"}})', "{{tenant}}"), min_val=0))
        .with_row(db.Row("Per IP now"))
        .with_panel(grid("IPs", "The selected IPs now: mail sent in the window, the two rates and their lower "
                         "bounds, today's quota.",
                         ("sent 7d", f"email_engine_ip_sent_7d{sel}"),
                         ("bounce", f"email_engine_ip_bounce_rate_7d{sel}"),
                         ("bounce lower bound", f"email_engine_ip_bounce_rate_7d_lower_bound{sel}"),
                         ("complaint", f"email_engine_ip_complaint_rate_7d{sel}"),
                         ("complaint lower bound", f"email_engine_ip_complaint_rate_7d_lower_bound{sel}"),
                         ("quota", f"email_engine_ip_daily_quota{sel}"), h=12))
    )


def temporal() -> db.Dashboard:
    sel = f"{{{TQ}}}"
    return (
        board("email-engine-temporal", "Email Engine / Temporal workers", "The Temporal SDK's own metrics of the "
              "engine workers (EMAIL_ENGINE_METRICS_ADDRESS): workflow outcomes, task failures, latencies and "
              "worker capacity. Latencies are in milliseconds.", "now-6h")
        .with_variable(label_variable("namespace", "Namespace",
                                      "label_values(temporal_worker_task_slots_available, namespace)"))
        .with_variable(label_variable("task_queue", "Task queue", "label_values(temporal_worker_task_slots_available"
                                      '{namespace=~"$namespace"}, task_queue)'))
        .with_row(db.Row("Workflows"))
        .with_panel(ts("Workflows completed", "Per second, by workflow type.",
                       q(f"sum by (workflow_type) (rate(temporal_workflow_completed{sel}[{RI}]))", "{{workflow_type}}"),
                       unit="ops"))
        .with_panel(ts("Workflows failed", "Per second, by workflow type: a saga or a warmup that ended in error.",
                       q(f"sum by (workflow_type) (rate(temporal_workflow_failed{sel}[{RI}]))", "{{workflow_type}}"),
                       unit="ops"))
        .with_panel(ts("Workflow task failures", "Per second, by type and reason: a workflow stuck on a code error "
                       "or a non-determinism retries its task forever and shows here.",
                       q(f"sum by (workflow_type, failure_reason) (rate(temporal_workflow_task_execution_failed{sel}"
                         f"[{RI}]))", "{{workflow_type}} {{failure_reason}}"), unit="ops"))
        .with_panel(ts("Continued as new", "Per second, by workflow type (long-lived workflows roll their history).",
                       q(f"sum by (workflow_type) (rate(temporal_workflow_continue_as_new{sel}[{RI}]))",
                         "{{workflow_type}}"), unit="ops"))
        .with_panel(ts("Workflow end-to-end latency p95", "From start to close, by workflow type.",
                       q(f"histogram_quantile(0.95, sum by (le, workflow_type) "
                         f"(rate(temporal_workflow_endtoend_latency_bucket{sel}[{RI}])))", "{{workflow_type}}"),
                       unit="ms"))
        .with_panel(ts("Workflow task execution latency p95", "Time the worker spends on a workflow task.",
                       q(f"histogram_quantile(0.95, sum by (le, workflow_type) "
                         f"(rate(temporal_workflow_task_execution_latency_bucket{sel}[{RI}])))", "{{workflow_type}}"),
                       unit="ms"))
        .with_row(db.Row("Activities"))
        .with_panel(ts("Activity failures", "Attempts that failed per second, by activity type (retried within "
                       "their schedule-to-close).",
                       q(f"sum by (activity_type) (rate(temporal_activity_execution_failed{sel}[{RI}]))",
                         "{{activity_type}}"), unit="ops"))
        .with_panel(ts("Activity execution latency p95", "By activity type.",
                       q(f"histogram_quantile(0.95, sum by (le, activity_type) "
                         f"(rate(temporal_activity_execution_latency_bucket{sel}[{RI}])))", "{{activity_type}}"),
                       unit="ms"))
        .with_row(db.Row("Worker capacity"))
        .with_panel(ts("Workflow task schedule-to-start p95", "Time a workflow task waits for a worker: rising "
                       "means the workers cannot keep up.",
                       q(f"histogram_quantile(0.95, sum by (le, task_queue) "
                         f"(rate(temporal_workflow_task_schedule_to_start_latency_bucket{sel}[{RI}])))",
                         "{{task_queue}}"), unit="ms"))
        .with_panel(ts("Activity schedule-to-start p95", "Time an activity waits for a worker slot.",
                       q(f"histogram_quantile(0.95, sum by (le, task_queue) "
                         f"(rate(temporal_activity_schedule_to_start_latency_bucket{sel}[{RI}])))", "{{task_queue}}"),
                       unit="ms"))
        .with_panel(ts("Task slots", "Free and used slots per worker type (EMAIL_ENGINE_WORKER_MAX_CONCURRENT_*).",
                       q(f"sum by (worker_type) (temporal_worker_task_slots_available{sel})", "{{worker_type}} free"),
                       q(f"sum by (worker_type) (temporal_worker_task_slots_used{sel})", "{{worker_type}} used"),
                       min_val=0))
        .with_panel(ts("Sticky cache", "Workflows cached by the workers (EMAIL_ENGINE_WORKER_MAX_CACHED_WORKFLOWS) "
                       "and pollers per type.",
                       q(f"sum by (task_queue) (temporal_sticky_cache_size{sel})", "{{task_queue}} cached"),
                       q(f"sum by (poller_type) (temporal_num_pollers{sel})", "{{poller_type}} pollers"), min_val=0))
        .with_panel(ts("Failed requests to the server", "Per second, by operation.",
                       q(f'sum by (operation) (rate(temporal_request_failure{{namespace=~"$namespace"}}[{RI}]))',
                         "{{operation}}"), unit="ops", w=24))
    )


DASHBOARDS = {"email-engine-fleet.json": fleet, "email-engine-ips.json": ips, "email-engine-temporal.json": temporal}


# ------------------------------------------------------------------------------------------ output


def render(builder: db.Dashboard) -> str:
    """The dashboard's JSON: panel ids numbered in order (the SDK leaves them 0), keys sorted."""
    data = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    for i, panel in enumerate(data["panels"], start=1):
        panel["id"] = i
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


PROVIDER = HEADER + f"""# Grafana reads the dashboards from {DASHBOARD_DIR} (copy deploy/grafana/dashboards/ there).
apiVersion: 1
providers:
  - name: email-engine
    orgId: 1
    folder: Email Engine
    folderUid: email-engine
    type: file
    disableDeletion: false
    allowUiUpdates: false
    updateIntervalSeconds: 60
    options:
      path: {DASHBOARD_DIR}
"""

DATASOURCE = HEADER + """# Optional: a Prometheus data source for the dashboards (any Prometheus that scrapes the worker
# works; pick it in each dashboard's "Prometheus" variable). timeInterval: the scrape interval of
# deploy/prometheus/prometheus.yml, so $__rate_interval spans enough samples.
apiVersion: 1
datasources:
  - name: Prometheus
    uid: email-engine-prometheus
    type: prometheus
    access: proxy
    url: http://127.0.0.1:9090
    jsonData:
      timeInterval: 30s
"""


def outputs() -> dict[str, str]:
    """Relative path under deploy/grafana/ -> content."""
    out = {f"dashboards/{name}": render(build()) for name, build in DASHBOARDS.items()}
    out["provisioning/dashboards/email-engine.yaml"] = PROVIDER
    out["provisioning/datasources/email-engine-prometheus.yaml"] = DATASOURCE
    return out


def write(root: Path = OUT) -> list[Path]:
    written = []
    for rel, text in outputs().items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


def differences(root: Path = OUT) -> list[str]:
    """Files under `root` that are missing or differ from what the code writes."""
    return [rel for rel, text in outputs().items()
            if not (root / rel).is_file() or (root / rel).read_text() != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare, write nothing; exit 1 on a difference")
    args = parser.parse_args(argv)
    if args.check:
        stale = differences()
        for rel in stale:
            print(f"deploy/grafana/{rel} differs from scripts/grafana_dashboards.py: regenerate it")
        return 1 if stale else 0
    for path in write():
        print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
