"""`[rootfs].userns = "auto"` through a real supd and supctl: each unit its own
ids from the subuid/subgid files (test copies, never /etc's), files owned by
them on the host, ranges freed at stop, kept by re-adopted units, and clear
errors when the files say nothing for supd or are used up."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.e2e.conftest import Supd, wait_for
from tests.e2e.test_containers import container_unit, sh, start_unit
from tests.e2e.test_containers_teardown import mounts_anywhere
from tests.helpers.busybox import make_busybox_rootfs

START = 3_200_000  # far from any real user's ids
BLOCK = 65536
USERNS = 'userns = "auto"\n'


@pytest.fixture(scope="module")
def busybox_layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_busybox_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs")


def use_subids(supd: Supd, subuid: str, subgid: str | None = None, live_restore: bool = False) -> tuple[Path, Path]:
    uid_file, gid_file = supd.root / "subuid", supd.root / "subgid"
    uid_file.write_text(subuid)
    gid_file.write_text(subuid if subgid is None else subgid)
    supd.extra_args = [
        "--live-restore" if live_restore else "--no-live-restore",
        "--subuid-file", str(uid_file), "--subgid-file", str(gid_file),
    ]  # fmt: skip
    return uid_file, gid_file


def uid_map(pid: int) -> list[str]:
    with open(f"/proc/{pid}/uid_map") as f:
        return f.read().split()


def recorded_userns(supd: Supd, unit: str) -> dict[str, int] | None:
    record = json.loads((supd.state / "state" / f"{unit}.json").read_text())
    return record["unit"]["extra"].get("userns")


def test_units_get_disjoint_ranges_own_their_files_and_free_them_at_stop(supd: Supd, busybox_layer: Path) -> None:
    use_subids(supd, f"alice:100000:65536\nsupd:{START}:{2 * BLOCK}\n", f"supd:{START + 10 * BLOCK}:{2 * BLOCK}\n")
    command = ("/bin/sh", "-c", "touch /made; trap 'exit 0' TERM; sleep 1000 & wait")
    a = start_unit(supd, "a", container_unit([busybox_layer], command, writable="persistent", extra_rootfs=USERNS))
    b = start_unit(supd, "b", container_unit([busybox_layer], command, extra_rootfs=USERNS))
    assert uid_map(int(a["pid"])) == ["0", str(START), str(BLOCK)]  # type: ignore[arg-type]
    assert uid_map(int(b["pid"])) == ["0", str(START + BLOCK), str(BLOCK)]  # type: ignore[arg-type]
    assert recorded_userns(supd, "a") == {"uid": START, "gid": START + 10 * BLOCK, "count": BLOCK}
    assert supd.status("a")["userns"] == {"uid": START, "gid": START + 10 * BLOCK, "count": BLOCK}
    # what container root writes is the range's first id on the host; the layer is untouched
    made = wait_for(lambda: (p := supd.state / "units" / "a" / "upper" / "made").exists() and p, what="/made")
    assert (made.stat().st_uid, made.stat().st_gid) == (START, START + 10 * BLOCK)
    assert (busybox_layer / "bin" / "busybox").stat().st_uid == 0
    # supctl exec runs in the unit's user namespace too
    assert sh(supd, "a", "id -u; cat /proc/self/uid_map").split() == ["0", "0", str(START), str(BLOCK)]
    # both blocks in use: a third unit fails, saying why and where
    supd.write_unit("c", container_unit([busybox_layer], extra_rootfs=USERNS))
    st = supd.wait_state("c", "failed", "running", timeout=30)
    assert st["state"] == "failed"
    assert "c.toml: [rootfs].userns: " in st["error"] and f"{supd.root / 'subuid'}: all 2 blocks" in st["error"], st["error"]
    assert "(by a, b)" in st["error"]
    # a stop frees its block: c gets it
    assert supd.ctl("stop", "a").returncode == 0
    supd.wait_state("a", "inactive")
    assert "userns" not in supd.status("a")
    assert supd.ctl("start", "c").returncode == 0
    c = supd.wait_state("c", "running", timeout=30)
    assert uid_map(int(c["pid"])) == ["0", str(START), str(BLOCK)]
    # c gone again: a gets its old block back (its upper's owner says which), files as they were
    assert supd.ctl("stop", "c").returncode == 0
    supd.wait_state("c", "inactive")
    assert supd.ctl("start", "a").returncode == 0
    a = supd.wait_state("a", "running", timeout=30)
    assert uid_map(int(a["pid"])) == ["0", str(START), str(BLOCK)]  # type: ignore[arg-type]
    assert sh(supd, "a", "stat -c %u:%g /made").strip() == "0:0"
    supd.stop()
    assert [m for m in mounts_anywhere(supd.root)] == []


def test_a_persistent_upper_follows_its_unit_to_another_block(supd: Supd, busybox_layer: Path) -> None:
    use_subids(supd, f"supd:{START}:{2 * BLOCK}\n")
    command = ("/bin/sh", "-c", "mkdir -p /data; touch /data/f; chown 1000:1000 /data/f; trap 'exit 0' TERM; sleep 1000 & wait")
    start_unit(supd, "a", container_unit([busybox_layer], command, writable="persistent", extra_rootfs=USERNS))
    f = supd.state / "units" / "a" / "upper" / "data" / "f"
    wait_for(lambda: f.exists() and f.stat().st_uid == START + 1000, what="/data/f owned by 1000")
    assert supd.ctl("stop", "a").returncode == 0
    supd.wait_state("a", "inactive")
    start_unit(supd, "other", container_unit([busybox_layer], extra_rootfs=USERNS))  # takes a's old block
    assert supd.ctl("start", "a").returncode == 0
    st = supd.wait_state("a", "running", timeout=30)
    assert uid_map(int(st["pid"])) == ["0", str(START + BLOCK), str(BLOCK)]
    assert (f.stat().st_uid, f.stat().st_gid) == (START + BLOCK + 1000, START + BLOCK + 1000)
    assert sh(supd, "a", "stat -c %u:%g /data/f /").split() == ["1000:1000", "0:0"]


def test_no_supd_entry_says_what_to_add(supd: Supd, busybox_layer: Path) -> None:
    use_subids(supd, "alice:100000:65536\n")
    supd.write_unit("u", container_unit([busybox_layer], extra_rootfs=USERNS))
    supd.start()
    st = supd.wait_state("u", "failed", "running", timeout=30)
    assert st["state"] == "failed"
    assert f"u.toml: [rootfs].userns: {supd.root / 'subuid'} has no \"supd\" entry: add a line like \"supd:165536:" in st["error"], st["error"]
    assert "/etc/subuid and /etc/subgid" in st["error"]
    assert not (supd.runtime / "units" / "u").exists()


def test_a_garbage_line_names_the_file_and_line(supd: Supd, busybox_layer: Path) -> None:
    use_subids(supd, f"supd:{START}:{BLOCK}\nsupd:lots\n")
    supd.write_unit("u", container_unit([busybox_layer], extra_rootfs=USERNS))
    supd.start()
    st = supd.wait_state("u", "failed", "running", timeout=30)
    assert f"{supd.root / 'subuid'}:2: 'supd:lots': expected \"owner:start:count\"" in st["error"], st["error"]


def test_a_readopted_unit_keeps_its_range(supd: Supd, busybox_layer: Path) -> None:
    use_subids(supd, f"supd:{START}:{2 * BLOCK}\n", live_restore=True)
    first = start_unit(supd, "first", container_unit([busybox_layer], extra_rootfs=USERNS))
    assert supd.stop(signal.SIGTERM) == 0  # live restore: the unit stays
    os.kill(int(first["pid"]), 0)  # type: ignore[arg-type]
    supd.start()
    st = supd.wait_state("first", "running")
    assert st["pid"] == first["pid"]
    # the new supd claimed first's block before starting anything: second gets the other
    second = start_unit(supd, "second", container_unit([busybox_layer], extra_rootfs=USERNS))
    assert uid_map(int(second["pid"])) == ["0", str(START + BLOCK), str(BLOCK)]  # type: ignore[arg-type]
    assert recorded_userns(supd, "first") == {"uid": START, "gid": START, "count": BLOCK}
    supd.stop(signal.SIGKILL)
    supd.extra_args = [a if a != "--live-restore" else "--no-live-restore" for a in supd.extra_args]
    supd.start()
    supd.stop(signal.SIGTERM)


def test_a_readonly_root_in_a_userns_gets_scratch_tmpfs_container_root_owns(supd: Supd, busybox_layer: Path) -> None:
    use_subids(supd, f"supd:{START}:{2 * BLOCK}\n")
    command = ("/bin/sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait")
    unit = container_unit([busybox_layer], command, writable="readonly", extra_rootfs=USERNS + 'tmpfs = ["/scratch:mode=755"]\n')
    start_unit(supd, "ro", unit)
    assert sh(supd, "ro", "touch /run/a /tmp/a /var/tmp/a /scratch/a && stat -c %u:%g /run /scratch") == "0:0\n0:0\n"
    assert supd.ctl("stop", "ro").returncode == 0
