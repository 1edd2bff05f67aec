"""The shim's in-root resolver (openat2 RESOLVE_IN_ROOT) on the real kernel,
on directories the test makes: no root and no mounts needed. The mounting
side is tested as root in tests/integration/test_runtime_paths.py."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.test_runtime_shim_identity import load_shim

shim = load_shim()


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory beside the root that links in the root point at."""
    d = tmp_path / "outside"
    d.mkdir()
    (d / "keep").write_text("host\n")
    return d


@pytest.fixture
def root(tmp_path: Path, outside: Path) -> Iterator[Path]:
    r = tmp_path / "root"
    r.mkdir()
    yield r
    assert sorted(os.listdir(outside)) == ["keep"], "something was created outside the root"


def made(root: Path, path: str, directory: bool = True) -> os.stat_result:
    rootdir = shim.RootDir(str(root))
    try:
        fd = rootdir.make(path, directory, f"bind x on {path}")
        try:
            return os.fstat(fd)
        finally:
            os.close(fd)
    finally:
        rootdir.close()


def refused(root: Path, path: str, directory: bool = True) -> str:
    with pytest.raises(shim.ShimError) as caught:
        made(root, path, directory)
    return str(caught.value)


def test_missing_components_are_created_inside(root: Path) -> None:
    st = made(root, "/a/b/c")
    assert stat.S_ISDIR(st.st_mode)
    assert (root / "a" / "b" / "c").is_dir()
    st = made(root, "/a/b/file.conf", directory=False)
    assert stat.S_ISREG(st.st_mode) and (root / "a" / "b" / "file.conf").is_file()


def test_absolute_link_means_the_path_inside(root: Path, outside: Path) -> None:
    (root / "data").mkdir()
    os.symlink("/data", root / "mnt")
    made(root, "/mnt/sub/app.conf", directory=False)
    assert (root / "data" / "sub" / "app.conf").is_file()


def test_link_to_a_host_dir_is_dangling_inside(root: Path, outside: Path) -> None:
    os.symlink(str(outside), root / "mnt")
    assert refused(root, "/mnt/sub") == f"bind x on /mnt/sub: /mnt is a dangling symbolic link to {outside}"


def test_relative_link_and_dotdot_stop_at_the_root(root: Path, outside: Path) -> None:
    (root / "outside").mkdir()  # the same name, inside the root
    os.symlink("../../../../outside", root / "up")
    made(root, "/up/x")
    assert (root / "outside" / "x").is_dir()
    made(root, "/../../outside/y")
    assert (root / "outside" / "y").is_dir()


def test_existing_link_is_followed_inside(root: Path) -> None:
    (root / "etc" / "nginx" / "sites-available").mkdir(parents=True)
    (root / "etc" / "nginx" / "sites-available" / "default").write_text("x")
    (root / "etc" / "nginx" / "sites-enabled").mkdir()
    os.symlink("/etc/nginx/sites-available/default", root / "etc" / "nginx" / "sites-enabled" / "default")
    st = made(root, "/etc/nginx/sites-enabled/default", directory=False)
    assert st.st_ino == os.stat(root / "etc" / "nginx" / "sites-available" / "default").st_ino


def test_dangling_last_component_is_not_followed(root: Path) -> None:
    os.symlink("/nowhere/app.conf", root / "app.conf")
    assert refused(root, "/app.conf", directory=False) == \
        "bind x on /app.conf: /app.conf is a dangling symbolic link to /nowhere/app.conf"
    assert not (root / "nowhere").exists()


def test_loop_names_the_path(root: Path) -> None:
    os.symlink("/loop", root / "loop")
    assert refused(root, "/loop/x") == "bind x on /loop/x: /loop/x: Too many levels of symbolic links"


def test_the_root_itself_is_refused(root: Path) -> None:
    os.symlink("/", root / "mnt")
    assert refused(root, "/mnt") == "bind x on /mnt: /mnt is the container's root"
    assert refused(root, "/") == "bind x on /: / is the container's root"


def test_wrong_kind_is_refused(root: Path) -> None:
    (root / "file").write_text("")
    assert refused(root, "/file") == "bind x on /file: /file: Not a directory"
    assert refused(root, "/file/below") == "bind x on /file/below: /file/below: Not a directory"


def test_system_dirs_must_be_directories(root: Path) -> None:
    os.symlink("/", root / "dev")
    (root / "proc").write_text("")
    rootdir = shim.RootDir(str(root))
    try:
        with pytest.raises(shim.ShimError, match=r"^mount tmpfs on /dev: /dev is a symbolic link to /; the image must have a directory there$"):
            rootdir.system_dir("/dev", "mount tmpfs on /dev")
        with pytest.raises(shim.ShimError, match=r"^mount proc on /proc: /proc is not a directory$"):
            rootdir.system_dir("/proc", "mount proc on /proc")
        fd = rootdir.system_dir("/sys", "mount sysfs on /sys")  # missing: created
        os.close(fd)
        assert (root / "sys").is_dir()
    finally:
        rootdir.close()


def test_kernel_without_openat2_is_refused(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the path ENOSYS takes; this kernel has openat2, so an unknown number stands in
    monkeypatch.setattr(shim, "SYS_OPENAT2", {})
    with pytest.raises(shim.ShimError, match=r"containers need openat2\(2\) \(Linux 5.6 or later\)"):
        shim.RootDir(str(root))


def test_passwd_behind_a_loop_names_the_file(root: Path) -> None:
    os.symlink("passwd", root / "passwd")
    with pytest.raises(shim.ShimError, match=r"^read .*/passwd: Too many levels of symbolic links$"):
        shim.read_db(str(root / "passwd"))
