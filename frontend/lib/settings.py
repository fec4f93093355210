"""``UISettings``: the UI process's only reader of the environment (``PMTL_*``, ``.env``)."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["UISettings"]


class UISettings(BaseSettings):
    """Where the API is, how to authenticate, how often the live views poll."""

    model_config = SettingsConfigDict(
        env_prefix="PMTL_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    api_url: str = Field("http://127.0.0.1:8000", description="base URL of the REST API")
    token: str | None = Field(None, description="API token; without it the UI asks for one")
    poll_seconds: float = Field(2.0, ge=0.2, le=3600, description="live views' refresh period")
    request_timeout: float = Field(10.0, gt=0, le=600, description="seconds per HTTP request")

    @field_validator("api_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("token")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return value.strip() or None
