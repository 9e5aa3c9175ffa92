"""Confining wave agents' Bash commands to the wave's folder with Claude Code's sandbox.

The policy hooks keep file tools inside the wave's `cwd`, but a shell command can write
anywhere the user can. Claude Code's own Bash sandbox (bubblewrap on Linux, Seatbelt on
macOS) makes everything outside the working directory and its temp folder read-only for
Bash and every process it starts, hides credential folders and the orchestrator's own
state, and routes network access through a proxy that allows only the domains a task
lists. Claude Code quietly runs commands unsandboxed when the
sandbox cannot start, so availability is probed here, once, and reported as it is.

Modes (`SMART_ORCHESTRATOR_WAVE_SANDBOX`): `auto` (default) confines Bash when the sandbox
works and says why not otherwise; `require` refuses waves whose tasks may run Bash when it
does not; `off` never confines.
"""

from __future__ import annotations

import functools
import platform
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..bwrap import try_bwrap

__all__ = ["CREDENTIAL_PATHS", "BashSandbox", "SandboxMode", "may_run_bash", "probe_sandbox"]

SandboxMode = Literal["auto", "require", "off"]
# Hidden from sandboxed commands however they are spelled (the hooks only see the command
# text): where credentials live by convention, relative to the agent's home.
CREDENTIAL_PATHS = ("~/.ssh", "~/.aws", "~/.gnupg", "~/.kube", "~/.docker", "~/.azure",
                    "~/.config/gcloud", "~/.config/gh", "~/.netrc", "~/.pgpass",
                    "~/.git-credentials", "~/.npmrc", "~/.pypirc", "~/.claude/.credentials.json")


@dataclass(frozen=True, slots=True)
class BashSandbox:
    mode: SandboxMode
    available: bool
    note: str  # what a person reads in the wave's stats and audit rows

    @property
    def enabled(self) -> bool:
        return self.available and self.mode != "off"

    def settings(self, network_domains: Sequence[str],
                 hidden: Sequence[str] = ()) -> dict[str, Any] | None:
        """The agent's `sandbox` settings, or None to leave Bash unconfined. `hidden`
        paths (absolute) are unreadable as well as unwritable, like CREDENTIAL_PATHS."""
        if not self.enabled:
            return None
        return {
            "enabled": True,
            # The task's allowed_tools decide whether Bash runs at all, not the sandbox.
            "autoAllowBashIfSandboxed": False,
            # No escape hatch: a command that fails inside the sandbox fails.
            "allowUnsandboxedCommands": False,
            "failIfUnavailable": True,
            "network": {"allowedDomains": list(network_domains)},
            "filesystem": {"denyRead": [*CREDENTIAL_PATHS, *hidden]},
        }


def may_run_bash(allowed_tools: Sequence[str]) -> bool:
    return any(tool == "Bash" or tool.startswith("Bash(") for tool in allowed_tools)


def probe_sandbox(mode: SandboxMode) -> BashSandbox:
    if mode == "off":
        return BashSandbox(mode, False, "off: Bash is not confined (sandbox mode off)")
    available, why = _probe()
    if available:
        return BashSandbox(mode, True, "on: Bash may write only inside the wave's folder and "
                                       "reach only the task's network_domains")
    return BashSandbox(mode, False, f"off: Bash is not confined ({why})")


@functools.cache
def _probe() -> tuple[bool, str]:
    system = platform.system()
    if system == "Darwin":
        return (True, "") if shutil.which("sandbox-exec") else (False, "no sandbox-exec")
    if system != "Linux":
        return False, f"Claude Code has no Bash sandbox on {system}"
    missing = [tool for tool in ("bwrap", "socat") if shutil.which(tool) is None]
    if missing:
        return False, (f"{' and '.join(missing)} not installed; on Debian or Ubuntu: "
                       "apt-get install bubblewrap socat")
    # Unprivileged user namespaces are off in some containers: bwrap is there but cannot
    # start, and Claude Code would run commands unconfined.
    return try_bwrap(["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                      "--unshare-all", "true"], 10)
