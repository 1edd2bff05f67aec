"""Live-restore: what supd writes down about each unit, and how a new supd
takes over the units a previous one left running (after `systemctl restart
supd` with live_restore, or after supd was killed).

A process is re-adopted only if it is the very process that was recorded (pid
AND start time, so a reused pid is never adopted) and it still sits in the
unit's scope. Everything else is treated as "it ended while supd was away",
and the unit's restart policy decides.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import structlog

from supervisor.cgroups.driver import CgroupError, CgroupRef
from supervisor.daemon.state_store import UnitRecord, cgroup_paths_of
from supervisor.procfs import in_cgroup, process_start_time, same_process
from supervisor.daemon.unitrun import UnitRun
from supervisor.policy.restart import ExitStatus
from supervisor.policy.resume import SHUTDOWN_REASON, Process
from supervisor.policy.state import UnitState
from supervisor.units.fingerprint import fingerprint, is_comparable
from supervisor.units.model import Resources, Unit

log = structlog.get_logger()

# States worth writing down: the ones a restarted supd must know about. The
# transitional ones (starting, stopping) are short and would only add fsyncs.
PERSISTED_STATES = frozenset(
    {UnitState.RUNNING, UnitState.FROZEN, UnitState.EXITED, UnitState.FAILED, UnitState.INACTIVE, UnitState.RESTARTING}
)

Verdict = Literal["adopt", "ended", "fresh", "reboot"]
# what policy.resume needs to know of a verdict
PROCESS: dict[str, Process] = {"adopt": "adopt", "ended": "ended", "fresh": "none", "reboot": "none"}


def record_for(u: UnitRun, boot_id: str, launch: tuple[int, CgroupRef | None] | None = None) -> UnitRecord:
    """What to write down about `u` now. `launch` = (pid, scope) of a process
    placed in its scope and about to exec: the record is then state
    `starting` with that process, so a supd killed from here on re-adopts it."""
    last_exit = None
    if u.last_exit is not None:
        last_exit = {"code": u.last_exit.code, "signal": u.last_exit.signal, "reason": u.last_exit.reason}
    state, since = u.state, u.since
    pid = u.pid if state in (UnitState.RUNNING, UnitState.FROZEN) else None
    scope = u.cgroup if pid else None
    if launch is not None:
        (pid, scope), state, since = launch, UnitState.STARTING, time.time()
    return UnitRecord(
        name=u.name,
        state=state.value,
        since=since,
        pid=pid,
        pid_start_time=process_start_time(pid) if pid else None,
        cgroup=scope.to_json() if scope is not None else None,
        restarts=u.restarts,
        last_exit=last_exit,
        definition=fingerprint(u.unit) if u.unit is not None else "",
        started_at=time.time() if pid else None,
        user_stopped=u.user_stopped,
        frozen_by_user=state == UnitState.FROZEN and u.freeze_reason == "user",
        boot_id=boot_id,
        shutdown_stopped=state == UnitState.INACTIVE and u.stop_reason == SHUTDOWN_REASON,
        resources=asdict(u.unit.resources) if (u.unit is not None and pid) else None,
        error=u.error if state == UnitState.FAILED else None,
        # a re-adopting supd claims the ids of the process it takes over
        extra=_extra(u),
    )


def _extra(u: UnitRun) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if u.userns is not None:
        extra["userns"] = u.userns.to_json()
    total = u.oom_kills_earlier + u.oom_kills_run
    if total:  # carried over, like restarts (docs/supctl.md, "Status object")
        extra["oom_kills"] = total
    return extra


def recorded_oom_kills(record: UnitRecord) -> int:
    value = record.extra.get("oom_kills", 0)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def definition_it_ran_on(unit: Unit, record: UnitRecord) -> Unit | None:
    """The definition an adopted process runs on, when its unit file changed
    while supd was away (None: it did not, or that cannot be told). The file now differs from
    the recorded one in [resources] only if putting back the recorded
    resources gives the recorded fingerprint; then that is the old definition, and
    the change applies live. Otherwise the old one is unknown: the new one
    stands in, and the change needs a restart (as an edit while running)."""
    if not record.definition or record.definition == fingerprint(unit):
        return None
    if not is_comparable(record.definition):
        # A record of supd 0.1, whose hash was of its own model's repr: any
        # upgrade changed it. Whether the file changed too cannot be told, and
        # restarting every container over an upgrade is what live restore is
        # for avoiding: the process stays, the file's definition stands in.
        log.info("unit_definition_not_comparable", unit=unit.name, recorded=record.definition)
        return None
    if record.resources is not None:
        try:
            old = replace(unit, resources=Resources(**record.resources))
        except TypeError:  # fields of another version
            return unit
        if fingerprint(old) == record.definition:
            return old
    return unit


def adoption_key(record: UnitRecord) -> tuple[object, ...]:
    """What of a record matters after a supd restart. Running and frozen are
    one state here: adoption reads the freezer from the scope itself."""
    up = record.state in (UnitState.RUNNING.value, UnitState.FROZEN.value)
    return (
        "up" if up else record.state,
        record.pid,
        record.restarts,
        repr(record.last_exit),
        record.definition,
        record.user_stopped,
        record.frozen_by_user,
        record.boot_id,
        record.shutdown_stopped,
        record.error,
        repr(record.extra.get("userns")),  # the id block a re-adopting supd must claim
        record.extra.get("oom_kills"),
    )


@dataclass(frozen=True)
class Adoption:
    verdict: Verdict
    why: str
    cgroup: CgroupRef | None = None


def judge(record: UnitRecord, same_boot: bool = True) -> Adoption:
    """Decide what to do with a recorded unit process (reads /proc). A pid
    from an earlier boot names nothing: never adopted."""
    if record.pid is None:
        return Adoption("fresh", "no process was recorded")
    ref = None
    if record.cgroup:
        try:
            ref = CgroupRef.from_json(record.cgroup)
        except CgroupError as e:
            return Adoption("ended", f"unreadable cgroup in state file: {e}")
    if not same_boot:
        return Adoption("reboot", "recorded in an earlier boot", ref)
    if not same_process(record.pid, record.pid_start_time):
        return Adoption("ended", f"pid {record.pid} is gone or belongs to another process now", ref)
    paths = cgroup_paths_of(record.cgroup)
    if paths and not in_cgroup(record.pid, paths):
        return Adoption("ended", f"pid {record.pid} is no longer in the unit's scope", ref)
    return Adoption("adopt", "same process, same scope", ref)


def recorded_exit(record: UnitRecord) -> ExitStatus | None:
    """The last exit a record carries on (history survives supd restarts)."""
    if not record.last_exit:
        return None
    return ExitStatus(
        code=record.last_exit.get("code"),
        signal=record.last_exit.get("signal"),
        reason=str(record.last_exit.get("reason", "")),
    )

