"""A session's first prompt when the per-user service is not running (it exited idle):

    .venv/bin/python benchmarks/bench_cold_start.py [--rounds N] [--against PLUGIN_DIR]

Starts the shim as Claude Code does (no service running, its bytecode cached), sends the
UserPromptSubmit hook call the session's first prompt makes and times its answer: the
shim holds it until the service is up and has pinned the session's policy. With
`--against` another checkout of the plugin (e.g. `git worktree add /tmp/old <commit>`)
runs the same, interleaved, and the ratio of the medians is printed. No floor: Claude
Code's own share is in bench_hooks.py ("session start with the service not yet running").
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {}}


def _stop_service(data: Path) -> None:
    marker = data / "service.json"
    try:
        os.kill(int(json.loads(marker.read_text())["pid"]), signal.SIGTERM)
    except (OSError, ValueError, KeyError):
        return
    deadline = time.monotonic() + 60
    while marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    lock = data / "run" / "service.lock"
    while time.monotonic() < deadline and lock.exists():
        probe = subprocess.run([sys.executable, "-c", "import fcntl,sys; f=open(sys.argv[1]);"
                                "fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)", str(lock)],
                               capture_output=True, check=False)
        if probe.returncode == 0:
            return  # the old service has let go
        time.sleep(0.05)


def first_prompt_s(plugin: Path, data: Path, project: Path, session: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAUDE")}
    env.update(SMART_ORCHESTRATOR_DATA=str(data), CLAUDE_CODE_SESSION_ID=session,
               CLAUDE_PROJECT_DIR=str(project), SMART_ORCHESTRATOR_SERVICE_IDLE_S="600",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "policy_check", "_meta": META, "arguments": {
            "event": "UserPromptSubmit", "session_id": session, "prompt": "hello"}}}
    started = time.monotonic()
    shim = subprocess.Popen([sys.executable, str(plugin / "bin" / "smart-orchestrator"), "shim"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                            cwd=project)
    assert shim.stdin is not None and shim.stdout is not None
    shim.stdin.write(json.dumps(call).encode() + b"\n")
    shim.stdin.flush()
    answer = json.loads(shim.stdout.readline())
    elapsed = time.monotonic() - started
    shim.stdin.close()
    shim.wait(60)
    if answer.get("id") != 1 or "result" not in answer:
        raise SystemExit(f"unexpected answer: {answer}")
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--against", type=Path, help="another checkout of the plugin")
    args = ap.parse_args()
    plugins = {"this": ROOT, **({"against": args.against.resolve()} if args.against else {})}
    times: dict[str, list[float]] = {name: [] for name in plugins}
    with tempfile.TemporaryDirectory() as tmp:
        for name, plugin in plugins.items():  # warm-up: bytecode, page cache
            data = Path(tmp) / name
            first_prompt_s(plugin, data, Path(tmp), "warm-up")
            _stop_service(data)
        for i in range(args.rounds):
            order = list(plugins.items())
            for name, plugin in (order if i % 2 == 0 else order[::-1]):
                data, project = Path(tmp) / name, Path(tmp) / f"project-{name}-{i}"
                (project / ".claude").mkdir(parents=True)
                times[name].append(first_prompt_s(plugin, data, project, f"s{i}-{name}"))
                _stop_service(data)
    for name, values in times.items():
        print(f"{name:8} ({plugins[name]}): median {statistics.median(values) * 1000:.0f} ms "
              f"of {[round(v * 1000) for v in values]}")
    if args.against:
        ratio = statistics.median(times["against"]) / statistics.median(times["this"])
        print(f"ratio of medians, against / this: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
