"""A git worktree per task: branched from HEAD or a remote, merged back as each task ends,
dependents start from their dependencies' merged results, conflicts are the task's
outcome, the user's working tree is never written, worktrees kept only on failure."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from smart_orchestrator.store import SqliteStore
from smart_orchestrator.waves import WavePlan, WaveService
from smart_orchestrator.waves.agents import AgentRequest
from tests.unit.test_waves_service import CONFIG
from tests.wave_fakes import FixedMetrics, ScriptedRunner, Step


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (path / "README.md").write_text("base\n")
    (path / "shared.txt").write_text("one\ntwo\nthree\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "base")
    return path


class Writer:
    """Stands in for agents that edit files: each task writes what `edits` says, into
    the folder it was given, and records what it found there first."""

    def __init__(self, edits: dict[str, dict[str, str]]) -> None:
        self.edits = edits
        self.seen: dict[str, set[str]] = {}
        self.cwd: dict[str, str] = {}
        self.on_start: dict[str, Callable[[], None]] = {}

    def __call__(self, request: AgentRequest) -> None:
        cwd = Path(request.cwd)
        self.cwd[request.task_id] = str(cwd)
        self.seen[request.task_id] = {p.name for p in cwd.iterdir() if p.name != ".git"}
        for name, text in self.edits.get(request.task_id, {}).items():
            (cwd / name).write_text(text)
        if (hook := self.on_start.get(request.task_id)) is not None:
            hook()


@pytest.fixture
def env(db_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("SMART_ORCHESTRATOR_WORKTREES", str(tmp_path / "worktrees"))
    opened: list[tuple[WaveService, SqliteStore]] = []

    def service(writer: Writer, script: dict[str, Step] | None = None) -> WaveService:
        store = SqliteStore(db_path)
        svc = WaveService(store, ScriptedRunner(script, probe=writer), CONFIG,
                          metrics=FixedMetrics())
        opened.append((svc, store))
        return svc

    yield service
    for svc, store in opened:
        svc.close()
        store.close()


def wave(*tasks: dict[str, Any], **extra: Any) -> WavePlan:
    return WavePlan.model_validate({"tasks": list(tasks), "gates": False, **extra})


def t(task_id: str, *deps: str) -> dict[str, Any]:
    return {"id": task_id, "prompt": f"do {task_id}", "depends_on": list(deps)}


def run(svc: WaveService, plan: WavePlan, cwd: Path) -> Any:
    run_id = svc.spawn(plan, cwd=str(cwd))
    assert svc.wait_until_done(run_id, 60)
    return svc.status(run_id)


def test_fan_out_fan_in_merges_every_task_into_the_result_branch(
        env: Any, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "project")
    head = git(repo, "rev-parse", "HEAD")
    writer = Writer({x: {f"{x}.txt": f"by {x}\n"} for x in "abcd"})
    status = run(env(writer), wave(t("a"), t("b", "a"), t("c", "a"), t("d", "b", "c"),
                                   gates=True), repo)
    assert status.state == "completed", status.reason
    # Each dependent started from a tree holding its dependencies' merged results.
    assert {"a.txt"} <= writer.seen["b"] and {"a.txt"} <= writer.seen["c"]
    assert {"a.txt", "b.txt", "c.txt"} <= writer.seen["d"]
    assert "a.txt" not in writer.seen["a"]
    # Never the user's working tree: agents ran elsewhere, the checkout is untouched.
    assert all(not cwd.startswith(str(repo)) for cwd in writer.cwd.values())
    assert git(repo, "status", "--porcelain") == "" and git(repo, "rev-parse", "HEAD") == head
    result = status.stats["worktrees"]
    assert result["base_commit"] == head and result["kept_worktrees"] == {}
    files = git(repo, "ls-tree", "--name-only", result["result_branch"]).split()
    assert {"a.txt", "b.txt", "c.txt", "d.txt", "README.md"} <= set(files)
    branches = git(repo, "branch", "--list", f"smart-orchestrator/{status.run_id}/*").split()
    assert {f"smart-orchestrator/{status.run_id}/{x}" for x in "abcd"} <= set(branches)
    assert not any(Path(c).exists() for c in writer.cwd.values()), "worktrees left behind"
    assert "passed" in status.stats["gates"]


def test_two_tasks_editing_the_same_lines_report_a_merge_conflict_as_a_task_outcome(
        env: Any, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "project")
    writer = Writer({"left": {"shared.txt": "one\nLEFT\nthree\n"},
                     "right": {"shared.txt": "one\nRIGHT\nthree\n"},
                     "other": {"other.txt": "fine\n"}})
    # Both start from the base: `left` ends only once `right` has started.
    right_started = threading.Event()
    writer.on_start["right"] = right_started.set
    status = run(env(writer, {"left": Step(gate=right_started)}),
                 wave(t("left"), t("right"), t("other")), repo)
    assert status.state == "partial"
    states = {v.id: (v.state, v.error_class) for v in status.tasks}
    failed = [tid for tid, (s, _) in states.items() if s == "failed"]
    assert len(failed) == 1 and failed[0] in ("left", "right"), states
    loser = next(v for v in status.tasks if v.id == failed[0])
    winner = "right" if loser.id == "left" else "left"
    assert loser.error_class == "merge_conflict" and loser.attempts == 1
    assert "shared.txt" in (loser.reason or "") and winner in (loser.reason or "")
    assert states["other"] == ("succeeded", None)
    kept = status.stats["worktrees"]["kept_worktrees"]
    assert list(kept) == [loser.id] and Path(kept[loser.id]).is_dir()
    result = status.stats["worktrees"]["result_branch"]
    merged = git(repo, "show", f"{result}:shared.txt")
    assert merged == f"one\n{winner.upper()}\nthree"


def test_a_wave_branches_from_a_named_remote_and_pushes_its_branches_back(
        env: Any, tmp_path: Path) -> None:
    origin = make_repo(tmp_path / "seed")
    bare = tmp_path / "team.git"
    git(tmp_path, "clone", "-q", "--bare", str(origin), str(bare))
    elsewhere = tmp_path / "not-a-repo"
    elsewhere.mkdir()
    writer = Writer({"a": {"a.txt": "from a\n"}, "b": {"b.txt": "from b\n"}})
    status = run(env(writer), wave(t("a"), t("b", "a"), remote=str(bare)), elsewhere)
    assert status.state == "completed", status.reason
    assert status.stats["worktrees"]["pushed_to_remote"] is True
    result = status.stats["worktrees"]["result_branch"]
    assert set(git(bare, "ls-tree", "--name-only", result).split()) >= {"a.txt", "b.txt"}
    assert list(elsewhere.iterdir()) == []


def test_outside_git_a_wave_shares_the_folder_unless_worktrees_are_required(
        env: Any, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    writer = Writer({"a": {"a.txt": "x"}})
    svc = env(writer)
    status = run(svc, wave(t("a")), plain)
    assert status.state == "completed" and writer.cwd["a"] == str(plain)
    assert "worktrees" not in status.stats
    with pytest.raises(Exception, match="not in a git repository"):
        svc.spawn(wave(t("a"), workspace="worktree"), cwd=str(plain))


@pytest.mark.parametrize("remote", [
    "ext::sh -c touch% /tmp/pwned", "-uhack", "--upload-pack=touch /tmp/x",
    "relative/path", "https://example.com/repo.git --upload-pack=x", "fd::3",
    "file://host/x\nsecond line",
])
def test_a_remote_that_is_not_a_plain_url_or_absolute_path_is_refused(remote: str) -> None:
    with pytest.raises(ValidationError):
        wave(t("a"), remote=remote)
