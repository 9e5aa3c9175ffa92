"""Progressive context: levels, budgets, file selection, caching, and `get_context`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from mcp import Client

from mcp_server.server import build_server
from smart_orchestrator.context import (
    ContextCache,
    TaskText,
    build_prompt,
    clip_to_tokens,
    estimate_tokens,
)

GH_TOKEN = "ghp_R8x2Lq9ZtW4mVb7NcK1pYs5HdJ3fGa6Ue0Xo"  # pragma: allowlist secret
FILLER = "\n".join(f"    value_{i} = compute_something(argument_{i})  # line {i}"
                   for i in range(400))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    files = {
        "CLAUDE.md": "# Rules\nMONEY-RULE: money is Decimal, never float.\n",
        "shop/stock.py": "def reserve(sku, qty):\n    STOCK-MARKER = 1\n" + FILLER,
        "shop/pricing.py": "def price(sku):\n    PRICING-MARKER = 1\n",
        "shop/admission.py": "ADMISSION-MARKER = 1\n",
        "docs/api.md": "API-DOC-MARKER\n",
        ".env": f"TOKEN={GH_TOKEN}\n",
        "shop/keys.py": f'TOKEN = "{GH_TOKEN}"\nKEYS-MARKER = 1\n',
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (tmp_path / "outside.py").write_text("OUTSIDE-MARKER\n")
    return root


def _refs(built: object, kind: str) -> list[str]:
    return [s.ref for s in built.sources if s.kind == kind]  # type: ignore[attr-defined]


# -- tokens -------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "tokens"), [
    ("", 0), ("abcd", 1), ("abcde", 2), ("a" * 400, 100), ("日本語", 3), ("ab日本", 3),
])
def test_token_estimate(text: str, tokens: int) -> None:
    assert estimate_tokens(text) == tokens


def test_clipping_keeps_head_and_tail_and_says_what_went() -> None:
    text = "\n".join(f"line {i}" for i in range(1000))
    clipped, cut = clip_to_tokens(text, 200, head=0.5)
    assert cut and estimate_tokens(clipped) <= 200
    assert clipped.startswith("line 0\n") and clipped.endswith("line 999")
    assert "line(s) omitted" in clipped
    assert clip_to_tokens("short", 10) == ("short", False)


# -- levels -------------------------------------------------------------------------------
def test_full_level_includes_all_four_levels_within_budget(project: Path) -> None:
    task = TaskText("t2", "Add a discount to shop/pricing.py using the reserve flow of the "
                          "stock module.", "BACKGROUND-MARKER")
    built = build_prompt(task, dependency_results=[("t1", "DEP-MARKER done")],
                         project_dir=project, budget_tokens=4000, level="full",
                         output_instruction="OUTPUT-MARKER")
    assert built.levels_included == (1, 2, 3, 4)
    for marker in ("BACKGROUND-MARKER", "DEP-MARKER", "MONEY-RULE", "PRICING-MARKER",
                   "STOCK-MARKER", "## Environment"):
        assert marker in built.text, marker
    assert _refs(built, "named") == ["shop/pricing.py"]
    assert _refs(built, "hinted") == ["shop/stock.py"]
    assert built.text.startswith(task.prompt) and built.text.endswith("OUTPUT-MARKER")
    assert built.tokens <= built.budget_tokens


def test_minimal_keeps_named_files_the_best_hint_and_short_results(project: Path) -> None:
    task = TaskText("t2", "Fix shop/pricing.py for the stock and admission modules.",
                    "BACKGROUND-MARKER")
    long_result = "DEP-HEAD\n" + FILLER + "\nDEP-TAIL"
    full = build_prompt(task, dependency_results=[("t1", long_result)], project_dir=project,
                        level="full")
    minimal = build_prompt(task, dependency_results=[("t1", long_result)],
                           project_dir=project, level="minimal")
    assert _refs(full, "hinted") == ["shop/stock.py", "shop/admission.py"]
    assert _refs(minimal, "hinted") == ["shop/stock.py"]
    assert "PRICING-MARKER" in minimal.text and "DEP-HEAD" in minimal.text
    for gone in ("BACKGROUND-MARKER", "MONEY-RULE", "ADMISSION-MARKER", "## Environment"):
        assert gone not in minimal.text, gone
    assert minimal.levels_included == (1, 2, 3)
    assert minimal.tokens < full.tokens


def test_essential_is_the_task_and_a_few_lines_of_each_result(project: Path) -> None:
    task = TaskText("t3", "Summarise shop/pricing.py changes.", "BACKGROUND-MARKER")
    built = build_prompt(task, dependency_results={"t1": "T1-RESULT\n" + FILLER,
                                                   "t2": "T2-RESULT"},
                         project_dir=project, level="essential", output_instruction="JSON")
    assert built.levels_included == (1, 2)
    assert "T1-RESULT" in built.text and "T2-RESULT" in built.text
    assert "PRICING-MARKER" not in built.text
    assert built.tokens < 250


@pytest.mark.parametrize("budget", [300, 800, 2000, 8000])
@pytest.mark.parametrize("level", ["full", "minimal", "essential"])
def test_every_prompt_stays_within_its_budget(project: Path, budget: int, level: str) -> None:
    task = TaskText("t", "Change shop/stock.py and shop/pricing.py for the admission module.",
                    "background " * 300)
    deps = [(f"d{i}", f"result {i}\n" + FILLER) for i in range(4)]
    built = build_prompt(task, dependency_results=deps, project_dir=project,
                         budget_tokens=budget, level=level)  # type: ignore[arg-type]
    assert built.tokens <= budget
    assert not built.over_budget


def test_the_task_is_never_cut_even_over_budget() -> None:
    prompt = "do this " * 500
    built = build_prompt(TaskText("t", prompt), dependency_results=[("d", "x" * 1000)],
                         budget_tokens=200, output_instruction="Reply in JSON.")
    assert built.over_budget
    assert built.text.startswith(prompt) and built.text.endswith("Reply in JSON.")
    assert built.omitted == ("d",)


def test_short_results_are_kept_whole_and_long_ones_share_the_rest() -> None:
    deps = [("short", "SHORT-RESULT"), ("long1", "L1\n" + FILLER), ("long2", "L2\n" + FILLER)]
    built = build_prompt(TaskText("t", "merge"), dependency_results=deps, budget_tokens=3000)
    by_ref = {s.ref: s for s in built.sources if s.kind == "dependency"}
    assert not by_ref["short"].truncated
    assert by_ref["long1"].truncated and by_ref["long2"].truncated
    assert abs(by_ref["long1"].tokens - by_ref["long2"].tokens) <= 10
    assert "SHORT-RESULT" in built.text


# -- project files ------------------------------------------------------------------------
def test_files_outside_the_project_and_credential_files_are_never_read(project: Path) -> None:
    task = TaskText("t", "Look at ../outside.py, .env and shop/keys.py")
    built = build_prompt(task, project_dir=project, budget_tokens=4000)
    assert "OUTSIDE-MARKER" not in built.text
    assert _refs(built, "named") == ["shop/keys.py"]
    assert "KEYS-MARKER" in built.text
    assert GH_TOKEN not in built.text and "[REDACTED:github-token]" in built.text


def test_a_module_mentioned_by_name_is_hinted(project: Path) -> None:
    built = build_prompt(TaskText("t", "Raise the limit in the admission module"),
                         project_dir=project)
    assert _refs(built, "hinted") == ["shop/admission.py"]


def test_files_are_read_just_in_time_and_cached(project: Path) -> None:
    cache = ContextCache()
    crowded = TaskText("t", "Fix shop/pricing.py " + "carefully " * 200)
    built = build_prompt(crowded, project_dir=project, cache=cache,
                         budget_tokens=estimate_tokens(crowded.prompt) + 40)
    assert cache.reads == 0  # no room left after the task: nothing read
    assert "shop/pricing.py" in built.omitted
    task = TaskText("t", "Fix shop/pricing.py")
    build_prompt(task, project_dir=project, cache=cache)
    reads = cache.reads
    again = build_prompt(task, project_dir=project, cache=cache)
    assert cache.reads == reads
    (project / "shop" / "pricing.py").write_text("def price(sku):\n    NEW-MARKER = 2\n")
    edited = build_prompt(task, project_dir=project, cache=cache)
    assert cache.reads == reads + 1
    assert "PRICING-MARKER" in again.text and "NEW-MARKER" in edited.text


def test_any_task_shaped_object_works(project: Path) -> None:
    @dataclass(frozen=True)
    class Spec:  # like a wave's TaskSpec: more fields than the builder reads
        id: str
        prompt: str
        context: str | None
        depends_on: tuple[str, ...] = ()

    built = build_prompt(Spec("x", "Fix shop/pricing.py", None), project_dir=project)
    assert "PRICING-MARKER" in built.text


# -- the MCP tool -------------------------------------------------------------------------
async def test_get_context_returns_the_prompt_and_its_sources(
        project: Path, db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLAUDE_PROJECT_DIR", str(project))
    async with Client(build_server()) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        result = await client.call_tool("get_context", {
            "task": "Update shop/pricing.py", "task_id": "t2", "level": "minimal",
            "budget_tokens": 1000,
            "dependency_results": [{"task_id": "t1", "output": "T1-DONE"}]})
    assert tools["get_context"].output_schema is not None
    out = result.structured_content
    assert out is not None and not result.is_error
    assert "PRICING-MARKER" in out["text"] and "T1-DONE" in out["text"]
    assert out["tokens"] <= 1000 and out["levels_included"] == [1, 2, 3]
    assert [s["kind"] for s in out["sources"]] == ["task", "dependency", "named"]


async def test_get_context_rejects_a_budget_below_the_minimum(db_path: Path) -> None:
    async with Client(build_server()) as client:
        result = await client.call_tool("get_context", {"task": "x", "budget_tokens": 10})
    assert result.is_error
