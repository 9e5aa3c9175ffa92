"""The policy file: built-in defaults, an optional preset, then the project's file.

`.claude/smart-orchestrator.toml` in the project (or `$SMART_ORCHESTRATOR_POLICY`) is
untrusted input, validated by pydantic with unknown keys rejected by name. The types are
plain NamedTuples (cheaper to define than dataclasses, which counts at hook start) so
that a hook process can use them without importing pydantic (~100 ms): pydantic runs
only when the file changed, and the validated result is cached under the file's sha256.
A cached entry is used only when it agrees value for value with the file parsed again
(tomllib, no pydantic), so editing the cache cannot change what a file means.
What the file says is a proposal: `policy/trust.py` decides what is in force.
Every effective value remembers where it came from, for `/smart-orchestrator:policy`.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NamedTuple

from .. import __version__
from ..errors import ConfigError

if TYPE_CHECKING:
    # Annotations stay strings until pydantic validates a changed file; `_validate` imports
    # these then, so hook processes that hit the cache never pay for them.
    from annotated_types import Ge, Gt, Le

__all__ = ["MAX_POLICY_BYTES", "POLICY_RELPATH", "PRESETS", "SECTIONS", "PolicyConfig",
           "build_policy", "config_digest", "config_from_values", "config_values",
           "load_policy", "merge_layers", "policy_path", "read_policy_bytes"]

Mode = Literal["enforce", "warn", "off"]
OnError = Literal["deny", "allow"]
Severity = Literal["low", "medium", "high", "critical"]
POLICY_RELPATH = Path(".claude") / "smart-orchestrator.toml"


class PromptPolicy(NamedTuple):
    mode: Mode = "enforce"
    on_error: OnError = "deny"            # what a crash inside this check decides
    max_chars: Annotated[int, Ge(1)] = 100_000
    min_chars: Annotated[int, Ge(0)] = 1
    required_fields: tuple[str, ...] = ("prompt", "description")
    injection: Mode = "enforce"
    injection_deny_severity: Severity = "high"


class SecretsPolicy(NamedTuple):
    mode: Mode = "enforce"
    on_error: OnError = "deny"
    action: Literal["deny", "redact"] = "deny"
    baseline: str | None = None           # detect-secrets baseline, project-relative
    # The sha256 of the baseline the user confirmed (`policy accept`); never from the file.
    # A baseline with other bytes allowlists nothing in prompts and outputs.
    baseline_sha256: str | None = None


class AdmissionPolicy(NamedTuple):
    mode: Mode = "enforce"
    on_error: OnError = "deny"
    max_in_flight_session: Annotated[int, Ge(1)] = 4
    max_in_flight_machine: Annotated[int, Ge(1)] = 8
    min_available_memory_mb: Annotated[int, Ge(0)] = 1024
    max_load_percent: Annotated[float, Gt(0)] = 1000.0  # 1-minute load per core, percent
    spawns_per_minute: Annotated[int, Ge(1)] = 30
    max_depth: Annotated[int, Ge(1)] = 2
    wait_timeout_s: Annotated[float, Ge(0), Le(3600)] = 30.0
    lease_ttl_s: Annotated[float, Gt(0)] = 3 * 3600.0


class BreakerPolicy(NamedTuple):
    mode: Mode = "enforce"
    on_error: OnError = "deny"
    failure_threshold: Annotated[int, Ge(1)] = 3
    window_s: Annotated[float, Gt(0)] = 300.0
    cooldown_s: Annotated[float, Gt(0)] = 900.0


class OutputPolicy(NamedTuple):
    mode: Mode = "enforce"
    on_error: OnError = "deny"
    secrets: Mode = "enforce"
    injection: Mode = "warn"


class ToolsPolicy(NamedTuple):
    mode: Mode = "enforce"
    on_error: OnError = "deny"
    deny_credential_reads: bool = True
    deny_state_writes: bool = True        # the plugin's state, policy, hooks and settings
    # The data folder (the audit key) and Claude Code's agent transcripts and task outputs,
    # for every agent, the main one included.
    deny_state_reads: bool = True
    unresolvable: OnError = "deny"        # a Bash line whose paths cannot be resolved
    # The main agent's Bash lines that the path check cannot decide (built paths, scripts,
    # walks over a folder holding the data folder) run with those folders hidden
    # (`policy/veil.py`): "auto" those lines, "all" every line, "off" none.
    veil: Literal["off", "auto", "all"] = "auto"


class SurfacesPolicy(NamedTuple):
    """Agents started other ways than the Agent tool (Workflow scripts, SendMessage)."""
    mode: Mode = "enforce"
    on_error: OnError = "deny"
    # A tool call that would start agents the checks cannot see (a workflow whose prompts
    # or agent count are computed at runtime, a saved or on-disk workflow, a fork whose
    # inherited conversation cannot be read): deny it, or allow it with an audit row.
    unchecked_agents: Literal["deny", "allow"] = "deny"
    # The most conversation text a fork may inherit and still be scanned (over it: unchecked).
    max_fork_context_mb: Annotated[int, Ge(1)] = 64


class BudgetPolicy(NamedTuple):
    """Dollar caps on agents (docs/budgets.md). A cap of None is no cap; each cap has its
    own mode, under the section's."""
    mode: Mode = "enforce"
    on_error: OnError = "deny"
    session_usd: Annotated[float, Ge(0)] | None = None   # the session's agents, ever
    day_usd: Annotated[float, Ge(0)] | None = None       # this machine's agents, per UTC day
    project_usd: Annotated[float, Ge(0)] | None = None   # the project's agents, per UTC day
    team_usd: Annotated[float, Ge(0)] | None = None      # everyone's in the store, per UTC day
    session_mode: Mode = "enforce"
    day_mode: Mode = "enforce"
    project_mode: Mode = "enforce"
    team_mode: Mode = "enforce"
    # What an agent is expected to use when no similar one has run before.
    default_estimate_tokens: Annotated[int, Ge(1)] = 30_000
    # A wave preview above this many dollars asks the user to confirm.
    confirm_above_usd: Annotated[float, Ge(0)] = 1.0
    # New agents wait out a 429/529/overloaded reply any agent got.
    rate_limit: Mode = "enforce"
    max_backoff_s: Annotated[float, Gt(0), Le(3600)] = 300.0


class PolicyConfig(NamedTuple):
    preset: Literal["default", "strict", "permissive"] = "default"
    prompt: PromptPolicy = PromptPolicy()
    secrets: SecretsPolicy = SecretsPolicy()
    admission: AdmissionPolicy = AdmissionPolicy()
    breaker: BreakerPolicy = BreakerPolicy()
    output: OutputPolicy = OutputPolicy()
    tools: ToolsPolicy = ToolsPolicy()
    surfaces: SurfacesPolicy = SurfacesPolicy()
    budget: BudgetPolicy = BudgetPolicy()
    # Where each effective value came from: "section.key" -> "default" | "preset:X" | path.
    # Filled in by the loader, never read from the file.
    sources: dict[str, str] | None = None


SECTIONS: dict[str, type[Any]] = {name: type(default) for name, default
                                  in PolicyConfig._field_defaults.items()
                                  if name not in ("preset", "sources")}

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "default": {},
    # The original plan's policy: short, single-purpose subagent prompts.
    "strict": {"prompt": {"max_chars": 500, "injection_deny_severity": "medium"},
               "admission": {"max_in_flight_session": 2, "max_in_flight_machine": 4}},
    # Record everything, block nothing: a baseline before enforcing.
    "permissive": {section: {"mode": "warn"} for section in SECTIONS},
}


def policy_path(project_dir: Path | None = None) -> Path:
    from ..session import current

    session = current()  # the session's own $SMART_ORCHESTRATOR_POLICY, in the service too
    if session.policy_file is not None:
        return session.policy_file
    return (project_dir or session.project_dir) / POLICY_RELPATH


MAX_POLICY_BYTES = 1 << 20


def read_policy_bytes(path: Path) -> bytes | None:
    """The file's bytes, or None when there is none (a dangling symlink counts as none).

    A FIFO, a device or an endless file in its place would hang or exhaust every hook that
    reads it, and a hook that times out lets the call through: only a regular file of a
    sane size is read, without blocking.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read policy file {path}: {exc.strerror}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"policy file {path} is not a regular file")
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_POLICY_BYTES:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise ConfigError(f"cannot read policy file {path}: {exc.strerror}") from exc
    finally:
        os.close(fd)
    if size > MAX_POLICY_BYTES:
        raise ConfigError(f"policy file {path} is larger than {MAX_POLICY_BYTES} bytes")
    return b"".join(chunks)


def load_policy(path: Path | None = None, *, cache_dir: Path | None = None) -> PolicyConfig:
    """Defaults < preset < file. A missing file is fine; a bad one is a ConfigError."""
    path = path or policy_path()
    data = read_policy_bytes(path)
    if data is None:
        return _with_default_sources(PolicyConfig(), {})
    import hashlib
    import tomllib

    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"policy file {path} is not valid TOML: {exc}") from exc
    merged, sources = merge_layers(raw, str(path))
    # Keyed by content, and a hit must agree value for value with the file just parsed:
    # an edited cache can at most claim that this file's own values passed validation.
    key = [hashlib.sha256(data).hexdigest(), __version__, os.stat(__file__).st_mtime_ns]
    cached = _read_cache(cache_dir, key)
    if cached is not None and _agrees(cached, merged):
        return _with_default_sources(cached, sources)
    config = _with_default_sources(_validate(merged, str(path)), sources)
    _write_cache(cache_dir, key, config)
    return config


def build_policy(raw: dict[str, Any], origin: str) -> PolicyConfig:
    merged, sources = merge_layers(raw, origin)
    return _with_default_sources(_validate(merged, origin), sources)


def merge_layers(raw: dict[str, Any], origin: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The preset's values under the file's, unvalidated, and where each came from."""
    preset = raw.get("preset", "default")
    if preset not in PRESETS:
        raise ConfigError(f"policy file {origin}: preset must be one of "
                          f"{', '.join(PRESETS)}, not {preset!r}")
    merged: dict[str, Any] = {"preset": preset}
    sources: dict[str, str] = {}
    for layer, name in ((PRESETS[preset], f"preset:{preset}"), (raw, origin)):
        for section, values in layer.items():
            if section in ("preset", "gates"):  # gates has its own loader
                continue
            if section not in SECTIONS:
                raise ConfigError(f"policy file {origin}: unknown section [{section}]",
                                  hint=f"known: {', '.join(SECTIONS)}, gates")
            if not isinstance(values, dict):
                raise ConfigError(f"policy file {origin}: [{section}] must be a table")
            if section == "secrets" and "baseline_sha256" in values:
                raise ConfigError(f"policy file {origin}: secrets.baseline_sha256 is recorded "
                                  "by `smart-orchestrator policy accept`, not set in the file")
            merged.setdefault(section, {}).update(values)
            sources.update({f"{section}.{key}": name for key in values})
    return merged, sources


def _validate(merged: dict[str, Any], origin: str) -> PolicyConfig:
    import annotated_types
    from pydantic import TypeAdapter, ValidationError

    globals().update(Ge=annotated_types.Ge, Gt=annotated_types.Gt, Le=annotated_types.Le)

    try:
        config: PolicyConfig = TypeAdapter(PolicyConfig).validate_python(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"policy file {origin}: {key}: {first['msg']}",
                          hint=f"{exc.error_count()} problem(s); the keys are listed in "
                          "docs/policy.md") from exc
    return config


def _with_default_sources(config: PolicyConfig, sources: dict[str, str]) -> PolicyConfig:
    for section in SECTIONS:
        for name in getattr(config, section)._fields:
            sources.setdefault(f"{section}.{name}", "default")
    return config._replace(sources=sources)


# -- the validated-config cache ------------------------------------------------------
def _cache_file(cache_dir: Path | None) -> Path | None:
    if cache_dir is None:
        from ..paths import data_dir

        cache_dir = data_dir()
    return cache_dir / "policy-cache.json"


def config_values(config: PolicyConfig) -> dict[str, Any]:
    """The config as plain JSON values, without `sources`."""
    values = {name: (value._asdict() if hasattr(value, "_asdict") else value)
              for name, value in config._asdict().items()}
    values.pop("sources", None)
    return values


def config_from_values(values: Any) -> PolicyConfig:
    """Rebuild what `config_values` wrote (a cache or the store); KeyError/TypeError if
    the shape is not this version's."""
    # Pins and trust rows written before budgets existed hold no budget section: theirs
    # is the default one.
    values = {"budget": {}, **values} if isinstance(values, dict) else values
    sections = {name: cls(**{k: tuple(v) if isinstance(v, list) else v
                             for k, v in values[name].items()})
                for name, cls in SECTIONS.items()}
    return PolicyConfig(preset=values["preset"], **sections)


def config_digest(config: PolicyConfig) -> str:
    from ..canonical import canonical_json, sha256_hex

    return sha256_hex(canonical_json(config_values(config)))


def _agrees(config: PolicyConfig, merged: dict[str, Any]) -> bool:
    if config.preset != merged.get("preset"):
        return False
    for section, cls in SECTIONS.items():
        given = merged.get(section, {})
        current = getattr(config, section)
        if not set(given) <= set(cls._fields):
            return False
        for name in cls._fields:
            expected = given[name] if name in given else cls._field_defaults[name]
            if _typed(expected) != _typed(getattr(current, name)):
                return False
    return True


def _typed(value: Any) -> Any:
    # bool is an int to ==; a float limit that pydantic made from an int compares equal.
    if isinstance(value, (list, tuple)):
        return ("seq", tuple(_typed(v) for v in value))
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return (type(value).__name__, value)
    if isinstance(value, (int, float)):
        return ("num", value)
    return ("other", repr(value))


def _read_cache(cache_dir: Path | None, key: list[Any]) -> PolicyConfig | None:
    path = _cache_file(cache_dir)
    try:
        data = json.loads(path.read_text()) if path else None
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("key") != key:
        return None
    try:
        return config_from_values(data["config"])
    except (KeyError, TypeError, AttributeError):
        return None  # written by another version: validate again


def _write_cache(cache_dir: Path | None, key: list[Any], config: PolicyConfig) -> None:
    path = _cache_file(cache_dir)
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps({"key": key, "config": config_values(config)}))
        os.replace(tmp, path)
    except OSError:
        pass  # a cache that cannot be written only costs the next hook a validation
