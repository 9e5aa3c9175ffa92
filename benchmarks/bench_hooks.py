"""What the plugin costs a user, against the same sessions without it, in one run:

    .venv/bin/python benchmarks/bench_hooks.py [--quick] [--skip-claude] [--first-session]
                                               [--hook-events]

[1] the policy decision inside the service, 4 KB prompt (p50 <= 5 ms, p99 <= 20 ms);
[2] real Claude Code against the scripted model, sessions with and without the plugin
    interleaved, medians: time from start to the first model request (<= 0.5 s added), ten
    sequential foreground Agent calls (<= 25 ms added per call), six parallel calls
    (<= 25 ms added per call); and a session start with the service not yet running;
[3] with --first-session (a few minutes: it builds the plugin's environment): the first
    session after a marketplace install, in a fresh HOME whose `python3` lacks the
    dependencies, against a session without the plugin: time to the first protected Agent
    call (<= 90 s after install).
Sessions run as a user's do, without `--include-hook-events` (the Agent SDK's default, and
no terminal session prints them): with it Claude Code also writes every hook's input and
output to its stdout, which `--hook-events` measures (the e2e tests use it).
Exits 1 if a floor is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import Floors, pct, summary_ms  # noqa: E402

from mcp_server.hook_output import hook_output as rendered  # noqa: E402

if TYPE_CHECKING:
    from tests.e2e.harness import ScriptedModel

PROMPT_4K = ("Review the module for error handling gaps and list each with a line number. "
             * 60)[:4096]


def payload(i: int, prompt: str = PROMPT_4K) -> dict[str, object]:
    return {"session_id": "bench-session", "hook_event_name": "PreToolUse", "tool_name": "Agent",
            "tool_use_id": f"toolu_{i}", "cwd": str(ROOT),
            "tool_input": {"description": "review", "prompt": prompt,
                           "subagent_type": "general-purpose", "run_in_background": False}}


def post_payload(i: int) -> dict[str, object]:
    return {"session_id": "bench-session", "hook_event_name": "PostToolUse", "tool_name": "Agent",
            "tool_use_id": f"toolu_{i}", "tool_input": payload(i)["tool_input"],
            "tool_response": {"status": "completed", "agentId": f"a{i}",
                              "content": [{"type": "text", "text": "no gaps found"}]}}


# Limits high enough that admission never makes a call wait: the benchmark measures what the
# plugin costs, not what its limits hold back (on a shared machine the CPU-load limit would
# hold calls back for seconds).
BENCH_POLICY = ("[admission]\nspawns_per_minute = 100000\nmax_in_flight_session = 32\n"
                "max_in_flight_machine = 64\nmax_load_percent = 100000\n"
                "min_available_memory_mb = 0\n")


def _project(tmp: str) -> Path:
    """A project whose policy lets the benchmark spawn as fast as it measures."""
    (Path(tmp) / ".claude").mkdir(exist_ok=True)
    (Path(tmp) / ".claude" / "smart-orchestrator.toml").write_text(BENCH_POLICY)
    return Path(tmp)


def bench_engine(n: int, floors: Floors) -> None:
    from smart_orchestrator.policy import EngineFactory
    from smart_orchestrator.store import SqliteStore

    print(f"\n[1] decision inside the server, 4 KB prompt ({n} calls)")
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "state.db")
        factory = EngineFactory(store, source="bench", project_dir=_project(tmp))
        baseline, samples = [], []
        for i in range(n):
            t0 = time.perf_counter()
            json.dumps(payload(i))  # baseline: serialising the payload once
            baseline.append(time.perf_counter() - t0)
        for i in range(n):
            t0 = time.perf_counter()
            out = rendered(factory.decide(payload(i)))
            samples.append(time.perf_counter() - t0)
            factory.decide(post_payload(i))  # frees the slot, outside the timing
            assert "permissionDecision" not in json.dumps(out), out
        print(f"  baseline (json.dumps of the payload): {summary_ms(baseline)}")
        print(f"  policy decision:                      {summary_ms(samples)}")
        print(f"  ratio p50: {pct(samples, 50) / max(pct(baseline, 50), 1e-9):.0f}x baseline")
        floors.check("server decision p50", pct(samples, 50) * 1000, 5)
        floors.check("server decision p99", pct(samples, 99) * 1000, 20)
        store.close()


class Session:
    """One `claude -p` run against the scripted model; timings from the model's side."""

    hook_events = False

    def __init__(self, plugin: bool, home: Path, tag: str) -> None:
        self.plugin, self.home, self.tag = plugin, home, tag

    def run(self, script: Callable[[ScriptedModel, str], None]) -> tuple[float, ScriptedModel]:
        from tests.e2e.harness import ScriptedModel, run_claude
        from tests.e2e.plugin_env import plugin_env

        with ScriptedModel() as model, tempfile.TemporaryDirectory(
                ignore_cleanup_errors=True) as tmp:
            project = _project(tmp)
            script(model, self.tag)
            env = plugin_env({"SMART_ORCHESTRATOR_SERVICE_IDLE_S": "600"})
            t0 = time.monotonic()
            run_claude("go", model_url=model.base_url, cwd=project, home=self.home,
                       plugin_dir=ROOT if self.plugin else None, env=env, timeout=300,
                       hook_events=self.hook_events)
            return t0, model


def _first_request_s(t0: float, model: ScriptedModel) -> float:
    return model.requests_for("main")[0].received_at - t0


def _agent_spans(model: ScriptedModel, tags: Sequence[str], sequential: bool) -> float:
    """Wall time of the Agent calls as the CLI runs them, hooks included, minus the
    subagents' own model time: from the main model's answer to its next request."""
    main = model.requests_for("main")
    sub_time = sum(r.duration or 0.0 for t in tags for r in model.requests_for(t))
    if sequential:
        total = sum(main[k + 1].received_at - main[k].answered_at  # type: ignore[operator]
                    for k in range(len(tags)))
        return float(total - sub_time)
    span = main[1].received_at - main[0].answered_at  # type: ignore[operator]
    # In parallel the subagents' model time overlaps: take the longest one away.
    longest = max(sum(r.duration or 0.0 for r in model.requests_for(t)) for t in tags)
    return float(span - longest)


def bench_sessions(n: int, floors: Floors) -> None:
    from tests.e2e.harness import agent_call, text, turn

    print(f"\n[2] real Claude Code, with and without the plugin in the same run, interleaved "
          f"({n} sessions each)")
    burst_n, par_n = 10, 6

    def burst(model: ScriptedModel, tag: str) -> None:
        model.main([agent_call(f"B{tag}-{k}: answer") for k in range(burst_n)] + [text("done")])
        for k in range(burst_n):
            model.subagent(f"B{tag}-{k}", [text("answer")])

    def parallel(model: ScriptedModel, tag: str) -> None:
        model.main([turn(*[agent_call(f"P{tag}-{k}: answer", description=f"part {k}")
                           for k in range(par_n)]), text("done")])
        for k in range(par_n):
            model.subagent(f"P{tag}-{k}", [text("answer")])

    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as homes:
        # One HOME per side for the whole run, as a user has: the plugin's service stays warm
        # across sessions, as it does between a user's sessions.
        home = {True: Path(homes) / "with", False: Path(homes) / "without"}
        Session(True, home[True], "warm-up").run(burst)  # first run: page cache, bytecode
        start: dict[bool, list[float]] = {True: [], False: []}
        per_call: dict[bool, list[float]] = {True: [], False: []}
        per_par: dict[bool, list[float]] = {True: [], False: []}
        for i in range(n):
            for plugin in ((True, False) if i % 2 == 0 else (False, True)):
                tag = f"{i}{'p' if plugin else 'n'}"
                t0, model = Session(plugin, home[plugin], tag).run(burst)
                start[plugin].append(_first_request_s(t0, model))
                per_call[plugin].append(_agent_spans(
                    model, [f"B{tag}-{k}" for k in range(burst_n)], True) / burst_n)
                t0, model = Session(plugin, home[plugin], tag).run(parallel)
                per_par[plugin].append(_agent_spans(
                    model, [f"P{tag}-{k}" for k in range(par_n)], False) / par_n)
        # The first session after a quiet spell: the service has exited (the environment
        # is ready), in the same HOME as the warm sessions.
        cold = []
        for i in range(max(2, n // 2)):
            _stop_service(home[True])
            t0, model = Session(True, home[True], f"c{i}").run(burst)
            cold.append(_first_request_s(t0, model))
    for name, data, limit in (("session start: time to first request", start, 500),
                              (f"per Agent call, {burst_n} sequential calls", per_call, 25),
                              (f"per Agent call, {par_n} parallel calls", per_par, 25)):
        added = (pct(data[True], 50) - pct(data[False], 50)) * 1000
        print(f"  {name}")
        print(f"    without plugin: {summary_ms(data[False])}")
        print(f"    with plugin:    {summary_ms(data[True])}")
        print(f"    added (median): {added:.1f} ms  "
              f"(ratio {pct(data[True], 50) / max(pct(data[False], 50), 1e-9):.2f}x)")
        floors.check(f"{name}, added", added, limit)
    added_cold = (pct(cold, 50) - pct(start[False], 50)) * 1000
    print(f"  session start with the service not yet running: {summary_ms(cold)}; "
          f"added {added_cold:.1f} ms (no floor: once per {IDLE_NOTE})")


IDLE_NOTE = "quarter of an hour without sessions"


def _stop_service(home: Path) -> None:
    import signal

    from tests.e2e.plugin_env import plugin_data

    marker = plugin_data(home) / "service.json"
    try:
        pid = int(json.loads(marker.read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def _python_without_dependencies() -> str | None:
    """The interpreter this environment was made from, if it lacks the dependencies (as a
    user's `python3` does before the first session)."""
    import shutil
    import subprocess

    base = getattr(sys, "_base_executable", "") or shutil.which("python3") or ""
    probe = subprocess.run([base, "-c", "import mcp"], capture_output=True, check=False)
    return base if base and probe.returncode != 0 else None


def _first_agent_call_s(home: Path, env: dict[str, str], started: float,
                        install: Callable[[], None] | None) -> tuple[float, int]:
    """Seconds from `started` to the first Agent call whose subagent ran, and how many were
    refused before it (the model retries every 2 s, as a user would)."""
    from smart_orchestrator.scripted import ModelRequest, Turn
    from tests.e2e.harness import ScriptedModel, agent_call, run_claude, text

    attempts: list[tuple[float, bool]] = []

    def until_protected(request: ModelRequest) -> Turn | None:
        if request.conversation != "main":
            return None
        if request.tool_results:
            attempts.append((time.monotonic() - started, request.tool_results[-1].is_error))
            if not attempts[-1][1] or len(attempts) >= 60:
                return text("done")
        return agent_call(f"FIRST-{len(attempts)}: list the files",
                          delay=2.0 if request.tool_results else 0)

    if install is not None:
        install()
    with ScriptedModel() as model, tempfile.TemporaryDirectory(
            ignore_cleanup_errors=True) as tmp:
        model.on(until_protected)
        model.subagent("FIRST-", [text("two files")])
        run_claude("go", model_url=model.base_url, cwd=_project(tmp), home=home, env=env,
                   timeout=900, extra_args=["--allowedTools", "Agent"])
    if not attempts or attempts[-1][1]:
        raise SystemExit(f"no Agent call was ever allowed: {attempts}")
    return attempts[-1][0], len(attempts) - 1


def bench_first_session(floors: Floors) -> None:
    import os
    import shutil
    import subprocess

    from tests.e2e.harness import find_claude_bin
    from tests.e2e.plugin_env import PLUGIN

    print("\n[3] the first session after `claude plugin install` (fresh HOME, a python3 "
          "without the dependencies)")
    python, claude = _python_without_dependencies(), find_claude_bin()
    if python is None or claude is None:
        print("  skipped: no python3 without the dependencies, or no Claude Code")
        return
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as root_dir:
        root = Path(root_dir)
        (root / "bin").mkdir()
        (root / "bin" / "python3").symlink_to(python)
        cache = os.environ.get("PIP_CACHE_DIR") or str(Path("~/.cache/pip").expanduser())
        env = {"PATH": f"{root / 'bin'}{os.pathsep}/usr/bin:/bin", "PIP_CACHE_DIR": cache,
               "SMART_ORCHESTRATOR_SERVICE_IDLE_S": "5"}

        def install() -> None:
            source = root / "marketplace"
            shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
                ".venv", ".git", "__pycache__", "*.egg-info", ".mypy_cache", ".pytest_cache",
                ".claude", ".cache"))
            for args in (["plugin", "marketplace", "add", str(source)],
                         ["plugin", "install", f"{PLUGIN}@{PLUGIN}"]):
                out = subprocess.run([str(claude), *args], capture_output=True, text=True,
                                     env={**os.environ, **env, "HOME": str(root / "with")},
                                     timeout=300, check=False)
                if out.returncode != 0:
                    raise SystemExit(f"claude {' '.join(args)} failed: {out.stderr[-500:]}")

        without, _ = _first_agent_call_s(root / "without", {**env, "HOME": str(root / "without")},
                                         time.monotonic(), None)
        with_plugin, refused = _first_agent_call_s(
            root / "with", {**env, "HOME": str(root / "with")}, time.monotonic(), install)
    print(f"  without plugin: first Agent call {without:.1f} s after start")
    print(f"  with plugin:    first protected Agent call {with_plugin:.1f} s after install "
          f"({refused} earlier calls refused with the reason; goal 20 s)")
    floors.check("first protected Agent call after install", with_plugin, 90, unit="s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer samples")
    ap.add_argument("--skip-claude", action="store_true", help="skip the real-CLI measurement")
    ap.add_argument("--first-session", action="store_true",
                    help="also measure the first session after install (minutes)")
    ap.add_argument("--hook-events", action="store_true",
                    help="run the sessions with --include-hook-events, as the e2e tests do")
    args = ap.parse_args()
    Session.hook_events = args.hook_events
    floors = Floors()
    bench_engine(100 if args.quick else 500, floors)
    if not args.skip_claude:
        bench_sessions(2 if args.quick else 6, floors)
        if args.first_session:
            bench_first_session(floors)
    print("\nall floors met" if not floors.failed else f"\nMISSED: {', '.join(floors.failed)}")
    return 1 if floors.failed else 0


if __name__ == "__main__":
    sys.exit(main())
