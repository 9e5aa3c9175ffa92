"""`smart-orchestrator policy [--json]` and `smart-orchestrator policy accept`.

`policy` shows the policy in force for this project's current (or last) session, where
each value comes from, and any weakening the file proposes that nobody has confirmed.
`policy accept` is the only way a weakening, or a secrets baseline, reaches new sessions:
a person confirms it at a terminal. The model drives Claude Code's Bash tool, which has
no controlling terminal (its commands run in a session of their own), so
`/dev/tty` cannot be opened there; a terminal the model makes for itself (`script`,
`expect`, a pty in Python) is refused because Claude Code is among its ancestors.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import OrchestratorError

if TYPE_CHECKING:
    from .policy.config import PolicyConfig
    from .store.base import WitnessedStore

    Sub = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = ["claude_ancestor", "pin_session", "register_policy_command"]

# Set by Claude Code in every process it starts (hooks, MCP servers, Bash commands).
_CLAUDE_VARS = (b"CLAUDECODE=", b"CLAUDE_CODE_SESSION_ID=", b"CLAUDE_CODE_ENTRYPOINT=")


def register_policy_command(sub: Sub) -> None:
    policy = sub.add_parser("policy", help="the policy in force and where each value came "
                            "from; `accept` confirms a weaker policy file")
    policy.add_argument("--json", action="store_true")
    policy.set_defaults(fn=_cmd_policy)
    psub = policy.add_subparsers(dest="policy_command")
    accept = psub.add_parser("accept", help="confirm, at a terminal, the policy file and "
                             "secrets baseline as they are now (for new sessions)")
    accept.set_defaults(fn=_cmd_accept)


def pin_session(stdin: Any) -> None:
    """Pin the policy of the session a SessionStart hook payload names (nothing else).

    Later hooks pin it anyway on the session's first event; doing it here closes the gap
    before the model's first tool call, which may be one no hook sees.
    """
    if stdin is None or stdin.isatty():
        return
    try:
        payload = json.loads(stdin.buffer.read(1 << 20) or b"{}")
    except (ValueError, OSError, RecursionError):
        return
    session = payload.get("session_id") if isinstance(payload, dict) else None
    if payload.get("hook_event_name") != "SessionStart" or not isinstance(session, str) \
            or not session:
        return
    from .policy import EngineFactory
    from .store import open_store

    try:
        store = open_store()
        try:
            EngineFactory(store, source="session-start").get(session)
        finally:
            store.close()
    except Exception as exc:  # not the gate: the session's first checked event pins too
        print(f"smart-orchestrator: could not pin the session's policy: {exc}",
              file=sys.stderr)


# -- what is in force ----------------------------------------------------------------------
def _project() -> Path:
    return Path(os.environ.get("CLAUDE_PROJECT_DIR") or os.getcwd())


def _proposal(path: Path, *, cached: bool = True
              ) -> tuple[PolicyConfig | None, str | None]:
    """The file's policy. What is accepted is validated afresh, never taken from a cache."""
    import tomllib

    from .errors import ConfigError
    from .policy.config import build_policy, load_policy, read_policy_bytes

    try:
        if cached:
            return load_policy(path), None
        data = read_policy_bytes(path)
        if data is None:
            return build_policy({}, str(path)), None
        try:
            raw = tomllib.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"policy file {path} is not valid TOML: {exc}") from exc
        config: PolicyConfig = build_policy(raw, str(path))
        return config, None
    except ConfigError as exc:
        return None, exc.one_line()


def _open_readonly(db: str | None) -> WitnessedStore | None:
    from .errors import StoreError
    from .store import open_store

    try:
        return open_store(db, readonly=True)
    except StoreError:
        return None  # nothing recorded yet: defaults and the file, as a first session would


def _cmd_policy(args: argparse.Namespace) -> int:
    from .policy.config import PolicyConfig, policy_path
    from .policy.pinning import merge_stronger
    from .policy.trust import in_force_sources, latest_pin, trusted

    project, path = _project(), policy_path()
    proposed, error = _proposal(path)
    store = _open_readonly(args.db)
    trust = trusted(store, project) if store else None
    pin = latest_pin(store, project) if store else None
    base = pin[1] if pin else (trust.config if trust else None)
    origin = trust.origin if trust else "first-use"
    if base is None:  # never seen: the next session trusts the file as it is
        in_force = proposed or PolicyConfig()
        weakened: tuple[str, ...] = ()
    else:
        proposal = (proposed or base)._replace(secrets=(proposed or base).secrets._replace(
            baseline_sha256=base.secrets.baseline_sha256))
        merged = merge_stronger(base, proposal)
        in_force, weakened = merged.config, merged.weakened
    sources = in_force_sources(in_force, proposed, f"pinned:{origin}")
    pending = _pending(trust.config if trust else None, proposed, project, in_force)
    report = {
        "project": str(project), "file": str(path), "exists": path.exists(),
        "file_error": error, "session": pin[0] if pin else None,
        "pinned_digest": pin[2] if pin else None, "trust": origin if trust else None,
        "trusted_digest": trust.digest if trust else None, "preset": in_force.preset,
        "values": {key: {"value": value, "source": sources.get(key, "")}
                   for key, value in _rows(in_force)},
        "not_honoured_in_session": list(weakened), "pending": pending,
    }
    if args.json:
        print(json.dumps(report, default=list, indent=2))
    else:
        _print_report(report)
    return 0


def _pending(trusted_config: PolicyConfig | None, proposed: PolicyConfig | None,
             project: Path, in_force: PolicyConfig) -> dict[str, Any]:
    """What the file and the baseline propose that new sessions will not get unconfirmed."""
    from .policy.pinning import weaker_keys

    out: dict[str, Any] = {"weakened": [], "baseline_sha256": None}
    if trusted_config is not None and proposed is not None:
        out["weakened"] = list(weaker_keys(trusted_config, proposed._replace(
            secrets=proposed.secrets._replace(
                baseline_sha256=trusted_config.secrets.baseline_sha256))))
    found = _baseline_sha(proposed or in_force, project)
    confirmed = trusted_config.secrets.baseline_sha256 if trusted_config else None
    if found is not None and found != confirmed:
        out["baseline_sha256"] = found
    return out


def _rows(config: PolicyConfig) -> list[tuple[str, Any]]:
    from .policy.config import SECTIONS

    return [(f"{section}.{name}", value) for section in SECTIONS
            for name, value in getattr(config, section)._asdict().items()]


def _print_report(r: dict[str, Any]) -> None:
    print(f"Policy file: `{r['file']}`" + ("" if r["exists"] else " (not present: defaults)"))
    if r["file_error"]:
        print(f"**The file is invalid** (subagent calls are denied): {r['file_error']}")
    if r["session"]:
        print(f"In force for session `{r['session']}` (pinned {r['pinned_digest'][:12]}, "
              f"trusted policy from {r['trust']})")
    else:
        print("No session recorded for this project yet: the next one trusts the file "
              "as it is (first use)")
    print(f"Preset: {r['preset']}\n")
    print("| setting | value | from |\n|---|---|---|")
    for key, entry in r["values"].items():
        value = entry["value"]
        shown = ", ".join(value) if isinstance(value, tuple) else value
        print(f"| {key} | {shown} | {entry['source']} |")
    if r["not_honoured_in_session"]:
        print("\nNot honoured in that session (weaker than its pinned policy): "
              + ", ".join(r["not_honoured_in_session"]))
    pending = r["pending"]
    if pending["weakened"] or pending["baseline_sha256"]:
        what = ", ".join(pending["weakened"])
        if pending["baseline_sha256"]:
            what += (", " if what else "") + "an unconfirmed secrets baseline"
        print(f"\nPending, unconfirmed: {what}. New sessions keep the trusted policy until "
              "a person confirms it (the `policy_accept` tool's dialog in Claude Code, or "
              "`smart-orchestrator policy accept` in a terminal of their own).")


def _baseline_sha(config: PolicyConfig, project: Path) -> str | None:
    from .policy.acceptance import baseline_sha

    return baseline_sha(config, project)


# -- accept --------------------------------------------------------------------------------
def _cmd_accept(args: argparse.Namespace) -> int:
    from .policy.acceptance import answering_hooks, prepare
    from .policy.config import policy_path
    from .policy.trust import accept
    from .store import open_store

    tty = _confirmation_terminal()
    project, path = _project(), policy_path()
    try:
        hooks = answering_hooks(project)
        if hooks:
            raise OrchestratorError(_HOOKS_REFUSAL + hooks[0])
        store = open_store(args.db)
        try:
            proposal = prepare(store, project, path)
            answer = _ask(tty, "\n".join(proposal.lines()) + f"\nType {proposal.digest[:6]} "
                          "to trust this for new sessions, anything else to cancel: ")
            if answer.strip() != proposal.digest[:6]:
                print("Cancelled: nothing changed.")
                return 1
            new, _ = accept(store, project, proposal.config, proposal.baseline_sha256,
                            channel=f"tty:{_tty_name()}")
        finally:
            store.close()
    finally:
        os.close(tty)
    print(f"Accepted {new[:12]}: new sessions of {project} start with it.")
    return 0


_HOOKS_REFUSAL = ("`policy accept` refuses while a hook could answer for you (an Elicitation "
                  "or ElicitationResult hook, which any settings file can add): ")


def _tty_name() -> str:
    for stream in (sys.stdin, sys.stdout):
        try:
            return os.ttyname(stream.fileno())
        except (OSError, ValueError, AttributeError):
            continue
    return "/dev/tty"


def _ask(tty: int, prompt: str) -> str:
    os.write(tty, prompt.encode())
    data = b""
    while not data.endswith(b"\n") and len(data) < 256:
        chunk = os.read(tty, 256)
        if not chunk:
            break
        data += chunk
    return data.decode("utf-8", "replace")


def _confirmation_terminal() -> int:
    """The controlling terminal of a person, or an OrchestratorError saying why not."""
    ancestor = claude_ancestor(os.getpid()) or claude_in_tree(os.getpid())
    if ancestor is not None:
        raise OrchestratorError(
            f"`policy accept` refuses to run under Claude Code (process {ancestor}): run it "
            "yourself in a terminal of your own, not through the assistant")
    if not sys.stdin.isatty():
        raise OrchestratorError("`policy accept` reads its answer from a person at a terminal:"
                                " its standard input is not one")
    try:
        fd = os.open("/dev/tty", os.O_RDWR | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise OrchestratorError("`policy accept` needs a person at a terminal and this "
                                f"process has none (/dev/tty: {exc.strerror})") from exc
    leader = _session_leader(fd)
    found = (claude_ancestor(leader) or claude_in_tree(leader)) if leader else None
    if found is not None:
        os.close(fd)
        raise OrchestratorError(f"this terminal was made under Claude Code (process {found})")
    return fd


def claude_in_tree(pid: int) -> int | None:
    """The first of `pid` and its ancestors (psutil's walk, also where there is no /proc)
    that is Claude Code or was started by it."""
    import psutil

    try:
        chain = [psutil.Process(pid)]
        chain += chain[0].parents()
    except psutil.Error:
        return None
    # A double fork leaves its parent for init but keeps the session it was started in
    # (Claude Code's Bash tool gives each command one): that session's leader counts.
    leaders = []
    for proc in chain:
        with contextlib.suppress(OSError):
            sid = os.getsid(proc.pid)
            if sid > 1 and sid not in {p.pid for p in chain}:
                with contextlib.suppress(psutil.Error):
                    leader = psutil.Process(sid)
                    leaders += [leader, *leader.parents()]
    for proc in [*chain, *leaders]:
        names: set[str] = set()
        environ: dict[str, str] = {}
        with contextlib.suppress(psutil.Error):
            names = {proc.name(), Path(proc.exe() or "").name,
                     Path((proc.cmdline() or [""])[0]).name}
        with contextlib.suppress(psutil.Error):  # another user's process (init, sshd)
            environ = proc.environ()
        if "claude" in names or any(v.decode()[:-1] in environ for v in _CLAUDE_VARS):
            return int(proc.pid)
    return None


def _session_leader(fd: int) -> int | None:
    """The process that owns the terminal's session (a `script` under Claude Code would)."""
    import fcntl
    import struct
    import termios

    # Python's termios does not export TIOCGSID; this is its value on Linux.
    request = getattr(termios, "TIOCGSID", 0x5429 if sys.platform == "linux" else None)
    if request is None:
        return None
    try:
        raw = fcntl.ioctl(fd, request, b"\0\0\0\0")
    except OSError:
        return None
    sid: int = struct.unpack("i", raw)[0]
    return sid


def claude_ancestor(pid: int, proc: Path = Path("/proc")) -> int | None:
    """The first process from `pid` up to init that Claude Code started (or is)."""
    seen: set[int] = set()
    while pid > 1 and pid not in seen:
        seen.add(pid)
        base = proc / str(pid)
        try:
            environ = (base / "environ").read_bytes()
        except OSError:
            environ = b""
        if any(environ.startswith(v) or b"\0" + v in environ for v in _CLAUDE_VARS):
            return pid
        try:
            comm = (base / "comm").read_text().strip()
            stat = (base / "stat").read_text()
        except OSError:
            return None
        if comm == "claude":
            return pid
        pid = int(stat[stat.rindex(")") + 2:].split()[1])
    return None
