"""Detection quality and speed: one section per detector, each with its own floors.

    .venv/bin/python benchmarks/bench_detection.py [--corpora PATH] [--mirrors PATH]
        [--section secrets|injection] [--json]

Secrets (`secrets_report`): recall on held-out public fixtures (noseyparker, trufflehog,
secretlint) overall, with each credential alone in prose, and encoded, split or escaped;
false positives on the source trees of psf/requests and expressjs/express (code and docs);
the same on a validation split of our own (generated credentials in many syntaxes, and
pallets/click and koajs/koa as negatives) that no rule was tuned on; the development
corpora; detect-secrets 1.5 on the same data; the worst time on 1 MB adversarial inputs;
MB/s on a 5 MB benign mix. Held-out and validation repositories are read from bare git
mirrors (`fetch github:owner/name`, see benchmarks/_secret_data.py and docs/detection.md);
what is absent is reported as such.

Injection (`injection_report`): recall per attack subset and false positives per benign
subset of the development corpora, at any severity and at the deny level (high); deny-level
recall, direct and indirect, and false positives on benign prompts and documents on the
held-out set (benchmarks/_injection_heldout.py) and on the model's validation split
(scripts/injection_data.py), both read from the git mirrors under --mirrors; the worst time
on 1 MB hostile inputs and MB/s on a 5 MB benign mix.

Exits 1 when a floor is missed; when the data is absent it says so and exits 0.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import _secret_data as data  # noqa: E402
from _secret_classes import generated_classes  # noqa: E402

from smart_orchestrator.detect.injection import SEVERITIES, detect_injection  # noqa: E402
from smart_orchestrator.detect.secrets import scan_text  # noqa: E402

MB = 1_000_000
RANK = {name: i for i, name in enumerate(SEVERITIES)}
# (name, value, limit, "max" if value must stay below limit else "min")
Floor = tuple[str, float, float, str]


def load(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def best_time(fn: Callable[[], object], runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def median_time(fn: Callable[[], object], runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def pathological() -> dict[str, str]:
    line = "x = '" + "a" * 1000 + "'\n"
    return {
        "lines padded with 1000 spaces": ("password = '" + " " * 1000 + "'\n") * (MB // 1014),
        "one 1 MB line of spaces": "a" + " " * (MB - 2) + "b",
        "1 MB base64 run": base64.b64encode(os.urandom(MB * 3 // 4)).decode()[:MB],
        "1000-char quoted lines": line * (MB // len(line)),
        "repeated '='": "=" * MB,
        "repeated quotes": "'\"" * (MB // 2),
        "keyword storm": "key=" * (MB // 4),
        "short password assignments": "password: 1 " * (MB // 12),
        "dense real-looking tokens": ("t = 'ghp_" + "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dE3fG5'\n")
        * (MB // 46),
        "unterminated key headers": "-----BEGIN RSA PRIVATE KEY-----\n" * (MB // 32),
        "authorization storm": "Authorization: Bearer " * (MB // 22),
        "repeated injection": "ignore previous instructions " * (MB // 29),
        "open HTML comments": "<!--" * (MB // 4),
        "zero-width run": "\u200b" * MB,
        "one-letter words": "a " * (MB // 2),
        "non-word tokens (dotted I)": "\u0130 " * (MB // 2),
        "curl -u flags": " -u " * (MB // 4),
        "curl -u with colons": " -u x:" * (MB // 6),
        "requests.post( storm": "requests.post(" * (MB // 14),
        "ignore storm": "ignore all " * (MB // 11),
        "reply-manipulation storm": "add your response " * (MB // 18),
        "connection-string storm": "server=a;password=" * (MB // 18),
        "anchored-format storm": ("0123456789abcdef" * 2 + "-us1 ") * (MB // 38),
        "zero-width split words": "a\u200b" * (MB // 2),
        "instructions on one line": "ENV A " * (MB // 6),
    }


def word_baseline(text: str) -> None:
    """One regex pass over the text: the cost floor any scanner is compared with."""
    for _ in re.finditer(r"\w+", text):
        pass


def print_floors(checks: list[Floor]) -> None:
    for name, value, limit, sense in checks:
        ok = value >= limit if sense == "min" else value <= limit
        op = ">=" if sense == "min" else "<="
        print(f"  floor {name}: {value:.4g} {op} {limit:g}: {'PASS' if ok else 'FAIL'}")


# --------------------------------------------------------------------------- secrets


class _DetectSecrets:
    """detect-secrets 1.5, default plugins and filters, each sample scanned as a file (its
    `scan` mode; the line mode of `scan --string` skips the filters and flags almost
    everything); its settings are process-global, so one instance at a time."""

    def __init__(self) -> None:
        from detect_secrets.core.secrets_collection import SecretsCollection
        from detect_secrets.settings import default_settings

        self._collection = SecretsCollection
        self._settings = default_settings

    def flags(self, texts: Iterable[str]) -> list[bool]:
        out: list[bool] = []
        with tempfile.TemporaryDirectory() as tmp, self._settings():
            path = os.path.join(tmp, "sample.txt")
            for text in texts:
                Path(path).write_text(text, encoding="utf-8", errors="replace")
                found = self._collection()
                found.scan_file(path)
                out.append(bool(found.data))
        return out


def _rate(flags: list[bool]) -> float:
    return sum(flags) / len(flags) if flags else float("nan")


def _ours(texts: Iterable[str]) -> list[bool]:
    return [bool(scan_text(t)) for t in texts]


def _row(name: str, samples: list[data.Sample], ds: _DetectSecrets | None,
         rows: dict[str, dict[str, float]]) -> None:
    texts = [s.text for s in samples]
    ours = _rate(_ours(texts))
    theirs = _rate(ds.flags(texts)) if ds is not None and texts else float("nan")
    rows[name] = {"n": float(len(samples)), "ours": ours, "detect_secrets": theirs}


def _split(samples: list[data.Sample], label: str) -> list[data.Sample]:
    return [s for s in samples if s.label == label]


def _benign_mix(corpora: Path, size: int = 5 * MB) -> str:
    """Code, prose and configuration-like text, repeated to `size` characters."""
    parts = [r["text"] for r in load(corpora / "secrets" / "benign_python_stdlib.jsonl")]
    parts += [r["text"] for r in load(corpora / "injection" / "injection_core.jsonl")
              if r["label"] != "injection"]
    text = "\n".join(parts)
    return (text * (size // len(text) + 1))[:size]


def secrets_report(corpora: Path, mirrors: Path, compare: bool = True,
                   ) -> tuple[dict[str, Any], list[Floor]]:
    ds = _DetectSecrets() if compare else None
    rows: dict[str, dict[str, float]] = {}
    held = data.noseyparker(mirrors) + data.trufflehog(mirrors) + data.secretlint(mirrors)
    positives = _split(held, "secret")
    if positives:
        _row("held-out recall: fixtures as written", positives, ds, rows)
        for source in ("noseyparker", "trufflehog", "secretlint"):
            _row(f"  {source}", [s for s in positives if s.source.startswith(source)], None,
                 rows)
        prose, variants = data.prose_and_variants(positives)
        _row("held-out recall: alone in prose", prose, ds, rows)
        _row("held-out recall: encoded/split/escaped", variants, ds, rows)
        for name in sorted(data.VARIANTS):
            _row(f"  {name}", [s for s in variants if s.source.endswith("|" + name)], None,
                 rows)
        _row("held-out fixtures' own negatives flagged (near misses)", _split(held, "benign"),
             ds, rows)
    code_docs = (data.source_tree("psf/requests", mirrors, "requests")
                 + data.source_tree("expressjs/express", mirrors, "express"))
    if code_docs:
        _row("held-out FP: requests + express (30-line chunks)", code_docs, ds, rows)
        for kind in ("code", "docs"):
            _row(f"  {kind}", [s for s in code_docs if s.source.endswith(kind)], None, rows)
    validation = data.generated(seed=2)
    _row("validation recall: generated, in context", [
        s for s in validation if s.label == "secret" and s.source.split(":")[0] in
        ("gen", "gen-bare", "gen-tool")], ds, rows)
    _row("validation recall: generated, in prose",
         [s for s in validation if s.source.startswith("gen-prose")], ds, rows)
    _row("validation recall: generated, disguised",
         [s for s in validation if s.source.startswith("gen-variant")], ds, rows)
    _row("validation FP: generated look-alikes", _split(validation, "benign"), ds, rows)
    classes = [data.Sample(text, label, f"class:{cls}")
               for label, cls, text in generated_classes(seed=2)]
    _row("validation recall: generated classes (syntax, tools, hashes)",
         _split(classes, "secret"), ds, rows)
    _row("validation FP: generated class look-alikes", _split(classes, "benign"), ds, rows)
    val_tree = (data.source_tree("pallets/click", mirrors, "click")
                + data.source_tree("koajs/koa", mirrors, "koa"))
    if val_tree:
        _row("validation FP: click + koa (30-line chunks)", val_tree, ds, rows)
    dev: dict[str, float] = {}
    if (corpora / "secrets" / "gitleaks_rules.jsonl").is_file():
        gitleaks = load(corpora / "secrets" / "gitleaks_rules.jsonl")
        stdlib = load(corpora / "secrets" / "benign_python_stdlib.jsonl")
        dev = {
            "gitleaks_recall": _rate(_ours(r["text"] for r in gitleaks
                                           if r["label"] == "secret")),
            "gitleaks_hard_negative_fp": _rate(_ours(r["text"] for r in gitleaks
                                                     if r["label"] == "benign")),
            "stdlib_fp": _rate(_ours(r["text"] for r in stdlib)),
        }
    speed = _secret_speed(corpora)
    report = {"rows": rows, "development": dev, "speed": speed}
    checks = _secret_floors(rows, dev, speed)
    _print_secrets(report, checks)
    return report, checks


def _secret_speed(corpora: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if (corpora / "secrets").is_dir():
        mix = _benign_mix(corpora)
        out["mb_s_benign_mix"] = len(mix) / MB / best_time(lambda: scan_text(mix), 2)
        out["baseline_mb_s"] = len(mix) / MB / best_time(lambda: word_baseline(mix), 2)
    worst: dict[str, float] = {}
    for name, text in pathological().items():
        worst[name] = best_time(partial(scan_text, text), 1)
    out["worst_case_s"] = worst
    return out


def _secret_floors(rows: dict[str, dict[str, float]], dev: dict[str, float],
                   speed: dict[str, Any]) -> list[Floor]:
    checks: list[Floor] = []

    def add(name: str, key: str, limit: float, sense: str) -> None:
        if key in rows:
            checks.append((name, rows[key]["ours"], limit, sense))

    add("secrets held-out recall", "held-out recall: fixtures as written", 0.90, "min")
    add("secrets held-out encoded/split/escaped", "held-out recall: encoded/split/escaped",
        0.60, "min")
    add("secrets held-out FP on code and docs",
        "held-out FP: requests + express (30-line chunks)", 0.005, "max")
    add("secrets validation FP on code and docs", "validation FP: click + koa (30-line chunks)",
        0.005, "max")
    if dev:
        checks.append(("secrets FP on stdlib chunks", dev["stdlib_fp"], 0.005, "max"))
    if "mb_s_benign_mix" in speed:
        checks.append(("secrets MB/s on 5 MB benign mix", speed["mb_s_benign_mix"], 10.0,
                       "min"))
    checks.append(("secrets worst 1 MB input (s)", max(speed["worst_case_s"].values()), 1.0,
                   "max"))
    return checks


def _print_secrets(report: dict[str, Any], checks: list[Floor]) -> None:
    print("Secrets (share of samples with a finding; detect-secrets 1.5 beside, file mode)")
    print(f"  {'':58s} {'n':>6s} {'ours':>8s} {'d-s':>8s}")
    for name, row in report["rows"].items():
        theirs = "" if row["detect_secrets"] != row["detect_secrets"] else \
            f"{row['detect_secrets']:8.2%}"
        print(f"  {name:58s} {row['n']:6.0f} {row['ours']:8.2%} {theirs:>8s}")
    for name, value in report["development"].items():
        print(f"  development corpora {name:38s} {value:8.2%}")
    speed = report["speed"]
    if "mb_s_benign_mix" in speed:
        print(f"  scan_text on a 5 MB benign mix {speed['mb_s_benign_mix']:7.1f} MB/s"
              f"  (one re.finditer(r'\\w+') pass: {speed['baseline_mb_s']:.1f} MB/s)")
    print("  worst case per 1 MB input (ms)")
    for name, sec_s in speed["worst_case_s"].items():
        print(f"    {name:34s} {sec_s * 1000:8.1f}")
    print_floors(checks)


# --------------------------------------------------------------------------- injection


def injection_quality(corpora: Path) -> dict[str, dict[str, float]]:
    records = load(corpora / "injection" / "injection_core.jsonl")
    by_subset: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_subset.setdefault(record["subset"], []).append(record)
    out: dict[str, dict[str, float]] = {}
    for subset, rows in sorted(by_subset.items()):
        worst = []
        for row in rows:
            found = detect_injection(row["text"])
            worst.append(max((RANK[f.severity] for f in found), default=-1))
        out[subset] = {
            "label": 1.0 if rows[0]["label"] == "injection" else 0.0,
            "n": float(len(rows)),
            "any": sum(w >= 0 for w in worst) / len(rows),
            "high": sum(w >= RANK["high"] for w in worst) / len(rows),
        }
    return out


def _deny_shares(rows: list[tuple[str, int, str]]) -> dict[str, float]:
    """Share of each kind reaching the deny level; rows are (text, label, kind)."""
    hits: dict[str, list[bool]] = {}
    for text, label, kind in rows:
        deny = max((RANK[f.severity] for f in detect_injection(text)), default=-1) >= RANK["high"]
        hits.setdefault(kind, []).append(deny)
        if label:
            hits.setdefault("attacks", []).append(deny)
    return {k: sum(v) / len(v) for k, v in sorted(hits.items())} | {
        f"n_{k}": float(len(v)) for k, v in sorted(hits.items())}


def _heldout_and_validation(corpora: Path, mirrors: Path) -> dict[str, Any]:
    """Deny-level recall and false positives on the held-out set and the validation split,
    the worst time on 1 MB hostile inputs, and throughput on a 5 MB benign mix."""
    sys.path.insert(0, str(ROOT / "scripts"))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _injection_heldout import heldout
    from injection_data import PINS, Mirrors, all_records
    # The trainer's seed, without importing the trainer (it needs the `train` extra).
    seed = int(re.search(r"^SEED = (\d+)$", (ROOT / "scripts" / "train_injection.py")
                         .read_text(encoding="utf-8"), re.MULTILINE)[1])  # type: ignore[index]

    report: dict[str, Any] = {}
    if (mirrors / "NVIDIA+garak").is_dir():
        report["heldout"] = _deny_shares([(h.text, h.label, h.kind) for h in heldout(mirrors)])
    if (mirrors / "microsoft+BIPIA").is_dir():
        val = [r for r in all_records(Mirrors(mirrors, PINS), seed) if r.split == "val"]
        report["validation"] = _deny_shares([(r.text, r.label, r.kind) for r in val])
    worst = {name: best_time(partial(detect_injection, text), 1)
             for name, text in pathological().items()}
    report["worst_case_s"] = worst
    mix = injection_mix(corpora)
    # The median of three runs: one run's wall clock moves by a third with the load of
    # other jobs on a shared machine.
    report["mb_s_benign_mix"] = 5 / median_time(lambda: detect_injection(mix), 3)
    return report


def injection_mix(corpora: Path) -> str:
    """The benign documents and prompts of the corpora, repeated to 5 MB."""
    benign = [r["text"] for r in load(corpora / "injection" / "injection_core.jsonl")
              if r["label"] == "benign"]
    benign += [r["text"] for r in load(corpora / "secrets" / "benign_python_stdlib.jsonl")]
    mix = "\n\n".join(benign)
    return (mix * (5 * MB // len(mix) + 1))[:5 * MB]


def print_injection_report(report: dict[str, Any]) -> None:
    print("Injection at the deny level (high): held out, and the validation split")
    for name in ("heldout", "validation"):
        shares = report.get(name)
        if shares is None:
            print(f"  {name}: mirrors absent (pass --mirrors)")
            continue
        for kind in ("attacks", "direct", "indirect", "prompt", "document"):
            if kind in shares:
                what = "recall" if kind in ("attacks", "direct", "indirect") else "FP    "
                print(f"  {name:10s} {what} {kind:9s} {shares[kind]:7.2%}"
                      f"  n={shares['n_' + kind]:.0f}")
    print(f"  worst 1 MB hostile input      {max(report['worst_case_s'].values()):7.3f} s")
    print(f"  5 MB benign mix               {report['mb_s_benign_mix']:7.1f} MB/s")


def injection_report(corpora: Path, mirrors: Path,
                     ) -> tuple[dict[str, Any], list[Floor]]:
    """The development corpora (any severity and the deny level), then the held-out set and
    the model's validation split at the deny level, worst case and throughput."""
    if not (corpora / "injection" / "injection_core.jsonl").is_file():
        print("Injection: corpora not found; nothing measured")
        return {}, []
    quality = injection_quality(corpora)
    print("Injection on the development corpora (share with a finding: any / high or above)")
    for subset, row in quality.items():
        kind = "recall" if row["label"] else "FP    "
        print(f"  {kind} {subset:24s} n={row['n']:4.0f}  any {row['any']:7.2%}"
              f"  high+ {row['high']:7.2%}")
    report = _heldout_and_validation(corpora, mirrors)
    report["quality"] = quality
    print_injection_report(report)
    checks: list[Floor] = [
        ("injection worst 1 MB input (s)", max(report["worst_case_s"].values()), 1.0, "max"),
        ("injection MB/s on a 5 MB benign mix", report["mb_s_benign_mix"], 5.0, "min"),
        ("injection FP at deny on notinject", quality["notinject"]["high"], 0.02, "max"),
        ("injection FP at deny on subagent_definitions",
         quality["subagent_definitions"]["high"], 0.02, "max")]
    for name in ("heldout", "validation"):
        shares = report.get(name)
        if shares is None:
            continue
        checks += [(f"{name} deny recall, attacks", shares["attacks"], 0.60, "min"),
                   (f"{name} deny recall, indirect", shares.get("indirect", 0.0), 0.50, "min")]
        checks += [(f"{name} FP at deny, {k}", shares[k], 0.02, "max")
                   for k in ("prompt", "document") if k in shares]
    print_floors(checks)
    return report, checks


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpora", type=Path, default=next(
        (p for p in (ROOT.parent / "shared" / "corpora", ROOT.parents[1] / "shared" / "corpora")
         if p.is_dir()), ROOT.parent / "shared" / "corpora"))
    parser.add_argument("--mirrors", type=Path, default=data.MIRRORS)
    parser.add_argument("--section", choices=("secrets", "injection"))
    parser.add_argument("--no-compare", action="store_true",
                        help="skip detect-secrets (it takes about a minute)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    reports: dict[str, Any] = {}
    checks: list[Floor] = []
    with contextlib.redirect_stdout(io.StringIO()) if args.json else contextlib.nullcontext():
        _run(args, reports, checks)
    failed = [name for name, value, limit, sense in checks
              if (value < limit if sense == "min" else value > limit)]
    if args.json:
        reports["floors_failed"] = failed
        print(json.dumps(reports, indent=2))
    return 1 if failed else 0


def _run(args: argparse.Namespace, reports: dict[str, Any], checks: list[Floor]) -> None:
    if args.section in (None, "secrets"):
        reports["secrets"], found = secrets_report(args.corpora, args.mirrors,
                                                   compare=not args.no_compare)
        checks += found
    if args.section in (None, "injection"):
        reports["injection"], found = injection_report(args.corpora, args.mirrors)
        checks += found


if __name__ == "__main__":
    sys.exit(main())
