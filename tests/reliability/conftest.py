"""The reliability suites' plugin: figures per suite, and the report when asked for.

`--reliability-report PATH` (or `SMART_ORCHESTRATOR_RELIABILITY_REPORT=PATH`) writes the
figures of this run to PATH at the end; without it nothing is written, so the default
test run never changes the tree.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest

from ._figures import Figures, outcome_from_report, render_report

_FIGURES = Figures()
_HERE = Path(__file__).resolve().parent
ENV_REPORT = "SMART_ORCHESTRATOR_RELIABILITY_REPORT"
HEADER = ("What the reliability suites in `tests/reliability/` prove, with the figures of "
          "the run that wrote this page. A short version of each suite runs in the default "
          "`python -m pytest`; the long versions (marked `slow`) run with the command below, "
          "which also rewrites this page.")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--reliability-report", metavar="PATH", default=None,
                     help="write the reliability figures of this run to PATH (Markdown)")


@pytest.fixture(scope="session")
def figures() -> Figures:
    return _FIGURES


def _ours(nodeid: str) -> bool:
    return nodeid.startswith("tests/reliability/")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not _ours(report.nodeid):
        return
    wasxfail = getattr(report, "wasxfail", None)
    if report.when == "call" or (report.when == "setup" and not report.passed):
        if wasxfail is not None:
            outcome = "xfailed" if report.skipped else "xpassed"
            reason = wasxfail
        elif report.skipped:
            outcome = "skipped"
            longrepr = report.longrepr
            reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        else:
            outcome, reason = report.outcome, ""
            if report.failed:
                reason = str(getattr(report.longrepr, "reprcrash", "") or "").rsplit(": ", 1)[-1]
        _FIGURES.outcomes.append(outcome_from_report(report.nodeid, outcome,
                                                     report.duration, reason))


def pytest_sessionfinish(session: pytest.Session) -> None:
    target = session.config.getoption("--reliability-report") or os.environ.get(ENV_REPORT)
    if not target or not _FIGURES.outcomes:
        return
    args = shlex.join(session.config.invocation_params.args)
    command = f".venv/bin/python -m pytest {args}".strip()
    path = Path(target)
    if not path.is_absolute():
        path = session.config.invocation_params.dir / path
    path.write_text(render_report(_FIGURES, command=command, header=HEADER), encoding="utf-8")
