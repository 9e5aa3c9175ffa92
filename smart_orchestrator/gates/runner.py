"""Evaluating the gates: run each tier's checks on the working copy, stop at the first
tier that does not pass, and say why.

Every verdict comes from a command this process ran, or from a cached run of the same
command on the same git tree; nothing an agent reports can pass a gate.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..audit import AuditLog
from ..canonical import canonical_json, sha256_hex
from ..detect.secrets import redact_text, scan_text
from ..store.base import Store
from . import _git
from ._proc import ProcessRunner, ProcResult
from .approvals import required_approvals
from .cache import GateCache
from .checks import load_secrets_allowlist, pattern_check, secret_check
from .config import CommandSpec, GatesConfig, load_gates_config
from .detect import detect_commands
from .models import CheckResult, CheckStatus, GateReport, TierResult

__all__ = ["GateRunner", "PlannedCheck", "plan_commands"]

MAX_DIFF_BYTES = 64 * 1024 * 1024
_FAILED = frozenset({"failed", "timed_out", "error", "cancelled"})


def _now_us() -> int:
    return time.time_ns() // 1000


@dataclass(frozen=True, slots=True)
class PlannedCheck:
    name: str
    tier: int
    spec: CommandSpec
    source: str

    def key(self, config: GatesConfig) -> str:
        """Identifies what ran: a different command, environment or limit runs again."""
        return sha256_hex(canonical_json({
            "name": self.name, "tier": self.tier, "command": self.spec.command,
            "env": self.spec.env, "cwd": self.spec.cwd,
            "timeout_s": self.spec.timeout_s or config.timeout_s}))


def plan_commands(config: GatesConfig, project_dir: Path) -> dict[int, list[PlannedCheck]]:
    """Configured commands first, in file order, then detected ones the config leaves open."""
    plan: dict[int, list[PlannedCheck]] = {1: [], 2: []}
    tables = {1: config.tier1, 2: config.tier2}
    for tier, table in tables.items():
        plan[tier] += [PlannedCheck(name, tier, spec, "config")
                       for name, spec in table.items() if spec is not False]
    if config.detect:
        for d in detect_commands(project_dir):
            if d.name not in tables[d.tier]:
                plan[d.tier].append(PlannedCheck(d.name, d.tier, d.spec, f"detected: {d.reason}"))
    return plan


class GateRunner:
    """One evaluation at a time; `cancel()` from another thread stops the running command."""

    def __init__(self, store: Store, project_dir: Path, *,
                 config: GatesConfig | None = None, procs: ProcessRunner | None = None,
                 progress: Callable[[str], None] | None = None,
                 clock_us: Callable[[], int] = _now_us) -> None:
        self._store = store
        self._project = project_dir
        self._config = config
        self._procs = procs or ProcessRunner()
        self._progress = progress or (lambda _msg: None)
        self._cache = GateCache(store, clock_us=clock_us)
        self._audit = AuditLog(store)

    def cancel(self) -> None:
        self._procs.cancel()

    def config(self) -> GatesConfig:
        return self._config or load_gates_config(self._project)

    def evaluate(self, *, run: bool = True, force: bool = False) -> GateReport:
        """`run=False` reports only what is cached for this tree; `force` ignores the cache."""
        config = self.config()
        snap = _git.snapshot(self._project, config.base)
        plan = plan_commands(config, self._project)
        ctx = _Eval(self, config, snap, run=run, force=force)
        tiers: list[TierResult] = []
        for tier in (1, 2, 3):
            stop = next((t for t in tiers if t.status != "passed"), None)
            if stop is not None:
                tiers.append(TierResult(tier, "skipped", reason=f"tier {stop.tier} did not pass"))
                continue
            tiers.append(ctx.tier(tier, plan.get(tier, [])))
        notes = ctx.finish()
        report = _report(snap, tiers, notes, cached_tree=not ctx.tree_moved)
        if run:
            self._audit.record("gate.result", tree=snap.tree, base=snap.base,
                               passed=report.passed, blocking_tier=report.blocking_tier,
                               reason=report.reason, changed=len(snap.changes),
                               ran=ctx.ran, cached=ctx.cached_hits)
        return report


class _Eval:
    """The state of one evaluation: the snapshot, what ran, what waits to be cached."""

    def __init__(self, runner: GateRunner, config: GatesConfig, snap: _git.Snapshot, *,
                 run: bool, force: bool) -> None:
        self.r = runner
        self.config = config
        self.snap = snap
        self.run = run
        self.force = force
        self.ran = 0
        self.cached_hits = 0
        self.tree_moved = False
        self._to_cache: list[tuple[str, CheckResult]] = []
        self._added: tuple[dict[str, list[tuple[int, str]]], bool] | None = None

    # -- tiers ------------------------------------------------------------------------------
    def tier(self, tier: int, commands: list[PlannedCheck]) -> TierResult:
        if tier == 3:
            return self._approvals()
        results: list[CheckResult] = []
        items: list[CheckResult | PlannedCheck] = [*self._builtins()] if tier == 2 else []
        items += commands
        for item in items:
            result = item if isinstance(item, CheckResult) else self._command(item)
            results.append(result)
            if self.config.fail_fast and result.status in _FAILED:
                break
        if tier == 1 and not results and self.config.require_tier1:
            return TierResult(1, "failed", reason="no typecheck, lint or test command is "
                              "configured or detected; set [gates.tier1] in "
                              ".claude/smart-orchestrator.toml (or require_tier1 = false)")
        return _tier_result(tier, results)

    def _builtins(self) -> list[CheckResult]:
        out: list[CheckResult] = []
        if not (self.config.secret_scan or self.config.patterns):
            return out
        start = time.monotonic()
        added, complete = self._added_lines()
        if self.config.secret_scan:
            try:
                allow = load_secrets_allowlist(self.snap.root, self.config)
            except ValueError as exc:
                out.append(CheckResult("secrets", 2, "secrets", "error", "built-in",
                                       detail=str(exc)))
            else:
                out.append(secret_check(added, complete, allow, _ms(start)))
        if self.config.patterns:
            out.append(pattern_check(added, complete, self.config.patterns, _ms(start)))
        return out

    def _added_lines(self) -> tuple[dict[str, list[tuple[int, str]]], bool]:
        if self._added is None:
            self._added = _git.added_lines(self.snap.root, self.snap.base_tree, self.snap.tree,
                                           max_bytes=MAX_DIFF_BYTES)
        return self._added

    def _approvals(self) -> TierResult:
        needed = required_approvals(self.r._store, self.snap, self.config, self.r._project)
        missing = [a for a in needed if not a.satisfied]
        if not missing:
            why = (f"{len(needed)} approval(s) given" if needed
                   else "no approval rule matches the change")
            return TierResult(3, "passed", approvals=tuple(needed), reason=why)
        parts = [f"needs a {a.kind} approval for {len(a.paths)} changed file(s) "
                 f"({', '.join(a.paths[:3])}{', ...' if len(a.paths) > 3 else ''})"
                 for a in missing]
        return TierResult(3, "failed", approvals=tuple(needed), reason="; ".join(parts))

    # -- commands ---------------------------------------------------------------------------
    def _command(self, check: PlannedCheck) -> CheckResult:
        key = check.key(self.config)
        cached = None if (self.force or not self.config.cache) else \
            self.r._cache.get(self.snap.tree, key)
        if cached is not None:
            self.cached_hits += 1
            status, code, ms, tail, digest, size = cached
            return CheckResult(check.name, check.tier, "command", status,  # type: ignore[arg-type]
                               check.source, tuple(check.spec.command), code, ms, tail, digest,
                               size, cached=True, detail=_detail(status, code, ms))
        if not self.run:
            return CheckResult(check.name, check.tier, "command", "not_run", check.source,
                               tuple(check.spec.command), detail="not run on this tree yet")
        self.r._progress(f"tier {check.tier}: running {check.name}")
        result = self._execute(check)
        self.ran += 1
        self.r._audit.record("gate.check", tree=self.snap.tree, name=check.name,
                             tier=check.tier, status=result.status, exit_code=result.exit_code,
                             duration_ms=result.duration_ms,
                             program=Path(check.spec.command[0]).name,
                             output={"sha256": result.output_sha256,
                                     "bytes": result.output_bytes})
        self._to_cache.append((key, result))
        return result

    def _execute(self, check: PlannedCheck) -> CheckResult:
        spec, config = check.spec, self.config
        timeout = spec.timeout_s or config.timeout_s
        cwd = (self.r._project / spec.cwd) if spec.cwd else self.r._project
        env = {**os.environ, "CI": os.environ.get("CI", "1"), **spec.env}
        res = self.r._procs.run(spec.command, cwd=cwd, env=env, timeout_s=timeout,
                                tail_chars=config.tail_chars)
        status = _status(res)
        ms = int(res.duration_s * 1000)
        if res.start_error:
            detail = res.start_error
        elif res.timed_out:
            detail = f"timed out after {timeout:g} s; its process group was killed"
        else:
            detail = _detail(status, res.exit_code, ms)
        tail = _redacted(res.tail)
        return CheckResult(check.name, check.tier, "command", status, check.source,
                           tuple(spec.command), res.exit_code, ms, tail, res.sha256,
                           res.total_bytes, detail=detail)

    def finish(self) -> tuple[str, ...]:
        """Cache what ran, unless the working copy changed while it ran."""
        if not self._to_cache:
            return ()
        after = _git.working_tree(self.snap.root)
        if after != self.snap.tree:
            self.tree_moved = True
            return (f"the working copy changed while the gates ran (tree {self.snap.tree[:12]} "
                    f"-> {after[:12]}); results were not cached",)
        for key, result in self._to_cache:
            self.r._cache.put(self.snap.tree, key, result)
        return ()


def _status(res: ProcResult) -> CheckStatus:
    if res.cancelled:
        return "cancelled"
    if res.start_error:
        return "error"
    if res.timed_out:
        return "timed_out"
    return "passed" if res.exit_code == 0 else "failed"


def _detail(status: str, code: int | None, ms: int) -> str:
    if status == "passed":
        return f"passed in {ms / 1000:.1f} s"
    return f"{status} (exit {code}) after {ms / 1000:.1f} s"


def _redacted(tail: str) -> str:
    findings = scan_text(tail)
    return redact_text(tail, findings) if findings else tail


def _ms(start: float) -> int:
    return int((time.monotonic() - start) * 1000)


def _tier_result(tier: int, results: list[CheckResult]) -> TierResult:
    bad = [r for r in results if r.status in _FAILED]
    if bad:
        return TierResult(tier, "failed", tuple(results),
                          reason="; ".join(r.one_line() for r in bad))
    pending = [r for r in results if r.status == "not_run"]
    if pending:
        return TierResult(tier, "pending", tuple(results),
                          reason="not run on this tree yet: " + ", ".join(r.name for r in pending))
    return TierResult(tier, "passed", tuple(results),
                      reason=f"{len(results)} check(s) passed" if results else "no checks")


def _report(snap: _git.Snapshot, tiers: list[TierResult], notes: tuple[str, ...], *,
            cached_tree: bool) -> GateReport:
    blocking = next((t for t in tiers if t.status != "passed"), None)
    paths = tuple(c.path for c in snap.changes)
    if blocking is None:
        reason = f"all tiers pass for tree {snap.tree[:12]} ({len(paths)} changed file(s))"
    else:
        reason = f"tier {blocking.tier} ({blocking.name}) {blocking.status}: {blocking.reason}"
    return GateReport(blocking is None, None if blocking is None else blocking.tier, reason,
                      snap.tree, snap.base, snap.base_tree, paths, tuple(tiers),
                      cached_tree=cached_tree, notes=notes)
