"""Reading the kernel's OOM-kill records (cgroups/kmsg.py) and counting them
for the systemd driver's scopes: pure, no /dev/kmsg."""

from __future__ import annotations

from pathlib import Path

from supervisor.cgroups.kmsg import oom_kill_cgroups
from supervisor.cgroups.systemd import OomWatch

# as Linux 6.1 writes it (mm/oom_kill.c dump_oom_summary), one record
RECORD = (
    "6,1873,91234567,c;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,"
    "oom_memcg=/supd.slice/supd-test.slice/supd-web.scope,"
    "task_memcg=/supd.slice/supd-test.slice/supd-web.scope/payload,task=python3,pid=8240,uid=0\n"
)


def test_the_record_names_the_cgroup_over_its_limit_and_the_victims() -> None:
    assert oom_kill_cgroups(RECORD) == (
        "/supd.slice/supd-test.slice/supd-web.scope",
        "/supd.slice/supd-test.slice/supd-web.scope/payload",
    )


def test_other_records_and_userspace_writes_name_nothing() -> None:
    assert oom_kill_cgroups("6,1874,91234568,-;Memory cgroup out of memory: Killed process 8240 (python3)\n") == ()
    assert oom_kill_cgroups("not a record") == ()
    # a process writing to /dev/kmsg gets facility "user" (8 and up), never the kernel's
    assert oom_kill_cgroups("14" + RECORD[1:]) == ()


def _watch(tmp_path: Path, *names: str) -> tuple[OomWatch, list[Path]]:
    watch = OomWatch(kernel_log=None)
    files = []
    for name in names:
        (tmp_path / name).mkdir()
        file = tmp_path / name / "memory.events"
        file.write_text("max 0\noom 0\noom_kill 0\n")
        watch.watch(file)
        files.append(file)
    return watch, files


def test_a_logged_kill_counts_for_its_scope_only_and_survives_the_file(tmp_path: Path) -> None:
    watch, (web, db) = _watch(tmp_path, "supd-web.scope", "supd-db.scope")
    try:
        web.unlink()  # systemd removed the scope before memory.events said anything
        watch.kernel_record(RECORD)
        assert (watch.kills(web), watch.kills(db)) == (1, 0)
        watch.kernel_record(RECORD)
        assert watch.kills(web) == 2
    finally:
        watch.close()


def test_the_same_kill_seen_in_memory_events_and_the_log_counts_once(tmp_path: Path) -> None:
    watch, (web,) = _watch(tmp_path, "supd-web.scope")
    try:
        web.write_text("max 3\noom 1\noom_kill 1\n")
        watch._refresh(web)
        watch.kernel_record(RECORD)
        assert watch.kills(web) == 1
        web.write_text("max 5\noom 2\noom_kill 2\n")  # a second kill whose log line was rate-limited away
        watch._refresh(web)
        assert watch.kills(web) == 2
    finally:
        watch.close()
