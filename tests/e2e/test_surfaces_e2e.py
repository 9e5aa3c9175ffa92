"""Policy on every way the main model can start, resume, message or stop an agent.

The scripted main model works against the plugin: it reaches agents through `Workflow`
scripts, `SendMessage`, forks and `TaskStop`, not only through `Agent`. Claude Code 2.1.332
defers SendMessage and TaskStop behind ToolSearch; `ENABLE_TOOL_SEARCH=false` loads them up
front (a model could equally call ToolSearch first). Workflow asks permission, so the runs
that use it allow it, as a user who opted in would.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from smart_orchestrator.policy.breaker import CircuitBreakers
from smart_orchestrator.policy.config import BreakerPolicy
from smart_orchestrator.store import SqliteStore

from .harness import (
    ClaudeRun,
    ModelRequest,
    ScriptedModel,
    agent_call,
    send_message,
    task_stop,
    text,
    tool_use,
    turn,
    workflow_call,
)
from .plugin_env import audit_rows, data_folder_files, plugin_data, run_plugin, wait_for_audit
from .test_policy_e2e import AWS_KEY, AWS_SECRET, PEM_BODY, PRIVATE_KEY

DEFERRED = {"ENABLE_TOOL_SEARCH": "false"}
META = "export const meta = {name: 'probe', description: 'probe workflow'}\n"
AGENT_ID = re.compile(r"agentId: (a[0-9a-f]+)")


def _policy(work: Path, body: str) -> None:
    (work / ".claude").mkdir(exist_ok=True)
    (work / ".claude" / "smart-orchestrator.toml").write_text(body)


def _decisions(home: Path, tool: str | None = None) -> list[dict[str, Any]]:
    rows = [json.loads(data) for *_, data in audit_rows(home, "policy.decision")]
    return [r for r in rows if tool is None or r.get("tool") == tool]


def _sent_to_model(model: ScriptedModel, needle: str) -> list[ModelRequest]:
    return [r for r in model.requests if needle in json.dumps(r.body or {})]


def _no_secret_on_disk(home: Path, *secrets: str) -> None:
    for path, data in data_folder_files(home).items():
        for secret in secrets:
            assert secret.encode() not in data, path


class _Gate:
    """Holds a subagent's answer until the main model has seen a tool result holding one
    of `result_texts`, so the agent is still running when the main model acts on it (no timing
    in the verdict)."""

    def __init__(self, model: ScriptedModel, conversation_prefix: str,
                 *result_texts: str) -> None:
        self.reached = threading.Event()
        self.prefix = conversation_prefix
        self.result_texts = result_texts
        model.on(self.rule)

    def rule(self, request: ModelRequest) -> None:
        if request.kind == "main" and any(t in r.text for r in request.tool_results
                                          for t in self.result_texts):
            self.reached.set()
        elif request.kind == "subagent" and self.prefix in request.first_user_text:
            self.reached.wait(150)


def _launched_first(model: ScriptedModel, conversation_prefix: str) -> None:
    """Holds a background subagent's first answer until the main model has seen its launch.
    A notification that arrives while Claude Code builds the main model's next request is
    folded into that request, so the turn the script gave the notification never comes."""
    launched = threading.Event()

    def rule(request: ModelRequest) -> None:
        if request.kind == "main" and any("Async agent launched" in r.text
                                          for r in request.tool_results):
            launched.set()
        elif request.kind == "subagent" and conversation_prefix in request.first_user_text \
                and request.turn == 0:
            launched.wait(150)

    model.on(rule)


def _stop_background_agent(model: ScriptedModel, at_turn: int) -> None:
    """At `at_turn`, the main model stops the background agent its last call launched."""
    def rule(request: ModelRequest) -> Any:
        if request.kind != "main" or request.turn != at_turn:
            return None
        launched = " ".join(r.text for r in request.tool_results)
        found = AGENT_ID.search(launched)
        return task_stop(found.group(1) if found else "no-agent-id")
    model.on(rule)


# -- SendMessage -----------------------------------------------------------------------------
def test_secret_in_send_message_never_reaches_the_agent(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path]) -> None:
    scripted_model.main([
        agent_call("SM-1: watch the build", background=True, name="worker"),
        text("waiting for it"),
        send_message("worker", f"also deploy with {AWS_KEY} / {AWS_SECRET}", summary="deploy"),
        text("ok")])
    _launched_first(scripted_model, "SM-1")
    scripted_model.subagent("SM-1", [text("build is green"), text("resumed answer")])
    run = run_plugin(run_claude, repo_root, "watch the build", env=DEFERRED)
    run.assert_success(allow_denials=True)
    sent = [r for r in scripted_model.tool_results("main") if r.tool_name == "SendMessage"]
    assert sent and sent[0].is_error and "environment variables" in sent[0].text, sent
    assert _sent_to_model(scripted_model, AWS_KEY) == [] or all(
        r.kind == "main" for r in _sent_to_model(scripted_model, AWS_KEY))
    assert all("resumed answer" not in json.dumps(r.body) for r in scripted_model.requests)
    home = claude_dirs["home"]
    [row] = _decisions(home, "SendMessage")
    assert row["decision"] == "deny" and any(d.startswith("secrets") for d in row["denied_by"])
    _no_secret_on_disk(home, AWS_KEY, AWS_SECRET)


def test_secret_in_a_structured_message_or_split_across_fields_is_denied(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path]) -> None:
    head, tail = PRIVATE_KEY.split("\n", 1)
    scripted_model.main([
        agent_call("SM-2: keep an eye on it", background=True, name="watcher"),
        text("waiting"),
        turn(send_message("watcher", {"type": "shutdown_request", "reason": PRIVATE_KEY}),
             send_message("watcher", tail, summary=head)),
        text("ok")])
    _launched_first(scripted_model, "SM-2")
    scripted_model.subagent("SM-2", [text("fine"), text("resumed")])
    run_plugin(run_claude, repo_root, "watch", env=DEFERRED).assert_success(allow_denials=True)
    structured, split = [r for r in scripted_model.tool_results("main")
                         if r.tool_name == "SendMessage"]
    # Claude Code itself refuses a shutdown request to a subagent before any hook runs.
    assert structured.is_error and "private-key" not in structured.text, structured.text
    assert split.is_error and "private-key" in split.text, split.text
    assert not any(PEM_BODY in json.dumps(r.body) for r in scripted_model.requests
                   if r.kind == "subagent")
    [row] = _decisions(claude_dirs["home"], "SendMessage")
    assert row["decision"] == "deny" and row["denied_by"][0].startswith("secrets-split:")


def test_background_agent_cannot_send_a_secret_to_the_main_agent(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path]) -> None:
    scripted_model.main([agent_call("SM-5: find the key", background=True),
                         text("waiting"), text("done"), text("done")])
    _launched_first(scripted_model, "SM-5")
    scripted_model.subagent("SM-5", [
        send_message("main", f"found it: {AWS_KEY} {AWS_SECRET}", summary="key"),
        text("reported")])
    run_plugin(run_claude, repo_root, "find it", env=DEFERRED).assert_success(
        allow_denials=True)
    [sent] = scripted_model.tool_results("SM-5")
    assert sent.is_error and "environment variables" in sent.text, sent.text
    assert not any(AWS_KEY in json.dumps(r.body) for r in scripted_model.requests
                   if r.kind == "main")
    [row] = _decisions(claude_dirs["home"], "SendMessage")
    assert row["decision"] == "deny" and row["parent_agent_id"] and row["resumes"] is False


def test_send_message_resuming_an_agent_needs_a_free_slot(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path]) -> None:
    _policy(claude_dirs["work"], "[admission]\nmax_in_flight_session = 1\n"
                                 "wait_timeout_s = 2\n")
    scripted_model.main([
        agent_call("SM-3: first job", background=True, name="first"),
        text("waiting"),
        agent_call("HOLD-3: second job", background=True),
        send_message("first", "SM-3 continue with part two"),
        text("ok"), text("done")])
    _launched_first(scripted_model, "SM-3")
    scripted_model.subagent("SM-3", [text("first done"), text("part two done")])
    scripted_model.subagent("HOLD-3", [text("second done")])
    _Gate(scripted_model, "HOLD-3", '"success"', "Smart Orchestrator denied")
    run_plugin(run_claude, repo_root, "two jobs", env=DEFERRED).assert_success(
        allow_denials=True)
    [sent] = [r for r in scripted_model.tool_results("main") if r.tool_name == "SendMessage"]
    assert sent.is_error and "already running in this session" in sent.text, sent.text
    assert not any("part two done" in json.dumps(r.body) for r in scripted_model.requests)
    [row] = _decisions(claude_dirs["home"], "SendMessage")
    assert row["decision"] == "deny" and row["resumes"] is True


def test_a_resumed_agent_holds_a_slot_while_it_runs(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path]) -> None:
    _policy(claude_dirs["work"], "[admission]\nmax_in_flight_session = 1\n"
                                 "wait_timeout_s = 2\n")
    scripted_model.main([
        agent_call("SM-4: first job", background=True, name="first"),
        text("waiting"),
        send_message("first", "continue with part two"),
        agent_call("NEXT-4: another job"),
        text("ok"), text("done")])
    _launched_first(scripted_model, "SM-4")
    scripted_model.subagent("SM-4", [text("first done"), text("part two done")])
    scripted_model.subagent("NEXT-4", [text("another done")])

    def hold_the_resumed_run(request: ModelRequest) -> None:
        if request.kind == "subagent" and "SM-4" in request.first_user_text and \
                request.turn >= 1:
            decided.wait(150)
        elif request.kind == "main" and any(
                "another done" in r.text or "Smart Orchestrator denied" in r.text
                for r in request.tool_results):
            decided.set()

    decided = threading.Event()
    scripted_model.on(hold_the_resumed_run)
    run_plugin(run_claude, repo_root, "two jobs", env=DEFERRED).assert_success(
        allow_denials=True)
    results = scripted_model.tool_results("main")
    [sent] = [r for r in results if r.tool_name == "SendMessage"]
    assert not sent.is_error and "resumedAgentId" in sent.text, sent.text
    [nxt] = [r for r in results if r.tool_name == "Agent" and r.is_error]
    assert "already running in this session" in nxt.text, nxt.text
    assert scripted_model.requests_for("NEXT-4") == []
    ends = [json.loads(d) for *_, d in audit_rows(claude_dirs["home"], "surface.end")]
    [bound] = [e["bound"] for e in ends if e["tool"] == "SendMessage"]
    assert bound and bound in sent.text, ends


# -- Workflow --------------------------------------------------------------------------------
def _workflow(body: str) -> str:
    return META + body


def test_workflow_needing_more_agents_than_the_limit_is_denied(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path]) -> None:
    _policy(claude_dirs["work"], "[admission]\nmax_in_flight_session = 1\n")
    scripted_model.main([
        workflow_call(_workflow("await parallel([() => agent('WF-1: part one'), "
                                "() => agent('WF-2: part two')])")),
        text("ok"), text("done")])
    scripted_model.subagent("WF-", [text("part done")])
    run = run_plugin(run_claude, repo_root, "use a workflow", allowed_tools=["Workflow"])
    run.assert_success(allow_denials=True)
    [result] = scripted_model.tool_results("main")
    assert result.is_error and "would start 2 agents" in result.text, result.text
    assert scripted_model.requests_for("WF-") == [], "no workflow agent may start"
    [row] = _decisions(claude_dirs["home"], "Workflow")
    assert (row["decision"], row["agents"]) == ("deny", 2)
    assert row["denied_by"] == ["admission:too-many-agents"]


def test_workflow_within_the_limit_runs_every_agent_on_a_slot_of_its_own(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path]) -> None:
    _policy(claude_dirs["work"], "[admission]\nmax_in_flight_session = 2\n")
    scripted_model.main([
        workflow_call(_workflow("await parallel([() => agent('WF-3: part one'), "
                                "() => agent('WF-4: part two')])")),
        text("waiting"), text("done"), text("done")])
    scripted_model.subagent("WF-3", [text("one done")])
    scripted_model.subagent("WF-4", [text("two done")])
    run = run_plugin(run_claude, repo_root, "use a workflow", allowed_tools=["Workflow"])
    run.assert_success()
    assert scripted_model.requests_for("WF-3") and scripted_model.requests_for("WF-4")
    home = claude_dirs["home"]
    [row] = _decisions(home, "Workflow")
    assert (row["decision"], row["agents"]) == ("allow", 2)
    starts = [json.loads(d) for *_, d in wait_for_audit(home, "agent.start", 2)]
    assert [s.get("leased") for s in starts] == [True, True], starts
    stops = [json.loads(d) for *_, d in wait_for_audit(home, "agent.stop", 2)]
    assert [s["released_lease"] for s in stops] == [True, True], stops


def test_workflow_agent_prompt_with_an_escaped_secret_is_denied(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path]) -> None:
    escaped = "".join(f"\\x{ord(c):02x}" for c in AWS_KEY)
    scripted_model.main([
        workflow_call(_workflow(f"await agent('WF-5: deploy with key {escaped}')")),
        text("ok")])
    scripted_model.subagent("WF-5", [text("deployed")])
    run_plugin(run_claude, repo_root, "use a workflow", allowed_tools=["Workflow"])
    [result] = scripted_model.tool_results("main")
    assert result.is_error and "aws-access-key-id" in result.text, result.text
    assert scripted_model.requests_for("WF-5") == []
    assert _decisions(claude_dirs["home"], "Workflow")[0]["decision"] == "deny"
    _no_secret_on_disk(claude_dirs["home"], AWS_KEY)


def test_workflow_with_computed_prompts_is_denied_as_unchecked(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path]) -> None:
    # The prompts arrive through `args`, out of any static check's sight.
    scripted_model.main([
        workflow_call(_workflow("for (const p of args) { await agent(p) }"),
                      args=[f"WF-6: use {AWS_KEY}", "WF-6: again"]),
        turn(workflow_call(_workflow("const f = () => agent('WF-6: x')\n"
                                     "await parallel([f, f, f, f])"))),
        tool_use("Workflow", {"name": "probe"}),  # the saved script's meta.name
        text("ok")])
    saved = claude_dirs["work"] / ".claude" / "workflows"
    saved.mkdir(parents=True)
    (saved / "fan-out.js").write_text(_workflow("await agent('WF-6: saved')"))
    scripted_model.subagent("WF-6", [text("ran")])
    run_plugin(run_claude, repo_root, "use a workflow", allowed_tools=["Workflow"])
    results = scripted_model.tool_results("main")
    assert len(results) == 3 and all(r.is_error for r in results), results
    assert all("Workflow would start agents that cannot be checked" in r.text
               for r in results), [r.text for r in results]
    assert "saved or on-disk" in results[2].text
    assert scripted_model.requests_for("WF-6") == []
    rows = _decisions(claude_dirs["home"], "Workflow")
    assert [r["decision"] for r in rows] == ["deny", "deny", "deny"]


def test_unchecked_workflows_run_when_the_policy_allows_them(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path]) -> None:
    _policy(claude_dirs["work"], '[surfaces]\nunchecked_agents = "allow"\n')
    scripted_model.main([
        workflow_call(_workflow("for (const p of args) { await agent(p) }"),
                      args=["WF-7: computed"]),
        text("waiting"), text("done"), text("done")])
    scripted_model.subagent("WF-7", [text("ran")])
    run_plugin(run_claude, repo_root, "use a workflow", allowed_tools=["Workflow"])
    assert scripted_model.requests_for("WF-7")
    [row] = _decisions(claude_dirs["home"], "Workflow")
    assert row["decision"] == "allow" and "'for'" in row["unchecked"]


# -- TaskStop --------------------------------------------------------------------------------
def test_task_stop_frees_the_stopped_agents_slot(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path]) -> None:
    _policy(claude_dirs["work"], "[admission]\nmax_in_flight_session = 1\n"
                                 "wait_timeout_s = 3\n")
    scripted_model.main([
        agent_call("TS-1: long job", background=True),
        text("(replaced by the stop rule)"),
        agent_call("TS-2: next job"),
        text("done")])
    scripted_model.subagent("TS-1", [text("long job done")])
    scripted_model.subagent("TS-2", [text("next job done")])
    # TS-1 runs until the next call is decided, either way.
    _Gate(scripted_model, "TS-1", "next job done", "Smart Orchestrator denied")
    _stop_background_agent(scripted_model, at_turn=1)
    run_plugin(run_claude, repo_root, "two jobs", env=DEFERRED).assert_success(
        allow_denials=True)
    results = scripted_model.tool_results("main")
    stopped = [r for r in results if r.tool_name == "TaskStop"]
    assert stopped and not stopped[0].is_error, stopped
    [nxt] = [r for r in results if (r.tool_name == "Agent" and "next job" in r.text)
             or (r.tool_name == "Agent" and r.is_error)]
    assert not nxt.is_error and "next job done" in nxt.text, nxt.text
    assert scripted_model.requests_for("TS-2")
    home = claude_dirs["home"]
    ends = [json.loads(d) for *_, d in audit_rows(home, "surface.end")]
    assert any(e["tool"] == "TaskStop" and e["released_leases"] == 1 for e in ends), ends
    assert [d["decision"] for d in _decisions(home, "Agent")] == ["allow", "allow"]


# -- skills that fork -------------------------------------------------------------------------
def test_forked_skill_args_with_a_secret_never_reach_its_agent(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path]) -> None:
    folder = claude_dirs["work"] / ".claude" / "skills" / "forker"
    folder.mkdir(parents=True)
    (folder / "SKILL.md").write_text("---\nname: forker\ndescription: runs in a subagent\n"
                                     "context: fork\n---\nSKILL-1: do this: $ARGUMENTS\n")
    scripted_model.main([
        tool_use("Skill", {"skill": "forker", "args": f"deploy with {AWS_KEY} {AWS_SECRET}"}),
        tool_use("Skill", {"skill": "forker", "args": "count the files"}),
        text("ok")])
    scripted_model.subagent("SKILL-1", [text("3 files")])
    run_plugin(run_claude, repo_root, "go", allowed_tools=["Skill"]).assert_success(
        allow_denials=True)
    denied, ran = scripted_model.tool_results("main")
    assert denied.is_error and "environment variables" in denied.text, denied.text
    assert not ran.is_error and "3 files" in ran.text, ran.text
    agents = scripted_model.requests_for("SKILL-1")
    assert agents and not any(AWS_KEY in json.dumps(r.body) for r in agents)
    rows = _decisions(claude_dirs["home"], "Skill")
    assert [(r["decision"], r["forks"]) for r in rows] == [("deny", True), ("allow", True)]
    _no_secret_on_disk(claude_dirs["home"], AWS_KEY, AWS_SECRET)


# -- agent types and forks -------------------------------------------------------------------
def _open_breaker(home: Path, agent_type: str) -> None:
    db = plugin_data(home) / "state.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    store = SqliteStore(db)
    try:
        breakers = CircuitBreakers(store, BreakerPolicy(), clock=lambda: 4_000_000_000.0)
        for _ in range(3):
            breakers.record(agent_type, ok=False)
    finally:
        store.close()


def test_open_breaker_holds_for_every_spelling_of_the_type(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path]) -> None:
    # Opened far in the future, so its cool-down never ends during the test.
    _open_breaker(claude_dirs["home"], "general-purpose")
    spellings = ["General-Purpose", "general_purpose", "GENERAL PURPOSE",
                 "general\u200bpurpose", "gеneral-purpose"]
    scripted_model.main([
        turn(*[agent_call(f"BR-{k}: job", subagent_type=s) for k, s in enumerate(spellings)]),
        text("ok")])
    for k in range(len(spellings)):
        scripted_model.subagent(f"BR-{k}", [text("ran")])
    run_plugin(run_claude, repo_root, "go").assert_success(allow_denials=True)
    results = scripted_model.tool_results("main")
    assert len(results) == len(spellings)
    assert all(r.is_error and "circuit breaker" in r.text for r in results), results
    assert not any(scripted_model.requests_for(f"BR-{k}") for k in range(len(spellings)))


def test_nesting_depth_counts_however_the_type_is_spelled(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path]) -> None:
    _policy(claude_dirs["work"], "[admission]\nmax_depth = 2\n")
    scripted_model.main([agent_call("DEPTH-A: delegate", subagent_type="GENERAL PURPOSE"),
                         text("ok")])
    scripted_model.subagent("DEPTH-A", [
        agent_call("DEPTH-B: delegate again", subagent_type="General_Purpose"),
        text("a done")])
    scripted_model.subagent("DEPTH-B", [agent_call("DEPTH-C: too deep"), text("b done")])
    scripted_model.subagent("DEPTH-C", [text("c done")])
    run_plugin(run_claude, repo_root, "go", timeout=240).assert_success(allow_denials=True)
    assert scripted_model.requests_for("DEPTH-B"), "the second level is within the limit"
    [denied] = scripted_model.tool_results("DEPTH-B")
    assert denied.is_error and "nesting depth 3" in denied.text, denied.text
    assert scripted_model.requests_for("DEPTH-C") == []


def test_fork_inheriting_a_credential_is_denied(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path]) -> None:
    scripted_model.main([agent_call("FORK-1: finish the rollout", subagent_type="fork"),
                         text("ok")])
    run_plugin(run_claude, repo_root, f"roll out with this key:\n{PRIVATE_KEY}").assert_success(
        allow_denials=True)
    [result] = scripted_model.tool_results("main")
    assert result.is_error and "conversation the fork would inherit" in result.text, result.text
    assert [r for r in scripted_model.requests if r.kind == "subagent"] == []
    [row] = _decisions(claude_dirs["home"], "Agent")
    assert row["decision"] == "deny"
    assert any(d.startswith("fork-context:") for d in row["denied_by"])


def test_fork_of_a_clean_conversation_runs(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path]) -> None:
    scripted_model.main([agent_call("FORK-2: count the files", subagent_type="fork"),
                         text("ok")])
    run_plugin(run_claude, repo_root, "count the files").assert_success()
    [result] = scripted_model.tool_results("main")
    assert not result.is_error, result.text
    assert [r for r in scripted_model.requests if r.kind == "subagent"]
    assert _decisions(claude_dirs["home"], "Agent")[0]["decision"] == "allow"
