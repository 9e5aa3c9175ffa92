"""What confirming a policy file means, shared by the two channels that may confirm it.

A weakening of the policy, or a secrets baseline, reaches new sessions only when a person
confirms it: in Claude Code's own dialog (an MCP elicitation the `policy_accept` tool
asks for) or at a terminal of their own (`smart-orchestrator policy accept`). Both show
the same `Proposal`: the file as it is now, validated afresh, against the trusted policy.

An elicitation is only a person's answer when nothing configured can answer it instead:
Claude Code runs `Elicitation` hooks before its dialog (a hook may accept) and
`ElicitationResult` hooks after it (a hook may turn a refusal into an acceptance). The
model can write such a hook into a settings file, so `answering_hooks` lists every place
one is configured, and neither channel accepts while any is.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import re
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import ConfigError, OrchestratorError
from .config import PolicyConfig, build_policy, config_digest, read_policy_bytes
from .pinning import weaker_keys

if TYPE_CHECKING:
    from ..store.base import WitnessedStore

__all__ = ["Proposal", "answering_hooks", "baseline_sha", "prepare"]

HOOK_EVENTS = frozenset({"elicitation", "elicitationresult"})
_MAX_FILE = 4 << 20
_MAX_PLUGIN_FILES = 4000
_FRONTMATTER = re.compile(rb"\A---\s*\n(.*?)\n---", re.S)
_HOOK_WORD = re.compile(rb"elicitation", re.I)


class Proposal(NamedTuple):
    project: Path
    path: Path
    config: PolicyConfig          # the file as it is now, validated afresh (no cache)
    digest: str                   # of `config`: what is confirmed
    before: str | None            # the trusted policy's digest (None: nothing trusted yet)
    weakened: tuple[str, ...]     # keys weaker than the trusted policy (or the defaults)
    baseline_sha256: str | None   # the secrets baseline's bytes, if there is one

    def changes_nothing(self, trusted_baseline: str | None) -> bool:
        return self.before == self.digest and self.baseline_sha256 == trusted_baseline

    def lines(self) -> list[str]:
        against = "the trusted policy" if self.before else "the built-in defaults"
        return [
            f"Project: {self.project}",
            f"Policy file: {self.path}",
            f"Trusted now: {self.before[:12] if self.before else 'nothing (defaults)'}"
            f" -> proposed: {self.digest[:12]}",
            f"Weakens against {against}: "
            + (", ".join(self.weakened) if self.weakened else "nothing"),
            (f"Secrets baseline: sha {self.baseline_sha256[:12]} (the secrets it lists "
             "will pass subagent prompts and outputs)") if self.baseline_sha256
            else "Secrets baseline: none",
        ]


def prepare(store: WitnessedStore, project: Path, path: Path) -> Proposal:
    """The file at `path` as a proposal, or an OrchestratorError saying why there is none."""
    from .trust import trusted

    config = _parse_fresh(path)
    baseline = baseline_sha(config, project)
    if baseline is not None:
        _check_baseline(config, project)
    trust = trusted(store, project)
    reference = trust.config if trust else PolicyConfig()
    weaker = weaker_keys(reference, config._replace(secrets=config.secrets._replace(
        baseline_sha256=reference.secrets.baseline_sha256)))
    digest = config_digest(config._replace(secrets=config.secrets._replace(
        baseline_sha256=baseline), sources=None))
    return Proposal(project, path, config, digest, trust.digest if trust else None,
                    weaker, baseline)


def _parse_fresh(path: Path) -> PolicyConfig:
    """Validated from the file's bytes: what is confirmed never comes from a cache."""
    try:
        data = read_policy_bytes(path)
        if data is None:
            return build_policy({}, str(path))
        try:
            raw = tomllib.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"policy file {path} is not valid TOML: {exc}") from exc
        return build_policy(raw, str(path))
    except ConfigError as exc:
        raise OrchestratorError(f"nothing to accept: {exc.one_line()}") from exc


def baseline_sha(config: PolicyConfig, project: Path) -> str | None:
    name = config.secrets.baseline or ".secrets.baseline"
    path = Path(name) if Path(name).is_absolute() else project / name
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
    except OSError:
        return None


def _check_baseline(config: PolicyConfig, project: Path) -> None:
    from .checks import load_allowlist

    try:
        load_allowlist(config.secrets, project)
    except (OSError, ValueError) as exc:
        raise OrchestratorError(f"the secrets baseline cannot be accepted: {exc}") from exc


# -- hooks that could answer an elicitation ------------------------------------------------
def answering_hooks(project: Path, *, home: Path | None = None,
                    claude_pid: int | None = None,
                    managed: tuple[Path, ...] = (Path("/etc/claude-code"),
                                                 Path("/Library/Application Support/ClaudeCode"))
                    ) -> list[str]:
    """Every configured place that gives Claude Code an `Elicitation` or
    `ElicitationResult` hook, as `path` (or `path: why`). A file that cannot be read
    counts as one: fail closed."""
    home = home or Path.home()
    found: list[str] = []
    for path in _settings_files(project, home, claude_pid, managed):
        if (why := _file_answers(path)) is not None:
            found.append(f"{path}{': ' + why if why else ''}")
    for text, origin in _inline_settings(claude_pid):
        if _json_answers(text):
            found.append(origin)
    return found


def _settings_files(project: Path, home: Path, claude_pid: int | None,
                    managed: tuple[Path, ...]) -> list[Path]:
    config_homes = [home / ".claude"]
    bases = [project]
    args: list[str] = []
    if claude_pid:
        env = _proc_env(claude_pid)
        if env.get("CLAUDE_CONFIG_DIR"):
            config_homes.append(Path(env["CLAUDE_CONFIG_DIR"]).expanduser())
        with contextlib.suppress(OSError):
            bases.append(Path(f"/proc/{claude_pid}/cwd").resolve())
        args = _proc_args(claude_pid)
    files: list[Path] = []
    for base in dict.fromkeys(managed):
        files += [base / "managed-settings.json", *_glob(base / "managed-settings.d", "*.json")]
    for conf in dict.fromkeys(config_homes):
        files += [conf / "settings.json", conf / "settings.local.json"]
        files += _markdown(conf)
        files += _plugin_files(conf / "plugins")
    for base in dict.fromkeys(bases):
        files += [base / ".claude" / "settings.json", base / ".claude" / "settings.local.json"]
        files += _markdown(base / ".claude")
    for flag, value in _flags(args):
        if flag == "--settings" and not value.lstrip().startswith("{"):
            files.append(Path(value).expanduser())
        elif flag == "--plugin-dir":
            files += _plugin_files(Path(value).expanduser())
    return [f for f in dict.fromkeys(files) if f.exists() or f.is_symlink()]


def _inline_settings(claude_pid: int | None) -> list[tuple[str, str]]:
    args = _proc_args(claude_pid) if claude_pid else []
    return [(value, "--settings (inline JSON)") for flag, value in _flags(args)
            if flag == "--settings" and value.lstrip().startswith("{")]


def _markdown(conf: Path) -> list[Path]:
    # Skills, agents and commands may carry hooks in their frontmatter.
    return [*_glob(conf / "skills", "*/SKILL.md"), *_glob(conf / "agents", "*.md"),
            *_glob(conf / "commands", "*.md")]


def _plugin_files(root: Path) -> list[Path]:
    """Hook files of installed or loaded plugins: hooks/*.json, plugin manifests, and
    their skills' and agents' frontmatter."""
    out: list[Path] = []
    if not root.is_dir():
        return out
    for pattern in ("**/hooks/*.json", "**/.claude-plugin/plugin.json", "**/skills/*/SKILL.md",
                    "**/agents/*.md", "**/commands/*.md", "**/settings.json"):
        for path in _glob(root, pattern):
            out.append(path)
            if len(out) >= _MAX_PLUGIN_FILES:
                return out
    return out


def _glob(base: Path, pattern: str) -> list[Path]:
    try:
        return sorted(base.glob(pattern)) if base.is_dir() else []
    except OSError:
        return []


def _file_answers(path: Path) -> str | None:
    """'' when the file configures an elicitation hook, a reason when it cannot be
    told, None when it does not."""
    try:
        with path.open("rb") as fh:
            data = fh.read(_MAX_FILE + 1)
    except OSError as exc:
        return f"unreadable ({exc.strerror})"
    if len(data) > _MAX_FILE:
        return "too large to check"
    if path.suffix == ".md":
        head = _FRONTMATTER.match(data)
        return "" if head and _HOOK_WORD.search(head.group(1)) else None
    try:
        return "" if _json_answers(data.decode("utf-8")) else None
    except UnicodeDecodeError:
        return "not UTF-8" if _HOOK_WORD.search(data) else None


def _json_answers(text: str) -> bool:
    try:
        value = json.loads(text)
    except ValueError:
        # Not JSON to us; whatever reads it must not find such a hook in it either.
        return bool(_HOOK_WORD.search(text.encode("utf-8", "replace"))) or "\\u" in text
    return _has_hook_key(value)


def _has_hook_key(value: Any, depth: int = 0) -> bool:
    if depth > 64:
        return True
    if isinstance(value, dict):
        return any((isinstance(k, str) and k.replace("_", "").casefold() in HOOK_EVENTS)
                   or _has_hook_key(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_hook_key(v, depth + 1) for v in value)
    return False


def _flags(args: list[str]) -> list[tuple[str, str]]:
    """(flag, value) pairs, `--flag value` and `--flag=value` alike."""
    split = [tuple(a.split("=", 1)) for a in args if a.startswith("--") and "=" in a]
    return [*itertools.pairwise(args), *((f, v) for f, v in split)]


def _proc_args(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]


def _proc_env(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.decode("utf-8", "replace").partition("=") for item in raw.split(b"\0"))
    return {k: v for k, _, v in pairs if k}
