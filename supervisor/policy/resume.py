"""What a starting supd does with each unit it finds a record for: pure.

The record says how the unit was when the previous supd last wrote it down;
the caller adds whether the recorded process is still there (`process`:
"adopt" = same pid, start time and scope; "ended" = it was running and is
gone; "none" = no process was recorded) and whether the machine has rebooted
since (the boot id changed).

- Same boot: a live process is adopted; a unit supd itself stopped at its
  shutdown, or that was waiting out a restart delay, starts again; one that
  was running and ended while supd was away is a failure for its restart
  policy; one recorded just before its exec (`starting`) starts again; `failed` and a user's stop are kept; anything else follows
  `[unit].enabled`.
- New boot: nothing from the old boot is running or adoptable; every enabled
  unit starts fresh (restart counter 0, user stops and `failed` forgotten, as
  systemd starts enabled services at boot); the history (last exit) is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Process = Literal["adopt", "ended", "none"]
Action = Literal["adopt", "start", "ended", "failed", "stopped", "as_enabled"]

# The stop reason supd uses for the units it stops at its own shutdown.
SHUTDOWN_REASON = "supd shutdown"


@dataclass(frozen=True)
class Resume:
    action: Action
    restarts: int  # the restart counter to continue from
    user_stopped: bool  # carried on (a stopped unit stays stopped)
    why: str


def same_boot(recorded: str, current: str) -> bool:
    """A record without a boot id (written by supd 0.1.0) or a kernel that
    gives none counts as this boot: the process check alone decides then.
    Ids are "<kernel boot id>@<PID 1's start time>" (procfs.boot_id); a
    record with the kernel's part alone is compared on that part."""
    if not recorded or not current:
        return True
    if "@" not in recorded:  # written before the id named PID 1's start too
        return recorded == current.partition("@")[0]
    return recorded == current


def decide(
    *,
    state: str,
    user_stopped: bool,
    shutdown_stopped: bool,
    restarts: int,
    recorded_boot: str,
    current_boot: str,
    process: Process,
) -> Resume:
    if not same_boot(recorded_boot, current_boot):
        return Resume("as_enabled", 0, False, "new boot")
    if process == "adopt":
        return Resume("adopt", restarts, user_stopped, "same process, same scope")
    if state == "failed":
        return Resume("failed", restarts, user_stopped, "failed before supd stopped")
    if user_stopped and state == "inactive":
        return Resume("stopped", restarts, True, "stopped by a user")
    if shutdown_stopped:
        return Resume("start", restarts, False, "stopped at supd's shutdown")
    if state == "starting":
        # recorded just before its exec: it never ran as far as anyone saw
        return Resume("start", restarts, user_stopped, "was starting when supd stopped")
    if process == "ended":
        return Resume("ended", restarts, user_stopped, "ended while supd was not running")
    if state == "restarting":
        return Resume("start", restarts, user_stopped, "was waiting to restart")
    return Resume("as_enabled", restarts, user_stopped, "settled")
