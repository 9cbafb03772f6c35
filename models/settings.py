"""Settings from the environment and `.env` (prefix EMAIL_ENGINE_). Secrets are SecretStr."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    #: Port of the dev server's Web UI (run command only).
    temporal_ui_port: int = 8233

    # Safety-gate defaults (a tenant may override them in the inventory).
    max_bounce_rate: float = Field(default=0.05, ge=0, le=1)
    max_complaint_rate: float = Field(default=0.001, ge=0, le=1)
    min_open_rate: float = Field(default=0.10, ge=0, le=1)

    #: DNS resolvers for blocklist and authentication checks, comma-separated `host[:port]`
    #: (IPv6 as `[addr]:port`). Empty: the system resolver. Never a public resolver by default.
    dns_resolvers: str = ""
    #: Per-query DNS timeout in seconds.
    dns_timeout: float = Field(default=3.0, gt=0, le=60)

    def resolvers(self) -> list[tuple[str, int]]:
        """`dns_resolvers` parsed to (address, port) pairs; ValueError names a bad entry."""
        return parse_resolvers(self.dns_resolvers)

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.var_dir / 'email-engine.db').as_posix()}"


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
