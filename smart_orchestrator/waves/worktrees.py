"""A git worktree per task, merged back into the wave's result branch as each task ends.

The wave branches from a base commit: the project's HEAD when it is spawned, or the head
of a remote the plan names (cloned beside the worktrees, never into the user's folder).
Each task works on `smart-orchestrator/<run>/<task>` in a worktree of its own, started
from the result branch as it stands when the task starts, which holds every dependency's
merged result (a task starts only after its dependencies succeeded, and a task succeeds
only once its branch is merged). A merge that conflicts is aborted and is that task's
outcome. Agents never write the user's working tree: only the repository's branches and
worktrees change, and the user's checkout stays where it was.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import OrchestratorError

__all__ = ["MergeConflict", "Workspaces", "branch_name", "worktrees_root"]

_GIT_TIMEOUT_S = 120.0
_IDENTITY = ("-c", "user.name=smart-orchestrator", "-c", "user.email=waves@smart-orchestrator",
             "-c", "commit.gpgsign=false")
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()
_clone_lock = threading.Lock()
_PUSH_TRIES = 60


class MergeConflict(OrchestratorError):
    """A task's branch does not merge into the result: `paths` conflict."""

    def __init__(self, task_id: str, paths: list[str], with_tasks: list[str]) -> None:
        self.paths = paths
        others = f" with the changes of {', '.join(with_tasks)}" if with_tasks else ""
        super().__init__(f"merge conflict in {', '.join(paths) or 'the tree'}{others}: "
                         f"task {task_id!r}'s branch was not merged", rule_id="merge_conflict")


def worktrees_root() -> Path:
    """Beside the data folder, not in it: the Bash sandbox hides the data folder from agents,
    and a worktree is where an agent works."""
    import os

    from ..paths import data_dir

    explicit = os.environ.get("SMART_ORCHESTRATOR_WORKTREES")
    if explicit:
        return Path(explicit).expanduser()
    data = data_dir()
    return data.with_name(data.name + "-worktrees")


def branch_name(run_id: str, task_id: str) -> str:
    return f"smart-orchestrator/{run_id}/{task_id}"


def _git(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["git", *_IDENTITY, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=_GIT_TIMEOUT_S, check=False)
    if check and done.returncode != 0:
        raise OrchestratorError(f"git {args[0]} failed: "
                                f"{(done.stderr or done.stdout).strip()[:300]}")
    return done


def _repo_root(cwd: Path) -> Path | None:
    done = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=cwd,
                          capture_output=True, text=True, timeout=_GIT_TIMEOUT_S,
                          check=False)
    return Path(done.stdout.strip()) if done.returncode == 0 else None


@dataclass(frozen=True, slots=True)
class Workspaces:
    run_id: str
    repo: str       # the repository the worktrees belong to
    base: str       # the commit the wave branches from
    root: str       # where the worktrees live
    remote: str | None = None
    # The result branch lives on the remote: workers on other machines merge into it
    # there (fetch, merge, push; a push that lost a race is redone on the new head).
    shared: bool = False

    # -- creating ------------------------------------------------------------------------
    @classmethod
    def prepare(cls, run_id: str, cwd: str, *, remote: str | None, mode: str,
                root: Path) -> Workspaces | None:
        """None when the wave shares the folder (`mode` shared, or auto outside git)."""
        if mode == "shared":
            return None
        where = root / run_id
        if remote is not None:
            repo = where / "repo"
            if not (repo / ".git").exists():
                where.mkdir(parents=True, exist_ok=True)
                _git(where, "clone", "--quiet", "--no-checkout", "--", remote, str(repo))
            base = _git(repo, "rev-parse", "HEAD").stdout.strip()
            return cls(run_id, str(repo), base, str(where), remote)
        found = _repo_root(Path(cwd))
        if found is None:
            if mode == "worktree":
                raise OrchestratorError(f"{cwd} is not in a git repository",
                                        hint="name a remote, or use workspace 'shared'")
            return None
        head = _git(found, "rev-parse", "--verify", "HEAD", check=False)
        if head.returncode != 0:
            if mode == "worktree":
                raise OrchestratorError(f"the repository at {found} has no commit yet")
            return None
        return cls(run_id, str(found), head.stdout.strip(), str(where))

    def to_json(self) -> dict[str, Any]:
        return {"repo": self.repo, "base": self.base, "root": self.root,
                "remote": self.remote, "shared": self.shared}

    @classmethod
    def from_json(cls, run_id: str, data: dict[str, Any] | None) -> Workspaces | None:
        if not data:
            return None
        return cls(run_id, str(data["repo"]), str(data["base"]), str(data["root"]),
                   data.get("remote"), bool(data.get("shared", False)))

    @classmethod
    def on_worker(cls, run_id: str, data: dict[str, Any], checkout: Path) -> Workspaces:
        """The wave's workspaces as a worker sees them: its own clone of the wave's
        remote under `checkout` (cloned once, fetched for each task), the wave's base."""
        remote = data.get("remote")
        if not remote or not data.get("shared"):
            raise OrchestratorError(f"wave {run_id} has no shared remote to work from",
                                    hint="waves for workers name a `remote` in the plan")
        where = checkout / run_id
        repo = where / "repo"
        with _clone_lock:
            if not (repo / ".git").exists():
                where.mkdir(parents=True, exist_ok=True)
                shutil.rmtree(repo, ignore_errors=True)  # a clone a crash left half-made
                _git(where, "clone", "--quiet", "--no-checkout", "--", str(remote), str(repo))
        spaces = cls(run_id, str(repo), str(data["base"]), str(where), str(remote), True)
        with spaces._lock():
            _git(repo, "fetch", "--quiet", "origin")
        return spaces

    # -- names ---------------------------------------------------------------------------
    @property
    def result_branch(self) -> str:
        return branch_name(self.run_id, "result")

    def path(self, task_id: str) -> Path:
        return Path(self.root) / "tasks" / task_id

    def _result_path(self) -> Path:
        return Path(self.root) / "result"

    def _lock(self) -> threading.Lock:
        with _locks_guard:
            return _locks.setdefault(self.repo, threading.Lock())

    # -- a task's tree -------------------------------------------------------------------
    def open(self, task_id: str) -> Path:
        """A clean worktree for an attempt, from the result branch as it stands now."""
        repo, path = Path(self.repo), self.path(task_id)
        with self._lock():
            start = self._remote_result() if self.shared else self._ensure_result()
            if path.exists():
                _git(path, "reset", "--quiet", "--hard", start)
                _git(path, "clean", "-qfdx")
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                _git(repo, "worktree", "add", "--quiet", "-B",
                     branch_name(self.run_id, task_id), str(path), start)
        return path

    def _ensure_result(self) -> str:
        result = self._result_path()
        if not result.exists():
            _git(Path(self.repo), "worktree", "add", "--quiet", "-B", self.result_branch,
                 str(result), self.base)
        return _git(result, "rev-parse", "HEAD").stdout.strip()

    def _remote_result(self) -> str:
        """The result branch's head on the remote (fetched now), or the base before the
        first merge."""
        branch = self.result_branch
        fetched = _git(Path(self.repo), "fetch", "--quiet", "origin",
                       f"+refs/heads/{branch}:refs/remotes/origin/{branch}", check=False)
        if fetched.returncode != 0:
            return self.base  # not pushed yet: nothing merged so far
        return _git(Path(self.repo), "rev-parse", f"refs/remotes/origin/{branch}").stdout.strip()

    def _sync_result(self) -> str:
        """The local result worktree at the remote's result head."""
        head = self._remote_result()
        result = self._result_path()
        if not result.exists():
            _git(Path(self.repo), "worktree", "add", "--quiet", "-B", self.result_branch,
                 str(result), head)
        else:
            _git(result, "reset", "--quiet", "--hard", head)
            _git(result, "clean", "-qfdx")
        return head

    def deliver(self, task_id: str) -> str:
        """Commit the task's tree on its branch and merge it into the result branch; raise
        MergeConflict (the result left as it was) when it does not merge. Returns the
        result's commit."""
        path = self.path(task_id)
        _git(path, "add", "-A")
        _git(path, "commit", "--quiet", "--allow-empty", "-m",
             f"smart-orchestrator {self.run_id}/{task_id}")
        if self.shared:
            return self._deliver_shared(task_id)
        with self._lock():
            result = self._result_path()
            self._ensure_result()
            merged = _git(result, "merge", "--no-ff", "--no-edit", "-m",
                          f"merge {self.run_id}/{task_id}", branch_name(self.run_id, task_id),
                          check=False)
            if merged.returncode != 0:
                paths = _git(result, "diff", "--name-only", "--diff-filter=U",
                             check=False).stdout.split()
                _git(result, "merge", "--abort", check=False)
                raise MergeConflict(task_id, paths, self._authors(paths))
            return _git(result, "rev-parse", "HEAD").stdout.strip()

    def _deliver_shared(self, task_id: str) -> str:
        """Merge onto the remote's result head and push; a push that lost the race to
        another worker (not a fast-forward) is redone on the new head."""
        branch = branch_name(self.run_id, task_id)
        for _ in range(_PUSH_TRIES):
            with self._lock():
                self._sync_result()
                result = self._result_path()
                merged = _git(result, "merge", "--no-ff", "--no-edit", "-m",
                              f"merge {self.run_id}/{task_id}", branch, check=False)
                if merged.returncode != 0:
                    paths = _git(result, "diff", "--name-only", "--diff-filter=U",
                                 check=False).stdout.split()
                    _git(result, "merge", "--abort", check=False)
                    raise MergeConflict(task_id, paths, self._authors(paths))
                # The task's branch is forced (a task re-run after its worker died rewrites
                # it); the result only fast-forwards, atomically with it.
                pushed = _git(Path(self.repo), "push", "--quiet", "--atomic", "origin",
                              f"+refs/heads/{branch}:refs/heads/{branch}",
                              f"refs/heads/{self.result_branch}:refs/heads/{self.result_branch}",
                              check=False)
                if pushed.returncode == 0:
                    return _git(result, "rev-parse", "HEAD").stdout.strip()
                text = pushed.stderr + pushed.stdout
                if not any(w in text for w in ("rejected", "fetch first", "non-fast-forward",
                                               "failed to update ref", "cannot lock ref")):
                    raise OrchestratorError(f"git push failed: {text.strip()[:300]}")
        raise OrchestratorError(f"could not push the result of {task_id!r}: the remote's "
                                f"result branch kept moving ({_PUSH_TRIES} tries)")

    def _authors(self, paths: list[str]) -> list[str]:
        """The tasks whose merged changes the conflicting paths hold."""
        prefix = f"smart-orchestrator {self.run_id}/"
        found: list[str] = []
        for p in paths:
            log = _git(self._result_path(), "log", "--format=%s", "--", p, check=False)
            for subject in log.stdout.splitlines():
                if subject.startswith(prefix) and subject[len(prefix):] not in found:
                    found.append(subject[len(prefix):])
        return found

    def remove(self, task_id: str) -> None:
        path = self.path(task_id)
        with self._lock():
            _git(Path(self.repo), "worktree", "remove", "--force", str(path), check=False)
        shutil.rmtree(path, ignore_errors=True)

    def result_tree(self) -> Path:
        with self._lock():
            if self.shared:
                self._sync_result()
            else:
                self._ensure_result()
        return self._result_path()

    def finish(self, *, keep: list[str]) -> dict[str, Any]:
        """After the wave: push branches to the remote (if any), drop the result worktree
        (its branch stays); worktrees of `keep` stay for inspection."""
        pushed = False
        with self._lock():
            result = self._result_path()
            if self.shared:  # every merge was pushed as it happened
                head, pushed = self._remote_result(), True
            else:
                head = _git(result, "rev-parse", "HEAD", check=False).stdout.strip() \
                    if result.exists() else self.base
            if self.remote is not None and not self.shared:
                refs = [f"refs/heads/{b}" for b in self._branches()]
                _git(Path(self.repo), "push", "--quiet", "origin", *refs)
                pushed = True
            _git(Path(self.repo), "worktree", "remove", "--force", str(result), check=False)
            shutil.rmtree(result, ignore_errors=True)
        kept = {t: str(self.path(t)) for t in keep if self.path(t).exists()}
        return {"result_branch": self.result_branch, "result_commit": head,
                "base_commit": self.base, "pushed_to_remote": pushed,
                "kept_worktrees": kept}

    def _branches(self) -> list[str]:
        out = _git(Path(self.repo), "for-each-ref", "--format=%(refname:short)",
                   f"refs/heads/smart-orchestrator/{self.run_id}/").stdout
        return out.split()
