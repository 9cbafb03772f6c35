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

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.var_dir / 'email-engine.db').as_posix()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
