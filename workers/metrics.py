"""Prometheus: the Temporal SDK's metrics (Runtime endpoint) and the engine's fleet gauges.

- EMAIL_ENGINE_METRICS_ADDRESS (default 127.0.0.1:9464): the worker's Temporal runtime serves the
  SDK metrics (task latencies, poll results, activity failures ...) there; the runtime must exist
  before the worker's client connects. Empty disables it.
- EMAIL_ENGINE_FLEET_METRICS_ADDRESS (default 127.0.0.1:9465): prometheus-client serves the fleet
  gauges, computed from the inventory database at scrape time (cached for CACHE_SECONDS). Empty
  disables it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

log = logging.getLogger("email_engine.metrics")

CACHE_SECONDS = 15.0
_runtimes: dict[str, Runtime] = {}


def split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"metrics address {address!r} is not host:port")
    return host.strip("[]") or "127.0.0.1", int(port)


def temporal_runtime(address: str) -> Runtime | None:
    """A runtime exporting SDK metrics on `address` (one per address per process); None if empty."""
    if not address:
        return None
    split_address(address)
    rt = _runtimes.get(address)
    if rt is None:
        rt = Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=address)))
        _runtimes[address] = rt
    return rt


class FleetCollector(Collector):
    """Fleet gauges from the database (activities.status sections), read at scrape time."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url
        self._lock = threading.Lock()
        self._cache: tuple[float, dict[str, Any]] | None = None

    def _data(self) -> dict[str, Any]:
        from activities.status import database_sections

        with self._lock:
            if self._cache is None or time.monotonic() - self._cache[0] > CACHE_SECONDS:
                self._cache = (time.monotonic(), database_sections(self.url))
            return self._cache[1]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            data = self._data()
        except Exception as exc:  # a scrape must answer; `up`-style gauge says the database failed
            log.error("fleet metrics: %s", exc)
            g = GaugeMetricFamily("email_engine_fleet_scrape_ok", "1 if the inventory database was readable")
            g.add_metric([], 0)
            yield g
            return
        ok = GaugeMetricFamily("email_engine_fleet_scrape_ok", "1 if the inventory database was readable")
        ok.add_metric([], 1)
        yield ok
        ips = GaugeMetricFamily("email_engine_ips", "Sending IPs by tenant and status", labels=["tenant", "status"])
        cap = GaugeMetricFamily("email_engine_daily_capacity", "Sum of today's quotas of warming and active IPs",
                                labels=["tenant"])
        for tenant, row in data["tenants"].items():
            for status, n in row["by_status"].items():
                ips.add_metric([tenant, status], n)
            cap.add_metric([tenant], row["capacity"])
        yield ips
        yield cap
        bl = data["blocklists"]
        listings = GaugeMetricFamily("email_engine_open_listings", "Blocklist listings not cleared yet",
                                     labels=["tenant"])
        for tenant in data["tenants"]:
            listings.add_metric([tenant], bl["open_listings"].get(tenant, 0))
        yield listings
        scan = bl["last_scan"]
        if scan.get("available") and not scan.get("never") and scan.get("age_hours") is not None:
            age = GaugeMetricFamily("email_engine_last_scan_age_seconds", "Seconds since the last blocklist scan")
            age.add_metric([], scan["age_hours"] * 3600)
            yield age
            broken = GaugeMetricFamily("email_engine_broken_zones", "Zones that failed their self-test in the "
                                       "last scan")
            broken.add_metric([], len(scan["broken_zones"]))
            yield broken
        dns = data["dns"]
        if dns.get("available"):
            fails = GaugeMetricFamily("email_engine_dns_failures", "Domains whose latest DNS check did not pass",
                                      labels=["tenant"])
            per: dict[str, int] = {t: 0 for t in data["tenants"]}
            for f in dns["failing"]:
                per[f["tenant"]] = per.get(f["tenant"], 0) + 1
            for tenant, n in per.items():
                fails.add_metric([tenant], n)
            yield fails


def serve_fleet_metrics(address: str, url: str | None = None) -> Any:
    """Start the fleet gauges' HTTP endpoint in a daemon thread; returns the server (None if disabled)."""
    if not address:
        return None
    host, port = split_address(address)
    registry = CollectorRegistry()
    registry.register(FleetCollector(url))
    server, _thread = start_http_server(port, addr=host, registry=registry)
    log.info("fleet metrics on http://%s/metrics", address)
    return server
