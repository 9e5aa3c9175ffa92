"""What `status` and `/smart-orchestrator:status` report, gathered from the store."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from .audit import AuditLog
from .beacon import BEAT_STALE_S
from .errors import StoreError
from .paths import locate_data_dir
from .resources import sample_system
from .store import open_store
from .store.base import Store

__all__ = ["collect_status", "render_markdown", "render_status"]

RECENT_DENIALS = 10


def collect_status(db: str | None = None) -> dict[str, Any]:
    store = open_store(db, readonly=True)
    try:
        return _collect(store)
    finally:
        store.close()


def _collect(store: Store) -> dict[str, Any]:
    located = locate_data_dir()
    head = store.audit_head()
    now_us = time.time_ns() // 1000
    in_flight = [
        {"session": r.session_id[:8], "agent_type": r.agent_type, "agent_id": r.agent_id,
         "depth": r.depth, "running_s": round((now_us - r.acquired_us) / 1e6, 1),
         "background": r.background, "host": r.host}
        for r in store.leases.rows()]
    denials = [
        {"seq": seq, "when": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts / 1e6)),
         "agent_type": d.get("agent_type"), "denied_by": d.get("denied_by") or [],
         "reason": d.get("reason")}
        for seq, ts, d in ((r.seq, r.ts_us, r.data) for r in store.audit.events(
            kinds=("policy.decision",), match={"decision": "deny"}, newest_first=True,
            limit=RECENT_DENIALS))]
    breakers = [{"agent_type": r.agent_type, "state": r.state,
                 "recent_failures": len(r.failures)} for r in store.breakers.rows()]
    snap = sample_system()
    report = AuditLog(store).verify()
    problems = store.integrity_problems()
    return {
        "database": store.location,
        "data_folder": {"path": str(located.path), "found_as": located.origin},
        "service": _service(located.path),
        "servers": _servers(located.path),
        "in_flight": in_flight,
        "recent_denials": denials,
        "breakers": breakers,
        "resources": {"available_mib": snap.available_bytes // 2**20,
                      "total_mib": snap.total_bytes // 2**20, "cpus": snap.cpu_count,
                      "metrics": "ok" if snap.ok else f"unavailable: {snap.error}"},
        "audit": {"events": head.events, "head": head.hash, "intact": report.ok,
                  "message": report.one_line()},
        "checkpoints": len(store.list_checkpoints()),
        "wave_bash_sandbox": _wave_sandbox(),
        "integrity": {"ok": not problems, "problems": problems},
        "costs_today": _costs_today(store, now_us),
    }


def _costs_today(store: Store, now_us: int) -> dict[str, Any]:
    from .budget.ledger import day_start_us
    from .budget.summary import cost_summary

    try:
        return cost_summary(store, since_us=day_start_us(now_us), agents=10)
    except StoreError:  # a store from before the ledger, opened read-only
        return {}


def _service(data: Path) -> dict[str, Any]:
    """The per-user service that decides every hook event: up, and since when."""
    from .resources import pid_alive

    try:
        info = json.loads((data / "service.json").read_text())
        pid, since = int(info["pid"]), float(info["since"])
    except (OSError, ValueError, KeyError, TypeError):
        return {"up": False, "note": "not running (a session's MCP server starts it)"}
    if not pid_alive(pid):
        return {"up": False, "note": f"not running (pid {pid} ended without cleaning up; the "
                "next session starts a new one)"}
    return {"up": True, "pid": pid,
            "since": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)),
            "version": str(info.get("stamp", "")).split(":", 1)[0]}


def _servers(data: Path) -> list[dict[str, Any]]:
    """The orchestrator MCP servers running now, one per Claude Code session: each holds a
    lock on its beacon and touches it every second while its event loop runs."""
    import psutil

    from .beacon import server_is_live

    out: list[dict[str, Any]] = []
    now = time.time()
    for beacon in sorted((data / "servers").glob("*.lock")):
        session = beacon.stem
        if not server_is_live(data, session):
            continue
        try:
            pid = int(beacon.read_text().strip() or 0)
            beat_age = now - beacon.stat().st_mtime
            started = psutil.Process(pid).create_time()
        except (OSError, ValueError, psutil.Error):
            pid, beat_age, started = 0, float("nan"), float("nan")
        out.append({"session": session[:8], "pid": pid,
                    "since": (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
                              if started == started else "unknown"),
                    "last_beat_s": round(beat_age, 1) if beat_age == beat_age else None,
                    "responsive": beat_age == beat_age and beat_age < BEAT_STALE_S})
    return out


def _wave_sandbox() -> str:
    """Whether spawn_wave agents' Bash would be confined here: the first thing to check
    after installing bubblewrap and socat."""
    from .errors import ConfigError
    from .waves.config import WaveConfig
    from .waves.sandbox import probe_sandbox

    try:
        return probe_sandbox(WaveConfig.from_env().sandbox).note
    except ConfigError as exc:
        return f"unknown: {exc.one_line()}"


def render_status(status: dict[str, Any]) -> str:
    return render_markdown(status)


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    if not rows:
        return ["_none_"]
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return out


def render_markdown(s: dict[str, Any]) -> str:
    res = s["resources"]
    servers = s.get("servers", [])
    service = s.get("service", {"up": False, "note": "unknown"})
    lines = ["## Smart Orchestrator status", "",
             "**Service:** " + (f"up since {service['since']} (pid {service['pid']}, version "
                                f"{service['version']})" if service["up"] else service["note"]),
             "", f"**Sessions connected (orchestrator MCP servers):** {len(servers)}"
             + ("" if servers else " (none right now)")]
    if servers:
        lines += _table(["session", "pid", "up since", "last beat (s ago)", "responsive"],
                        [[v["session"], v["pid"], v["since"], v["last_beat_s"],
                          "yes" if v["responsive"] else "NO (event loop stalled)"]
                         for v in servers])
    lines += ["", f"**Agents in flight:** {len(s['in_flight'])}"]
    lines += _table(["session", "type", "agent", "depth", "running (s)", "background"],
                    [[a["session"], a["agent_type"], a["agent_id"] or "-", a["depth"],
                      a["running_s"], a["background"]] for a in s["in_flight"]])
    lines += ["", f"**Recent denials** (newest first, last {RECENT_DENIALS})"]
    lines += _table(["when", "type", "denied by", "reason"],
                    [[d["when"], d["agent_type"] or "-", ", ".join(d["denied_by"]),
                      d["reason"] or "-"] for d in s["recent_denials"]])
    if s.get("costs_today"):
        from .budget.summary import render_costs

        lines += ["", *render_costs(s["costs_today"], "Agent costs today (UTC)")]
    lines += ["", "**Circuit breakers**"]
    lines += _table(["agent type", "state", "recent failures"],
                    [[b["agent_type"], b["state"], b["recent_failures"]] for b in s["breakers"]])
    lines += ["", "**Resources**",
              f"{res['available_mib']} MiB available of {res['total_mib']} MiB, "
              f"{res['cpus']} CPUs; metrics {res['metrics']}", "",
              f"**Bash of spawn_wave agents:** {s['wave_bash_sandbox']}", "",
              f"**Audit:** {s['audit']['message']}", "",
              f"**Database:** {_integrity_line(s['integrity'])}", "",
              f"Checkpoints: {s['checkpoints']} - database: `{s['database']}`"]
    if "data_folder" in s:
        lines.append(f"Data folder: `{s['data_folder']['path']}` "
                     f"({s['data_folder']['found_as']})")
    return "\n".join(lines)


def _integrity_line(integrity: dict[str, Any]) -> str:
    if integrity["ok"]:
        return "sound (SQLite integrity check passed)"
    problems = integrity["problems"]
    return (f"DAMAGED: {problems[0]} ({len(problems)} problem(s) found; restore a backup or "
            "move the file aside)")
