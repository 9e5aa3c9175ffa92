"""Scrubbing free text before the plugin writes it anywhere (store, logs, decision files).

Inline `pragma: allowlist secret` comments let a reviewed secret through to an agent; they
do not make it fit to keep on disk, so they are ignored here.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .detect.secrets import SecretFinding

__all__ = ["scrub_label", "scrub_text", "secret_rules"]

_PRAGMA = re.compile("pragma", re.IGNORECASE)


def _findings(text: str) -> list[SecretFinding]:
    from .detect.secrets import scan_text

    # Same length, so the findings' offsets hold for the original text.
    return scan_text(_PRAGMA.sub("pr_gma", text)) if text else []


def secret_rules(text: str) -> list[str]:
    """The rule ids of the credentials in `text` (empty: none found)."""
    return sorted({f.rule_id for f in _findings(text)})


def scrub_text(text: str) -> str:
    """`text` with every credential replaced by `[REDACTED:<rule>]`."""
    from .detect.secrets import redact_text

    found = _findings(text)
    return redact_text(text, found) if found else text


def scrub_label(value: str, *, max_chars: int = 64) -> str:
    """A short model-chosen name (an agent type, a task id) as the store may keep it."""
    if len(value) > max_chars:
        from .canonical import digest_text

        return f"[long:{digest_text(value)['sha256'][:16]}]"
    return scrub_text(value)
