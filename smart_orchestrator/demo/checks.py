"""Each demo step checked against its evidence: tool results, audit rows, files on disk.

A step passes only when what it claims can be seen: a tool answering without error is not
enough (a denied call also "returns"), so each check reads the result's content and the
audit chain the plugin wrote.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..audit import AuditLog
from ..report import load_run, render_html
from ..scripted import ScriptedModel
from ..store.base import Store
from .script import AWS_KEY, CHECKPOINT, MCP, SUBAGENT_ANSWER
from .session import Session, ToolCall

__all__ = ["STEPS", "Check", "Evidence", "check_model", "check_plugin"]

PLUGIN = "smart-orchestrator"


@dataclass(frozen=True, slots=True)
class Check:
    title: str
    ok: bool
    detail: str


@dataclass(slots=True)
class Evidence:
    session: Session
    store: Store
    data_dir: Path
    work: Path
    out_dir: Path
    live: bool
    model: ScriptedModel | None
    run_id: str | None = None
    metrics_table: str = ""
    report: Path | None = None

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [dict(r.data) for r in self.store.audit.events(kinds=(kind,))]

    def last(self, tool: str) -> ToolCall | None:
        calls = self.session.calls_to(tool)
        return calls[-1] if calls else None


def _fail(title: str, detail: str) -> Check:
    return Check(title, False, detail)


def _missing(title: str, tool: str) -> Check:
    return _fail(title, f"the session never called {tool}")


def _answer(ev: Evidence, title: str, tool: str) -> dict[str, Any] | Check:
    """The last `tool` call's answer as a JSON object, or the failed check saying why."""
    call = ev.last(tool)
    if call is None:
        return _missing(title, tool)
    value = call.json()
    if call.is_error or not isinstance(value, dict):
        return _fail(title, f"{tool} failed: {(call.text or '')[:300]}")
    return value


def check_plugin(session: Session) -> Check:
    title = "Claude Code loaded the plugin and connected its MCP server"
    init = session.init
    if init is None:
        return _fail(title, "no init message: Claude Code did not start a session")
    names = [p.get("name") for p in init.get("plugins", [])]
    errors = [e for e in init.get("plugin_errors", []) if e.get("plugin") == PLUGIN]
    servers = {s.get("name"): s.get("status") for s in init.get("mcp_servers", [])}
    status = servers.get(f"plugin:{PLUGIN}:orchestrator")
    if PLUGIN not in names or errors:
        return _fail(title, f"plugin not loaded: {errors or names}")
    # A server still starting when the session began counts once its tools answered.
    answered = [c for c in session.calls if c.name.startswith(MCP) and not c.is_error]
    if status != "connected" and not answered:
        return _fail(title, f"orchestrator MCP server is {status!r} and none of its tools "
                            "answered")
    when = "at start" if status == "connected" else "after start"
    return Check(title, True, f"Claude Code {init.get('claude_code_version', '?')}; "
                              f"orchestrator server connected {when}")


def _agent_calls(ev: Evidence, *, secret: bool) -> list[ToolCall]:
    return [c for c in ev.session.calls_to("Agent")
            if (AWS_KEY in str(c.input.get("prompt", ""))) == secret]


def check_subagent(ev: Evidence) -> Check:
    title = "A subagent was spawned, answered, and audited"
    calls = _agent_calls(ev, secret=False)
    if not calls:
        return _missing(title, "the Agent tool")
    call = calls[0]
    if call.is_error or not call.text:
        return _fail(title, f"the Agent call failed: {(call.text or '')[:200]}")
    if not ev.live and SUBAGENT_ANSWER not in call.text:
        return _fail(title, "the subagent's answer did not reach the main agent")
    allowed = [d for d in ev.events("policy.decision")
               if d.get("tool") in ("Agent", "Task") and d.get("decision") == "allow"]
    ended = [e for e in ev.events("agent.end") if e.get("ok")]
    if not allowed or not ended:
        return _fail(title, f"audit shows {len(allowed)} allowed Agent decision(s) and "
                            f"{len(ended)} successful agent.end event(s)")
    return Check(title, True, f"the answer reached the main agent; audit: policy.decision "
                              f"allow, agent.end ok ({ended[0].get('total_tokens', '?')} "
                              "tokens)")


def check_secret(ev: Evidence) -> Check:
    title = "A prompt holding an AWS key was denied before any subagent started"
    calls = _agent_calls(ev, secret=True)
    if not calls:
        return _missing(title, "the Agent tool with the key in its prompt")
    call = calls[0]
    if not call.is_error or AWS_KEY in (call.text or ""):
        return _fail(title, f"the call was not refused: {(call.text or '')[:200]}")
    denials = [d for d in ev.events("policy.decision") if d.get("decision") == "deny"]
    if not any(any("secret" in str(rule) for rule in d.get("denied_by") or [])
               for d in denials):
        return _fail(title, f"no secret denial in the audit log ({len(denials)} denials)")
    if ev.model is not None and ev.model.requests_for("DEMO-SECRET"):
        return _fail(title, "the subagent started anyway")
    leaked = [p for p in ev.data_dir.rglob("*")
              if p.is_file() and AWS_KEY.encode() in p.read_bytes()]
    if leaked:
        return _fail(title, f"the key was stored in {leaked[0]}")
    reason = " ".join((call.text or "").rsplit("error:", 1)[-1].split())[:90]
    return Check(title, True, f"denied: \"{reason}\"; the key is stored nowhere")


def _final_wave(ev: Evidence) -> dict[str, Any] | None:
    for tool in ("wave_status", "spawn_wave"):
        call = ev.last(tool)
        if call is not None and not call.is_error and isinstance(call.json(), dict):
            return dict(call.json())
    return None


def check_wave(ev: Evidence) -> Check:
    title = "A wave with a dependency ran through spawn_wave; a bad answer was recovered"
    spawned = ev.last("spawn_wave")
    if spawned is None:
        return _missing(title, "spawn_wave")
    wave = _final_wave(ev)
    if wave is None:
        return _fail(title, f"spawn_wave failed: {(spawned.text or '')[:300]}")
    ev.run_id = str(wave.get("run_id"))
    tasks = {t["id"]: t for t in wave.get("tasks", [])}
    if wave.get("state") != "completed" or set(tasks) != {"count", "summary"}:
        return _fail(title, f"wave {ev.run_id} ended {wave.get('state')}: {wave.get('reason')}")
    count = tasks["count"]
    if tasks["summary"].get("depends_on") != ["count"]:
        return _fail(title, "the summary task did not depend on count")
    if not ev.live and (count.get("reformats"), count.get("attempts")) != (1, 1):
        return _fail(title, f"count: {count.get('reformats')} reformat(s), "
                            f"{count.get('attempts')} attempt(s); expected 1 and 1")
    ends = [e for e in ev.events("wave.end") if e.get("run_id") == ev.run_id]
    if not ends or ends[-1].get("state") != "completed":
        return _fail(title, "no wave.end completed event in the audit log")
    if ev.model is not None and not any('"functions"' in r.first_user_text
                                        for r in ev.model.requests_for("DEMO-SUMMARY:")):
        return _fail(title, "the summary agent never saw count's result")
    return Check(title, True, f"{ev.run_id} completed: count -> summary; count's first "
                              f"answer was not JSON, {count.get('reformats')} reformat "
                              "request later it was valid")


def check_checkpoint(ev: Evidence) -> Check:
    title = "A checkpoint was saved and restored intact"
    saved, loaded = ev.last("checkpoint_save"), ev.last("checkpoint_load")
    if saved is None or loaded is None:
        return _missing(title, "checkpoint_save and checkpoint_load")
    s, lo = saved.json(), loaded.json()
    if saved.is_error or loaded.is_error or not isinstance(s, dict) or not isinstance(lo, dict):
        return _fail(title, f"{(saved.text or '')[:150]} / {(loaded.text or '')[:150]}")
    same_copy = s["checkpoint"]["sha256"] == lo["checkpoint"]["sha256"]
    if lo.get("state") != saved.input.get("state") or not same_copy:
        return _fail(title, "the restored state differs from the saved one")
    return Check(title, True, f"{CHECKPOINT!r} #{lo['checkpoint']['id']}, sha256 "
                              f"{lo['checkpoint']['sha256'][:12]}, state identical")


def check_gates(ev: Evidence) -> Check:
    title = "Gates on the sample project: tiers 1-2 pass, tier 3 waits for a security review"
    g = _answer(ev, title, "gate_status")
    if isinstance(g, Check):
        return g
    tiers = {t["tier"]: t for t in g.get("tiers", [])}
    checks = [c for c in tiers.get(1, {}).get("checks", []) if c["status"] == "passed"]
    approvals = [a["kind"] for a in tiers.get(3, {}).get("approvals", [])
                 if not a["satisfied"]]
    ran = ev.events("gate.check")
    if ([tiers.get(t, {}).get("status") for t in (1, 2)] != ["passed", "passed"]
            or len(checks) < 2 or g.get("blocking_tier") != 3 or approvals != ["security"]):
        return _fail(title, f"unexpected verdict: {g.get('reason')}")
    if not all(r.get("exit_code") == 0 for r in ran) or len(ran) < 2:
        return _fail(title, "the audit log does not show the checks the server ran")
    names = ", ".join(c["name"] for c in checks)
    return Check(title, True, f"the server ran {names} itself (exit 0, audited); "
                              f"blocked: {g.get('reason')}")


def check_metrics(ev: Evidence) -> Check:
    title = "The metrics table, computed from the audit log"
    m = _answer(ev, title, "metrics")
    if isinstance(m, Check):
        return m
    if not m.get("table"):
        return _fail(title, "metrics returned no table")
    waves = {c["name"]: c for c in m["columns"]}.get("waves", {})
    rate = {x["key"]: x for x in waves.get("metrics", [])}.get("wave_completion", {})
    if rate.get("numerator", 0) < 1:
        return _fail(title, "the wave run does not show in the metrics")
    ev.metrics_table = str(m["table"])
    return Check(title, True, f"{m['events']} audit events read; wave completion "
                              f"{rate.get('numerator')}/{rate.get('denominator'):g}")


def check_audit(ev: Evidence) -> Check:
    title = "The audit chain verifies intact"
    v = _answer(ev, title, "audit_verify")
    if isinstance(v, Check):
        return v
    report = AuditLog(ev.store).verify()
    if not v.get("ok") or not report.ok:
        return _fail(title, f"audit_verify: {json.dumps(v)[:200]}; now: {report.one_line()}")
    return Check(title, True, f"{v['count']} events when asked; {report.events} now, "
                              f"head {report.head_hash[:16]}")


def check_report(ev: Evidence) -> Check:
    title = "The wave's run report was written"
    if ev.run_id is None:
        return _fail(title, "no wave to report on")
    page = render_html(load_run(ev.store, ev.run_id))
    path = ev.out_dir / f"wave-{ev.run_id}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    ev.report = path
    return Check(title, ev.run_id in page, f"{path} ({len(page):,} bytes)")


def check_model(ev: Evidence) -> Check:
    title = "Every model request was answered from the demo's script"
    if ev.model is None:
        return Check(title, True, "live model")
    stray = ev.model.unscripted
    if stray:
        return _fail(title, f"{len(stray)} request(s) fell outside the script")
    return Check(title, True, f"{len(ev.model.requests)} requests")


STEPS: tuple[Callable[[Evidence], Check], ...] = (
    check_subagent, check_secret, check_wave, check_checkpoint, check_gates, check_metrics,
    check_audit, check_report)
