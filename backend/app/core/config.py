"""Service settings: the service's one reader of ``PMTL_*`` variables and ``.env``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["Settings", "default_api_workers", "normalise_database_url"]


def default_api_workers() -> int:
    """API worker processes for this machine: one per CPU the process may use, at most 4
    (each process keeps its own database pool, caches and ~100 MB of memory)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 4))


def normalise_database_url(url: str) -> str:
    """Point ``postgres://`` and ``postgresql://`` URLs at the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class Settings(BaseSettings):
    """Everything the API, the workers and the CLI need to know about their environment."""

    model_config = SettingsConfigDict(
        env_prefix="PMTL_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    home: Path = Field(Path("./pmtl-data"), description="data directory (SQLite file, artifacts)")
    database_url: str = Field("", description="SQLAlchemy URL; default: SQLite file under home")
    artifact_dir: Path | None = Field(None, description="artifact root; default: home/artifacts")
    lease_seconds: float = Field(30.0, gt=0, description="job lease length")
    heartbeat_seconds: float = Field(10.0, gt=0, description="interval of lease renewals")
    progress_seconds: float = Field(
        2.0,
        ge=0.01,
        le=3600,
        description="least interval between two in-epoch progress reports of a job (each is a "
        "database write)",
    )
    max_attempts: int = Field(3, ge=1, le=100, description="claims of a job before it fails")
    worker_poll_seconds: float = Field(1.0, gt=0, description="idle worker's queue poll period")
    db_pool_size: int = Field(10, ge=1, le=1000, description="connections kept per API process")
    db_max_overflow: int = Field(
        40, ge=0, le=1000, description="extra connections under load (pool + overflow >= 40)"
    )
    max_request_bytes: int = Field(1 << 20, ge=1024, description="largest accepted request body")
    max_preferences: int = Field(256, ge=1, le=256, description="preference vectors per run")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="allowed CORS origins (comma-separated in the env)"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = Field(False, description="one JSON object per log line")
    download_data: bool = Field(
        False,
        description="workers may fetch missing data sets (torchvision's download) into the data "
        "root (PMTL_DATA_DIR, else home/data)",
    )
    allow_dotted_problems: bool = Field(
        False,
        description="workers may import user-defined problems named by a dotted path "
        "(package.module:factory) found in the database; only for trusted databases",
    )
    api_url: str = Field("http://127.0.0.1:8000", description="where clients reach the API")
    max_upload_mb: float = Field(
        100.0, gt=0, description="largest data set upload (POST /datasets) in MiB; 413 past it"
    )
    max_dataset_rows: int = Field(1_000_000, ge=1, description="rows an uploaded table may have")
    max_dataset_columns: int = Field(1_000, ge=1, description="columns an uploaded table may have")
    dataset_quota_mb: float = Field(
        1024.0, gt=0, description="total MiB of uploaded data sets one user may keep"
    )
    max_active_runs_per_user: int = Field(
        0, ge=0, description="queued or running runs a user may have at once (0: no limit)"
    )
    job_wall_clock_limit_s: float = Field(
        0.0, ge=0, description="seconds a job may train in all before it fails (0: no limit)"
    )
    cache_dir: Path | None = Field(
        None, description="built data-set caches (MultiMNIST family); default: home/cache"
    )
    cache_max_gb: float = Field(
        20.0, ge=0, description="size cap of cache_dir; least recently used entries go first"
    )
    exports_keep: int = Field(
        2, ge=1, le=1000, description="exported model epochs kept per preference (newest)"
    )
    cleanup_interval_s: float = Field(
        3600.0,
        ge=0,
        description="period of the artifact store's stale-file sweep (0: at start only)",
    )
    stale_file_age_s: float = Field(
        3600.0, ge=0, description="age after which temp and set-aside artifact files are removed"
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _derive_paths(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.home / 'pmtl.db').resolve()}"
        self.database_url = normalise_database_url(self.database_url)
        if self.artifact_dir is None:
            self.artifact_dir = self.home / "artifacts"
        if self.cache_dir is None:
            self.cache_dir = self.home / "cache"
        return self

    def library_environment(self) -> dict[str, str]:
        """The variables through which pmtl_core (in training processes) gets these settings:
        the data-set cache directory and its size cap."""
        assert self.cache_dir is not None  # set by _derive_paths
        return {
            "PMTL_CACHE_DIR": str(self.cache_dir.resolve()),
            "PMTL_CACHE_MAX_GB": repr(self.cache_max_gb),
        }

    @property
    def artifact_root(self) -> Path:
        """The artifact directory as an absolute path."""
        assert self.artifact_dir is not None  # set by _derive_paths
        return self.artifact_dir.resolve()

    @property
    def is_sqlite(self) -> bool:
        """Whether the database is a SQLite file."""
        return self.database_url.startswith("sqlite")
