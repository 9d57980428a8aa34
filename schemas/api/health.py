"""``/healthz`` and ``/readyz``: what a probe reads."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class HealthOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok", "version": "1.2.0"}]})

    status: Literal["ok"]
    version: str = Field(description="paypost's version")


class ReadyOut(BaseModel):
    """200 with status ready when the database and the broker answer; else 503 not_ready, naming
    each one that did not (the error's class name only)."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"status": "ready", "checks": {"database": True, "broker": True}},
        {"status": "not_ready", "checks": {"database": True, "broker": False}, "problems": {"broker": "NoAnswer"}},
    ]})

    status: Literal["ready", "not_ready"]
    checks: dict[str, bool] = Field(description="each service (database, broker): whether it answered")
    problems: dict[str, str] | None = Field(default=None, description="each service that did not, and why; "
                                                                       "absent when ready")
