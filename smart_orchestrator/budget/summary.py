"""What agents cost, from the ledger: per agent with the token split, per model, totals."""

from __future__ import annotations

import time
from typing import Any

from ..store.base import Store
from ..store.repos import LedgerRow

__all__ = ["agent_row", "cost_summary", "render_costs"]


def agent_row(r: LedgerRow) -> dict[str, Any]:
    return {"id": r.id, "agent_id": r.agent_id, "agent_type": r.agent_type,
            "source": r.source, "run_id": r.run_id, "task_id": r.task_id,
            "session": r.session_id[:8], "model": r.model, "state": r.state,
            "input_tokens": r.input_tokens, "output_tokens": r.output_tokens,
            "cache_read_tokens": r.cache_read_tokens,
            "cache_write_tokens": r.cache_write_tokens,
            "cost_usd": round(r.charged_usd, 6), "priced": r.priced,
            "estimated_usd": r.reserved_usd, "created_us": r.created_us}


def cost_summary(store: Store, *, since_us: int | None = None, until_us: int | None = None,
                 session_id: str | None = None, run_id: str | None = None,
                 agents: int = 20) -> dict[str, Any]:
    """Totals, per model, and the newest `agents` agents; estimates count until settled."""
    rows = [r for r in store.ledger.rows(session_id=session_id, run_id=run_id,
                                         since_us=since_us, limit=100_000)
            if until_us is None or r.created_us < until_us]
    by_model: dict[str, dict[str, Any]] = {}
    for r in rows:
        m = by_model.setdefault(r.model, {"agents": 0, "input_tokens": 0, "output_tokens": 0,
                                          "cache_read_tokens": 0, "cache_write_tokens": 0,
                                          "cost_usd": 0.0})
        m["agents"] += 1
        for key in ("input_tokens", "output_tokens", "cache_read_tokens",
                    "cache_write_tokens"):
            m[key] += getattr(r, key)
        m["cost_usd"] = round(m["cost_usd"] + r.charged_usd, 6)
    return {"agents": len(rows),
            "settled": sum(1 for r in rows if r.state == "settled"),
            "estimated": sum(1 for r in rows if r.state in ("reserved", "abandoned")),
            "cost_usd": round(sum(r.charged_usd for r in rows), 6),
            "unknown_models": sorted({r.model for r in rows if "unknown:" in r.priced}),
            "by_model": by_model,
            "newest": [agent_row(r) for r in rows[-agents:][::-1]] if agents else []}


def _when(us: int) -> str:
    return time.strftime("%m-%d %H:%M", time.localtime(us / 1e6))


def render_costs(s: dict[str, Any], title: str = "Agent costs") -> list[str]:
    lines = [f"**{title}:** ${s['cost_usd']:.4f} over {s['agents']} agents "
             f"({s['settled']} settled from reported usage, {s['estimated']} at their "
             "estimate)"]
    if s["unknown_models"]:
        lines.append("Priced at the dearest family's rates (model unknown): "
                     + ", ".join(s["unknown_models"]))
    if not s["newest"]:
        return lines
    lines += ["", "| when | agent | type | model | state | input | output | cache read | "
              "cache write | $ |", "|---|---|---|---|---|---|---|---|---|---|"]
    for a in s["newest"]:
        who = f"{a['run_id']}:{a['task_id']}" if a["run_id"] else (a["agent_id"] or a["id"][-12:])
        lines.append(f"| {_when(a['created_us'])} | {who} | {a['agent_type']} | {a['model']} | "
                     f"{a['state']} | {a['input_tokens']} | {a['output_tokens']} | "
                     f"{a['cache_read_tokens']} | {a['cache_write_tokens']} | "
                     f"{a['cost_usd']:.4f} |")
    return lines
