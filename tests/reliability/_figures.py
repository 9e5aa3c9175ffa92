"""Figures the reliability suites collect, and `docs/reliability.md` written from them.

Each test adds counts (`figures.add`) or measurements (`figures.peak`, `figures.put`)
under its suite's name; the plugin in `conftest.py` records every test's outcome and,
only when asked (`--reliability-report PATH`), renders the document at the end.
"""

from __future__ import annotations

import os
import platform
import sqlite3
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ATTACK_CLASSES", "FINDINGS", "SUITES", "Figures", "Outcome", "render_report"]

# Suite key (the test module's name without `test_`) -> title and what the suite proves.
SUITES: dict[str, tuple[str, str]] = {
    "crash": ("Crash consistency", (
        "The process driving a wave is killed with SIGKILL at a random moment; a new one "
        "resumes the wave from the store. Every task ends succeeded with exactly one "
        "succeeded attempt and one `wave.agent_end` success in the audit log, no task is "
        "lost, no agent of the dead process survives, and the audit chain verifies.")),
    "corruption": ("Corruption", (
        "Random bit flips and truncations of stored checkpoints and of the database file. "
        "Every damage that changes what the store holds is detected: the open is refused "
        "with one line naming the file, or the audit chain check names the bad row, or "
        "`status` reports SQLite's integrity check failing, or a checkpoint load skips the "
        "damaged copies and restores the newest intact one, saying which it skipped. A "
        "refused file is left byte for byte as it was.")),
    "resource_faults": ("Resource faults", (
        "A full disk (a file-size limit, and a real 1 MiB tmpfs), a database locked by "
        "another process, a read-only data directory (a read-only bind mount) and failing "
        "system metrics. Each gives one clear line, the database stays intact (chain "
        "verifies, integrity check passes, nothing half-written), subagent calls are denied "
        "rather than let through, and admission falls back to one agent at a time.")),
    "fuzz_hooks": ("Fuzzing: hook payloads", (
        "Generated hook payloads (wrong types, huge and deeply nested values, lone "
        "surrogates) as Claude Code substitutes them into a hook's `policy_check` call, "
        "through the service's decision (`decide_hook`), and random lines through its "
        "recognition of a hook call. Never a traceback; the answer is `{}` or one JSON "
        "object of valid hook output; a malformed PreToolUse(Agent) is always denied.")),
    "fuzz_mcp": ("Fuzzing: MCP tool arguments", (
        "Generated arguments for every tool of the `orchestrator` server over the in-memory "
        "MCP client (one server for the whole run). Every answer is a valid tool result; "
        "errors are tool errors with a message, never a traceback; structured results match "
        "the tool's output schema; a malformed PreToolUse(Agent) through `policy_check` is "
        "denied; the server still answers normal calls afterwards.")),
    "load": ("Load", (
        "Eight processes, each driving one Claude Code session's hook sequence "
        "(PreToolUse(Agent), SubagentStart, the subagent's tool calls, SubagentStop, "
        "PostToolUse) through the policy engine against one database, each event delivered "
        "twice and both deliveries racing to claim it. Every event decided exactly once, every "
        "lease released, the admission cap never exceeded, the chain intact, no errors. "
        "And a wave of real agents against the scripted model: memory under its budget, "
        "every task accounted for.")),
    "isolation": ("Isolation and leaks", (
        "A wave agent that tries to read `~/.ssh/id_rsa` is denied and the attempt audited; "
        "secrets planted in prompts and outputs never appear in any file under the data "
        "folder (database, WAL, logs) or in a generated report; the MCP server offers no "
        "network transport.")),
}


# Attacks a model working against the plugin tries, each with the end-to-end tests in the real
# Claude Code CLI (scripted model) and the unit tests that hold it. Listed by class, not by
# example: every row's tests include variants beyond the ones that first showed the class.
ATTACK_CLASSES: tuple[tuple[str, str, str, str], ...] = (
    ("Every agent surface",
     "Agents started by a Workflow script, messaged or resumed with SendMessage, forked, or "
     "started by a forked skill; TaskStop leaking slots; `General-Purpose` past breakers and "
     "depth limits",
     "Each surface gets the prompt, injection and secret checks on every text that reaches an "
     "agent, one admission slot per agent (all or none for a workflow), an audit row, and "
     "lease release on stop; a tool whose agents cannot be checked is denied "
     "(`[surfaces] unchecked_agents`); agent types compare canonically",
     "`tests/e2e/test_surfaces_e2e.py` (16 runs), `test_policy_surfaces.py` (37), "
     "`test_workflow_script.py` (57)"),
    ("A policy the model cannot rewrite",
     "Rewriting the policy file (Bash, Write, delete, symlink, preset only, FIFO, "
     "`SMART_ORCHESTRATOR_POLICY` or the data folder moved through settings), forging the "
     "validated-config cache and killing the server, writing a baseline of its own secrets, "
     "inline allowlist pragmas in prompts and outputs, confirming its own change (`policy "
     "accept` through `script`, Python's pty, `setsid`, a double fork, a pipe; an "
     "Elicitation or ElicitationResult hook written into a settings file to answer the "
     "dialog; a file swapped while the dialog is open)",
     "The session's policy is pinned when its connection reaches the service; the file only "
     "strengthens it, weakenings are recorded (`policy.changed`) and reach new sessions only "
     "after the user says yes in Claude Code's own dialog (the `policy_accept` tool's MCP "
     "elicitation; refused while any settings source configures a hook that could answer "
     "it; the question is bound to the digests shown) or at a terminal Claude Code did not "
     "start; the cache is keyed by content and checked; pragmas apply to reviewed files only",
     "`tests/e2e/test_policy_pinning_e2e.py` (16 runs), `test_policy_accept_e2e.py` (12 "
     "runs), `test_policy_pinning.py` (62), `test_policy_accept_tool.py` (32)"),
    ("Credential paths",
     "Other readers than cat, globs, a Grep or Glob over the home folder, symlinks, the GitHub "
     "CLI's token file, commands that print stored credentials, interpreters and shells given "
     "code, writes to the plugin's own state and Claude Code's settings",
     "Subagents' tool calls are decided on the resolved paths they can touch; a Bash line that "
     "cannot be resolved is denied (`[tools] unresolvable`)",
     "`tests/e2e/test_credential_paths_e2e.py` (18 attack calls, with the server and without), "
     "`test_paths_guard.py` (about 310 cases, 95 of them ordinary commands that must pass)"),
    ("The output gate",
     "A subagent repeating a credential past Claude Code's limit on forced rewrites "
     "(foreground and background), disguised (10 encodings), cut across answers or parallel "
     "agents, a resumed agent's answer, the service killed while the subagent runs",
     "PostToolUse rewrites the result (`updatedToolOutput`), a task notification holding one "
     "is blocked at UserPromptSubmit, for any number of turns; what cannot be scanned is "
     "withheld",
     "`tests/e2e/test_output_gate_e2e.py` (11 runs), `test_output_gate.py` (37)"),
    ("Subagent transcripts read by the main agent",
     "The main agent reads a background agent's `output_file` or its `subagents/agent-*.jsonl` "
     "transcript for the credential the gate kept out: `cat` through a glob, `tail`, "
     "`grep -r` over the projects folder, Python decoding the JSON lines, a copy, Read and "
     "Grep of the exact `output_file` the launch names, the Grep and Glob tools, `base64 | "
     "rev` of the file, Claude Code's own files of large tool results, a path built from "
     "character codes, and all of it with the service killed and its lock held",
     "A call that can touch Claude Code's transcripts or agents' task outputs (resolved "
     "paths, globs, links, walks; an unresolvable line that names them) is denied before it "
     "runs, for the main agent too; what a call reaches without naming them comes back with "
     "every credential of the session's subagent transcripts redacted (PostToolUse "
     "`updatedToolOutput`); without the service a call naming them is denied and results "
     "are withheld",
     "`tests/e2e/test_transcript_reads_e2e.py` (4 runs, 17 reads; one with the service "
     "killed), `test_own_state_guard.py` (about 170 cases), `test_transcript_guard.py` (6)"),
    ("The plugin's own state and off switches",
     "The main model reads `witness.key` to re-sign a rewritten audit log (`cat`, `base64`, "
     "`od` after `cd`, a glob, Python, a copy, a hard link, a symlink to the folder, the "
     "service's open files under `/proc/<pid>/fd`, `grep -r` over `~/.claude`, the Read, "
     "Grep and Glob tools), rewrites or deletes `state.db`, edits the plugin's `hooks.json` "
     "or `.mcp.json`, writes `disableAllHooks` into user or project settings, runs `claude "
     "plugin disable` or a `claude -p` session of its own with hooks off",
     "Every agent's tool calls, the main agent's included, are decided on resolved paths: "
     "the data folder, Claude Code's transcripts, other processes' open files are neither "
     "read nor written; the plugin's folder and Claude Code's settings and plugin registry "
     "are not written; Claude Code run from a shell (but for its read-only subcommands) is "
     "denied; each denial is audited; the next session still enforces. A process outside "
     "the model's tools can still do all of it: the witness detects a rewrite made without "
     "the key",
     "`tests/e2e/test_own_state_e2e.py` (19 attack calls and a second session), "
     "`tests/e2e/test_audit_witness_e2e.py`, `test_own_state_guard.py`"),
    ("No raw secret on disk",
     "Distinct credentials planted in every field of every surface (Agent, SendMessage, wave "
     "plans and outputs, subagent answers)",
     "Every byte under the data folder (database, WAL, logs, caches) holds none of them in 9 "
     "encodings each",
     "e2e `test_no_planted_credential_is_written_anywhere`"),
    ("The audit log",
     "Rows deleted and rehashed, the table rebuilt as a fresh chain, the database deleted or "
     "swapped for an older copy mid-session, the witness edited, cut or replayed; first by "
     "the model's own Bash, then by a process of the user's outside Claude Code",
     "The model's tools cannot reach the data folder (denied, audited); for any other "
     "process the chain head is witnessed in a signed file outside the database; `audit "
     "verify` names what disagrees; the running service records a deleted or replaced "
     "database as a gap",
     "`tests/e2e/test_audit_witness_e2e.py` (2 runs), `test_audit_witness.py` (40, "
     "6 concurrent writers)"),
    ("The enforcement service",
     "Calling the hooks' own tool to forge a SessionEnd or SubagentStop, killing the service "
     "from Bash, another local user reaching its socket, a socket folder made by someone "
     "else, a half-open breaker trial that never reports",
     "`policy_check` refuses calls that are not its hooks'; guarded hooks block when "
     "unanswered and the shim restarts the service; the socket is the user's only (0600, "
     "0700 folder, peer uid checked both ways); a trial has an owner and an expiry",
     "`tests/e2e/test_service_e2e.py` (3), `tests/e2e/test_breaker_e2e.py` (2), "
     "`test_service.py` (10), `test_policy_breaker.py` (6)"),
    ("Hostile input to the detectors",
     "Inputs of 1 MB built to trigger each rule's worst case (floods of one-letter words, "
     "repeated flags and call prefixes, connection-string fragments, zero-width splits)",
     "Both detectors do work linear in the input; every 1 MB input under 1 s",
     "`test_detect_worst_case.py` (36 shapes, counted work), `benchmarks/bench_detection.py`"),
)


RUNNING = [
    "- `.venv/bin/python -m pytest` runs the short version of every suite (part of the "
    "default run, well under a minute in all).",
    "- `.venv/bin/python -m pytest tests/reliability -m \"slow or not slow\" "
    "--reliability-report docs/reliability.md` runs short and long versions and rewrites "
    "this page (about 15 minutes on 2 cores).",
    "- `.venv/bin/python -m pytest tests/reliability/test_crash.py -m slow` runs one suite's "
    "long version; `SMART_ORCHESTRATOR_RELIABILITY_REPORT=PATH` also asks for the page.",
    "- The tmpfs and read-only bind mount tests need root or CAP_SYS_ADMIN and are skipped "
    "with the reason otherwise; the real-agent tests need the Claude Code CLI bundled in "
    "claude-agent-sdk. Nothing leaves loopback.",
]


@dataclass(frozen=True, slots=True)
class Finding:
    suite: str
    problem: str
    fix: str
    test: str


# Defects the suites found, each fixed and guarded by the named test (default run); every
# one of those tests fails on the code before its fix.
FINDINGS: tuple[Finding, ...] = (
    Finding("crash",
            "A kill between a task's end and its `wave.agent_end` audit row (two "
            "transactions) kept the task succeeded with no audit row, and resume never wrote "
            "it (seen once in 34 random kills).",
            "`WaveState.end_attempt` writes the audit row inside the transaction that ends "
            "the task (a nested `store.transaction()`).",
            "test_crash.py::test_a_kill_between_a_task_s_end_and_its_audit_row_loses_no_"
            "audit_row"),
    Finding("isolation",
            "Agents started by `spawn_wave` ran without the policy hooks: a wave agent's Read "
            "of `~/.ssh/id_rsa`, or of any file outside its folder, succeeded and the content "
            "reached the model.",
            "The server's wave service gives every agent the policy callbacks "
            "(`wave_policy_hooks`): credential reads and file tools outside the task's "
            "folder are denied and audited.",
            "test_isolation.py::test_spawn_wave_agents_cannot_read_outside_their_folder"),
    Finding("isolation",
            "`spawn_wave` stored credentials verbatim: a plan's prompts in `wave_runs.plan`, "
            "each task's output in `wave_tasks.output` (and the WAL).",
            "A plan holding a credential is refused before anything is stored; outputs are "
            "stored redacted.",
            "test_isolation.py::test_secrets_in_wave_outputs_never_reach_the_data_folder"),
    Finding("isolation",
            "The main agent's own tools were not checked: it read `witness.key` (and could "
            "re-sign a rewritten audit log), read a background agent's raw transcript through "
            "its `output_file` with a transforming reader, rewrote `state.db`, edited the "
            "plugin's hooks and Claude Code's settings, and ran `claude -p` with hooks off.",
            "The path check runs on the main agent's calls too, for the plugin's data folder, "
            "Claude Code's transcripts and task outputs, other processes' open files, the "
            "plugin's folder and settings, and `claude` run from a shell; without the service "
            "a call naming them is denied.",
            "tests/e2e/test_own_state_e2e.py::test_the_main_model_cannot_read_the_audit_key_"
            "or_switch_the_plugin_off"),
    Finding("fuzz_hooks",
            "A deeply nested JSON payload (e.g. 5,000 `[`) made the command hook crash with a "
            "RecursionError traceback and exit 1, a non-blocking hook error: the Agent call "
            "went ahead unchecked (fail open).",
            "The command hook is gone; the service reads a nested `tool_input` that JSON "
            "cannot parse as malformed: PreToolUse(Agent) is denied.",
            "test_fuzz_hooks.py::test_deeply_nested_input_is_denied_without_traceback"),
    Finding("fuzz_hooks",
            "A PreToolUse payload whose `hook_event_name` named another event, or whose "
            "`tool_name` was not a string (e.g. `[\"Agent\"]`), was decided as that other "
            "event or as a non-Agent tool: allowed without the Agent checks.",
            "The event comes from Claude Code's own `${hook_event_name}`; the service denies "
            "a PreToolUse whose arguments are not text, and reads each event with its own "
            "fields only (`HookArgs`).",
            "test_fuzz_hooks.py::test_a_payload_cannot_talk_its_way_out_of_the_agent_gate"),
    Finding("fuzz_hooks",
            "An Agent call whose `session_id` was an object, `run_in_background` a string or "
            "`subagent_type` a list was checked and allowed, though Claude Code never sends "
            "such a call.",
            "The engine denies a PreToolUse(Agent) whose fields have the wrong types "
            "(`_shape_problem` in `policy/engine.py`), whatever the checks' modes.",
            "test_fuzz_hooks.py::test_a_payload_cannot_talk_its_way_out_of_the_agent_gate"),
    Finding("fuzz_hooks",
            "Before the private environment exists, the launcher's stand-in hook crashed "
            "(traceback, exit 1) on a JSON array or a deeply nested payload, and let "
            "unreadable PreToolUse input through.",
            "`bin/smart-orchestrator` denies any PreToolUse it cannot read as an object.",
            "test_fuzz_hooks.py::test_launcher_without_environment_fails_closed"),
    Finding("fuzz_mcp",
            "`policy_check` crashed (`Error executing tool policy_check`) on a deeply nested "
            "`tool_input`: the `mcp_tool` hook failed, a non-blocking error, and only the "
            "command gate stood between the call and the subagent.",
            "`normalize_mcp_args` treats RecursionError as unparseable input, which the "
            "engine denies.",
            "test_fuzz_mcp.py::test_policy_check_denies_deeply_nested_tool_input"),
    Finding("fuzz_mcp",
            "`metrics` crashed on an `until_us` of 2**63 or more (SQLite integers are 64-bit).",
            "The argument's schema bounds it (`le=2**63 - 1`): an argument error instead.",
            "test_fuzz_mcp.py::test_metrics_takes_any_end_of_window_without_crashing"),
    Finding("corruption",
            "A flipped bit that turned an audit row's `data` into NULL, a BLOB or invalid "
            "JSON, or its `kind` into a BLOB, crashed `audit verify` with a TypeError instead "
            "of naming the row.",
            "`SqliteStore.iter_audit` passes damaged cells on as values that fail the chain "
            "check; `verify_records` reports a row that no longer serialises as edited.",
            "test_corruption.py::test_damaged_audit_cells_are_named_not_crashed_on"),
    Finding("corruption",
            "A checkpoint payload cell turned into NULL or text crashed `checkpoint_load` "
            "with a TypeError instead of falling back to the previous copy.",
            "`SqliteStore.checkpoint_blobs` passes such a cell on as bytes that fail the size "
            "and digest checks.",
            "test_corruption.py::test_damaged_checkpoint_cells_are_skipped_not_crashed_on"),
    Finding("corruption",
            "A damaged schema made SQLite quote invalid UTF-8 and newlines in its error: a "
            "UnicodeDecodeError traceback, or a StoreError spread over several lines.",
            "`SqliteStore` translates UnicodeDecodeError from SQLite into \"... is corrupt\" "
            "and keeps SQLite's message on one line, cut to 200 characters.",
            "test_corruption.py::test_a_damaged_schema_is_reported_in_one_line"),
    Finding("corruption",
            "A database truncated to zero bytes was silently re-created empty: the whole "
            "audit chain vanished without a word.",
            "New databases are built beside the final path and linked into place complete; "
            "an empty database file (with no WAL) is refused as truncated.",
            "test_corruption.py::test_database_truncated_to_zero_is_refused_not_recreated"),
    Finding("corruption",
            "Damage to an index (its table intact) passed SQLite's quick_check, and nothing a "
            "user could run reported it.",
            "`integrity_problems` runs the full integrity check; `status` reports it "
            "(\"Database: DAMAGED ...\").",
            "test_corruption.py::test_status_reports_a_damaged_index"),
    Finding("corruption",
            "A flip inside the schema's text (a CREATE statement that still parses, with a "
            "column renamed) passed SQLite's integrity check: nothing reported it, and the "
            "next write naming that column would fail; with invalid UTF-8 there, SQLite's "
            "\"Could not decode\" surfaced as a generic database error.",
            "`integrity_problems` also compares the schema with the one the migrations "
            "create; an undecodable cell is reported as corruption.",
            "test_corruption.py::test_status_reports_a_damaged_schema_entry"),
)


@dataclass(slots=True)
class Outcome:
    nodeid: str
    outcome: str  # passed | failed | skipped | xfailed | xpassed
    duration_s: float
    reason: str = ""


@dataclass(slots=True, repr=False)
class Figures:
    counts: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)
    started: float = field(default_factory=time.time)

    def __repr__(self) -> str:  # shown by hypothesis beside a failing example
        return "Figures(...)"

    def add(self, suite: str, label: str, n: float = 1) -> None:
        table = self.counts.setdefault(suite, {})
        table[label] = table.get(label, 0) + n

    def peak(self, suite: str, label: str, value: float) -> None:
        table = self.counts.setdefault(suite, {})
        table[label] = max(table.get(label, value), value)

    def put(self, suite: str, label: str, value: float) -> None:
        self.counts.setdefault(suite, {})[label] = value

    def note(self, suite: str, text: str) -> None:
        items = self.notes.setdefault(suite, [])
        if text not in items:
            items.append(text)


def _suite_of(nodeid: str) -> str:
    module = nodeid.split("::", 1)[0].rsplit("/", 1)[-1]
    return module.removeprefix("test_").removesuffix(".py")


def _fmt(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,.2f}"


def _machine() -> str:
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem = 0.0
    return (f"{os.cpu_count()} CPUs, {mem:.0f} GiB memory, {platform.system()} "
            f"{platform.release()}, Python {sys.version.split()[0]}, SQLite "
            f"{sqlite3.sqlite_version}")


def _outcome_rows(outcomes: Iterable[Outcome]) -> list[str]:
    rows = ["| test | outcome | time (s) |", "|---|---|---|"]
    for o in outcomes:
        name = o.nodeid.split("::", 1)[-1]
        shown = o.outcome + (f": {o.reason}" if o.reason else "")
        rows.append(f"| `{name}` | {shown.replace('|', '/')} | {o.duration_s:.1f} |")
    return rows


def render_report(figures: Figures, *, command: str, header: str) -> str:
    out = ["# Reliability and security", "", header, "",
           f"Generated by `{command}` on {time.strftime('%Y-%m-%d')} "
           f"({_machine()}), in {time.time() - figures.started:.0f} s.", ""]
    totals: dict[str, int] = {}
    for o in figures.outcomes:
        totals[o.outcome] = totals.get(o.outcome, 0) + 1
    out += ["Tests: " + ", ".join(f"{n} {k}" for k, n in sorted(totals.items())) + ".", ""]
    out += ["## How to run", "", *RUNNING, ""]
    by_suite: dict[str, list[Outcome]] = {}
    for o in figures.outcomes:
        by_suite.setdefault(_suite_of(o.nodeid), []).append(o)
    for key, (title, proves) in SUITES.items():
        out += [f"## {title}", "", proves, ""]
        counts = figures.counts.get(key, {})
        if counts:
            out += ["| figure | value |", "|---|---|"]
            out += [f"| {label} | {_fmt(value)} |" for label, value in counts.items()]
            out.append("")
        out += [f"- {n}" for n in figures.notes.get(key, [])]
        if figures.notes.get(key):
            out.append("")
        if by_suite.get(key):
            out += [*_outcome_rows(by_suite[key]), ""]
        else:
            out += ["_Not run in this report._", ""]
    out += ["## Attack classes", "",
            "What a model working against the plugin tries, by class, and the tests that hold "
            "each (end to end in the real Claude Code CLI against the scripted model, and "
            "unit). These run in the default `python -m pytest`, not in this report's suites.",
            "", "| class | tried | what holds | tests |", "|---|---|---|---|"]
    out += [f"| {c} | {t} | {h} | {w} |" for c, t, h, w in ATTACK_CLASSES]
    out += ["", "## Defects found and fixed", "",
            "Each was found by these suites, fixed, and is guarded by a test in the default "
            "run.", "", "| suite | problem | fix | guarded by |", "|---|---|---|---|"]
    out += [f"| {SUITES[f.suite][0]} | {f.problem} | {f.fix} | `{f.test}` |" for f in FINDINGS]
    open_items = [o for o in figures.outcomes if o.outcome in ("xfailed", "failed")]
    out += ["", "## Open problems", ""]
    if open_items:
        out += ["Known and not fixed yet: each is a test expected to fail until it is.", ""]
        out += [f"- `{o.nodeid.split('::', 1)[-1]}` ({o.outcome}): {o.reason}"
                for o in open_items]
    else:
        out.append("None found in this run.")
    return "\n".join(out).rstrip() + "\n"


def outcome_from_report(nodeid: str, outcome: str, duration_s: float,
                        reason: Any = "") -> Outcome:
    text = str(reason or "").strip().splitlines()
    return Outcome(nodeid, outcome, duration_s, text[0][:300] if text else "")
