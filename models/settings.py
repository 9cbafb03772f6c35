"""Settings from the environment and `.env` (prefix EMAIL_ENGINE_). Secrets are SecretStr."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.enums import WarmupPhase


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EMAIL_ENGINE_", env_file=".env", extra="ignore")

    #: Where the embedded defaults keep their state (SQLite database, rendered config, dev server DB).
    var_dir: Path = Path("var")
    #: SQLAlchemy URL; empty means SQLite at `<var_dir>/email-engine.db`.
    #: PostgreSQL: postgresql+psycopg://user@host:5432/dbname
    database_url: str = ""
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    task_queue: str = "email-engine"
    #: TLS to the Temporal frontend with the system's root CAs. Setting a CA file, a client
    #: certificate, a server name or an API key turns TLS on as well.
    temporal_tls: bool = False
    #: PEM file of the CA that signed the frontend's certificate (instead of the system roots).
    temporal_tls_ca_file: Path | None = None
    #: mTLS: PEM client certificate and its private key (both or neither).
    temporal_tls_cert_file: Path | None = None
    temporal_tls_key_file: Path | None = None
    #: Name the frontend's certificate is verified against, and the SNI sent (when the address is
    #: an IP or a load balancer's name that the certificate does not carry).
    temporal_tls_server_name: str = ""
    #: API key sent as a bearer token on every call (Temporal Cloud, or a cluster behind an
    #: authorizer); never printed.
    temporal_api_key: SecretStr = SecretStr("")
    #: Payload encryption (AES-256-GCM): `id:base64key,...`, 32-byte keys; the first encrypts, all
    #: decrypt. Empty: payloads are stored as JSON, readable by anyone who can read the cluster.
    temporal_payload_keys: SecretStr = SecretStr("")
    #: Port of the dev server's Web UI (run command only).
    temporal_ui_port: int = 8233

    # Safety-gate defaults (a tenant may override them in the inventory).
    max_bounce_rate: float = Field(default=0.05, ge=0, le=1)
    max_complaint_rate: float = Field(default=0.001, ge=0, le=1)
    min_open_rate: float = Field(default=0.10, ge=0, le=1)
    #: A warmup phase ends only with this share of its quota x 7 days delivered in the gate's window
    #: (a tenant may override it); less is a hold, never a pass. 0 would let a phase end blind.
    warmup_min_delivered_share: float = Field(default=0.5, gt=0, le=1)
    #: Two-sided confidence of the Wilson bounds the gate judges rates with (models/warmup_gate.py).
    warmup_gate_confidence: float = Field(default=0.95, ge=0.5, le=0.999)

    #: DNS resolvers for blocklist and authentication checks, comma-separated `host[:port]`
    #: (IPv6 as `[addr]:port`). Empty: the system resolver. Never a public resolver by default.
    dns_resolvers: str = ""
    #: Per-query DNS timeout in seconds.
    dns_timeout: float = Field(default=3.0, gt=0, le=60)

    # --- Warmup and accounting stats (issue 4) ---
    #: Daily warmup ticks are spread over this many seconds after 00:00 UTC (stable per IP).
    warmup_wake_window_seconds: int = Field(default=3600, ge=1, le=86_399)
    #: Directory and file pattern of PowerMTA accounting files on each MTA host (fetched over SFTP).
    accounting_dir: str = "/var/log/pmta"
    accounting_glob: str = "email-engine-acct-*.csv"
    #: Interval (minutes) of the AccountingIngestWorkflow schedule.
    accounting_ingest_interval_minutes: int = Field(default=60, ge=1, le=24 * 60)
    #: Days a delivery stays in the delivery index (remote bounces and complaints arriving later are
    #: attributed through it); at least PowerMTA's `delete-after` default of 8 days.
    accounting_delivery_retention_days: int = Field(default=10, ge=8, le=60)

    # --- Worker sizing for the fleet (issue 14; docs/scale.md) ---
    #: Workflows the worker keeps in memory between tasks (sticky cache). Sized for 10,000 warmups plus
    #: scans and sagas: a smaller cache evicts warmups during the wake window and replays each one
    #: (sandbox re-import included) on its next task. Memory: see docs/scale.md (bench/warmup_start.py).
    worker_max_cached_workflows: int = Field(default=12_000, ge=0, le=1_000_000)
    #: Workflow tasks the worker runs at once (the SDK's default is 100).
    worker_max_concurrent_workflow_tasks: int = Field(default=200, ge=1, le=10_000)
    #: Activities the worker runs at once; also the size of its thread pool (sync activities).
    worker_max_concurrent_activities: int = Field(default=64, ge=1, le=10_000)
    #: Workflow starts in flight at once when warmups are started in bulk (`warmup start --all-warming`,
    #: the run command).
    warmup_start_concurrency: int = Field(default=64, ge=1, le=1_000)

    # --- DNS authentication checks (issue 5) ---
    #: UTC hour of the daily DnsValidationWorkflow schedule.
    dns_check_hour: int = Field(default=6, ge=0, le=23)
    #: Domains checked at the same time by the workflow and `dns check`.
    dns_check_concurrency: int = Field(default=8, ge=1, le=256)
    #: The gate refuses a check older than this many hours (0: any age counts).
    dns_gate_max_age_hours: float = Field(default=48, ge=0)

    # --- Failover saga and scheduled blocklist scans (issue 6) ---
    #: Circuit breaker: auto-activate a standby only if the tenant's complaint rate over the window is below this.
    failover_max_complaint_rate: float = Field(default=0.001, ge=0, le=1)
    #: Window (days) for the complaint rate and for "another IP of the tenant was listed".
    failover_window_days: int = Field(default=7, ge=1, le=90)
    #: A held failover (circuit breaker open) is denied after this many hours without an operator's answer.
    failover_approval_timeout_hours: float = Field(default=24, gt=0, le=24 * 30)
    #: Blast radius: a scan that would quarantine more than this share of a tenant's sending IPs (active and
    #: warming) quarantines none of them automatically and holds each for an operator (one IP always may).
    failover_blast_radius_share: float = Field(default=0.2, gt=0, le=1)
    #: Quarantine period (days) of a listed IP, and how many times it may be extended before retiring.
    quarantine_days: int = Field(default=7, ge=1, le=90)
    quarantine_max_extensions: int = Field(default=3, ge=0, le=20)
    #: Interval (hours) of the BlocklistScanWorkflow schedule.
    blocklist_scan_interval_hours: float = Field(default=4, gt=0, le=24 * 7)
    #: Blocklist catalogue (TOML, format in README); empty: the shipped models/blocklists.toml.
    blocklist_catalog: Path | None = None
    #: Spamhaus DQS key: Spamhaus zones are then queried as <key>.<zone>.dq.spamhaus.net (never printed).
    spamhaus_dqs_key: SecretStr | None = None
    #: Blocklist DNS queries in flight at once during a scan.
    blocklist_concurrency: int = Field(default=100, ge=1, le=10_000)
    #: Decisions of one page of a scan acted on at once (saga starts, quarantine ends and extensions).
    blocklist_act_concurrency: int = Field(default=20, ge=1, le=500)

    # --- Guard on active IPs (issue 15, models/active_guard.py; a tenant may override the first three) ---
    #: What a real bounce or complaint excess of an active IP does: step_down (re-warm) or pause.
    guard_action: Literal["step_down", "pause"] = "step_down"
    #: The phase a stepped-down IP re-warms from (week_5: 1,000/day, see models/active_guard.py).
    guard_step_down_phase: WarmupPhase = WarmupPhase.WEEK_5
    #: Share of a tenant's daily capacity the guard removes in a day without an operator; further
    #: steps that day hold for approve/deny (the tenant's first step always may).
    guard_max_capacity_loss_share: float = Field(default=0.2, gt=0, le=1)
    #: UTC hour of the daily Schedule `active-guard` (after the first hourly accounting ingests of the day).
    guard_hour: int = Field(default=2, ge=0, le=23)
    #: A held step is denied after this many hours without an operator's answer.
    guard_approval_timeout_hours: float = Field(default=24, gt=0, le=24 * 30)
    #: How long after a step its Undo/Restore button (and `guard undo`) still works.
    guard_undo_hours: float = Field(default=72, gt=0, le=24 * 30)

    # --- Operators' side (integrations helper): Telegram, MailWizz, metrics ---
    #: Telegram bot token; empty: alerts go to the log only.
    telegram_bot_token: SecretStr = SecretStr("")
    #: Chat IDs that receive alerts and whose button presses are obeyed (comma-separated integers).
    telegram_chat_ids: str = ""
    #: Telegram user IDs allowed to press Approve/Deny/Pause/Resume (comma-separated integers).
    telegram_admin_ids: str = ""
    #: Bot API base URL (python-telegram-bot `base_url`); the token is appended.
    telegram_base_url: str = "https://api.telegram.org/bot"
    #: The same alert key within this many seconds is sent once.
    alert_dedup_seconds: int = Field(default=3600, ge=0)
    #: At most this many Telegram messages per chat per minute (Telegram allows about 20 in a group).
    alert_rate_per_minute: int = Field(default=20, ge=1, le=60)
    #: MailWizz API keys per tenant: `client-1=KEY,client-2=KEY` or a JSON object {"client-1": "KEY"}.
    mailwizz_keys: SecretStr = SecretStr("")
    #: Per-request MailWizz timeout (seconds) and attempts on timeouts/5xx (with exponential backoff).
    mailwizz_timeout: float = Field(default=10.0, gt=0, le=300)
    #: Outbound webhook secrets per receiver (issue 15): `name=whsec_...,name2=whsec_...` or a JSON
    #: object; several secrets separated by spaces sign with each (rotation). Never stored elsewhere.
    webhook_secrets: SecretStr = SecretStr("")
    #: Seconds one webhook POST may take (connect + answer).
    webhook_timeout: float = Field(default=10.0, gt=0, le=60)
    #: Delivered webhook events are kept this many days (for `webhooks replay --since`), then pruned.
    webhook_retention_days: int = Field(default=30, ge=1, le=365)
    mailwizz_attempts: int = Field(default=4, ge=1, le=10)
    #: Temporal SDK Prometheus endpoint of the worker (`host:port`); empty disables it.
    metrics_address: str = "127.0.0.1:9464"
    #: Fleet gauges (IPs by status, capacity, listings, scan age, DNS failures) endpoint; empty disables it.
    fleet_metrics_address: str = "127.0.0.1:9465"
    #: At most this many IPs in the per-IP gauges (rates, quota, warmup week): about 6 series each.
    fleet_metrics_max_ips: int = Field(default=20_000, ge=0, le=200_000)

    # --- MTA deploys over SSH (issue 3) ---
    #: known_hosts file every MTA host key is checked against (OpenSSH format); empty: <var_dir>/ssh/known_hosts.
    ssh_known_hosts: Path | None = None
    #: Private key for SSH deploys; empty: <var_dir>/ssh/id_ed25519.
    ssh_key_path: Path | None = None
    #: Seconds to wait for an SSH connection (and its handshake).
    ssh_connect_timeout: float = Field(default=15.0, gt=0, le=300)
    #: Seconds a validate/reload/verify command may run on the MTA host.
    ssh_command_timeout: float = Field(default=120.0, gt=0, le=3600)
    #: Seconds one SFTP request may take on the MTA host (a silent host is also dropped by keepalives).
    ssh_io_timeout: float = Field(default=60.0, gt=0, le=3600)
    #: Releases kept on each MTA host (current and previous included).
    mta_keep_releases: int = Field(default=5, ge=2, le=100)
    #: MTA hosts (comma-separated names) that run on this machine: deployed with local files and
    #: commands instead of SSH (e.g. a single-box Postfix). Only enabled hosts are ever deployed.
    mta_local_hosts: str = ""

    @field_validator("telegram_base_url")
    @classmethod
    def _telegram_url(cls, value: str) -> str:
        """The bot token travels in this URL's path: https, or plain http to loopback (a test double)."""
        from models.names import NameError_, http_base_url

        try:
            return http_base_url(value)
        except NameError_ as exc:
            raise ValueError(f"EMAIL_ENGINE_TELEGRAM_BASE_URL: {exc}") from None

    @field_validator("ssh_known_hosts", "ssh_key_path", "temporal_tls_ca_file", "temporal_tls_cert_file",
                     "temporal_tls_key_file", mode="before")
    @classmethod
    def _empty_path_is_default(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    def resolvers(self) -> list[tuple[str, int]]:
        """`dns_resolvers` parsed to (address, port) pairs; ValueError names a bad entry."""
        return parse_resolvers(self.dns_resolvers)

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.var_dir / 'email-engine.db').as_posix()}"

    def display_database_url(self) -> str:
        """The database URL as it may be printed: its password masked (dev, doctor, errors)."""
        return mask_url(self.resolved_database_url())

    def redact(self, text: str) -> str:
        """`text` (e.g. an error message) with the database password and every secret setting masked."""
        return redact(text, self.resolved_database_url(), *self.secret_values())

    def temporal_tls_enabled(self) -> bool:
        return bool(self.temporal_tls or self.temporal_tls_ca_file or self.temporal_tls_cert_file
                    or self.temporal_tls_key_file or self.temporal_tls_server_name
                    or self.temporal_api_key.get_secret_value())

    def temporal_security(self) -> str:
        """How the engine talks to Temporal, as it may be printed (no secret)."""
        if not self.temporal_tls_enabled():
            return "plaintext"
        parts = ["TLS" + (f" (CA {self.temporal_tls_ca_file})" if self.temporal_tls_ca_file else " (system CAs)")]
        if self.temporal_tls_cert_file:
            parts.append(f"client certificate {self.temporal_tls_cert_file}")
        if self.temporal_tls_server_name:
            parts.append(f"server name {self.temporal_tls_server_name}")
        if self.temporal_api_key.get_secret_value():
            parts.append("API key")
        return ", ".join(parts)

    def secret_values(self) -> list[str]:
        values = [self.telegram_bot_token.get_secret_value(), self.mailwizz_keys.get_secret_value(),
                  self.temporal_api_key.get_secret_value()]
        for part in self.temporal_payload_keys.get_secret_value().split(","):
            values.append(part.partition(":")[2].strip())
        if self.spamhaus_dqs_key:
            values.append(self.spamhaus_dqs_key.get_secret_value())
        return [v for v in values if v]


MASK = "***"


def _url_password(url: str) -> str | None:
    """The password of `scheme://user:password@host/...` (as written, URL-encoded), or None."""
    _, sep, rest = url.partition("://")
    if not sep:
        return None
    netloc = rest.split("/", 1)[0].split("?", 1)[0]
    userinfo, at, _ = netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return None
    return userinfo.split(":", 1)[1] or None


def mask_url(url: str) -> str:
    """`url` with its password (userinfo, or a `password=` query parameter) replaced by ***."""
    import re

    password = _url_password(url)
    if password:
        scheme, _, rest = url.partition("://")
        netloc, slash, tail = rest.partition("/")
        userinfo, _, host = netloc.rpartition("@")
        url = f"{scheme}://{userinfo.split(':', 1)[0]}:{MASK}@{host}{slash}{tail}"
    return re.sub(r"(?i)([?&](?:password|passwd|pwd)=)[^&#]*", rf"\g<1>{MASK}", url)


def redact(text: str, url: str, *secrets: str) -> str:
    """`text` with the password of `url` (raw and URL-decoded) and each secret replaced by ***."""
    import re
    import urllib.parse

    values = list(secrets)
    password = _url_password(url)
    if password:
        values += [password, urllib.parse.unquote(password)]
    values += re.findall(r"(?i)[?&](?:password|passwd|pwd)=([^&#]+)", url)
    for value in sorted({v for v in values if len(v) >= 3}, key=len, reverse=True):
        text = text.replace(value, MASK)
    return text


def parse_resolvers(text: str) -> list[tuple[str, int]]:
    from models.names import NameError_, ip_address

    out = []
    for raw in (part.strip() for part in text.split(",")):
        if not raw:
            continue
        if raw.startswith("["):
            host, _, rest = raw[1:].partition("]")
            port_text = rest.removeprefix(":") or "53"
        elif raw.count(":") == 1:
            host, port_text = raw.split(":")
        else:
            host, port_text = raw, "53"
        try:
            addr = ip_address(host)
            port = int(port_text)
        except (NameError_, ValueError):
            raise ValueError(f"EMAIL_ENGINE_DNS_RESOLVERS: {raw!r} is not host[:port] with an IP address") from None
        if not 0 < port < 65536:
            raise ValueError(f"EMAIL_ENGINE_DNS_RESOLVERS: port of {raw!r} is out of range")
        out.append((addr, port))
    return out


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
