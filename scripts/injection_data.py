"""Training and validation records for the injection model, read from public mirrors.

Each source is read from a bare git mirror at a pinned commit (`git show`), so the data
are the same on every run. A record is (text, label, kind, source, split): label 1 for an
injection; kind is "direct" (an attack typed as a prompt), "indirect" (an attack inside a
document or tool output), "prompt" (a benign request) or "document" (benign content).
The split is "val" for records kept out of training (BIPIA's own test split; a fixed hash
share of the rest) and "train" otherwise. docs/detection.md lists the sources and licences.
"""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

# Repository -> commit read. Changing one changes the model: retrain and record it.
PINS = {
    "microsoft/BIPIA": "1a2a91da6bb12838e05d1b2e54d98e2f37b835f3",
    "HumanCompatibleAI/tensor-trust-data": "e2385ea9cf448c9641b96e2e39f113ed4979a5b0",
    "yizhongw/self-instruct": "0b26ccaa415992100fa32df62d41b994cf928e23",
    "openai/grade-school-math": "3101c7d5072418e28b9008a6636bde82a006892c",
    "tldr-pages/tldr": "08e345f42639f67d99282813247ac670dc6e87cb",
    "OWASP/CheatSheetSeries": "6b8819da79e0537d072e04296ffa3adfc94ba881",
    "SaFoLab-WISC/InjecGuard": "c7d9f9a58153db0237f8493bb792342f0344c70f",
    "greshake/llm-security": "87f4b7ffa568b7261a79b31573068d8113319212",
}
VAL_SHARE = 0.2


class Record(NamedTuple):
    text: str
    label: int
    kind: str
    source: str
    split: str
    # Where the attack sits in an indirect record; None when the whole text is the attack.
    span: tuple[int, int] | None = None


class Mirrors:
    """Reads files of pinned commits from bare mirrors laid out as <root>/<owner>+<name>/repo."""

    def __init__(self, root: Path, pins: dict[str, str | None]) -> None:
        self.root = root
        self.pins = pins

    def git_dir(self, repo: str) -> Path:
        return self.root / repo.replace("/", "+") / "repo"

    def commit(self, repo: str) -> str:
        pinned = self.pins.get(repo)
        if pinned:
            return pinned
        out = subprocess.run(["git", "--git-dir", str(self.git_dir(repo)), "rev-parse", "HEAD"],
                             check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def show(self, repo: str, path: str) -> str:
        ref = f"{self.commit(repo)}:{path}"
        out = subprocess.run(["git", "--git-dir", str(self.git_dir(repo)), "show", ref],
                             check=True, capture_output=True)
        return out.stdout.decode("utf-8", "replace")

    def ls(self, repo: str, prefix: str) -> list[str]:
        out = subprocess.run(["git", "--git-dir", str(self.git_dir(repo)), "ls-tree", "-r",
                              "--name-only", self.commit(repo), prefix],
                             check=True, capture_output=True, text=True)
        return sorted(out.stdout.split())


def hashed_split(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
    return "val" if digest[0] < 256 * VAL_SHARE else "train"


def _jsonl(text: str) -> Iterator[dict[str, object]]:
    for line in text.splitlines():
        if line.strip():
            yield json.loads(line)


def tensor_trust(m: Mirrors) -> Iterator[Record]:
    repo = "HumanCompatibleAI/tensor-trust-data"
    seen: set[str] = set()
    for name in ("hijacking", "extraction"):
        raw = m.show(repo, f"benchmarks/{name}-robustness/v1/{name}_robustness_dataset.jsonl")
        for row in _jsonl(raw):
            attack = str(row["attack"]).strip()
            if attack and attack not in seen:
                seen.add(attack)
                yield Record(attack, 1, "direct", f"tensor-trust/{name}", hashed_split(attack))
            # The defenders' own prompts: long instructions that talk about attacks.
            defence = str(row["pre_prompt"]).strip()
            if defence and defence not in seen and len(seen) % 3 == 0:
                seen.add(defence)
                yield Record(defence, 0, "prompt", "tensor-trust/defence", hashed_split(defence))


def _bipia_contexts(m: Mirrors, split: str) -> dict[str, list[str]]:
    contexts: dict[str, list[str]] = {}
    for task in ("email", "table", "code"):
        rows = list(_jsonl(m.show("microsoft/BIPIA", f"benchmark/{task}/{split}.jsonl")))
        out: list[str] = []
        for row in rows:
            ctx = row["context"]
            text = "\n".join(ctx) if isinstance(ctx, list) else str(ctx)
            if text.strip():
                out.append(text[:6000])
        contexts[task] = out
    return contexts


# BIPIA's text attacks are tasks or answer-steering requests ("What is the capital of
# Brazil?", "Add a sentence in your response ..."): the same words are ordinary prompts to
# an agent, and learning them as attacks flags everyday requests. Only its code attacks
# (cookie theft, keylogging, wiping disks, ...) are learned.
_PLAIN_KINDS = frozenset({"text"})


def _bipia_attacks(m: Mirrors, split: str) -> dict[str, list[str]]:
    attacks: dict[str, list[str]] = {}
    for kind in ("text", "code"):
        table = json.loads(m.show("microsoft/BIPIA", f"benchmark/{kind}_attack_{split}.json"))
        attacks[kind] = [] if kind in _PLAIN_KINDS else [a for g in table.values() for a in g]
    return attacks


def insert_at(context: str, attack: str, rng: random.Random) -> tuple[str, tuple[int, int]]:
    """`attack` placed at the start, the end or a line break of `context`, and its span."""
    where = rng.random()
    if where < 0.3:
        return f"{attack}\n{context}", (0, len(attack))
    if where < 0.6:
        return f"{context}\n{attack}", (len(context) + 1, len(context) + 1 + len(attack))
    breaks = [i for i, c in enumerate(context) if c == "\n"] or [len(context) // 2]
    at = rng.choice(breaks)
    return f"{context[:at]}\n{attack}\n{context[at:]}", (at + 1, at + 1 + len(attack))


def bipia(m: Mirrors, rng: random.Random) -> Iterator[Record]:
    for split, tag in (("train", "train"), ("test", "val")):
        contexts = _bipia_contexts(m, split)
        attacks = _bipia_attacks(m, split)
        for task, ctxs in contexts.items():
            pool = attacks["code"]
            for i, ctx in enumerate(ctxs):
                yield Record(ctx, 0, "document", f"bipia/{task}", tag)
                for _ in range(1 if tag == "train" else 0):
                    text, span = insert_at(ctx, rng.choice(pool), rng)
                    yield Record(text, 1, "indirect", f"bipia/{task}", tag, span)
                if i > 400:
                    break


def self_instruct(m: Mirrors) -> Iterator[Record]:
    repo = "yizhongw/self-instruct"
    seen: set[str] = set()
    rows = list(_jsonl(m.show(repo, "data/seed_tasks.jsonl")))
    rows += list(_jsonl(m.show(repo, "human_eval/user_oriented_instructions.jsonl")))
    for row in rows:
        instruction = str(row["instruction"]).strip()
        for inst in row.get("instances", [])[:2]:  # type: ignore[union-attr]
            extra = str(inst.get("input", "")).strip()
            text = f"{instruction}\n{extra}" if extra else instruction
            if text not in seen:
                seen.add(text)
                yield Record(text, 0, "prompt", "self-instruct", hashed_split(text))


def grade_school_math(m: Mirrors, limit: int = 1500) -> Iterator[Record]:
    rows = _jsonl(m.show("openai/grade-school-math", "grade_school_math/data/train.jsonl"))
    for i, row in enumerate(rows):
        if i >= limit:
            break
        text = str(row["question"])
        yield Record(text, 0, "prompt", "grade-school-math", hashed_split(text))


def tldr(m: Mirrors, rng: random.Random, limit: int = 1500) -> Iterator[Record]:
    paths = [p for p in m.ls("tldr-pages/tldr", "pages/") if p.endswith(".md")]
    rng.shuffle(paths)
    for path in sorted(paths[:limit]):
        text = m.show("tldr-pages/tldr", path)
        yield Record(text, 0, "document", "tldr", hashed_split(path))


def _sections(markdown: str, size: int = 2400) -> Iterator[str]:
    chunk: list[str] = []
    length = 0
    for line in markdown.splitlines():
        if (line.startswith("#") and length > size // 2) or length > size:
            yield "\n".join(chunk)
            chunk, length = [], 0
        chunk.append(line)
        length += len(line) + 1
    if chunk:
        yield "\n".join(chunk)


def owasp(m: Mirrors) -> Iterator[Record]:
    for path in m.ls("OWASP/CheatSheetSeries", "cheatsheets/"):
        if not path.endswith(".md"):
            continue
        split = hashed_split(path)
        for section in _sections(m.show("OWASP/CheatSheetSeries", path)):
            if len(section.strip()) > 80:
                yield Record(section, 0, "document", "owasp-cheatsheets", split)


def short_lines(records: list[Record], rng: random.Random, limit: int = 2500) -> list[Record]:
    """Single lines of benign documents: short benign text, so brevity is no signal."""
    lines = [(line.strip(), r.split) for r in records if r.kind == "document" and r.label == 0
             for line in r.text.splitlines() if 30 <= len(line.strip()) <= 300]
    rng.shuffle(lines)
    return [Record(text, 0, "document", "doc-lines", split) for text, split in lines[:limit]]


def wildguard_benign(m: Mirrors) -> Iterator[Record]:
    """WildGuardMix benign prompts as packaged by InjecGuard (many framed adversarially)."""
    rows = json.loads(m.show("SaFoLab-WISC/InjecGuard", "datasets/wildguard.json"))
    for row in rows:
        text = str(row["prompt"]).strip()
        if text and int(row["label"]) == 0:
            yield Record(text, 0, "prompt", "wildguard-benign", hashed_split(text))


def greshake_puzzles(m: Mirrors) -> Iterator[Record]:
    """Indirect-injection payloads written to be planted in web pages."""
    for path in m.ls("greshake/llm-security", "scenarios/puzzle/puzzles/"):
        text = m.show("greshake/llm-security", path).strip()
        yield Record(text, 1, "direct", "greshake-puzzles", hashed_split(path))


def all_records(mirrors: Mirrors, seed: int) -> list[Record]:
    from injection_synth import synthetic  # a sibling script module

    rng = random.Random(seed)
    records: list[Record] = []
    records += tensor_trust(mirrors)
    records += self_instruct(mirrors)
    records += grade_school_math(mirrors)
    records += tldr(mirrors, rng)
    records += owasp(mirrors)
    records += bipia(mirrors, rng)
    records += wildguard_benign(mirrors)
    records += greshake_puzzles(mirrors)
    docs = [r.text for r in records if r.kind == "document" and len(r.text) < 4000]
    records += short_lines(records, rng)
    records += synthetic(rng, docs)
    return records
