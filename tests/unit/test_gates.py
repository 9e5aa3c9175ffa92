"""Quality gates on real git repositories with real commands (tiny Python scripts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from smart_orchestrator.gates import GateRunner, GitError, record_approval, snapshot
from smart_orchestrator.gates._proc import ProcessRunner
from smart_orchestrator.gates.approvals import ApprovalError
from smart_orchestrator.gates.config import load_gates_config
from smart_orchestrator.store import SqliteStore

GH_TOKEN = "ghp_R8x2Lq9ZtW4mVb7NcK1pYs5HdJ3fGa6Ue0Xo"  # pragma: allowlist secret


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout


def make_repo(path: Path, config: str | None = None) -> Path:
    """A committed repository; `config` becomes the committed gates config."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q")
    git(path, "config", "user.email", "t@example.com")
    git(path, "config", "user.name", "t")
    (path / "app.py").write_text("x = 1\n")
    (path / ".gitignore").write_text("ignored/\n")
    if config is not None:
        write_config(path, config)
    git(path, "add", "-A")
    git(path, "commit", "-qm", "init")
    return path


def write_config(repo: Path, text: str) -> None:
    (repo / ".claude").mkdir(exist_ok=True)
    (repo / ".claude" / "smart-orchestrator.toml").write_text(text)


def cmd(code: str) -> str:
    """A TOML argv list running `code` with this interpreter."""
    return json.dumps([sys.executable, "-c", code])


COUNTER = ("import pathlib, sys; p = pathlib.Path(sys.argv[1]); "
           "p.write_text(str(int(p.read_text() or 0) + 1) if p.exists() else '1')")


def counting(counter: Path, exit_code: int = 0) -> str:
    code = COUNTER + f"; print('ran'); sys.exit({exit_code})"
    return json.dumps([sys.executable, "-c", code, str(counter)])


def runs(counter: Path) -> int:
    return int(counter.read_text()) if counter.exists() else 0


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", "[gates]\ndetect = false\n")


def runner(store: SqliteStore, repo: Path, **kw: object) -> GateRunner:
    return GateRunner(store, repo, **kw)  # type: ignore[arg-type]


def set_tier1(repo: Path, body: str, extra: str = "") -> None:
    """Rewrite the committed config (committed, so no config approval is needed)."""
    write_config(repo, f"[gates]\ndetect = false\n{extra}\n[gates.tier1]\n{body}\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "config")


# -- tiers ---------------------------------------------------------------------------------
def test_passes_every_tier_when_all_commands_exit_zero(store: SqliteStore, repo: Path) -> None:
    set_tier1(repo, f"lint = {cmd('print(1)')}\ntests = {cmd('print(2)')}")
    report = runner(store, repo).evaluate()
    assert report.passed and report.blocking_tier is None
    assert [t.status for t in report.tiers] == ["passed", "passed", "passed"]
    assert {c.name: c.status for c in report.tiers[0].checks} == {"lint": "passed",
                                                                  "tests": "passed"}


def test_blocks_at_the_failing_tier_and_skips_the_later_ones(store: SqliteStore,
                                                             repo: Path) -> None:
    failing = cmd("import sys; print('2 failed'); sys.exit(3)")
    set_tier1(repo, f"lint = {cmd('print(1)')}\ntests = {failing}")
    report = runner(store, repo).evaluate()
    assert not report.passed and report.blocking_tier == 1
    assert [t.status for t in report.tiers] == ["failed", "skipped", "skipped"]
    tests = report.tiers[0].checks[1]
    assert (tests.status, tests.exit_code) == ("failed", 3)
    assert "2 failed" in tests.output_tail
    assert "tests: failed (exit 3)" in report.reason


def test_fail_fast_stops_the_tier_at_its_first_failure(store: SqliteStore, repo: Path,
                                                      tmp_path: Path) -> None:
    counter = tmp_path / "n"
    set_tier1(repo, f"lint = {cmd('import sys; sys.exit(1)')}\ntests = {counting(counter)}",
              extra="fail_fast = true")
    report = runner(store, repo).evaluate()
    assert [c.name for c in report.tiers[0].checks] == ["lint"]
    assert runs(counter) == 0


def test_an_empty_tier1_blocks_unless_the_project_opts_out(store: SqliteStore,
                                                           repo: Path) -> None:
    report = runner(store, repo).evaluate()
    assert report.blocking_tier == 1
    assert "no typecheck, lint or test command" in report.reason
    set_tier1(repo, "", extra="require_tier1 = false")
    assert runner(store, repo).evaluate().passed


# -- the cache -----------------------------------------------------------------------------
def test_an_unchanged_tree_is_not_run_again(store: SqliteStore, repo: Path,
                                            tmp_path: Path) -> None:
    counter = tmp_path / "n"
    set_tier1(repo, f"tests = {counting(counter)}")
    first = runner(store, repo).evaluate()
    second = runner(store, repo).evaluate()
    assert runs(counter) == 1
    assert second.tree == first.tree
    check = second.tiers[0].checks[0]
    assert check.cached and check.status == "passed"
    assert check.output_sha256 == first.tiers[0].checks[0].output_sha256


def test_failures_are_cached_too_and_force_runs_again(store: SqliteStore, repo: Path,
                                                      tmp_path: Path) -> None:
    counter = tmp_path / "n"
    set_tier1(repo, f"tests = {counting(counter, exit_code=1)}")
    runner(store, repo).evaluate()
    assert runner(store, repo).evaluate().tiers[0].checks[0].cached
    runner(store, repo).evaluate(force=True)
    assert runs(counter) == 2


def test_edits_and_untracked_files_change_the_tree_but_ignored_files_do_not(
        store: SqliteStore, repo: Path, tmp_path: Path) -> None:
    counter = tmp_path / "n"
    set_tier1(repo, f"tests = {counting(counter)}")
    runner(store, repo).evaluate()
    (repo / "ignored").mkdir()
    (repo / "ignored" / "build.log").write_text("noise")
    runner(store, repo).evaluate()
    assert runs(counter) == 1
    (repo / "new_module.py").write_text("y = 2\n")
    report = runner(store, repo).evaluate()
    assert runs(counter) == 2
    assert "new_module.py" in report.changed_paths
    (repo / "app.py").write_text("x = 3\n")
    runner(store, repo).evaluate()
    assert runs(counter) == 3
    assert git(repo, "status", "--porcelain").count("??") == 1  # the user's index untouched


def test_a_changed_command_runs_again_on_the_same_tree(store: SqliteStore, repo: Path,
                                                       tmp_path: Path) -> None:
    counter = tmp_path / "n"
    set_tier1(repo, f"tests = {counting(counter)}")
    config = load_gates_config(repo)
    runner(store, repo, config=config).evaluate()
    changed = config.model_copy(update={"timeout_s": 123.0})
    runner(store, repo, config=changed).evaluate()
    assert runs(counter) == 2


def test_results_are_not_cached_when_a_command_changes_the_working_copy(
        store: SqliteStore, repo: Path, tmp_path: Path) -> None:
    writes = "import pathlib, uuid; pathlib.Path('out.txt').write_text(uuid.uuid4().hex)"
    set_tier1(repo, f"tests = {cmd(writes)}")
    report = runner(store, repo).evaluate()
    assert report.passed and not report.cached_tree
    assert "changed while the gates ran" in report.notes[0]
    assert store.query("SELECT count(*) FROM gate_results") == [(0,)]


def test_run_false_reports_pending_without_running(store: SqliteStore, repo: Path,
                                                   tmp_path: Path) -> None:
    counter = tmp_path / "n"
    set_tier1(repo, f"tests = {counting(counter)}")
    report = runner(store, repo).evaluate(run=False)
    assert runs(counter) == 0
    assert report.tiers[0].status == "pending" and not report.passed
    assert report.tiers[0].checks[0].status == "not_run"


# -- processes -----------------------------------------------------------------------------
HANGS_WITH_CHILD = (
    "import subprocess, sys, time, pathlib\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
    "pathlib.Path(sys.argv[1]).write_text(str(child.pid))\n"
    "print('started', flush=True)\n"
    "time.sleep(600)\n")


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_timeout_kills_the_whole_process_group(store: SqliteStore, repo: Path,
                                                 tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    argv = json.dumps([sys.executable, "-c", HANGS_WITH_CHILD, str(pid_file)])
    set_tier1(repo, f"tests = {{ command = {argv}, timeout_s = 1.5 }}")
    report = runner(store, repo, procs=ProcessRunner(term_grace_s=0.5)).evaluate()
    check = report.tiers[0].checks[0]
    assert check.status == "timed_out" and check.exit_code is None
    assert "timed out after 1.5 s" in check.detail
    assert "started" in check.output_tail
    assert not _alive(int(pid_file.read_text()))
    assert store.query("SELECT count(*) FROM gate_results") == [(0,)]  # not cached


def test_cancel_kills_the_running_command(tmp_path: Path) -> None:
    fifo = tmp_path / "ready"
    os.mkfifo(fifo)
    code = ("import sys, time; open(sys.argv[1], 'w').write('x'); time.sleep(600)")
    procs = ProcessRunner()
    result: list[object] = []
    worker = threading.Thread(target=lambda: result.append(procs.run(
        [sys.executable, "-c", code, str(fifo)], cwd=tmp_path, env=os.environ,
        timeout_s=60, tail_chars=1000)))
    worker.start()
    with fifo.open() as fh:  # returns once the command has opened it: it is running
        fh.read()
    procs.cancel()
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert result[0].cancelled  # type: ignore[attr-defined]


def test_a_command_that_cannot_start_is_an_error_and_not_cached(store: SqliteStore,
                                                                repo: Path) -> None:
    set_tier1(repo, 'tests = ["/nonexistent/tool", "--check"]')
    report = runner(store, repo).evaluate()
    check = report.tiers[0].checks[0]
    assert check.status == "error"
    assert "cannot start '/nonexistent/tool'" in check.detail
    assert store.query("SELECT count(*) FROM gate_results") == [(0,)]


def test_output_tail_is_bounded_redacted_and_the_full_output_hashed(store: SqliteStore,
                                                                     repo: Path) -> None:
    code = f"print('x' * 50000); print('token = \"{GH_TOKEN}\"')"
    set_tier1(repo, f"tests = {cmd(code)}", extra="tail_chars = 300")
    check = runner(store, repo).evaluate().tiers[0].checks[0]
    assert len(check.output_tail) <= 300
    assert GH_TOKEN not in check.output_tail and "[REDACTED:" in check.output_tail
    assert check.output_bytes > 50000 and len(check.output_sha256) == 64


def test_the_audit_chain_records_runs_without_their_output(store: SqliteStore,
                                                           repo: Path) -> None:
    prints = cmd("print('secret output')")
    set_tier1(repo, f"tests = {prints}")
    runner(store, repo).evaluate()
    events = {r.kind: r.data for r in store.iter_audit()}
    assert events["gate.check"]["status"] == "passed"
    assert events["gate.check"]["output"]["bytes"] > 0
    assert events["gate.result"]["passed"] is True
    assert "secret output" not in json.dumps([r.data for r in store.iter_audit()])


# -- tier 2 --------------------------------------------------------------------------------
def test_a_secret_added_by_the_change_blocks_tier2_without_being_shown(
        store: SqliteStore, repo: Path) -> None:
    set_tier1(repo, f"tests = {cmd('pass')}")
    (repo / "settings.py").write_text(f'DEBUG = True\nTOKEN = "{GH_TOKEN}"\n')
    report = runner(store, repo).evaluate()
    assert report.blocking_tier == 2
    secrets = report.tiers[1].checks[0]
    assert secrets.status == "failed"
    assert [(f.path, f.line, f.rule) for f in secrets.findings] == [
        ("settings.py", 2, "github-token")]
    assert GH_TOKEN not in json.dumps([f.detail for f in secrets.findings]) + report.reason


def test_a_secret_already_in_the_base_is_not_the_change(store: SqliteStore,
                                                        tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r2", "[gates]\ndetect = false\nrequire_tier1 = false\n")
    (repo / "old.py").write_text(f'TOKEN = "{GH_TOKEN}"\n')
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "old secret")
    (repo / "old.py").write_text(f'TOKEN = "{GH_TOKEN}"\nOTHER = 1\n')
    assert runner(store, repo).evaluate().passed


def test_pattern_rules_name_the_path_and_line_of_each_violation(store: SqliteStore,
                                                                repo: Path) -> None:
    set_tier1(repo, f"tests = {cmd('pass')}", extra=(
        "[[gates.patterns]]\nid = 'no-print'\nregex = '^\\s*print\\('\n"
        "paths = ['src/**/*.py']\nmessage = 'use logging'\n"))
    (repo / "src" / "pkg").mkdir(parents=True)
    (repo / "src" / "pkg" / "a.py").write_text("import logging\nprint('hi')\n")
    (repo / "scripts.py").write_text("print('allowed here')\n")
    report = runner(store, repo).evaluate()
    patterns = next(c for c in report.tiers[1].checks if c.name == "patterns")
    assert patterns.status == "failed"
    assert [(f.path, f.line, f.detail) for f in patterns.findings] == [
        ("src/pkg/a.py", 2, "use logging")]


def test_tier2_commands_run_after_the_builtin_checks(store: SqliteStore, repo: Path) -> None:
    audit = cmd("import sys; print('1 high'); sys.exit(1)")
    write_config(repo, "[gates]\ndetect = false\n[gates.tier1]\n"
                       f"tests = {cmd('pass')}\n[gates.tier2]\naudit = {audit}\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "c")
    report = runner(store, repo).evaluate()
    assert [c.name for c in report.tiers[1].checks] == ["secrets", "audit"]
    assert report.blocking_tier == 2 and "audit: failed (exit 1)" in report.reason


# -- tier 3 --------------------------------------------------------------------------------
APPROVALS = ("[[gates.approvals]]\nkind = 'security'\npaths = ['auth/**']\n"
             "approvers = ['alice', 'bob']\n")


@pytest.fixture
def secured(repo: Path) -> Path:
    set_tier1(repo, f"tests = {cmd('pass')}", extra=APPROVALS)
    (repo / "auth").mkdir()
    (repo / "auth" / "login.py").write_text("def login(): ...\n")
    (repo / "docs.md").write_text("notes\n")
    return repo


def _approve(store: SqliteStore, repo: Path, who: str = "alice", **kw: object) -> object:
    config = load_gates_config(repo)
    return record_approval(store, snapshot(repo, config.base), config, repo,
                           kind=str(kw.pop("kind", "security")), approver=who,
                           via=str(kw.pop("via", "cli")))


def test_tier3_blocks_until_a_listed_person_approves(store: SqliteStore, secured: Path) -> None:
    report = runner(store, secured).evaluate()
    assert report.blocking_tier == 3
    assert "needs a security approval for 1 changed file(s) (auth/login.py)" in report.reason
    _approve(store, secured)
    report = runner(store, secured).evaluate()
    assert report.passed
    approval = report.tiers[2].approvals[0]
    assert (approval.approved_by, approval.via) == ("alice", "cli")
    event = next(r for r in store.iter_audit() if r.kind == "gate.approval")
    assert event.data["approver"] == "alice" and event.data["review"] == "security"


def test_an_approval_survives_other_edits_but_not_edits_to_what_it_covers(
        store: SqliteStore, secured: Path) -> None:
    _approve(store, secured)
    (secured / "docs.md").write_text("more notes\n")
    assert runner(store, secured).evaluate().passed
    (secured / "auth" / "login.py").write_text("def login(): return True\n")
    assert runner(store, secured).evaluate().blocking_tier == 3


@pytest.mark.parametrize(("who", "kind", "via", "message"), [
    ("mallory", "security", "cli", "may not give a 'security' approval"),
    ("alice", "ux", "cli", "needs no 'ux' approval"),
    ("alice", "security", "mcp", "do not count in this project"),
    ("", "security", "cli", "approver must be a name"),
])
def test_approvals_that_cannot_be_recorded(store: SqliteStore, secured: Path, who: str,
                                           kind: str, via: str, message: str) -> None:
    with pytest.raises(ApprovalError, match=message):
        _approve(store, secured, who, kind=kind, via=via)
    assert not any(r.kind == "gate.approval" for r in store.iter_audit())


def test_editing_the_gates_config_needs_a_person_to_approve_it(store: SqliteStore,
                                                               repo: Path) -> None:
    set_tier1(repo, f"tests = {cmd('import sys; sys.exit(1)')}")
    write_config(repo, f"[gates]\ndetect = false\n[gates.tier1]\ntests = {cmd('pass')}\n")
    report = runner(store, repo).evaluate()
    assert report.blocking_tier == 3
    assert "gates-config approval" in report.reason


def test_approvals_via_a_channel_the_project_no_longer_accepts_do_not_count(
        store: SqliteStore, secured: Path) -> None:
    _approve(store, secured, via="cli")
    write_config(secured, f"[gates]\ndetect = false\napproval_via = ['elicitation']\n"
                          f"[gates.tier1]\ntests = {cmd('pass')}\n{APPROVALS}")
    git(secured, "add", ".claude")
    git(secured, "commit", "-qm", "only elicitation")
    assert runner(store, secured).evaluate().blocking_tier == 3


# -- errors --------------------------------------------------------------------------------
def test_a_folder_outside_git_is_a_clear_error(store: SqliteStore, tmp_path: Path) -> None:
    with pytest.raises(GitError, match="not inside a git work tree"):
        runner(store, tmp_path).evaluate()


def test_a_base_that_does_not_exist_is_a_config_error(store: SqliteStore, repo: Path) -> None:
    from smart_orchestrator.errors import ConfigError

    set_tier1(repo, f"tests = {cmd('pass')}", extra="base = 'origin/nowhere'")
    with pytest.raises(ConfigError, match="origin/nowhere"):
        runner(store, repo).evaluate()


def test_a_repository_without_commits_treats_every_file_as_the_change(
        store: SqliteStore, tmp_path: Path) -> None:
    repo = tmp_path / "fresh"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "a.py").write_text("a = 1\n")
    write_config(repo, "[gates]\ndetect = false\nrequire_tier1 = false\n")
    report = runner(store, repo).evaluate()
    assert set(report.changed_paths) == {"a.py", ".claude/smart-orchestrator.toml"}
