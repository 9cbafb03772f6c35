"""Prometheus: the Temporal SDK's metrics (Runtime endpoint) and the engine's fleet gauges.

- EMAIL_ENGINE_METRICS_ADDRESS (default 127.0.0.1:9464): the worker's Temporal runtime serves the
  SDK metrics (task latencies, poll results, activity failures ...) there; the runtime must exist
  before the worker's client connects. Empty disables it.
- EMAIL_ENGINE_FLEET_METRICS_ADDRESS (default 127.0.0.1:9465): prometheus-client serves the fleet
  gauges (workers/fleet_gauges.py), computed from the inventory database at scrape time (cached for
  CACHE_SECONDS; the deploy drift longer, see FleetCollector). Empty disables it.
- EMAIL_ENGINE_FLEET_METRICS_MAX_IPS (default 20,000): the per-IP families export at most this many
  IPs. At 10,000 IPs they are about 60,000 series (bench/fleet_metrics.py prints the count), a
  small load for one Prometheus server; the cap keeps a much larger fleet from flooding it, and
  `email_engine_ip_series_dropped` says how many IPs were left out.
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
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from activities.db import get_engine
from activities.fleet_metrics import read_ip_figures
from activities.status import deploys_section, dns_section, listings_section, tenants_section
from models.settings import get_settings
from models.tables import utcnow
from workers.fleet_gauges import deploy_families, fleet_families, ip_families

log = logging.getLogger("email_engine.metrics")

CACHE_SECONDS = 15.0
#: Deploy drift is recomputed at least this often, and whenever a deploy or a status change is recorded.
DRIFT_SECONDS = 300.0
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
    """Fleet gauges from the database, read at scrape time and cached CACHE_SECONDS. Deploy drift renders
    every MTA host's config (about a second at 10,000 IPs, bench/fleet_metrics.py), so it is
    recomputed only after a deploy, a status/phase change or a change in the number of IPs, and at
    least every DRIFT_SECONDS (other inventory edits show within that)."""

    def __init__(self, url: str | None = None, max_ips: int | None = None) -> None:
        self.url = url
        self.max_ips = max_ips
        self._lock = threading.Lock()
        self._cache: tuple[float, dict[str, Any]] | None = None
        self._drift: tuple[float, tuple[Any, ...], dict[str, Any]] | None = None

    def _read(self) -> dict[str, Any]:
        now = utcnow()
        engine = get_engine(self.url)
        tables = set(inspect(engine).get_table_names())
        with engine.connect() as conn:
            data: dict[str, Any] = {
                "tenants": tenants_section(conn), "blocklists": listings_section(conn, tables, now),
                "dns": dns_section(conn, tables, now), "ips": read_ip_figures(conn, now.date())}
            marks = _change_marks(conn, tables)
        data["drift_at"], data["deploys"] = self._deploys(tables, marks)
        return data

    def _deploys(self, tables: set[str], marks: tuple[Any, ...]) -> tuple[float, dict[str, Any]]:
        """(monotonic time it was computed, deploys_section): recomputed only when stale (see the class)."""
        t = time.monotonic()
        if self._drift is None or self._drift[1] != marks or t - self._drift[0] > DRIFT_SECONDS:
            with get_engine(self.url).connect() as conn:
                self._drift = (t, marks, deploys_section(conn, tables, self.url))
        return self._drift[0], self._drift[2]

    def _data(self) -> dict[str, Any]:
        with self._lock:
            if self._cache is None or time.monotonic() - self._cache[0] > CACHE_SECONDS:
                self._cache = (time.monotonic(), self._read())
            return self._cache[1]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        ok = GaugeMetricFamily("email_engine_fleet_scrape_ok", "1 if the inventory database was readable")
        try:
            data = self._data()
        except Exception as exc:  # a scrape must answer; `up`-style gauge says the database failed
            log.error("fleet metrics: %s", exc)
            ok.add_metric([], 0)
            yield ok
            return
        ok.add_metric([], 1)
        yield ok
        yield from fleet_families(data)
        max_ips = self.max_ips if self.max_ips is not None else get_settings().fleet_metrics_max_ips
        yield from ip_families(data["ips"], max_ips)
        yield from deploy_families(data["deploys"], time.monotonic() - data["drift_at"])


def _change_marks(conn: Connection, tables: set[str]) -> tuple[Any, ...]:
    """What changes the rendered config or the deployed one: the newest deploy, the newest status/phase
    change, the number of IPs (cheap: maxima of primary keys, one count)."""
    deploy = conn.execute(text("SELECT MAX(id) FROM mta_deploy")).scalar() if "mta_deploy" in tables else None
    return (deploy, conn.execute(text("SELECT MAX(id) FROM status_change")).scalar(),
            conn.execute(text("SELECT COUNT(*) FROM sending_ip")).scalar())


def serve_fleet_metrics(address: str, url: str | None = None, max_ips: int | None = None) -> Any:
    """Start the fleet gauges' HTTP endpoint in a daemon thread; returns the server (None if disabled)."""
    if not address:
        return None
    host, port = split_address(address)
    registry = CollectorRegistry()
    registry.register(FleetCollector(url, max_ips))
    server, _thread = start_http_server(port, addr=host, registry=registry)
    log.info("fleet metrics on http://%s/metrics", address)
    return server
