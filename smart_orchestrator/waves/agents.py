"""The boundary between wave scheduling and whatever runs an agent.

The scheduler hands an `AgentRunner` an `AgentRequest` and gets an `AgentOutcome` back;
the runner owns the agent's process: it kills the whole tree on timeout or cancellation.
`runner.SdkAgentRunner` is the real one; tests use hand-written fakes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from .plan import AgentSpec
from .recovery import ErrorClass
from .sandbox import BashSandbox

__all__ = ["AgentOutcome", "AgentRequest", "AgentRunner"]


@dataclass(frozen=True, slots=True)
class AgentRequest:
    run_id: str
    task_id: str
    attempt: int
    prompt: str
    agent: AgentSpec
    cwd: str
    timeout_s: float
    marker: str  # set in the agent's environment so its process tree can be found
    allowed_tools: tuple[str, ...] = ()
    max_turns: int | None = None
    budget_usd: float | None = None
    purpose: Literal["task", "compensation"] = "task"
    # Called with each final answer; returns the next prompt (a reformat request) or None.
    follow_up: Callable[[str], str | None] | None = None
    # Called once with the agent's process id, as soon as it is known.
    on_spawn: Callable[[int], None] | None = None
    # Called as the agent's CLI is about to retry a 429/529: (status, its delay in s).
    on_rate_limit: Callable[[int, float], None] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    network_domains: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AgentOutcome:
    ok: bool
    text: str = ""
    error_class: ErrorClass | None = None
    reason: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    turns: int = 0
    session_id: str | None = None
    pid: int | None = None
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    model: str | None = None  # the model that answered, when the CLI said
    api_status: int | None = None  # the HTTP status of the API error that ended it
    # The delay the CLI chose for its last retry of a 429/529 (the reply's Retry-After).
    retry_after_s: float | None = None


class AgentRunner(Protocol):
    async def run(self, request: AgentRequest) -> AgentOutcome: ...

    @property
    def bash_sandbox(self) -> BashSandbox:
        """Whether the agents' Bash commands are confined, and why not if they are not."""
        ...
