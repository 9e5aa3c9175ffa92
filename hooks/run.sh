#!/bin/sh
# Command hook entry. It runs on every matching tool call, beside an mcp_tool hook that
# the plugin's MCP server answers. When this session's server is live (it holds an
# exclusive lock on its beacon file) and responsive (it touches the file every second),
# the server decides and this hook does not start Python:
# - PreToolUse(Agent) blocks, so this hook returns the decision the server left in
#   servers/<session>.decided/<tool_use_id>; if none appears within half a second (the
#   server is slow, or died mid-decision), Python waits for it or decides itself;
# - the other events run in the background and only act when the server is down.
# - PreToolUse of the file, shell and web tools ("$2" = tools) blocks too: the main
#   agent's own calls are not policed and pass at once; a subagent's call (its payload has
#   an "agent_id" key) returns the server's decision like PreToolUse(Agent).
# Otherwise the full check runs in Python: the gate of last resort.
data="${SMART_ORCHESTRATOR_DATA:-${CLAUDE_PLUGIN_DATA:-$HOME/.local/share/smart-orchestrator}}"
sid="${CLAUDE_CODE_SESSION_ID:-default}"
case "$sid" in *[!A-Za-z0-9_-]*) sid=default ;; esac  # session ids are UUIDs
beacon="$data/servers/$sid.lock"
py="${SMART_ORCHESTRATOR_PYTHON:-}"
if [ -z "$py" ] && [ -x "${CLAUDE_PLUGIN_DATA:-/nonexistent}/venv/bin/python" ]; then
  py="$CLAUDE_PLUGIN_DATA/venv/bin/python"  # skip version-manager shims
fi
case "$0" in */*) here="${0%/*}" ;; *) here=. ;; esac  # no dirname: one process less
launcher="$here/../bin/smart-orchestrator"
if [ "${2:-}" = tools ]; then
  input="$(cat)"
  # Inside JSON strings every quote is escaped, so this matches only a real key; a key
  # inside tool_input can only send a main-agent call to the full check, never skip it.
  case "$input" in
    *'"agent_id"'*) ;;
    *) echo '{}'; exit 0 ;;
  esac
fi
# Locked by a live server, and touched within the last 3 s (-mmin -0.05).
if [ -f "$beacon" ] && ! flock -n -s "$beacon" true 2>/dev/null \
    && [ -n "$(find "$beacon" -mmin -0.05 2>/dev/null)" ]; then
  if [ "$1" != PreToolUse ]; then
    cat >/dev/null
    echo '{}'
    exit 0
  fi
  [ "${2:-}" = tools ] || input="$(cat)"
  # Inside JSON strings every quote is escaped, so only the payload's own key matches;
  # anything but exactly one match goes to Python. Shell expansions only: on a loaded
  # machine each extra process costs milliseconds.
  rest="${input#*\"tool_use_id\":\"}"
  [ "$rest" != "$input" ] || rest="${input#*\"tool_use_id\": \"}"
  id=""
  if [ "$rest" != "$input" ]; then
    case "$rest" in *'"tool_use_id"'*) ;; *) id="${rest%%\"*}" ;; esac
  fi
  case "$id" in *[!A-Za-z0-9_-]*) id="" ;; esac
  if [ -n "$id" ]; then
    decided="$data/servers/$sid.decided/$id"
    n=0
    while [ ! -f "$decided" ] && [ "$n" -lt 50 ]; do sleep 0.01; n=$((n + 1)); done
    answer=""
    if [ -f "$decided" ] && { IFS= read -r answer < "$decided" || [ -n "$answer" ]; }; then
      rm -f "$decided"
      printf '%s\n' "$answer"
      exit 0
    fi
  fi
  printf '%s' "$input" | "${py:-python3}" "$launcher" hook "$1"
  exit $?
fi
if [ "${2:-}" = tools ]; then
  printf '%s' "$input" | "${py:-python3}" "$launcher" hook "$1"
  exit $?
fi
exec "${py:-python3}" "$launcher" hook "$1"
