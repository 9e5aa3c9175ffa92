"""The service under a burst of hook calls, as six parallel Agent calls send them:

    .venv/bin/python benchmarks/bench_service.py [--rounds N] [--parallel K]

Starts a service on a fresh data folder, connects as a shim does, and sends each round's
hook calls K at a time per event (PreToolUse, SubagentStart, SubagentStop, PostToolUse for
K agents, a 4 KB prompt). Prints each event's latency, the service's CPU per call (from
/proc) and the wall time of a round. No floor: Claude Code's own share of an Agent call is
measured by bench_hooks.py.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mcp_server.service_wire import plugin_stamp, socket_path  # noqa: E402

META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {}}
PROMPT = ("Review the module for error handling gaps and list each with a line number. "
          * 60)[:4096]
POLICY = ("[admission]\nspawns_per_minute = 100000\nmax_in_flight_session = 64\n"
          "max_in_flight_machine = 64\nmax_load_percent = 100000\nmin_available_memory_mb = 0\n")


class Client:
    def __init__(self, data: Path, project: Path) -> None:
        self.session = str(uuid.uuid4())
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(str(socket_path(data)))
        self.sock.sendall(json.dumps({"session_id": self.session, "project_dir": str(project),
                                      "claude_pid": os.getpid(), "policy_file": None,
                                      "stamp": plugin_stamp()}).encode() + b"\n")
        self.reader = self.sock.makefile("rb")
        assert json.loads(self.reader.readline())["ok"]
        self.next_id, self.sent, self.done = 0, {}, {}
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.reader:
            msg = json.loads(line)
            with self.cond:
                self.done[msg.get("id")] = time.monotonic()
                self.cond.notify_all()

    def call(self, args: dict[str, str]) -> int:
        with self.cond:
            self.next_id += 1
            msg_id = self.next_id
        line = json.dumps({"jsonrpc": "2.0", "id": msg_id, "method": "tools/call", "params": {
            "name": "policy_check", "_meta": META,
            "arguments": {"session_id": self.session, **args}}}).encode() + b"\n"
        self.sent[msg_id] = time.monotonic()
        self.sock.sendall(line)
        return msg_id

    def wait(self, ids: list[int]) -> list[float]:
        with self.cond:
            assert self.cond.wait_for(lambda: all(i in self.done for i in ids), timeout=120)
        return [self.done[i] - self.sent[i] for i in ids]


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _events(k: int, rnd: int) -> list[tuple[str, Any]]:
    tus, agents = f"toolu_{rnd}_{k}", f"a{rnd}x{k}"
    ti = json.dumps({"description": f"part {k}", "prompt": PROMPT,
                     "subagent_type": "general-purpose", "run_in_background": False})
    resp = json.dumps({"status": "completed", "agentId": agents,
                       "content": [{"type": "text", "text": "no gaps found"}]})
    return [("PreToolUse", {"event": "PreToolUse", "tool_use_id": tus, "tool_name": "Agent",
                            "tool_input": ti}),
            ("SubagentStart", {"event": "SubagentStart", "agent_id": agents,
                               "agent_type": "general-purpose"}),
            ("SubagentStop", {"event": "SubagentStop", "agent_id": agents,
                              "agent_type": "general-purpose", "stop_hook_active": "false",
                              "last_assistant_message": "no gaps found"}),
            ("PostToolUse", {"event": "PostToolUse", "tool_use_id": tus, "tool_name": "Agent",
                             "tool_input": ti, "tool_response": resp})]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=25)
    ap.add_argument("--parallel", type=int, default=6)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data, project = Path(tmp) / "data", Path(tmp) / "project"
        (project / ".claude").mkdir(parents=True)
        (project / ".claude" / "smart-orchestrator.toml").write_text(POLICY)
        env = {**os.environ, "SMART_ORCHESTRATOR_DATA": str(data),
               "SMART_ORCHESTRATOR_SERVICE_IDLE_S": "30"}
        env.pop("SMART_ORCHESTRATOR_DB", None)
        service = subprocess.Popen([sys.executable, str(ROOT / "bin" / "smart-orchestrator"),
                                    "service"], env=env, cwd=tmp, stderr=subprocess.DEVNULL)
        try:
            while not (data / "service.json").exists():
                assert service.poll() is None, "the service did not start"
                time.sleep(0.05)
            client = Client(data, project)
            latency: dict[str, list[float]] = {}
            cpu, wall = [], []
            for rnd in range(args.rounds + 1):  # round 0 warms up
                c0, w0 = _cpu_s(service.pid), time.monotonic()
                per_agent = [_events(k, rnd) for k in range(args.parallel)]
                for step in range(4):
                    ids = [client.call(per_agent[k][step][1]) for k in range(args.parallel)]
                    took = client.wait(ids)
                    if rnd:
                        latency.setdefault(per_agent[0][step][0], []).extend(took)
                if rnd:
                    cpu.append(_cpu_s(service.pid) - c0)
                    wall.append(time.monotonic() - w0)
        finally:
            service.terminate()
            service.wait(30)
    calls = 4 * args.parallel
    print(f"service, {args.parallel} hook calls at a time per event, {args.rounds} rounds")
    for event, samples in latency.items():
        ordered = sorted(samples)
        print(f"  {event:14} latency p50 {statistics.median(ordered) * 1000:6.1f} ms  "
              f"p90 {ordered[int(len(ordered) * 0.9)] * 1000:6.1f} ms")
    print(f"  service CPU per call: {statistics.median(cpu) * 1000 / calls:.2f} ms (median "
          f"round); a round of {calls} calls: {statistics.median(wall) * 1000:.0f} ms wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
