"""A soak of supd (issue 10): a seeded random sequence of operations against a
real supd driven by the real supctl, with invariants checked after every step.

    python3 bench/soak.py --ops 500 --min-seconds 600 [--seed N]   # the soak
    python3 bench/soak.py --ops 40 --min-seconds 0 --seed 1        # the smoke

Operations: start, stop, restart, freeze, thaw, reload, unit-file edits
(valid, resources only, invalid TOML or an unknown key, the fix), delete and
re-add of a file, kill -9 of a unit's main pid, kill -9 of supd then a new
supd on the same folders (live-restore re-adoption), SIGTERM of supd and a new
one, and a new boot (supd and every unit process gone, cgroups and the runtime
folder gone as after a real reboot, the records' boot id rewritten).

After each step, once things settle (bounded), the invariants: supd alive and
answering; every unit in a state the soak's model allows, and every state that
is not `running`/`inactive` carries a reason; no scope of a unit that is not
active; no process in the soak's cgroup root, and no process carrying the
soak's tag anywhere, that is not inside an active unit's scope; no mount under
the soak's folders for a unit that is not active; no zombie child of supd; a
re-adopted unit keeps its pid; supd's fd count flat. At the end every unit is
stopped, supd ends, and nothing may be left. Exit status 1 on any violation.

Needs root. Everything lives in a scratch folder and a cgroup root of its own
(`/supdsoak<hex>` in every hierarchy), removed at the end; processes are ended
by pid only.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cgroup_cleanup
import procfs
import rawhttp
import scratch
from supd_instance import SupdError, SupdInstance, repo_env

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from tests.helpers.busybox import BUSYBOX, make_busybox_rootfs  # noqa: E402

BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")
FAKE_BOOT_ID = "00000000-0000-4000-8000-{:012x}"
ACTIVE = frozenset({"running", "frozen", "starting", "stopping"})
TRANSIENT = frozenset({"starting", "stopping"})
# States that must say why (last_exit or error) when the soak sees them settled.
NEED_REASON = frozenset({"restarting", "exited", "failed", "error"})
SUPCTL_TIMEOUT = 60.0
READY_TIMEOUT = 60.0
# A step is settled when every check passes; a check still failing after this
# long is a violation. Long enough for a stop timeout plus the SIGKILL path
# and a restart delay on a machine whose CPU others share.
SETTLE_TIMEOUT = 30.0
POLL_INTERVAL = 0.3
# An fd count may move with the number of running units (a pidfd and a log
# file each); growth beyond this, for the same set of active units within one
# supd, is a leak.
FD_SLACK = 6
FD_MIN_GAP_STEPS = 15


# --- units ------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """One unit of the soak: how its file is written, and what its states may be."""

    name: str
    render: Callable[[int, int, str], str]  # (variant, resources index, tag) -> TOML
    enabled: bool = True
    # States allowed while the model wants it up, besides running; "stable"
    # units must be running (a restart policy that always brings them back,
    # a start limit they cannot reach).
    up_states: frozenset[str] = frozenset({"running"})
    stable: bool = True
    container: bool = False


def _env(tag: str) -> str:
    return f'environment = {{ SOAK_TAG = "{tag}" }}\n'


def _restart(policy: str, burst: int = 1000, interval: str = "60s", delay: str = "100ms") -> str:
    return (f'[restart]\npolicy = "{policy}"\ndelay = "{delay}"\nmax_delay = "2s"\n'
            f'limit_burst = {burst}\nlimit_interval = "{interval}"\n')


def _plain(command: list[str], tag: str, extra: str = "") -> str:
    return f"[exec]\ncommand = {json.dumps(command)}\n{_env(tag)}{extra}"


TRAP_LOOP = "trap 'exit 0' TERM; while :; do sleep {n}; done"
MEMORY_MAX = ("32M", "48M", "64M", "256K")  # the last is below what a shell uses: EBUSY live


def _sleeper(v: int, r: int, tag: str) -> str:
    return (f'[unit]\ndescription = "sleeper v{v}"\n' + _plain(["/bin/sleep", str(100000 + v)], tag)
            + _restart("on-failure") + '[stop]\ntimeout = "3s"\n')


def _trapper(v: int, r: int, tag: str) -> str:
    return (f'[unit]\ndescription = "trapper v{v}"\n' + _plain(["/bin/sh", "-c", TRAP_LOOP.format(n=1 + v % 3)], tag)
            + _restart("always") + '[stop]\ntimeout = "3s"\n')


def _stubborn(v: int, r: int, tag: str) -> str:
    # ignores SIGTERM: every stop goes through the timeout and the SIGKILL of the scope
    cmd = f"trap '' TERM; while :; do sleep {1 + v % 2}; done"
    return (f'[unit]\ndescription = "stubborn v{v}"\n' + _plain(["/bin/sh", "-c", cmd], tag)
            + _restart("always") + '[stop]\ntimeout = "1s"\n')


def _crasher(v: int, r: int, tag: str) -> str:
    # fails every few seconds; the start limit puts it in `failed` now and then
    cmd = f"sleep {2 + v % 3}; exit 3"
    return (f'[unit]\ndescription = "crasher v{v}"\n' + _plain(["/bin/sh", "-c", cmd], tag)
            + _restart("on-failure", burst=4, interval="15s", delay="200ms"))


def _memcap(v: int, r: int, tag: str) -> str:
    res = f'[resources]\nmemory_max = "{MEMORY_MAX[r % len(MEMORY_MAX)]}"\npids_max = {16 + r}\ncpu_weight = {50 + 10 * r}\n'
    return (f'[unit]\ndescription = "memcap v{v}"\n' + _plain(["/bin/sh", "-c", TRAP_LOOP.format(n=1 + v % 2)], tag)
            + res + _restart("always", burst=5, interval="20s") + '[stop]\ntimeout = "3s"\n')


def _oneshot(v: int, r: int, tag: str) -> str:
    return (f'[unit]\ndescription = "oneshot v{v}"\n' + _plain(["/bin/sh", "-c", f"sleep {3 + v % 3}; exit 0"], tag)
            + _restart("no"))


def _idle(v: int, r: int, tag: str) -> str:
    return (f'[unit]\ndescription = "idle v{v}"\nenabled = false\n' + _plain(["/bin/sleep", str(200000 + v)], tag)
            + _restart("on-failure") + '[stop]\ntimeout = "3s"\n')


def _box(layer: Path) -> Callable[[int, int, str], str]:
    def render(v: int, r: int, tag: str) -> str:
        res = f'[resources]\nmemory_max = "{("64M", "96M")[r % 2]}"\n'
        return (f'[unit]\ndescription = "box v{v}"\n' + _plain(["/bin/sh", "-c", TRAP_LOOP.format(n=1 + v % 3)], tag)
                + f'[rootfs]\nlayers = ["{layer}"]\nwritable = "ephemeral"\nnetwork = "none"\n'
                + res + _restart("on-failure") + '[stop]\ntimeout = "3s"\n')
    return render


def _box_init(layer: Path) -> Callable[[int, int, str], str]:
    def render(v: int, r: int, tag: str) -> str:
        return (f'[unit]\ndescription = "box-init v{v}"\n' + _plain(["/bin/sleep", str(300000 + v)], tag)
                + f'[rootfs]\nlayers = ["{layer}"]\nwritable = "{("persistent", "readonly")[v % 2]}"\n'
                + 'network = "none"\ninit = true\n' + _restart("always") + '[stop]\ntimeout = "3s"\n')
    return render


def kinds(layer: Path | None) -> list[Kind]:
    found = [
        Kind("sleeper", _sleeper),
        Kind("trapper", _trapper),
        Kind("stubborn", _stubborn),
        Kind("crasher", _crasher, up_states=frozenset({"running", "restarting", "failed"}), stable=False),
        # a limit under its usage makes it crash-loop into `failed`: a state with a reason
        Kind("memcap", _memcap, up_states=frozenset({"running", "restarting", "failed"}), stable=False),
        Kind("oneshot", _oneshot, up_states=frozenset({"running", "exited"}), stable=False),
        Kind("idle", _idle, enabled=False),
    ]
    if layer is not None:
        found += [Kind("box", _box(layer), container=True), Kind("boxinit", _box_init(layer), container=True)]
    return found


INVALID_FILES = (
    '[exec\ncommand = ["/bin/true"]\n',  # not TOML
    '[exec]\ncomand = ["/bin/true"]\n',  # unknown key
    '[exec]\ncommand = ["/bin/true"]\n[restart]\ndelay = 12\n',  # wrong type
)


@dataclass
class UnitModel:
    """What the soak believes a unit should be, from what it asked for."""

    kind: Kind
    variant: int = 0
    res: int = 0
    file: str = "valid"  # valid | invalid | absent
    # None: either is right. units.md says an edit starts a stopped enabled
    # unit; the lifecycle rewrite keeps a user's stop until a user start.
    want_up: bool | None = True
    frozen: bool = False
    user_stopped: bool = False
    # The pid the unit ran when its file got a change that needs a restart:
    # until supd has applied it, a new supd restarts that process on the new
    # definition rather than keep it (docs/configuration.md, live restore).
    edited_pid: int | None = None

    def after_edit(self, running: bool) -> None:
        """What an edit of the file (valid, or a fix) makes the soak expect."""
        self.frozen = False
        if running and self.want_up:
            self.want_up = True  # stopped with the old definition, started with the new one
        elif self.user_stopped and self.kind.enabled:
            self.want_up = None
        else:
            self.want_up = self.kind.enabled or (bool(self.want_up) and running)

    def __post_init__(self) -> None:
        self.want_up = self.kind.enabled


# --- the instance -------------------------------------------------------------


@dataclass
class Soak:
    """The supd under test (a bench SupdInstance on the soak's folders and
    cgroup root), launched again after every kill, SIGTERM and reboot."""

    work: Path
    seed: int
    cgroup_root: str = field(default_factory=lambda: f"supdsoak{secrets.token_hex(5)}")
    tag: str = field(default_factory=lambda: secrets.token_hex(6))
    live_restore: bool = True
    incarnation: int = 0
    instance: SupdInstance = field(init=False)

    def __post_init__(self) -> None:
        self.instance = SupdInstance(self.work, cgroup_root=self.cgroup_root)

    @property
    def units_dir(self) -> Path:
        return self.instance.units_dir

    @property
    def state_dir(self) -> Path:
        return self.instance.state_dir

    @property
    def runtime_dir(self) -> Path:
        return self.instance.runtime_dir

    @property
    def socket(self) -> Path:
        return self.instance.socket

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self.instance.process

    @property
    def pid(self) -> int:
        return self.instance.pid

    def launch(self, live_restore: bool) -> None:
        self.live_restore = live_restore
        self.incarnation += 1
        self.work.mkdir(parents=True, exist_ok=True)
        with open(self.instance.log, "ab") as log:
            log.write(f"--- soak: supd incarnation {self.incarnation} live_restore={live_restore}\n".encode())
        self.instance.launch(live_restore=live_restore)
        try:
            self.instance.wait_ready(READY_TIMEOUT)
        except SupdError as e:
            raise RuntimeError(str(e)) from e

    def end(self, sig: int, timeout: float = 120.0) -> int | None:
        """Signal supd and reap it; SIGKILL (by pid) if it does not end."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        rc = self.proc.returncode
        self.instance.process = None
        return rc

    def supctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = repo_env({"SUPD_SOCKET": str(self.socket)})
        try:
            return subprocess.run([sys.executable, "-m", "supervisor.cli.main", *args], cwd=REPO, env=env,
                                  capture_output=True, text=True, timeout=SUPCTL_TIMEOUT)
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(args, 124, "", f"supctl {' '.join(args)}: timed out")

    def units(self) -> dict[str, dict[str, Any]] | None:
        try:
            return {u["name"]: u for u in rawhttp.request_json(self.socket, "GET", "/v1/units", timeout=20)}
        except (OSError, ValueError):
            return None

    def write_unit(self, name: str, text: str) -> None:
        tmp = self.units_dir / f".{name}.toml.tmp"  # dot files are not units
        tmp.write_text(text)
        os.replace(tmp, self.units_dir / f"{name}.toml")  # atomic, like a careful editor


# --- what the kernel says -----------------------------------------------------


def scopes(root: str) -> dict[str, list[Path]]:
    """unit name -> its scope dirs in every hierarchy under the soak's root."""
    found: dict[str, list[Path]] = {}
    for h in cgroup_cleanup.hierarchies():
        top = h / root
        if not top.is_dir():
            continue
        for dirpath, _dirs, _files in os.walk(top):
            base = os.path.basename(dirpath)
            if base.startswith("supd-") and base.endswith(".scope"):
                found.setdefault(base[len("supd-"):-len(".scope")], []).append(Path(dirpath))
    return found


def pids_by_cgroup(root: str) -> dict[int, str]:
    """pid -> the cgroup dir (relative to the hierarchy) it sits in, for every
    process in the soak's root in any hierarchy."""
    found: dict[int, str] = {}
    for h in cgroup_cleanup.hierarchies():
        top = h / root
        if not top.is_dir():
            continue
        for dirpath, _dirs, _files in os.walk(top):
            try:
                pids = Path(dirpath, "cgroup.procs").read_text().split()
            except OSError:
                continue
            for p in pids:
                found[int(p)] = os.path.relpath(dirpath, h)
    return found


def tagged_pids(tag: str) -> list[int]:
    """Every live process whose environment carries the soak's tag (unit
    processes and whatever they forked, containers included)."""
    needle = f"SOAK_TAG={tag}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            env = Path("/proc", entry, "environ").read_bytes()
        except OSError:
            continue
        if needle in env.split(b"\0") and procfs.alive(int(entry)):
            found.append(int(entry))
    return found


def scope_unit_of(pid: int, root: str) -> str | None:
    """The unit whose scope (under the soak's root) holds pid, by /proc/pid/cgroup."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        path = line.split(":", 2)[2]
        if not path.startswith(f"/{root}/"):
            continue
        for part in path.split("/"):
            if part.startswith("supd-") and part.endswith(".scope"):
                return part[len("supd-"):-len(".scope")]
    return None


def mounts_under(root: Path) -> list[str]:
    return scratch.mounts_under(root)


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def zombie_children(pid: int) -> list[int]:
    return [c for c in procfs.children(pid) if not procfs.alive(c) and Path(f"/proc/{c}").exists()]


def spawner_pid(supd: int) -> int | None:
    for child in procfs.children(supd):
        if any(a.endswith("shim.py") for a in procfs.cmdline(child)):
            return child
    return None


# --- the checks ---------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    listing: dict[str, dict[str, Any]]
    problems: tuple[str, ...]


def check(soak: Soak, model: dict[str, UnitModel]) -> Snapshot:
    """Every invariant at this moment; the problems found (empty when all hold)."""
    problems: list[str] = []
    if soak.proc is None or soak.proc.poll() is not None:
        rc = None if soak.proc is None else soak.proc.returncode
        return Snapshot({}, (f"supd-dead: supd is not running (exit status {rc})",))
    listing = soak.units()
    if listing is None:
        return Snapshot({}, ("supd-answers: GET /v1/units failed",))
    problems += check_states(listing, model)
    active = {n for n, u in listing.items() if u["state"] in ACTIVE}
    problems += check_kernel(soak, listing, active)
    zombies = zombie_children(soak.pid)
    if zombies:
        problems.append(f"zombie: supd has zombie children {zombies}")
    return Snapshot(listing, tuple(problems))


def check_states(listing: dict[str, dict[str, Any]], model: dict[str, UnitModel]) -> list[str]:
    problems = []
    for name, m in model.items():
        u = listing.get(name)
        if m.file == "absent":
            if u is not None:
                problems.append(f"state: {name}: file removed but still listed ({u['state']})")
            continue
        if u is None:
            problems.append(f"state: {name}: has a file but is not listed")
            continue
        state = u["state"]
        if state in TRANSIENT:
            problems.append(f"settle: {name}: still {state}")
            continue
        if state in NEED_REASON and not (u.get("last_exit") or u.get("error")):
            problems.append(f"reason: {name}: {state} with neither last_exit nor error")
        if state == "running" and not u.get("pid"):
            problems.append(f"state: {name}: running without a pid")
        if state == "running" and u.get("pid") and not procfs.alive(u["pid"]):
            problems.append(f"state: {name}: running, but its pid {u['pid']} is gone")
        expected = expected_states(m)
        if state not in expected:
            problems.append(f"state: {name}: {state} (last_exit {u.get('last_exit')}, error {u.get('error')!r}); "
                            f"the soak expects one of {sorted(expected)}")
    return problems


def expected_states(m: UnitModel) -> frozenset[str]:
    if m.file == "invalid":
        return frozenset({"error"})
    if m.frozen:
        return frozenset({"frozen"})
    if m.want_up is None:
        return m.kind.up_states | {"inactive", "exited", "failed"}
    if not m.want_up:
        # a stop ends in inactive; exited/failed units that were stopped stay so
        return frozenset({"inactive", "exited", "failed"})
    return m.kind.up_states


def check_kernel(soak: Soak, listing: dict[str, dict[str, Any]], active: set[str]) -> list[str]:
    problems = []
    for unit, dirs in scopes(soak.cgroup_root).items():
        if unit not in active:
            state = listing.get(unit, {}).get("state", "not listed")
            problems.append(f"leak-scope: supd-{unit}.scope exists, unit is {state} ({dirs[0]})")
    own = {soak.pid, spawner_pid(soak.pid)}
    for pid, cg in pids_by_cgroup(soak.cgroup_root).items():
        unit = scope_unit_of(pid, soak.cgroup_root)
        if pid not in own and procfs.alive(pid) and unit not in active:
            problems.append(f"leak-process: pid {pid} ({procfs.comm(pid)}) in {cg}, unit {unit} not active")
    for pid in tagged_pids(soak.tag):
        unit = scope_unit_of(pid, soak.cgroup_root)
        if unit is None or unit not in active:
            problems.append(f"leak-process: pid {pid} ({' '.join(procfs.cmdline(pid))[:60]}) carries the soak's tag, "
                            f"scope {unit}, not an active unit's")
    for point in mounts_under(soak.work):
        rel = Path(point).relative_to(soak.work)
        unit = rel.parts[2] if rel.parts[:2] == ("runtime", "units") and len(rel.parts) > 2 else None
        if unit not in active:
            problems.append(f"leak-mount: {point} (unit {unit} not active)")
    return problems


# --- operations ---------------------------------------------------------------

# weights: how often each operation is drawn
WEIGHTS: dict[str, float] = {
    "start": 10, "stop": 8, "restart": 8, "freeze": 7, "thaw": 7, "reload": 4,
    "edit-valid": 6, "edit-resources": 6, "edit-invalid": 4, "edit-fix": 6,
    "delete": 3, "re-add": 6, "kill-unit": 10,
    "kill-supd": 2.2, "term-supd": 2.2, "reboot": 1.4,
}


@dataclass(frozen=True)
class Outcome:
    detail: str
    done: str = ""  # the operation done, when it differs from the one drawn (a fallback)
    refused: bool = False  # supd said no (409 etc.): figures, not a violation
    adopted: dict[str, int] = field(default_factory=dict)  # unit -> pid that must survive the step


class Ops:
    def __init__(self, soak: Soak, model: dict[str, UnitModel], rng: random.Random) -> None:
        self.soak = soak
        self.model = model
        self.rng = rng

    def pick(self, pred: Callable[[UnitModel], bool] = lambda m: True) -> str | None:
        names = sorted(n for n, m in self.model.items() if pred(m))
        return self.rng.choice(names) if names else None

    def render(self, name: str) -> str:
        m = self.model[name]
        return m.kind.render(m.variant, m.res, self.soak.tag)

    def verb(self, verb: str) -> Outcome:
        # Mostly a target where the verb makes sense (a freeze of a unit that
        # is up, a thaw of a frozen one), now and then any unit: refusals count too.
        sensible: dict[str, Callable[[UnitModel], bool]] = {
            "freeze": lambda m: m.file == "valid" and m.want_up and not m.frozen,
            "thaw": lambda m: m.frozen,
            "start": lambda m: m.file == "valid" and not m.want_up,
            "stop": lambda m: m.file == "valid" and m.want_up,
        }
        name = None
        if verb in sensible and self.rng.random() < 0.9:
            name = self.pick(sensible[verb])
        name = name or self.pick(lambda m: m.file != "absent")
        if name is None:
            return Outcome("no unit", refused=True)
        r = self.soak.supctl(verb, name)
        if r.returncode == 124:
            return Outcome(f"{verb} {name}: supctl timed out", refused=True)
        if r.returncode != 0:
            return Outcome(f"{verb} {name}: rc {r.returncode} {r.stderr.strip()[:100]}", refused=True)
        m = self.model[name]
        if verb == "start":
            m.want_up, m.user_stopped = True, False  # a start of a frozen unit (already active) leaves it frozen
        elif verb == "restart":
            m.want_up, m.frozen, m.user_stopped = True, False, False
        elif verb == "stop":
            m.want_up, m.frozen, m.user_stopped = False, False, True
        elif verb == "freeze":
            m.frozen = True
        elif verb == "thaw":
            m.frozen = False
        return Outcome(f"{verb} {name}")

    def reload(self) -> Outcome:
        r = self.soak.supctl("reload")
        return Outcome(f"reload: rc {r.returncode}", refused=r.returncode != 0)

    def edit_valid(self) -> Outcome:
        name = self.pick(lambda m: m.file == "valid")
        if name is None:
            return Outcome("no unit", refused=True)
        m = self.model[name]
        m.variant += 1
        # a changed definition restarts a running unit, starts a stopped enabled one
        before = (self.soak.units() or {}).get(name, {})
        running = before.get("state") in ACTIVE
        m.edited_pid = before.get("pid") if running else None
        self.soak.write_unit(name, self.render(name))
        m.after_edit(running)
        return Outcome(f"edit {name} -> variant {m.variant}")

    def edit_resources(self) -> Outcome:
        name = self.pick(lambda m: m.file == "valid" and m.kind.name in ("memcap", "box"))
        if name is None:
            return Outcome("no unit", refused=True)
        m = self.model[name]
        m.res += 1
        before = (self.soak.units() or {}).get(name, {})
        self.soak.write_unit(name, self.render(name))
        if before.get("state") not in ACTIVE:
            m.after_edit(running=False)  # "anything changed, unit not running: started if enabled"
        keep = {name: before["pid"]} if before.get("state") in ("running", "frozen") and m.kind.stable else {}
        return Outcome(f"edit-resources {name} -> resources #{m.res}", adopted=keep)

    def edit_invalid(self) -> Outcome:
        name = self.pick(lambda m: m.file == "valid")
        if name is None:
            return Outcome("no unit", refused=True)
        text = self.rng.choice(INVALID_FILES)
        self.soak.write_unit(name, text)
        self.model[name].file = "invalid"
        self.model[name].frozen = False
        return Outcome(f"edit-invalid {name}: {text.splitlines()[0]!r}…")

    def edit_fix(self) -> Outcome:
        name = self.pick(lambda m: m.file == "invalid")
        if name is None:
            return dataclasses.replace(self.edit_valid(), done="edit-valid")
        m = self.model[name]
        m.file = "valid"
        m.after_edit(running=False)
        self.soak.write_unit(name, self.render(name))
        return Outcome(f"edit-fix {name}")

    def delete(self) -> Outcome:
        name = self.pick(lambda m: m.file != "absent")
        if name is None:
            return Outcome("no unit", refused=True)
        (self.soak.units_dir / f"{name}.toml").unlink()
        m = self.model[name]
        m.file, m.frozen, m.want_up = "absent", False, False
        return Outcome(f"delete {name}")

    def re_add(self) -> Outcome:
        name = self.pick(lambda m: m.file == "absent")
        if name is None:
            fallback = self.edit_fix()
            return fallback if fallback.done else dataclasses.replace(fallback, done="edit-fix")
        m = self.model[name]
        # a file that comes back is a new unit
        m.file, m.want_up, m.frozen, m.user_stopped = "valid", m.kind.enabled, False, False
        self.soak.write_unit(name, self.render(name))
        return Outcome(f"re-add {name}")

    def kill_unit(self) -> Outcome:
        listing = self.soak.units() or {}
        names = sorted(n for n, u in listing.items() if u["state"] in ("running", "frozen") and u.get("pid"))
        if not names:
            return Outcome("no running unit", refused=True)
        name = self.rng.choice(names)
        pid = listing[name]["pid"]
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return Outcome(f"kill -9 {name} pid {pid}: already gone", refused=True)
        # A frozen v2 cgroup still delivers SIGKILL; a v1 freezer holds it until the thaw.
        deadline = time.monotonic() + 2
        while procfs.alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not procfs.alive(pid):
            self.model[name].frozen = False
        return Outcome(f"kill -9 {name} pid {pid} ({'gone' if not procfs.alive(pid) else 'held by the freezer'})")

    def stable_pids(self) -> dict[str, int]:
        """Pids that must survive a restart of supd: stable kinds, running,
        and not still on a definition the unit file no longer has."""
        listing = self.soak.units() or {}
        found = {}
        for n, u in listing.items():
            m = self.model.get(n)
            if m is None or not m.kind.stable or u["state"] not in ("running", "frozen") or not u.get("pid"):
                continue
            if m.edited_pid is not None and m.edited_pid == u["pid"]:
                continue  # the edit is not applied yet
            m.edited_pid = None
            found[n] = u["pid"]
        return found

    def recorded_pids(self) -> dict[str, int | None]:
        """The pid each unit's state record names (what a new supd can adopt)."""
        found: dict[str, int | None] = {}
        for path in (self.soak.state_dir / "state").glob("*.json"):
            try:
                found[path.stem] = json.loads(path.read_text())["unit"].get("pid")
            except (OSError, ValueError, KeyError, TypeError):
                found[path.stem] = None
        return found

    def kill_supd(self) -> Outcome:
        running = self.stable_pids()
        old = self.soak.pid
        self.soak.end(signal.SIGKILL)
        # The contract (docs/configuration.md, live restore): a process is
        # re-adopted when its record names it. A supd killed between a (re)start
        # and the save of that record leaves a process no record names: the new
        # supd ends it and starts the unit, which the other invariants check
        # (running again, nothing left over); its pid cannot survive.
        recorded = self.recorded_pids()
        keep = {name: pid for name, pid in running.items() if recorded.get(name) == pid}
        self.soak.launch(live_restore=self.rng.random() < 0.8)
        return Outcome(f"kill -9 supd {old}, new supd {self.soak.pid} (live_restore={self.soak.live_restore})",
                       adopted=keep)

    def term_supd(self) -> Outcome:
        old, live = self.soak.pid, self.soak.live_restore
        keep = self.stable_pids() if live else {}
        rc = self.soak.end(signal.SIGTERM)
        if not live:  # it stopped every unit; the next supd starts them again
            for m in self.model.values():
                m.frozen = False
        self.soak.launch(live_restore=self.rng.random() < 0.8)
        detail = f"SIGTERM supd {old} (live_restore={live}, exit {rc}), new supd {self.soak.pid}"
        if rc != 0:
            return Outcome(detail + f": supd exited {rc} at SIGTERM", adopted={"!exit": rc or -1})
        return Outcome(detail, adopted=keep)

    def reboot(self) -> Outcome:
        old = self.soak.pid
        self.soak.end(signal.SIGKILL)  # the power cut
        killed = power_off_units(self.soak)
        rewrite_boot_id(self.soak.state_dir, self.soak.incarnation)
        for m in self.model.values():  # a new boot: user stops and freezes are forgotten
            m.frozen, m.user_stopped = False, False
            m.want_up = m.file == "valid" and m.kind.enabled
        self.soak.launch(live_restore=self.rng.random() < 0.8)
        return Outcome(f"reboot: supd {old} and {killed} unit processes gone, new supd {self.soak.pid}")

    def run(self, op: str) -> Outcome:
        if op in ("start", "stop", "restart", "freeze", "thaw"):
            return self.verb(op)
        table: dict[str, Callable[[], Outcome]] = {
            "reload": self.reload, "edit-valid": self.edit_valid, "edit-resources": self.edit_resources,
            "edit-invalid": self.edit_invalid, "edit-fix": self.edit_fix, "delete": self.delete,
            "re-add": self.re_add, "kill-unit": self.kill_unit, "kill-supd": self.kill_supd,
            "term-supd": self.term_supd, "reboot": self.reboot,
        }
        return table[op]()


def thaw_all(root: str) -> None:
    """Thaw every cgroup under the soak's root: a v1 freezer holds even SIGKILL."""
    for h in cgroup_cleanup.hierarchies():
        top = h / root
        for dirpath, _dirs, _files in os.walk(top):
            for name, value in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):
                try:
                    Path(dirpath, name).write_text(value)
                except OSError:
                    pass


def power_off_units(soak: Soak) -> int:
    """What a reboot does to the units: every process gone (by pid), every
    cgroup gone, the runtime folder (a tmpfs in production) empty."""
    thaw_all(soak.cgroup_root)
    pids = set(pids_by_cgroup(soak.cgroup_root)) | set(tagged_pids(soak.tag))
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 20
    while any(procfs.alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    cgroup_cleanup.remove_root(soak.cgroup_root)
    if not mounts_under(soak.runtime_dir):  # never rm -r into a mounted layer
        shutil.rmtree(soak.runtime_dir, ignore_errors=True)
    return len(pids)


def rewrite_boot_id(state_dir: Path, n: int) -> None:
    """The records now carry another boot's id, as after a real reboot."""
    for path in (state_dir / "state").glob("*.json"):
        data = json.loads(path.read_text())
        data["unit"]["boot_id"] = FAKE_BOOT_ID.format(n)
        tmp = path.with_suffix(".soaktmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)


# --- figures -------------------------------------------------------------------


@dataclass
class Figures:
    ops: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    violations: list[tuple[int, str, str]] = field(default_factory=list)  # (step, op, problem)
    fds: list[tuple[int, int, int, frozenset[str]]] = field(default_factory=list)  # (step, incarnation, fds, active)
    spawner_fds: list[int] = field(default_factory=list)
    rss_kb: list[int] = field(default_factory=list)
    settle_s: list[float] = field(default_factory=list)
    # violations reported and still holding at the last step: reported once,
    # counted in standing_steps for every later step they persist
    standing: set[str] = field(default_factory=set)
    standing_steps: int = 0

    def violate(self, step: int, op: str, problem: str) -> None:
        self.violations.append((step, op, problem))
        print(f"  VIOLATION step {step} ({op}): {problem}", flush=True)


def fd_climbs(samples: list[tuple[int, int, int, frozenset[str]]]) -> list[str]:
    """Within one supd, the same set of active units at two steps far apart
    must hold about the same number of fds."""
    first: dict[tuple[int, frozenset[str]], tuple[int, int]] = {}
    found = []
    for step, inc, fds, active in samples:
        key = (inc, active)
        if key not in first:
            first[key] = (step, fds)
            continue
        s0, f0 = first[key]
        if step - s0 >= FD_MIN_GAP_STEPS and fds - f0 > FD_SLACK:
            found.append(f"fd-climb: supd #{inc}: {f0} fds at step {s0}, {fds} at step {step}, same active units")
            first[key] = (step, fds)  # report each climb once
    return found


def table(figs: Figures, elapsed: float, seed: int, steps: int, incarnations: int) -> str:
    fds = [f for _s, _i, f, _a in figs.fds]
    rows = ["| figure | value |", "|---|---|",
            f"| seed | {seed} |", f"| steps | {steps} |", f"| elapsed | {elapsed:.0f} s |",
            f"| supd processes (launches) | {incarnations} |"]
    for op in WEIGHTS:
        rows.append(f"| op {op} (done / refused) | {figs.ops[op]} / {figs.refused[op]} |")
    kinds_ = Counter(p.split(":", 1)[0] for _s, _o, p in figs.violations)
    rows.append(f"| invariant violations | {len(figs.violations)}"
                + (" (" + ", ".join(f"{k} {n}" for k, n in sorted(kinds_.items())) + ")" if kinds_ else "") + " |")
    rows.append(f"| steps a reported violation still held | {figs.standing_steps} |")
    if fds:
        rows.append(f"| supd fds min / max / last | {min(fds)} / {max(fds)} / {fds[-1]} |")
    if figs.spawner_fds:
        rows.append(f"| spawner fds min / max / last | {min(figs.spawner_fds)} / {max(figs.spawner_fds)} / {figs.spawner_fds[-1]} |")
    if figs.rss_kb:
        rows.append(f"| supd RSS min / max / last | {min(figs.rss_kb) / 1024:.1f} / {max(figs.rss_kb) / 1024:.1f} / "
                    f"{figs.rss_kb[-1] / 1024:.1f} MiB |")
    if figs.settle_s:
        q = sorted(figs.settle_s)
        rows.append(f"| settle time median / p95 / max | {statistics.median(q):.2f} / {q[int(0.95 * (len(q) - 1))]:.2f} / "
                    f"{q[-1]:.2f} s |")
    return "\n".join(rows)


# --- the run ---------------------------------------------------------------------


def settle(soak: Soak, model: dict[str, UnitModel], figs: Figures, step: int, op: str,
           outcome: Outcome) -> Snapshot:
    started = time.monotonic()
    deadline = started + SETTLE_TIMEOUT
    while True:
        snap = check(soak, model)
        problems = list(snap.problems) + adoption_problems(snap, outcome)
        if not problems or soak.proc is None or soak.proc.poll() is not None:
            break
        if set(problems) <= figs.standing:
            break  # what was already reported and still holds: no new 30 s wait per step
        if time.monotonic() >= deadline:
            # Only what holds in two looks in a row counts: a process caught
            # mid-exit, or a crash-looping unit between two states, is not a leak.
            time.sleep(2 * POLL_INTERVAL)
            again = check(soak, model)
            problems = [p for p in problems if p in set(again.problems) | set(adoption_problems(again, outcome))]
            break
        time.sleep(POLL_INTERVAL)
    figs.settle_s.append(time.monotonic() - started)
    for p in problems:
        if p in figs.standing:
            figs.standing_steps += 1
        else:
            figs.violate(step, op, p)
    figs.standing = set(problems)
    if problems and soak.proc is not None and soak.proc.poll() is not None:
        # supd died: note it, and carry on with a new one so the run still measures the rest
        soak.proc = None
        soak.launch(live_restore=soak.live_restore)
    return snap


def adoption_problems(snap: Snapshot, outcome: Outcome) -> list[str]:
    problems = []
    for name, pid in outcome.adopted.items():
        if name == "!exit":
            problems.append(f"supd-exit: supd exited with status {pid} at SIGTERM")
            continue
        u = snap.listing.get(name)
        if u is not None and u.get("pid") != pid:
            problems.append(f"adopt: {name} had pid {pid} before the step, now {u.get('pid')} ({u['state']})")
    return problems


def confirm_with_supctl(soak: Soak, figs: Figures, step: int, op: str) -> None:
    """The same listing through the real supctl: it must answer and agree."""
    r = soak.supctl("list", "--json")
    if r.returncode != 0:
        figs.violate(step, op, f"supd-answers: supctl list --json: rc {r.returncode} {r.stderr.strip()[:120]}")
        return
    try:
        json.loads(r.stdout)
    except ValueError:
        figs.violate(step, op, f"supd-answers: supctl list --json printed no JSON: {r.stdout[:120]!r}")


def sample(soak: Soak, figs: Figures, step: int, snap: Snapshot) -> None:
    if soak.proc is None or soak.proc.poll() is not None or not procfs.alive(soak.pid):
        return  # a supd that is dying has no figures worth keeping
    active = frozenset(n for n, u in snap.listing.items() if u["state"] in ACTIVE)
    figs.fds.append((step, soak.incarnation, fd_count(soak.pid), active))
    sp = spawner_pid(soak.pid)
    if sp is not None:
        figs.spawner_fds.append(fd_count(sp))
    try:
        figs.rss_kb.append(procfs.rss_kb(soak.pid))
    except OSError:
        pass


def final_teardown(soak: Soak, figs: Figures, step: int) -> None:
    """Stop every unit through supctl, end supd, and nothing may be left."""
    op = "teardown"
    listing = soak.units() or {}
    for name, u in sorted(listing.items()):
        if u["state"] in ACTIVE or u["state"] == "restarting":
            r = soak.supctl("stop", name)
            if r.returncode != 0:
                figs.violate(step, op, f"teardown: supctl stop {name}: rc {r.returncode} {r.stderr.strip()[:100]}")
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while time.monotonic() < deadline:
        listing = soak.units() or {}
        if not [n for n, u in listing.items() if u["state"] in ACTIVE or u["state"] == "restarting"]:
            break
        time.sleep(POLL_INTERVAL)
    for name, u in listing.items():
        if u["state"] in ACTIVE or u["state"] == "restarting":
            figs.violate(step, op, f"teardown: {name} still {u['state']} after stop")
    rc = soak.end(signal.SIGTERM)
    if rc != 0:
        figs.violate(step, op, f"teardown: supd exited {rc} at SIGTERM")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (scopes(soak.cgroup_root) or tagged_pids(soak.tag)):
        time.sleep(0.2)
    for unit, dirs in scopes(soak.cgroup_root).items():
        figs.violate(step, op, f"leak-scope: after the end: {dirs[0]}")
    for pid in tagged_pids(soak.tag) + list(pids_by_cgroup(soak.cgroup_root)):
        figs.violate(step, op, f"leak-process: after the end: pid {pid} {' '.join(procfs.cmdline(pid))[:60]}")
    for point in mounts_under(soak.work):
        figs.violate(step, op, f"leak-mount: after the end: {point}")


def cleanup(soak: Soak) -> None:
    """Whatever happened: supd ended, every process of ours ended by pid, the cgroup root removed."""
    if soak.proc is not None:
        soak.end(signal.SIGKILL)
    thaw_all(soak.cgroup_root)
    for pid in tagged_pids(soak.tag):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    left = cgroup_cleanup.remove_root(soak.cgroup_root)
    if left:
        print(f"cleanup: killed {len(left)} processes left in {soak.cgroup_root}", file=sys.stderr)


def busybox_layer(work: Path) -> Path | None:
    if not BUSYBOX.exists():
        print("soak: /bin/busybox missing, no container units (apt-get install busybox-static)", file=sys.stderr)
        return None
    return make_busybox_rootfs(work / "layers" / "busybox")


def run(args: argparse.Namespace, work: Path) -> int:
    soak = Soak(work=work, seed=args.seed)
    rng = random.Random(args.seed)
    layer = None if args.no_containers else busybox_layer(work)
    model = {k.name: UnitModel(kind=k) for k in kinds(layer)}
    soak.units_dir.mkdir(parents=True)
    for name, m in model.items():
        soak.write_unit(name, m.kind.render(m.variant, m.res, soak.tag))
    print(f"soak: seed {args.seed}, {args.ops} ops over at least {args.min_seconds:.0f} s, {len(model)} units "
          f"({', '.join(model)}), cgroup root /{soak.cgroup_root}, folder {work}", flush=True)
    figs = Figures()
    ops = Ops(soak, model, rng)
    names, weights = list(WEIGHTS), list(WEIGHTS.values())
    started = time.monotonic()
    step = 0
    try:
        soak.launch(live_restore=True)
        settle(soak, model, figs, 0, "launch", Outcome("launch"))
        # every kind of operation once, in a random order, then random draws by weight
        first = rng.sample(names, len(names))
        for step in range(1, args.ops + 1):
            op = first[step - 1] if step <= len(first) else rng.choices(names, weights)[0]
            outcome = ops.run(op)
            op = outcome.done or op
            (figs.refused if outcome.refused else figs.ops)[op] += 1
            snap = settle(soak, model, figs, step, op, outcome)
            confirm_with_supctl(soak, figs, step, op)
            sample(soak, figs, step, snap)
            fds = figs.fds[-1][2] if figs.fds else -1
            print(f"[{step:4d}/{args.ops} {time.monotonic() - started:6.1f}s] {op:14s} {outcome.detail[:90]}  "
                  f"fds={fds} settle={figs.settle_s[-1]:.1f}s", flush=True)
            pace = started + args.min_seconds * step / args.ops - time.monotonic()
            if pace > 0:
                time.sleep(pace)
        for problem in fd_climbs(figs.fds):
            figs.violate(step, "fd-trend", problem)
        final_teardown(soak, figs, step)
    finally:
        cleanup(soak)
    elapsed = time.monotonic() - started
    print()
    print(table(figs, elapsed, args.seed, step, soak.incarnation))
    if figs.violations:
        print(f"\n{len(figs.violations)} invariant violations (seed {args.seed}):")
        for s, o, p in figs.violations:
            print(f"  step {s} ({o}): {p}")
    return 1 if figs.violations else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=None, help="random seed (printed; default: a fresh one)")
    ap.add_argument("--ops", type=int, default=500)
    ap.add_argument("--min-seconds", type=float, default=600.0, help="pace the operations over at least this long")
    ap.add_argument("--no-containers", action="store_true", help="leave out the busybox container units")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder (supd.log) at the end")
    args = ap.parse_args()
    if args.seed is None:
        args.seed = secrets.randbelow(1 << 32)
    if os.geteuid() != 0:
        print("soak: needs root (cgroups, namespaces, mounts)", file=sys.stderr)
        return 2
    # SIGTERM and SIGINT end the run through its clean-up (a background job
    # started by a shell may inherit SIGINT ignored)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(143))
    with scratch.scratch_dir("soak") as work:
        rc = run(args, work)
        if args.keep or rc != 0:
            kept = Path(f"/tmp/supd-soak-{args.seed}.log")
            shutil.copy(work / "supd.log", kept)
            print(f"supd's log: {kept}")
        return rc


if __name__ == "__main__":
    raise SystemExit(main())
