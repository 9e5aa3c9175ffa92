"""Offline end-to-end harness: the real Claude Code CLI against a scripted local model.

The model server lives in the product (`smart_orchestrator.scripted`, which the demo uses);
this package adds the CLI runner and re-exports both.

    def test_delegates(scripted_model, run_claude, repo_root):
        scripted_model.main([agent_call("SUBTASK-1: count files"), text("done")])
        scripted_model.subagent("SUBTASK-1", [text("3 files")])
        run = run_claude("count the files", plugin_dir=repo_root, max_turns=5)
        run.assert_plugin_loaded("smart-orchestrator")
        run.assert_success()
        [result] = scripted_model.tool_results("main")
        assert "3 files" in result.text and not result.is_error
        scripted_model.assert_all_served()

Script entries: a `Turn` (`text`, `tool_use`, `agent_call`, or `turn(...)` merging several into
one message), or an `ApiError` served before the next turn. Turns count assistant messages, so
a retried request gets the same turn. Persistent errors retry up to 10 times with exponential
backoff: set `CLAUDE_CODE_MAX_RETRIES` through `env=` to keep such tests short.
"""

from smart_orchestrator import scripted
from smart_orchestrator.scripted import *  # noqa: F403

from . import claude_runner
from .claude_runner import *  # noqa: F403

__all__ = [*scripted.__all__, *claude_runner.__all__]
