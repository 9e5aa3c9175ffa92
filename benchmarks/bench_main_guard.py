"""What the path check on the main agent's own tool calls costs per decision.

    .venv/bin/python benchmarks/bench_main_guard.py

Decides the same PreToolUse payloads of the main agent (ordinary commands and file tools)
with `[tools] mode = "enforce"` and, as the baseline, with `mode = "off"` (the decision the
service made for the main agent before: none), interleaved call by call. The service adds
its round trip through the shim either way; this is the decision alone, in process. Two of
the calls are confined (a walk over the home folder, a script): their decision includes
writing the veil's line. Then what the veil adds to running a line: `true` in bash, as
it is and wrapped by `policy/veil.py`, interleaved (skipped without bubblewrap).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import summary_ms  # noqa: E402

from smart_orchestrator.policy.config import build_policy  # noqa: E402
from smart_orchestrator.policy.engine import PolicyEngine  # noqa: E402
from smart_orchestrator.store import SqliteStore  # noqa: E402

ROUNDS = 300
CALLS = [
    ("Bash", {"command": "git status"}),
    ("Bash", {"command": "python3 -m pytest -q tests/unit/test_app.py -k login"}),
    ("Bash", {"command": "find . -name '*.py' | xargs wc -l"}),
    ("Bash", {"command": "cd src && grep -rn 'def main' . | head -20"}),
    ("Read", {"file_path": "README.md"}),
    ("Grep", {"pattern": "def", "path": "src"}),
    ("Edit", {"file_path": "src/app.py", "old_string": "a", "new_string": "b"}),
    ("Bash", {"command": "grep -rn TODO ~ | head"}),
    ("Bash", {"command": "python3 tools/gen.py --out build"}),
]
VEIL_ROUNDS = 40


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        project = root / "proj"
        (project / "src").mkdir(parents=True)
        os.environ["SMART_ORCHESTRATOR_DATA"] = str(root / "data")
        store = SqliteStore(root / "state.db")
        engines = {mode: PolicyEngine(store, build_policy({"tools": {"mode": mode}}, "b.toml"),
                                      project_dir=project, owner_pid=None)
                   for mode in ("enforce", "off")}
        samples: dict[str, list[float]] = {mode: [] for mode in engines}
        for _ in range(ROUNDS):
            for tool, tool_input in CALLS:
                payload = {"hook_event_name": "PreToolUse", "session_id": "s1",
                           "tool_use_id": "toolu_1", "tool_name": tool,
                           "tool_input": tool_input, "cwd": str(project),
                           "transcript_path": str(root / ".claude/projects/p/s1.jsonl")}
                for mode, engine in engines.items():
                    start = time.perf_counter()
                    out = engine.handle(payload)
                    samples[mode].append(time.perf_counter() - start)
                    assert not out.denied, (tool, tool_input, out)
        store.close()
    for mode in ("off", "enforce"):
        print(f"{'checked' if mode == 'enforce' else 'baseline (off)':15} "
              f"{summary_ms(samples[mode])}")
    ratio = statistics.median(samples["enforce"]) / statistics.median(samples["off"])
    added = statistics.median(samples["enforce"]) - statistics.median(samples["off"])
    print(f"median added per call: {added * 1000:.3f} ms (x{ratio:.1f})")
    return _bench_veil()


def _bench_veil() -> int:
    import subprocess

    from smart_orchestrator.policy import veil

    ok, why = veil.available()
    if not ok:
        print(f"veil: not measured ({why})")
        return 0
    with tempfile.TemporaryDirectory() as hidden:
        lines = {"plain": "true", "veiled": veil.wrap("true", [hidden])}
        runs: dict[str, list[float]] = {k: [] for k in lines}
        for _ in range(VEIL_ROUNDS):
            for kind, line in lines.items():
                start = time.perf_counter()
                subprocess.run(["bash", "-c", line], check=True)
                runs[kind].append(time.perf_counter() - start)
    for kind in lines:
        print(f"bash line {kind:8} {summary_ms(runs[kind])}")
    added = statistics.median(runs["veiled"]) - statistics.median(runs["plain"])
    print(f"veil adds per confined line: {added * 1000:.1f} ms (median)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
