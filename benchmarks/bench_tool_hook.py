"""What the command hook on subagents' tool calls adds while the plugin's server is live.

    .venv/bin/python benchmarks/bench_tool_hook.py [--calls 12] [--runs 3]

[1] hooks/run.sh alone, as Claude Code starts it: a main-agent call (answered in the shell),
    and a subagent call whose decision the server has already left (the shell's own cost).
[2] real Claude Code: a subagent runs `true` through Bash once per turn; the time from the
    model's tool_use to the next model request, with the tool matcher's command hook and
    without it (the same plugin otherwise).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import pct, summary_ms  # noqa: E402

SESSION = "bench-tool-session"


def bench_shell(n: int) -> None:
    from smart_orchestrator.policy.claims import ServerBeacon, publish_decision

    print(f"\n[1] hooks/run.sh PreToolUse tools, server live ({n} calls each)")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        beacon = ServerBeacon(data, SESSION)
        assert beacon.hold()
        env = {**os.environ, "SMART_ORCHESTRATOR_DATA": str(data),
               "CLAUDE_CODE_SESSION_ID": SESSION, "SMART_ORCHESTRATOR_PYTHON": "/bin/false"}
        env.pop("CLAUDE_PLUGIN_DATA", None)

        def run(payload: dict[str, object]) -> float:
            beacon.beat()  # as the live server's event loop does every second
            start = time.perf_counter()
            body = json.dumps(payload, separators=(",", ":"))  # compact, as Claude Code sends
            out = subprocess.run(["/bin/sh", str(ROOT / "hooks" / "run.sh"), "PreToolUse",
                                  "tools"], input=body, env=env, capture_output=True,
                                 text=True, check=True)
            elapsed = time.perf_counter() - start
            assert out.stdout.strip().startswith("{"), out
            return elapsed

        base = {"session_id": SESSION, "hook_event_name": "PreToolUse", "tool_name": "Bash",
                "tool_input": {"command": "true"}, "cwd": tmp}
        main = [run({**base, "tool_use_id": f"toolu_m{i}"}) for i in range(n)]
        sub = []
        for i in range(n):
            publish_decision(data, SESSION, f"toolu_s{i}", {})
            sub.append(run({**base, "tool_use_id": f"toolu_s{i}", "agent_id": "a1"}))
        beacon.release()
    print(f"  main agent's call:             {summary_ms(main)}")
    print(f"  subagent's call, decision left: {summary_ms(sub)}")


def bench_claude(calls: int, runs: int) -> None:
    from tests.e2e.harness import ScriptedModel, agent_call, run_claude, text, tool_use
    from tests.e2e.plugin_env import plugin_env

    print(f"\n[2] one subagent Bash call in real Claude Code ({runs} runs x {calls} calls)")
    with tempfile.TemporaryDirectory() as tmp:
        without = Path(tmp) / "plugin-without"
        shutil.copytree(ROOT, without, ignore=shutil.ignore_patterns(
            ".venv", ".git", "__pycache__", "*.egg-info", ".mypy_cache", ".pytest_cache"))
        hooks = json.loads((without / "hooks" / "hooks.json").read_text())
        for matcher in hooks["hooks"]["PreToolUse"]:
            if matcher.get("matcher", "").startswith("Bash|"):
                matcher["hooks"] = [h for h in matcher["hooks"] if h["type"] != "command"]
        (without / "hooks" / "hooks.json").write_text(json.dumps(hooks))

        def spans(plugin: Path, r: int) -> list[float]:
            with ScriptedModel() as model, tempfile.TemporaryDirectory(
                    ignore_cleanup_errors=True) as run_dir:
                work = Path(run_dir) / "w"
                work.mkdir()
                name = f"BENCH-{plugin.name}-{r}"
                model.main([agent_call(f"{name}: run it"), text("done")])
                model.subagent(name, [*(tool_use("Bash", {"command": "true"})
                                        for _ in range(calls)), text("ran")])
                run_claude("go", model_url=model.base_url, cwd=work, home=Path(run_dir) / "h",
                           plugin_dir=plugin, env=plugin_env(), timeout=300,
                           allowed_tools=["Bash"])
                reqs = model.requests_for(name)
                # The first call also waits for the server's first answer: skip it.
                return [float(b.received_at - (a.answered_at or 0.0))
                        for a, b in itertools.pairwise(reqs[1:])]

        spans(ROOT, -1)
        base: list[float] = []
        full: list[float] = []
        for r in range(runs):  # interleaved, so machine load hits both alike
            base += spans(without, r)
            full += spans(ROOT, r)
    print(f"  mcp_tool hook only:           {summary_ms(base)}")
    print(f"  mcp_tool + command fallback:  {summary_ms(full)}")
    print(f"  added p50: {(pct(full, 50) - pct(base, 50)) * 1000:.1f} ms")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=12)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-claude", action="store_true")
    args = parser.parse_args()
    bench_shell(50)
    if not args.skip_claude:
        bench_claude(args.calls, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
