"""MCP adapter: exposes the core as tools of the `orchestrator` server."""
