"""A fan-out preview: what a plan of agents is expected to use, before any runs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from .ledger import Budget, task_kind

__all__ = ["PlannedAgent", "preview"]


class PlannedAgent(NamedTuple):
    id: str
    agent_type: str
    model: str | None
    prompt: str


def preview(budget: Budget, agents: Sequence[PlannedAgent], *,
            session_id: str) -> dict[str, Any]:
    """Per agent and per model: expected tokens and dollars with the basis of each
    estimate; the share of each cap the whole would use; whether to ask the user."""
    rows: list[dict[str, Any]] = []
    by_model: dict[str, dict[str, Any]] = {}
    for agent in agents:
        model = agent.model or "inherit"
        est = budget.estimate(task_kind(agent.agent_type, model, agent.prompt), model)
        rows.append({"id": agent.id, "agent_type": agent.agent_type, "model": model,
                     "expected_tokens": est.tokens, "expected_usd": est.usd,
                     "basis": est.basis})
        m = by_model.setdefault(model, {"agents": 0, "expected_tokens": 0,
                                        "expected_usd": 0.0})
        m["agents"] += 1
        m["expected_tokens"] += est.tokens
        m["expected_usd"] = round(m["expected_usd"] + est.usd, 6)
    total = round(sum(r["expected_usd"] for r in rows), 6)
    caps = budget.shares(session_id, total)
    over = sorted(cap for cap, c in caps.items() if c["after_usd"] > c["limit_usd"])
    threshold = budget.config.confirm_above_usd
    return {"agents": len(rows), "by_model": by_model, "tasks": rows,
            "expected_tokens": sum(r["expected_tokens"] for r in rows),
            "expected_usd": total, "caps": caps, "over_caps": over,
            "confirm_above_usd": threshold,
            "confirm": total > threshold or bool(over),
            "history": sum(1 for r in rows if not r["basis"].startswith("default")),
            }
