"""The state store on a real filesystem, and process identity on real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.daemon import state_store
from supervisor import procfs
from supervisor.daemon.state_store import FORMAT_VERSION, StateStore, UnitRecord
from supervisor.procfs import in_cgroup, process_start_time, same_process

WEB = UnitRecord(name="web", state="running", since=1_700_000_000.25, pid=4321, pid_start_time=99, restarts=1)


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    return StateStore(tmp_path)


def test_round_trip(store: StateStore, tmp_path: Path) -> None:
    db = UnitRecord(name="db", state="exited", since=1.0, last_exit={"code": 0, "signal": None, "reason": "exit 0"})
    store.save(WEB)
    store.save(db)
    records, problems = store.load_all()
    assert problems == []
    assert records == {"web": WEB, "db": db}
    document = json.loads((tmp_path / "state" / "web.json").read_text())
    assert document["version"] == FORMAT_VERSION
    assert document["unit"]["name"] == "web"
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700


def test_save_replaces_and_remove_forgets(store: StateStore) -> None:
    store.save(WEB)
    newer = UnitRecord(name="web", state="frozen", since=2.0, frozen_by_user=True)
    store.save(newer)
    assert store.load_all() == ({"web": newer}, [])
    store.remove("web")
    store.remove("web")  # twice is fine
    assert store.load_all() == ({}, [])


def test_no_state_folder_yet(tmp_path: Path) -> None:
    assert StateStore(tmp_path / "nothing").load_all() == ({}, [])


def test_crash_between_write_and_rename_keeps_the_old_record(store: StateStore, tmp_path: Path) -> None:
    store.save(WEB)
    # what a crash after mkstemp+write but before rename leaves behind
    leftover = tmp_path / "state" / ".web.json.k3j2h1.tmp"
    leftover.write_text('{"version": 1, "unit": {"name": "web", "sta')
    records, problems = store.load_all()
    assert records == {"web": WEB}
    assert problems == []
    assert not leftover.exists()


def test_failed_save_leaves_old_file_and_no_temp(
    store: StateStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.save(WEB)

    def disk_gone(fd: int) -> None:
        raise OSError(5, "Input/output error")

    # fault injection into the real save path: fsync of the new file fails
    monkeypatch.setattr(state_store.os, "fsync", disk_gone)
    with pytest.raises(OSError):
        store.save(UnitRecord(name="web", state="stopping", since=3.0))
    monkeypatch.undo()
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["web.json"]
    assert store.load_all() == ({"web": WEB}, [])


def test_unserialisable_record_never_touches_the_file(store: StateStore, tmp_path: Path) -> None:
    store.save(WEB)
    with pytest.raises(TypeError):
        store.save(UnitRecord(name="web", state="x", since=1.0, extra={"bad": object()}))
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["web.json"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "state/bad.json: file is empty (torn write?)"),
        ('{"version": 1, "unit": {"name": "bad", "st', "state/bad.json: not valid JSON"),
        ("[1, 2]", "state/bad.json: expected a JSON object, got list"),
        ('{"unit": {}}', 'state/bad.json: "version": expected an integer, got null'),
        (
            '{"version": 1, "unit": {"name": "bad", "state": "running", "since": 1, "pid": "7"}}',
            'state/bad.json: "unit.pid": expected an integer or null, got "7"',
        ),
        (
            '{"version": 1, "unit": {"name": "other", "state": "running", "since": 1}}',
            'state/bad.json: "unit.name" is "other"',
        ),
        (
            '{"version": 2, "unit": {}}',
            "state/bad.json: format version 2 is newer than this supd understands (1); ignoring it",
        ),
        (
            '{"version": 0, "unit": {}}',
            "state/bad.json: format version 0 is older than this supd understands (1); ignoring it",
        ),
    ],
)
def test_bad_files_are_reported_and_moved_aside(
    store: StateStore, tmp_path: Path, content: str, expected: str
) -> None:
    store.save(WEB)
    bad = tmp_path / "state" / "bad.json"
    bad.write_text(content)
    records, problems = store.load_all()
    assert records == {"web": WEB}, "one bad file must not cost the others"
    assert len(problems) == 1
    assert problems[0].startswith(expected)
    assert problems[0].endswith("moved to state/bad.json.corrupt")
    assert not bad.exists()
    assert (tmp_path / "state" / "bad.json.corrupt").read_text() == content
    # the set-aside file is not read again
    assert store.load_all() == ({"web": WEB}, [])


def test_binary_garbage_is_a_problem_not_a_crash(store: StateStore, tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "junk.json").write_bytes(b"\xff\xfe\x00garbage")
    records, problems = store.load_all()
    assert records == {}
    assert len(problems) == 1 and problems[0].startswith("state/junk.json: ")


@pytest.mark.parametrize("name", ["", "../escape", ".hidden", "a/b"])
def test_names_that_are_not_file_names_are_refused(store: StateStore, name: str) -> None:
    with pytest.raises(state_store.StateStoreError):
        store.save(UnitRecord(name=name, state="x", since=0.0))


# --- process identity ---------------------------------------------------------


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "300"])
    yield proc
    proc.kill()
    proc.wait()


def test_start_time_matches_proc(sleeper: subprocess.Popen[bytes]) -> None:
    start = process_start_time(sleeper.pid)
    assert start is not None
    with open(f"/proc/{sleeper.pid}/stat") as f:
        assert int(f.read().rsplit(")", 1)[1].split()[19]) == start
    assert same_process(sleeper.pid, start)


def test_comm_with_spaces_and_parens() -> None:
    # exec -a only sets argv[0]; comm is what prctl/the executable name says,
    # so rename the process itself
    code = "import ctypes,sys,time; ctypes.CDLL(None).prctl(15, b'x) (y z', 0, 0, 0); print('ok', flush=True); time.sleep(300)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    with proc:
        assert proc.stdout is not None and proc.stdout.readline() == b"ok\n"
        with open(f"/proc/{proc.pid}/comm") as f:
            assert f.read().strip() == "x) (y z"
        start = process_start_time(proc.pid)
        assert start is not None and same_process(proc.pid, start)
        proc.kill()


def test_reused_pid_is_not_the_same_process(sleeper: subprocess.Popen[bytes]) -> None:
    start = process_start_time(sleeper.pid)
    assert start is not None
    # another live process with a different start time under the recorded pid
    # stands in for the kernel handing the pid to someone else
    assert not same_process(sleeper.pid, start + 1)
    assert not same_process(os.getpid(), start)
    assert not same_process(sleeper.pid, None)
    assert not same_process(None, start)


def test_gone_and_zombie_processes_are_not_the_same() -> None:
    proc = subprocess.Popen(["sleep", "300"])
    start = process_start_time(proc.pid)
    assert start is not None
    proc.kill()
    deadline = time.monotonic() + 30
    # not yet reaped: a zombie keeps its pid and start time, but is not alive
    while Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline, "process never became a zombie"
        time.sleep(0.01)
    assert not same_process(proc.pid, start)
    proc.wait()
    assert process_start_time(proc.pid) is None
    assert not same_process(proc.pid, start)


def test_in_cgroup_on_this_host(sleeper: subprocess.Popen[bytes]) -> None:
    with open(f"/proc/{sleeper.pid}/cgroup") as f:
        lines = f.read().splitlines()
    with open("/proc/self/mountinfo") as f:
        mounts = procfs.parse_cgroup_mounts(f.read())
    dirs = procfs.cgroup_dirs("\n".join(lines), mounts)
    assert dirs, "a process on this host is in at least one mounted hierarchy"
    assert all(d.is_dir() for d in dirs)
    assert in_cgroup(sleeper.pid, [dirs[0]])
    assert in_cgroup(sleeper.pid, [str(dirs[-1])])
    assert not in_cgroup(sleeper.pid, [dirs[0] / "supdtest-not-here"])
    assert not in_cgroup(sleeper.pid, [])
    assert not in_cgroup(2**22 + 12345, [dirs[0]])  # no such pid
