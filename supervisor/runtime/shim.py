"""The spawner: the only place supd forks.

Run as `python3 -I -S shim.py FD` before the daemon has any thread. It is
single-threaded, stdlib-only and imports nothing from `supervisor` (it is
started by path, not as a module). FD is one end of a SOCK_SEQPACKET
socketpair; every message is JSON, fds travel as SCM_RIGHTS.

  daemon -> spawner  {"op":"spawn","id":N,"spec":{...}}  + fds stdin, stdout, stderr
  spawner -> daemon  {"id":N,"pid":P}                    + the daemon's end of a control socket
                     {"id":N,"error":"..."}
  With "log":{"unit":U,"driver":"file"|"journald"} in the request, stdout and
  stderr are the unit's log sink (its file, or a socket to journald's native
  socket); A first forks a log relay (see run_log_relay) that holds both
  pipes the process writes to, and the reply gets "relay":R (its pid).
  child -> daemon    {"ready":true} | {"error":"..."}     (on the control socket)
  daemon -> child    {"go":true}
  exec succeeded  == the child's end (CLOEXEC) closes: the daemon reads EOF.

Process shapes (A = spawner's child, reaped by the spawner before it
reports; the reported pid is already a child of the daemon, a subreaper):
  plain      spawner -> A -> B          B execs the command
  container  spawner -> A(unshare) -> B B is pid 1 of the new pid namespace
  join       spawner -> A -> B(setns) -> C
             B relays C's exit status and forwards signals, because a child
             forked after setns() into a pid namespace would otherwise be
             re-parented to that namespace's init, not to the daemon.
             With join.tty, B opens a pty inside the unit (its /dev/ptmx, so
             the slave is one of the unit's /dev/pts); C makes the slave its
             stdio and controlling terminal (a session of its own) and sends
             the master with {"ready":true,"tty":true}.

A process that fails before its go reports {"error"} and then waits for the
daemon to close the control socket before exiting 127, so it never exits
before the daemon has started tracking its pid.
"""

import base64
import ctypes
import errno
import fcntl
import json
import os
import platform
import signal
import socket
import stat
import struct
import sys
import time

MAX_MESSAGE = 1 << 20  # a request (a spec with many layers)
MAX_CONTROL_MESSAGE = 1 << 16  # ready / go / error

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MS_STRICTATIME = 0x1000000
MNT_DETACH = 0x2

PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_SET_NAME = 15
F_SETPIPE_SZ = 1031

SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}
# openat2 came after the syscall tables were unified (5.1): 437 everywhere
SYS_OPENAT2 = {"x86_64": 437, "aarch64": 437, "riscv64": 437, "ppc64le": 437, "s390x": 437}
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10
# every path inside a container's root is looked up with these: "/" and ".."
# stop at the root, absolute symlinks start from it, /proc/*/fd links refused
IN_ROOT = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS
MACHINE = platform.machine()

# the new mount API: one number on every architecture (the unified table, 424+)
SYS_OPEN_TREE = 428
SYS_MOVE_MOUNT = 429
SYS_MOUNT_SETATTR = 442
OPEN_TREE_CLONE = 0x1
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_IDMAP = 0x00100000

# pty ioctls: TIOCSCTTY is one number everywhere; _IOW('T', 0x31, int) and
# _IO('T', 0x41) carry direction bits that differ on powerpc
TIOCSCTTY = 0x540E
TIOCSPTLCK = 0x80045431 if MACHINE.startswith("ppc") else 0x40045431
TIOCGPTPEER = 0x20005441 if MACHINE.startswith("ppc") else 0x5441

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1

LINUX_CAPABILITY_VERSION_3 = 0x20080522

SECCOMP_SET_MODE_FILTER = 1
# rt_sigaction, for the signals glibc keeps to itself (32 and 33: its
# sigaction() refuses them, so Python's signal module cannot touch them)
SYS_RT_SIGACTION = {"x86_64": 13, "aarch64": 134, "riscv64": 134, "ppc64le": 173, "s390x": 174}
KERNEL_NSIG = 64
SYS_SECCOMP = {"x86_64": 317, "aarch64": 277, "riscv64": 277, "ppc64le": 358, "s390x": 348}

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# (name, major, minor) of the device nodes a minimal /dev gets
DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8),
           ("urandom", 1, 9), ("tty", 5, 0))
DEV_SYMLINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"),
                ("ptmx", "pts/ptmx"))
# docker's masked and read-only paths
MASKED_PATHS = ("/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
                "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap")
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
# the order namespaces are entered for exec-into; mnt last (it changes root)
JOIN_NAMESPACES = ("ipc", "uts", "net", "pid", "cgroup", "mnt")
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT,
                     signal.SIGUSR1, signal.SIGUSR2)
# exit code of a child that could not be set up or could not exec
EXIT_SETUP_FAILED = 127
EXIT_ABORTED = 125

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
libc.unshare.argtypes = (ctypes.c_int,)
libc.setns.argtypes = (ctypes.c_int, ctypes.c_int)
libc.prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)


class ShimError(Exception):
    """A setup step failed; the message goes to the daemon as is."""


class CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class OpenHow(ctypes.Structure):
    _fields_ = (("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64))


class CapData(ctypes.Structure):
    _fields_ = (("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32))


# --- thin syscall wrappers: raise ShimError naming what failed ---------------

def _enc(value):
    return None if value is None else os.fsencode(value)


def _check(result, what):
    if result != 0:
        err = ctypes.get_errno()
        raise ShimError(f"{what}: {os.strerror(err)}")


def mount_what(source, target, fstype):
    """How an error names a mount: "bind S on T", "remount T", "mount F on T"."""
    if fstype is None:
        return f"bind {source} on {target}" if source else f"remount {target}"
    return f"mount {fstype} on {target}"


def mount(source, target, fstype, flags, data=None):
    _check(libc.mount(_enc(source), _enc(target), _enc(fstype), flags, _enc(data)), mount_what(source, target, fstype))


def umount2(target, flags):
    _check(libc.umount2(_enc(target), flags), f"umount {target}")


def unshare(flags):
    _check(libc.unshare(flags), f"unshare {flags:#x}")


def setns(fd, what):
    _check(libc.setns(fd, 0), f"setns {what}")


def prctl(option, arg, what):
    _check(libc.prctl(option, arg, 0, 0, 0), what)


def pivot_root(new_root, put_old):
    number = SYS_PIVOT_ROOT.get(platform.machine())
    if number is None:
        raise ShimError(f"pivot_root: unknown syscall number on {platform.machine()}")
    _check(libc.syscall(number, _enc(new_root), _enc(put_old)), f"pivot_root {new_root}")


def capabilities():
    header = CapHeader(LINUX_CAPABILITY_VERSION_3, 0)
    data = (CapData * 2)()
    _check(libc.capget(ctypes.byref(header), data), "capget")
    return header, data


def limit_capabilities(keep):
    """Effective, permitted and inheritable sets := what they are now ∩ keep."""
    header, data = capabilities()
    for i in range(2):
        mask = 0
        for cap in keep:
            if cap // 32 == i:
                mask |= 1 << (cap % 32)
        data[i].effective &= mask
        data[i].permitted &= mask
        data[i].inheritable &= mask
    _check(libc.capset(ctypes.byref(header), data), "capset")


def drop_bounding_set(keep, last_cap):
    for cap in range(last_cap + 1):
        if cap not in keep:
            prctl(PR_CAPBSET_DROP, cap, f"drop capability {cap} from the bounding set")


class SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


def unit_caps(spec):
    """The capability numbers the spec keeps; None: leave them alone. A
    container (or join) without the field keeps none rather than all."""
    caps = spec.get("caps")
    if caps is None:
        return None if spec.get("container") is None and spec.get("join") is None else ()
    return tuple(int(c) for c in caps)


def confine_caps(keep, last_cap, identity):
    """Bounding set first (needs CAP_SETPCAP), then the identity, then the
    effective/permitted/inheritable sets (setuid to non-root empties them)."""
    if keep is not None:
        drop_bounding_set(keep, last_cap)
    if identity is not None:
        set_identity(*identity)
    if keep is not None:
        limit_capabilities(keep)


def seccomp_program(spec):
    """The filter's bytes (base64 in the spec), or None."""
    encoded = spec.get("seccomp")
    if encoded is None:
        return None
    try:
        program = base64.b64decode(encoded, validate=True)
    except ValueError:
        raise ShimError("seccomp: the filter is not base64") from None
    if not program or len(program) % 8:
        raise ShimError(f"seccomp: a filter of {len(program)} bytes is no BPF program")
    return program


def install_seccomp(program):
    """seccomp(SECCOMP_SET_MODE_FILTER) with the daemon-compiled program;
    after no_new_privs, as the last step before exec."""
    if program is None:
        return
    number = SYS_SECCOMP.get(platform.machine())
    if number is None:
        raise ShimError(f"seccomp: unknown syscall number on {platform.machine()}")
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    if libc.syscall(number, SECCOMP_SET_MODE_FILTER, 0, ctypes.byref(fprog)) != 0:
        raise ShimError(f"seccomp: install the filter: {os.strerror(ctypes.get_errno())}")


def set_sysctls(sysctls):
    """Namespaced sysctls (net.* in our own network namespace), written
    before the root changes and /proc/sys turns read-only."""
    for name, value in sysctls:
        path = "/proc/sys/" + name.replace(".", "/")
        try:
            with open(path, "w") as f:
                f.write(value)
        except OSError as e:
            raise ShimError(f"sysctl {name}: {e.strerror}") from None


# --- messages ----------------------------------------------------------------

def send(sock, message, fds=()):
    socket.send_fds(sock, [json.dumps(message).encode()], list(fds))


def receive(sock, size=MAX_CONTROL_MESSAGE):
    """(message or None at EOF, fds)."""
    data, fds, _flags, _addr = socket.recv_fds(sock, size, 8)
    if not data:
        return None, fds
    return json.loads(data), fds


# --- identity ------------------------------------------------------------------

def read_db(path):
    """Lines of a passwd/group style file as lists of fields; None if missing."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return [line.rstrip("\n").split(":") for line in f
                    if line.strip() and not line.startswith("#")]
    except FileNotFoundError:
        return None
    except OSError as e:  # a link loop, a directory...: say which file
        raise ShimError(f"read {path}: {e.strerror}") from None


def resolve_user(user, where):
    """(uid, gid, supplementary gids, home) for a name or "uid[:gid]", read from
    `where`/etc/passwd and /etc/group (the host's or the container's)."""
    passwd = read_db(os.path.join(where, "etc/passwd"))
    group = read_db(os.path.join(where, "etc/group"))
    spec_user, _, spec_group = (user or "0").partition(":")
    entries = [f for f in passwd or () if len(f) >= 7 and f[2].isdigit() and f[3].isdigit()]
    # a name wins over a uid written the same way
    entry = next((f for f in entries if f[0] == spec_user), None)
    if entry is None and spec_user.isdigit():
        entry = next((f for f in entries if int(f[2]) == int(spec_user)), None)
    if entry is not None:
        uid = int(entry[2])
    elif spec_user.isdigit():
        uid = int(spec_user)
    elif passwd is None:
        raise ShimError(f'user "{spec_user}": /etc/passwd not found')
    else:
        raise ShimError(f'user "{spec_user}" not in /etc/passwd')
    # docker's default: a uid with no passwd entry gets gid 0
    gid = int(entry[3]) if entry is not None else 0
    if spec_group:
        if spec_group.isdigit():
            gid = int(spec_group)
        else:
            found = [g for g in group or () if len(g) >= 3 and g[0] == spec_group]
            if not found:
                raise ShimError(f'group "{spec_group}" not in /etc/group')
            gid = int(found[0][2])
    groups = {gid}
    if entry is not None and not spec_group:
        for fields in group or ():
            if len(fields) >= 4 and entry[0] in fields[3].split(","):
                groups.add(int(fields[2]))
    home = entry[5] if entry is not None and entry[5] else "/"
    return uid, gid, sorted(groups), home


def set_identity(uid, gid, groups):
    os.setgroups(groups)
    os.setgid(gid)
    os.setuid(uid)


def build_env(spec, home):
    env = dict(spec["env"])
    env.setdefault("PATH", DEFAULT_PATH)
    env.setdefault("HOME", home)
    return env


def find_executable(argv0, env):
    """The path execve gets, looked up in the unit's PATH like execvp does."""
    if "/" in argv0:
        candidates = [argv0]
    else:
        candidates = [os.path.join(d or ".", argv0) for d in env["PATH"].split(":")]
    for path in candidates:
        if os.path.isfile(path):
            if not os.access(path, os.X_OK):
                raise ShimError(f"exec {path}: {os.strerror(errno.EACCES)}")
            return path
    raise ShimError(f"exec {argv0}: {os.strerror(errno.ENOENT)}")


# --- child steps -----------------------------------------------------------------

def reset_process(stdio, spec):
    """Stdio onto 0/1/2, default signal dispositions, own session."""
    for target, fd in enumerate(stdio):
        os.dup2(fd, target)
    for fd in set(stdio):
        if fd > 2:
            os.close(fd)
    # Every signal back to its default, as systemd does before an exec:
    # ignored signals survive exec, and whatever started supd may have ignored
    # some (Python ignores SIGPIPE and SIGXFSZ; `nohup` SIGHUP; a shell's
    # background job SIGINT and SIGQUIT), which would make a unit deaf to its
    # stop signal or a terminal's hang-up.
    valid = signal.valid_signals()
    for sig in range(1, KERNEL_NSIG + 1):
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        if sig in valid:
            signal.signal(sig, signal.SIG_DFL)
        else:
            # 32 and 33 are glibc's own, but only inside glibc programs: to the
            # kernel and to musl or Go binaries they are ordinary real-time
            # signals, and one ignored by whatever started supd stays ignored
            set_raw_disposition(sig, int(signal.SIG_DFL))
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    if spec["setsid"]:
        os.setsid()


def set_raw_disposition(sig, handler):
    """rt_sigaction(sig, {handler, no flags, empty mask}); returns the old
    handler. Only SIG_DFL (0) and SIG_IGN (1) are meant: no restorer is set.
    A zeroed kernel struct sigaction is the same on every architecture apart
    from where the handler sits, and it is the first word on all of ours."""
    number = SYS_RT_SIGACTION.get(MACHINE)
    if number is None:
        return None  # an architecture we have no number for keeps glibc's limits
    new = (ctypes.c_ulong * 8)(handler)  # larger than any kernel struct sigaction
    old = (ctypes.c_ulong * 8)()
    if libc.syscall(ctypes.c_long(number), ctypes.c_int(sig), new, old, ctypes.c_size_t(KERNEL_NSIG // 8)) != 0:
        err = ctypes.get_errno()
        raise ShimError(f"rt_sigaction({sig}): {os.strerror(err)}")
    return old[0]


def wait_for_go(ctl):
    message, fds = receive(ctl)
    for fd in fds:
        os.close(fd)
    if message is None or not message.get("go"):
        os._exit(EXIT_ABORTED)


def fail_before_go(ctl, reason):
    """Report, then stay until the daemon closes the socket (it is tracking
    our pid by then), so the daemon always reaps us itself."""
    try:
        send(ctl, {"error": reason})
        while True:
            message, fds = receive(ctl)
            for fd in fds:
                os.close(fd)
            if message is None:
                break
    finally:
        os._exit(EXIT_SETUP_FAILED)


def exec_command(ctl, path, argv, env):
    """Close every fd but stdio and the control socket (CLOEXEC), then exec."""
    os.closerange(3, ctl.fileno())
    os.closerange(ctl.fileno() + 1, 1 << 20)
    try:
        os.execve(path, argv, env)
    except OSError as e:
        send(ctl, {"error": f"exec {path}: {e.strerror}"})
    os._exit(EXIT_SETUP_FAILED)


def run_plain(spec, stdio, ctl):
    try:
        reset_process(stdio, spec)
        uid, gid, groups, home = resolve_user(spec["user"], "/") if spec["user"] else (None, None, None, None)
        env = build_env(spec, home or "/")
        change_directory(spec["cwd"])
        path = find_executable(spec["argv"][0], env)
        keep, program = unit_caps(spec), seccomp_program(spec)
        last_cap = read_last_cap() if keep is not None else 0
    except (ShimError, OSError) as e:
        fail_before_go(ctl, describe(e, "cwd " + spec["cwd"]))
    send(ctl, {"ready": True})
    wait_for_go(ctl)
    try:
        confine_caps(keep, last_cap, (uid, gid, groups) if uid is not None else None)
        if spec["no_new_privs"]:
            prctl(PR_SET_NO_NEW_PRIVS, 1, "no_new_privs")
        if spec["umask"] is not None:
            os.umask(spec["umask"])
        install_seccomp(program)
    except (ShimError, OSError) as e:
        send(ctl, {"error": describe(e, "identity")})
        os._exit(EXIT_SETUP_FAILED)
    exec_command(ctl, path, spec["argv"], env)


def read_last_cap():
    with open("/proc/sys/kernel/cap_last_cap") as f:
        return int(f.read())


def describe(error, context):
    if isinstance(error, ShimError):
        return str(error)
    name = error.filename if getattr(error, "filename", None) else context
    return f"{name}: {error.strerror or error}"


# --- user namespace ([rootfs].userns = "auto") ------------------------------------------
#
# The namespaces of a userns container are made by A in the host's user
# namespace, as for any container; only at the very end (after the go) does
# pid 1 enter a user namespace of its own, whose maps A wrote from outside.
# So every namespace but that one stays owned by the host's: container root
# holds its capabilities over its own ids only, never over the mounts, the
# hostname, the network or the sysctls. Until then pid 1 is host root in
# its own mount namespace and builds the root as usual, with each lower
# layer mounted id-mapped onto itself (mount_setattr MOUNT_ATTR_IDMAP): the
# layers stay shared and unchanged on disk, while the container sees them
# owned by its own root. The upper dir is owned by the mapped root on disk
# (the daemon sees to that), so what container root writes belongs to the
# range's first id on the host.

class MountAttr(ctypes.Structure):
    _fields_ = (("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64))


def make_userns(container):
    """A, before its unshare: a user namespace with the unit's maps, kept as
    an fd in container["userns_fd"] (B inherits it). A throw-away child U
    creates it (a process cannot write its own maps beyond its own uid); A,
    host root, writes U's maps, opens U's namespace and lets U exit."""
    userns = container.get("userns")
    if not userns:
        return
    ready_r, ready_w = os.pipe()
    hold_r, hold_w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(ready_r)
        os.close(hold_w)
        result = b"+" if libc.unshare(CLONE_NEWUSER) == 0 else str(ctypes.get_errno()).encode()
        os.write(ready_w, result)
        os.read(hold_r, 1)  # until A is done with our namespace
        os._exit(0)
    os.close(ready_w)
    os.close(hold_r)
    try:
        result = os.read(ready_r, 16)
        if result != b"+":
            err = int(result or b"0") or errno.EIO
            hint = " (user.max_user_namespaces reached or 0?)" if err == errno.ENOSPC else ""
            raise ShimError(f"userns unshare(CLONE_NEWUSER): {os.strerror(err)}{hint}")
        for name, start in (("uid_map", userns["uid"]), ("gid_map", userns["gid"])):
            try:
                with open(f"/proc/{child}/{name}", "w") as f:
                    f.write(f"0 {start} {userns['count']}\n")
            except OSError as e:
                raise ShimError(f"userns write {name} 0 {start} {userns['count']}: {e.strerror}") from None
        container["userns_fd"] = os.open(f"/proc/{child}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(ready_r)
        os.close(hold_w)
        os.waitpid(child, 0)


def idmap_layers(container):
    """B, in its private mount namespace, before the overlay: every lower
    layer gets an id-mapped clone of itself mounted on itself (host id N is
    seen as the range's N-th), so the overlay's lowerdir paths stay the same."""
    userns_fd = container.get("userns_fd")
    if userns_fd is None:
        return
    plan = container["rootfs"]
    base = plan.get("chdir") or "/"
    done = set()
    for layer in plan["lowerdirs"]:
        path = os.path.realpath(os.path.join(base, layer))
        if path in done:
            continue
        done.add(path)
        tree = libc.syscall(SYS_OPEN_TREE, AT_FDCWD, _enc(path), OPEN_TREE_CLONE | os.O_CLOEXEC)
        if tree < 0:
            err = ctypes.get_errno()
            hint = " (id-mapped mounts need Linux 5.12 or later)" if err == errno.ENOSYS else ""
            raise ShimError(f"userns open_tree {path}: {os.strerror(err)}{hint}")
        try:
            attr = MountAttr(MOUNT_ATTR_IDMAP, 0, 0, userns_fd)
            if libc.syscall(SYS_MOUNT_SETATTR, tree, b"", AT_EMPTY_PATH, ctypes.byref(attr), ctypes.sizeof(attr)) != 0:
                err = ctypes.get_errno()
                hint = ""
                if err in (errno.EINVAL, errno.ENOSYS, errno.EPERM):
                    hint = " (the layer's filesystem or this kernel cannot do id-mapped mounts)"
                raise ShimError(f"userns mount {path} id-mapped: {os.strerror(err)}{hint}")
            if libc.syscall(SYS_MOVE_MOUNT, tree, b"", AT_FDCWD, _enc(path), MOVE_MOUNT_F_EMPTY_PATH) != 0:
                raise ShimError(f"userns move_mount {path}: {os.strerror(ctypes.get_errno())}")
        finally:
            os.close(tree)
    if container["network"] != "host":
        # Our own network namespace belongs to the host's user namespace, so
        # container root's CAP_NET_BIND_SERVICE means nothing there: open the
        # low ports to everyone in it instead, as docker does in every netns.
        try:
            with open("/proc/sys/net/ipv4/ip_unprivileged_port_start", "w") as f:
                f.write("0")
        except OSError as e:
            raise ShimError(f"userns net.ipv4.ip_unprivileged_port_start: {e.strerror}") from None


def own_dev(container):
    """B, after pivot_root (so every path resolves inside the container): the
    /dev tmpfs and its shm and mqueue folders belong to container root, and
    new ptys to its tty group (5), not to ids its namespace cannot name."""
    userns = container.get("userns")
    if container.get("userns_fd") is None or not userns:
        return
    for path in ("/dev", "/dev/shm", "/dev/mqueue"):
        try:
            os.chown(path, userns["uid"], userns["gid"], follow_symlinks=False)
        except OSError as e:
            raise ShimError(f"userns chown {path}: {e.strerror}") from None
    mount("devpts", "/dev/pts", "devpts", MS_REMOUNT | MS_NOSUID | MS_NOEXEC,
          f"ptmxmode=0666,mode=0620,gid={userns['gid'] + 5}")


def enter_userns(container):
    """B, after its go and before dropping capabilities: become container root
    (capabilities in the new namespace only; the bounding set is full again,
    confine_and_exec limits it next)."""
    userns_fd = container.get("userns_fd")
    if userns_fd is None:
        return
    setns(userns_fd, "userns")
    os.close(userns_fd)


def open_userns(pid):
    """An exec into a container: its user namespace when it is not ours (an
    fd, opened before setns(mnt) hides the host's /proc), else None."""
    path = f"/proc/{pid}/ns/user"
    try:
        theirs, ours = os.stat(path), os.stat("/proc/self/ns/user")
        if (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino):
            return None
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise ShimError(f"open {path}: {e.strerror}") from None


# --- container pid 1 ----------------------------------------------------------------

def mount_rootfs(plan):
    target = plan["target"]
    if plan.get("chdir"):
        os.chdir(plan["chdir"])
    lowers = list(reversed(plan["lowerdirs"]))  # overlay wants the top layer first
    for layer in lowers + [d for d in (plan.get("upperdir"), plan.get("workdir")) if d]:
        # overlay's own EINVAL/ENOENT would not say which one
        if not os.path.isdir(layer):
            raise ShimError(f"mount overlay on {target}: layer {os.path.abspath(layer)}: not a directory")
    if len(lowers) == 1 and plan.get("upperdir") is None:
        mount(lowers[0], target, None, MS_BIND | MS_REC)
    else:
        options = "lowerdir=" + ":".join(lowers)
        if plan.get("upperdir") is not None:
            options += f",upperdir={plan['upperdir']},workdir={plan['workdir']}"
        mount("overlay", target, "overlay", 0, options)
    os.chdir("/")


# --- paths inside a container's root -------------------------------------------------
#
# The image decides what its paths are: `dev -> /`, `mnt -> /srv/host`, a link
# loop. Resolving "<root>/dev" on the host would follow such links out of the
# root before pivot_root (runc's CVE-2021-30465). So every path in the root is
# looked up with openat2(RESOLVE_IN_ROOT) from an fd of the root, missing
# components are created relative to fds found that way, and every mount goes
# onto the resolved fd (/proc/self/fd/N), never onto a host path string.

def openat2(dirfd, path, flags, resolve, mode=0):
    """An fd (O_CLOEXEC) or OSError; ENOSYS on kernels before 5.6."""
    number = SYS_OPENAT2.get(MACHINE)
    if number is None:
        raise OSError(errno.ENOSYS, f"openat2: unknown syscall number on {MACHINE}")
    how = OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    for _ in range(32):
        fd = libc.syscall(ctypes.c_long(number), ctypes.c_int(dirfd), _enc(path),
                          ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
        if fd >= 0:
            return fd
        err = ctypes.get_errno()
        # EAGAIN: a rename raced a ".." lookup; the kernel asks to try again
        if err not in (errno.EAGAIN, errno.EINTR):
            raise OSError(err, os.strerror(err), path)
    raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN), path)


def fd_path(fd):
    """The path mount(2) gets for an fd: what the fd is, not what a name means now."""
    return f"/proc/self/fd/{fd}"


def components(path):
    return [p for p in path.split("/") if p not in ("", ".")]


class RootDir:
    """The container's root as an O_PATH fd, and lookups that stay inside it."""

    def __init__(self, path):
        self.path = path
        self.fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        st = os.fstat(self.fd)
        self.identity = (st.st_dev, st.st_ino)
        try:
            os.close(self.open(".", os.O_PATH | os.O_DIRECTORY))
        except OSError as e:
            os.close(self.fd)
            if e.errno == errno.ENOSYS:
                raise ShimError(
                    "containers need openat2(2) (Linux 5.6 or later) to resolve paths inside "
                    f"the root safely; this kernel is {platform.release()}") from None
            raise ShimError(f"open rootfs {path}: {e.strerror}") from None

    def close(self):
        os.close(self.fd)

    def open(self, path, flags=os.O_PATH):
        """openat2 of `path` (absolute or not: both mean from the root); OSError."""
        return openat2(self.fd, "/".join(components(path)) or ".", flags, IN_ROOT)

    def lookup(self, path, what, flags=os.O_PATH):
        """An fd, None if the path does not exist; other errors name it."""
        try:
            return self.open(path, flags)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise ShimError(f"{what}: {path}: {e.strerror}") from None

    def describe_link(self, parent_fd, name):
        try:
            return f" to {os.readlink(name, dir_fd=parent_fd)}"
        except OSError:
            return ""

    def make(self, path, directory, what):
        """An O_PATH fd of `path` inside the root, creating what is missing: the
        parents as directories (0755), the last as a directory or an empty file.
        Every component is found from the root, so links among them keep their
        meaning inside the container; each is created relative to its parent's
        fd. A dangling link is not followed to create its target."""
        parts = components(path)
        final_flags = os.O_PATH | (os.O_DIRECTORY if directory else 0)
        try:
            fd = self.open(path, final_flags)
        except FileNotFoundError:
            fd = None
        except OSError as e:
            raise ShimError(f"{what}: {path}: {e.strerror}") from None
        for i in range(len(parts)):
            if fd is not None:
                break
            last = i == len(parts) - 1
            prefix = "/" + "/".join(parts[:i + 1])
            flags = final_flags if last else os.O_PATH | os.O_DIRECTORY
            found = self.lookup(prefix, what, flags)
            if found is not None:
                if last:
                    fd = found
                else:
                    os.close(found)
                continue
            parent = self.open("/".join(parts[:i]) or ".", os.O_PATH | os.O_DIRECTORY)
            try:
                if last and not directory:
                    os.mknod(parts[i], stat.S_IFREG | 0o644, dir_fd=parent)
                else:
                    os.mkdir(parts[i], 0o755, dir_fd=parent)
            except FileExistsError:
                # there, yet openat2 found nothing: a link to nowhere (inside)
                raise ShimError(f"{what}: {prefix} is a dangling symbolic link"
                                f"{self.describe_link(parent, parts[i])}") from None
            except OSError as e:
                raise ShimError(f"{what}: create {prefix}: {e.strerror}") from None
            finally:
                os.close(parent)
            if last:
                fd = self.lookup(prefix, what, flags)
                if fd is None:
                    raise ShimError(f"{what}: {prefix} vanished after it was created")
        if fd is None:  # no components: the root itself
            fd = self.open(".", final_flags)
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) == self.identity:
            os.close(fd)
            raise ShimError(f"{what}: {path} is the container's root")
        return fd

    def system_dir(self, path, what):
        """/proc, /sys or /dev: a real directory of the image (created if
        missing), never a symlink, as runc insists too: a kernel filesystem
        mounted through a link would land wherever the image points it."""
        dirname, name = os.path.split("/" + "/".join(components(path)))
        parent = self.make(dirname, True, what) if dirname != "/" else self.open(".", os.O_PATH | os.O_DIRECTORY)
        try:
            try:
                st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                return self.make(path, True, what)
            except OSError as e:
                raise ShimError(f"{what}: {path}: {e.strerror}") from None
            if stat.S_ISLNK(st.st_mode):
                raise ShimError(f"{what}: {path} is a symbolic link{self.describe_link(parent, name)}; "
                                "the image must have a directory there")
            if not stat.S_ISDIR(st.st_mode):
                raise ShimError(f"{what}: {path} is not a directory")
            return openat2(parent, name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW, IN_ROOT)
        finally:
            os.close(parent)


def mount_at(source, fd, name, fstype, flags, data=None, source_name=None):
    """mount(2) onto what `fd` is; the error names `name`, the path inside the root."""
    what = mount_what(source and (source_name or source), name, fstype)
    _check(libc.mount(_enc(source), _enc(fd_path(fd)), _enc(fstype), flags, _enc(data)), what)


def remount_readonly(root, name, flags):
    """Read-only remount of the mount just made on `name`: found again from the
    root, so the fd is the new mount's root, not the directory under it."""
    fd = root.open(name)
    try:
        mount_at(None, fd, name, None, MS_BIND | MS_REMOUNT | MS_RDONLY | flags)
    finally:
        os.close(fd)


def mount_fs(root, path, fstype, flags, data=None):
    """A kernel filesystem on a system directory (/proc, /sys, /dev and under)."""
    fd = root.system_dir(path, f"mount {fstype} on {path}")
    try:
        mount_at(fstype, fd, path, fstype, flags, data)
    finally:
        os.close(fd)


def mount_proc_sys(root):
    mount_fs(root, "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    fd = root.system_dir("/sys", "mount sysfs on /sys")
    try:
        mount_at("sysfs", fd, "/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except ShimError:
        # sysfs may refuse a new instance (net namespace rules): bind the host's
        mount_at("/sys", fd, "/sys", None, MS_BIND | MS_REC)
        remount_readonly(root, "/sys", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    finally:
        os.close(fd)


DEV_MOUNTS = (("pts", 0o755, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5"),
              ("shm", 0o1777, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k"),
              ("mqueue", 0o755, "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC, None))


def mount_dev(root):
    mount_fs(root, "/dev", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k")
    # the fresh tmpfs, only ours: everything in it is made relative to its fd
    dev = root.open("/dev", os.O_PATH | os.O_DIRECTORY)
    try:
        old_umask = os.umask(0)
        try:
            for name, major, minor in DEVICES:
                os.mknod(name, stat.S_IFCHR | 0o666, os.makedev(major, minor), dir_fd=dev)
            for sub, mode, *_ in DEV_MOUNTS:
                os.mkdir(sub, mode, dir_fd=dev)
        finally:
            os.umask(old_umask)
        # [rootfs].devices: extra nodes go here, made under fd_path(dev) (this
        # tmpfs), e.g. make_extra_devices(fd_path(dev), nodes)
        for name, link in DEV_SYMLINKS:
            os.symlink(link, name, dir_fd=dev)
        for sub, _mode, fstype, flags, data in DEV_MOUNTS:
            fd = os.open(sub, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dev)
            try:
                mount_at(fstype, fd, f"/dev/{sub}", fstype, flags, data)
            finally:
                os.close(fd)
    finally:
        os.close(dev)


def make_extra_devices(dev_dir, nodes):
    """`[rootfs].devices`: each node as the host has it (type, numbers, mode,
    owner). Called after pivot_root, so every path resolves inside the
    container; the scope's device rules decide what may be opened."""
    for path, kind, major, minor, mode, uid, gid in nodes:
        target = os.path.join(dev_dir, os.path.relpath(path, "/dev"))
        try:
            os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
            os.mknod(target, (stat.S_IFCHR if kind == "c" else stat.S_IFBLK) | 0o600, os.makedev(major, minor))
            os.chown(target, uid, gid, follow_symlinks=False)
            os.chmod(target, mode)  # not the umask's
        except OSError as e:
            raise ShimError(f"device {path}: {e.strerror}") from None


def bind(root, source, target, readonly):
    """A host path (source) onto a path inside the root (target): the target
    means what it means in the container, links included."""
    if not os.path.lexists(source):
        raise ShimError(f"bind {source}: {os.strerror(errno.ENOENT)}")
    fd = root.make(target, os.path.isdir(source), f"bind {source} on {target}")
    try:
        mount_at(source, fd, target, None, MS_BIND | MS_REC)
    finally:
        os.close(fd)
    if readonly:
        remount_readonly(root, target, MS_REC)


TMPFS_FLAG_BITS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "ro": MS_RDONLY}


def mount_tmpfs(root, target, data, flags):
    """A tmpfs on a path inside the root (made if missing, links resolved in the root)."""
    what = f"tmpfs {target}"  # the daemon maps this prefix to [rootfs].tmpfs
    fd = root.make(target, True, what)
    try:
        bits = 0
        for flag in flags:
            bits |= TMPFS_FLAG_BITS[flag]
        mount_at("tmpfs", fd, target, "tmpfs", bits, data)
    except ShimError as e:
        raise ShimError(f"{what}: {e}") from None
    finally:
        os.close(fd)


def mount_volumes(root, container, readonly):
    """tmpfs mounts, supd's /etc files, the unit's binds. The tmpfs mounts
    come first, so /etc/resolv.conf linking into /run (a readonly root's
    scratch tmpfs) gets its file in the tmpfs, not under it; a tmpfs below a
    bind target waits for that bind. The rest go the shallower first: a
    mount below another lands on top of it."""
    binds = [tuple(b) for b in container["binds"]]
    tmpfs = [tuple(t) for t in container.get("tmpfs") or ()]

    def below_a_bind(path):
        return any(path == b[1] or path.startswith(b[1].rstrip("/") + "/") for b in binds)

    def depth(mount):
        return len(components(mount[0]))

    for target, data, flags in sorted((t for t in tmpfs if not below_a_bind(t[0])), key=lambda t: depth(t)):
        mount_tmpfs(root, target, data, flags)
    # before the unit's binds: a bind the unit asks for over one of them wins
    bind_etc_files(root, container, readonly)
    later = [(target, "bind", (source, ro)) for source, target, ro in binds]
    later += [(t[0], "tmpfs", t[1:]) for t in tmpfs if below_a_bind(t[0])]
    for target, kind, args in sorted(later, key=depth):
        if kind == "bind":
            bind(root, args[0], target, args[1])
        else:
            mount_tmpfs(root, target, args[0], args[1])


def etc_file(root, path, what, hops=0):
    """An O_PATH fd of the regular file `path` names in the root, created if
    missing. A symlink there is followed inside the root (resolv.conf ->
    ../run/systemd/resolve/stub-resolv.conf), and a dangling one gets its
    target created, as runc does for a mount destination: the file shows
    through the image's link, and every step is resolved in the root."""
    fd = root.lookup(path, what)
    if fd is not None:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise ShimError(f"{what}: {path} is not a regular file in the image")
        return fd
    dirname, name = os.path.split("/" + "/".join(components(path)))
    parent = root.make(dirname, True, what)
    try:
        link = os.readlink(name, dir_fd=parent)
    except FileNotFoundError:
        link = None
    except OSError as e:
        if e.errno != errno.EINVAL:  # EINVAL: there, but no link
            raise ShimError(f"{what}: {path}: {e.strerror}") from None
        link = None
    finally:
        os.close(parent)
    if link is None:
        return root.make(path, False, what)
    if hops >= 8:
        raise ShimError(f"{what}: {path}: {os.strerror(errno.ELOOP)}")
    # lexical here; the next lookup resolves it in the root whatever it says
    return etc_file(root, os.path.normpath(os.path.join(dirname, link)), what, hops + 1)


def bind_etc_files(root, container, readonly):
    """/etc/hosts, resolv.conf, hostname: supd's files over whatever the image
    has there; read-only in a readonly root, else writable as under docker."""
    for target, source in container.get("etc_files") or ():
        what = f"etc {target}"
        fd = etc_file(root, target, what)
        try:
            mount_at(source, fd, target, None, MS_BIND)
        except ShimError as e:
            raise ShimError(f"{what}: {e}") from None
        finally:
            os.close(fd)
        if readonly:
            try:
                remount_readonly(root, target, MS_NOSUID | MS_NODEV | MS_NOEXEC)
            except ShimError as e:
                raise ShimError(f"{what}: {e}") from None


def mask_paths(root):
    null = root.open("/dev/null")
    try:
        for path in MASKED_PATHS:
            fd = root.lookup(path, f"mask {path}")
            if fd is None:
                continue
            try:
                if stat.S_ISDIR(os.fstat(fd).st_mode):
                    mount_at("tmpfs", fd, path, "tmpfs", MS_RDONLY, "size=0")
                else:
                    mount_at(fd_path(null), fd, path, None, MS_BIND, source_name="/dev/null")
            finally:
                os.close(fd)
    finally:
        os.close(null)
    for path in READONLY_PATHS:
        fd = root.lookup(path, f"read-only {path}")
        if fd is None:
            continue
        try:
            mount_at(fd_path(fd), fd, path, None, MS_BIND | MS_REC, source_name=path)
        finally:
            os.close(fd)
        remount_readonly(root, path, MS_NOSUID | MS_NODEV | MS_NOEXEC)


def enter_root(root):
    # the fd, not the path: what was resolved is what we enter
    os.fchdir(root.fd)
    pivot_root(".", ".")
    # the old root now sits on top of the new one; detach it
    umount2(".", MNT_DETACH)
    os.chdir("/")
    root.close()


def change_directory(cwd):
    """chdir, failing with a message the daemon maps to [exec].working_directory."""
    try:
        os.chdir(cwd)
    except OSError as e:
        raise ShimError(f"cwd {cwd}: {e.strerror}") from None


def loopback_up():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))


def build_container(spec, container):
    """Everything pid 1 does before its go; returns (exec path, argv, env, identity)."""
    plan = container["rootfs"]
    last_cap = read_last_cap()
    set_sysctls(container.get("sysctls", ()))
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    idmap_layers(container)
    mount_rootfs(plan)
    # opened once the root is complete: every path below is resolved in it
    root = RootDir(plan["target"])
    mount_proc_sys(root)
    mount_dev(root)
    mount_volumes(root, container, plan.get("readonly"))
    argv = list(spec["argv"])
    if container["init"]:
        bind(root, container["init"], "/dev/init", readonly=True)
        argv = ["/dev/init", "--", *argv]
    mask_paths(root)
    enter_root(root)
    # from here "/" is the container's root: plain paths are resolved inside it
    make_extra_devices("/dev", container.get("devices") or ())
    own_dev(container)
    if plan.get("readonly"):
        mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY)
    if container["hostname"]:
        socket.sethostname(container["hostname"])
    if container["network"] != "host":
        loopback_up()
    identity = resolve_user(spec["user"], "/")
    env = build_env(spec, identity[3])
    change_directory(spec["cwd"])
    path = find_executable(argv[0], env)
    return path, argv, env, identity, last_cap


def confine_and_exec(ctl, spec, path, argv, env, identity, last_cap, parent=None):
    """After the go: capabilities, identity, no_new_privs (always), seccomp, exec.
    With `parent` (getppid() as it was), die with it: set after the identity
    change, which clears it."""
    uid, gid, groups, _home = identity
    try:
        program = seccomp_program(spec)
        confine_caps(unit_caps(spec), last_cap, (uid, gid, groups))
        if parent is not None:
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL, "parent death signal")
            if os.getppid() != parent:  # it died before the line above
                os._exit(EXIT_ABORTED)
        prctl(PR_SET_NO_NEW_PRIVS, 1, "no_new_privs")
        os.umask(0o022 if spec["umask"] is None else spec["umask"])
        install_seccomp(program)
    except (ShimError, OSError) as e:
        send(ctl, {"error": describe(e, "identity")})
        os._exit(EXIT_SETUP_FAILED)
    exec_command(ctl, path, argv, env)


def run_container_init(spec, stdio, ctl):
    try:
        reset_process(stdio, spec)
        prepared = build_container(spec, spec["container"])
    except (ShimError, OSError) as e:
        fail_before_go(ctl, describe(e, "container"))
    send(ctl, {"ready": True})
    wait_for_go(ctl)
    try:
        # rooted at the scope the daemon has just put us in
        unshare(CLONE_NEWCGROUP)
        enter_userns(spec["container"])
    except ShimError as e:
        send(ctl, {"error": str(e)})
        os._exit(EXIT_SETUP_FAILED)
    confine_and_exec(ctl, spec, *prepared)


# --- exec into a running container ---------------------------------------------------

def run_join(spec, stdio, ctl):
    """B: join cgroups and namespaces, fork C, relay C's exit."""
    join = spec["join"]
    try:
        reset_process(stdio, spec)
        me = str(os.getpid())
        for procs in join["cgroup_procs"]:
            try:
                with open(procs, "w") as f:
                    f.write(me)
            except OSError as e:
                raise ShimError(f"join cgroup {procs}: {e.strerror}") from None
        userns_fd = open_userns(join["pid"])
        tty = join.get("tty", False)
        owner = userns_root(join["pid"]) if tty and userns_fd is not None else None
        fds = []
        for ns in JOIN_NAMESPACES:
            path = f"/proc/{join['pid']}/ns/{ns}"
            try:
                fds.append((ns, os.open(path, os.O_RDONLY | os.O_CLOEXEC)))
            except OSError as e:
                raise ShimError(f"open {path}: {e.strerror}") from None
        for ns, fd in fds:
            setns(fd, f"{ns} of pid {join['pid']}")
            os.close(fd)
        # in the unit's mount namespace, before its user namespace takes host root's powers
        terminal = open_terminal(owner) if tty else None
        if userns_fd is not None:  # last: the others belong to the host's user namespace
            setns(userns_fd, f"user of pid {join['pid']}")
            os.close(userns_fd)
    except (ShimError, OSError) as e:
        fail_before_go(ctl, describe(e, "join"))
    child = os.fork()
    if child == 0:
        try:
            # B as C sees it: 0, B being outside C's pid namespace (1 or
            # another pid once C is re-parented)
            run_join_child(spec, ctl, os.getppid(), terminal)
        finally:
            os._exit(EXIT_SETUP_FAILED)
    for fd in terminal or ():
        os.close(fd)
    ctl.close()
    relay_exit(child)


def run_join_child(spec, ctl, relay, terminal):
    master = None
    try:
        last_cap = read_last_cap()
        identity = resolve_user(spec["user"], "/")
        env = build_env(spec, identity[3])
        change_directory(spec["cwd"])
        path = find_executable(spec["argv"][0], env)
        if terminal is not None:
            master = take_terminal(terminal, identity[0])
    except (ShimError, OSError) as e:
        # (a master left open: closing it would hang up on us before we report)
        fail_before_go(ctl, describe(e, "cwd " + spec["cwd"]))
    if master is None:
        send(ctl, {"ready": True})
    else:
        send(ctl, {"ready": True, "tty": True}, [master])
        os.close(master)
    wait_for_go(ctl)
    # a terminal session is a session of its own, out of reach of a signal to
    # the relay's group: it must not outlive the relay's SIGKILL
    confine_and_exec(ctl, spec, path, list(spec["argv"]), env, identity, last_cap,
                     parent=relay if terminal is not None else None)


def userns_root(pid):
    """The host uid of root in pid's user namespace (from its uid_map)."""
    path = f"/proc/{pid}/uid_map"
    try:
        with open(path) as f:
            for line in f:
                inside, outside, _count = line.split()
                if inside == "0":
                    return int(outside)
    except (OSError, ValueError) as e:
        raise ShimError(f"read {path}: {getattr(e, 'strerror', None) or e}") from None
    raise ShimError(f"{path}: no mapping for root")


def open_terminal(owner):
    """B, exec -t, in the unit's mount namespace and still host root: a new
    pty from the unit's own /dev/ptmx (its devpts, so `tty` names a
    /dev/pts/N that exists inside). The slave comes through the master
    (TIOCGPTPEER), not a path in /dev/pts. With a user namespace it is given
    to the unit's root first (`owner`), so that C, root in there, may give it
    to the exec user. Returns (master, slave)."""
    try:
        master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as e:
        raise ShimError(f"tty: open /dev/ptmx: {e.strerror}") from None
    try:
        fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
        slave = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as e:
        os.close(master)
        raise ShimError(f"tty: {e.strerror}") from None
    try:
        if owner is not None:
            os.fchown(slave, owner, -1)
    except OSError as e:
        os.close(master)
        os.close(slave)
        raise ShimError(f"tty: chown: {e.strerror}") from None
    return master, slave


def take_terminal(terminal, uid):
    """C: the slave as stdio and controlling terminal of a new session, owned
    by the user that will run there (as login and runc do). Returns the master."""
    master, slave = terminal
    if uid != 0:
        try:
            os.fchown(slave, uid, -1)
        except OSError as e:
            raise ShimError(f"tty: chown to uid {uid}: {e.strerror}") from None
    try:
        os.setsid()
        fcntl.ioctl(slave, TIOCSCTTY, 0)
        for target in (0, 1, 2):
            os.dup2(slave, target)
        os.close(slave)
    except OSError as e:
        raise ShimError(f"tty: {e.strerror}") from None
    return master


def relay_exit(child):
    for sig in FORWARDED_SIGNALS:
        signal.signal(sig, lambda number, _frame: os.kill(child, number))
    _, status = os.waitpid(child, 0)
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        for sig in FORWARDED_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        if number not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(number, signal.SIG_DFL)
        os.kill(os.getpid(), number)
        os._exit(128 + number)
    os._exit(os.waitstatus_to_exitcode(status))


# --- the log relay ----------------------------------------------------------------
# One per unit started with a log request: holds the read ends of the unit's
# stdout and stderr pipes and writes each line, timestamped and marked with its
# stream, to the unit's sink (conmon's job for podman). It is forked by the
# intermediate A (no Python start-up to pay), then leaves the session, so it
# lives on while supd restarts (live restore) and ends by itself when the last
# writer of both pipes is gone. The format is supervisor/logformat.py's (CRI's);
# this module cannot import it, tests/unit/test_logformat.py checks they agree.

RELAY_READ = 1 << 16
RELAY_PIPE_SIZE = 1 << 20  # room for bursts while the relay is not scheduled
JOURNAL_SOCKET = "/run/systemd/journal/socket"  # the relay runs on the host's root
JOURNAL_LINE_MAX = 48 * 1024  # journald's own LineMax default: longer lines are split
STREAM_NAMES = (b"stdout", b"stderr")
JOURNAL_PRIORITY = (b"6", b"3")  # info for stdout, err for stderr (journald's stream defaults)


def rfc3339_now():
    now = time.time_ns()
    seconds, nanos = divmod(now, 1000000000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)).encode() + b".%09dZ" % nanos


def cri_records(stamp, stream, data):
    """`data` as record lines; a trailing piece without its newline is a P record."""
    full = stamp + b" " + stream + b" F "
    lines = data.split(b"\n")
    rest = lines.pop()
    out = full + (b"\n" + full).join(lines) + b"\n" if lines else b""
    if rest:
        out += stamp + b" " + stream + b" P " + rest + b"\n"
    return out


def journal_entries(unit, index, data):
    """Native journal protocol datagrams for `data`'s lines (the stream
    protocol cannot carry SUPD_UNIT=)."""
    head = (b"PRIORITY=" + JOURNAL_PRIORITY[index] + b"\nSYSLOG_IDENTIFIER=" + unit
            + b"\nSUPD_UNIT=" + unit + b"\nSUPD_STREAM=" + STREAM_NAMES[index] + b"\nMESSAGE=")
    for line in data.split(b"\n"):
        for start in range(0, max(len(line), 1), JOURNAL_LINE_MAX):
            piece = line[start:start + JOURNAL_LINE_MAX]
            if piece or not line:
                yield head + piece + b"\n"


def reconnect_journal(old):
    try:
        new = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    except OSError:
        return old
    try:
        new.connect(JOURNAL_SOCKET)
    except OSError:
        new.close()
        return old
    old.close()
    return new


def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def relay_loop(pipes, sink, unit, driver):
    """Until both pipes reach EOF. A sink that fails (disk full, journald
    gone) loses those lines, never blocks the unit for good."""
    import select  # here: the spawner itself never needs it

    poller = select.poll()
    for fd in pipes:
        poller.register(fd, select.POLLIN)
    index_of = {fd: i for i, fd in enumerate(pipes)}
    journal = socket.socket(fileno=sink) if driver == "journald" else None
    pending = {}  # journald: a line's start, until its newline comes (the file keeps it as a P record)
    open_fds = len(pipes)
    while open_fds:
        for fd, _event in poller.poll():
            data = os.read(fd, RELAY_READ)
            i = index_of[fd]
            if not data:
                poller.unregister(fd)
                os.close(fd)
                open_fds -= 1
                if journal is not None and pending.get(i):
                    data, pending[i] = pending.pop(i), b""
                    data += b"\n"
                else:
                    continue
            try:
                if journal is None:
                    write_all(sink, cri_records(rfc3339_now(), STREAM_NAMES[i], data))
                    continue
                data = pending.pop(i, b"") + data
                end = data.rfind(b"\n")
                if end < 0 and len(data) < JOURNAL_LINE_MAX:
                    pending[i] = data
                    continue
                if end >= 0:
                    data, pending[i] = data[:end], data[end + 1:]
                for entry in journal_entries(unit, i, data):
                    journal.send(entry)
            except OSError:
                if journal is not None:  # journald restarted: its socket is a new one
                    journal = reconnect_journal(journal)


def run_log_relay(pipes, sink, unit, driver, keep):
    try:
        os.setsid()  # out of the terminal's process group: a Ctrl-C to supd is not ours
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # ends on EOF, after the last line
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        name = ctypes.create_string_buffer(b"supd-log:" + unit[:6])  # ps shows whose relay it is
        libc.prctl(PR_SET_NAME, ctypes.addressof(name), 0, 0, 0)
        # nothing of the spawner's stays open here (its daemon socket, other units' pipes)
        low = 3
        for fd in sorted(keep):
            os.closerange(low, fd)
            low = fd + 1
        os.closerange(low, os.sysconf("SC_OPEN_MAX"))
        relay_loop(pipes, sink, unit, driver)
    finally:
        os._exit(0)


def relay_pipes():
    """stdout's and stderr's pipes: [(read, write), (read, write)]."""
    pipes = []
    try:
        for _ in STREAM_NAMES:
            pipes.append(os.pipe())
            try:
                fcntl.fcntl(pipes[-1][0], F_SETPIPE_SZ, RELAY_PIPE_SIZE)
            except OSError:
                pass  # over /proc/sys/fs/pipe-max-size: the 64 KiB default works too
    except BaseException:
        for r, w in pipes:
            os.close(r)
            os.close(w)
        raise
    return pipes


def fork_log_relay(relay):
    """In A, before anything else: fork the relay (re-parented to the daemon,
    a subreaper, when A exits, like a container) and keep only the pipes'
    write ends. Returns its pid."""
    reads, sink, log = relay
    pid = os.fork()
    if pid == 0:
        run_log_relay(reads, sink, log["unit"].encode(), log["driver"], [*reads, sink])
    for fd in reads:
        os.close(fd)
    return pid


# --- the spawner ------------------------------------------------------------------

def fork_child(run, spec, stdio, ctl, report, extra):
    """Fork B from A; B runs `run`, A reports B's pid (and `extra`)."""
    child = os.fork()
    if child == 0:
        try:
            os.close(report)
            run(spec, stdio, ctl)
        except BaseException as e:  # noqa: BLE001 - a forked child must never return
            try:
                print(f"supd spawner: {e!r}", file=sys.stderr)
                send(ctl, {"error": f"spawn: {e}"})
            finally:
                os._exit(EXIT_SETUP_FAILED)
        os._exit(EXIT_SETUP_FAILED)
    os.write(report, json.dumps({"pid": child, **extra}).encode())


def run_intermediate(daemon, spec, stdio, ctl, report, relay=None):
    """A: fork the log relay (if asked), make the namespaces (container), fork B, report, exit."""
    try:
        daemon.close()
        # before any unshare: the relay stays in the host's namespaces
        extra = {"relay": fork_log_relay(relay)} if relay is not None else {}
        container = spec.get("container")
        if container is not None:
            flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC
            if container["network"] != "host":
                flags |= CLONE_NEWNET
            make_userns(container)
            unshare(flags)
            fork_child(run_container_init, spec, stdio, ctl, report, extra)
        elif spec.get("join") is not None:
            fork_child(run_join, spec, stdio, ctl, report, extra)
        else:
            fork_child(run_plain, spec, stdio, ctl, report, extra)
    except BaseException as e:  # noqa: BLE001
        os.write(report, json.dumps({"error": str(e)}).encode())
    os._exit(0)


def spawn(daemon, request, stdio):
    spec = request["spec"]
    log = request.get("log")
    if log is None:
        return spawn_process(daemon, request, spec, stdio)
    # stdout and stderr are the sink: the process gets the relay's pipes instead
    pipes = relay_pipes()
    try:
        relay = ([r for r, _ in pipes], stdio[1], log)
        return spawn_process(daemon, request, spec, [stdio[0], *(w for _, w in pipes)], relay)
    finally:
        for r, w in pipes:
            os.close(r)
            os.close(w)


def spawn_process(daemon, request, spec, stdio, relay=None):
    parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    read_end, write_end = os.pipe()
    try:
        intermediate = os.fork()
        if intermediate == 0:
            os.close(read_end)
            parent_end.close()
            run_intermediate(daemon, spec, stdio, child_end, write_end, relay)
            os._exit(0)
    except BaseException:
        parent_end.close()
        os.close(read_end)
        raise
    finally:
        child_end.close()
        os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(intermediate, 0)
    report = json.loads(b"".join(chunks) or b'{"error": "intermediate process died"}')
    if "pid" not in report:
        parent_end.close()
        return {"id": request["id"], "error": report["error"]}, None
    reply = {"id": request["id"], "pid": report["pid"]}
    if "relay" in report:
        reply["relay"] = report["relay"]
    return reply, parent_end


def serve(daemon):
    while True:
        message, fds = receive(daemon, MAX_MESSAGE)
        if message is None:
            return
        try:
            if message.get("op") != "spawn":
                reply, ctl = {"id": message.get("id"), "error": f"unknown op {message.get('op')!r}"}, None
            elif len(fds) != 3:
                reply, ctl = {"id": message.get("id"), "error": f"expected 3 stdio fds, got {len(fds)}"}, None
            else:
                reply, ctl = spawn(daemon, message, fds)
        except Exception as e:  # noqa: BLE001 - one bad request must not end the spawner
            reply, ctl = {"id": message.get("id"), "error": f"spawner: {e}"}, None
        finally:
            for fd in fds:
                os.close(fd)
        try:
            send(daemon, reply, [ctl.fileno()] if ctl is not None else [])
        except BrokenPipeError:
            return
        finally:
            if ctl is not None:
                ctl.close()


def main():
    # A Ctrl-C at the terminal reaches the whole foreground process group; the
    # spawner belongs to the daemon and ends when the daemon's socket closes.
    # (Every child resets SIGINT to SIG_DFL before it execs.)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    daemon = socket.socket(fileno=int(sys.argv[1]))
    try:
        serve(daemon)
    except (ConnectionError, KeyboardInterrupt):
        pass


if __name__ == "__main__":
    main()
