"""Structured tool results: the return types are the tools' output schemas."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class CheckpointInfo(BaseModel):
    id: int
    name: str
    created_us: int = Field(description="creation time, microseconds since the epoch")
    sha256: str
    size: int


class CheckpointSaved(BaseModel):
    checkpoint: CheckpointInfo


class CheckpointLoaded(BaseModel):
    checkpoint: CheckpointInfo
    state: Any
    fell_back: bool = Field(description="true when newer copies were corrupt and skipped")
    note: str


class CheckpointList(BaseModel):
    checkpoints: list[CheckpointInfo]


class AuditVerifyResult(BaseModel):
    ok: bool
    count: int
    head_hash: str
    first_bad_seq: int | None = None
    problem: str | None = None
    message: str
