"""A scripted Anthropic Messages API on loopback: Claude Code with no network and no API key.

The offline demo runs the real Claude Code CLI against it, and so do the end-to-end tests.
Standard library only, so it works before any dependency is installed.

    with ScriptedModel() as model:
        model.main([agent_call("SUBTASK-1: count files"), text("done")])
        model.subagent("SUBTASK-1", [text("3 files")])
        # run `claude -p ...` with ANTHROPIC_BASE_URL=model.base_url

Script entries: a `Turn` (`text`, `tool_use`, `agent_call`, or `turn(...)` merging several into
one message), or an `ApiError` served before the next turn. Turns count assistant messages, so
a retried request gets the same turn.
"""

from . import model_log, replies, server
from .model_log import *  # noqa: F403
from .replies import *  # noqa: F403
from .server import *  # noqa: F403

__all__ = [*model_log.__all__, *replies.__all__, *server.__all__]
