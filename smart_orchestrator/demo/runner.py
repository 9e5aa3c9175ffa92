"""`smart-orchestrator demo`: the plugin at work in the real Claude Code, checked step by step.

Offline by default: the Claude Code CLI bundled with claude-agent-sdk runs against the
scripted model of `smart_orchestrator.scripted` on loopback, with a fresh HOME in a
temporary folder, so nothing of the user's own Claude Code or plugin state is touched.
`--live` sends the same steps to the real model with the user's ANTHROPIC_API_KEY.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any, TextIO

from ..claude_cli import PLUGIN_ROOT, bundled_claude
from ..errors import OrchestratorError
from ..scripted import ScriptedModel
from ..store.sqlite import SqliteStore
from .checks import STEPS, Check, Evidence, check_model, check_plugin
from .script import MARKER, MCP, live_prompt, script_model
from .session import Session, ToolCall, run_session

__all__ = ["run_demo"]

SESSION_TIMEOUT_S = 240.0
_SCRUB = ("CLAUDE", "SMART_ORCHESTRATOR")


class _Progress:
    """Plain lines with the time since the start: what the session is doing right now."""

    def __init__(self, out: TextIO) -> None:
        self.out, self.t0 = out, time.monotonic()

    def say(self, text: str) -> None:
        self.out.write(f"  {time.monotonic() - self.t0:5.1f}s  {text}\n")
        self.out.flush()

    def __call__(self, event: str, payload: Any) -> None:
        if event == "init":
            servers = {s.get("name"): s.get("status") for s in payload.get("mcp_servers", [])}
            self.say(f"session started; orchestrator server "
                     f"{servers.get('plugin:smart-orchestrator:orchestrator', 'missing')}")
        elif event == "call":
            self.say(f"-> {_label(payload)}")
        elif event == "result":
            self.say(f"<- {_short(payload.name)}: {_outcome(payload)}")


def _short(name: str) -> str:
    return name.removeprefix(MCP)


def _label(call: ToolCall) -> str:
    if call.name == "Agent":
        return f"Agent: \"{str(call.input.get('prompt', ''))[:70]}...\""
    return _short(call.name)


def _outcome(call: ToolCall) -> str:
    if call.is_error:
        return "refused: " + " ".join((call.text or "").split())[:110]
    if call.name == "Agent":  # the subagent's report follows Claude Code's hand-back frame
        body = (call.text or "").partition("The report follows:")[2] or call.text or ""
        return "answered: " + " ".join(body.split())[:100]
    data = call.json()
    if isinstance(data, dict) and isinstance(data.get("tasks"), list):  # a wave's status
        tasks = ", ".join(f"{t['id']} {t['state']}" + (f" after {t['reformats']} reformat"
                                                      if t.get("reformats") else "")
                          for t in data["tasks"])
        return f"wave {data.get('state')}: {tasks}"
    if isinstance(data, dict):
        for key in ("state", "passed", "ok", "message"):
            if key in data:
                return f"{key} = {data[key]}" + (f" ({data.get('reason')})"
                                                 if data.get("reason") else "")
        if "checkpoint" in data:
            return f"checkpoint #{data['checkpoint']['id']}"
        if "table" in data:
            return f"{data.get('events', '?')} events"
    return " ".join((call.text or "").split())[:110]


def _prepare_project(work: Path) -> None:
    """The sample project in a git repository, with one change waiting for review."""
    sample = files(__package__).joinpath("sample_project")
    with as_file(sample) as src:
        shutil.copytree(src, work, ignore=shutil.ignore_patterns("__pycache__"))
    git = shutil.which("git")
    if git is None:
        raise OrchestratorError("git is not installed", hint="the gates step needs git")
    ident = ["-c", "user.name=Smart Orchestrator demo", "-c", "user.email=demo@localhost"]
    for args in (["init", "-q"], ["add", "-A"], [*ident, "commit", "-q", "-m", "sample"]):
        subprocess.run([git, *args], cwd=work, check=True, capture_output=True)
    with (work / "src" / "inventory" / "auth.py").open("a") as fh:
        fh.write("\n\ndef is_manager(token: str, managers: set[str]) -> bool:\n"
                 "    return may_change_stock(token, managers)\n")


def _env(base: dict[str, str], home: Path, tmp: Path, model_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in base.items() if not k.startswith(_SCRUB)}
    if model_url is not None:  # offline: nothing may reach a real endpoint
        env = {k: v for k, v in env.items() if not k.startswith("ANTHROPIC")}
        env.update(ANTHROPIC_BASE_URL=model_url, ANTHROPIC_API_KEY="offline-demo")
    # The plugin starts `python3`: make it this interpreter, which has the dependencies.
    # On a busy machine the server may need more than the defaults (30 s, 5 s) to start.
    env.update(HOME=str(home), CLAUDE_CODE_TMPDIR=str(tmp), MCP_TIMEOUT="60000",
               MCP_CONNECT_TIMEOUT_MS="60000",
               CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1", MCP_CONNECTION_NONBLOCKING="false",
               PATH=os.pathsep.join([str(Path(sys.executable).parent), base.get("PATH", "")]))
    return env


@contextlib.contextmanager
def _folder(keep: bool) -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="smart-orchestrator-demo-"))
    try:
        yield root
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def _claude_version(binary: Path) -> str:
    version = binary.parent / "claude.version"
    return version.read_text().split()[0] if version.is_file() else "?"


def run_demo(*, live: bool = False, keep: bool = False, out: TextIO = sys.stdout,
             environ: dict[str, str] | None = None) -> int:
    base = dict(os.environ if environ is None else environ)
    if live and not base.get("ANTHROPIC_API_KEY"):
        raise OrchestratorError("--live needs ANTHROPIC_API_KEY",
                                hint="or run the demo without --live: it works offline")
    if not (PLUGIN_ROOT / ".claude-plugin" / "plugin.json").is_file():
        raise OrchestratorError(f"{PLUGIN_ROOT} is not the plugin folder",
                                hint="install with `pip install -e .` from a clone")
    binary = bundled_claude()
    reports = Path(tempfile.gettempdir()) / "smart-orchestrator-demo"
    with _folder(keep) as root, contextlib.ExitStack() as stack:
        work, home, tmp = root / "sample", root / "home", root / "cctmp"
        home.mkdir()
        tmp.mkdir()
        _prepare_project(work)
        model = None if live else stack.enter_context(ScriptedModel())
        mode = "live: the real model" if live else "offline: a scripted model on loopback"
        kept = "kept" if keep else "removed afterwards; --keep keeps it"
        out.write(f"Smart Orchestrator demo - Claude Code {_claude_version(binary)} with this "
                  f"plugin ({mode})\n  sample project: {work} ({kept})\n\n")
        if model is not None:
            script_model(model, work)
        args = [str(binary), "-p", live_prompt(work) if live else f"{MARKER}: run the demo",
                "--plugin-dir", str(PLUGIN_ROOT), "--output-format", "stream-json",
                "--verbose", "--max-turns", "30", "--allowedTools", MCP.rstrip("_")]
        progress = _Progress(out)
        progress.say("starting Claude Code with the plugin...")
        url = model.base_url if model is not None else None
        session = run_session(args, env=_env(base, home, tmp, url),
                              cwd=work, timeout_s=SESSION_TIMEOUT_S,
                              stderr_path=root / "claude.stderr", listener=progress)
        took = time.monotonic() - progress.t0
        return _verdict(session, home, work, reports, live, model, took, out)


def _verdict(session: Session, home: Path, work: Path, reports: Path, live: bool,
             model: ScriptedModel | None, took: float, out: TextIO) -> int:
    data_dir = home / ".claude" / "plugins" / "data" / "smart-orchestrator-inline"
    checks: list[Check] = [check_plugin(session)]
    if session.timed_out or session.returncode != 0:
        checks.append(Check("Claude Code ran to the end", False,
                            f"exit {session.returncode}, timed out: {session.timed_out}; "
                            f"{session.stderr_tail(400)}"))
    evidence = None
    if (data_dir / "state.db").is_file():
        store = SqliteStore(data_dir / "state.db", readonly=True)
        try:
            evidence = Evidence(session, store, data_dir, work, reports, live, model)
            checks += [step(evidence) for step in STEPS]
            checks.append(check_model(evidence))
        finally:
            store.close()
    else:
        checks.append(Check("The plugin recorded the session", False,
                            f"no state database in {data_dir}"))
    return _print_verdict(checks, evidence, took, out)


def _print_verdict(checks: list[Check], evidence: Evidence | None, took: float,
                   out: TextIO) -> int:
    out.write("\nEach step against its evidence (tool results, audit rows, files):\n")
    for i, check in enumerate(checks, 1):
        mark = " ok " if check.ok else "FAIL"
        out.write(f"  [{mark}] {i}. {check.title}\n         {check.detail}\n")
    if evidence is not None and evidence.metrics_table:
        out.write("\nMetrics (from the metrics tool):\n\n")
        out.write("".join(f"    {line}\n" for line in evidence.metrics_table.splitlines()))
    failed = [c for c in checks if not c.ok]
    out.write("\n")
    if failed:
        out.write(f"{len(failed)} of {len(checks)} checks FAILED ({took:.1f} s).\n")
        return 1
    report = evidence.report if evidence is not None else None
    out.write(f"All {len(checks)} checks passed in {took:.1f} s. Run report: {report}\n")
    return 0
