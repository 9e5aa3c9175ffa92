#!/bin/sh
# Command hook entry. It runs on every matching tool call, beside an mcp_tool hook that
# the plugin's MCP server answers. When this session's server is live (it holds an
# exclusive lock on its beacon file) and responsive (it touches the file every second),
# the server decides and this hook does not start Python:
# - PreToolUse (Agent, Workflow, SendMessage, Skill) blocks, so this hook returns the decision
#   the server left in servers/<session>.decided/<tool_use_id>; if none appears within
#   half a second (the server is slow, or died mid-decision), Python waits for it or
#   decides itself;
# - PostToolUse(Agent) and UserPromptSubmit with a task notification (the output gates)
#   return the server's decision through Python, which decides itself if the server fails;
# - the other events run in the background and only act when the server is down.
# Otherwise the full check runs in Python: the gate of last resort.
data="${SMART_ORCHESTRATOR_DATA:-${CLAUDE_PLUGIN_DATA:-$HOME/.local/share/smart-orchestrator}}"
sid="${CLAUDE_CODE_SESSION_ID:-default}"
case "$sid" in *[!A-Za-z0-9_-]*) sid=default ;; esac  # session ids are UUIDs
beacon="$data/servers/$sid.lock"
py="${SMART_ORCHESTRATOR_PYTHON:-}"
if [ -z "$py" ] && [ -x "${CLAUDE_PLUGIN_DATA:-/nonexistent}/venv/bin/python" ]; then
  py="$CLAUDE_PLUGIN_DATA/venv/bin/python"  # skip version-manager shims
fi
launcher="$(dirname "$0")/../bin/smart-orchestrator"
# Locked by a live server, and touched within the last 3 s (-mmin -0.05).
if [ -f "$beacon" ] && ! flock -n -s "$beacon" true 2>/dev/null \
    && [ -n "$(find "$beacon" -mmin -0.05 2>/dev/null)" ]; then
  input="$(cat)"
  case "$1" in
    PreToolUse) ;;
    # The output gates: Python returns the server's decision, or decides if the server
    # fails to (its mcp_tool hook failing would otherwise let the output through).
    PostToolUse) printf '%s' "$input" | "${py:-python3}" "$launcher" hook "$1"; exit $? ;;
    UserPromptSubmit)
      case "$input" in
        *'<task-notification>'*)
          printf '%s' "$input" | "${py:-python3}" "$launcher" hook "$1"; exit $? ;;
      esac
      echo '{}'; exit 0 ;;
    *) echo '{}'; exit 0 ;;
  esac
  # Inside JSON strings every quote is escaped, so only the payload's own key matches;
  # anything but exactly one match goes to Python.
  ids="$(printf '%s' "$input" | grep -o '"tool_use_id"[[:space:]]*:[[:space:]]*"[A-Za-z0-9_-]*"')"
  id="${ids##*:}"; id="${id#*\"}"; id="${id%\"}"
  if [ -n "$id" ] && [ "$(printf '%s\n' "$ids" | wc -l)" -eq 1 ]; then
    decided="$data/servers/$sid.decided/$id"
    n=0
    while [ ! -f "$decided" ] && [ "$n" -lt 50 ]; do sleep 0.01; n=$((n + 1)); done
    # Only a decision written for this call: one left from an earlier call that reused the
    # id (never collected) is older than the half second this call waits.
    if [ -f "$decided" ] && [ -n "$(find "$decided" -mmin -0.05 2>/dev/null)" ] \
        && cat "$decided"; then
      rm -f "$decided"
      echo
      exit 0
    fi
  fi
  printf '%s' "$input" | "${py:-python3}" "$launcher" hook "$1"
  exit $?
fi
exec "${py:-python3}" "$launcher" hook "$1"
