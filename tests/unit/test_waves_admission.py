from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from smart_orchestrator.policy.admission import LeaseRequest
from smart_orchestrator.policy.config import AdmissionPolicy
from smart_orchestrator.policy.shared import PolicySlots
from smart_orchestrator.store import SqliteStore
from smart_orchestrator.waves.admission import MIB, AdmissionConfig, ResourceManager
from tests.wave_fakes import FixedMetrics, policy_engines


def _rm(metrics: FixedMetrics | None = None, **cfg: int | float) -> ResourceManager:
    config = AdmissionConfig(**{"max_agents": 10, "agent_estimate_bytes": 100 * MIB,
                                "reserve_bytes": 0, **cfg})  # type: ignore[arg-type]
    return ResourceManager(config, metrics or FixedMetrics())


def test_admits_only_what_fits_the_memory_budget() -> None:
    rm = _rm(memory_budget_bytes=350 * MIB)
    assert [rm.try_admit(i).admitted for i in range(4)] == [True, True, True, False]
    refused = rm.try_admit(9)
    assert "memory budget 350 MiB" in refused.reason and not refused.impossible
    rm.release(0)
    assert rm.try_admit(4).admitted


def test_budget_defaults_to_a_fraction_of_available_memory() -> None:
    rm = _rm(FixedMetrics(available_mib=1000), budget_fraction=0.5)
    assert rm.budget_bytes == 500 * MIB


def test_measured_process_trees_raise_the_estimate_and_the_charge() -> None:
    metrics = FixedMetrics()
    rm = _rm(metrics, memory_budget_bytes=1000 * MIB, estimate_margin=1.0)
    rm.try_admit("a")
    rm.attach("a", 42)
    metrics.tree[42] = 400 * MIB
    rm.sample()
    stats = rm.stats()
    assert stats.estimate_bytes == 400 * MIB and stats.committed_bytes == 400 * MIB
    assert stats.peak_agent_bytes == 400 * MIB
    assert rm.try_admit("b").admitted
    assert not rm.try_admit("c").admitted, "400 + 400 + 400 > 1000"


def test_peak_is_the_largest_simultaneous_total_per_group() -> None:
    metrics = FixedMetrics()
    rm = _rm(metrics, memory_budget_bytes=10_000 * MIB)
    for key, pid in (("a", 1), ("b", 2)):
        rm.try_admit(key, group="w1")
        rm.attach(key, pid)
    metrics.tree.update({1: 200 * MIB, 2: 300 * MIB})
    rm.sample()
    metrics.tree.update({1: 50 * MIB, 2: 60 * MIB})
    rm.sample()
    assert rm.peak_for("w1") == 500 * MIB and rm.stats().peak_total_bytes == 500 * MIB


def test_budget_below_one_agent_is_impossible_not_a_wait() -> None:
    decision = _rm(memory_budget_bytes=50 * MIB).try_admit("a")
    assert not decision.admitted and decision.impossible


def test_respects_the_configured_cap() -> None:
    rm = _rm(max_agents=2, memory_budget_bytes=10_000 * MIB)
    assert [rm.try_admit(i).admitted for i in range(3)] == [True, True, False]
    assert rm.stats().waiting_reason == "at the cap of 2 agents"


def test_holds_new_agents_while_the_cpu_stays_saturated() -> None:
    metrics = FixedMetrics(cpu_percent=99.0)
    rm = _rm(metrics, memory_budget_bytes=10_000 * MIB, cpu_window=3)
    for _ in range(3):
        rm.sample()
    assert rm.try_admit("first").admitted, "one agent always may run"
    assert "CPU busy (99% over the last 3 samples)" in rm.try_admit("second").reason
    metrics.snapshot = FixedMetrics(cpu_percent=20.0).snapshot
    for _ in range(2):
        rm.sample()
    assert rm.try_admit("second").admitted


def test_a_short_cpu_burst_does_not_hold_admission() -> None:
    metrics = FixedMetrics(cpu_percent=30.0)
    rm = _rm(metrics, memory_budget_bytes=10_000 * MIB, cpu_window=4)
    for _ in range(3):
        rm.sample()
    metrics.snapshot = FixedMetrics(cpu_percent=100.0).snapshot
    rm.sample()
    assert rm.try_admit("a").admitted and rm.try_admit("b").admitted


def test_keeps_a_reserve_of_system_memory() -> None:
    rm = _rm(FixedMetrics(available_mib=600), memory_budget_bytes=10_000 * MIB,
             reserve_bytes=512 * MIB)
    assert "system memory low" in rm.try_admit("a").reason


def test_unreadable_metrics_mean_one_agent_at_a_time_and_say_so() -> None:
    rm = _rm(FixedMetrics(ok=False), memory_budget_bytes=10_000 * MIB)
    assert rm.try_admit("a").admitted
    second = rm.try_admit("b")
    assert not second.admitted and "one agent at a time" in second.reason
    assert rm.stats().degraded is not None and "unavailable" in rm.stats().degraded


# -- one machine-wide count for wave agents and native subagents --------------------------


def _native(session: str, n: int) -> LeaseRequest:
    return LeaseRequest(f"{session}:toolu_{n}", session, "general-purpose", None, False, None)


def test_wave_agents_and_native_subagents_share_the_machine_limit(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    engines = policy_engines(store, admission=AdmissionPolicy(max_in_flight_machine=3,
                                                              min_available_memory_mb=0))
    native = engines().admission
    assert native.acquire(_native("s1", 1)).granted
    rm = ResourceManager(AdmissionConfig(max_agents=10, reserve_bytes=0,
                                         memory_budget_bytes=10_000 * MIB),
                         FixedMetrics(), PolicySlots(engines))
    assert rm.try_admit(("w1", "a"), agent_type="coder").admitted
    assert rm.try_admit(("w1", "b"), agent_type="coder").admitted
    refused = rm.try_admit(("w1", "c"), agent_type="coder")
    assert (refused.admitted, refused.rule) == (False, "machine")
    assert "3 agents already running on this machine" in refused.reason
    assert rm.stats().running == 2 and rm.stats().refusals == {"machine": 1}
    # The hooks see the wave's agents: a native spawn in another session waits too.
    denied = native.acquire(_native("s2", 1), enforce=False)
    assert not denied.granted and denied.rule_id == "in-flight-machine"
    native.release(lease_id="s2:toolu_1")
    rm.release(("w1", "a"))
    assert {r[0] for r in native.in_flight()} == {"s1", "waves"}
    assert rm.try_admit(("w1", "c"), agent_type="coder").admitted
    store.close()


def test_a_wave_lease_dies_with_its_server(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    admission = policy_engines(store)().admission
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert admission.take_machine_slot("wave:w1:a", "coder", owner_pid=dead.pid) is None
    assert admission.in_flight() == [], "purged: the server that held it is gone"
    store.close()
