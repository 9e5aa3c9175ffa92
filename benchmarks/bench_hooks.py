"""Hook latency: the decision inside the server, the command-hook process, and the wall
time the plugin adds to one Agent call in real Claude Code.

    .venv/bin/python benchmarks/bench_hooks.py [--quick] [--skip-claude]

Each figure is printed beside a baseline measured in the same process run, with the ratio.
Exits 1 if a floor from the policy-hooks issue is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import Floors, pct, summary_ms  # noqa: E402

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


BENCH_POLICY = "[admission]\nspawns_per_minute = 100000\n"


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
            out = factory.decide(payload(i))
            samples.append(time.perf_counter() - t0)
            factory.decide(post_payload(i))  # frees the slot, outside the timing
            assert "permissionDecision" not in json.dumps(out), out
        print(f"  baseline (json.dumps of the payload): {summary_ms(baseline)}")
        print(f"  policy decision:                      {summary_ms(samples)}")
        print(f"  ratio p50: {pct(samples, 50) / max(pct(baseline, 50), 1e-9):.0f}x baseline")
        floors.check("server decision p50", pct(samples, 50) * 1000, 5)
        floors.check("server decision p99", pct(samples, 99) * 1000, 20)
        store.close()


def _run_hook(stdin: bytes, env: dict[str, str], event: str = "PreToolUse") -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(["/bin/sh", str(ROOT / "hooks" / "run.sh"), event],
                          input=stdin, capture_output=True, env=env, check=False)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0 or proc.stderr.strip():
        raise SystemExit(f"hook failed: rc={proc.returncode} {proc.stderr.decode()[:300]}")
    return elapsed


def bench_command_hook(n: int, floors: Floors) -> None:
    print(f"\n[2] command hook, whole process ({n} runs each)")
    python = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, SMART_ORCHESTRATOR_DATA=tmp, SMART_ORCHESTRATOR_PYTHON=python,
                   CLAUDE_PROJECT_DIR=str(_project(tmp)))
        baseline = []
        for _ in range(n):
            t0 = time.perf_counter()
            subprocess.run([python, "-c", "pass"], check=True)
            baseline.append(time.perf_counter() - t0)
        full, post = [], []
        for i in range(n):
            full.append(_run_hook(json.dumps(payload(i)).encode(), env))
            post.append(_run_hook(json.dumps(post_payload(i)).encode(), env, "PostToolUse"))
        print(f"  baseline (python -c pass):           {summary_ms(baseline)}")
        print(f"  full check, no server (PreToolUse):  {summary_ms(full)}")
        print(f"  ratio p50: {pct(full, 50) / pct(baseline, 50):.1f}x baseline")
        floors.check("command hook p50", pct(full, 50) * 1000, 100)


def bench_claude(n: int, floors: Floors) -> None:
    from tests.e2e.harness import ScriptedModel, agent_call, run_claude, text
    from tests.e2e.plugin_env import plugin_env

    print(f"\n[3] wall time added to one Agent call in real Claude Code ({n} runs each)")

    def one(plugin: bool, i: int) -> float:
        with ScriptedModel() as model, tempfile.TemporaryDirectory(
                ignore_cleanup_errors=True) as tmp:  # background hooks may still be writing
            project = _project(tmp) / "w"
            project.mkdir()
            (project / ".claude").mkdir()
            (project / ".claude" / "smart-orchestrator.toml").write_text(BENCH_POLICY)
            # Two Agent calls: the first absorbs session start-up (the plugin's MCP server
            # connecting); the second is the steady state a user sees on every call.
            model.main([agent_call(f"WARM-{i}: answer"), agent_call(f"BENCH-{i}: answer"),
                        text("done")])
            model.subagent(f"WARM-{i}", [text("answer")])
            model.subagent(f"BENCH-{i}", [text("answer")])
            run_claude("go", model_url=model.base_url, cwd=project, home=Path(tmp) / "h",
                       plugin_dir=ROOT if plugin else None, env=plugin_env(), timeout=120)
            main = model.requests_for("main")
            sub = model.requests_for(f"BENCH-{i}")
            # From the model's Agent call being answered to the main agent's next request:
            # the whole Agent call as the CLI runs it, hooks included, minus the subagent's
            # own model time.
            span = main[2].received_at - main[1].answered_at
            return float(span - sum(r.duration or 0.0 for r in sub))

    one(True, -1)  # warm the page cache and the plugin's first-run work
    without = [one(False, i) for i in range(n)]
    with_plugin = [one(True, i) for i in range(n)]
    print(f"  Agent call without plugin: {summary_ms(without)}")
    print(f"  Agent call with plugin:    {summary_ms(with_plugin)}")
    added = (pct(with_plugin, 50) - pct(without, 50)) * 1000
    print(f"  added p50: {added:.1f} ms  (ratio {pct(with_plugin, 50) / pct(without, 50):.2f}x)")
    floors.check("added to one Agent call p50", added, 50)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer samples")
    ap.add_argument("--skip-claude", action="store_true", help="skip the real-CLI measurement")
    args = ap.parse_args()
    floors = Floors()
    bench_engine(100 if args.quick else 500, floors)
    bench_command_hook(10 if args.quick else 30, floors)
    if not args.skip_claude:
        bench_claude(3 if args.quick else 8, floors)
    print("\nall floors met" if not floors.failed else f"\nMISSED: {', '.join(floors.failed)}")
    return 1 if floors.failed else 0


if __name__ == "__main__":
    sys.exit(main())
