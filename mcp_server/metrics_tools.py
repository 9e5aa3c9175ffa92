"""`metrics`: the plan's outcome table from the audit log."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from smart_orchestrator.budget.summary import cost_summary, render_costs
from smart_orchestrator.errors import OrchestratorError
from smart_orchestrator.metrics import (
    DEFAULT_CONTEXT_WINDOW,
    compute_metrics,
    render_markdown,
    window,
)

from .state import AppState


class MetricOut(BaseModel):
    key: str
    label: str
    value: float | None = Field(description="ratio 0..1, per month, or a count; null: no data")
    unit: str
    numerator: int
    denominator: float
    target: str
    meets_target: bool | None


class ColumnOut(BaseModel):
    name: str = Field(description="native_before (warn mode), native_after (enforce), waves")
    label: str
    metrics: list[MetricOut]
    counts: dict[str, int]


class MetricsResult(BaseModel):
    since_us: int
    until_us: int
    events: int
    columns: list[ColumnOut]
    notes: list[str]
    table: str = Field(description="the same figures as a Markdown table")
    costs: dict[str, Any] = Field(default_factory=dict, description=(
        "agents' cost in the window from the ledger: total dollars, per model, and the "
        "newest agents with input, output, cache-read and cache-write tokens"))


def register_metrics_tools(server: MCPServer[AppState]) -> None:
    @server.tool()
    def metrics(ctx: Context[AppState, Any],
                days: Annotated[float, Field(gt=0, le=3650,
                                             description="window: the last N days")] = 7.0,
                until_us: Annotated[int | None, Field(
                    ge=0, le=2**63 - 1,  # SQLite integers are 64-bit
                    description="end of the window, microseconds since the epoch; "
                                "default now")] = None,
                context_window_tokens: Annotated[int, Field(
                    ge=1000, le=10_000_000)] = DEFAULT_CONTEXT_WINDOW,
                ) -> MetricsResult:
        """The plan's metrics (task completion, agent failures, context overflows, crashes,
        wave completion) for native Agent calls in warn and enforce mode and for waves."""
        store = ctx.request_context.lifespan_context.require_store()
        since, until = window(days, until_us=until_us)
        try:
            report = compute_metrics(store, since_us=since, until_us=until,
                                     context_window_tokens=context_window_tokens)
            costs = cost_summary(store, since_us=since, until_us=until)
        except OrchestratorError as exc:
            raise ToolError(exc.one_line()) from exc
        return MetricsResult(
            since_us=report.since_us, until_us=report.until_us, events=report.events,
            columns=[ColumnOut(name=c.name, label=c.label, counts=dict(c.counts),
                               metrics=[MetricOut.model_validate(m, from_attributes=True)
                                        for m in c.metrics]) for c in report.columns],
            notes=list(report.notes),
            table=render_markdown(report) + "\n\n" + "\n".join(render_costs(costs)),
            costs=costs)
