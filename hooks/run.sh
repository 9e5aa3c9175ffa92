#!/bin/sh
# Command hook entry. It runs on every matching tool call, beside an mcp_tool hook that
# the plugin's MCP server answers. When this session's server is live (it holds an
# exclusive lock on its beacon file) and responsive (it touches the file every second),
# the server decides and this hook answers "no decision" without starting Python.
# Otherwise the full check runs in Python: the gate of last resort.
data="${SMART_ORCHESTRATOR_DATA:-${CLAUDE_PLUGIN_DATA:-$HOME/.local/share/smart-orchestrator}}"
sid="${CLAUDE_CODE_SESSION_ID:-default}"
case "$sid" in *[!A-Za-z0-9_-]*) sid=default ;; esac  # session ids are UUIDs
beacon="$data/servers/$sid.lock"
# Locked by a live server, and touched within the last 3 s (-mmin -0.05).
if [ -f "$beacon" ] && ! flock -n -s "$beacon" true 2>/dev/null \
    && [ -n "$(find "$beacon" -mmin -0.05 2>/dev/null)" ]; then
  cat >/dev/null
  echo '{}'
  exit 0
fi
# Skip version-manager shims: prefer the plugin's own environment.
py="${SMART_ORCHESTRATOR_PYTHON:-}"
if [ -z "$py" ] && [ -x "${CLAUDE_PLUGIN_DATA:-/nonexistent}/venv/bin/python" ]; then
  py="$CLAUDE_PLUGIN_DATA/venv/bin/python"
fi
exec "${py:-python3}" "$(dirname "$0")/../bin/smart-orchestrator" hook "$1"
