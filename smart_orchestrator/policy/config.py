"""The policy file: built-in defaults, an optional preset, then the project's file.

`.claude/smart-orchestrator.toml` in the project (or `$SMART_ORCHESTRATOR_POLICY`) is
untrusted input: validated with pydantic, unknown keys rejected by name. Every effective
value remembers where it came from, for `/smart-orchestrator:policy`.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ConfigError

__all__ = ["POLICY_RELPATH", "PRESETS", "PolicyConfig", "load_policy", "policy_path"]

Mode = Literal["enforce", "warn", "off"]
OnError = Literal["deny", "allow"]
Severity = Literal["low", "medium", "high", "critical"]
POLICY_RELPATH = Path(".claude") / "smart-orchestrator.toml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    mode: Mode = "enforce"
    on_error: OnError = Field("deny", description="what a crash inside this check decides")


class PromptPolicy(_Section):
    max_chars: int = Field(100_000, ge=1)
    min_chars: int = Field(1, ge=0)
    required_fields: tuple[str, ...] = ("prompt", "description")
    injection: Mode = "enforce"
    injection_deny_severity: Severity = "high"


class SecretsPolicy(_Section):
    action: Literal["deny", "redact"] = "deny"
    baseline: str | None = Field(None, description="detect-secrets baseline, project-relative")


class AdmissionPolicy(_Section):
    max_in_flight_session: int = Field(4, ge=1)
    max_in_flight_machine: int = Field(8, ge=1)
    min_available_memory_mb: int = Field(1024, ge=0)
    max_load_percent: float = Field(400.0, gt=0,
                                    description="1-minute load average per core, in percent")
    spawns_per_minute: int = Field(30, ge=1)
    max_depth: int = Field(2, ge=1)
    wait_timeout_s: float = Field(30.0, ge=0, le=3600)
    lease_ttl_s: float = Field(3 * 3600.0, gt=0)


class BreakerPolicy(_Section):
    failure_threshold: int = Field(3, ge=1)
    window_s: float = Field(300.0, gt=0)
    cooldown_s: float = Field(900.0, gt=0)


class OutputPolicy(_Section):
    secrets: Mode = "enforce"
    injection: Mode = "warn"


class ToolsPolicy(_Section):
    deny_credential_reads: bool = True


class PolicyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    preset: Literal["default", "strict", "permissive"] = "default"
    prompt: PromptPolicy = PromptPolicy()
    secrets: SecretsPolicy = SecretsPolicy()
    admission: AdmissionPolicy = AdmissionPolicy()
    breaker: BreakerPolicy = BreakerPolicy()
    output: OutputPolicy = OutputPolicy()
    tools: ToolsPolicy = ToolsPolicy()
    # Where each effective value came from: "section.key" -> "default" | "preset:X" | path.
    sources: dict[str, str] = Field(default_factory=dict, exclude=True)


PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "default": {},
    # The original plan's policy: short, single-purpose subagent prompts.
    "strict": {"prompt": {"max_chars": 500, "injection_deny_severity": "medium"},
               "admission": {"max_in_flight_session": 2, "max_in_flight_machine": 4}},
    # Record everything, block nothing: a baseline before enforcing.
    "permissive": {section: {"mode": "warn"} for section in
                   ("prompt", "secrets", "admission", "breaker", "output", "tools")},
}


def policy_path(project_dir: Path | None = None) -> Path:
    explicit = os.environ.get("SMART_ORCHESTRATOR_POLICY")
    if explicit:
        return Path(explicit).expanduser()
    base = project_dir or Path(os.environ.get("CLAUDE_PROJECT_DIR") or os.getcwd())
    return base / POLICY_RELPATH


def load_policy(path: Path | None = None) -> PolicyConfig:
    """Defaults < preset < file. A missing file is fine; a bad one is a ConfigError."""
    path = path or policy_path()
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raw = {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"policy file {path} is not valid TOML: {exc}") from exc
    return build_policy(raw, str(path))


def build_policy(raw: dict[str, Any], origin: str) -> PolicyConfig:
    preset = raw.get("preset", "default")
    if preset not in PRESETS:
        raise ConfigError(f"policy file {origin}: preset must be one of "
                          f"{', '.join(PRESETS)}, not {preset!r}")
    merged: dict[str, Any] = {"preset": preset}
    sources: dict[str, str] = {}
    for layer, name in ((PRESETS[preset], f"preset:{preset}"), (raw, origin)):
        for section, values in layer.items():
            if section == "preset":
                continue
            if not isinstance(values, dict):
                raise ConfigError(f"policy file {origin}: [{section}] must be a table")
            merged.setdefault(section, {}).update(values)
            sources.update({f"{section}.{key}": name for key in values})
    try:
        config = PolicyConfig.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"policy file {origin}: {key}: {first['msg']}",
                          hint=f"{exc.error_count()} problem(s); the keys are listed in "
                          "docs/policy.md") from exc
    for section, model in config:
        if isinstance(model, BaseModel):
            for key in type(model).model_fields:
                sources.setdefault(f"{section}.{key}", "default")
    return config.model_copy(update={"sources": sources})
