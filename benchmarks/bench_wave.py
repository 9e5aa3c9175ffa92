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

    .venv/bin/python benchmarks/bench_wave.py --workers 3 [--worker-concurrency 2]
        [--worker-budget-mb 1024] [--store postgresql://...]

Workers mode: the same wave dispatched to `smart-orchestrator worker` processes (each
its own host id, data folder and checkout of a bare repository serving as the wave's
remote), in rounds alternating one worker with `--workers` of them, each round with fresh
workers that joined before the wave is spawned. The store is `--store` (a team PostgreSQL)
or a SQLite file in a scratch folder. Prints wall times against the ideal for the
capacity, and each worker's peak process-tree memory (sampled every 50 ms) against its
budget. Exits 1 unless the wall time falls with the added workers and every worker stays
within its budget.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import statistics
import subprocess
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
    parser.add_argument("--workers", type=int, default=0,
                        help="compare one worker with this many (workers mode)")
    parser.add_argument("--worker-concurrency", type=int, default=2)
    parser.add_argument("--worker-budget-mb", type=int, default=1024)
    parser.add_argument("--store", default=None,
                        help="workers mode: the team store (default: a SQLite file)")
    args = parser.parse_args()
    claude = find_claude_bin()
    if claude is None:
        print("claude_agent_sdk/_bundled/claude is missing", file=sys.stderr)
        return 2
    scratch = Path(tempfile.mkdtemp(prefix="bench-wave-"))
    try:
        if args.workers:
            return _bench_workers(args, claude, scratch)
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


# -- workers mode ----------------------------------------------------------------------------

def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=b", "-c", "user.email=b@b", *args], cwd=cwd,
                   check=True, capture_output=True)


def _bare_remote(scratch: Path) -> Path:
    seed = scratch / "seed"
    seed.mkdir()
    _git(seed, "init", "-q", "-b", "main")
    (seed / "README.md").write_text("bench\n")
    _git(seed, "add", "-A")
    _git(seed, "commit", "-q", "-m", "base")
    _git(scratch, "clone", "-q", "--bare", str(seed), str(scratch / "team.git"))
    return scratch / "team.git"


class WorkerTrees:
    """Each worker process's peak tree memory (itself and its agents), sampled in a thread."""

    def __init__(self, pids: list[int], interval_s: float = 0.05) -> None:
        self.peaks = {pid: 0 for pid in pids}
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        procs = {pid: psutil.Process(pid) for pid in self.peaks}
        while not self._stop.wait(self._interval):
            for pid, proc in procs.items():
                total = 0
                try:
                    tree = [proc, *proc.children(recursive=True)]
                except psutil.Error:
                    continue
                for member in tree:
                    try:
                        total += member.memory_info().rss
                    except psutil.Error:
                        continue
                self.peaks[pid] = max(self.peaks[pid], total)

    def __enter__(self) -> WorkerTrees:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _start_workers(n: int, tag: str, args: argparse.Namespace, scratch: Path,
                   env: dict[str, str]) -> list[tuple[subprocess.Popen[bytes], Path]]:
    started = []
    for i in range(n):
        log = scratch / f"worker-{tag}-{i}.log"
        worker_env = dict(env, SMART_ORCHESTRATOR_HOST_ID=f"bench-{tag}-{i}",
                          SMART_ORCHESTRATOR_DATA=str(scratch / f"data-{tag}-{i}"))
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "smart_orchestrator.cli", "worker",
                 "--concurrency", str(args.worker_concurrency),
                 "--team-concurrency", str(args.worker_concurrency * args.workers),
                 "--memory-mb", str(args.worker_budget_mb),
                 "--checkout", str(scratch / f"checkout-{tag}-{i}")],
                env=worker_env, cwd=str(scratch), stdout=out, stderr=subprocess.STDOUT)
        started.append((proc, log))
    deadline = time.monotonic() + 180
    while not all("serving the wave queue" in log.read_text(errors="replace")
                  for _, log in started):
        if time.monotonic() > deadline or any(p.poll() is not None for p, _ in started):
            raise SystemExit("a worker did not join: " + " | ".join(
                log.read_text(errors="replace")[-800:] for _, log in started))
        time.sleep(0.2)
    return started


def _stop_workers(started: list[tuple[subprocess.Popen[bytes], Path]]) -> None:
    for proc, _ in started:
        proc.send_signal(signal.SIGTERM)
    for proc, _ in started:
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def _bench_workers(args: argparse.Namespace, claude: Path, scratch: Path) -> int:
    floors = Floors()
    for name in ("home", "tmp", "work"):
        (scratch / name).mkdir()
    remote = _bare_remote(scratch)
    store_url = args.store or str(scratch / "team.db")
    store_var = "SMART_ORCHESTRATOR_STORE" if args.store else "SMART_ORCHESTRATOR_DB"
    os.environ[store_var] = store_url
    os.environ["SMART_ORCHESTRATOR_WORKTREES"] = str(scratch / "driver-worktrees")
    os.environ.setdefault("SMART_ORCHESTRATOR_DBOS_SCHEMA",
                          f"dbos_bench_{os.urandom(3).hex()}")
    from smart_orchestrator.store import open_store
    from smart_orchestrator.waves.worker import read_heartbeat

    plan = WavePlan.model_validate(dict(fan_plan(args.tasks).model_dump(mode="json"),
                                        remote=str(remote), gates=False))
    walls: dict[int, list[float]] = {1: [], args.workers: []}
    cpus: dict[int, list[float]] = {1: [], args.workers: []}
    refusals: list[dict[str, int]] = []  # each worker's admission waits, by rule
    peaks: list[tuple[int, int, int]] = []  # (workers, sampled peak, admission's peak)
    with ScriptedModel() as model:
        def answer(req: ModelRequest) -> Any:
            return text("done", delay=args.delay) if "BENCH " in req.first_user_text else None

        model.on(answer)
        env = offline_env(model_url=model.base_url, home=scratch / "home",
                          tmpdir=scratch / "tmp")
        env.update({store_var: store_url}, PYTHONPATH=str(ROOT),
                   SMART_ORCHESTRATOR_DBOS_SCHEMA=os.environ["SMART_ORCHESTRATOR_DBOS_SCHEMA"])
        policy_store = SqliteStore(scratch / "policy.db")
        runner = SdkAgentRunner(cli_path=claude, extra_env=env,
                                make_hooks=wave_policy_hooks(policy_store))
        singles = [anyio.run(one_agent, runner, scratch / "work", i) for i in range(3)]
        single = statistics.median(singles)
        print(f"one agent alone: {single:.2f} s (median of {len(singles)}; model reply "
              f"{args.delay:g} s)")
        store = open_store(store_url)
        service = WaveService(store, runner, WaveConfig(tick_s=0.1, dispatch="workers"))
        for r in range(args.rounds):
            order = (1, args.workers) if r % 2 == 0 else (args.workers, 1)
            for n in order:
                started = _start_workers(n, f"r{r}n{n}", args, scratch, env)
                try:
                    with WorkerTrees([p.pid for p, _ in started]) as trees:
                        run_id = service.spawn(plan, cwd=str(scratch / "work"))
                        service.wait_until_done(run_id, 1800)
                    status = service.status(run_id)
                    if status.state != "completed":
                        raise SystemExit(f"wave ended {status.state}: {status.reason}")
                    # The wave's own span in the store: the driver's first spawn also
                    # imports and launches DBOS, which is no part of the comparison.
                    wall = ((status.finished_us or 0) - status.created_us) / 1e6
                    walls[n].append(wall)
                    for (_, log), pid in zip(started, trees.peaks, strict=True):
                        beat = _beat_of(store, read_heartbeat, log) or {}
                        peaks.append((n, trees.peaks[pid],
                                      int(beat.get("peak_tree_rss_bytes", 0))))
                        refusals.append(dict(beat.get("admission_refusals") or {}))
                    # The workers' CPU with their agents' (reaped children count).
                    cpu = 0.0
                    for proc, _ in started:
                        times = psutil.Process(proc.pid).cpu_times()
                        cpu += times.user + times.system + times.children_user \
                            + times.children_system
                    cpus[n].append(cpu)
                finally:
                    _stop_workers(started)
                print(f"  round {r + 1}: {n} worker(s) x {args.worker_concurrency} agents: "
                      f"{wall:.2f} s, {cpu:.0f} CPU s; peaks "
                      + ", ".join(f"{p / MIB:.0f}" for w, p, _ in peaks[-n:])
                      + f" MiB (budget {args.worker_budget_mb} MiB each); admission "
                      f"waits {refusals[-n:]}")
        service.close()
        store.close()
        policy_store.close()
    middle = args.tasks - 2
    one, many = statistics.median(walls[1]), statistics.median(walls[args.workers])
    ideal = {n: single * (2 + math.ceil(middle / (n * args.worker_concurrency)))
             for n in walls}
    top = max(p for _, p, _ in peaks)
    print(f"wave of {args.tasks} tasks (1 -> {middle} -> 1) on workers of "
          f"{args.worker_concurrency} agents, medians of {args.rounds} rounds, store "
          f"{'PostgreSQL' if store_url.startswith('postgres') else 'SQLite'}")
    print(f"  1 worker         {one:7.2f} s   ideal {ideal[1]:6.2f} s")
    print(f"  {args.workers} workers        {many:7.2f} s   ideal {ideal[args.workers]:6.2f} s")
    print(f"  speed-up         {one / many:7.2f}x  ideal {ideal[1] / ideal[args.workers]:.2f}x")
    cores = os.cpu_count() or 1
    print(f"  CPU of workers and their agents: {statistics.median(cpus[args.workers]):.0f} s "
          f"per wave = {statistics.median(cpus[args.workers]) / cores:.0f} s of wall time on "
          f"this machine's {cores} cores at best (the workers here share one machine; "
          f"load average at the end {os.getloadavg()[0]:.1f})")
    print(f"  peak per worker  {top / MIB:7.0f} MiB sampled (worker process and its agents), "
          f"{max(a for _, _, a in peaks) / MIB:.0f} MiB seen by its admission, budget "
          f"{args.worker_budget_mb} MiB")
    floors.check(f"{args.workers} workers' wall time vs one worker's", many / one, 0.99, "x")
    floors.check("peak memory per worker", top / MIB, args.worker_budget_mb, "MiB")
    return 1 if floors.failed else 0


def _beat_of(store: Any, read: Any, log: Path) -> dict[str, Any] | None:
    """The last heartbeat of the worker whose log is `log` (it names its executor id)."""
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("smart-orchestrator worker ") and ": serving" in line:
            executor = line[len("smart-orchestrator worker "):].split(": serving")[0]
            beat = read(store, executor)
            return dict(beat) if beat else None
    return None


if __name__ == "__main__":
    raise SystemExit(main())
