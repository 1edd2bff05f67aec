"""Policies end to end with a real supd and the real supctl: freeze near
memory_max instead of an OOM kill, health checks (restart, freeze, a hanging
check killed at its timeout), dependency chains and cycles."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from tests.e2e.conftest import Supd, wait_for

MB = 1024 * 1024

# Grows by 1 MiB every 50 ms (touching every byte, so it is charged), holds
# it, then checks every chunk is intact and says so.
GROWER = r"""
import sys, time
chunks = []
target = int(sys.argv[1])
while len(chunks) < target:
    i = len(chunks)
    chunks.append(bytes([i % 251 + 1]) * (1024 * 1024))
    if i % 8 == 0:
        print("held", i + 1, flush=True)
    time.sleep(0.05)
bad = [i for i, c in enumerate(chunks) if c.count(i % 251 + 1) != len(c)]
print("verified", len(chunks), "bad", len(bad), flush=True)
while True:
    time.sleep(3600)
"""


def grower_unit(memory_max: str, target_mib: int) -> str:
    command = [sys.executable, "-I", "-S", "-c", GROWER, str(target_mib)]
    quoted = ", ".join('"' + a.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"' for a in command)
    return f"""
[unit]
description = "grows slowly"
[exec]
command = [{quoted}]
[resources]
memory_max = "{memory_max}"
[freeze]
near_memory_max = 0.9
[stop]
timeout = "5s"
"""


def unit_log(supd: Supd, name: str) -> str:
    r = supd.ctl("logs", name, "-n", "200")
    return r.stdout if r.returncode == 0 else ""


def events_of(supd: Supd, unit: str, event: str) -> list[dict[str, Any]]:
    return [e for e in supd.events(unit) if e["event"] == event]


def test_near_memory_max_freezes_before_oom_then_raise_and_thaw(supd: Supd) -> None:
    supd.write_unit("grow", grower_unit("64M", 96))
    supd.start()
    # Where polling is slow (the VM tier), the unit may already be frozen by
    # the time a status call sees it: either state carries its pid.
    running = supd.wait_state("grow", "running", "frozen")
    pid = running["pid"]

    frozen = supd.wait_state("grow", "frozen", "failed", "restarting", "exited", timeout=60)
    assert frozen["state"] == "frozen", frozen
    assert frozen["freeze_reason"] == "memory"
    assert frozen["pid"] == pid
    assert frozen["resources"]["oom_kills"] == 0
    assert frozen["resources"]["memory_current"] < 64 * MB
    near = events_of(supd, "grow", "near-memory-max")
    assert near, supd.events("grow")
    figures = near[-1]
    assert figures["reason"] == "memory"
    assert figures["limit"] == 64 * MB
    assert figures["threshold"] == int(64 * MB * 0.9)
    assert figures["usage"] >= figures["threshold"]
    assert "verified" not in unit_log(supd, "grow")
    # `supctl status` (human form too) says why
    assert "memory" in supd.ctl("status", "grow").stdout

    # It stays frozen: no OOM kill, no restart.
    time.sleep(1.0)
    st = supd.status("grow")
    assert st["state"] == "frozen" and st["pid"] == pid and st["resources"]["oom_kills"] == 0

    # The operator raises the limit (applied live: same process) and thaws.
    supd.write_unit("grow", grower_unit("256M", 96))
    wait_for(lambda: events_of(supd, "grow", "updated"), what="live resource update")
    assert supd.status("grow")["pid"] == pid
    r = supd.ctl("thaw", "grow")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: "verified 96 bad 0" in unit_log(supd, "grow"), timeout=60, what="all 96 MiB held and intact")
    st = supd.status("grow")
    assert st["state"] == "running", st
    assert st["pid"] == pid
    assert st["resources"]["oom_kills"] == 0
    assert st["restarts"] == 0
    assert st["resources"]["memory_current"] >= 96 * MB
    # Re-armed at the new threshold (230 MiB), which 96 MiB does not reach.
    assert len(events_of(supd, "grow", "near-memory-max")) == 1


def health_unit(flag: Path, on_failure: str, *, extra: str = "") -> str:
    return f"""
[exec]
command = ["/bin/sleep", "1000"]
[health]
command = ["/bin/sh", "-c", "echo checking {flag.name}; test -e {flag}"]
interval = "300ms"
timeout = "3s"
retries = 2
on_failure = "{on_failure}"
[restart]
policy = "on-failure"
delay = "100ms"
[stop]
timeout = "3s"
{extra}
"""


def test_failing_health_check_restarts_the_unit(supd: Supd, tmp_path: Path) -> None:
    flag = tmp_path / "healthy-flag"
    flag.touch()
    supd.write_unit("hc", health_unit(flag, "restart"))
    supd.start()
    st = wait_for(lambda: (s := supd.status("hc"))["health"] == "healthy" and s, timeout=30, what="healthy")
    pid = st["pid"]
    assert "checking healthy-flag" in st["health_output"]
    assert events_of(supd, "hc", "healthy")

    flag.unlink()
    wait_for(lambda: events_of(supd, "hc", "unhealthy"), timeout=30, what="unhealthy event")
    unhealthy = events_of(supd, "hc", "unhealthy")[0]
    assert unhealthy["reason"] == "health"
    assert unhealthy["code"] == 1
    assert "checking healthy-flag" in unhealthy["output"]
    flag.touch()  # the restarted process is healthy again
    st = wait_for(
        lambda: (s := supd.status("hc"))["pid"] not in (None, pid) and s["state"] == "running" and s,
        timeout=30,
        what="restarted with a new pid",
    )
    assert st["restarts"] >= 1
    assert st["last_exit"]["reason"] == "health"
    wait_for(lambda: supd.status("hc")["health"] == "healthy", timeout=30, what="healthy after the restart")


def test_failing_health_check_freezes_the_unit(supd: Supd, tmp_path: Path) -> None:
    flag = tmp_path / "healthy-flag"
    flag.touch()
    supd.write_unit("hf", health_unit(flag, "freeze"))
    supd.start()
    st = wait_for(lambda: (s := supd.status("hf"))["health"] == "healthy" and s, timeout=30, what="healthy")
    pid = st["pid"]
    flag.unlink()
    st = supd.wait_state("hf", "frozen", timeout=30)
    assert st["freeze_reason"] == "health"
    assert st["health"] == "unhealthy"
    assert st["pid"] == pid
    # thawed by the user with the problem fixed: healthy again, same process
    flag.touch()
    assert supd.ctl("thaw", "hf").returncode == 0
    wait_for(lambda: supd.status("hf")["health"] == "healthy", timeout=30, what="healthy after thaw")
    st = supd.status("hf")
    assert st["state"] == "running" and st["pid"] == pid


def processes_with_cmdline(needle: bytes) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if needle in f.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


def test_hanging_health_check_is_killed_at_its_timeout(supd: Supd, tmp_path: Path) -> None:
    marker = f"{os.getpid() % 1000 + 7000}.{time.time_ns() % 1000:03d}"  # a sleep argument no one else uses
    supd.write_unit(
        "hang",
        f"""
[exec]
command = ["/bin/sleep", "1000"]
[health]
command = ["/bin/sh", "-c", "echo started; sleep {marker}"]
interval = "1s"
timeout = "1s"
retries = 1
on_failure = "none"
""",
    )
    supd.start()
    supd.wait_state("hang", "running")
    t0 = time.monotonic()
    wait_for(lambda: events_of(supd, "hang", "unhealthy"), timeout=30, what="unhealthy after a timeout")
    ev = events_of(supd, "hang", "unhealthy")[0]
    assert ev["result"] == "timeout after 1s"
    assert "started" in ev["output"]
    # supd stayed responsive while checks hung
    t1 = time.monotonic()
    assert supd.ctl("status", "hang").returncode == 0
    assert time.monotonic() - t1 < 10
    assert time.monotonic() - t0 < 30
    st = supd.status("hang")
    assert st["state"] == "running" and st["health"] == "unhealthy"
    # killed checks leave nothing behind (a later check may be running: look for
    # the count to stay bounded, not growing with every interval)
    time.sleep(3)
    assert len(processes_with_cmdline(f"sleep {marker}".encode())) <= 2
    assert supd.ctl("stop", "hang").returncode == 0
    wait_for(lambda: not processes_with_cmdline(f"sleep {marker}".encode()), timeout=15, what="no check left after stop")


def chain_unit(after: str | None, health: bool = False) -> str:
    deps = f'after = ["{after}"]\nrequires = ["{after}"]\n' if after else ""
    check = '[health]\ncommand = ["/bin/true"]\ninterval = "1s"\ntimeout = "2s"\n' if health else ""
    return f"""
[unit]
{deps}
[exec]
command = ["/bin/sleep", "1000"]
[stop]
timeout = "3s"
{check}
"""


def test_dependency_chain_starts_in_order_and_stops_together(supd: Supd) -> None:
    supd.write_unit("db", chain_unit(None, health=True))
    supd.write_unit("api", chain_unit("db"))
    supd.write_unit("web", chain_unit("api"))
    supd.start()
    for name in ("db", "api", "web"):
        supd.wait_state(name, "running", timeout=30)
    evs = supd.events()
    index = {(e["unit"], e["event"]): i for i, e in reversed(list(enumerate(evs)))}  # first occurrence
    # db runs and is healthy (it has a check) before api starts; api runs before web starts.
    assert index[("db", "running")] < index[("db", "healthy")] < index[("api", "running")] < index[("web", "running")]
    assert supd.status("db")["health"] == "healthy"

    assert supd.ctl("stop", "db").returncode == 0
    for name in ("db", "api", "web"):
        supd.wait_state(name, "inactive", timeout=30)
    stops = [e for e in supd.events() if e["event"] == "stop"]
    assert {(e["unit"], e["reason"]) for e in stops} >= {("api", "requires db"), ("web", "requires api")}


def test_a_oneshot_is_done_when_it_exits_0_and_what_needs_it_runs_on(supd: Supd) -> None:
    """An init step (`[exec].type = "oneshot"`, a Kubernetes init container):
    what comes after it starts once it has exited 0, and its end stops
    nothing; one that fails fails what requires it."""
    done = supd.root / "schema-done"
    supd.write_unit("schema", '[exec]\ntype = "oneshot"\ncommand = ["/bin/sh", "-c", "sleep 1; touch %s"]\n'
                    '[restart]\npolicy = "on-failure"\n' % done)
    # exits 1 if it were started before the step had ended
    supd.write_unit("app", '[unit]\nafter = ["schema"]\nrequires = ["schema"]\n'
                    '[exec]\ncommand = ["/bin/sh", "-c", "test -f %s && exec sleep 100000"]\n' % done)
    supd.write_unit("broken", '[unit]\nenabled = false\n[exec]\ntype = "oneshot"\ncommand = ["/bin/sh", "-c", "exit 3"]\n')
    supd.write_unit("needs_broken", '[unit]\nrequires = ["broken"]\n[exec]\ncommand = ["/bin/sleep", "100000"]\n')
    supd.start()
    app = supd.wait_state("app", "running", timeout=30)
    schema = supd.status("schema")
    assert (schema["state"], schema["last_exit"]["reason"]) == ("exited", "exit 0"), schema
    time.sleep(1.5)  # its end stopped nothing
    assert supd.status("app")["pid"] == app["pid"] and supd.status("app")["state"] == "running"
    # app restarting (a restart by hand here) does not run the step again
    assert supd.ctl("restart", "app").returncode == 0
    supd.wait_state("app", "running", timeout=30)
    assert len([e for e in supd.events("schema") if e["event"] == "running"]) == 1

    # whichever comes first: its wait sees the step failed, or the step's end stops it
    ended = supd.wait_state("needs_broken", "failed", "inactive", timeout=30)
    if ended["state"] == "failed":
        assert ended["error"] == "required unit broken is not running", ended
    else:
        assert ("stop", "requires broken") in {(e["event"], e["reason"]) for e in supd.events("needs_broken")}
    assert ended["pid"] is None and supd.status("broken")["last_exit"]["reason"] == "exit 3"


def test_dependency_cycle_is_a_unit_file_error(supd: Supd) -> None:
    supd.write_unit("a", chain_unit("b"))
    supd.write_unit("b", chain_unit("a"))
    supd.write_unit("c", chain_unit(None))
    supd.start()
    a = supd.wait_state("a", "error")
    b = supd.wait_state("b", "error")
    assert "dependency cycle: a -> b -> a" in a["error"]
    assert "dependency cycle" in b["error"]
    assert a["error"].startswith(str(supd.units / "a.toml"))
    # the rest of the units are not disturbed
    supd.wait_state("c", "running")


def test_batch_unit_frozen_under_host_memory_pressure_then_thawed(supd: Supd, unique_name: str, tmp_path: Path) -> None:
    import pytest

    from tests.integration.test_pressure import memory_pressure

    if not Path("/proc/pressure/memory").exists():
        pytest.skip("no PSI (/proc/pressure) on this kernel")
    threshold = 8.0
    supd.write_unit(
        "batch",
        f"""
[unit]
slice = "batch"
priority = -5
[exec]
command = ["/bin/sleep", "1000"]
[freeze]
on_host_pressure = {{ memory = {threshold} }}
[stop]
timeout = "3s"
""",
    )
    supd.write_unit("other", chain_unit(None))  # no pressure policy: never frozen
    supd.start()
    pid = supd.wait_state("batch", "running")["pid"]
    supd.wait_state("other", "running")

    frozen: dict[str, Any] | None = None
    with memory_pressure(unique_name + "gen", tmp_path, seconds=45):
        deadline = time.monotonic() + 35
        while time.monotonic() < deadline:
            st = supd.status("batch")
            if st["state"] == "frozen":
                frozen = st
                break
            time.sleep(0.3)
    if frozen is None:
        avg10 = Path("/proc/pressure/memory").read_text().splitlines()[0]
        pytest.skip(f"the kernel showed too little memory pressure within 35 s to reach {threshold}% ({avg10})")
    assert frozen["freeze_reason"] == "pressure"
    assert frozen["pid"] == pid
    ev = events_of(supd, "batch", "host-pressure")[-1]
    assert ev["reason"] == "pressure"
    assert ev["readings"]["memory"] >= threshold
    assert ev["thresholds"] == {"memory": threshold}
    assert supd.state_of("other") == "running"

    # The generator is gone: thawed once avg10 stays below half the threshold for 10 s.
    st = supd.wait_state("batch", "running", timeout=60)
    assert st["pid"] == pid
    released = events_of(supd, "batch", "pressure-released")
    assert released and released[-1]["readings"]["memory"] < threshold / 2
    assert released[-1]["frozen_for"] >= 10


def test_max_frozen_fails_a_policy_frozen_unit_but_not_a_user_frozen_one(supd: Supd, tmp_path: Path) -> None:
    flag = tmp_path / "healthy-flag"
    flag.touch()
    extra = '[freeze]\nmax_frozen = "2s"\n'
    supd.write_unit("mf", health_unit(flag, "freeze", extra=extra))
    supd.write_unit("uf", chain_unit(None) + extra)
    supd.start()
    wait_for(lambda: supd.status("mf")["health"] == "healthy", timeout=30, what="healthy")
    pid = supd.status("mf")["pid"]
    uf_pid = supd.wait_state("uf", "running")["pid"]
    assert supd.ctl("freeze", "uf").returncode == 0

    flag.unlink()
    supd.wait_state("mf", "frozen", timeout=30)
    flag.touch()  # the restarted process will be healthy
    st = wait_for(lambda: (s := supd.status("mf"))["pid"] not in (None, pid) and s, timeout=30, what="restarted after max_frozen")
    assert st["last_exit"]["reason"] == "max-frozen"
    ev = events_of(supd, "mf", "max-frozen")[0]
    assert ev["frozen_for"] >= 2 and ev["freeze_reason"] == "health"

    # the user's freeze is the user's: max_frozen does not apply
    st = supd.status("uf")
    assert st["state"] == "frozen" and st["pid"] == uf_pid and st["freeze_reason"] == "user"
    assert not events_of(supd, "uf", "max-frozen")
