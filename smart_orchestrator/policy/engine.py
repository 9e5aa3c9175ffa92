"""The policy engine: one hook payload in, one `Decision` out.

Adapters (the `policy_check` hook calls, the SDK callbacks of wave agents) parse their
input into Claude Code's hook payload shape, call `PolicyEngine.handle`, and write the
returned `Decision` as their caller reads it (`mcp_server/hook_output.py`).
It never raises: a crash in a security check denies (per the check's `on_error`), and every
decision is written to the audit chain as digests, rule ids and numbers, never raw text.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..audit import AuditLog
from ..budget.live_transcripts import LiveTranscripts
from ..canonical import digest_text
from ..errors import StoreUnapplied
from ..paths import data_dir
from ..resources import SystemSnapshot, sample_system
from ..scrub import scrub_label, scrub_text
from ..store.base import Store
from .admission import Admission, LeaseRequest
from .agent_types import canonical_agent_type
from .breaker import CircuitBreakers
from .budget_hooks import BudgetChecks, BudgetVerdict
from .checks import Finding, check_injection, check_prompt, load_allowlist, scan_secrets
from .config import PolicyConfig
from .decision import Decision, Verdict, deny, passed
from .outputs import OutputChecks
from .surfaces import FORK_TYPE, GATED_TOOLS, POST_TOOLS, PRE_TOOLS, SurfaceChecks

__all__ = ["AGENT_TOOLS", "PolicyEngine"]

AGENT_TOOLS = frozenset({"Agent", "Task"})
REDACTED = "Smart Orchestrator redacted credentials from the prompt"
ENV_ADVICE = ("Pass credentials to subagents through environment variables or files they "
              "read, never inside the prompt.")


class PolicyEngine:
    def __init__(self, store: Store, config: PolicyConfig, *, project_dir: Path,
                 source: str = "server", clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep,
                 metrics: Callable[[], SystemSnapshot] = sample_system,
                 owner_pid: int | None = None,
                 transcripts: LiveTranscripts | None = None) -> None:
        self.config = config
        self.store = store
        self.audit = AuditLog(store)
        self.project_dir = project_dir
        self.source = source
        self.clock = clock
        self.sleep = sleep
        self.admission = Admission(store, config.admission, clock=clock, sleep=sleep,
                                   metrics=metrics)
        self.breakers = CircuitBreakers(store, config.breaker, clock)
        self.owner_pid = owner_pid
        # Sessions whose conversation a prompt gave a credential (a fork would inherit it).
        self.conversation_credentials: set[str] = set()
        self.outputs = OutputChecks(self)
        self.surfaces = SurfaceChecks(self)
        from ..budget import Budget
        from .trust import project_key

        self.budgets = BudgetChecks(self, Budget(store, config.budget,
                                                 project=project_key(project_dir), clock=clock),
                                    transcripts or LiveTranscripts())

    # -- entry -------------------------------------------------------------------------
    def handle(self, payload: Mapping[str, Any]) -> Decision:
        event = str(payload.get("hook_event_name") or "")
        tool = str(payload.get("tool_name") or "")
        try:
            try:
                # A team store confirms the decision's writes when this ends; a failure
                # there raises, and the call is denied like any other store failure.
                with self.store.decision():
                    return self._dispatch(event, tool, payload)
            except StoreUnapplied:
                # Its connection was found dead before the store did anything of it (the
                # server restarted since the last call): once more, on a new one.
                with self.store.decision():
                    return self._dispatch(event, tool, payload)
        except Exception as exc:  # the boundary of a security hook: decide, never escape
            return self.crashed(event, tool, payload, exc)

    def _dispatch(self, event: str, tool: str, payload: Mapping[str, Any]) -> Decision:
        if event == "PreToolUse":
            self.budgets.retry_heard(payload)
            if tool in AGENT_TOOLS:
                return self.pre_agent(payload)
            if tool in PRE_TOOLS:
                return self.surfaces.pre(payload)
            return self.pre_tool(payload)
        if event == "PostToolUseFailure" and tool in ("Agent", "Task"):
            self.budgets.api_failed(payload)
        if event in ("PostToolUse", "PostToolUseFailure") and tool in AGENT_TOOLS:
            return self.outputs.post_agent(payload)
        if event in ("PostToolUse", "PostToolUseFailure") and tool in POST_TOOLS:
            return self.surfaces.post(payload)
        if event == "PostToolUse" and not payload.get("agent_id"):
            return self.outputs.main_tool_result(payload)
        if event == "Stop":
            return self.surfaces.stop(payload)
        if event == "StopFailure":
            self.budgets.api_failed(payload)
            return passed(event)
        if event == "SubagentStart":
            return self.subagent_start(payload)
        if event == "SubagentStop":
            return self.outputs.subagent_stop(payload)
        if event == "UserPromptSubmit":
            return self.outputs.prompt_submit(payload)
        if event == "SessionEnd":
            return self.session_end(payload)
        if event == "PreCompact":
            return self.pre_compact(payload)
        return passed(event)

    def crashed(self, event: str, tool: str, payload: Mapping[str, Any],
                exc: BaseException) -> Decision:
        where = _log_crash(exc)
        reason = (f"Smart Orchestrator's policy check failed ({type(exc).__name__}); the call "
                  f"is denied because security checks fail closed. Details: {where}")
        # The store itself may be what failed; the denial stands anyway.
        with contextlib.suppress(Exception):
            self.audit.record("policy.error", event=event, tool=tool, error=type(exc).__name__,
                              session_id=_s(payload.get("session_id")), source=self.source)
        if event == "PreToolUse" and tool in GATED_TOOLS:
            return deny(reason)
        return passed(event)

    # -- PreToolUse(Agent) ---------------------------------------------------------------
    def pre_agent(self, p: Mapping[str, Any]) -> Decision:
        cfg = self.config
        ti = p.get("tool_input")
        problem = _shape_problem(p, ti)
        if problem is not None:
            return self._decide(p, ti if isinstance(ti, Mapping) else {},
                                [Finding("prompt", "malformed-input", "high", problem, True)],
                                force_enforce=True)
        assert isinstance(ti, Mapping)
        raw_prompt = ti.get("prompt")
        prompt = raw_prompt if isinstance(raw_prompt, str) else ""
        findings: list[Finding] = []
        if cfg.prompt.mode != "off":
            findings += self._guard("prompt", lambda: check_prompt(ti, cfg.prompt))
            if cfg.prompt.injection != "off":
                findings += self._guard("prompt", lambda: check_injection(
                    prompt, cfg.prompt.injection_deny_severity))
        updated: dict[str, Any] | None = None
        if cfg.secrets.mode != "off":
            secret_findings, updated = self._scan_prompt_secrets(ti)
            findings += secret_findings
        if canonical_agent_type(_s(ti.get("subagent_type"))) == FORK_TYPE:
            findings += self.surfaces.fork_findings(p)
        return self._decide(p, ti, findings, updated_input=updated)

    def _scan_prompt_secrets(self, ti: Mapping[str, Any]
                             ) -> tuple[list[Finding], dict[str, Any] | None]:
        def run() -> tuple[list[Finding], dict[str, Any] | None]:
            allow = load_allowlist(self.config.secrets, self.project_dir)
            found: list[Finding] = []
            updated = dict(ti)
            for field in ("prompt", "description"):
                value = ti.get(field)
                if isinstance(value, str):
                    hits, redacted = scan_secrets(value, allow)
                    found += [Finding(f.check, f.rule_id, f.severity,
                                      f"{f.rule_id} in {field}, line {f.detail.rsplit(' ', 1)[-1]}",
                                      True) for f in hits]
                    if redacted is not None:
                        updated[field] = redacted
            return found, (updated if found else None)
        try:
            return run()
        except Exception as exc:  # a crashed scan must not silently pass a secret
            return self._check_failed("secrets", exc), None

    def _decide(self, p: Mapping[str, Any], ti: Mapping[str, Any], findings: list[Finding],
                *, updated_input: dict[str, Any] | None = None,
                force_enforce: bool = False, slots: int = 1, group: bool = False,
                agent_types: Sequence[str] | None = None,
                audit_extra: Mapping[str, Any] | None = None) -> Decision:
        """Deny on enforced findings, then breakers, then admission of `slots` agents
        (0: the call starts none), and one audit row whatever the outcome."""
        cfg = self.config
        redact = (updated_input is not None and cfg.secrets.action == "redact"
                  and cfg.secrets.mode == "enforce")
        enforced: list[Finding] = []
        warned: list[Finding] = []
        for f in findings:
            if not f.blocking or (redact and f.check == "secrets"):
                continue
            mode = "enforce" if force_enforce else self._mode(f.check)
            (enforced if mode == "enforce" else warned).append(f)
        base = {**self._base(p, ti), **(audit_extra or {})}
        if enforced:
            return self._deny_findings(base, enforced, warned, findings)
        trials: list[tuple[str, str]] = []
        if slots:
            with contextlib.suppress(Exception):  # only a hint; the reads themselves report
                self.budgets.read_ahead(ti, base)
        if slots and cfg.breaker.mode != "off":
            tripped = self._breakers(base, agent_types or [base["agent_type"]], warned,
                                     findings, trials)
            if tripped is not None:
                self._settle_trials(trials, None)
                return tripped
        lease_id = _lease_id(p)
        spent = self._reserve_budget(ti, base, lease_id, slots) if slots else None
        if spent is not None and spent.enforced:
            self._settle_trials(trials, None)
            return self._deny_findings(base, spent.enforced, warned, findings,
                                       retry_after=spent.retry_after_s)
        warned += spent.warned if spent is not None else []
        try:
            admitted = (self._admit(p, lease_id, base, warned, findings, slots, group)
                        if slots else (0, 1, ""))
        except BaseException:
            self._settle_trials(trials, None)
            if spent is not None and spent.reserved:
                self.budgets.release(lease_id, slots)
            raise
        if isinstance(admitted, Decision) and spent is not None and spent.reserved:
            self.budgets.release(lease_id, slots)  # denied: it never runs, nothing charged
        self._settle_trials(trials, None if isinstance(admitted, Decision) else
                            (f"{lease_id}#0" if group else lease_id))
        if isinstance(admitted, Decision):
            return admitted
        self.audit.record("policy.decision", **base, decision="allow",
                          redacted=redact, findings=_summary(findings),
                          would_deny=[f"{f.check}:{f.rule_id}" for f in warned],
                          waited_ms=admitted[0], depth=admitted[1])
        notes = [f"would deny ({f.check}): {f.detail}" for f in warned]
        if admitted[2]:
            notes.append(admitted[2])
        if redact:
            return Decision("PreToolUse", Verdict.ALLOW, REDACTED, updated_input=updated_input,
                            system_message=_notes(notes))
        return Decision("PreToolUse", system_message=_notes(notes))

    def _reserve_budget(self, ti: Mapping[str, Any], base: dict[str, Any], lease_id: str,
                        slots: int) -> BudgetVerdict:
        try:
            return self.budgets.reserve(ti, base, lease_id, slots)
        except Exception as exc:  # e.g. a locked store: decided by the section's on_error
            return BudgetVerdict(self._check_failed("budget", exc), [], False)

    def _breakers(self, base: dict[str, Any], agent_types: Sequence[str],
                  warned: list[Finding], findings: list[Finding],
                  trials: list[tuple[str, str]]) -> Decision | None:
        """Each type's breaker; a half-open one this call is the trial of goes in `trials`."""
        for agent_type in agent_types:
            verdict = self.breakers.check(agent_type)
            if verdict.trial_owner is not None:
                trials.append((agent_type, verdict.trial_owner))
            if verdict.allowed:
                continue
            f = Finding("breaker", "circuit-open", "high", verdict.reason, True)
            if self.config.breaker.mode == "enforce":
                return self._deny_findings(base, [f], warned, findings,
                                           retry_after=verdict.retry_after_s)
            warned.append(f)
        return None

    def _settle_trials(self, trials: list[tuple[str, str]], lease_id: str | None) -> None:
        """The trials belong to the agent from now on: a call that will not run frees them
        for the next caller (`lease_id` None); an admitted one lives as long as its lease."""
        for agent_type, owner in trials:
            if lease_id is None:
                self.breakers.release_trial(agent_type, owner)
            else:
                self.breakers.bind_trial(
                    agent_type, owner, f"lease:{lease_id}"
                    if self.config.admission.mode != "off" else "agent:unleased",
                    self.config.admission.lease_ttl_s)

    def _admit(self, p: Mapping[str, Any], lease_id: str, base: dict[str, Any],
               warned: list[Finding], findings: list[Finding], slots: int = 1,
               group: bool = False) -> Decision | tuple[int, int, str]:
        mode = self.config.admission.mode
        if mode == "off":
            return (0, 1, "")
        req = LeaseRequest(
            lease_id=lease_id, session_id=base["session_id"], agent_type=base["agent_type"],
            parent_agent_id=_s(p.get("agent_id")) or None,
            background=base["background"], owner_pid=self.owner_pid, slots=slots, group=group)
        try:
            result = self.admission.acquire(req, enforce=(mode == "enforce"))
        except Exception as exc:  # e.g. a locked store: decided by the section's on_error
            failed = self._check_failed("admission", exc)
            if failed:
                return self._deny_findings(base, failed, warned, findings)
            return (0, 1, "")
        if not result.granted:
            f = Finding("admission", result.rule_id, "high", result.reason, True)
            if mode == "enforce":
                return self._deny_findings(base, [f], warned, findings,
                                           retry_after=result.retry_after_s,
                                           waited_s=result.waited_s)
            warned.append(f)
        return (int(result.waited_s * 1000), result.depth, result.note)

    def _deny_findings(self, base: dict[str, Any], enforced: list[Finding],
                       warned: list[Finding], findings: list[Finding], *,
                       retry_after: float | None = None, waited_s: float = 0.0
                       ) -> Decision:
        self.audit.record("policy.decision", **base, decision="deny",
                          denied_by=[f"{f.check}:{f.rule_id}" for f in enforced],
                          reason=enforced[0].detail, findings=_summary(findings),
                          would_deny=[f"{f.check}:{f.rule_id}" for f in warned],
                          retry_after_s=retry_after, waited_ms=int(waited_s * 1000))
        details = "; ".join(f"{f.check}: {f.detail}" for f in enforced[:5])
        what = "subagent call" if base["tool"] in AGENT_TOOLS else f"{base['tool']} call"
        reason = f"Smart Orchestrator denied this {what}. {details}."
        if any(f.check in ("secrets", "secrets-split") for f in enforced):
            reason += " " + ENV_ADVICE
        if retry_after is not None:
            reason += f" Retry in about {max(1, round(retry_after))} s."
        return deny(reason)

    # -- helpers shared with outputs -------------------------------------------------------
    def _mode(self, check: str) -> str:
        cfg = self.config
        return {
            "prompt": cfg.prompt.mode, "injection": cfg.prompt.injection,
            "secrets": cfg.secrets.mode, "admission": cfg.admission.mode,
            "breaker": cfg.breaker.mode, "tools": cfg.tools.mode,
            "output-secrets": cfg.output.secrets, "output-injection": cfg.output.injection,
            "secrets-split": cfg.secrets.mode, "fork-context": cfg.secrets.mode,
            "surfaces": cfg.surfaces.mode, "budget": cfg.budget.mode,
        }.get(check, "enforce")

    def _guard(self, section: str, fn: Callable[[], list[Finding]]) -> list[Finding]:
        try:
            return fn()
        except Exception as exc:  # decided by the section's on_error, never silently
            return self._check_failed(section, exc)

    def _check_failed(self, section: str, exc: BaseException) -> list[Finding]:
        _log_crash(exc)
        on_error = getattr(getattr(self.config, section), "on_error", "deny")
        if on_error == "allow":
            return []
        return [Finding(section, "check-error", "critical",
                        f"the {section} check failed ({type(exc).__name__}: {_first_line(exc)})"
                        f" and fails closed", True)]

    def _base(self, p: Mapping[str, Any], ti: Mapping[str, Any]) -> dict[str, Any]:
        prompt = ti.get("prompt")
        return {
            "event": _s(p.get("hook_event_name")), "tool": _s(p.get("tool_name")),
            "session_id": _s(p.get("session_id")), "tool_use_id": _s(p.get("tool_use_id")),
            "parent_agent_id": _s(p.get("agent_id")) or None,
            "agent_type": scrub_label(_s(ti.get("subagent_type"))) or "general-purpose",
            "prompt": digest_text(prompt) if isinstance(prompt, str) else None,
            "background": ti.get("run_in_background") is not False,
            "source": self.source, "preset": self.config.preset, "mode": self._overall_mode(),
        }

    def _overall_mode(self) -> str:
        """warn when no spawn check enforces (a "before" baseline), enforce when all do."""
        cfg = self.config
        modes = {m for m in (cfg.prompt.mode, cfg.secrets.mode, cfg.admission.mode,
                             cfg.breaker.mode) if m != "off"}
        return modes.pop() if len(modes) == 1 else ("off" if not modes else "mixed")

    # -- other events ----------------------------------------------------------------------
    def pre_tool(self, p: Mapping[str, Any]) -> Decision:
        try:
            return self._pre_tool(p)
        except Exception as exc:  # e.g. a locked store: a subagent's tool call fails closed
            out = self.crashed("PreToolUse", _s(p.get("tool_name")), p, exc)
            cfg = self.config.tools
            if p.get("agent_id") and cfg.mode == "enforce" and cfg.on_error == "deny":
                return deny(f"Smart Orchestrator's tool check failed ({type(exc).__name__}); "
                            "the call is denied because security checks fail closed.")
            return out

    def _pre_tool(self, p: Mapping[str, Any]) -> Decision:
        agent_id = _s(p.get("agent_id"))
        cfg = self.config.tools
        if cfg.mode == "off":
            return passed("PreToolUse")
        if not agent_id:
            return self._main_tool(p)
        raw = p.get("tool_input")
        ti: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        tool = _s(p.get("tool_name"))
        try:
            flags, found = self._tool_findings(tool, ti, p)
        except Exception as exc:  # a crashed path check must not wave the call through
            flags, found = ["check-error"], self._check_failed("tools", exc)
        if raw is not None and not isinstance(raw, Mapping):
            found.append(Finding("tools", "malformed-input", "high",
                                 "the tool input is not an object", True))
        return self._tool_decided(p, tool, ti, flags, found, agent_id=agent_id,
                                  agent_type=_s(p.get("agent_type")))

    def _tool_decided(self, p: Mapping[str, Any], tool: str, ti: Any, flags: list[str],
                      found: list[Finding], *, agent_id: str | None,
                      agent_type: str) -> Decision:
        """A tool call's `tool.use` row and its decision, from what the checks found."""
        enforced = found if self.config.tools.mode == "enforce" else []
        self.audit.record("tool.use", session_id=_s(p.get("session_id")), agent_id=agent_id,
                          agent_type=agent_type, tool=tool, flags=flags,
                          input=digest_text(json.dumps(ti, sort_keys=True, default=str)),
                          decision="deny" if enforced else "allow",
                          denied_by=[f"tools:{f.rule_id}" for f in enforced],
                          would_deny=[f"tools:{f.rule_id}" for f in found if not enforced],
                          source=self.source)
        if enforced:
            return deny(f"Smart Orchestrator denied this tool call: {enforced[0].detail}.")
        return passed("PreToolUse")

    def _tool_findings(self, tool: str, ti: Mapping[str, Any], p: Mapping[str, Any]
                       ) -> tuple[list[str], list[Finding]]:
        from .checks import tool_flags
        from .paths_guard import check_tool_call, guard_context

        cfg = self.config.tools
        flags, regex_credential = tool_flags(tool, ti)
        baseline = self.config.secrets.baseline
        extra = [Path(baseline) if Path(baseline).is_absolute()
                 else self.project_dir / baseline] if baseline else []
        verdict = check_tool_call(tool, ti, guard_context(
            p, project_dir=self.project_dir, data_dir=data_dir(), extra_protected=extra))
        found = _own_findings(verdict, cfg, "subagents")
        # The older name rules (*.pem, *.key, credentials.json) still hold for file tools; a
        # Bash line is judged on its resolved paths alone.
        named = regex_credential and tool != "Bash"
        credential = verdict.credential or ("a credential file" if named else None)
        if credential:
            flags.append("credential-read")
            if cfg.deny_credential_reads:
                found.append(Finding("tools", "credential-read", "critical",
                                     f"subagents may not read or change credentials, and it "
                                     f"would touch {credential}. Ask the user to provide what "
                                     "is needed another way", True))
        if verdict.state_write:
            flags.append("state-write")
            if cfg.deny_state_writes:
                found.append(Finding("tools", "state-write", "critical",
                                     f"subagents may not change {verdict.state_write}", True))
        if verdict.unresolved:
            flags.append("unresolved")
            if cfg.unresolvable == "deny":
                found.append(Finding("tools", "unresolved", "high",
                                     "the command cannot be checked for credential access "
                                     f"({verdict.unresolved}); write it with plain paths", True))
        return sorted(set(flags)), found

    def _main_tool(self, p: Mapping[str, Any]) -> Decision:
        """The main agent's own tool call. Its files and credentials are the user's; what
        is kept from it is what would undo the plugin: reading the data folder (the audit
        key) or the agents' raw transcripts, changing the plugin's files, hooks or Claude
        Code's settings, and running Claude Code itself. A line that cannot be resolved
        passes unless it names one of those places (its results are still redacted of
        subagent transcripts' credentials)."""
        from .paths_guard import check_tool_call, main_agent_context

        cfg = self.config.tools
        raw = p.get("tool_input")
        if not isinstance(raw, Mapping):
            return passed("PreToolUse")
        tool = _s(p.get("tool_name"))
        if tool == "Bash" and _own_cli_read(raw.get("command")):
            return passed("PreToolUse")
        try:
            ctx = main_agent_context(p, project_dir=self.project_dir, data_dir=data_dir())
            verdict = check_tool_call(tool, raw, ctx)
            found = _own_findings(verdict, cfg, "the main agent")
            if verdict.unresolved and not found and _names_own(raw, ctx.read_protected):
                found.append(Finding("tools", "own-state", "critical",
                                     "it names the plugin's data folder or Claude Code's "
                                     "transcripts in a form that cannot be resolved "
                                     f"({verdict.unresolved})", True))
            veiled = None if found else _veiled(tool, raw, verdict, ctx, cfg.veil,
                                                self.project_dir)
        except Exception as exc:  # a crashed check must not wave a read of the key through
            found, veiled = self._check_failed("tools", exc), None
        if isinstance(veiled, Finding):
            found = [veiled]
        elif veiled is not None:
            return veiled
        if not found:  # the main agent's ordinary calls leave no row: one per call is noise
            return passed("PreToolUse")
        return self._tool_decided(p, tool, raw, sorted({f.rule_id for f in found}), found,
                                  agent_id=None, agent_type="main")

    def subagent_start(self, p: Mapping[str, Any]) -> Decision:
        agent_id, agent_type = _s(p.get("agent_id")), scrub_label(_s(p.get("agent_type")))
        now_us = int(self.clock() * 1e6)
        depth = self.admission.note_started(_s(p.get("session_id")), agent_id,
                                            agent_type or "general-purpose", now_us)
        leased = self.surfaces.agent_started(_s(p.get("session_id")), agent_type, agent_id)
        self.audit.record("agent.start", session_id=_s(p.get("session_id")), agent_id=agent_id,
                          agent_type=agent_type, depth=depth, source=self.source,
                          **({} if leased is None else {"leased": leased}))
        return passed("SubagentStart")

    def pre_compact(self, p: Mapping[str, Any]) -> Decision:
        # A compaction means the context overflowed (auto) or was about to (manual).
        self.audit.record("context.compact", session_id=_s(p.get("session_id")),
                          agent_id=_s(p.get("agent_id")) or None,
                          trigger=_s(p.get("trigger")) or "unknown", source=self.source)
        return passed("PreCompact")

    def session_end(self, p: Mapping[str, Any]) -> Decision:
        released = self.admission.release_session(_s(p.get("session_id")))
        abandoned = self.budgets.session_ended(p, _s(p.get("session_id")))
        self.audit.record("session.end", session_id=_s(p.get("session_id")),
                          released_leases=released, unsettled_reservations=len(abandoned),
                          source=self.source)
        return passed("SessionEnd")


# What Claude Code always sends in a PreToolUse(Agent) payload, by type. Anything else is
# not a call Claude Code made, so it is denied whatever the checks' modes say.
_PAYLOAD_TYPES: tuple[tuple[str, type | tuple[type, ...]], ...] = (
    ("session_id", str), ("tool_use_id", str), ("agent_id", str), ("agent_type", str))
_INPUT_TYPES: tuple[tuple[str, type | tuple[type, ...]], ...] = (
    ("subagent_type", str), ("run_in_background", bool), ("model", str), ("effort", str),
    ("isolation", str))


def _own_findings(verdict: Any, cfg: Any, who: str) -> list[Finding]:
    found: list[Finding] = []
    # A walk over a folder that holds them is the main agent's to make, confined (below).
    own = verdict.own or (verdict.walked if who != "the main agent" else None)
    if own and cfg.deny_state_reads:
        found.append(Finding("tools", "own-state", "critical",
                             f"{who} may not read or change {own}", True))
    if verdict.controls and cfg.deny_state_writes:
        found.append(Finding("tools", "runs-claude", "critical", verdict.controls, True))
    if who == "the main agent" and verdict.state_write and cfg.deny_state_writes:
        found.append(Finding("tools", "state-write", "critical",
                             f"the main agent may not change {verdict.state_write} "
                             "(ask the user to make that change)", True))
    return found


def _veiled(tool: str, ti: Mapping[str, Any], verdict: Any, ctx: Any, mode: str,
            project_dir: Path) -> Decision | Finding | None:
    """A main-agent call the path check could not clear: a Bash line that walks a folder
    holding the protected ones, builds its paths at run time or runs a script goes ahead
    confined (`veil`); a walk that cannot be confined is denied with what to do instead.
    None: the call passes as it is."""
    from . import veil

    if tool not in ("Bash", "Monitor"):  # Claude Code runs these itself: no confining them
        if verdict.walked:
            return _walk_denied(f"a {tool} over a folder that holds them",
                                "give it a narrower path, or use grep -r, rg or find in "
                                "Bash, which runs with those folders hidden")
        return None
    why = verdict.walked or verdict.unresolved or verdict.runs or mode == "all"
    if mode == "off" or not why:
        return _walk_denied("it walks a folder that holds them",
                            "search a narrower folder") if verdict.walked else None
    ok, problem = veil.available()
    home = ctx.homes[0] if ctx.homes else "/nonexistent"
    boxed, denied = veil.claude_sandbox(_settings_files(ctx, project_dir), home)
    if boxed and ti.get("dangerouslyDisableSandbox") is not True:
        # The line runs in Claude Code's sandbox, where bubblewrap cannot start again:
        # confined by it if its denyRead hides what the veil would.
        needed = [p for p in ctx.read_protected if os.path.lexists(p)]
        missing = veil.uncovered(needed, denied)
        if not missing:
            return None
        ok, problem = False, ("Claude Code's own sandbox is on, and bubblewrap does not "
                              "start inside it: add " + ", ".join(missing[:3]) +
                              " to its sandbox.filesystem.denyRead")
    if not ok:
        return _walk_denied("it walks a folder that holds them, and such a line cannot be "
                            f"confined here ({problem})",
                            "search a narrower folder") if verdict.walked else None
    if verdict.background and ti.get("run_in_background") is not True:
        return Finding("tools", "veil-background", "high",
                       "this line runs confined (its paths are built at run time, it runs a "
                       "script or it walks the home folder), and a job it leaves running "
                       "would end with it: run it with run_in_background instead of `&` or "
                       "nohup", True)
    command = ti.get("command")
    assert isinstance(command, str)  # check_tool_call resolved it as one
    hidden = [*ctx.read_protected, *_agent_outputs(ctx.walk_protected)]
    return Decision("PreToolUse", Verdict.REWRITE, updated_input={
        **ti, "command": veil.wrap(command, hidden, ctx.write_protected)})


def _settings_files(ctx: Any, project_dir: Path) -> list[str]:
    """Claude Code's settings files, from the lowest precedence to the highest."""
    configs = [Path(h) / ".claude" for h in ctx.homes]
    if ctx.env.get("CLAUDE_CONFIG_DIR"):
        configs.append(Path(ctx.env["CLAUDE_CONFIG_DIR"]))
    managed = Path("/etc/claude-code")
    drop_ins = sorted(str(p) for p in (managed / "managed-settings.d").glob("*.json")) \
        if (managed / "managed-settings.d").is_dir() else []
    return [*(str(c / "settings.json") for c in configs),
            str(project_dir / ".claude" / "settings.json"),
            str(project_dir / ".claude" / "settings.local.json"),
            str(managed / "managed-settings.json"), *drop_ins]


def _walk_denied(why: str, instead: str) -> Finding:
    return Finding("tools", "own-state", "critical",
                   f"the main agent may not read the plugin's data folder or Claude Code's "
                   f"transcripts, and {why}; {instead}", True)


def _agent_outputs(roots: Sequence[str], limit: int = 1000) -> list[str]:
    """Agents' and workflows' task output files under Claude Code's temp folders (the
    shell's and monitors' own, `b…` and `m…`, stay visible)."""
    import glob
    import itertools

    found = (glob.iglob(os.path.join(glob.escape(root), "*", "*", "tasks", "[!bm]*.output"))
             for root in roots)
    return list(itertools.islice(itertools.chain.from_iterable(found), limit))


# Words that name the plugin's data or Claude Code's agent records however a line builds
# the rest of the path.
_OWN_WORDS = ("witness", "state.db", ".claude/projects", "subagents", "/tasks", "tool-results",
              "claude-", ".output", "plugins/data", "/proc/")


# The plugin's own command-line tool, which its skills and commands have the model run with
# the data folder named (`--plugin-data`): these subcommands only read it, through code of
# the plugin's, and print nothing of the key or of raw transcripts.
_LAUNCHER = Path(__file__).resolve().parents[2] / "bin" / "smart-orchestrator"
_CLI_READS = frozenset({"report", "status", "metrics", "audit", "wave", "checkpoint",
                        "plan-from-markdown", "slash", "gates", "policy"})
_CLI_WRITES = frozenset({"accept", "approve", "claude", "store", "setup", "serve", "service",
                         "demo", "save", "load"})


def _own_cli_read(command: Any) -> bool:
    """One plain command running the plugin's launcher with a subcommand that reads."""
    import shlex

    if not isinstance(command, str) or any(c in command for c in ";&|<>`$\n(){}*?["):
        return False
    try:
        words = shlex.split(command)
    except ValueError:
        return False
    if words and os.path.basename(words[0]) in ("python3", "python"):
        words = words[1:]
    if not words or os.path.realpath(words[0]) != str(_LAUNCHER):
        return False
    plain = [w for w in words[1:] if not w.startswith("-")]
    return bool(plain) and plain[0] in _CLI_READS and not set(plain) & _CLI_WRITES


def _names_own(tool_input: Mapping[str, Any], roots: Sequence[str]) -> bool:
    text = json.dumps(tool_input, default=str).lower()
    return any(w in text for w in _OWN_WORDS) or any(r.lower() in text for r in roots)


def _shape_problem(p: Mapping[str, Any], ti: Any) -> str | None:
    if not isinstance(ti, Mapping):
        return "the Agent call's tool_input is not an object"
    for where, fields, source in (("payload", _PAYLOAD_TYPES, p),
                                  ("tool_input", _INPUT_TYPES, ti)):
        for name, kind in fields:
            value = source.get(name)
            if value is not None and not isinstance(value, kind):
                return f"the hook {where}'s {name} has the wrong type"
    return None


def _lease_id(p: Mapping[str, Any]) -> str:
    return f"{_s(p.get('session_id'))}:{_s(p.get('tool_use_id')) or os.urandom(8).hex()}"


def _summary(findings: list[Finding]) -> list[dict[str, Any]]:
    return [{"check": f.check, "rule": f.rule_id, "severity": f.severity,
             "blocking": f.blocking} for f in findings[:50]]


def _notes(notes: list[str]) -> str | None:
    return ("Smart Orchestrator (warn mode): " + "; ".join(notes)) if notes else None


def _s(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""


def _log_crash(exc: BaseException) -> str:
    """Tracebacks go to a log file, never to the user's screen."""
    path = data_dir() / "logs" / "policy-errors.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as fh:
            fh.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} pid {os.getpid()}\n")
            fh.write(_scrubbed_traceback(exc))
    except OSError:
        return "(log unavailable)"
    return str(path)


def _scrubbed_traceback(exc: BaseException) -> str:
    text = "".join(traceback.format_exception(exc))
    try:
        # Exception messages can quote the input that broke a check.
        return scrub_text(text)
    except Exception:  # the scanner itself broke: keep the frames, drop every message
        return "".join(traceback.format_tb(exc.__traceback__)) + type(exc).__name__ + "\n"
