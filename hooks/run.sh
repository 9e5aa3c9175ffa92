#!/bin/sh
# Command hooks run on every matching tool call: start the plugin's own interpreter
# directly, skipping version-manager shims that can cost more than the check itself.
py="${SMART_ORCHESTRATOR_PYTHON:-}"
if [ -z "$py" ] && [ -x "${CLAUDE_PLUGIN_DATA:-/nonexistent}/venv/bin/python" ]; then
  py="$CLAUDE_PLUGIN_DATA/venv/bin/python"
fi
exec "${py:-python3}" "$(dirname "$0")/../bin/smart-orchestrator" hook "$@"
