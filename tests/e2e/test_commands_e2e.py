"""The plugin's slash commands inside the real Claude Code: they load, and what their `!`
lines print (from the plugin's own data folder) reaches the model."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from smart_orchestrator.audit import AuditLog
from smart_orchestrator.checkpoints import Checkpoints
from smart_orchestrator.store import SqliteStore
from smart_orchestrator.waves import WaveConfig, WavePlan, WaveService
from smart_orchestrator.waves.admission import MIB, AdmissionConfig
from smart_orchestrator.waves.recovery import ErrorClass, RetryPolicy
from tests.wave_fakes import FixedMetrics, ScriptedRunner, Step

from .harness import ClaudeRun, ModelRequest, ScriptedModel, Turn, text, tool_use
from .plugin_env import MCP_PREFIX, PLUGIN, audit_rows, plugin_data, run_plugin

COMMANDS = ("status", "wave", "gates", "approve", "checkpoint", "audit", "metrics", "policy")
PLAN_MD = """\
# Story 7: price labels

### Task labels: Print the labels
Make a label for each item.

### Task check: Check the labels
Depends on: labels
Compare the labels with the price list.
"""
GATES = """\
[gates]
detect = false
[gates.tier1]
tests = ["python3", "-c", "pass"]
[[gates.approvals]]
kind = "security"
paths = ["src/auth/**"]
"""


def git(work: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@localhost", *args],
                   cwd=work, check=True, capture_output=True)


def git_project(work: Path) -> None:
    """A git project whose uncommitted change needs a security review."""
    (work / ".claude").mkdir(exist_ok=True)
    (work / ".claude" / "smart-orchestrator.toml").write_text(GATES)
    (work / "src" / "auth").mkdir(parents=True)
    (work / "src" / "auth" / "login.py").write_text("ALLOWED = 3\n")
    (work / "PLAN.md").write_text(PLAN_MD)
    git(work, "init", "-q")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "base")
    (work / "src" / "auth" / "login.py").write_text("ALLOWED = 50  # raised\n")


def seed_state(db: Path, work: Path) -> str:
    """What the plugin would have recorded: a checkpoint, a denial, a wave with a retry."""
    store = SqliteStore(db)
    try:
        Checkpoints(store).save("nightly", {"wave": "w-1", "done": ["a"]})
        AuditLog(store).record("policy.decision", event="PreToolUse", tool="Agent",
                               decision="deny", denied_by=["secrets:aws-access-key-id"],
                               agent_type="general-purpose", reason="credential in prompt")
        runner = ScriptedRunner({"fetch": [Step(error=ErrorClass.RATE_LIMIT), Step()]})
        config = WaveConfig(admission=AdmissionConfig(max_agents=2, reserve_bytes=0,
                                                      memory_budget_bytes=1024 * MIB),
                            retry=RetryPolicy(initial_s=0.0), tick_s=0.01)
        service = WaveService(store, runner, config, metrics=FixedMetrics())
        try:
            plan = WavePlan.model_validate({"name": "seeded", "tasks": [
                {"id": "fetch", "prompt": "fetch"},
                {"id": "report", "prompt": "report", "depends_on": ["fetch"]}]})
            run_id = service.spawn(plan, cwd=str(work))
            assert service.wait_until_done(run_id, 30)
        finally:
            service.close()
    finally:
        store.close()
    return run_id


@pytest.fixture
def seeded(claude_dirs: dict[str, Path]) -> Iterator[str]:
    git_project(claude_dirs["work"])
    db = plugin_data(claude_dirs["home"]) / "state.db"
    db.parent.mkdir(parents=True)
    yield seed_state(db, claude_dirs["work"])


def _command(scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
             repo_root: Path, line: str) -> tuple[ClaudeRun, str]:
    """Run a slash command; return the run and what the model was given."""
    scripted_model.main([text("shown")])
    run = run_plugin(run_claude, repo_root, line)
    run.assert_success()
    requests = scripted_model.requests_for("main")
    assert requests, f"the command never reached the model: {run.result_text!r}"
    return run, requests[0].first_user_text


def test_every_command_and_skill_loads(scripted_model: ScriptedModel,
                                       run_claude: Callable[..., ClaudeRun],
                                       repo_root: Path) -> None:
    scripted_model.main([text("ready")])
    run = run_plugin(run_claude, repo_root, "hello")
    run.assert_success()
    assert {f"{PLUGIN}:{c}" for c in COMMANDS} <= set(run.slash_commands), run.slash_commands


@pytest.mark.parametrize(("line", "expected"), [
    ("status", ["## Smart Orchestrator status", "secrets:aws-access-key-id",
                "audit chain intact"]),
    ("wave", ["## Waves (newest first)", "| run | name | state | tasks |", "seeded",
              "completed"]),
    ("wave latest", ["| task | level | state | attempts |", "| fetch | 1 | succeeded | 2 |",
                     "| report | 2 | succeeded | 1 |"]),
    ("checkpoint", ["## Checkpoints", "| nightly | 1 |"]),
    ("checkpoint nightly", ["## Checkpoint `nightly`", '"done": [']),
    ("audit 5", ["**Audit:** audit chain intact", "| seq | time | kind | details |",
                 "wave.end"]),
    ("audit policy.", ["decision=deny", "tool=Agent"]),
    ("metrics", ["| metric | target |", "Wave completion rate", "100% (1/1)"]),
    ("policy", ["| setting | value | from |", "| secrets.mode | enforce | default |"]),
    ("gates", ["## Quality gates: BLOCKED at tier 3", "- tests: PASS",
               "needs a security approval", "security: waiting for approval"]),
])
def test_command_output_reaches_the_model(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun], repo_root: Path,
        seeded: str, line: str, expected: list[str]) -> None:
    _, given = _command(scripted_model, run_claude, repo_root, f"/{PLUGIN}:{line}")
    for piece in expected:
        assert piece in given, f"{piece!r} missing from what the model got:\n{given}"
    assert "Could not show this" not in given


def test_wave_command_previews_a_plan_and_the_model_starts_it(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun], repo_root: Path,
        seeded: str, claude_dirs: dict[str, Path]) -> None:
    seen: list[dict[str, object]] = []

    def start(request: ModelRequest) -> Turn | None:
        given = request.first_user_text
        if "Plan to start" not in given or request.turn != 0:
            return None
        plan = json.loads(given.split("```json", 1)[1].split("```", 1)[0])
        seen.append(plan)
        return tool_use(f"{MCP_PREFIX}__spawn_wave", {"plan": plan, "wait_s": 60,
                                                      "cwd": str(claude_dirs["work"])})

    def agents(request: ModelRequest) -> Turn | None:
        # The main agent's message quotes the plan too: only the wave's agents lack it.
        first = request.first_user_text
        if "Plan to start" in first:
            return None
        if "Print the labels" in first:
            return text("12 labels")
        return text("all labels match") if "Check the labels" in first else None

    scripted_model.on(start)
    scripted_model.on(agents)
    scripted_model.main([text("(unused)"), text("started")])
    run = run_plugin(run_claude, repo_root, f"/{PLUGIN}:wave PLAN.md", timeout=240)
    run.assert_success()
    assert scripted_model.requests_for("main"), f"no model request: {run.result_text!r}"
    given = scripted_model.requests_for("main")[0].first_user_text
    assert "## Plan to start: Story 7: price labels" in given
    assert seen and [t["id"] for t in seen[0]["tasks"]] == ["labels", "check"]  # type: ignore[index]
    [result] = scripted_model.tool_results("main")
    assert not result.is_error, result.text
    wave = json.loads(result.text)
    assert wave["state"] == "completed", wave
    assert [(t["id"], t["state"]) for t in wave["tasks"]] == [("labels", "succeeded"),
                                                              ("check", "succeeded")]


def test_approve_asks_the_user_and_records_nothing_without_a_yes(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun], repo_root: Path,
        seeded: str, claude_dirs: dict[str, Path]) -> None:
    scripted_model.main([tool_use(f"{MCP_PREFIX}__record_approval",
                                  {"kind": "security", "note": "reviewed the login limit"}),
                         text("nothing recorded")])
    run = run_plugin(run_claude, repo_root, f"/{PLUGIN}:approve security reviewed the "
                                            "login limit")
    run.assert_success()
    given = scripted_model.requests_for("main")[0].first_user_text
    assert "The user approves the `security` review" in given
    assert "`kind` set to `security`" in given
    assert "Arguments: security reviewed the login limit" in given
    [result] = scripted_model.tool_results("main")
    # `-p` mode cannot ask the user, so the elicitation is not accepted: no approval.
    assert result.is_error and "did not approve the security review" in result.text
    assert audit_rows(claude_dirs["home"], "gate.approval") == []
