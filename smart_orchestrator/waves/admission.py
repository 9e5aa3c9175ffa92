"""Admission control: how many agents may run at once, decided from measurements.

Each running agent is charged the larger of its measured process-tree RSS and the
per-agent estimate; a new agent is admitted only if the charges plus one more estimate fit
the memory budget, the system keeps a reserve free, the CPU is not saturated and the cap
is not reached. The estimate follows the largest tree measured so far, with a margin, so
later admissions use what agents really cost. When system metrics cannot be read, one
agent runs at a time and the reason is reported.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Protocol

from ..resources import SystemSnapshot, process_tree_rss, sample_system

__all__ = ["AdmissionConfig", "AdmissionStats", "Decision", "Metrics", "PsutilMetrics",
           "ResourceManager", "Slots"]

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class AdmissionConfig:
    max_agents: int = 4
    memory_budget_bytes: int | None = None  # None: `budget_fraction` of available memory
    budget_fraction: float = 0.5
    agent_estimate_bytes: int = 256 * MIB
    estimate_margin: float = 1.15
    reserve_bytes: int = 512 * MIB
    cpu_busy_percent: float = 95.0
    # Averaged over this many samples: an agent's start-up burst is not an overload, a
    # machine busy for seconds is.
    cpu_window: int = 6


class Metrics(Protocol):
    def system(self) -> SystemSnapshot: ...

    def trees_rss(self, pids: list[int]) -> dict[int, int]: ...


class Slots(Protocol):
    """Room shared beyond this server: every agent on the machine, subagents included."""

    def take(self, lease_id: str, agent_type: str) -> str | None: ...  # why not, or None

    def give_back(self, lease_id: str) -> None: ...


class PsutilMetrics:
    def system(self) -> SystemSnapshot:
        return sample_system()

    def trees_rss(self, pids: list[int]) -> dict[int, int]:
        return {pid: process_tree_rss(pid) for pid in pids}


@dataclass(frozen=True, slots=True)
class Decision:
    admitted: bool
    reason: str = ""
    rule: str = ""  # which limit said no: metrics, cap, memory, system_memory, cpu, machine
    impossible: bool = False  # even an idle machine could not take one agent


@dataclass(frozen=True, slots=True)
class AdmissionStats:
    budget_bytes: int
    estimate_bytes: int
    running: int
    committed_bytes: int
    peak_total_bytes: int
    peak_agent_bytes: int
    degraded: str | None
    waiting_reason: str | None
    refusals: dict[str, int]  # checks that said "not yet", by rule


@dataclass(slots=True)
class _Agent:
    pid: int | None = None
    rss: int = 0  # last measurement
    peak: int = 0
    group: Hashable = None


@dataclass(slots=True)
class _Peaks:
    total: int = 0
    agent: int = 0
    by_group: dict[Hashable, int] = field(default_factory=dict)


class ResourceManager:
    """Shared by every wave of one server; `sample()` runs on a short tick."""

    def __init__(self, config: AdmissionConfig, metrics: Metrics | None = None,
                 slots: Slots | None = None) -> None:
        self._config = config
        self._metrics = metrics or PsutilMetrics()
        self._slots = slots
        self._lock = threading.Lock()
        self._agents: dict[Hashable, _Agent] = {}
        self._peaks = _Peaks()
        self._estimate = config.agent_estimate_bytes
        self._waiting: str | None = None
        self._refusals: dict[str, int] = {}
        self._snapshot = self._metrics.system()
        self._cpu: deque[float] = deque(maxlen=max(1, config.cpu_window))
        self._degraded = _degraded_note(self._snapshot)
        if config.memory_budget_bytes is not None:
            self._budget = config.memory_budget_bytes
        elif self._snapshot.ok:
            self._budget = int(self._snapshot.available_bytes * config.budget_fraction)
        else:
            self._budget = config.agent_estimate_bytes

    @property
    def budget_bytes(self) -> int:
        return self._budget

    def try_admit(self, key: Hashable, *, group: Hashable = None,
                  agent_type: str = "general") -> Decision:
        with self._lock:
            decision = self._decide()
            if decision.admitted and self._slots is not None:
                busy = self._slots.take(_lease_id(key), agent_type)
                if busy is not None:
                    decision = Decision(False, busy, "machine")
            self._waiting = None if decision.admitted else decision.reason
            if not decision.admitted:
                self._refusals[decision.rule] = self._refusals.get(decision.rule, 0) + 1
            if decision.admitted:
                self._agents[key] = _Agent(group=group)
            return decision

    def _decide(self) -> Decision:
        cfg, running, est = self._config, len(self._agents), self._estimate
        if self._degraded is not None:
            return Decision(running == 0, self._degraded, "metrics")
        if running >= cfg.max_agents:
            return Decision(False, f"at the cap of {cfg.max_agents} agents", "cap")
        committed = self._committed()
        if committed + est > self._budget:
            impossible = running == 0
            return Decision(False, f"memory budget {self._budget // MIB} MiB: "
                            f"{committed // MIB} MiB in use, next agent needs ~{est // MIB} MiB",
                            "memory", impossible)
        snap = self._snapshot
        if snap.available_bytes - cfg.reserve_bytes < est:
            return Decision(False, f"system memory low: {snap.available_bytes // MIB} MiB "
                            f"available, {cfg.reserve_bytes // MIB} MiB kept in reserve",
                            "system_memory")
        cpu = sum(self._cpu) / len(self._cpu) if self._cpu else 0.0
        if running and cpu >= cfg.cpu_busy_percent:
            return Decision(False, f"CPU busy ({cpu:.0f}% over the last "
                            f"{len(self._cpu)} samples)", "cpu")
        return Decision(True)

    def _committed(self) -> int:
        return sum(max(a.peak, self._estimate) for a in self._agents.values())

    def attach(self, key: Hashable, pid: int) -> None:
        with self._lock:
            agent = self._agents.get(key)
            if agent is not None:
                agent.pid = pid

    def release(self, key: Hashable) -> None:
        with self._lock:
            held = self._agents.pop(key, None)
        if held is not None and self._slots is not None:
            self._slots.give_back(_lease_id(key))

    def sample(self) -> None:
        """Measure every running agent's process tree and the system; update peaks."""
        with self._lock:
            pids = [(k, a.pid) for k, a in self._agents.items() if a.pid is not None]
        by_pid = self._metrics.trees_rss([pid for _, pid in pids])
        measured = {k: by_pid.get(pid, 0) for k, pid in pids}
        snapshot = self._metrics.system()
        with self._lock:
            self._snapshot = snapshot
            self._degraded = _degraded_note(snapshot)
            if snapshot.ok:
                self._cpu.append(snapshot.cpu_percent)
            for key, rss in measured.items():
                if (agent := self._agents.get(key)) is not None:
                    agent.rss, agent.peak = rss, max(agent.peak, rss)
                    self._peaks.agent = max(self._peaks.agent, rss)
            by_group: dict[Hashable, int] = {}
            for agent in self._agents.values():
                by_group[agent.group] = by_group.get(agent.group, 0) + agent.rss
            for grp, total in by_group.items():
                self._peaks.by_group[grp] = max(self._peaks.by_group.get(grp, 0), total)
            self._peaks.total = max(self._peaks.total, sum(by_group.values()))
            grown = int(self._peaks.agent * self._config.estimate_margin)
            self._estimate = max(self._config.agent_estimate_bytes, grown)

    def peak_for(self, group: Hashable) -> int:
        with self._lock:
            return self._peaks.by_group.get(group, 0)

    def stats(self) -> AdmissionStats:
        with self._lock:
            return AdmissionStats(self._budget, self._estimate, len(self._agents),
                                  self._committed(), self._peaks.total, self._peaks.agent,
                                  self._degraded, self._waiting, dict(self._refusals))


def _lease_id(key: Hashable) -> str:
    parts = key if isinstance(key, tuple) else (key,)
    return "wave:" + ":".join(str(p) for p in parts)


def _degraded_note(snapshot: SystemSnapshot) -> str | None:
    if snapshot.ok:
        return None
    return (f"system metrics unavailable ({snapshot.error}): running one agent at a time")
