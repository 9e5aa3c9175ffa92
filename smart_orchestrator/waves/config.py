"""Wave settings, with the few a user may set through the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import cast, get_args

from ..errors import ConfigError
from .admission import MIB, AdmissionConfig
from .recovery import RetryPolicy
from .sandbox import SandboxMode

__all__ = ["WaveConfig"]

ENV_MAX_AGENTS = "SMART_ORCHESTRATOR_WAVE_MAX_AGENTS"
ENV_MEMORY_MB = "SMART_ORCHESTRATOR_WAVE_MEMORY_MB"
ENV_RETRY_BASE_S = "SMART_ORCHESTRATOR_WAVE_RETRY_BASE_S"
ENV_SANDBOX = "SMART_ORCHESTRATOR_WAVE_SANDBOX"
ENV_DISPATCH = "SMART_ORCHESTRATOR_WAVE_DISPATCH"
_SANDBOX_MODES: tuple[str, ...] = get_args(SandboxMode)


def _default_cap() -> int:
    # Agents mostly wait on the model, so two per core; more is rarely worth the memory.
    return max(1, min(8, 2 * (os.cpu_count() or 1)))


@dataclass(frozen=True, slots=True)
class WaveConfig:
    admission: AdmissionConfig = field(
        default_factory=lambda: AdmissionConfig(max_agents=_default_cap()))
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    tick_s: float = 0.25
    sandbox: SandboxMode = "auto"  # confine agents' Bash to the wave's folder (sandbox.py)
    # Measuring a process tree costs a few ms per agent: twice a second is enough.
    sample_s: float = 0.5
    # `local`: this process runs the agents; `workers`: tasks go to the team's queue and
    # `smart-orchestrator worker` processes (any machine) run them.
    dispatch: str = "local"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WaveConfig:
        env = os.environ if environ is None else environ
        base = cls()
        admission, retry = base.admission, base.retry
        if ENV_MAX_AGENTS in env:
            admission = _replace_admission(admission, max_agents=_int(env, ENV_MAX_AGENTS, 1))
        if ENV_MEMORY_MB in env:
            budget = _int(env, ENV_MEMORY_MB, 64) * MIB
            admission = _replace_admission(admission, memory_budget_bytes=budget)
        if ENV_RETRY_BASE_S in env:
            retry = RetryPolicy(max_attempts=retry.max_attempts,
                                initial_s=_float(env, ENV_RETRY_BASE_S),
                                max_backoff_s=retry.max_backoff_s, total_s=retry.total_s)
        sandbox = base.sandbox
        if ENV_SANDBOX in env:
            wanted = env[ENV_SANDBOX]
            if wanted not in _SANDBOX_MODES:
                raise ConfigError(f"{ENV_SANDBOX}={wanted!r}: expected one of "
                                  + ", ".join(_SANDBOX_MODES))
            sandbox = cast(SandboxMode, wanted)
        dispatch = env.get(ENV_DISPATCH, base.dispatch)
        if dispatch not in ("local", "workers"):
            raise ConfigError(f"{ENV_DISPATCH}={dispatch!r}: expected local or workers")
        return cls(admission=admission, retry=retry, tick_s=base.tick_s,
                   sample_s=base.sample_s, sandbox=sandbox, dispatch=dispatch)


def _replace_admission(cfg: AdmissionConfig, **changes: int) -> AdmissionConfig:
    return replace(cfg, **changes)


def _int(env: Mapping[str, str], key: str, minimum: int) -> int:
    try:
        value = int(env[key])
    except ValueError:
        raise ConfigError(f"{key}={env[key]!r} is not a whole number") from None
    if value < minimum:
        raise ConfigError(f"{key} must be at least {minimum}")
    return value


def _float(env: Mapping[str, str], key: str) -> float:
    try:
        value = float(env[key])
    except ValueError:
        raise ConfigError(f"{key}={env[key]!r} is not a number") from None
    if not 0 <= value <= 600:
        raise ConfigError(f"{key} must be between 0 and 600 seconds")
    return value
