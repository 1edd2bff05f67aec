"""The kernel's own record of an OOM kill, from /dev/kmsg.

memory.events can be gone before anyone reads it: systemd removes an emptied
scope within milliseconds of its last process dying, and the kernel's
notification of the oom_kill counter can come after that, or never (see
systemd.OomWatch). The kernel also logs every OOM kill, before it sends the
SIGKILL, as a line naming the cgroup that was over its limit and the victim's
cgroup:

    oom-kill:constraint=CONSTRAINT_MEMCG,...,oom_memcg=/a.slice/b.scope,task_memcg=/a.slice/b.scope,task=x,pid=1,uid=0

Kubernetes' cAdvisor attributes OOM kills to containers from the same line.
Each reader of /dev/kmsg has its own position, so reading it takes nothing
from journald or dmesg. The line is rate-limited with the rest of the OOM
report (ten per five seconds), so it complements memory.events, never
replaces it. Only records of the kernel's own facility count: a process
writing to /dev/kmsg cannot log as the kernel.
"""

from __future__ import annotations

import errno
import os

KMSG = "/dev/kmsg"
_PREFIX = "oom-kill:"


def open_reader(path: str = KMSG) -> int | None:
    """A non-blocking reader positioned at the end (only what comes after),
    or None where the log cannot be read (no CAP_SYSLOG, no /dev/kmsg)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        os.lseek(fd, 0, os.SEEK_END)
    except OSError:
        os.close(fd)
        return None
    return fd


def read_records(fd: int) -> list[str]:
    """Every record available now (one read() returns one record); records
    overwritten before they were read (EPIPE) are skipped."""
    records: list[str] = []
    while True:
        try:
            data = os.read(fd, 8192)
        except BlockingIOError:
            return records
        except OSError as e:
            if e.errno == errno.EPIPE:
                continue  # the ring buffer wrapped past us: go on from the oldest kept
            if e.errno == errno.EINVAL:
                continue  # a record longer than the buffer: not an OOM line
            raise
        if not data:
            return records
        records.append(data.decode("utf-8", "replace"))


def oom_kill_cgroups(record: str) -> tuple[str, ...]:
    """The cgroup paths an "oom-kill:" record of the kernel names (the one
    over its limit and the victim's), () for any other record.

    A record is "PRIORITY,SEQ,USEC,FLAGS;MESSAGE" plus continuation lines;
    PRIORITY is facility * 8 + level, and the kernel's facility is 0."""
    header, sep, message = record.partition(";")
    if not sep:
        return ()
    priority = header.split(",", 1)[0]
    if not priority.isdigit() or int(priority) >= 8:
        return ()
    message = message.split("\n", 1)[0]
    if not message.startswith(_PREFIX):
        return ()
    fields = dict(part.partition("=")[::2] for part in message[len(_PREFIX):].split(","))
    return tuple(dict.fromkeys(p for p in (fields.get("oom_memcg"), fields.get("task_memcg")) if p))
