"""The plugin's skills inside the real Claude Code: a scripted main agent invokes each one
and makes the calls its instructions prescribe, against the real MCP server.

Only the skill itself is allowed on the command line (`Skill(smart-orchestrator:NAME)`):
the tools it uses must be granted by its own `allowed-tools`, as for a user.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from .harness import ClaudeRun, ModelRequest, ScriptedModel, ToolResult, Turn, text, tool_use
from .plugin_env import MCP_PREFIX, PLUGIN, audit_rows, plugin_data, run_plugin
from .test_commands_e2e import git_project, seed_state

SKILLS = ("execute", "quality-gate", "code-review", "progress-tracker")
Step = Callable[[ModelRequest], Turn]
REVIEW_FINDINGS = {"findings": [{"path": "src/auth/login.py", "line": 1, "severity": "medium",
                                 "message": "the limit has no test"}]}


def _description(name: str, repo_root: Path) -> str:
    head = (repo_root / "skills" / name / "SKILL.md").read_text().split("---")[1]
    return re.search(r"^description: (.+)$", head, re.MULTILINE).group(1)  # type: ignore[union-attr]


def _skill_body(request: ModelRequest) -> str:
    """The skill's instructions, wherever they are in the conversation."""
    return next(m["content"][-1]["text"] for m in request.messages if m["role"] == "user"
                and "Base directory for this skill" in str(m["content"]))


def _result(request: ModelRequest, tool: str) -> Any:
    [result] = [r for r in request.tool_results if r.tool_name == tool][-1:]
    return json.loads(result.text)


def _drive(model: ScriptedModel, name: str, steps: Sequence[Step], **skill_args: str) -> None:
    """Turn 0 invokes the skill; each later turn is computed from what came back."""
    def driver(request: ModelRequest) -> Turn | None:
        if request.conversation != "main":
            return None
        if request.turn == 0:
            return tool_use("Skill", {"skill": f"{PLUGIN}:{name}", **skill_args})
        if request.turn <= len(steps):
            return steps[request.turn - 1](request)
        return text("done")

    model.on(driver)


def _run(name: str, model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
         repo_root: Path) -> tuple[ClaudeRun, list[ToolResult]]:
    run = run_plugin(run_claude, repo_root, f"use the {name} skill",
                     allowed_tools=[f"Skill({PLUGIN}:{name})"], timeout=240)
    run.assert_success()
    model.assert_no_unscripted()
    assert f"{PLUGIN}:{name}" in run.skills, run.skills
    # The model is offered the skill with its description: that is how it picks it.
    first = model.requests_for("main")[0]
    assert _description(name, repo_root) in json.dumps(first.body), "description not offered"
    results = model.tool_results("main")
    failed = [(r.tool_name, r.text[:300]) for r in results if r.is_error]
    assert not failed, failed
    return run, results


@pytest.fixture
def project(claude_dirs: dict[str, Path]) -> str:
    git_project(claude_dirs["work"])
    db = plugin_data(claude_dirs["home"]) / "state.db"
    db.parent.mkdir(parents=True)
    return seed_state(db, claude_dirs["work"])


def test_execute_converts_the_plan_runs_the_wave_gates_and_checkpoints_it(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun], repo_root: Path,
        project: str, claude_dirs: dict[str, Path]) -> None:
    work = claude_dirs["work"]

    def convert(r: ModelRequest) -> Turn:
        block = re.search(r"```bash\n(.+?)\n```", _skill_body(r), re.DOTALL).group(1)  # type: ignore[union-attr]
        assert str(repo_root) in block, "CLAUDE_PLUGIN_ROOT was not substituted"
        return tool_use("Bash", {"command": block.replace("PLAN_FILE", "PLAN.md")})

    def spawn(r: ModelRequest) -> Turn:
        plan = json.loads([x for x in r.tool_results if x.tool_name == "Bash"][-1].text)
        return tool_use(f"{MCP_PREFIX}__spawn_wave", {"plan": plan, "cwd": str(work),
                                                      "wait_s": 600})

    def save(r: ModelRequest) -> Turn:
        wave = _result(r, f"{MCP_PREFIX}__spawn_wave")
        gates = _result(r, f"{MCP_PREFIX}__gate_status")
        return tool_use(f"{MCP_PREFIX}__checkpoint_save", {"name": "execute:PLAN.md", "state": {
            "plan": "PLAN.md", "run_id": wave["run_id"], "wave_state": wave["state"],
            "tasks": {t["id"]: t["state"] for t in wave["tasks"]},
            "gates_passed": gates["passed"], "blocking_tier": gates["blocking_tier"],
            "tree": gates["tree"]}})

    def report(r: ModelRequest) -> Turn:
        line = re.search(r"`(python3 [^`]+ report RUN_ID [^`]+)`", _skill_body(r)).group(1)  # type: ignore[union-attr]
        run_id = _result(r, f"{MCP_PREFIX}__spawn_wave")["run_id"]
        return tool_use("Bash", {"command": line.replace("RUN_ID", run_id)})

    _drive(scripted_model, "execute", [
        convert,
        lambda _: tool_use(f"{MCP_PREFIX}__checkpoint_list", {"name": "execute:PLAN.md"}),
        spawn,
        lambda _: tool_use(f"{MCP_PREFIX}__gate_status", {}),
        save,
        report,
    ], args="PLAN.md")
    scripted_model.agent("Print the labels", [text("12 labels printed")])
    scripted_model.agent("Check the labels", [text("all 12 labels match the price list")])
    _run("execute", scripted_model, run_claude, repo_root)

    last = scripted_model.requests_for("main")[-1]
    wave = _result(last, f"{MCP_PREFIX}__spawn_wave")
    assert wave["state"] == "completed", wave
    assert {t["id"]: t["depends_on"] for t in wave["tasks"]} == {"labels": [],
                                                                   "check": ["labels"]}
    check = scripted_model.requests_for("Check the labels")[0]
    assert "12 labels printed" in check.first_user_text, "dependency result not passed on"
    gates = _result(last, f"{MCP_PREFIX}__gate_status")
    assert gates["blocking_tier"] == 3 and not gates["passed"]
    ends = [json.loads(d) for *_, d in audit_rows(claude_dirs["home"], "wave.end")]
    assert any(e["run_id"] == wave["run_id"] and e["state"] == "completed" for e in ends)
    [saved] = [r for r in scripted_model.tool_results("main")
               if r.tool_name == f"{MCP_PREFIX}__checkpoint_save"]
    assert json.loads(saved.text)["checkpoint"]["name"] == "execute:PLAN.md"
    assert (work / f"wave-{wave['run_id']}.html").is_file()


def test_quality_gate_reports_the_servers_own_verdict(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun], repo_root: Path,
        project: str, claude_dirs: dict[str, Path]) -> None:
    _drive(scripted_model, "quality-gate", [
        lambda _: tool_use(f"{MCP_PREFIX}__gate_status", {})])
    # The home is the module's: an earlier wave ran the gates on its merged result.
    try:
        before = len(audit_rows(claude_dirs["home"], "gate.check"))
    except sqlite3.OperationalError:  # this test alone: no database yet
        before = 0
    _, results = _run("quality-gate", scripted_model, run_claude, repo_root)
    gates = json.loads(results[-1].text)
    assert (gates["passed"], gates["blocking_tier"]) == (False, 3)
    assert gates["tiers"][0]["checks"][0]["status"] == "passed"
    ran = [json.loads(d) for *_, d in audit_rows(claude_dirs["home"], "gate.check")][before:]
    assert [c["name"] for c in ran] == ["tests"], "the server ran the check itself"


def test_code_review_runs_parallel_reviewers_with_the_skills_output_schema(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun], repo_root: Path,
        project: str, claude_dirs: dict[str, Path]) -> None:
    focus = {"correctness": "correctness and clarity", "security": "security",
             "tests": "missing or weak tests"}

    def reviewers(r: ModelRequest) -> Turn:
        schema_text = re.search(r"`output_schema`:\s*`(.+?)`\.", _skill_body(r),
                                re.DOTALL).group(1)  # type: ignore[union-attr]
        schema = json.loads(" ".join(schema_text.split()))
        paths = _result(r, f"{MCP_PREFIX}__gate_status")["changed_paths"]
        tasks = [{"id": task_id, "agent": {"name": "reviewer"},
                  "allowed_tools": ["Read", "Grep", "Glob"], "output_schema": schema,
                  "prompt": f"REVIEW-{task_id}: Review these changed files of the project "
                            f"for {what}: {', '.join(paths)}."}
                 for task_id, what in focus.items()]
        return tool_use(f"{MCP_PREFIX}__spawn_wave", {"plan": {"tasks": tasks}, "wait_s": 600,
                                                      "cwd": str(claude_dirs["work"])})

    _drive(scripted_model, "code-review", [
        lambda _: tool_use(f"{MCP_PREFIX}__gate_status", {"run": False}), reviewers])
    for task_id in focus:
        scripted_model.agent(f"REVIEW-{task_id}:", [text(json.dumps(REVIEW_FINDINGS))])
    _, results = _run("code-review", scripted_model, run_claude, repo_root)
    assert json.loads(results[1].text)["changed_paths"] == ["src/auth/login.py"]
    wave = json.loads(results[-1].text)
    assert wave["state"] == "completed", wave
    assert {t["id"] for t in wave["tasks"]} == set(focus)
    assert all(json.loads(t["output"]) == REVIEW_FINDINGS for t in wave["tasks"])


def test_progress_tracker_reads_runs_checkpoints_and_the_audit_chain(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun], repo_root: Path,
        project: str) -> None:
    def status(r: ModelRequest) -> Turn:
        newest = _result(r, f"{MCP_PREFIX}__list_runs")["runs"][0]["run_id"]
        return tool_use(f"{MCP_PREFIX}__wave_status", {"run_id": newest, "output_chars": 0})

    _drive(scripted_model, "progress-tracker", [
        lambda _: tool_use(f"{MCP_PREFIX}__list_runs", {"limit": 5}),
        status,
        lambda _: tool_use(f"{MCP_PREFIX}__checkpoint_list", {}),
        lambda _: tool_use(f"{MCP_PREFIX}__audit_verify", {}),
    ])
    _, results = _run("progress-tracker", scripted_model, run_claude, repo_root)
    runs, wave, checkpoints, audit = (json.loads(r.text) for r in results[1:])
    assert [r["run_id"] for r in runs["runs"]] == [project]
    assert wave["state"] == "completed"
    assert [(t["id"], t["attempts"]) for t in wave["tasks"]] == [("fetch", 2), ("report", 1)]
    assert [c["name"] for c in checkpoints["checkpoints"]] == ["nightly"]
    assert audit["ok"] is True
