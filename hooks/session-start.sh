#!/bin/sh
# SessionStart: tell the user when Smart Orchestrator is not ready yet. No Python here: this
# runs before every session's first request. The per-user service writes service.json
# while it is up; the session's MCP server (the shim) starts it, building the plugin's
# Python environment first on the first session after install.
data="${SMART_ORCHESTRATOR_DATA:-${CLAUDE_PLUGIN_DATA:-$HOME/.local/share/smart-orchestrator}}"
cat >/dev/null
if [ -f "$data/service.json" ] || [ -x "$data/venv/bin/python" ]; then
  echo '{}'
  exit 0
fi
echo '{"systemMessage": "Smart Orchestrator is starting its service (on the first session after install it first builds its Python environment: about a minute). Subagent calls wait for it, and are denied with the reason if it takes too long."}'
