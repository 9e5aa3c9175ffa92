"""Agent waves: a plan of dependent tasks run as real agents under admission control.

The core here imports nothing from `mcp`; `runner` is the one module that imports the
agent SDK, and only the adapters (the MCP tools, the benchmark) construct it.
"""

from __future__ import annotations

from ._proc import AGENT_MARKER_ENV
from .admission import AdmissionConfig, AdmissionStats, ResourceManager
from .agents import AgentOutcome, AgentRequest, AgentRunner
from .config import WaveConfig
from .plan import (
    AgentSpec,
    CommandCompensation,
    PromptCompensation,
    TaskSpec,
    WavePlan,
    dependency_levels,
)
from .recovery import AttemptFailed, ErrorClass, RetryPolicy, classify
from .service import WaveService
from .snapshot import RunList, RunSummary, TaskView, WaveSnapshot

__all__ = [
    "AGENT_MARKER_ENV",
    "AdmissionConfig",
    "AdmissionStats",
    "AgentOutcome",
    "AgentRequest",
    "AgentRunner",
    "AgentSpec",
    "AttemptFailed",
    "CommandCompensation",
    "ErrorClass",
    "PromptCompensation",
    "ResourceManager",
    "RetryPolicy",
    "RunList",
    "RunSummary",
    "TaskSpec",
    "TaskView",
    "WaveConfig",
    "WavePlan",
    "WaveService",
    "WaveSnapshot",
    "classify",
    "dependency_levels",
]
