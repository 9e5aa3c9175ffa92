"""The run report: read from the store, one self-contained HTML page, rendered by a real
browser (headless Chromium) and checked as a page, not only as a string."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import sys
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from smart_orchestrator.audit import AuditLog
from smart_orchestrator.report import load_run, render_html
from smart_orchestrator.store import SqliteStore
from smart_orchestrator.waves import WaveConfig, WavePlan, WaveService
from smart_orchestrator.waves.admission import MIB, AdmissionConfig
from smart_orchestrator.waves.recovery import ErrorClass, RetryPolicy
from tests.wave_fakes import FixedMetrics, ScriptedRunner, Step

REPO_ROOT = Path(__file__).resolve().parents[2]
HOSTILE = "<script>alert('x')</script> & </script>"
CONFIG = WaveConfig(admission=AdmissionConfig(max_agents=4, memory_budget_bytes=4096 * MIB,
                                              reserve_bytes=0),
                    retry=RetryPolicy(initial_s=0.0), tick_s=0.01)
PLAN = WavePlan.model_validate({"name": "report <fixture>", "tasks": [
    {"id": "scan", "prompt": "scan", "output_schema": {"type": "object", "required": ["n"]}},
    {"id": "flaky", "prompt": "flaky"},
    {"id": "plan", "prompt": "plan", "depends_on": ["scan", "flaky"]},
    {"id": "bad", "prompt": "bad", "depends_on": ["scan"]},
    {"id": "after-bad", "prompt": "after", "depends_on": ["bad"]},
    {"id": "final", "prompt": "final", "depends_on": ["plan"]}]})


@pytest.fixture
def run(store: SqliteStore, tmp_path: Path) -> Iterator[str]:
    """A finished wave with a reformat, a retry, a failure and a skipped task, then gates."""
    runner = ScriptedRunner({
        "scan": Step(answers=("not json", '{"n": 3}')),
        "flaky": [Step(error=ErrorClass.SERVER, reason="HTTP 529"), Step()],
        "bad": Step(error=ErrorClass.BAD_REQUEST, reason=HOSTILE)})
    service = WaveService(store, runner, CONFIG, metrics=FixedMetrics())
    try:
        run_id = service.spawn(PLAN, cwd=str(tmp_path))
        assert service.wait_until_done(run_id, 30)
    finally:
        service.close()
    audit = AuditLog(store)
    audit.record("gate.check", tree="ab" * 20, name="tests", tier=1, status="failed",
                 exit_code=1, duration_ms=1200)
    audit.record("gate.result", tree="ab" * 20, passed=False, blocking_tier=1,
                 reason="tier 1 (automated) failed: tests", ran=1, cached=0)
    yield run_id


def test_report_data_joins_the_wave_its_attempts_and_the_gates(store: SqliteStore,
                                                               run: str) -> None:
    data = load_run(store, run)
    assert data.snapshot.state == "partial"
    tasks = {t.id: t for t in data.snapshot.tasks}
    assert (tasks["scan"].reformats, tasks["flaky"].attempts) == (1, 2)
    assert tasks["after-bad"].state == "skipped"
    outcomes = [(a.task_id, a.attempt, a.outcome) for a in data.attempts]
    assert ("flaky", 1, "retrying") in outcomes and ("flaky", 2, "succeeded") in outcomes
    assert data.attempt_costs[("scan", 1)].input_tokens == 10
    [gate] = data.gates
    assert (gate.passed, gate.blocking_tier, [c.name for c in gate.checks]) == (False, 1,
                                                                               ["tests"])
    assert data.audit.ok and data.audit_events >= 12


def test_page_is_self_contained_and_escapes_what_agents_wrote(store: SqliteStore,
                                                              run: str) -> None:
    page = render_html(load_run(store, run))
    assert "<script>alert" not in page and "&lt;script&gt;alert" in page
    assert page.count("</script>") == 2, "a reason must not close the data block"
    for external in ("http://", "https://", "<link", "@import", " src=", "url(http"):
        assert external not in page
    assert "default-src 'none'" in page


def test_cli_writes_the_report_of_the_latest_wave(db_path: Path, run: str,
                                                  tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    done = subprocess.run([sys.executable, "-m", "smart_orchestrator.cli", "report", "latest",
                           "-o", str(out)], capture_output=True, text=True, check=False,
                          cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    assert f"the run report of {run}" in done.stdout
    assert run in out.read_text()


# -- in a browser ----------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium not installed (Debian: apt-get install -y "
                             "chromium; .ci/run installs it)")


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={tmp_path / 'chromium-profile'}", *args],
        capture_output=True, text=True, timeout=120, check=False)


def _png_pixels(path: Path) -> tuple[int, int, Counter[tuple[int, ...]]]:
    """Decode an 8-bit RGB/RGBA PNG with the standard library: (width, height, colours)."""
    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(raw):
        length, kind = struct.unpack(">I4s", raw[pos:pos + 8])
        body = raw[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and colour in (2, 6)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    data, stride = zlib.decompress(idat), width * channels
    pixels: Counter[tuple[int, ...]] = Counter()
    previous = bytearray(stride)
    for row in range(height):
        line = data[row * (stride + 1):(row + 1) * (stride + 1)]
        kind, current = line[0], bytearray(line[1:])
        for i in range(stride):
            left = current[i - channels] if i >= channels else 0
            up, corner = previous[i], previous[i - channels] if i >= channels else 0
            if kind == 1:
                current[i] = (current[i] + left) & 0xFF
            elif kind == 2:
                current[i] = (current[i] + up) & 0xFF
            elif kind == 3:
                current[i] = (current[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                current[i] = (current[i] + pred) & 0xFF
        pixels.update(tuple(current[i:i + 3]) for i in range(0, stride, channels))
        previous = current
    return width, height, pixels


@needs_chromium
def test_browser_runs_the_page_script_and_shows_every_part(store: SqliteStore, run: str,
                                                           tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(render_html(load_run(store, run)))
    done = _chromium(tmp_path, "--virtual-time-budget=3000", "--dump-dom", page.as_uri())
    dom = done.stdout
    assert done.returncode == 0 and "</html>" in dom, done.stderr[-2000:]
    assert '<body data-ready="true">' in dom, "the page script did not run to its end"
    # The detail panel starts on the failed task, filled from the embedded data.
    assert '<aside id="detail" data-task="bad">' in dom
    assert "#1 failed (full context)" in dom and "&lt;script&gt;alert" in dom
    assert dom.count('data-local="true"') >= 3, "times not shown in local time"
    timeline = dom.split('<svg id="timeline"', 1)[1].split("</svg>", 1)[0]
    assert timeline.count('<g class="attempt"') == 6  # flaky twice, after-bad never
    assert 'data-state="retrying"' in timeline and "skipped: never started" in timeline
    graph = dom.split('<svg id="graph"', 1)[1].split("</svg>", 1)[0]
    assert len(re.findall(r'<g class="node task', graph)) == 6
    assert graph.count('class="edge') == 5
    assert '<table id="gates">' in dom and "blocked at tier 1" in dom


@needs_chromium
def test_screenshot_shows_the_state_colours(store: SqliteStore, run: str,
                                            tmp_path: Path) -> None:
    page, shot = tmp_path / "report.html", tmp_path / "report.png"
    page.write_text(render_html(load_run(store, run)))
    done = _chromium(tmp_path, "--window-size=1200,900", "--virtual-time-budget=3000",
                     f"--screenshot={shot}", page.as_uri())
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    width, height, pixels = _png_pixels(shot)
    assert (width, height) == (1200, 900)
    white = pixels[(255, 255, 255)]
    assert white < 0.95 * width * height, "the page is blank"
    for name, rgb in (("succeeded", (0x2E, 0x7D, 0x32)), ("failed", (0xC6, 0x28, 0x28))):
        assert pixels[rgb] > 200, f"no {name} colour on screen"
