"""Typed settings: one object, read from environment variables and Airflow connections.

Every field is documented in the README's "Settings" table. Secrets are held as
``SecretStr`` so they never appear in a repr, a log line or an error message.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[2]

WAREHOUSE_CONN_ID = "reactivation_warehouse"


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names it and never shows a secret."""


def _connection_to_url(raw: str, conn_id: str) -> str:
    """Turn an ``AIRFLOW_CONN_*`` value (URI or JSON form) into a libpq URL."""
    raw = raw.strip()
    if raw.startswith("{"):
        try:
            conn = json.loads(raw)
        except json.JSONDecodeError:
            raise SettingsError(f"AIRFLOW_CONN_{conn_id.upper()} is not valid JSON") from None
        user = quote(conn.get("login") or "", safe="")
        password = conn.get("password")
        auth = user + (":" + quote(password, safe="") if password else "")
        host = conn.get("host") or "localhost"
        port = f":{conn['port']}" if conn.get("port") else ""
        schema = conn.get("schema") or ""
        return f"postgresql://{auth}{'@' if auth else ''}{host}{port}/{schema}"
    parts = urlsplit(raw)
    if parts.scheme not in {"postgres", "postgresql"}:
        raise SettingsError(
            f"AIRFLOW_CONN_{conn_id.upper()} must be a postgres:// or postgresql:// URI (got scheme {parts.scheme!r})"
        )
    return urlunsplit(("postgresql", parts.netloc, parts.path, parts.query, ""))


class Settings(BaseSettings):
    """Runtime settings of the reactivation pipeline."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", case_sensitive=False)

    warehouse_url: SecretStr | None = Field(
        default=None,
        description="PostgreSQL URL of the warehouse. Unset: the embedded warehouse is started.",
    )
    reactivation_state_dir: Path = Field(
        default=PROJECT_ROOT / ".state",
        description="Folder for local state: embedded warehouse, Airflow home, reports, exports.",
    )
    reactivation_sources: Path = Field(
        default=PROJECT_ROOT / "config" / "sources.yml",
        description="YAML file listing the extract sources the nightly run loads.",
    )
    reactivation_log_level: str = Field(default="INFO", description="Log level of the reactivation package.")
    reactivation_dbt_threads: int = Field(default=2, ge=1, le=32, description="dbt threads.")
    reactivation_ingest_workers: int = Field(
        default_factory=lambda: min(2, os.cpu_count() or 1),
        ge=1,
        le=16,
        description="Files of one extract folder loaded at once, each on its own connection.",
    )
    reactivation_send_clock: datetime | None = Field(
        default=None,
        description="The instant the send stage takes as now (sending windows, daily caps, deferrals); "
        "unset: the wall clock. For replays of a past night against the local sandbox.",
    )

    @property
    def state_dir(self) -> Path:
        return self.reactivation_state_dir

    @property
    def embedded_warehouse_dir(self) -> Path:
        return self.state_dir / "warehouse"

    @property
    def airflow_home(self) -> Path:
        return self.state_dir / "airflow"

    @property
    def reports_dir(self) -> Path:
        return self.state_dir / "reports"

    def resolved_warehouse_url(self) -> str | None:
        """The warehouse URL from WAREHOUSE_URL, else the Airflow connection, else None."""
        if self.warehouse_url is not None and self.warehouse_url.get_secret_value():
            return self.warehouse_url.get_secret_value()
        env_name = f"AIRFLOW_CONN_{WAREHOUSE_CONN_ID.upper()}"
        raw = os.environ.get(env_name)
        if raw:
            return _connection_to_url(raw, WAREHOUSE_CONN_ID)
        return None


def redact_url(url: str) -> str:
    """A URL safe to print: the password replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = unquote(parts.username or "")
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, f"{quote(user)}:***@{host}{port}", parts.path, "", ""))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
