"""sd_notify(3) for supd: tell systemd when we are ready, reloading, stopping,
what we are doing (STATUS=) and that we are alive (WATCHDOG=1).

The protocol is one datagram of newline-separated KEY=VALUE pairs sent to the
AF_UNIX socket named by $NOTIFY_SOCKET (a path, or `@name` for the abstract
namespace). It is stdlib only and never blocks or raises into the daemon: a
notification that cannot be delivered is logged once and otherwise dropped —
systemd will time out or restart us, which is the right outcome, and a
supervisor that crashes because its supervisor went away would be worse.

Without $NOTIFY_SOCKET (no systemd, `supd` run by hand or by tests) every
method is a no-op.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import MutableMapping

import structlog

log = structlog.get_logger()

NOTIFY_SOCKET = "NOTIFY_SOCKET"
WATCHDOG_USEC = "WATCHDOG_USEC"
WATCHDOG_PID = "WATCHDOG_PID"

READY = "READY=1"
RELOADING = "RELOADING=1"
STOPPING = "STOPPING=1"
WATCHDOG = "WATCHDOG=1"
STATUS = "STATUS"
MONOTONIC_USEC = "MONOTONIC_USEC"


def parse_notify_address(value: str) -> str | None:
    """The socket address to send to, or None if `value` is not one we can use.

    `@name` is the abstract namespace (a leading NUL byte on the wire). Like
    sd_notify, only absolute paths are accepted: a relative one would depend
    on our working directory. (systemd ≥ 254 also allows `vsock:`; a host
    service never gets that.)
    """
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


def parse_watchdog_usec(usec: str | None, watchdog_pid: str | None, own_pid: int) -> int | None:
    """WATCHDOG_USEC in microseconds if the watchdog is meant for this process.

    systemd sets WATCHDOG_PID to the main pid; if it names someone else (we
    were forked by a wrapper that kept the environment), the watchdog is not
    ours to pet.
    """
    if not usec:
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    if value <= 0:
        return None
    if watchdog_pid:
        try:
            if int(watchdog_pid) != own_pid:
                return None
        except ValueError:
            return None
    return value


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in µs, the clock systemd compares MONOTONIC_USEC with."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class Notifier:
    """Sends sd_notify messages to one address; see the module docstring."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self._address = address
        self._watchdog_usec = watchdog_usec if address is not None else None
        self._sock: socket.socket | None = None
        self._warned = False

    @classmethod
    def from_env(
        cls,
        environ: MutableMapping[str, str] | None = None,
        *,
        unset: bool = True,
    ) -> Notifier:
        """Read $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID.

        With `unset` (the default) the variables are removed from the
        environment, as `sd_notify(unset_environment=1)` does, so that units
        and helpers supd starts do not inherit them and talk to systemd as if
        they were supd.
        """
        env = os.environ if environ is None else environ
        raw_address = env.get(NOTIFY_SOCKET, "")
        raw_usec = env.get(WATCHDOG_USEC)
        raw_pid = env.get(WATCHDOG_PID)
        if unset:
            for key in (NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID):
                env.pop(key, None)
        if not raw_address:
            return cls(None)
        address = parse_notify_address(raw_address)
        if address is None:
            log.warning(
                "notify_socket_unusable",
                notify_socket=raw_address,
                expected="an absolute path or @abstract-name",
            )
            return cls(None)
        return cls(address, parse_watchdog_usec(raw_usec, raw_pid, os.getpid()))

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings: half the timeout, as sd_watchdog_enabled(3) advises."""
        if self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2 / 1_000_000

    def ready(self, status: str | None = None) -> bool:
        return self._send_fields(READY, status)

    def reloading(self, status: str | None = None) -> bool:
        # systemd ≥ 253 (Type=notify-reload) needs MONOTONIC_USEC to tell this
        # reload from an earlier one; 252 ignores the field.
        return self._send_fields(f"{RELOADING}\n{MONOTONIC_USEC}={monotonic_usec()}", status)

    def stopping(self, status: str | None = None) -> bool:
        return self._send_fields(STOPPING, status)

    def status(self, text: str) -> bool:
        return self._send_fields(None, text)

    def watchdog(self) -> bool:
        if self._watchdog_usec is None:
            return False
        return self.send(WATCHDOG)

    def _send_fields(self, head: str | None, status: str | None) -> bool:
        lines = [head] if head else []
        if status is not None:
            # one line per field: a newline inside STATUS= would start a new field
            lines.append(f"{STATUS}={' '.join(status.splitlines())}")
        return self.send("\n".join(lines))

    def send(self, message: str) -> bool:
        """Send one raw notification; True if it was handed to the kernel."""
        if self._address is None or not message:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
                )
            self._sock.sendto(message.encode(), self._address)
        except OSError as error:
            # A full receive queue (EAGAIN), a vanished socket (ENOENT,
            # ECONNREFUSED) or a denied one (EPERM): say so once, keep going.
            if not self._warned:
                self._warned = True
                log.warning(
                    "notify_send_failed",
                    notify_socket=self._address.replace("\0", "@"),
                    error=str(error),
                    notification=message.split("\n", 1)[0],
                )
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
