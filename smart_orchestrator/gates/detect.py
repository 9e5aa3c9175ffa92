"""Gate commands for common project setups, used where the config names none.

Detection only reads files; it never runs the project's tools. Python tools run through the
project's own virtual environment when it has one (`.venv`, `venv`), else `python3`.
"""

from __future__ import annotations

import json
import re
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import CommandSpec

__all__ = ["Detected", "detect_commands"]

# npm's placeholder for a project without tests.
_NPM_NO_TEST = "no test specified"


@dataclass(frozen=True, slots=True)
class Detected:
    tier: int
    name: str
    spec: CommandSpec
    reason: str


def detect_commands(project_dir: Path) -> list[Detected]:
    found: list[Detected] = []
    for detector in (_python, _node, _rust, _go):
        found += detector(project_dir)
    seen: set[tuple[int, str]] = set()
    unique = []
    for d in found:  # the first detector to claim a name keeps it
        if (d.tier, d.name) not in seen:
            seen.add((d.tier, d.name))
            unique.append(d)
    return unique


def _cmd(*argv: str) -> CommandSpec:
    return CommandSpec(command=list(argv))


# -- Python ----------------------------------------------------------------------------------
def _python(root: Path) -> list[Detected]:
    pyproject = _toml(root / "pyproject.toml")
    if pyproject is None and not (root / "setup.py").is_file():
        return []
    pyproject = pyproject or {}
    tools = pyproject.get("tool", {}) if isinstance(pyproject.get("tool"), dict) else {}
    deps = _python_deps(pyproject) | _requirements(root)
    py = _python_exe(root)

    def uses(name: str, *files: str) -> bool:
        return name in tools or name in deps or any((root / f).is_file() for f in files)

    out: list[Detected] = []
    if uses("mypy", "mypy.ini", ".mypy.ini"):
        has_files = "files" in tools.get("mypy", {}) or (root / "mypy.ini").is_file()
        argv = [py, "-m", "mypy"] + ([] if has_files else ["."])
        out.append(Detected(1, "typecheck", _cmd(*argv), "mypy in pyproject.toml"))
    if uses("ruff", "ruff.toml", ".ruff.toml"):
        out.append(Detected(1, "lint", _cmd(py, "-m", "ruff", "check", "."),
                            "ruff in pyproject.toml"))
    if uses("pytest", "pytest.ini", "conftest.py") or (root / "tests" / "conftest.py").is_file():
        out.append(Detected(1, "tests", _cmd(py, "-m", "pytest", "-q"),
                            "pytest in pyproject.toml"))
    venv_bin = Path(py).parent
    if venv_bin.name == "bin" and (venv_bin / "pip-audit").is_file():
        out.append(Detected(2, "audit", _cmd(py, "-m", "pip_audit"),
                            "pip-audit installed in the project's virtual environment"))
    return out


def _python_exe(root: Path) -> str:
    for venv in (".venv", "venv"):
        exe = root / venv / "bin" / "python"
        if exe.is_file():
            return str(exe)
    return "python3"


_REQ_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _names(specs: Any) -> set[str]:
    names: set[str] = set()
    if isinstance(specs, dict):  # poetry: {name = version}
        return {str(k).lower() for k in specs}
    for spec in specs if isinstance(specs, list) else []:
        m = _REQ_NAME.match(spec) if isinstance(spec, str) else None
        if m:
            names.add(m.group(1).lower())
    return names


def _python_deps(pyproject: dict[str, Any]) -> set[str]:
    project = pyproject.get("project", {})
    names = _names(project.get("dependencies", []))
    for group in (project.get("optional-dependencies") or {}).values():
        names |= _names(group)
    for group in (pyproject.get("dependency-groups") or {}).values():
        names |= _names(group)
    poetry = pyproject.get("tool", {}).get("poetry", {})
    names |= _names(poetry.get("dependencies", {})) | _names(poetry.get("dev-dependencies", {}))
    for group in (poetry.get("group") or {}).values():
        names |= _names(group.get("dependencies", {}) if isinstance(group, dict) else {})
    return names


def _requirements(root: Path) -> set[str]:
    names: set[str] = set()
    for name in ("requirements.txt", "requirements-dev.txt", "dev-requirements.txt"):
        try:
            names |= _names((root / name).read_text(encoding="utf-8").splitlines())
        except OSError:
            continue
    return names


# -- Node ------------------------------------------------------------------------------------
def _node(root: Path) -> list[Detected]:
    try:
        package = json.loads((root / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    scripts = package.get("scripts") if isinstance(package, dict) else None
    scripts = scripts if isinstance(scripts, dict) else {}
    pm = _package_manager(root)
    out: list[Detected] = []
    for name, candidates in (("typecheck", ("typecheck", "type-check", "check-types", "tsc")),
                             ("lint", ("lint",)), ("tests", ("test",))):
        script = next((c for c in candidates if isinstance(scripts.get(c), str)), None)
        if script is None or _NPM_NO_TEST in scripts[script]:
            continue
        out.append(Detected(1, name, _cmd(pm, "run", script),
                            f"package.json script {script!r}"))
    if pm in ("npm", "pnpm"):
        out.append(Detected(2, "audit", _cmd(pm, "audit", "--audit-level=high"),
                            f"{pm} audit for a package.json project"))
    return out


def _package_manager(root: Path) -> str:
    for lock, pm in (("pnpm-lock.yaml", "pnpm"), ("yarn.lock", "yarn"), ("bun.lockb", "bun"),
                     ("bun.lock", "bun")):
        if (root / lock).is_file():
            return pm
    return "npm"


# -- Rust and Go -----------------------------------------------------------------------------
def _rust(root: Path) -> list[Detected]:
    if not (root / "Cargo.toml").is_file():
        return []
    out = [Detected(1, "typecheck", _cmd("cargo", "check", "--all-targets"), "Cargo.toml"),
           Detected(1, "lint", _cmd("cargo", "clippy", "--all-targets", "--", "-D", "warnings"),
                    "Cargo.toml"),
           Detected(1, "tests", _cmd("cargo", "test"), "Cargo.toml")]
    if shutil.which("cargo-audit"):
        out.append(Detected(2, "audit", _cmd("cargo", "audit"), "cargo-audit installed"))
    return out


def _go(root: Path) -> list[Detected]:
    if not (root / "go.mod").is_file():
        return []
    return [Detected(1, "typecheck", _cmd("go", "build", "./..."), "go.mod"),
            Detected(1, "lint", _cmd("go", "vet", "./..."), "go.mod"),
            Detected(1, "tests", _cmd("go", "test", "./..."), "go.mod")]


def _toml(path: Path) -> dict[str, Any] | None:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError):
        return None
