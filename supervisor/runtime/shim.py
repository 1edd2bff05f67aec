"""The spawner: the only place supd forks.

Run as `python3 -I -S shim.py FD` before the daemon has any thread. It is
single-threaded, stdlib-only and imports nothing from `supervisor` (it is
started by path, not as a module). FD is one end of a SOCK_SEQPACKET
socketpair; every message is JSON, fds travel as SCM_RIGHTS.

  daemon -> spawner  {"op":"spawn","id":N,"spec":{...}}  + fds stdin, stdout, stderr
  spawner -> daemon  {"id":N,"pid":P}                    + the daemon's end of a control socket
                     {"id":N,"error":"..."}
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

A process that fails before its go reports {"error"} and then waits for the
daemon to close the control socket before exiting 127, so it never exits
before the daemon has started tracking its pid.
"""

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

PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38

SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}

# the new mount API: one number on every architecture (the unified table, 424+)
SYS_OPEN_TREE = 428
SYS_MOVE_MOUNT = 429
SYS_MOUNT_SETATTR = 442
OPEN_TREE_CLONE = 0x1
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_IDMAP = 0x00100000

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1

LINUX_CAPABILITY_VERSION_3 = 0x20080522

# docker's default capability set (moby oci/caps/defaults.go)
CAP_CHOWN = 0
CAP_DAC_OVERRIDE = 1
CAP_FOWNER = 3
CAP_FSETID = 4
CAP_KILL = 5
CAP_SETGID = 6
CAP_SETUID = 7
CAP_SETPCAP = 8
CAP_NET_BIND_SERVICE = 10
CAP_NET_RAW = 13
CAP_SYS_CHROOT = 18
CAP_MKNOD = 27
CAP_AUDIT_WRITE = 29
CAP_SETFCAP = 31
DEFAULT_CAPS = (
    CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FSETID, CAP_FOWNER, CAP_MKNOD, CAP_NET_RAW,
    CAP_SETGID, CAP_SETUID, CAP_SETFCAP, CAP_SETPCAP, CAP_NET_BIND_SERVICE,
    CAP_SYS_CHROOT, CAP_KILL, CAP_AUDIT_WRITE,
)

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


def mount(source, target, fstype, flags, data=None):
    if fstype is None:
        what = f"bind {source} on {target}" if source else f"remount {target}"
    else:
        what = f"mount {fstype} on {target}"
    _check(libc.mount(_enc(source), _enc(target), _enc(fstype), flags, _enc(data)), what)


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
    # Python ignores these at start-up and ignored signals survive exec
    for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    if spec["setsid"]:
        os.setsid()


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
        os.chdir(spec["cwd"])
        path = find_executable(spec["argv"][0], env)
    except (ShimError, OSError) as e:
        fail_before_go(ctl, describe(e, "cwd " + spec["cwd"]))
    send(ctl, {"ready": True})
    wait_for_go(ctl)
    try:
        if uid is not None:
            set_identity(uid, gid, groups)
        if spec["no_new_privs"]:
            prctl(PR_SET_NO_NEW_PRIVS, 1, "no_new_privs")
        if spec["umask"] is not None:
            os.umask(spec["umask"])
    except (ShimError, OSError) as e:
        send(ctl, {"error": describe(e, "identity")})
        os._exit(EXIT_SETUP_FAILED)
    exec_command(ctl, path, spec["argv"], env)


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
    if container["network"] == "none":
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

def inside(root, path):
    return os.path.join(root, path.lstrip("/"))


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


def make_mountpoint(path, directory=True):
    if os.path.lexists(path):
        return
    try:
        if directory:
            os.makedirs(path, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "a"):
                pass
    except OSError as e:
        raise ShimError(f"create mount point {path}: {e.strerror}") from None


def mount_proc_sys(root):
    proc, sys_dir = inside(root, "/proc"), inside(root, "/sys")
    make_mountpoint(proc)
    make_mountpoint(sys_dir)
    mount("proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    try:
        mount("sysfs", sys_dir, "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except ShimError:
        # sysfs may refuse a new instance (net namespace rules): bind the host's
        mount("/sys", sys_dir, None, MS_BIND | MS_REC)
        mount(None, sys_dir, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)


def mount_dev(root):
    dev = inside(root, "/dev")
    make_mountpoint(dev)
    mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k")
    for name, major, minor in DEVICES:
        path = os.path.join(dev, name)
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(major, minor))
        os.chmod(path, 0o666)  # umask
    for sub in ("pts", "shm", "mqueue"):
        os.mkdir(os.path.join(dev, sub))
    os.chmod(os.path.join(dev, "shm"), 0o1777)
    mount("devpts", os.path.join(dev, "pts"), "devpts", MS_NOSUID | MS_NOEXEC,
          "newinstance,ptmxmode=0666,mode=0620,gid=5")
    mount("shm", os.path.join(dev, "shm"), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
          "mode=1777,size=65536k")
    mount("mqueue", os.path.join(dev, "mqueue"), "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for name, link in DEV_SYMLINKS:
        os.symlink(link, os.path.join(dev, name))


def bind(source, target, readonly):
    if not os.path.lexists(source):
        raise ShimError(f"bind {source}: {os.strerror(errno.ENOENT)}")
    make_mountpoint(target, directory=os.path.isdir(source))
    mount(source, target, None, MS_BIND | MS_REC)
    if readonly:
        mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC)


def mask_paths(root):
    null = inside(root, "/dev/null")
    for path in MASKED_PATHS:
        target = inside(root, path)
        if not os.path.lexists(target):
            continue
        if os.path.isdir(target):
            mount("tmpfs", target, "tmpfs", MS_RDONLY, "size=0")
        else:
            mount(null, target, None, MS_BIND)
    for path in READONLY_PATHS:
        target = inside(root, path)
        if not os.path.lexists(target):
            continue
        mount(target, target, None, MS_BIND | MS_REC)
        mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)


def enter_root(root):
    os.chdir(root)
    pivot_root(".", ".")
    # the old root now sits on top of the new one; detach it
    umount2(".", MNT_DETACH)
    os.chdir("/")


def loopback_up():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))


def build_container(spec, container):
    """Everything pid 1 does before its go; returns (exec path, argv, env, identity)."""
    plan = container["rootfs"]
    root = plan["target"]
    with open("/proc/sys/kernel/cap_last_cap") as f:
        last_cap = int(f.read())
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    idmap_layers(container)
    mount_rootfs(plan)
    mount_proc_sys(root)
    mount_dev(root)
    for source, target, readonly in container["binds"]:
        bind(source, inside(root, target), readonly)
    argv = list(spec["argv"])
    if container["init"]:
        init_target = inside(root, "/dev/init")
        bind(container["init"], init_target, readonly=True)
        argv = ["/dev/init", "--", *argv]
    mask_paths(root)
    enter_root(root)
    own_dev(container)
    if plan.get("readonly"):
        mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY)
    if container["hostname"]:
        socket.sethostname(container["hostname"])
    if container["network"] == "none":
        loopback_up()
    identity = resolve_user(spec["user"], "/")
    env = build_env(spec, identity[3])
    os.chdir(spec["cwd"])
    path = find_executable(argv[0], env)
    return path, argv, env, identity, last_cap


def confine_and_exec(ctl, spec, path, argv, env, identity, last_cap):
    """After the go: capabilities, identity, no_new_privs (always), exec."""
    uid, gid, groups, _home = identity
    try:
        drop_bounding_set(DEFAULT_CAPS, last_cap)
        set_identity(uid, gid, groups)
        limit_capabilities(DEFAULT_CAPS)
        prctl(PR_SET_NO_NEW_PRIVS, 1, "no_new_privs")
        os.umask(0o022 if spec["umask"] is None else spec["umask"])
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
        if userns_fd is not None:  # last: the others belong to the host's user namespace
            setns(userns_fd, f"user of pid {join['pid']}")
            os.close(userns_fd)
    except (ShimError, OSError) as e:
        fail_before_go(ctl, describe(e, "join"))
    child = os.fork()
    if child == 0:
        try:
            run_join_child(spec, ctl)
        finally:
            os._exit(EXIT_SETUP_FAILED)
    ctl.close()
    relay_exit(child)


def run_join_child(spec, ctl):
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last_cap = int(f.read())
        identity = resolve_user(spec["user"], "/")
        env = build_env(spec, identity[3])
        os.chdir(spec["cwd"])
        path = find_executable(spec["argv"][0], env)
    except (ShimError, OSError) as e:
        fail_before_go(ctl, describe(e, "cwd " + spec["cwd"]))
    send(ctl, {"ready": True})
    wait_for_go(ctl)
    confine_and_exec(ctl, spec, path, list(spec["argv"]), env, identity, last_cap)


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


# --- the spawner ------------------------------------------------------------------

def fork_child(run, spec, stdio, ctl, report):
    """Fork B from A; B runs `run`, A reports B's pid."""
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
    os.write(report, json.dumps({"pid": child}).encode())


def run_intermediate(daemon, spec, stdio, ctl, report):
    """A: make the namespaces (container), fork B, report, exit."""
    try:
        daemon.close()
        container = spec.get("container")
        if container is not None:
            flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC
            if container["network"] == "none":
                flags |= CLONE_NEWNET
            make_userns(container)
            unshare(flags)
            fork_child(run_container_init, spec, stdio, ctl, report)
        elif spec.get("join") is not None:
            fork_child(run_join, spec, stdio, ctl, report)
        else:
            fork_child(run_plain, spec, stdio, ctl, report)
    except BaseException as e:  # noqa: BLE001
        os.write(report, json.dumps({"error": str(e)}).encode())
    os._exit(0)


def spawn(daemon, request, stdio):
    spec = request["spec"]
    parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    read_end, write_end = os.pipe()
    try:
        intermediate = os.fork()
        if intermediate == 0:
            os.close(read_end)
            parent_end.close()
            run_intermediate(daemon, spec, stdio, child_end, write_end)
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
    return {"id": request["id"], "pid": report["pid"]}, parent_end


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
