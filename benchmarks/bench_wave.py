"""A 40-task fan-out/fan-in wave of real agents against the scripted model.

    .venv/bin/python benchmarks/bench_wave.py [--tasks 40] [--delay 1.0] [--budget-mb 1536]

Agents are the bundled Claude Code CLI through claude-agent-sdk; each model reply takes
`--delay` seconds, as a real model's would. Measured in this one process run:
  * one agent alone: the baseline for the ideal wall time at the admitted concurrency;
  * the wave under WaveService (store, audit, admission, contracts, recovery), in rounds
    alternating with the same agents in the same dependency order under a bare capacity
    limiter at the concurrency admission chose;
  * orchestration overhead: the wave's wall time minus that of a zero-latency scheduler
    replaying the same plan with the agent durations this wave measured, so the agents'
    own speed (which on a small or shared machine varies by seconds between runs) cancels.
Peak process-tree memory is sampled independently every 50 ms. Exits 1 if a floor from
the waves issue is missed: overhead <= 10% of the ideal wall time; peak memory <= budget.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from _common import Floors  # noqa: E402
from harness import ModelRequest, ScriptedModel, find_claude_bin, offline_env, text  # noqa: E402

from mcp_server.wave_tools import wave_policy_hooks  # noqa: E402
from smart_orchestrator.store import SqliteStore  # noqa: E402
from smart_orchestrator.waves import (  # noqa: E402
    AgentRequest,
    AgentSpec,
    WaveConfig,
    WavePlan,
    WaveService,
)
from smart_orchestrator.waves.admission import MIB, AdmissionConfig  # noqa: E402
from smart_orchestrator.waves.runner import SdkAgentRunner  # noqa: E402


class TreeMemory:
    """Peak resident memory of every descendant of this process, sampled in a thread."""

    def __init__(self, interval_s: float = 0.05) -> None:
        self.peak = 0
        self.cpu_s = 0.0  # this sampler's own CPU, not the orchestrator's
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process(os.getpid())
        started = time.thread_time()
        while not self._stop.wait(self._interval):
            total = 0
            for proc in me.children(recursive=True):
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    continue
            self.peak = max(self.peak, total)
        self.cpu_s = time.thread_time() - started

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def fan_plan(n: int) -> WavePlan:
    middle = [f"m{i:02d}" for i in range(n - 2)]
    tasks: list[dict[str, Any]] = [{"id": "root", "prompt": "BENCH root: split the work"}]
    tasks += [{"id": m, "prompt": f"BENCH {m}: do one part", "depends_on": ["root"]}
              for m in middle]
    tasks.append({"id": "sink", "prompt": "BENCH sink: merge", "depends_on": middle})
    return WavePlan.model_validate({"tasks": tasks})


def request(task_id: str, prompt: str, workdir: Path) -> AgentRequest:
    return AgentRequest(run_id="bare", task_id=task_id, attempt=1, prompt=prompt,
                        agent=AgentSpec(), cwd=str(workdir), timeout_s=120,
                        marker=f"bare/{task_id}/1")


async def one_agent(runner: SdkAgentRunner, workdir: Path, i: int) -> float:
    started = time.monotonic()
    outcome = await runner.run(request(f"single{i}", f"BENCH single{i}: alone", workdir))
    if not outcome.ok:
        raise SystemExit(f"baseline agent failed: {outcome.error_class}: {outcome.reason}")
    return time.monotonic() - started


async def bare_wave(runner: SdkAgentRunner, plan: WavePlan, workdir: Path,
                    concurrency: int) -> float:
    """The same agents in dependency order with nothing but a capacity limiter."""
    limiter = anyio.CapacityLimiter(concurrency)

    async def run(task_id: str, prompt: str) -> None:
        async with limiter:
            outcome = await runner.run(request(task_id, prompt, workdir))
        if not outcome.ok:
            raise SystemExit(f"bare agent {task_id} failed: {outcome.reason}")

    started = time.monotonic()
    root, *middle, sink = plan.tasks
    await run(root.id, root.prompt)
    async with anyio.create_task_group() as tg:
        for task in middle:
            tg.start_soon(run, task.id, task.prompt)
    await run(sink.id, sink.prompt)
    return time.monotonic() - started


def run_wave(runner: SdkAgentRunner, plan: WavePlan, workdir: Path, db: Path,
             config: WaveConfig) -> tuple[float, float, Any]:
    """Wall time, this process's CPU seconds, and (status, admission waits, peak memory)."""
    store = SqliteStore(db)
    service = WaveService(store, runner, config)
    me = psutil.Process(os.getpid())
    cpu = sum(me.cpu_times()[:2])
    with TreeMemory() as memory:
        started = time.monotonic()
        run_id = service.spawn(plan, cwd=str(workdir))
        service.wait_until_done(run_id, 1800)
        wall = time.monotonic() - started
    cpu = sum(me.cpu_times()[:2]) - cpu - memory.cpu_s
    status = service.status(run_id)
    refusals = service.admission().refusals
    service.close()
    store.close()
    if status.state != "completed":
        raise SystemExit(f"wave ended {status.state}: {status.reason}")
    return wall, cpu, (status, refusals, memory.peak)


def zero_latency_makespan(plan: WavePlan, status: Any, concurrency: int) -> float:
    """Replay the plan with the measured agent durations, starting each task the instant
    its dependencies are done and a slot is free, in the scheduler's order."""
    duration = {t.id: (t.finished_us - t.started_us) / 1e6 for t in status.tasks}
    done_at: dict[str, float] = {}
    running: list[tuple[float, str]] = []  # (finish time, task)
    now, pending = 0.0, [t for t in plan.tasks]
    while pending or running:
        ready = [t for t in pending if all(d in done_at and done_at[d] <= now
                                           for d in t.depends_on)]
        for task in ready[:concurrency - len(running)]:
            running.append((now + duration[task.id], task.id))
            pending.remove(task)
        running.sort()
        now, finished = running.pop(0)
        done_at[finished] = now
    return now


def run_bare(runner: SdkAgentRunner, plan: WavePlan, workdir: Path,
             concurrency: int) -> tuple[float, float]:
    me = psutil.Process(os.getpid())
    cpu = sum(me.cpu_times()[:2])
    wall = anyio.run(bare_wave, runner, plan, workdir, concurrency)
    return wall, sum(me.cpu_times()[:2]) - cpu


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--delay", type=float, default=2.0, help="seconds per model reply")
    parser.add_argument("--budget-mb", type=int, default=1536)
    parser.add_argument("--cap", type=int, default=8)
    parser.add_argument("--cpu-busy", type=float, default=95.0,
                        help="admission holds new agents at this CPU percent")
    parser.add_argument("--rounds", type=int, default=3,
                        help="wave and bare runs alternate, in turn first; the best of each "
                             "is compared")
    args = parser.parse_args()
    claude = find_claude_bin()
    if claude is None:
        print("claude_agent_sdk/_bundled/claude is missing", file=sys.stderr)
        return 2
    scratch = Path(tempfile.mkdtemp(prefix="bench-wave-"))
    try:
        return _bench(args, claude, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _bench(args: argparse.Namespace, claude: Path, scratch: Path) -> int:
    floors = Floors()
    for name in ("home", "tmp", "work"):
        (scratch / name).mkdir()
    budget = args.budget_mb * MIB
    config = WaveConfig(admission=AdmissionConfig(max_agents=args.cap, memory_budget_bytes=budget,
                                                  cpu_busy_percent=args.cpu_busy), tick_s=0.1)
    with ScriptedModel() as model:
        def answer(req: ModelRequest) -> Any:
            return text("done", delay=args.delay) if "BENCH " in req.first_user_text else None

        model.on(answer)
        env = offline_env(model_url=model.base_url, home=scratch / "home",
                          tmpdir=scratch / "tmp")
        # As the server runs them: with the policy core's hooks on every agent.
        policy_store = SqliteStore(scratch / "policy.db")
        runner = SdkAgentRunner(cli_path=claude, extra_env=env,
                                make_hooks=wave_policy_hooks(policy_store))
        workdir = scratch / "work"
        plan = fan_plan(args.tasks)

        singles = [anyio.run(one_agent, runner, workdir, i) for i in range(3)]
        single = statistics.median(singles)
        print(f"one agent alone: {single:.2f} s (median of {len(singles)}; model reply "
              f"{args.delay:g} s)")
        waves: list[tuple[float, float, Any]] = []
        bares: list[tuple[float, float]] = []
        admitted = 0
        for r in range(args.rounds):
            # Alternate which goes first, so drift in the machine's load hits both; the
            # first round starts with the wave, which tells the bare run its concurrency.
            for kind in ("wave", "bare") if r % 2 == 0 else ("bare", "wave"):
                if kind == "wave":
                    waves.append(run_wave(runner, plan, workdir,
                                          scratch / f"state{r}.db", config))
                    admitted = admitted or int(waves[0][2][0].stats["max_running"])
                else:
                    bares.append(run_bare(runner, plan, workdir, admitted))
            wave_s, _, (status, refusals, _) = waves[-1]
            print(f"  round {r + 1}: wave {wave_s:.2f} s (max {status.stats['max_running']} "
                  f"running; admission waits {refusals or 'none'}), "
                  f"bare {bares[-1][0]:.2f} s")
        policy_store.close()

    wall = min(w[0] for w in waves)
    bare = min(b[0] for b in bares)
    wave_cpu = statistics.median(w[1] for w in waves)
    bare_cpu = statistics.median(b[1] for b in bares)
    wave_median = statistics.median(w[0] for w in waves)
    bare_median = statistics.median(b[0] for b in bares)
    middle = args.tasks - 2
    ideal = single * (2 + math.ceil(middle / admitted))
    # Per round: the wave's own span (store timestamps) minus the zero-latency replay.
    overheads = []
    for _, _, (status, _, _) in waves:
        span = (status.finished_us - status.created_us) / 1e6
        overheads.append(span - zero_latency_makespan(plan, status, admitted))
    overhead = statistics.median(overheads)
    peak_seen = max(int(w[2][0].stats["peak_tree_rss_bytes"]) for w in waves)
    peak = max(w[2][2] for w in waves)
    print(f"wave of {args.tasks} tasks (1 -> {middle} -> 1), admitted concurrency {admitted} "
          f"(cap {args.cap}, budget {args.budget_mb} MiB), best of {args.rounds}")
    print(f"  wall time        {wall:7.2f} s   ideal {ideal:6.2f} s   ratio {wall / ideal:.2f}x")
    print(f"  bare limiter     {bare:7.2f} s   wave/bare ratio {wall / bare:.3f}x "
          f"(medians {wave_median:.2f} / {bare_median:.2f} s = "
          f"{wave_median / bare_median:.3f}x)")
    print(f"  overhead         {overhead:7.2f} s   {overhead / args.tasks * 1000:.1f} ms per task"
          f"   {overhead / ideal * 100:.2f}% of ideal (median of rounds: "
          f"{', '.join(f'{o:.2f}' for o in overheads)} s; wave minus zero-latency replay)")
    print(f"  orchestrator CPU {wave_cpu:7.2f} s   bare {bare_cpu:.2f} s (medians)   "
          f"{(wave_cpu - bare_cpu) / args.tasks * 1000:.1f} ms CPU per task")
    print(f"  peak tree memory {peak / MIB:7.0f} MiB sampled every 50 ms, "
          f"{peak_seen / MIB:.0f} MiB seen by admission, budget {args.budget_mb} MiB "
          f"({peak / budget:.2f} of budget)")
    floors.check("orchestration overhead vs ideal", overhead / ideal * 100, 10, "%")
    floors.check("peak process-tree memory", peak / MIB, args.budget_mb, "MiB")
    return 1 if floors.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
