"""The `[gates]` config, setup detection and path globs: table-driven."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from smart_orchestrator.errors import ConfigError
from smart_orchestrator.gates._globs import matches_any
from smart_orchestrator.gates.config import load_gates_config, parse_gates_config
from smart_orchestrator.gates.detect import detect_commands
from smart_orchestrator.gates.runner import plan_commands


def _files(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


PYPROJECT_DEPS = """
[project]
name = "x"
dependencies = ["requests>=2"]
[project.optional-dependencies]
dev = ["pytest>=8", "ruff==0.5", "mypy"]
"""


@pytest.mark.parametrize(("files", "expected"), [
    ({"pyproject.toml": PYPROJECT_DEPS},
     {(1, "typecheck"): ["python3", "-m", "mypy", "."], (1, "lint"): ["python3", "-m", "ruff",
                                                                       "check", "."],
      (1, "tests"): ["python3", "-m", "pytest", "-q"]}),
    ({"pyproject.toml": "[tool.ruff]\nline-length = 100\n[tool.mypy]\nfiles = ['src']\n"},
     {(1, "lint"): ["python3", "-m", "ruff", "check", "."],
      (1, "typecheck"): ["python3", "-m", "mypy"]}),
    ({"pyproject.toml": "[dependency-groups]\ndev = ['pytest']\n"},
     {(1, "tests"): ["python3", "-m", "pytest", "-q"]}),
    ({"pyproject.toml": "[project]\nname='x'\n", ".venv/bin/python": "", "tests/conftest.py": ""},
     {(1, "tests"): ["{root}/.venv/bin/python", "-m", "pytest", "-q"]}),
    ({"package.json": json.dumps({"scripts": {"typecheck": "tsc", "lint": "eslint .",
                                              "test": "vitest run"}}),
      "pnpm-lock.yaml": ""},
     {(1, "typecheck"): ["pnpm", "run", "typecheck"], (1, "lint"): ["pnpm", "run", "lint"],
      (1, "tests"): ["pnpm", "run", "test"],
      (2, "audit"): ["pnpm", "audit", "--audit-level=high"]}),
    ({"package.json": json.dumps({"scripts": {
        "test": 'echo "Error: no test specified" && exit 1'}}), "yarn.lock": ""},
     {}),
    ({"go.mod": "module x\n"},
     {(1, "typecheck"): ["go", "build", "./..."], (1, "lint"): ["go", "vet", "./..."],
      (1, "tests"): ["go", "test", "./..."]}),
    ({"README.md": "nothing to run"}, {}),
], ids=["python-deps", "python-tool-tables", "dependency-groups", "project-venv",
        "pnpm-scripts", "npm-placeholder-test", "go", "nothing"])
def test_detects_common_setups(tmp_path: Path, files: dict[str, str],
                               expected: dict[tuple[int, str], list[str]]) -> None:
    root = _files(tmp_path, files)
    found = {(d.tier, d.name): d.spec.command for d in detect_commands(root)}
    want = {k: [a.replace("{root}", str(root)) for a in v] for k, v in expected.items()}
    assert found == want


def test_config_commands_override_detection_and_false_turns_a_check_off(tmp_path: Path) -> None:
    root = _files(tmp_path, {
        "pyproject.toml": PYPROJECT_DEPS,
        ".claude/smart-orchestrator.toml": "[gates.tier1]\ntests = 'pytest -q -x tests/unit'\n"
                                           "lint = false\n"})
    plan = plan_commands(load_gates_config(root), root)
    tier1 = {c.name: (c.spec.command, c.source) for c in plan[1]}
    assert tier1["tests"] == (["pytest", "-q", "-x", "tests/unit"], "config")
    assert "lint" not in tier1
    assert tier1["typecheck"][1].startswith("detected: ")


@pytest.mark.parametrize(("table", "message"), [
    ({"tier1": {"secrets": "x"}}, "built-in check"),
    ({"tier1": {"Bad Name": "x"}}, "gates.tier1"),
    ({"tier1": {"tests": "unclosed 'quote"}}, "cannot split"),
    ({"tier1": {"tests": []}}, "gates.tier1.tests"),
    ({"patterns": [{"id": "p", "regex": "("}]}, "not a valid regular expression"),
    ({"approvals": [{"kind": "security", "paths": []}]}, "gates.approvals.0.paths"),
    ({"approval_via": ["email"]}, "gates.approval_via"),
    ({"colour": "blue"}, "gates.colour"),
    ({"timeout_s": 0}, "gates.timeout_s"),
])
def test_invalid_config_is_rejected_by_name(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_gates_config(table, "test.toml")


def test_a_file_that_is_not_toml_is_a_config_error(tmp_path: Path) -> None:
    root = _files(tmp_path, {".claude/smart-orchestrator.toml": "[gates\n"})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_gates_config(root)


def test_the_policy_sections_of_the_shared_file_are_ignored(tmp_path: Path) -> None:
    root = _files(tmp_path, {".claude/smart-orchestrator.toml":
                             "preset = 'strict'\n[prompt]\nmax_chars = 10\n"
                             "[gates]\ntimeout_s = 5\n"})
    assert load_gates_config(root).timeout_s == 5


@pytest.mark.parametrize(("path", "include", "exclude", "expected"), [
    ("src/a.py", ["src/**/*.py"], [], True),
    ("src/x/y/a.py", ["src/**/*.py"], [], True),
    ("lib/a.py", ["src/**/*.py"], [], False),
    ("src/x/a.py", ["src/*.py"], [], False),
    ("docs/a.md", ["*.md"], [], True),
    ("auth/deep/x.py", ["auth/"], [], True),
    ("a/b/crypto_utils.py", ["**/*crypto*"], [], True),
    ("src/gen/a.py", ["src/**"], ["src/gen/**"], False),
    ("cb", ["[!a]b"], [], True),
    ("ab", ["[!a]b"], [], False),
])
def test_globs(path: str, include: list[str], exclude: list[str], expected: bool) -> None:
    assert matches_any(path, include, exclude) is expected
