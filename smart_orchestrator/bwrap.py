"""Whether bubblewrap can start here: present, and allowed the namespaces it is asked for
(some containers forbid unprivileged user namespaces, and bwrap is then installed but
cannot run anything)."""

from __future__ import annotations

import subprocess

__all__ = ["try_bwrap"]


def try_bwrap(args: list[str], timeout_s: float) -> tuple[bool, str]:
    """Run `bwrap ARGS`: (it ran and succeeded, why not in one line)."""
    try:
        done = subprocess.run(["bwrap", *args], capture_output=True, timeout=timeout_s)
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"bubblewrap did not run: {exc}"
    if done.returncode != 0:
        detail = done.stderr.decode("utf-8", "replace").strip().splitlines()
        return False, f"bubblewrap cannot start here: {detail[-1] if detail else 'error'}"
    return True, ""
