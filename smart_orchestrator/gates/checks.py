"""Tier-2 checks the server runs in-process over the lines the change adds."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..detect.secrets import Allowlist, load_baseline, scan_text
from ._globs import matches_any
from .config import GatesConfig, PatternRule
from .models import CheckResult, Finding

__all__ = ["AddedLines", "load_secrets_allowlist", "pattern_check", "secret_check"]

AddedLines = Mapping[str, Sequence[tuple[int, str]]]
MAX_FINDINGS = 200
# Files whose content is secret digests or fixtures of the scanner, not secrets.
_SKIP_SECRETS = ("**/.secrets.baseline",)


def load_secrets_allowlist(root: Path, config: GatesConfig) -> Allowlist | None:
    name = config.secrets_baseline
    path = root / (name or ".secrets.baseline")
    if name is None and not path.is_file():
        return None
    try:
        return load_baseline(path)
    except OSError as exc:
        raise ValueError(f"secrets baseline {path}: {exc.strerror}") from None


def secret_check(added: AddedLines, complete: bool, allowlist: Allowlist | None,
                 elapsed_ms: int = 0) -> CheckResult:
    if not complete:
        return CheckResult("secrets", 2, "secrets", "failed", "built-in",
                           detail="the change is too large to scan for secrets in full; "
                                  "split it, or raise no limit: a partial scan never passes")
    findings: list[Finding] = []
    for path, lines in added.items():
        if not lines or matches_any(path, _SKIP_SECRETS):
            continue
        text = "\n".join(text for _, text in lines)
        # Source files a person reviews: their inline allowlist comments count.
        for f in scan_text(text, allowlist=allowlist, pragmas=True):
            lineno = lines[f.line - 1][0] if 0 < f.line <= len(lines) else 0
            findings.append(Finding(f.rule_id, path, lineno,
                                    f"{f.rule_id} ({f.severity}) {f.redacted}"))
    if not findings:
        return CheckResult("secrets", 2, "secrets", "passed", "built-in", duration_ms=elapsed_ms,
                           detail=f"no secrets in the lines added to {len(added)} file(s)")
    where = ", ".join(sorted({f"{f.path}:{f.line}" for f in findings})[:5])
    return CheckResult("secrets", 2, "secrets", "failed", "built-in", duration_ms=elapsed_ms,
                       detail=f"{len(findings)} secret(s) in the change ({where}); remove them "
                              "or, if reviewed and harmless, add them to .secrets.baseline",
                       findings=tuple(findings[:MAX_FINDINGS]))


def pattern_check(added: AddedLines, complete: bool, rules: Sequence[PatternRule],
                  elapsed_ms: int = 0) -> CheckResult:
    findings: list[Finding] = []
    for rule in rules:
        rx = re.compile(rule.regex)
        for path, lines in added.items():
            if not matches_any(path, rule.paths, rule.exclude):
                continue
            findings += [Finding(rule.id, path, n, rule.message or f"matches {rule.id}")
                         for n, text in lines if rx.search(text)]
    if findings:
        ids = ", ".join(sorted({f.rule for f in findings}))
        return CheckResult("patterns", 2, "patterns", "failed", "config", duration_ms=elapsed_ms,
                           detail=f"{len(findings)} line(s) break project rules ({ids})",
                           findings=tuple(findings[:MAX_FINDINGS]))
    if not complete:
        return CheckResult("patterns", 2, "patterns", "failed", "config",
                           detail="the change is too large to check in full")
    return CheckResult("patterns", 2, "patterns", "passed", "config", duration_ms=elapsed_ms,
                       detail=f"{len(rules)} rule(s), no violations")
