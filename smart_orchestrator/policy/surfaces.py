"""Every way a Claude Code session starts, resumes, messages or stops an agent.

`Agent` (alias `Task`, and `subagent_type: "fork"`) is checked by the engine itself; this
module gives the other surfaces the same checks (docs/policy.md has the table):

- `Workflow`: each `agent()` prompt of the script is validated and scanned, the run takes
  one admission slot per agent it may start (all or none), and a script whose prompts or
  agent count are computed at runtime is unchecked (denied by default);
- `SendMessage`: every text it carries is scanned, and a message that resumes a finished
  agent takes a slot, bound to the agent it resumed;
- `TaskStop`: a stopped agent fires no SubagentStop, so its lease (or a stopped workflow's
  leases) is released here;
- a fork inherits the whole conversation, which is scanned for credentials;
- `Skill`: a skill whose frontmatter says `context: fork` runs in a subagent that gets the
  skill's text and the call's `args`: the args are checked and the agent takes a slot.

A new surface is one entry in `PRE_TOOLS`/`POST_TOOLS` and a method here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..canonical import digest_text
from .agent_types import canonical_agent_type
from .checks import Finding, check_injection, load_allowlist, scan_secrets
from .decision import Decision, passed
from .workflow_script import analyze_script

if TYPE_CHECKING:
    from .engine import PolicyEngine

__all__ = ["FORK_TYPE", "GATED_TOOLS", "POST_TOOLS", "PRE_TOOLS", "UNCLAIMED_EVENTS",
           "WORKFLOW_AGENT_TYPE", "SurfaceChecks", "find_fork_skill"]

# Events that decide nothing and are safe to handle twice, so they are not claimed (a Stop
# carries no id of its own, so a claim would let only a session's first one run; a
# StopFailure only closes the rate gate, and a gate closed twice stays closed).
UNCLAIMED_EVENTS = frozenset({"Stop", "StopFailure"})
PRE_TOOLS = frozenset({"Workflow", "SendMessage", "Skill"})
POST_TOOLS = frozenset({"Workflow", "SendMessage", "TaskStop", "Skill"})
# PreToolUse of these starts or feeds agents: a failed check denies them.
GATED_TOOLS = frozenset({"Agent", "Task"}) | PRE_TOOLS
WORKFLOW_AGENT_TYPE = "workflow-subagent"   # what SubagentStart reports for agent() agents
FORK_TYPE = "fork"
# Claude Code writes the transcript a moment after the model's answer, and may not have
# written even the user's prompt when the fork's PreToolUse comes: the check waits, this
# long at most, for the line holding the fork's own tool call, after which the whole
# conversation the fork inherits is on disk.
FORK_TRANSCRIPT_WAIT_S = 15.0
_AGENT_ID = re.compile(r"^a[0-9a-f]{8,40}$")
_MAX_TEXTS = 10_000


class SurfaceChecks:
    def __init__(self, engine: PolicyEngine) -> None:
        self.e = engine

    # -- PreToolUse ------------------------------------------------------------------------
    def pre(self, p: Mapping[str, Any]) -> Decision:
        tool = _s(p.get("tool_name"))
        ti = p.get("tool_input")
        if not isinstance(ti, Mapping):
            return self.e._decide(p, {}, [Finding("prompt", "malformed-input", "high",
                                                  f"the {tool} call's tool_input is not an "
                                                  "object", True)], force_enforce=True)
        if tool == "Workflow":
            return self._pre_workflow(p, ti)
        if tool == "Skill":
            return self._pre_skill(p, ti)
        return self._pre_send_message(p, ti)

    def _pre_workflow(self, p: Mapping[str, Any], ti: Mapping[str, Any]) -> Decision:
        cfg = self.e.config
        script = ti.get("script")
        problem = None
        prompts: list[str] = []
        types: list[str] = []
        literals: tuple[str, ...] = ()
        if ti.get("scriptPath") not in (None, "") or ti.get("name") not in (None, ""):
            problem = "it runs a saved or on-disk script, which can change after the check"
        elif not isinstance(script, str):
            problem = "it has no inline script"
        else:
            analysis = analyze_script(script)
            problem = analysis.problem and f"the script has {analysis.problem}"
            prompts = [a.prompt for a in analysis.agents]
            types = sorted({canonical_agent_type(a.agent_type) for a in analysis.agents
                            if a.agent_type})
            literals = analysis.literals
        findings = self._unchecked("Workflow", problem)
        for k, prompt in enumerate(prompts):
            findings += self._text_checks(f"agent() prompt {k + 1}", prompt, require=True)
        extra = [("script", script)] if isinstance(script, str) else []
        extra += [("string literals", "\n".join(literals))]
        extra += [(key, json.dumps(ti.get(key), default=str)) for key in ("args",)
                  if ti.get(key) is not None]
        extra += [(key, ti[key]) for key in ("description", "title")
                  if isinstance(ti.get(key), str)]
        if cfg.secrets.mode != "off":
            findings += self._secrets(extra)[0]
        if canonical_agent_type(FORK_TYPE) in types:
            findings += self.fork_findings(p)  # a forked workflow agent inherits it all too
        view = {"prompt": "\n\n".join(prompts), "subagent_type": WORKFLOW_AGENT_TYPE,
                "run_in_background": True}
        return self.e._decide(p, view, findings, slots=max(1, len(prompts)), group=True,
                              agent_types=[WORKFLOW_AGENT_TYPE, *types],
                              audit_extra={"agents": len(prompts), "unchecked": problem})

    def _pre_send_message(self, p: Mapping[str, Any], ti: Mapping[str, Any]
                          ) -> Decision:
        cfg = self.e.config
        texts = list(_string_leaves(ti))
        message = ti.get("message")
        findings: list[Finding] = []
        if message is not None and not isinstance(message, str | Mapping):
            findings.append(Finding("prompt", "malformed-input", "high",
                                    "SendMessage's message is neither text nor an object",
                                    True))
        seen: set[str] = set()
        for field, text in texts:
            if text in seen:
                continue  # `content` repeats `message` in the hook payload
            seen.add(text)
            findings += self._text_checks(f"SendMessage {field}", text, require=False)
        updated: dict[str, Any] | None = None
        if cfg.secrets.mode != "off":
            hits, updated = self._secrets(texts, ti)
            findings += hits
        to = _s(ti.get("to") or ti.get("recipient"))
        resumes = to != "main" and not (_AGENT_ID.match(to)
                                        and self.e.admission.agent_running(to))
        view = {"prompt": _s(message) if isinstance(message, str) else json.dumps(
            message, default=str), "subagent_type": "", "run_in_background": True}
        return self.e._decide(p, view, findings, updated_input=updated,
                              slots=1 if resumes else 0,
                              audit_extra={"to": digest_text(to)["sha256"][:16],
                                           "resumes": resumes})

    def _pre_skill(self, p: Mapping[str, Any], ti: Mapping[str, Any]) -> Decision:
        name = _s(ti.get("skill"))
        fork = find_fork_skill(name, self.e.project_dir)
        if fork is False:
            return passed("PreToolUse")  # runs inline: its args reach only its own conversation
        texts = list(_string_leaves(ti.get("args"), "args"))
        findings: list[Finding] = []
        for field, text in texts:
            findings += self._text_checks(f"Skill {field}", text, require=False)
        if self.e.config.secrets.mode != "off":
            findings += self._secrets(texts)[0]
        agent_type, background = fork if fork is not None else (None, False)
        view = {"prompt": "\n".join(t for _, t in texts), "run_in_background": background,
                "subagent_type": agent_type or ""}
        # A skill this reader cannot find (a plugin's) may fork: its args are checked, but
        # no slot is taken for an agent that may not exist.
        return self.e._decide(p, view, findings, slots=1 if fork else 0,
                              audit_extra={"skill": name[:100], "forks": bool(fork)})

    def _unchecked(self, tool: str, problem: str | None) -> list[Finding]:
        if problem is None:
            return []
        blocking = self.e.config.surfaces.unchecked_agents == "deny"
        return [Finding("surfaces", "unchecked-agents", "high",
                        f"{tool} would start agents that cannot be checked: {problem}",
                        blocking)]

    def _text_checks(self, where: str, text: str, *, require: bool) -> list[Finding]:
        cfg = self.e.config
        found: list[Finding] = []
        if cfg.prompt.mode == "off":
            return found
        if len(text) > cfg.prompt.max_chars:
            found.append(Finding("prompt", "max-chars", "medium", f"{where} is {len(text)} "
                                 f"characters, over the limit of {cfg.prompt.max_chars}", True))
        if require and len(text.strip()) < max(1, cfg.prompt.min_chars):
            found.append(Finding("prompt", "min-chars", "medium",
                                 f"{where} is empty or under {cfg.prompt.min_chars} characters",
                                 True))
        if cfg.prompt.injection != "off":
            found += self.e._guard("prompt", lambda: check_injection(
                text, cfg.prompt.injection_deny_severity))
        return found

    def _secrets(self, texts: list[tuple[str, str]], ti: Mapping[str, Any] | None = None
                 ) -> tuple[list[Finding], dict[str, Any] | None]:
        """Each text alone, then all of them together (a secret split across fields)."""
        try:
            allow = load_allowlist(self.e.config.secrets, self.e.project_dir)
            found: list[Finding] = []
            redacted: dict[str, str] = {}
            for field, text in texts[:_MAX_TEXTS]:
                hits, clean = scan_secrets(text, allow)
                found += [Finding("secrets", f.rule_id, f.severity, f"{f.rule_id} in {field}",
                                  True) for f in hits]
                if clean is not None:
                    redacted[field] = clean
            if not found:
                joined, _ = scan_secrets("\n".join(t for _, t in texts), allow)
                joined += scan_secrets(" ".join(t for _, t in texts), allow)[0]
                # Split across fields: no single field can be redacted, so it is denied.
                return [Finding("secrets-split", f.rule_id, f.severity,
                                f"{f.rule_id} split across fields", True)
                        for f in joined[:5]], None
            updated = _replace_leaves(ti, redacted) if ti is not None else None
            return found, updated
        except Exception as exc:  # a crashed scan must not silently pass a secret
            return self.e._check_failed("secrets", exc), None

    # -- the fork's inherited conversation ---------------------------------------------------
    def fork_findings(self, p: Mapping[str, Any]) -> list[Finding]:
        cfg = self.e.config
        if cfg.secrets.mode == "off":
            return []
        path = _s(p.get("transcript_path"))
        limit = cfg.surfaces.max_fork_context_mb * 1024 * 1024
        try:
            size = Path(path).stat().st_size if path else -1
        except OSError:
            size = -1
        if size < 0 or size > limit:
            why = ("the conversation it inherits is not readable" if size < 0 else
                   f"the conversation it inherits is over {cfg.surfaces.max_fork_context_mb}"
                   " MB")
            return self._unchecked("Agent (fork)", why)
        try:
            raw = self._caught_up(path, _s(p.get("tool_use_id")), limit)
            if raw is None:
                return self._unchecked("Agent (fork)", "Claude Code has not yet written the "
                                       "conversation it inherits; try again")
            text = "\n".join(_transcript_texts(raw))
            allow = load_allowlist(cfg.secrets, self.e.project_dir)
            hits, _ = scan_secrets(text, allow)
        except Exception as exc:  # an unscanned context is treated as holding a secret
            return self.e._check_failed("secrets", exc)
        found = [Finding("fork-context", f.rule_id, f.severity, f"{f.rule_id} in the "
                         "conversation the fork would inherit", True) for f in hits[:5]]
        if not found and _s(p.get("session_id")) in self.e.conversation_credentials:
            found.append(Finding("fork-context", "prompt-credential", "high", "a credential a "
                                 "prompt gave the conversation the fork would inherit", True))
        return found

    def _caught_up(self, path: str, tool_use_id: str, limit: int) -> str | None:
        """The transcript once it holds the call being decided (None past the wait)."""
        deadline = self.e.clock() + FORK_TRANSCRIPT_WAIT_S
        pause = 0.02
        while True:
            raw = Path(path).read_bytes()[:limit].decode("utf-8", "replace")
            if not tool_use_id or f'"{tool_use_id}"' in raw:
                return raw
            if self.e.clock() >= deadline:
                return None
            self.e.sleep(pause)
            pause = min(pause * 2, 0.25)

    # -- PostToolUse / Stop / SubagentStart ----------------------------------------------------
    def post(self, p: Mapping[str, Any]) -> Decision:
        e = self.e
        from .engine import _lease_id

        tool = _s(p.get("tool_name"))
        session = _s(p.get("session_id"))
        resp = p.get("tool_response") if isinstance(p.get("tool_response"), Mapping) else {}
        ti = p.get("tool_input") if isinstance(p.get("tool_input"), Mapping) else {}
        assert isinstance(resp, Mapping) and isinstance(ti, Mapping)
        failed = p.get("hook_event_name") == "PostToolUseFailure"
        now_us = int(e.clock() * 1e6)
        released = 0
        bound = ""
        cost: dict[str, Any] | None = None
        if tool == "Workflow":
            task = _s(resp.get("taskId"))
            if failed or not task:
                released = e.admission.release_group(_lease_id(p))
            else:
                e.admission.rename_group(_lease_id(p), _workflow_group(session, task))
                bound = task
        elif tool == "SendMessage":
            agent = _s(resp.get("resumedAgentId") or resp.get("revivedAgentId"))
            if agent and not failed:
                # Held until its SubagentStop, or the next Stop that no longer lists it.
                e.admission.bind(_lease_id(p), agent)
                bound = agent
            else:
                released = int(e.admission.release(lease_id=_lease_id(p), now_us=now_us))
        elif tool == "Skill":
            agent = _s(resp.get("agentId"))
            if agent and not failed and resp.get("status") == "async_launched":
                e.admission.bind(_lease_id(p), agent)
                bound = agent
            else:
                released = int(e.admission.release(lease_id=_lease_id(p), now_us=now_us))
        elif tool == "TaskStop" and not failed:
            task = _s(resp.get("task_id") or ti.get("task_id") or ti.get("shell_id"))
            if task:
                released = e.admission.release_group(_workflow_group(session, task))
                released += int(e.admission.release(agent_id=task, now_us=now_us))
                # A stopped agent fires no SubagentStop: its usage so far settles here.
                cost = e.budgets.stopped(p, task)
        e.audit.record("surface.end", session_id=session, tool=tool,
                       tool_use_id=_s(p.get("tool_use_id")), failed=failed,
                       released_leases=released, bound=bound or None, source=e.source,
                       **({"cost": cost} if cost else {}))
        return passed(str(p.get("hook_event_name") or "PostToolUse"))

    def stop(self, p: Mapping[str, Any]) -> Decision:
        """A turn ended: background agents and workflows Claude Code no longer lists as
        running give their slots back (a workflow's unused ones, a stopped agent's)."""
        tasks = p.get("background_tasks")
        if not isinstance(tasks, list):
            return passed("Stop")
        session = _s(p.get("session_id"))
        running = {_s(t.get("id")) for t in tasks if isinstance(t, Mapping)
                   and t.get("status") in ("running", "pending")}
        marker = _workflow_group(session, "")
        released = self.e.admission.release_finished(session, running)
        for group in self.e.admission.groups(session, marker):
            if group[len(marker):] not in running:
                released += self.e.admission.release_group(group)
        if released:
            self.e.audit.record("surface.end", session_id=session, tool="Workflow",
                                released_leases=released, reason="no longer running",
                                source=self.e.source)
        return passed("Stop")

    def agent_started(self, session_id: str, agent_type: str, agent_id: str) -> bool | None:
        """A workflow agent takes one of the slots its workflow reserved."""
        if canonical_agent_type(agent_type) != canonical_agent_type(WORKFLOW_AGENT_TYPE):
            return None
        return self.e.admission.bind_unnamed(session_id, WORKFLOW_AGENT_TYPE, agent_id)


_SKILL_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
_FRONTMATTER_KEY = re.compile(r"^(context|agent|background)\s*:\s*['\"]?([^'\"#\s]*)", re.M)


def find_fork_skill(name: str, project_dir: Path
                    ) -> tuple[str | None, bool] | Literal[False] | None:
    """(agent type, background) for a `context: fork` skill, False for an inline one,
    None when the skill's file is not where project and user skills live."""
    name = name.lstrip("/")
    if not _SKILL_NAME.match(name) or name.startswith("."):
        return None
    home = Path.home()
    for base in (project_dir / ".claude", home / ".claude"):
        for path in (base / "skills" / name / "SKILL.md", base / "commands" / f"{name}.md"):
            try:
                text = path.read_text("utf-8", "replace")[:20_000]
            except OSError:
                continue
            head = text.split("\n---", 1)[0] if text.startswith("---") else ""
            keys = {k: v for k, v in _FRONTMATTER_KEY.findall(head)}
            if keys.get("context") != "fork":
                return False
            return keys.get("agent") or None, keys.get("background", "").lower() == "true"
    return None


def _workflow_group(session: str, task: str) -> str:
    return f"wf:{session}:{task}"


def _string_leaves(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path or "text", value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _string_leaves(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for k, item in enumerate(value):
            yield from _string_leaves(item, f"{path}[{k}]")


def _replace_leaves(value: Any, redacted: Mapping[str, str], path: str = "") -> Any:
    if isinstance(value, str):
        return redacted.get(path or "text", value)
    if isinstance(value, Mapping):
        return {k: _replace_leaves(v, redacted, f"{path}.{k}" if path else str(k))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_leaves(v, redacted, f"{path}[{k}]") for k, v in enumerate(value)]
    return value


def _transcript_texts(raw: str) -> Iterator[str]:
    """The strings of a JSONL transcript, unescaped (a PEM's line breaks are real again)."""
    for line in raw.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            yield line
            continue
        yield from (text for _, text in _string_leaves(entry))


def _s(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))
