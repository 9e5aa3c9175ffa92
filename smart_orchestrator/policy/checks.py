"""Content checks on subagent prompts and outputs, and flags on subagent tool calls.

Each check returns findings; the engine turns them into a decision according to the
check's mode. Findings carry rule ids and positions, never the matched text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from ..detect.secrets import Allowlist, parse_baseline, redact_text, scan_text
from .config import PromptPolicy, SecretsPolicy

__all__ = ["SEVERITY_RANK", "Finding", "check_prompt", "load_allowlist", "scan_output",
           "scan_secrets", "tool_flags"]

SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}


class Finding(NamedTuple):
    check: str       # prompt | injection | secrets | tools | ...
    rule_id: str
    severity: str
    detail: str      # short, safe to show: never the matched text
    blocking: bool   # would deny in enforce mode


def check_prompt(tool_input: Mapping[str, Any], policy: PromptPolicy) -> list[Finding]:
    found: list[Finding] = []
    for name in policy.required_fields:
        value = tool_input.get(name)
        if not isinstance(value, str) or not value.strip():
            found.append(Finding("prompt", "required-field", "high",
                                 f"required field '{name}' is missing or empty", True))
    prompt = tool_input.get("prompt")
    if isinstance(prompt, str):
        n = len(prompt)
        if n > policy.max_chars:
            found.append(Finding("prompt", "max-chars", "medium",
                                 f"prompt is {n} characters, over the limit of "
                                 f"{policy.max_chars}", True))
        if n < policy.min_chars:
            found.append(Finding("prompt", "min-chars", "medium",
                                 f"prompt is {n} characters, under the minimum of "
                                 f"{policy.min_chars}", True))
    elif prompt is not None:
        found.append(Finding("prompt", "prompt-type", "high", "prompt is not a string", True))
    return found


def check_injection(text: str, deny_at: str, check: str = "injection") -> list[Finding]:
    # Imported here: most hook events never look for injections.
    from ..detect.injection import detect_injection

    threshold = SEVERITY_RANK[deny_at]
    return [Finding(check, f.rule_id, f.severity, f.description,
                    SEVERITY_RANK.get(f.severity, 3) >= threshold)
            for f in detect_injection(text)]


def load_allowlist(policy: SecretsPolicy, project_dir: Path) -> Allowlist | None:
    """The baseline's allowlist, if its bytes are the ones the user confirmed.

    A baseline is read and checked either way (a malformed one fails the check closed, as
    it always did); one with unconfirmed bytes allowlists nothing: anyone who can write
    the project could otherwise list the digests of their own secrets in it.
    """
    import hashlib

    if not policy.baseline:
        path = project_dir / ".secrets.baseline"
        if not path.is_file():
            return None
    else:
        path = Path(policy.baseline)
        path = path if path.is_absolute() else project_dir / path
    raw = _read_regular(path)
    allow = parse_baseline(raw, path)
    if policy.baseline_sha256 != hashlib.sha256(raw).hexdigest():
        return None
    return allow


_MAX_BASELINE = 16 << 20


def _read_regular(path: Path) -> bytes:
    """A FIFO in the baseline's place would hang the hook, and a hook that times out lets
    the call through: only a regular file is read, without blocking."""
    import os
    import stat

    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_BASELINE:
            raise ValueError(f"secrets baseline {str(path)!r} is not a regular file of at "
                             f"most {_MAX_BASELINE >> 20} MiB")
        with os.fdopen(os.dup(fd), "rb") as fh:
            return fh.read(_MAX_BASELINE + 1)
    finally:
        os.close(fd)


def scan_secrets(text: str, allowlist: Allowlist | None,
                 check: str = "secrets") -> tuple[list[Finding], str | None]:
    """Findings, and the text with each secret replaced (None when there was none)."""
    hits = scan_text(text, allowlist=allowlist)
    findings = [Finding(check, h.rule_id, h.severity, f"{h.rule_id} on line {h.line}", True)
                for h in hits]
    return findings, (redact_text(text, hits) if hits else None)


def scan_output(text: str, allowlist: Allowlist | None, injection_deny_at: str, *,
                earlier: str = "") -> tuple[list[Finding], list[Finding]]:
    """Secrets (as written, or disguised: see detect.encoded) and injection in a subagent's
    output; `earlier` holds pieces of outputs already delivered to the same session."""
    from ..detect.encoded import scan_disguised

    secrets, _ = scan_secrets(text, allowlist, check="output-secrets")
    secrets += [Finding("output-secrets", d.rule_id, d.severity,
                        f"{d.rule_id} (disguised)", True)
                for d in scan_disguised(text, earlier=earlier, allowlist=allowlist)]
    return secrets, check_injection(text, injection_deny_at, check="output-injection")


# -- subagent tool calls -------------------------------------------------------------
# Command words count only in command position: `cat ~/.ssh/x` runs no ssh.
_CMD = r"(?:^|[\s|;&(`]|\$\()"
_NETWORK = re.compile(
    _CMD + r"(?:curl|wget|nc|ncat|netcat|telnet|ssh|scp|sftp|rsync|ftp|socat)(?=\s|$)|"
    r"https?://|" + _CMD + r"(?:pip|pip3|npm|yarn|pnpm|cargo|gem)\s+(?:install|add)\b|"
    + _CMD + r"git\s+(?:clone|fetch|pull|push)\b|/dev/tcp/")
_SENSITIVE = re.compile(
    r"(?:~|\$HOME|/root|/home/[^/\s]+)/\.(?:ssh|aws|gnupg|kube|docker|config/gcloud|azure)\b|"
    r"(?:^|[\s\"'=/])/etc/(?:passwd|shadow|sudoers|ssh|ssl/private)|/proc/self/environ|"
    r"(?:^|[\s\"'/])\.env(?:\.[\w-]+)?(?:$|[\s\"'])|\.netrc\b|\.pgpass\b|\.npmrc\b|\.pypirc\b")
_CREDENTIAL_FILE = re.compile(
    r"(?:^|/)(?:id_(?:rsa|dsa|ecdsa|ed25519)(?!\.pub)\b|\.aws/credentials|\.netrc|\.pgpass|"
    r"\.docker/config\.json|\.kube/config|\.git-credentials|\.pypirc|\.npmrc|"
    r"credentials\.json|service[-_]account[\w-]*\.json|[\w.-]+\.pem|[\w.-]+\.key)$")
_CRED_IN_COMMAND = re.compile(
    r"\b(?:cat|less|more|head|tail|cp|scp|base64|xxd|od|strings|tar|zip|curl)\b[^|;&\n]*?"
    r"(?:id_(?:rsa|dsa|ecdsa|ed25519)(?!\.pub)\b|\.aws/credentials|\.netrc|\.pgpass|"
    r"\.git-credentials|\.docker/config\.json|\.kube/config)")
_PATH_KEYS = ("file_path", "path", "notebook_path")


def tool_flags(tool_name: str, tool_input: Mapping[str, Any]) -> tuple[list[str], bool]:
    """Audit flags for one tool call, and whether it reads a credential file."""
    flags: list[str] = []
    reads_credentials = False
    if tool_name in ("WebFetch", "WebSearch"):
        flags.append("network")
    command = tool_input.get("command")
    if tool_name == "Bash" and isinstance(command, str):
        if _NETWORK.search(command):
            flags.append("network")
        if _SENSITIVE.search(command):
            flags.append("sensitive-path")
        reads_credentials = bool(_CRED_IN_COMMAND.search(command))
    for key in _PATH_KEYS:
        value = tool_input.get(key)
        if isinstance(value, str):
            expanded = value.replace("$HOME", "~")
            if _SENSITIVE.search(expanded) or expanded.startswith("/etc/"):
                flags.append("sensitive-path")
            if tool_name in ("Read", "NotebookRead", "Grep") and \
                    _CREDENTIAL_FILE.search(expanded):
                reads_credentials = True
    if reads_credentials:
        flags.append("credential-read")
    return sorted(set(flags)), reads_credentials
