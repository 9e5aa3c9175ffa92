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
    exit_code: int = Field(description="0 intact; 1 broken or apart from the witness; "
                                       "3 records gaps")
    count: int
    head_hash: str
    first_bad_seq: int | None = None
    problem: str | None = None
    problems: list[str] = Field(default_factory=list,
                                description="disagreements between chain and witness")
    gaps: list[str] = Field(default_factory=list, description="recorded losses (audit.gap)")
    notes: list[str] = Field(default_factory=list)
    witness: str
    witnessed_seq: int
    message: str
