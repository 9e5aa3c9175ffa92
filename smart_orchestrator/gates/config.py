"""The `[gates]` table of `.claude/smart-orchestrator.toml`: what each tier checks.

The file is untrusted input (an agent can edit it), so it is validated with pydantic and
unknown keys are rejected by name. A change to the file itself needs a human approval
(see `approvals.CONFIG_KIND`), so an agent cannot pass a gate by rewriting its commands.

    [gates]
    base = "origin/main"            # what "the change" is measured against
    [gates.tier1]
    typecheck = "mypy"              # a string is split like a shell would, never run by one
    lint = ["ruff", "check", "."]
    tests = { command = "pytest -q", timeout_s = 1800 }
    [gates.tier2]
    audit = false                   # turn a detected check off
    [[gates.patterns]]
    id = "no-print"
    regex = '^\\s*print\\('
    paths = ["src/**/*.py"]
    [[gates.approvals]]
    kind = "security"
    paths = ["src/auth/**", "**/*crypto*"]
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import ConfigError

__all__ = ["BUILTIN_CHECKS", "ApprovalRule", "CommandSpec", "GatesConfig", "PatternRule",
           "gates_path", "load_gates_config", "parse_gates_config"]

# Tier-2 checks the server runs in-process; a command may not take their names.
BUILTIN_CHECKS = frozenset({"secrets", "patterns"})
CheckName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
Glob = Annotated[str, Field(min_length=1, max_length=300)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CommandSpec(_Strict):
    """One program the server runs (argv, no shell); it passes when it exits 0."""

    command: Annotated[list[Annotated[str, Field(max_length=4096)]],
                       Field(min_length=1, max_length=256)]
    timeout_s: Annotated[float | None, Field(gt=0, le=86_400)] = None
    env: dict[str, str] = Field(default_factory=dict)
    cwd: Annotated[str | None, Field(max_length=1000,
                                     description="project-relative working directory")] = None

    @field_validator("command", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return shlex.split(value)
            except ValueError as exc:
                raise ValueError(f"cannot split command {value!r}: {exc}") from None
        return value


class PatternRule(_Strict):
    """A project convention: `regex` must not match a line the change adds."""

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    regex: Annotated[str, Field(min_length=1, max_length=2000)]
    paths: list[Glob] = Field(default_factory=lambda: ["**"])
    exclude: list[Glob] = Field(default_factory=list)
    message: Annotated[str, Field(max_length=300)] = ""

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return value


class ApprovalRule(_Strict):
    """A human review the change needs when it touches any of `paths`."""

    kind: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$",
                               description="e.g. architecture, security, ux")]
    paths: Annotated[list[Glob], Field(min_length=1)]
    exclude: list[Glob] = Field(default_factory=list)
    approvers: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        default_factory=list, description="who may approve; empty means anyone who confirms")
    description: Annotated[str, Field(max_length=300)] = ""


Tier = dict[CheckName, CommandSpec | Literal[False]]
Via = Literal["elicitation", "cli"]
_VIAS: tuple[Via, ...] = ("elicitation", "cli")


class GatesConfig(_Strict):
    detect: bool = Field(default=True,
                         description="fill checks the config leaves open from the project")
    require_tier1: bool = Field(default=True,
                                description="an empty tier 1 blocks instead of passing")
    fail_fast: bool = Field(default=False, description="stop a tier at its first failing check")
    cache: bool = Field(default=True, description="reuse results for an unchanged tree")
    timeout_s: float = Field(default=900.0, gt=0, le=86_400)
    tail_chars: int = Field(default=4000, ge=200, le=100_000)
    base: Annotated[str, Field(min_length=1, max_length=200)] = "HEAD"
    tier1: Tier = Field(default_factory=dict)
    tier2: Tier = Field(default_factory=dict)
    secret_scan: bool = True
    secrets_baseline: Annotated[str | None, Field(max_length=1000)] = None
    patterns: list[PatternRule] = Field(default_factory=list)
    approvals: list[ApprovalRule] = Field(default_factory=list)
    approval_via: list[Via] = Field(
        default_factory=lambda: list(_VIAS),
        description="which confirmations count: the MCP client's prompt to the user, the CLI")

    @field_validator("tier1", "tier2", mode="before")
    @classmethod
    def _commands(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        out: dict[str, Any] = {}
        for name, spec in value.items():
            if name in BUILTIN_CHECKS:
                raise ValueError(f"{name!r} is a built-in check; configure it with "
                                 f"secret_scan or [[gates.patterns]]")
            out[name] = {"command": spec} if isinstance(spec, (str, list)) else spec
        return out


def gates_path(project_dir: Path) -> Path:
    """The same file the policy reads (`$SMART_ORCHESTRATOR_POLICY` overrides it)."""
    from ..policy.config import policy_path

    return policy_path(project_dir)


def load_gates_config(project_dir: Path) -> GatesConfig:
    """The `[gates]` table, or the defaults when the file or table is absent."""
    path = gates_path(project_dir)
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        return GatesConfig()
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    return parse_gates_config(raw.get("gates", {}), str(path))


def parse_gates_config(table: Any, origin: str) -> GatesConfig:
    if not isinstance(table, dict):
        raise ConfigError(f"config file {origin}: [gates] must be a table")
    try:
        return GatesConfig.model_validate(table)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in ("gates", *first["loc"]))
        raise ConfigError(f"config file {origin}: {key}: {first['msg']}",
                          hint=f"{exc.error_count()} problem(s); see docs/gates.md") from exc
