"""What the transcript redaction hook costs the main agent's own tool calls:

    .venv/bin/python benchmarks/bench_main_tools.py [--runs 7] [--calls 30]

Real Claude Code against the scripted model: a main agent making `--calls` sequential
`Bash true` calls, with the plugin as it is and with a copy of the plugin whose
PostToolUse hook on the main agent's tools is removed, interleaved; with
`--after-subagent` the session first runs a subagent, so every result goes to the service
and is checked against its transcript. Prints the median
time per call of each and the difference (no floor: the machine's load dominates on a
shared 2-core machine; a session that started no subagent is answered by the shim).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _without_the_hook(dest: Path) -> Path:
    """The plugin as committed, minus the PostToolUse entry for the main agent's tools."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    hooks = dest / "hooks" / "hooks.json"
    data = json.loads(hooks.read_text())
    data["hooks"]["PostToolUse"] = [h for h in data["hooks"]["PostToolUse"]
                                    if "Agent" in h.get("matcher", "")]
    hooks.write_text(json.dumps(data, indent=2))
    return dest


def _per_call(plugin: Path, calls: int, after_subagent: bool) -> float:
    from tests.e2e.harness import ScriptedModel, agent_call, run_claude, text, tool_use
    from tests.e2e.plugin_env import plugin_env

    with ScriptedModel() as model, tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        first = [agent_call("BENCH-SUB: summarise")] if after_subagent else []
        model.subagent("BENCH-SUB", [text("summary")])
        model.main(first + [tool_use("Bash", {"command": "true", "description": "x"})
                            for _ in range(calls)] + [text("done")])
        run_claude("go", model_url=model.base_url, cwd=base / "w", home=base / "h",
                   tmpdir=base / "t", plugin_dir=plugin, allowed_tools=["Bash"],
                   env=plugin_env(), timeout=300)
        requests = model.requests_for("main")
        start = 2 if after_subagent else 1  # the first Bash call's request
        return float(requests[-1].received_at - requests[start].received_at) / (calls - 1)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--after-subagent", action="store_true",
                        help="start a subagent first, so every result is checked by the "
                        "service against its transcript")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bare = _without_the_hook(Path(tmp))
        samples: dict[bool, list[float]] = {True: [], False: []}
        for i in range(args.runs):
            for hooked in ((True, False) if i % 2 == 0 else (False, True)):
                samples[hooked].append(_per_call(ROOT if hooked else bare, args.calls,
                                                 args.after_subagent))
        shutil.rmtree(bare, ignore_errors=True)
    with_hook, without = (statistics.median(samples[k]) * 1000 for k in (True, False))
    what = " after a subagent ran" if args.after_subagent else ""
    print(f"main agent's Bash call{what}, median over {args.runs} runs of {args.calls} calls:")
    print(f"  with the hook:    {with_hook:.1f} ms  {[round(s * 1000) for s in samples[True]]}")
    print(f"  without the hook: {without:.1f} ms  {[round(s * 1000) for s in samples[False]]}")
    print(f"  added: {with_hook - without:.1f} ms per call")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
