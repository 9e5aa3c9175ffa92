"""The policy in force is pinned per session; the file may only strengthen it."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mcp_server.hook_output import hook_output as rendered
from smart_orchestrator.policy import EngineFactory
from smart_orchestrator.policy.config import PolicyConfig, build_policy, config_digest
from smart_orchestrator.policy.pinning import merge_stronger
from smart_orchestrator.policy.trust import accept, trusted
from smart_orchestrator.store import SqliteStore

from .policy_payloads import pre_agent
from .test_policy_engine import AWS_KEY, AWS_SECRET, decision, healthy, reason

REPO = Path(__file__).resolve().parents[2]
SECRET_PROMPT = f"SUBTASK: deploy with {AWS_KEY} and {AWS_SECRET}"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SMART_ORCHESTRATOR_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("SMART_ORCHESTRATOR_POLICY", raising=False)
    monkeypatch.delenv("CLAUDE_CODE_SESSION_ID", raising=False)
    work = tmp_path / "work"
    (work / ".claude").mkdir(parents=True)
    return work


def write_policy(project: Path, body: str) -> None:
    (project / ".claude" / "smart-orchestrator.toml").write_text(body)


def decide(store: SqliteStore, project: Path, prompt: str = SECRET_PROMPT,
           session: str = "s1", tool_use_id: str = "t1") -> dict[str, Any]:
    # A fresh factory per call, as each command hook process builds its own.
    factory = EngineFactory(store, source="command", project_dir=project, metrics=healthy)
    return rendered(factory.decide(pre_agent(prompt, session=session, tool_use_id=tool_use_id)))


def rows(store: SqliteStore, kind: str) -> list[dict[str, Any]]:
    return [dict(r.data) for r in store.iter_audit() if r.kind == kind]


def policy(**sections: Any) -> PolicyConfig:
    return build_policy(sections, "test.toml")


# -- stronger / weaker, key by key -----------------------------------------------------------
@pytest.mark.parametrize(("pinned", "proposed", "key", "weaker"), [
    ({"secrets": {"mode": "enforce"}}, {"secrets": {"mode": "warn"}}, "secrets.mode", True),
    ({"secrets": {"mode": "warn"}}, {"secrets": {"mode": "off"}}, "secrets.mode", True),
    ({"secrets": {"mode": "warn"}}, {"secrets": {"mode": "enforce"}}, "secrets.mode", False),
    ({}, {"prompt": {"on_error": "allow"}}, "prompt.on_error", True),
    ({}, {"prompt": {"max_chars": 200_000}}, "prompt.max_chars", True),
    ({}, {"prompt": {"min_chars": 0}}, "prompt.min_chars", True),
    ({}, {"prompt": {"required_fields": ["prompt"]}}, "prompt.required_fields", True),
    ({}, {"prompt": {"injection_deny_severity": "critical"}},
     "prompt.injection_deny_severity", True),
    ({}, {"prompt": {"injection_deny_severity": "low"}}, "prompt.injection_deny_severity", False),
    ({}, {"secrets": {"action": "redact"}}, "secrets.action", True),
    ({}, {"secrets": {"baseline": "other.baseline"}}, "secrets.baseline", True),
    ({}, {"admission": {"max_in_flight_machine": 64}}, "admission.max_in_flight_machine", True),
    ({}, {"admission": {"min_available_memory_mb": 0}},
     "admission.min_available_memory_mb", True),
    ({}, {"admission": {"spawns_per_minute": 1000}}, "admission.spawns_per_minute", True),
    ({}, {"admission": {"lease_ttl_s": 1}}, "admission.lease_ttl_s", True),
    ({}, {"admission": {"wait_timeout_s": 600}}, "admission.wait_timeout_s", True),
    ({}, {"breaker": {"failure_threshold": 100}}, "breaker.failure_threshold", True),
    ({}, {"breaker": {"cooldown_s": 1}}, "breaker.cooldown_s", True),
    ({}, {"breaker": {"window_s": 1}}, "breaker.window_s", True),
    ({}, {"output": {"secrets": "off"}}, "output.secrets", True),
    ({}, {"tools": {"deny_credential_reads": False}}, "tools.deny_credential_reads", True),
    ({"preset": "strict"}, {"preset": "default"}, "preset", True),
    ({"preset": "strict"}, {"preset": "default"}, "prompt.max_chars", True),
    ({}, {"preset": "permissive"}, "admission.mode", True),
    ({}, {"preset": "strict"}, "prompt.max_chars", False),
])
def test_each_key_knows_which_way_is_weaker(pinned: dict[str, Any], proposed: dict[str, Any],
                                            key: str, weaker: bool) -> None:
    merged = merge_stronger(policy(**pinned), policy(**proposed))
    assert (key in merged.weakened) is weaker
    assert (key in merged.strengthened) is not weaker


def test_a_mixed_change_applies_the_stronger_keys_and_keeps_the_rest() -> None:
    merged = merge_stronger(policy(), policy(prompt={"max_chars": 500, "mode": "off",
                                                     "required_fields": ["prompt", "x"]}))
    assert merged.config.prompt.max_chars == 500
    assert merged.config.prompt.mode == "enforce"
    assert set(merged.config.prompt.required_fields) == {"prompt", "description", "x"}
    assert set(merged.weakened) == {"prompt.mode", "prompt.required_fields"}


@pytest.mark.parametrize("junk", ["bogus", None, -1.5, float("nan"), ["x"], True])
def test_values_no_valid_file_can_hold_never_win(junk: Any) -> None:
    # A forged cache or store row: every key with junk keeps the pinned value.
    base = PolicyConfig()
    bad = base._replace(secrets=base.secrets._replace(mode=junk),
                        breaker=base.breaker._replace(cooldown_s=junk))
    merged = merge_stronger(base, bad)
    assert merged.config.secrets.mode == "enforce"
    assert merged.config.breaker.cooldown_s == 900.0


# -- sessions ----------------------------------------------------------------------------------
def test_first_use_trusts_the_file_and_pins_it(store: SqliteStore, project: Path) -> None:
    write_policy(project, 'preset = "strict"\n')
    decide(store, project, "SUBTASK: ok")
    [trust] = rows(store, "policy.trusted")
    [pin] = rows(store, "policy.pinned")
    assert trust["first_use"] is True and pin["trust"] == "first-use"
    assert pin["digest"] == trust["digest"] == config_digest(policy(preset="strict"))


def test_weakening_the_file_mid_session_is_not_honoured_and_recorded_once(
        store: SqliteStore, project: Path) -> None:
    assert decision(decide(store, project)) == "deny"
    write_policy(project, '[secrets]\nmode = "off"\n[admission]\nmode = "off"\n')
    for n in range(3):
        out = decide(store, project, tool_use_id=f"t{n + 2}")
        assert decision(out) == "deny" and "environment variables" in reason(out)
    [change] = rows(store, "policy.changed")
    assert set(change["weakened"]) == {"secrets.mode", "admission.mode"}
    assert change["before"] == config_digest(PolicyConfig()) != change["after"]
    assert change["strengthened"] == []


def test_a_new_session_keeps_the_trusted_policy_until_accepted(store: SqliteStore,
                                                              project: Path) -> None:
    decide(store, project, "SUBTASK: ok", session="s1")
    write_policy(project, '[secrets]\nmode = "off"\n')
    assert decision(decide(store, project, session="s2")) == "deny"
    accept(store, project, policy(secrets={"mode": "off"}), None, channel="test")
    [accepted] = rows(store, "policy.accepted")
    assert accepted["weakened"] == ["secrets.mode"]
    assert decision(decide(store, project, session="s2", tool_use_id="t9")) == "deny"
    assert decision(decide(store, project, session="s3")) is None


def test_strengthening_applies_at_once_and_cannot_be_taken_back(store: SqliteStore,
                                                                project: Path) -> None:
    long_prompt = "SUBTASK: " + "x" * 1000
    assert decision(decide(store, project, long_prompt)) is None
    write_policy(project, "[prompt]\nmax_chars = 500\nmode = \"warn\"\n")
    out = decide(store, project, long_prompt, tool_use_id="t2")
    assert decision(out) == "deny" and "over the limit of 500" in reason(out)
    (project / ".claude" / "smart-orchestrator.toml").unlink()
    assert decision(decide(store, project, long_prompt, tool_use_id="t3")) == "deny"
    # New sessions start from the strengthened policy too: it needed no confirmation.
    assert decision(decide(store, project, long_prompt, session="s2")) == "deny"
    changes = rows(store, "policy.changed")
    assert changes[0]["strengthened"] == ["prompt.max_chars"]
    assert changes[0]["weakened"] == ["prompt.mode"]
    assert "prompt.max_chars" in changes[1]["weakened"]


@pytest.mark.parametrize("how", ["delete", "symlink", "env", "preset"])
def test_other_ways_of_changing_the_file_are_changes_too(
        store: SqliteStore, project: Path, tmp_path: Path, how: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    write_policy(project, 'preset = "strict"\n')
    long_prompt = "SUBTASK: " + "x" * 1000
    assert decision(decide(store, project, long_prompt)) == "deny"
    weak = tmp_path / "weak.toml"
    weak.write_text('[prompt]\nmax_chars = 1000000\n')
    target = project / ".claude" / "smart-orchestrator.toml"
    if how == "delete":
        target.unlink()
    elif how == "symlink":
        target.unlink()
        target.symlink_to(weak)
    elif how == "env":
        monkeypatch.setenv("SMART_ORCHESTRATOR_POLICY", str(weak))
    else:
        target.write_text('preset = "default"\n')
    assert decision(decide(store, project, long_prompt, tool_use_id="t2")) == "deny"
    [change] = rows(store, "policy.changed")
    assert "prompt.max_chars" in change["weakened"]


@pytest.mark.parametrize("special", ["fifo", "directory", "huge"])
def test_a_policy_path_that_is_not_a_small_regular_file_denies_spawns(
        store: SqliteStore, project: Path, special: str) -> None:
    target = project / ".claude" / "smart-orchestrator.toml"
    if special == "fifo":
        os.mkfifo(target)  # reading it would block every hook
    elif special == "directory":
        target.mkdir()
    else:
        target.write_text("# " + "x" * (1 << 21) + "\n")
    out = decide(store, project, "SUBTASK: ok")
    assert decision(out) == "deny" and "policy file" in reason(out)


def test_an_edited_cache_does_not_change_the_policy(store: SqliteStore, project: Path,
                                                   tmp_path: Path) -> None:
    write_policy(project, "[secrets]\nmode = \"enforce\"\n")
    assert decision(decide(store, project)) == "deny"
    cache = tmp_path / "data" / "policy-cache.json"
    data = json.loads(cache.read_text())
    data["config"]["secrets"]["mode"] = "off"
    cache.write_text(json.dumps(data))
    assert decision(decide(store, project, session="s2")) == "deny"
    assert decision(decide(store, project, session="s1", tool_use_id="t2")) == "deny"


def test_a_cache_hit_imports_no_pydantic(project: Path, tmp_path: Path) -> None:
    write_policy(project, 'preset = "strict"\n[admission]\nmax_depth = 1\n')
    code = ("import sys; from pathlib import Path; "
            "from smart_orchestrator.policy.config import load_policy; "
            f"c = load_policy(Path({str(project / '.claude' / 'smart-orchestrator.toml')!r})); "
            "assert c.admission.max_depth == 1; print('pydantic' in sys.modules)")
    env = {**os.environ, "SMART_ORCHESTRATOR_DATA": str(tmp_path / "data")}
    first, second = (subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO,
                                    capture_output=True, text=True, check=True).stdout.strip()
                     for _ in range(2))
    assert (first, second) == ("True", "False")


# -- baselines and pragmas ---------------------------------------------------------------------
def baseline_for(project: Path, *secrets: str) -> str:
    results = {"x.py": [{"type": "AWS", "hashed_secret": hashlib.sha1(s.encode()).hexdigest()}
                        for s in secrets]}
    raw = json.dumps({"version": "1.5.0", "results": results}).encode()
    (project / ".secrets.baseline").write_bytes(raw)
    return hashlib.sha256(raw).hexdigest()


def test_an_unconfirmed_baseline_allowlists_nothing_and_is_recorded_once(
        store: SqliteStore, project: Path) -> None:
    sha = baseline_for(project, AWS_KEY, AWS_SECRET)
    for n in range(2):
        assert decision(decide(store, project, tool_use_id=f"t{n}")) == "deny"
    [ignored] = rows(store, "policy.baseline_ignored")
    assert ignored["sha256"] == sha and ignored["confirmed"] is None


def test_a_confirmed_baseline_allowlists_until_its_bytes_change(store: SqliteStore,
                                                               project: Path) -> None:
    sha = baseline_for(project, AWS_KEY, AWS_SECRET)
    accept(store, project, PolicyConfig(), sha, channel="test")
    assert decision(decide(store, project)) is None
    baseline_for(project, AWS_KEY, AWS_SECRET, "another")
    assert decision(decide(store, project, session="s2")) == "deny"
    assert trusted(store, project).config.secrets.baseline_sha256 == sha  # type: ignore[union-attr]


@pytest.mark.parametrize("comment", ["# pragma: allowlist secret", "// pragma: allowlist secret",
                                     "/* pragma: allowlist secret */",
                                     "<!-- pragma: allowlist secret -->",
                                     "-- pragma: whitelist secret"])
def test_an_inline_pragma_does_not_let_a_secret_into_a_prompt(
        store: SqliteStore, project: Path, comment: str) -> None:
    prompt = f"SUBTASK: use key = '{AWS_KEY}'  {comment}\nsecret = '{AWS_SECRET}'  {comment}"
    assert decision(decide(store, project, prompt)) == "deny"


# -- policy accept ------------------------------------------------------------------------------
def test_accept_without_a_terminal_is_refused(project: Path, tmp_path: Path) -> None:
    write_policy(project, '[secrets]\nmode = "off"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAUDE")}
    env["SMART_ORCHESTRATOR_DATA"] = str(tmp_path / "data")
    res = subprocess.run([sys.executable, "-m", "smart_orchestrator.cli", "policy", "accept"],
                         cwd=project, env={**env, "PYTHONPATH": str(REPO)},
                         stdin=subprocess.DEVNULL, capture_output=True, text=True,
                         start_new_session=True, check=False)
    assert res.returncode == 2 and "its standard input is not one" in res.stderr


def _accept_in_pty(project: Path, tmp_path: Path, env_extra: dict[str, str],
                   answer: str | None) -> tuple[int, str]:
    import pty
    import select

    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAUDE")}
    env.update(SMART_ORCHESTRATOR_DATA=str(tmp_path / "data"), PYTHONPATH=str(REPO),
               **env_extra)
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.chdir(project)
        os.execve(sys.executable, [sys.executable, "-m", "smart_orchestrator.cli", "policy",
                                   "accept"], env)
    out = b""
    while True:
        ready, _, _ = select.select([fd], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
        if b"Type " in out and b"cancel:" in out and answer is not None:
            code = out.split(b"Type ")[1][:6].decode()
            os.write(fd, ((code if answer == "CODE" else answer) + "\n").encode())
            answer = None
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode("utf-8", "replace")


def test_accept_at_a_terminal_trusts_the_file_for_new_sessions(
        store: SqliteStore, project: Path, tmp_path: Path, db_path: Path) -> None:
    decide(store, project, "SUBTASK: ok")
    write_policy(project, '[secrets]\nmode = "off"\n')
    rc, out = _accept_in_pty(project, tmp_path, {"SMART_ORCHESTRATOR_DB": str(db_path)}, "CODE")
    assert rc == 0, out
    assert "Weakens against the trusted policy: secrets.mode" in out
    [accepted] = rows(store, "policy.accepted")
    assert accepted["weakened"] == ["secrets.mode"] and accepted["channel"].startswith("tty:")
    assert decision(decide(store, project, session="s2")) is None


def test_accept_with_the_wrong_code_changes_nothing(
        store: SqliteStore, project: Path, tmp_path: Path, db_path: Path) -> None:
    write_policy(project, '[secrets]\nmode = "off"\n')
    rc, out = _accept_in_pty(project, tmp_path, {"SMART_ORCHESTRATOR_DB": str(db_path)}, "yes")
    assert rc == 1 and "Cancelled" in out
    assert rows(store, "policy.accepted") == []


def test_accept_under_claude_code_is_refused_even_with_a_terminal(
        store: SqliteStore, project: Path, tmp_path: Path, db_path: Path) -> None:
    write_policy(project, '[secrets]\nmode = "off"\n')
    rc, out = _accept_in_pty(project, tmp_path, {"SMART_ORCHESTRATOR_DB": str(db_path),
                                                 "CLAUDECODE": "1"}, "CODE")
    assert rc == 2 and "refuses to run under Claude Code" in out
    assert rows(store, "policy.accepted") == []


def test_claude_ancestor_walks_up_to_a_claude_process(tmp_path: Path) -> None:
    from smart_orchestrator.policy_cli import claude_ancestor

    def proc(pid: int, ppid: int, comm: str, environ: bytes = b"") -> None:
        d = tmp_path / str(pid)
        d.mkdir()
        (d / "comm").write_text(comm + "\n")
        (d / "stat").write_text(f"{pid} ({comm}) S {ppid} 1 1 0")
        (d / "environ").write_bytes(environ)

    proc(10, 1, "claude")
    proc(20, 10, "bash) S 1 (x")  # a name made to confuse a naive parser
    proc(30, 20, "script")
    proc(40, 1, "tmux: server")
    proc(50, 40, "bash", b"HOME=/h\0PATH=/bin\0")
    proc(60, 1, "setsid", b"A=1\0CLAUDE_CODE_SESSION_ID=x\0")
    assert claude_ancestor(30, tmp_path) == 10
    assert claude_ancestor(50, tmp_path) is None
    assert claude_ancestor(60, tmp_path) == 60


@pytest.mark.parametrize("variable", ["SMART_ORCHESTRATOR_DATA", "SMART_ORCHESTRATOR_DB",
                                      "CLAUDE_PLUGIN_DATA"])
def test_first_use_in_state_moved_by_settings_trusts_no_weaker_than_defaults(
        store: SqliteStore, project: Path, variable: str) -> None:
    # A fresh store the model pointed the hooks at must not be a fresh first use.
    (project / ".claude" / "settings.local.json").write_text(
        json.dumps({"env": {variable: "/tmp/elsewhere"}}))
    write_policy(project, '[secrets]\nmode = "off"\n[prompt]\nmax_chars = 300\n')
    assert decision(decide(store, project)) == "deny"
    [trust] = rows(store, "policy.trusted")
    assert trust["clamped"] is True and trust["relocated_by"] == [
        f"settings.local.json:{variable}"]
    assert trust["weaker_than_defaults"] == ["secrets.mode"]
    in_force = trusted(store, project).config  # type: ignore[union-attr]
    assert (in_force.secrets.mode, in_force.prompt.max_chars) == ("enforce", 300)


def test_an_inline_pragma_does_not_let_a_secret_out_of_a_subagent(store: SqliteStore,
                                                                  project: Path) -> None:
    from .policy_payloads import post_agent, subagent_event

    factory = EngineFactory(store, source="command", project_dir=project, metrics=healthy)
    factory.decide(pre_agent("SUBTASK: find the key", session="s1"))
    answer = f"key = {AWS_KEY}  # pragma: allowlist secret\n{AWS_SECRET}  // pragma: " \
             "allowlist secret"
    out = rendered(factory.decide(post_agent(answer, session="s1")))
    assert out["decision"] == "block"
    stop = rendered(factory.decide(subagent_event("SubagentStop", "a1", message=answer)))
    assert stop["decision"] == "block"


def test_a_fifo_in_place_of_the_accepted_baseline_fails_closed_without_hanging(
        store: SqliteStore, project: Path) -> None:
    write_policy(project, '[secrets]\nbaseline = "ci/allow.json"\n')
    (project / "ci").mkdir()
    sha = baseline_for(project, AWS_KEY)
    (project / ".secrets.baseline").rename(project / "ci" / "allow.json")
    accept(store, project, build_policy({"secrets": {"baseline": "ci/allow.json"}}, "t"), sha,
           channel="test")
    (project / "ci" / "allow.json").unlink()
    os.mkfifo(project / "ci" / "allow.json")
    out = decide(store, project, "SUBTASK: ok", session="s9")
    assert decision(out) == "deny" and "fails closed" in reason(out)
