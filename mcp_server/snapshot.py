"""`tools.json`: the real server's answers to discovery and the tool listing, which the shim
serves while the service is not up. Regenerate after changing a tool:

    .venv/bin/python -m mcp_server.snapshot

A unit test fails when the file and the server disagree.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT = Path(__file__).with_name("tools.json")
ENVELOPE = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "snapshot", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {}}


def live_snapshot(data_dir: Path) -> dict[str, Any]:
    requests = [{"jsonrpc": "2.0", "id": 1, "method": "server/discover",
                 "params": {"_meta": ENVELOPE}},
                {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {"_meta": ENVELOPE}}]
    env = dict(os.environ, SMART_ORCHESTRATOR_DATA=str(data_dir),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    env.pop("CLAUDE_CODE_SESSION_ID", None)
    proc = subprocess.Popen([sys.executable, "-m", "smart_orchestrator.cli", "serve"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env, cwd=data_dir)
    assert proc.stdin is not None and proc.stdout is not None
    answers: dict[int, Any] = {}
    try:
        # One at a time: the server stops at end of input, answered or not.
        for request in requests:
            proc.stdin.write(json.dumps(request) + "\n")
            proc.stdin.flush()
            while request["id"] not in answers:
                line = proc.stdout.readline()
                if not line:
                    raise RuntimeError("the server ended before answering")
                msg = json.loads(line)
                if "id" in msg:
                    answers[msg["id"]] = msg["result"]
    finally:
        proc.stdin.close()
        proc.wait(60)
    return {"discover": answers[1], "tools": answers[2]}


def main() -> int:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        SNAPSHOT.write_text(json.dumps(live_snapshot(Path(tmp)), indent=1, sort_keys=True) + "\n")
    print(f"wrote {SNAPSHOT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
