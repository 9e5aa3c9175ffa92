"""`smart-orchestrator demo`, the README's first command: the real Claude Code with this
plugin against the bundled scripted model, every step checked against its evidence."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from smart_orchestrator.demo import runner
from smart_orchestrator.demo.script import script_model
from smart_orchestrator.scripted import ModelRequest, ScriptedModel, Turn, text

REPO_ROOT = Path(__file__).resolve().parents[2]
STEPS = 10


def test_demo_passes_every_step_offline_and_writes_the_report(tmp_path: Path,
                                                             claude_bin: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ANTHROPIC", "CLAUDE", "SMART_ORCHESTRATOR"))}
    env["TMPDIR"] = str(tmp_path)  # the demo's folder and its report go here
    done = subprocess.run([sys.executable, "-m", "smart_orchestrator.cli", "demo"],
                          capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=180, check=False)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr[-3000:]
    assert out.count("[ ok ]") == STEPS and "[FAIL]" not in out, out
    assert f"All {STEPS} checks passed" in out
    for shown in ("-> spawn_wave", "wave completed: count succeeded after 1 reformat",
                  "<- Agent: refused: PreToolUse:Agent hook error",
                  "| Wave completion rate | >= 90% | - | - | 100% (1/1) ok |"):
        assert shown in out, shown
    [report] = re.findall(r"Run report: (\S+\.html)", out)
    assert Path(report).is_file() and Path(report).is_relative_to(tmp_path)
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith("smart-orchestrator-demo-")]
    assert leftovers == [], "the demo's working folder is removed"


def test_demo_fails_when_a_step_does_not_do_what_it_says(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, claude_bin: Path) -> None:
    """The count agent answers valid JSON at once: nothing to recover, so that step fails
    and the demo exits 1, though every tool call succeeded."""
    def no_bad_answer(model: ScriptedModel, work: Path) -> None:
        def valid_at_once(request: ModelRequest) -> Turn | None:
            return text('{"functions": 3}') if "DEMO-COUNT:" in request.first_user_text \
                else None

        model.on(valid_at_once)
        script_model(model, work)

    monkeypatch.setattr(runner, "script_model", no_bad_answer)
    monkeypatch.setattr(runner.tempfile, "tempdir", str(tmp_path))
    out = io.StringIO()
    rc = runner.run_demo(out=out)
    text_out = out.getvalue()
    assert rc == 1, text_out
    assert "[FAIL] 4. A wave with a dependency ran through spawn_wave" in text_out
    assert "count: 0 reformat(s), 1 attempt(s); expected 1 and 1" in text_out
    assert text_out.count("[FAIL]") == 1 and f"1 of {STEPS} checks FAILED" in text_out
