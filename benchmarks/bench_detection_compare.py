"""Both detectors against those of an earlier commit, timed alternately in one process.

    .venv/bin/python benchmarks/bench_detection_compare.py --baseline COMMIT [--runs 7]
        [--corpora PATH]

The load of a shared machine moves one run's time by a third within minutes, so a speed
change is measured here rather than from two bench runs: `smart_orchestrator/detect/` at
COMMIT is extracted (`git archive`) into a temporary package imported beside the working
tree's, both are run on the bench's 5 MB benign mixes (`bench_detection.py`), each run
timed in wall clock and in process time, and the medians and ratios printed with the load
average. Whether both give the same findings on each mix is printed too.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_detection import MB, _benign_mix, injection_mix  # noqa: E402

from smart_orchestrator.detect import injection, secrets  # noqa: E402


def _baseline(commit: str, into: Path) -> tuple[ModuleType, ModuleType]:
    """The baseline's `secrets` and `injection` modules, as package `baseline_detect`."""
    archive = into / "detect.tar"
    with archive.open("wb") as fh:
        subprocess.run(["git", "-C", str(ROOT), "archive", commit, "smart_orchestrator/detect"],
                       stdout=fh, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    (into / "smart_orchestrator" / "detect").rename(into / "baseline_detect")
    sys.path.insert(0, str(into))
    return (importlib.import_module("baseline_detect.secrets"),
            importlib.import_module("baseline_detect.injection"))


def _mb_s(fn: Callable[[str], object], text: str) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn(text)
    size = len(text) / MB
    return size / (time.perf_counter() - wall), size / (time.process_time() - cpu)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", required=True, help="commit to compare with")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--corpora", type=Path, default=next(
        (p for p in (ROOT.parent / "shared" / "corpora", ROOT.parents[1] / "shared" / "corpora")
         if p.is_dir()), ROOT.parent / "shared" / "corpora"))
    args = parser.parse_args(argv)
    if not (args.corpora / "secrets").is_dir():
        print(f"corpora not found under {args.corpora}; nothing measured")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        old_secrets, old_injection = _baseline(args.baseline, Path(tmp))
        cases = {
            "scan_text": (_benign_mix(args.corpora), old_secrets.scan_text, secrets.scan_text),
            "detect_injection": (injection_mix(args.corpora), old_injection.detect_injection,
                                 injection.detect_injection),
        }
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        for name, (text, old, new) in cases.items():
            same = [tuple(f) for f in old(text)] == [tuple(f) for f in new(text)]
            print(f"{name}: same findings on its 5 MB mix: {'yes' if same else 'NO'}")
        times: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for _ in range(args.runs):
            for name, (text, old, new) in cases.items():
                times.setdefault((name, "baseline"), []).append(_mb_s(old, text))
                times.setdefault((name, "now"), []).append(_mb_s(new, text))
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for name in cases:
        for i, clock in enumerate(("wall", "process")):
            before = statistics.median(t[i] for t in times[name, "baseline"])
            after = statistics.median(t[i] for t in times[name, "now"])
            print(f"  {name:17s} {clock:8s} baseline {before:6.2f} MB/s  now {after:6.2f} MB/s"
                  f"  x{after / before:.2f}  ({args.runs} runs each, medians)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
