"""Seccomp and capabilities of a real supd's containers, driven by supctl:
a static C probe in a busybox rootfs makes the calls an attacker tries first
(issue 11), in the unit, through `supctl exec` and in a health check."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.e2e.conftest import Supd, wait_for
from tests.e2e.test_containers import PODMAN_CAP_MASK, container_unit, exec_in, proc_status, start_unit
from tests.helpers.busybox import make_busybox_rootfs
from tests.helpers.probes import build_probe, parse

EPERM, ENOSYS = "1", "38"
ATTACKS = ("io_uring_setup", "add_key", "keyctl", "personality_addr_no_randomize", "unshare_user",
           "clone_newuser", "clone3")  # fmt: skip
REFUSED = {"io_uring_setup": EPERM, "add_key": EPERM, "keyctl": EPERM, "personality_addr_no_randomize": EPERM,
           "unshare_user": EPERM, "clone_newuser": EPERM, "clone3": ENOSYS}  # fmt: skip
NET_RAW = 13


@pytest.fixture(scope="module")
def probe_layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_busybox_rootfs(tmp_path_factory.mktemp("confinement") / "rootfs")
    build_probe(root / "bin")  # not /usr: the Python check binds the host's there
    # the host's /usr is bound read-only for the Python check; merged-/usr links
    for name in ("lib", "lib64"):
        if not (root / name).exists():
            os.symlink(f"usr/{name}", root / name)
    return root


def probe(supd: Supd, unit: str, *names: str) -> dict[str, str]:
    rc, out, err = exec_in(supd, unit, "/bin/syscall-probe", "status", *names)
    assert rc == 0, (rc, out, err)
    return parse(out)


def test_default_container_is_filtered_like_docker(supd: Supd, probe_layer: Path) -> None:
    command = ["/bin/sh", "-c", "syscall-probe status " + " ".join(ATTACKS) + " > /tmp/main.out; exec sleep 1000"]
    st = start_unit(supd, "box", container_unit([probe_layer], command))
    status = proc_status(int(st["pid"]))  # type: ignore[arg-type]
    assert status["Seccomp"] == "2" and status["NoNewPrivs"] == "1"
    assert int(status["CapEff"], 16) == PODMAN_CAP_MASK
    # the unit's own process
    main = parse(wait_for(lambda: exec_in(supd, "box", "cat", "/tmp/main.out")[1], what="probe output"))
    assert main["Seccomp"] == "2"
    assert {n: main[n] for n in ATTACKS} == REFUSED
    # and an exec'd one
    got = probe(supd, "box", *ATTACKS, "getpid", "personality_query", "clone_plain")
    assert got["Seccomp"] == "2"
    assert {n: got[n] for n in ATTACKS} == REFUSED
    assert got["getpid"] == got["personality_query"] == got["clone_plain"] == "ok"


def test_no_packet_socket_on_host_network_without_net_raw(supd: Supd, probe_layer: Path) -> None:
    """The sniffing of issue 11: AF_PACKET needs CAP_NET_RAW, gone from the default set."""
    start_unit(supd, "sniff", container_unit([probe_layer], extra_rootfs='network = "host"\n'))
    assert probe(supd, "sniff", "packet_socket")["packet_socket"] == EPERM
    start_unit(supd, "raw", container_unit([probe_layer], exec_extra='cap_add = ["CAP_NET_RAW"]\n', extra_rootfs='network = "host"\n'))
    assert probe(supd, "raw", "packet_socket")["packet_socket"] == "ok"
    assert int(proc_status(int(supd.status("raw")["pid"]))["CapEff"], 16) == PODMAN_CAP_MASK | 1 << NET_RAW


def test_ping_works_without_net_raw_in_its_own_network(supd: Supd, probe_layer: Path) -> None:
    start_unit(supd, "ping", container_unit([probe_layer], extra_rootfs='network = "none"\n'))
    assert probe(supd, "ping", "icmp_echo")["icmp_echo"] == "ok"
    rc, out, _err = exec_in(supd, "ping", "cat", "/proc/sys/net/ipv4/ping_group_range")
    assert (rc, out.split()) == (0, ["0", "2147483647"])


def test_unconfined_and_a_custom_profile(supd: Supd, probe_layer: Path) -> None:
    start_unit(supd, "loose", container_unit([probe_layer], exec_extra='seccomp = "unconfined"\n'))
    got = probe(supd, "loose", "add_key")
    assert (got["Seccomp"], got["add_key"]) == ("0", "ok")
    # relative to the unit file's folder
    (supd.units / "profiles").mkdir(exist_ok=True)
    (supd.units / "profiles" / "nokeys.json").write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["add_key", "keyctl"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}],
    }))  # fmt: skip
    start_unit(supd, "custom", container_unit([probe_layer], exec_extra='seccomp = "profiles/nokeys.json"\n'))
    got = probe(supd, "custom", "add_key", "keyctl", "io_uring_setup", "unshare_user")
    assert (got["Seccomp"], got["add_key"], got["keyctl"]) == ("2", "13", "13")
    assert got["unshare_user"] == "ok"  # this profile allows what it does not name


def test_health_checks_run_under_the_filter(supd: Supd, probe_layer: Path) -> None:
    health = (
        '[health]\ncommand = ["/bin/sh", "-c", "syscall-probe status add_key > /tmp/health.out"]\n'
        'interval = "200ms"\ntimeout = "5s"\n'
    )
    start_unit(supd, "checked", container_unit([probe_layer]) + health)
    out = wait_for(lambda: exec_in(supd, "checked", "cat", "/tmp/health.out")[1], what="health check output")
    got = parse(out)
    assert (got["Seccomp"], got["add_key"]) == ("2", EPERM)


def test_busybox_and_python_work_unchanged(supd: Supd, probe_layer: Path) -> None:
    script = (
        "import os, socket, subprocess, sys, threading\n"
        "t = threading.Thread(target=lambda: None); t.start(); t.join()\n"  # clone3 -> ENOSYS -> clone
        "r = subprocess.run(['/bin/echo', 'child'], capture_output=True, text=True)\n"
        "pid = os.fork()\n"
        "if pid == 0: os._exit(7)\n"
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); s.close()\n"
        "print(r.stdout.strip(), os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), sys.version_info[0])\n"
    )
    binds = '[[rootfs.binds]]\nsource = "/usr"\ntarget = "/usr"\nreadonly = true\n'
    start_unit(supd, "py", container_unit([probe_layer], extra_rootfs=binds))
    rc, out, err = exec_in(supd, "py", "/usr/bin/python3", "-I", "-S", "-c", script)
    assert (rc, out.split()) == (0, ["child", "7", "3"]), err
    rc, out, err = exec_in(supd, "py", "/bin/sh", "-c", "ps >/dev/null && echo hi | sed s/hi/ok/ && mkdir -p /tmp/d && ls /tmp")
    assert (rc, out.split()) == (0, ["ok", "d"]), err
    assert probe(supd, "py")["Seccomp"] == "2"


def test_a_plain_unit_opts_in(supd: Supd, probe_layer: Path) -> None:
    binary = probe_layer / "bin" / "syscall-probe"
    out = supd.root / "plain.out"
    text = (
        f'[exec]\ncommand = ["/bin/sh", "-c", "{binary} status add_key unshare_ns > {out}; exec sleep 1000"]\n'
        'seccomp = "default"\ncap_drop = ["NET_RAW"]\n[stop]\ntimeout = "5s"\n'
    )
    st = start_unit(supd, "plain", text)
    got = parse(wait_for(lambda: out.exists() and out.read_text(), what="plain probe output"))
    # root keeps CAP_SYS_ADMIN, so namespaces stay; the keyring does not
    assert (got["Seccomp"], got["add_key"], got["unshare_ns"]) == ("2", EPERM, "ok")
    status = proc_status(int(st["pid"]))  # type: ignore[arg-type]
    assert not int(status["CapBnd"], 16) & 1 << NET_RAW and int(status["CapBnd"], 16) & 1 << 21
    start_unit(supd, "plain2", '[exec]\ncommand = ["/bin/sleep", "1000"]\n[stop]\ntimeout = "5s"\n')
    assert proc_status(int(supd.status("plain2")["pid"]))["Seccomp"] == "0"


def test_bad_profiles_and_capabilities_are_unit_file_errors(supd: Supd, probe_layer: Path) -> None:
    good = start_unit(supd, "good", container_unit([probe_layer]))
    (supd.units / "typo.json").write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read", "wirte"], "action": "SCMP_ACT_ALLOW"}],
    }))  # fmt: skip
    (supd.units / "broken.json").write_text('{"defaultAction": ')
    cases = {
        "typo": ('seccomp = "typo.json"\n', ["[exec].seccomp", "unknown syscall 'wirte'", "typo.json"]),
        "broken": ('seccomp = "broken.json"\n', ["[exec].seccomp", "not valid JSON", "broken.json"]),
        "badcap": ('cap_add = ["CAP_NET_RAWW"]\n', ["[exec].cap_add[0]", "CAP_NET_RAWW"]),
    }
    for name, (extra, _needles) in cases.items():
        supd.write_unit(name, container_unit([probe_layer], exec_extra=extra))
    for name, (_extra, needles) in cases.items():
        st = supd.wait_state(name, "error")
        assert f"{name}.toml" in st["error"], st["error"]
        for needle in needles:
            assert needle in st["error"], (name, st["error"])
    assert supd.status("good")["pid"] == good["pid"]
