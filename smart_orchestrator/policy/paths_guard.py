"""Which protected files a tool call can touch. Protected are credentials (never read or
written by a subagent), the plugin's own state and policy (never written), and what must
stay out of every model's reach, the main agent's included: the plugin's data folder (its
witness key above all) and Claude Code's transcripts and task outputs of agents, which hold
subagents' answers raw. The decision is made on resolved paths: `~`, `$HOME`, relative paths
against the working folder, `..`, symlinks (realpath) and globs are resolved before anything
is compared, so the spelling of a path does not matter. Bash command lines are resolved by
`_shell` (every word, through every expansion bash would make).
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from ._shell import ShellResolution, Touch, resolve_code, resolve_command

__all__ = ["CREDENTIALS", "GuardContext", "PathVerdict", "check_tool_call", "guard_context",
           "main_agent_context"]

# Credential locations relative to a home folder: one list to extend. A trailing "/" is a
# whole folder. A path matches under any folder (a copy of a home is as secret as the
# original); a recursive read (grep -r, find, a Grep over a folder) matches when the folder
# it walks holds one of these under a real home.
CREDENTIALS: tuple[tuple[str, str], ...] = (
    (".ssh/", "SSH keys"),
    (".aws/", "AWS credentials"),
    (".config/gh/", "the GitHub CLI token"),
    (".netrc", "the .netrc passwords"),
    (".git-credentials", "git's stored credentials"),
    (".config/git/credentials", "git's stored credentials"),
    (".docker/config.json", "Docker registry credentials"),
    (".kube/", "Kubernetes credentials"),
    (".config/gcloud/", "Google Cloud credentials"),
    (".azure/", "Azure credentials"),
    (".gnupg/", "GnuPG keys"),
    (".pgpass", "PostgreSQL passwords"),
    (".npmrc", "the npm token"),
    (".pypirc", "the PyPI token"),
    (".claude/.credentials.json", "Claude Code's credentials"),
    (".cargo/credentials", "the crates.io token"),
    (".cargo/credentials.toml", "the crates.io token"),
    (".terraform.d/credentials.tfrc.json", "Terraform credentials"),
    (".vault-token", "the Vault token"),
    (".config/hub", "the hub token"),
    (".boto", "cloud storage credentials"),
    (".s3cfg", "S3 credentials"),
    (".password-store/", "the password store"),
    (".local/share/keyrings/", "the desktop keyring"),
)
# Inside the folders above, names that stay readable, and those that stay writable too
# (authorized_keys is public, but writing it lets someone in).
PUBLIC_NAMES = ("*.pub", "known_hosts", "known_hosts.old", "authorized_keys")
WRITABLE_PUBLIC_NAMES = ("*.pub", "known_hosts", "known_hosts.old")
# Credentials anywhere, by name.
ENV_FILE = re.compile(r"^\.env(?:rc|\.(?!(?:example|sample|template|dist|defaults)$)[\w.-]+)?$")
ABSOLUTE_CREDENTIALS: tuple[tuple[str, str], ...] = (
    ("/proc/*/environ", "another process's environment"),
    ("/etc/shadow", "the system's password hashes"),
)
# What a subagent must not change, relative to the plugin's folders (filled in per call).
STATE_LABEL = "the plugin's own state, policy or hooks"
OWN_LABEL = ("the plugin's data folder or Claude Code's transcripts of agents (they hold "
             "the audit key and subagents' answers unredacted)")
# Claude Code's per-task output files, under any folder: `claude-<uid>/<project>/<session>/
# tasks/<id>.output`, where the id's first letter is the task's kind. Agents (a), workflows
# (w), remote agents (r) and teammates (t) write answers there; shell (b) and monitor (m)
# output is the model's own.
OWN_PATTERNS: tuple[tuple[str, ...], ...] = (
    (".claude", "projects"),
    ("claude-*", "*", "*", "tasks", "[!bm]*"),
)


# In Claude Code's configuration folder: what it runs or sources on its own.
CLAUDE_RUNS = ("shell-snapshots", "session-env", "jobs", "daemon", "daemon.json")


class GuardContext(NamedTuple):
    cwd: str
    homes: tuple[str, ...]
    write_protected: tuple[str, ...]  # absolute files and folders
    env: Mapping[str, str]
    # Never read nor written by any agent (absolute), besides OWN_PATTERNS anywhere.
    read_protected: tuple[str, ...] = ()
    # Folders that hold such records among the model's own files (Claude Code's task
    # outputs): a walk over them is denied, a named file only by OWN_PATTERNS.
    walk_protected: tuple[str, ...] = ()


class PathVerdict(NamedTuple):
    credential: str | None   # what credential the call would touch
    state_write: str | None  # which protected file of the plugin it would change
    unresolved: str | None   # why the call could not be resolved
    paths: int               # how many paths and patterns were resolved
    own: str | None = None   # the plugin's data or an agent transcript it would touch
    controls: str | None = None  # it runs Claude Code itself (a session, its config)
    # It walks a folder that holds the data folder or transcripts without naming them
    # (`grep -r x ~`, `find /`): what it would reach, for the main agent's veil.
    walked: str | None = None
    runs: str | None = None   # code whose file opens the line does not spell (a script)
    background: bool = False  # it leaves a job running after it returns


def guard_context(payload: Mapping[str, Any], *, project_dir: Path, data_dir: Path,
                  extra_protected: Iterable[Path] = ()) -> GuardContext:
    env = os.environ
    homes = [h for h in (env.get("HOME"), _passwd_home()) if h]
    cwd = payload.get("cwd")
    home = Path(homes[0]) if homes else Path("/nonexistent")
    protected = [data_dir, project_dir / ".claude" / "smart-orchestrator.toml",
                 project_dir / ".secrets.baseline", project_dir / ".claude" / "settings.json",
                 project_dir / ".claude" / "settings.local.json",
                 home / ".claude" / "settings.json", home / ".claude" / "settings.local.json",
                 home / ".claude" / "plugins", home / ".claude.json",
                 # Managed settings outrank every other (`disableAllHooks` there ends all).
                 Path("/etc/claude-code"),
                 # The plugin's own folder, wherever it is installed: its hooks and code.
                 Path(__file__).resolve().parents[2],
                 *extra_protected]
    for var in ("CLAUDE_PLUGIN_ROOT", "SMART_ORCHESTRATOR_POLICY", "SMART_ORCHESTRATOR_DB"):
        if env.get(var):
            protected.append(Path(env[var]))
    own = _own_roots(payload, data_dir, [Path(h) for h in homes], env)
    uid = os.getuid() if hasattr(os, "getuid") else 0
    walks = [Path(tmp) / f"claude-{uid}"
             for tmp in dict.fromkeys((env.get("CLAUDE_CODE_TMPDIR"), env.get("TMPDIR"), "/tmp"))
             if tmp and tmp.startswith("/")]
    protected += [c / name for c in _config_dirs(payload, env)
                  for name in ("settings.json", "settings.local.json", "plugins")]
    # What Claude Code itself runs before each Bash line, outside any confinement: the
    # shell snapshot it sources, the session's environment files, its jobs and daemon.
    protected += [c / name for c in [home / ".claude", *_config_dirs(payload, env)]
                  for name in CLAUDE_RUNS]
    return GuardContext(cwd if isinstance(cwd, str) and cwd.startswith("/")
                        else str(project_dir), tuple(dict.fromkeys(homes)),
                        tuple(dict.fromkeys(str(p) for p in protected)), env,
                        tuple(dict.fromkeys(str(p) for p in own)),
                        tuple(str(p) for p in walks))


def main_agent_context(payload: Mapping[str, Any], *, project_dir: Path, data_dir: Path
                       ) -> GuardContext:
    """The main agent's calls: its own files and credentials are the user's business, so
    only the plugin's state and Claude Code's agent records are kept from it, and the
    files that would turn the plugin off (its folder, hooks, Claude Code's settings and
    plugin registry). The policy file and the baseline stay writable: they are proposals
    that weaken nothing without the user's confirmation."""
    ctx = guard_context(payload, project_dir=project_dir, data_dir=data_dir)
    proposals = {str(project_dir / ".claude" / "smart-orchestrator.toml"),
                 str(project_dir / ".secrets.baseline")}
    if ctx.env.get("SMART_ORCHESTRATOR_POLICY"):
        proposals.add(ctx.env["SMART_ORCHESTRATOR_POLICY"])
    return ctx._replace(write_protected=tuple(p for p in ctx.write_protected
                                              if p not in proposals))


def _config_dirs(payload: Mapping[str, Any], env: Mapping[str, str]) -> list[Path]:
    """Claude Code's configuration folders: `~/.claude`, `$CLAUDE_CONFIG_DIR`, and the one
    the session's transcript lies in (`<config>/projects/<project>/<session>.jsonl`)."""
    dirs = [Path(env["CLAUDE_CONFIG_DIR"])] if env.get("CLAUDE_CONFIG_DIR") else []
    transcript = payload.get("transcript_path")
    if isinstance(transcript, str) and transcript.startswith("/") and \
            transcript.endswith(".jsonl"):
        parents = Path(transcript).parents
        if len(parents) > 2 and parents[1].name == "projects":
            dirs.append(parents[2])
    return dirs


def _own_roots(payload: Mapping[str, Any], data_dir: Path, homes: list[Path],
               env: Mapping[str, str]) -> list[Path]:
    roots = [data_dir, *(h / ".claude" / "projects" for h in homes),
             *(c / "projects" for c in _config_dirs(payload, env))]
    if env.get("SMART_ORCHESTRATOR_DB"):
        db = Path(env["SMART_ORCHESTRATOR_DB"])
        roots += [db, db.with_name(db.stem + ".witness"), db.with_name("witness.key")]
    return roots


def _passwd_home() -> str | None:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_dir
    except (KeyError, ImportError):
        return None


# -- what a call touches --------------------------------------------------------------------
_PATH_KEYS = ("file_path", "path", "notebook_path", "filePath")
# Tools that run what they are given: the key holding it, and how to read it.
_RUNS_CODE = {"Bash": ("command", "bash"), "Monitor": ("command", "bash"),
              "PowerShell": ("command", "powershell"), "REPL": ("code", "javascript"),
              "JavaScript": ("code", "javascript"), "Eval": ("code", "javascript")}
_WRITERS = frozenset({"Write", "Edit", "MultiEdit", "NotebookEdit"})


def check_tool_call(tool: str, tool_input: Mapping[str, Any], ctx: GuardContext) -> PathVerdict:
    home = ctx.homes[0] if ctx.homes else "/nonexistent"
    unresolved: str | None = None
    reveals: str | None = None
    runs = _RUNS_CODE.get(tool)
    if runs is not None:
        code = tool_input.get(runs[0])
        if not isinstance(code, str):
            return PathVerdict(None, None, f"its {runs[0]} is not a string", 0)
        resolution: ShellResolution = (
            resolve_command(code, ctx.cwd, ctx.env, home=home) if runs[1] == "bash"
            else resolve_code(runs[1], code, ctx.cwd, ctx.env, home=home))
        touches = list(resolution.touches)
        unresolved, reveals = resolution.unresolved, resolution.reveals
        controls, code_run, background = (resolution.controls, resolution.runs,
                                          resolution.background)
    else:
        touches, unresolved = _tool_touches(tool, tool_input, ctx, home)
        controls, code_run, background = None, None, False
    matcher = _Matcher(ctx)
    credential = reveals
    state_write = own = walked = None
    for touch in touches:
        if tool == "Write" and ENV_FILE.match(os.path.basename(touch.path)):
            pass  # writing a project's .env shows nothing of the one it replaces
        else:
            credential = credential or matcher.credential(touch)
        if touch.write and state_write is None:
            state_write = matcher.state(touch)
        own = own or matcher.own(touch, walks=False)
        walked = walked or matcher.own(touch)
    return PathVerdict(credential, state_write, unresolved, len(touches), own, controls,
                       None if own else walked, code_run, background)


def _tool_touches(tool: str, ti: Mapping[str, Any], ctx: GuardContext, home: str
                  ) -> tuple[list[Touch], str | None]:
    touches: list[Touch] = []
    for key in _PATH_KEYS:
        value = ti.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            return touches, f"its {key} is not a string"
        path = _absolute(value, ctx.cwd, home)
        if tool == "Glob":
            continue  # below, with the pattern
        walks = tool == "Grep" and (os.path.isdir(path) or not os.path.exists(path))
        touches.append(Touch(path, walks, tool in _WRITERS))
    url = ti.get("url")
    if isinstance(url, str) and url[:7].lower() == "file://":
        touches.append(Touch(_absolute(url[7:], ctx.cwd, home), False, False))
    if tool == "Grep" and ti.get("path") is None:
        touches.append(Touch(ctx.cwd, True, False))
    if tool == "Glob":
        pattern = ti.get("pattern")
        root = ti.get("path")
        if not isinstance(pattern, str) or not isinstance(root, str | None):
            return touches, "its pattern or path is not a string"
        base = _absolute(root, ctx.cwd, home) if root else ctx.cwd
        full = _absolute(pattern, base, home)
        touches.append(Touch(full, "**" in pattern, False, True))
        touches.append(Touch(os.path.realpath(base), "**" in pattern, False))
    return touches, None


def _absolute(value: str, cwd: str, home: str) -> str:
    if value == "~" or value.startswith("~/"):
        value = home + value[1:]
    value = re.sub(r"^\$(?:HOME\b|\{HOME\})", lambda _: home, value)
    return os.path.normpath(os.path.join(cwd, value))


# -- matching -------------------------------------------------------------------------------
class _Matcher:
    def __init__(self, ctx: GuardContext) -> None:
        self.homes = _both(ctx.homes)
        self.anchored = [(_segments(h) + _segments(rel), rel.endswith("/"), label)
                         for h in self.homes for rel, label in CREDENTIALS]
        self.relative = [(_segments(rel), rel.endswith("/"), label) for rel, label in CREDENTIALS]
        # A protected folder holds files of any name; a file has the one.
        self.state_roots = [(_segments(p), os.path.isdir(p))
                            for p in _both(ctx.write_protected)]
        self.own_roots = [_segments(p) for p in _both(ctx.read_protected)]
        self.own_walks = [_segments(p) for p in _both(ctx.walk_protected)]

    def credential(self, touch: Touch) -> str | None:
        if touch.pattern:
            return self._pattern_credential(touch)
        for form in _forms(touch.path):
            segs = _segments(form)
            label = self._path_credential(segs, touch.write)
            if label is None and touch.recursive:
                label = next((lb for target, _, lb in self.anchored
                              if _under(target, segs)), None)
            if label:
                return label
        return None

    def _path_credential(self, segs: list[str], write: bool) -> str | None:
        for rel, is_dir, label in self.relative:
            for k in range(len(segs) - len(rel) + 1):
                if segs[k:k + len(rel)] != rel:
                    continue
                rest = segs[k + len(rel):]
                if not is_dir and rest:
                    continue
                public = WRITABLE_PUBLIC_NAMES if write else PUBLIC_NAMES
                if is_dir and len(rest) == 1 and any(
                        fnmatch.fnmatchcase(rest[0], n) for n in public):
                    continue
                return label
        if segs and ENV_FILE.match(segs[-1]):
            return "a .env file"
        path = "/" + "/".join(segs)
        for pattern, label in ABSOLUTE_CREDENTIALS:
            if fnmatch.fnmatchcase(path, pattern):
                return label
        return None

    def _pattern_credential(self, touch: Touch) -> str | None:
        pat = _segments(touch.path)
        for target, is_dir, label in self.anchored:
            if _reach(pat, target, touch.recursive, is_dir):
                return label
        last = pat[-1] if pat else ""
        # A glob's `*` skips names that start with a dot unless the pattern spells the dot.
        if last.startswith(".") and any(fnmatch.fnmatchcase(n, last)
                                         for n in (".env", ".env.local", ".env.production")):
            return "a .env file"
        return None

    def state(self, touch: Touch) -> str | None:
        for form in _forms(touch.path):
            segs = _segments(form)
            for root, is_dir in self.state_roots:
                if touch.only and not is_dir and not any(
                        fnmatch.fnmatchcase(root[-1], n) for n in touch.only):
                    continue  # `find . -name '*.pyc' -delete` cannot reach it
                if _under(segs, root) or (touch.recursive and _under(root, segs)) or (
                        touch.pattern and _reach(segs, root, touch.recursive, True)):
                    return STATE_LABEL
        return None


    def own(self, touch: Touch, *, walks: bool = True) -> str | None:
        """Does the call reach the plugin's data or Claude Code's agent records, reading
        or writing, by any spelling, link or glob, or (`walks`) by walking a folder
        that holds them?"""
        walk = walks and touch.recursive
        for form in _forms(touch.path):
            segs = _segments(form)
            for root in self.own_roots:
                if _under(segs, root) or (walk and _under(root, segs)) or (
                        touch.pattern and _reach(segs, root, touch.recursive, True)):
                    return OWN_LABEL
            if walk and any(_under(root, segs) for root in self.own_walks):
                return OWN_LABEL
            for pattern in OWN_PATTERNS:
                if _contains(segs, pattern, touch.pattern):
                    return OWN_LABEL
            if _other_process_files(segs):
                return OWN_LABEL
        return None


def _other_process_files(segs: list[str]) -> bool:
    """`/proc/<pid>/fd/<n>` (past the standard streams), `map_files`, `mem`: the open
    files and memory of a process, the service's among them (its database, its key)."""
    if len(segs) < 3 or segs[0] != "proc":
        return False
    rest = segs[2:] if segs[2] != "task" else segs[4:]
    if not rest:
        return False
    if rest[0] == "fd":
        return len(rest) == 1 or rest[1] not in ("0", "1", "2")
    # `root` and `cwd` of another process are its view of the file system: Claude Code's
    # is the one without the veil.
    return rest[0] in ("map_files", "mem") or (
        rest[0] in ("root", "cwd") and segs[1] not in ("self", "thread-self"))


def _contains(segs: list[str], pattern: tuple[str, ...], is_glob: bool) -> bool:
    """`pattern` (one glob a segment) matches consecutive segments of `segs`; for a glob
    path, when a segment of it could match (both directions)."""
    n = len(pattern)
    for k in range(len(segs) - n + 1):
        if all(fnmatch.fnmatchcase(segs[k + i], pattern[i]) or
               (is_glob and fnmatch.fnmatchcase(pattern[i], segs[k + i]))
               for i in range(n)):
            return True
    return False


def _both(paths: Iterable[str]) -> list[str]:
    out: list[str] = []
    for p in paths:
        for form in _forms(p):
            if form not in out:
                out.append(form)
    return out


def _forms(path: str) -> list[str]:
    """The path as spelled and as the file system resolves it (symlinks, `..`)."""
    try:
        real = os.path.realpath(path)
    except (OSError, ValueError):
        return [path]
    return [path] if real == path else [path, real]


def _segments(path: str) -> list[str]:
    # Compared case-insensitively: on macOS ~/.SSH/id_rsa is ~/.ssh/id_rsa.
    return [s for s in path.lower().split("/") if s and s != "."]


def _under(path: list[str], root: list[str]) -> bool:
    return path[:len(root)] == root


def _reach(pat: list[str], target: list[str], recursive: bool, target_is_dir: bool) -> bool:
    """Can a path the glob `pat` matches be `target`, lie under it (a folder), or, when
    walked recursively, hold it?"""
    if not pat:
        return recursive or not target
    if not target:
        return target_is_dir
    if pat[0] == "**":
        return _reach(pat[1:], target, recursive, target_is_dir) or \
            _reach(pat, target[1:], recursive, target_is_dir)
    if fnmatch.fnmatchcase(target[0], pat[0]):
        return _reach(pat[1:], target[1:], recursive, target_is_dir)
    return False
