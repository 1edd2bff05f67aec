"""issue 14, part 4: `supctl exec -it` on a real pty inside a container unit.

The real supctl runs on a pty the test holds the master of (Python's
os.openpty), with that pty as its controlling terminal, against a real supd
and a busybox container: what a user at a terminal would type, the test
writes; what they would see, it reads.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.api.server import EXEC_HANGUP_GRACE
from tests.e2e.conftest import REPO, TIME_SCALE, Supd, wait_for
from tests.e2e.test_containers import busybox_layer, container_unit, start_unit  # noqa: F401 - a fixture
from tests.e2e.test_live_restore import SLEEPER
from tests.e2e.test_userns import BLOCK, START, USERNS, use_subids

TIMEOUT = 15 * TIME_SCALE


def set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class Terminal:
    """supctl on a pty: `send` is typing, `expect` waits for output."""

    def __init__(self, supd: Supd, *args: str, rows: int = 30, cols: int = 100, term: str = "xterm-supdtest") -> None:
        self.master, slave = os.openpty()
        set_size(slave, rows, cols)
        self.slave_attrs = termios.tcgetattr(slave)
        self.slave = slave
        env = dict(supd.env(), TERM=term)

        def controlling_terminal() -> None:  # a session of its own, the pty its terminal
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "supervisor.cli.main", *args],
            stdin=slave, stdout=slave, stderr=slave, env=env, cwd=REPO, preexec_fn=controlling_terminal,
        )  # fmt: skip
        self.output = b""

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def read_some(self, timeout: float) -> bool:
        if not select.select([self.master], [], [], timeout)[0]:
            return False
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: nobody has the terminal open any more
            return False
        self.output += data
        return bool(data)

    def expect(self, pattern: str, timeout: float = TIMEOUT) -> re.Match[bytes]:
        """The first match of `pattern` in what was printed; what precedes it
        and the match are consumed."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern.encode(), self.output)
            if found:
                self.output = self.output[found.end() :]
                return found
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {pattern!r} in the terminal's output: {self.output[-2000:]!r}")
            self.read_some(min(left, 0.2))

    def run(self, command: str, timeout: float = TIMEOUT) -> bytes:
        """Type `command` at the shell; its output, between two markers."""
        mark = f"m{time.monotonic_ns()}"
        # the markers are built by the shell, so the echoed command line never matches them
        self.send(f"echo {mark}''-begin; {command}; echo {mark}''-end\r".encode())
        self.expect(f"{mark}-begin\r\n", timeout)
        return self.expect(f"(?s)(.*?){mark}-end\r\n", timeout).group(1)

    def wait(self, timeout: float = TIMEOUT) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self.read_some(0.1)  # keep its output flowing
        if self.proc.poll() is None:
            raise AssertionError(f"supctl still runs after {timeout} s; its terminal shows {self.output[-2000:]!r}")
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def terminals() -> Iterator[list[Terminal]]:
    made: list[Terminal] = []
    try:
        yield made
    finally:
        for t in made:
            t.close()


def proc_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def processes(supd: Supd, unit: str, marker: str) -> list[int]:
    return [p["pid"] for p in supd.status(unit)["processes"] if marker in p["cmdline"]]


def test_exec_it_gives_a_shell_a_terminal(supd: Supd, busybox_layer: Path, terminals: list[Terminal]) -> None:  # noqa: F811
    start_unit(supd, "tt", container_unit([busybox_layer]))
    t = Terminal(supd, "exec", "-it", "tt", "--", "/bin/sh", rows=30, cols=100)
    terminals.append(t)
    # the pty is one of the unit's own: its name exists inside, and it is stdin, stdout and stderr
    name = t.run("tty").strip().decode()
    assert re.fullmatch(r"/dev/pts/\d+", name), name
    fds = t.run(f"[ -c {name} ] && for f in 0 1 2; do readlink /proc/$$/fd/$f; done").decode().split()
    assert fds == [name] * 3, fds
    assert t.run("stty size").strip() == b"30 100"
    assert t.run("echo $TERM").strip() == b"xterm-supdtest"
    # a controlling terminal: job control is on (busybox sh would say "can't access tty")
    assert b"can't access tty" not in t.output
    assert t.run("cat /proc/self/stat | cut -d' ' -f7").strip() != b"0"  # tty_nr of a process on it
    # our side is raw while the session runs: no echo or line editing of our own
    assert not termios.tcgetattr(t.slave)[3] & termios.ECHO

    # a resize reaches the command (SIGWINCH to supctl, a resize message to supd)
    set_size(t.master, 41, 123)
    wait_for(lambda: t.run("stty size").strip() == b"41 123", timeout=TIMEOUT, what="the new window size inside")

    # Ctrl-C interrupts the foreground job, not the shell
    t.send(b"sleep 30\r")
    wait_for(lambda: processes(supd, "tt", "sleep 30"), timeout=TIMEOUT, what="sleep 30 in the unit")
    t.send(b"\x03")
    wait_for(lambda: not processes(supd, "tt", "sleep 30"), timeout=TIMEOUT, what="sleep 30 to be interrupted")
    assert t.run("echo alive").strip() == b"alive"

    # Ctrl-Z stops it; the shell's job control knows it
    t.send(b"sleep 31\r")
    (pid,) = wait_for(lambda: processes(supd, "tt", "sleep 31"), timeout=TIMEOUT, what="sleep 31 in the unit")
    t.send(b"\x1a")
    t.expect("Stopped")
    assert proc_state(pid) == "T"
    # fg brings it back to the foreground (the terminal's process group is its again), where Ctrl-C ends it
    t.send(b"fg\r")
    t.expect("sleep 31")
    wait_for(lambda: proc_state(pid) == "S", timeout=TIMEOUT, what="sleep 31 to run again")
    t.send(b"\x03")
    wait_for(lambda: not processes(supd, "tt", "sleep 31"), timeout=TIMEOUT, what="sleep 31 to be interrupted")

    # the exit status comes back, and the terminal is as it was before
    t.send(b"exit 3\r")
    assert t.wait() == 3
    assert termios.tcgetattr(t.slave) == t.slave_attrs


def test_exec_t_without_i_and_errors(supd: Supd, busybox_layer: Path, terminals: list[Terminal]) -> None:  # noqa: F811
    start_unit(supd, "tn", container_unit([busybox_layer]))
    # -t alone: a terminal for the command, no stdin copied to it
    t = Terminal(supd, "exec", "-t", "tn", "--", "/bin/sh", "-c", "tty; stty size; echo out; echo err >&2; exit 5",
                 rows=12, cols=34)  # fmt: skip
    terminals.append(t)
    assert t.wait() == 5
    t.read_some(0.5)
    # (\r\r\n: without -i our terminal stays as it is, cooked, as docker leaves it)
    assert re.search(rb"/dev/pts/\d+\r+\n12 34\r+\nout\r+\nerr\r+\n", t.output), t.output
    # a signal the command dies of comes back as 128+N
    t2 = Terminal(supd, "exec", "-t", "tn", "--", "/bin/sh", "-c", "kill -9 $$")
    terminals.append(t2)
    assert t2.wait() == 128 + 9
    # -it needs a terminal on stdin, like docker
    r = supd.ctl("exec", "-it", "tn", "--", "/bin/sh", input=b"exit 0\n")
    assert r.returncode == 2 and "stdin is not a terminal" in r.stderr, (r.returncode, r.stderr)
    # -t with pipes around it: output through the pty all the same, no error
    raw = subprocess.run([sys.executable, "-m", "supervisor.cli.main", "exec", "-t", "tn", "--", "/bin/echo", "piped"],
                         capture_output=True, env=supd.env(), cwd=REPO, timeout=TIMEOUT)  # fmt: skip
    assert (raw.returncode, raw.stdout) == (0, b"piped\r\n"), raw  # the pty's ONLCR, as docker exec -t gives
    # errors before the command starts are plain errors
    r = supd.ctl("exec", "-t", "tn", "--", "/bin/no-such-command")
    assert r.returncode != 0 and "no-such-command" in r.stderr, (r.returncode, r.stderr)
    # ...and with -it, printed on our terminal as we left it (restored from raw)
    t3 = Terminal(supd, "exec", "-it", "tn", "--", "/bin/no-such-command")
    terminals.append(t3)
    assert t3.wait() == 1
    t3.read_some(0.5)
    assert re.search(rb"supctl: exec in tn: .*no-such-command.*\r\n", t3.output), t3.output
    assert termios.tcgetattr(t3.slave) == t3.slave_attrs
    # without -t nothing changed: pipes, exact bytes, stderr apart
    r = supd.ctl("exec", "tn", "--", "/bin/sh", "-c", "tty; echo to-err >&2; printf 'a\\nb'", input=b"")
    assert (r.returncode, r.stdout, r.stderr) == (0, "not a tty\na\nb", "to-err\n"), r


def test_exec_it_session_ends_with_its_client(supd: Supd, busybox_layer: Path, terminals: list[Terminal]) -> None:  # noqa: F811
    """issue 10's rule with a terminal: the command is in a session of its own,
    beyond a signal to the relay's group, so the pty's hang-up and the relay's
    death must end it."""
    start_unit(supd, "th", container_unit([busybox_layer]))
    # a shell: supd's master is the last one once supctl is gone, and closing it hangs up
    t = Terminal(supd, "exec", "-it", "th", "--", "/bin/sh", "-c", "echo ready-1; exec sleep 4241")
    terminals.append(t)
    t.expect("ready-1")
    (pid,) = wait_for(lambda: processes(supd, "th", "sleep 4241"), timeout=TIMEOUT, what="sleep 4241")
    t.proc.kill()
    # ended by the hang-up: before supd's SIGKILL, which cannot come sooner
    # than the grace period after supctl was killed (the margin is for a busy host)
    wait_for(lambda: not processes(supd, "th", "sleep 4241"), timeout=EXEC_HANGUP_GRACE * 0.9,
             what="the hung-up sleep to end")  # fmt: skip
    # a command that ignores SIGHUP: ended with its relay after the grace period
    t2 = Terminal(supd, "exec", "-it", "th", "--", "/bin/sh", "-c", "trap '' HUP; echo ready-2; exec sleep 4242")
    terminals.append(t2)
    t2.expect("ready-2")
    (pid,) = wait_for(lambda: processes(supd, "th", "sleep 4242"), timeout=TIMEOUT, what="sleep 4242")
    t2.proc.kill()
    wait_for(lambda: not processes(supd, "th", "sleep 4242"), timeout=EXEC_HANGUP_GRACE + TIMEOUT,
             what="sleep 4242 to end with its relay")  # fmt: skip
    assert supd.state_of("th") == "running"  # the unit is untouched


def test_exec_t_as_a_user_in_a_userns_unit_and_in_a_plain_unit(
    supd: Supd, busybox_layer: Path, terminals: list[Terminal]  # noqa: F811
) -> None:
    use_subids(supd, f"supd:{START}:{BLOCK}\n")
    start_unit(supd, "tu", container_unit([busybox_layer], extra_rootfs=USERNS))
    # the terminal belongs to the user the command runs as, inside the unit's user namespace
    t = Terminal(supd, "exec", "-t", "-u", "65534", "tu", "--",
                 "/bin/sh", "-c", "id -u; stat -c '%u %a' $(tty); echo written > $(tty)")  # fmt: skip
    terminals.append(t)
    assert t.wait() == 0, t.output
    t.read_some(0.5)
    assert re.search(rb"65534\r+\n65534 620\r+\nwritten\r+\n", t.output), t.output
    # as the unit's root: its root's (a host-owned pty would be an id its namespace cannot name)
    t0 = Terminal(supd, "exec", "-t", "tu", "--", "/bin/sh", "-c", "stat -c '%u %g' $(tty); echo written > $(tty)")
    terminals.append(t0)
    assert t0.wait() == 0, t0.output
    t0.read_some(0.5)
    assert re.search(rb"0 5\r+\nwritten\r+\n", t0.output), t0.output
    # a plain unit: the host's /dev/ptmx, the host's /dev/pts
    supd.write_unit("host", SLEEPER)
    supd.wait_state("host", "running")
    t2 = Terminal(supd, "exec", "-t", "host", "--", "/bin/sh", "-c", 'tty; [ -c "$(tty)" ] && exit 6')
    terminals.append(t2)
    assert t2.wait() == 6
    t2.read_some(0.5)
    assert re.search(rb"/dev/pts/\d+\r+\n", t2.output), t2.output
