"""The real /dev/kmsg as the systemd driver's OOM watch reads it: a reader
starts at the end, sees each new record once, and a line a process writes
there (root may) never passes for the kernel's OOM record."""

from __future__ import annotations

import os
import uuid

import pytest

from supervisor.cgroups import kmsg

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="writing to /dev/kmsg needs root")


def test_a_reader_sees_new_records_and_a_forged_oom_line_is_not_the_kernels() -> None:
    fd = kmsg.open_reader()
    assert fd is not None, "/dev/kmsg is readable by root"
    try:
        assert all("supd-kmsg-test" not in r for r in kmsg.read_records(fd))  # nothing from before
        scope = f"supd-kmsg-test-{uuid.uuid4().hex[:8]}.scope"
        forged = f"<6>oom-kill:constraint=CONSTRAINT_MEMCG,oom_memcg=/{scope},task_memcg=/{scope},task=x,pid=1,uid=0\n"
        with open(kmsg.KMSG, "w") as log:
            log.write(forged)
        records = [r for r in kmsg.read_records(fd) if scope in r]
        assert len(records) == 1, records
        assert records[0].partition(",")[0] == "14"  # facility user, level info: not the kernel's
        assert kmsg.oom_kill_cgroups(records[0]) == ()
        assert kmsg.read_records(fd) == [] or all(scope not in r for r in kmsg.read_records(fd))
    finally:
        os.close(fd)
