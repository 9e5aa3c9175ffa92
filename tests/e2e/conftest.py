"""Fixtures for end-to-end tests: the real Claude Code CLI against a scripted local model."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .harness import ClaudeRun, ScriptedModel, find_claude_bin
from .harness import run_claude as _run_claude

_HERE = Path(__file__).resolve().parent
REPO_ROOT = Path(__file__).resolve().parents[2]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "e2e: runs the real Claude Code CLI against a scripted local model"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The plugin under test is the repository itself (`--plugin-dir <repo root>`)."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def claude_bin() -> Path:
    path = find_claude_bin()
    if path is None:
        pytest.skip("Claude Code CLI not found: claude_agent_sdk/_bundled/claude is missing "
                    "(install claude-agent-sdk from a platform wheel)")
    return path


@pytest.fixture
def scripted_model() -> Iterator[ScriptedModel]:
    with ScriptedModel() as model:
        yield model


@pytest.fixture
def claude_dirs(tmp_path: Path) -> dict[str, Path]:
    """Per-test working directory, HOME and CLI temp dir."""
    dirs = {name: tmp_path / name for name in ("work", "home", "cctmp")}
    for path in dirs.values():
        path.mkdir()
    return dirs


@pytest.fixture
def run_claude(
    scripted_model: ScriptedModel, claude_bin: Path, claude_dirs: dict[str, Path]
) -> Callable[..., ClaudeRun]:
    """`run_claude(prompt, plugin_dir=..., ...)` bound to this test's model and dirs.

    Runs within one test share HOME, so plugin data persists between them.
    """
    return functools.partial(
        _run_claude,
        model_url=scripted_model.base_url,
        cwd=claude_dirs["work"],
        home=claude_dirs["home"],
        tmpdir=claude_dirs["cctmp"],
        claude_bin=claude_bin,
    )
