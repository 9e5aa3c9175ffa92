#!/bin/sh
# Command hook entry. It runs on every matching tool call, beside an mcp_tool hook that
# the plugin's MCP server answers. When this session's server is live (it holds an
# exclusive lock on its beacon file) and responsive (it touches the file every second),
# the server decides and this hook does not start Python:
# - PreToolUse blocks (Agent, and "$2" = tools: the file, shell and web tools), so this
#   hook returns the decision the server left in servers/<session>.decided/<tool_use_id>;
#   if none appears within half a second (the server is slow, or died mid-decision),
#   Python waits for it or decides itself. On the tool matcher the main agent's own calls
#   are not policed and pass at once; only a subagent's payload has an "agent_id" key;
# - the other events run in the background and only act when the server is down.
# Otherwise the full check runs in Python: the gate of last resort.
# Every process started here costs milliseconds on a loaded machine, on every tool call:
# shell expansions are used wherever they do.
data="${SMART_ORCHESTRATOR_DATA:-${CLAUDE_PLUGIN_DATA:-$HOME/.local/share/smart-orchestrator}}"
sid="${CLAUDE_CODE_SESSION_ID:-default}"
case "$sid" in *[!A-Za-z0-9_-]*) sid=default ;; esac  # session ids are UUIDs
beacon="$data/servers/$sid.lock"
py="${SMART_ORCHESTRATOR_PYTHON:-}"
if [ -z "$py" ] && [ -x "${CLAUDE_PLUGIN_DATA:-/nonexistent}/venv/bin/python" ]; then
  py="$CLAUDE_PLUGIN_DATA/venv/bin/python"  # skip version-manager shims
fi
case "$0" in */*) here="${0%/*}" ;; *) here=. ;; esac
launcher="$here/../bin/smart-orchestrator"

# Locked by a live server, and touched within the last 3 s (-mmin -0.05).
live() {
  [ -f "$beacon" ] && ! flock -n -s "$beacon" true 2>/dev/null \
    && [ -n "$(find "$beacon" -mmin -0.05 2>/dev/null)" ]
}

# The server's decision for this call, if it left one: printed, collected, true.
collect() {
  answer=""
  if [ -n "$id" ] && [ -f "$decided" ] \
      && { IFS= read -r answer < "$decided" || [ -n "$answer" ]; }; then
    rm -f "$decided"
    printf '%s\n' "$answer"
    return 0
  fi
  return 1
}

if [ "$1" != PreToolUse ]; then
  if live; then
    cat >/dev/null
    echo '{}'
    exit 0
  fi
  exec "${py:-python3}" "$launcher" hook "$1"
fi

input="$(cat)"
if [ "${2:-}" = tools ]; then
  # Inside JSON strings every quote is escaped, so this matches only a real key; a key
  # inside tool_input can only send a main-agent call to the full check, never skip it.
  case "$input" in
    *'"agent_id"'*) ;;
    *) echo '{}'; exit 0 ;;
  esac
fi
# Only a live server's file counts: with the server down, a file someone else planted for
# a coming call must not answer for it (the mcp_tool hook, which would overrule it, is gone).
if live; then
  # The payload's own key, exactly once (the same escaping argument); anything else goes
  # to Python. dash's ${x#*pat} is quadratic in the length of x: grep for large payloads.
  id=""
  if [ "${#input}" -le 2048 ]; then
    rest="${input#*\"tool_use_id\":\"}"
    [ "$rest" != "$input" ] || rest="${input#*\"tool_use_id\": \"}"
    if [ "$rest" != "$input" ]; then
      case "$rest" in *'"tool_use_id"'*) ;; *) id="${rest%%\"*}" ;; esac
    fi
  else
    ids="$(printf '%s' "$input" \
      | grep -o '"tool_use_id"[[:space:]]*:[[:space:]]*"[A-Za-z0-9_-]*"')"
    case "$ids" in *"
"*) ;; *) id="${ids##*:}"; id="${id#*\"}"; id="${id%\"}" ;; esac
  fi
  case "$id" in *[!A-Za-z0-9_-]*) id="" ;; esac
  decided="$data/servers/$sid.decided/$id"
  n=0
  while [ -n "$id" ] && [ "$n" -le 100 ]; do
    collect && exit 0
    sleep 0.005
    n=$((n + 1))
  done
fi
printf '%s' "$input" | "${py:-python3}" "$launcher" hook "$1"
exit $?
