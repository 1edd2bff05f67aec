"""Least privilege on the control socket, end to end: a real supd with a
socket_group and an admin_group (throwaway groups made here), and the real
supctl run as nobody holding one, both or neither of them.

A socket_group member reads and operates units but is refused exec (with or
without `-u 0`) and image import, with a 403 naming admin_group; an
admin_group member execs, as root in a plain unit: it is root-equivalent.
"""

from __future__ import annotations

import grp
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO, TIME_SCALE, Supd
from tests.e2e.test_supervision import SLEEPER

NOBODY = 65534


@dataclass(frozen=True)
class ThrowawayGroup:
    name: str
    gid: int


def _run_retrying(cmd: list[str]) -> None:
    """groupadd/groupdel fail at once while another process holds /etc/group's lock."""
    deadline = time.monotonic() + 30
    while True:
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode == 0:
            return
        if time.monotonic() > deadline or "lock" not in r.stderr:
            raise AssertionError(f"{cmd}: {r.stderr.strip()}")
        time.sleep(0.2)


@pytest.fixture
def groups(unique_name: str) -> Iterator[tuple[ThrowawayGroup, ThrowawayGroup]]:
    """Two new groups, `<unique>-op` and `<unique>-adm`, deleted at teardown."""
    if os.geteuid() != 0 or shutil.which("groupadd") is None:
        pytest.skip("needs root and groupadd")
    made: list[ThrowawayGroup] = []
    try:
        for suffix in ("op", "adm"):
            name = f"{unique_name}-{suffix}"
            _run_retrying(["groupadd", name])
            made.append(ThrowawayGroup(name, grp.getgrnam(name).gr_gid))
        yield made[0], made[1]
    finally:
        for g in made:
            _run_retrying(["groupdel", g.name])


@pytest.fixture
def open_runtime() -> Iterator[Path]:
    """A runtime folder nobody can reach (tmp_path's parents are 0700), so that
    only the socket file's own mode and supd's peer check decide. Requested
    before `supd`, so it is removed after supd has stopped."""
    path = Path(tempfile.mkdtemp(prefix="supdtest", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def ctl_as(supd: Supd, gids: list[int], *args: str) -> subprocess.CompletedProcess[str]:
    """The real supctl as uid/gid nobody with exactly these supplementary groups."""
    groups = ["--groups=" + ",".join(map(str, gids))] if gids else ["--clear-groups"]
    return subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", *groups, sys.executable, "-m", "supervisor.cli.main", *args],
        capture_output=True,
        text=True,
        env=supd.env(),
        cwd=REPO,
        timeout=60 * TIME_SCALE,
    )


def test_socket_group_operates_admin_group_execs(
    open_runtime: Path, supd: Supd, groups: tuple[ThrowawayGroup, ThrowawayGroup]
) -> None:
    op, adm = groups
    supd.runtime = open_runtime
    # nobody is listed in admin_group but not in socket_group: supd warns at start.
    _run_retrying(["gpasswd", "-a", "nobody", adm.name])
    supd.write_unit("web", SLEEPER)
    supd.start("--socket-group", op.name, "--admin-group", adm.name)
    supd.wait_state("web", "running")
    st = supd.socket.stat()
    assert oct(st.st_mode & 0o777) == "0o660" and st.st_gid == op.gid and st.st_uid == 0

    # socket_group: read and operate.
    r = ctl_as(supd, [op.gid], "list", "--json")
    assert r.returncode == 0, r.stderr
    assert [u["name"] for u in json.loads(r.stdout)] == ["web"]
    assert ctl_as(supd, [op.gid], "status", "web").returncode == 0
    r = ctl_as(supd, [op.gid], "stop", "web")
    assert r.returncode == 0, r.stderr
    assert supd.state_of("web") == "inactive"
    r = ctl_as(supd, [op.gid], "start", "web")
    assert r.returncode == 0, r.stderr
    supd.wait_state("web", "running")
    for verb in ("logs", "tree", "info"):
        assert ctl_as(supd, [op.gid], verb, *(["web"] if verb == "logs" else [])).returncode == 0, verb

    # ...but nothing root-equivalent: each refusal names the missing group.
    needs_admin = f'needs root or membership of admin_group "{adm.name}"'
    for args in (["exec", "web", "--", "/usr/bin/id", "-u"], ["exec", "-u", "0", "web", "--", "/bin/cat", "/etc/shadow"]):
        r = ctl_as(supd, [op.gid], *args)
        assert r.returncode == 1 and r.stdout == "", r
        assert r.stderr == f"supctl: exec {needs_admin}\n", r.stderr
    r = ctl_as(supd, [op.gid], "image", "import", str(open_runtime))
    assert r.returncode == 1 and r.stderr == f"supctl: image import {needs_admin}\n", r.stderr
    r = ctl_as(supd, [op.gid], "image", "rm", "/srv/images/app:1")
    assert r.returncode == 1 and r.stderr == f"supctl: image rm {needs_admin}\n", r.stderr
    r = ctl_as(supd, [op.gid], "image", "prune")
    assert r.returncode == 1 and r.stderr == f"supctl: image prune {needs_admin}\n", r.stderr
    r = ctl_as(supd, [op.gid], "image", "push", "web", "127.0.0.1:5000/web:1")
    assert r.returncode == 1 and r.stderr.endswith(f"supctl: image push {needs_admin}\n"), r.stderr
    log = supd.daemon_log()
    assert '"command": "exec"' in log or '"command":"exec"' in log, "a refused exec is logged as api_forbidden"

    # admin_group (with socket_group, to pass the file mode): exec, as root.
    r = ctl_as(supd, [op.gid, adm.gid], "exec", "-u", "0", "web", "--", "/usr/bin/id", "-u")
    assert r.returncode == 0 and r.stdout == "0\n", r

    # admin_group alone does not get past the socket's file mode (see
    # docs/configuration.md, admin_group), and neither does a stranger.
    for gids in ([adm.gid], []):
        r = ctl_as(supd, gids, "list")
        assert r.returncode == 1, (gids, r)
        assert f'Permission denied (expected root or a member of group "{op.name}", the socket\'s group)' in r.stderr, r
    assert "api_admins_cannot_connect" in log and '"nobody"' in log


def test_unknown_admin_group_stops_supd_with_a_clear_error(supd: Supd, unique_name: str) -> None:
    supd.start("--admin-group", f"{unique_name}-none", wait=False)
    assert supd.proc is not None
    rc = supd.proc.wait(timeout=60 * TIME_SCALE)
    assert rc == 1
    expected = f'supd: admin_group "{unique_name}-none": no such group in the group database; expected an existing group name or gid'
    assert expected in supd.daemon_log(), supd.daemon_log()[-2000:]
    assert not supd.socket.exists()
