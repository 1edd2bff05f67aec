"""prepare/mount/cleanup of a unit's rootfs on real overlays: persistent vs
ephemeral uppers, 120 layers, bad layer paths, leftovers, command lookup."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from supervisor import procfs
from supervisor.rootfs import overlay
from supervisor.rootfs.errors import RootfsError
from supervisor.rootfs.store import LayerStore
from supervisor.units.model import BindSpec, ExecSpec, RootfsSpec, Unit
from tests.conftest import requires_root

pytestmark = [requires_root, pytest.mark.root]


def make_unit(name: str, tmp_path: Path, layers: list[Path], writable: str = "persistent", binds: tuple[BindSpec, ...] = ()) -> Unit:
    return Unit(
        name=name,
        file=tmp_path / "units" / f"{name}.toml",
        exec=ExecSpec(command=("/bin/app",)),
        rootfs=RootfsSpec(layers=tuple(layers), writable=writable, binds=binds),  # type: ignore[arg-type]
    )


def make_layer(path: Path, files: dict[str, str]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        f = path / name
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(content)
    return path


def prepare(unit: Unit, tmp_path: Path) -> overlay.RootfsPlan:
    state = tmp_path / "state"
    return overlay.prepare(unit, state, tmp_path / "run", LayerStore(state))


def start_stop(unit: Unit, tmp_path: Path, write: dict[str, str] | None = None) -> list[str]:
    """One unit run: prepare, mount, list /data, write files, unmount, clean up."""
    plan = prepare(unit, tmp_path)
    overlay.mount(plan)
    try:
        root = Path(plan.target)
        seen = sorted(os.listdir(root / "data"))
        for name, content in (write or {}).items():
            (root / "data" / name).write_text(content)
    finally:
        overlay.unmount(plan.target)
    assert unit.rootfs is not None
    overlay.cleanup(unit.name, unit.rootfs.writable, tmp_path / "state", tmp_path / "run")
    return seen


def test_persistent_upper_keeps_files_across_runs(tmp_path: Path, unique_name: str, no_leaks: None) -> None:
    base = make_layer(tmp_path / "base", {"data/from-base": "b"})
    unit = make_unit(unique_name, tmp_path, [base], "persistent")
    assert start_stop(unit, tmp_path, {"mine": "1"}) == ["from-base"]
    assert start_stop(unit, tmp_path) == ["from-base", "mine"]
    assert (tmp_path / "state" / "units" / unique_name / "upper" / "data" / "mine").read_text() == "1"
    assert not (tmp_path / "run" / "units" / unique_name).exists()
    assert not (base / "data" / "mine").exists()


def test_ephemeral_upper_starts_fresh_each_run(tmp_path: Path, unique_name: str, no_leaks: None) -> None:
    base = make_layer(tmp_path / "base", {"data/from-base": "b"})
    unit = make_unit(unique_name, tmp_path, [base], "ephemeral")
    assert start_stop(unit, tmp_path, {"mine": "1"}) == ["from-base"]
    assert start_stop(unit, tmp_path) == ["from-base"]
    assert not (tmp_path / "state" / "units" / unique_name).exists()


def test_ephemeral_upper_is_wiped_at_prepare_even_without_cleanup(tmp_path: Path, unique_name: str) -> None:
    base = make_layer(tmp_path / "base", {"data/x": "x"})
    unit = make_unit(unique_name, tmp_path, [base], "ephemeral")
    plan = prepare(unit, tmp_path)
    assert plan.upperdir is not None
    (Path(plan.upperdir) / "crash-leftover").write_text("x")
    plan = prepare(unit, tmp_path)  # e.g. supd died before cleanup
    assert os.listdir(plan.upperdir) == []  # type: ignore[arg-type]


def test_readonly_single_layer_mounts_read_only(tmp_path: Path, unique_name: str, no_leaks: None) -> None:
    base = make_layer(tmp_path / "base", {"data/x": "x"})
    plan = prepare(make_unit(unique_name, tmp_path, [base], "readonly"), tmp_path)
    # a scratch upper, so pid 1 can create mount points before the root goes read-only
    assert plan.upperdir is not None and plan.readonly and len(plan.lowerdirs) == 1
    overlay.mount(plan)
    try:
        assert (Path(plan.target) / "data" / "x").read_text() == "x"
        with pytest.raises(OSError) as info:
            (Path(plan.target) / "data" / "y").write_text("y")
        assert info.value.errno == errno.EROFS
    finally:
        overlay.unmount(plan.target)
    overlay.cleanup(unique_name, "readonly", tmp_path / "state", tmp_path / "run")
    assert not Path(plan.upperdir).exists()  # the scratch upper goes with the unit


def test_120_layers_mount_through_short_names(tmp_path: Path, unique_name: str, no_leaks: None) -> None:
    # long paths, so the plain option string could never fit in a page
    deep = tmp_path / ("d" * 60)
    layers = [make_layer(deep / f"layer-{i:03d}-{'x' * 40}", {f"data/file-{i:03d}": str(i), "data/top": str(i)}) for i in range(120)]
    plan = prepare(make_unit(unique_name, tmp_path, layers, "ephemeral"), tmp_path)
    assert plan.chdir == str(tmp_path / "state" / "layers" / "l")
    assert all("/" not in d for d in plan.lowerdirs)
    assert len(plan.mount_data()) < 4096 < len(":".join(str(p) for p in layers))
    overlay.mount(plan)
    try:
        root = Path(plan.target)
        assert len([n for n in os.listdir(root / "data") if n.startswith("file-")]) == 120
        assert (root / "data" / "top").read_text() == "119"  # the last listed layer is on top
    finally:
        overlay.unmount(plan.target)
    overlay.cleanup(unique_name, "ephemeral", tmp_path / "state", tmp_path / "run")
    # a second prepare reuses the same links
    again = prepare(make_unit(unique_name, tmp_path, layers, "ephemeral"), tmp_path)
    assert again.lowerdirs == plan.lowerdirs
    overlay.cleanup(unique_name, "ephemeral", tmp_path / "state", tmp_path / "run")


def test_layer_path_with_a_colon_goes_through_a_short_name(tmp_path: Path, unique_name: str, no_leaks: None) -> None:
    odd = make_layer(tmp_path / "odd:layer,name", {"data/odd": "1"})
    plan = prepare(make_unit(unique_name, tmp_path, [odd], "ephemeral"), tmp_path)
    assert plan.chdir is not None
    overlay.mount(plan)
    try:
        assert (Path(plan.target) / "data" / "odd").read_text() == "1"
    finally:
        overlay.unmount(plan.target)
    overlay.cleanup(unique_name, "ephemeral", tmp_path / "state", tmp_path / "run")


def test_missing_layer_is_a_rootfs_error(tmp_path: Path) -> None:
    good = make_layer(tmp_path / "good", {})
    unit = make_unit("web", tmp_path, [good, tmp_path / "nope"])
    with pytest.raises(RootfsError) as info:
        prepare(unit, tmp_path)
    assert str(info.value) == f'{unit.file}: [rootfs].layers[1]: layer "{tmp_path / "nope"}" does not exist'
    assert not (tmp_path / "run" / "units" / "web").exists()


def test_layer_that_is_a_file_is_a_rootfs_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(RootfsError, match=r'\[rootfs\].layers\[0\]: layer ".*file" is not a directory'):
        prepare(make_unit("web", tmp_path, [tmp_path / "file"]), tmp_path)


def test_layer_that_is_a_symlink_loop_is_a_rootfs_error(tmp_path: Path) -> None:
    os.symlink(tmp_path / "b", tmp_path / "a")
    os.symlink(tmp_path / "a", tmp_path / "b")
    with pytest.raises(RootfsError, match=r'\[rootfs\].layers\[0\]: layer ".*/a" is a symlink loop'):
        prepare(make_unit("web", tmp_path, [tmp_path / "a"]), tmp_path)


def test_symlinked_layer_is_resolved(tmp_path: Path) -> None:
    real = make_layer(tmp_path / "real", {})
    os.symlink(real, tmp_path / "link")
    plan = prepare(make_unit("web", tmp_path, [tmp_path / "link"]), tmp_path)
    assert plan.lowerdirs == (str(real),)


def test_missing_bind_source_is_a_rootfs_error(tmp_path: Path) -> None:
    base = make_layer(tmp_path / "base", {})
    unit = make_unit("web", tmp_path, [base], binds=(BindSpec(source=tmp_path / "www", target="/www"),))
    with pytest.raises(RootfsError, match=r'\[rootfs\].binds\[0\].source: bind source ".*/www" does not exist'):
        prepare(unit, tmp_path)


def test_cleanup_unmounts_whatever_is_left_on_the_mount_point(tmp_path: Path, unique_name: str, no_leaks: None) -> None:
    base = make_layer(tmp_path / "base", {})
    plan = prepare(make_unit(unique_name, tmp_path, [base], "persistent"), tmp_path)
    subprocess.run(["mount", "-t", "tmpfs", unique_name, plan.target], check=True)
    assert procfs.is_mount_point(Path(plan.target))
    overlay.cleanup(unique_name, "persistent", tmp_path / "state", tmp_path / "run")
    assert not os.path.exists(plan.target)
    assert (tmp_path / "state" / "units" / unique_name / "upper").is_dir()


def test_remove_leftovers_cleans_only_units_no_longer_run(tmp_path: Path, no_leaks: None) -> None:
    base = make_layer(tmp_path / "base", {})
    state, run = tmp_path / "state", tmp_path / "run"
    for name, writable in (("gone-eph", "ephemeral"), ("gone-per", "persistent"), ("kept", "ephemeral")):
        overlay.prepare(make_unit(name, tmp_path, [base], writable), state, run, LayerStore(state))
    (run / "units" / "Not_A_Unit").mkdir()
    cleaned = overlay.remove_leftovers(state, run, keep={"kept"})
    assert cleaned == ["gone-eph", "gone-per"]
    assert sorted(os.listdir(run / "units")) == ["Not_A_Unit", "kept"]
    assert sorted(os.listdir(state / "units")) == ["gone-per", "kept"]
    assert (state / "units" / "gone-per" / "upper").is_dir()
    assert (state / "units" / "kept" / "upper").is_dir()


def test_readonly_scratch_never_touches_a_kept_persistent_upper(tmp_path: Path, unique_name: str, no_leaks: None) -> None:
    base = make_layer(tmp_path / "base", {"data/x": "x"})
    state, run = tmp_path / "state", tmp_path / "run"
    plan = prepare(make_unit(unique_name, tmp_path, [base], "persistent"), tmp_path)
    (Path(plan.upperdir) / "kept").write_text("user data")  # type: ignore[arg-type]
    # the same unit switched to readonly: a scratch upper of its own
    ro = prepare(make_unit(unique_name, tmp_path, [base], "readonly"), tmp_path)
    assert ro.upperdir is not None and ro.upperdir != plan.upperdir
    assert os.listdir(ro.upperdir) == []
    overlay.mount(ro)
    try:
        assert not (Path(ro.target) / "kept").exists()  # not exposed either
    finally:
        overlay.unmount(ro.target)
    overlay.cleanup(unique_name, "readonly", state, run)
    assert not Path(ro.upperdir).exists()
    assert (Path(plan.upperdir) / "kept").read_text() == "user data"  # type: ignore[arg-type]
    # a crashed readonly unit's scratch is a leftover; the persistent upper is not
    prepare(make_unit(unique_name, tmp_path, [base], "readonly"), tmp_path)
    assert overlay.remove_leftovers(state, run, keep=set()) == [unique_name]
    assert sorted(os.listdir(state / "units" / unique_name)) == ["upper", "work"]
    assert (Path(plan.upperdir) / "kept").read_text() == "user data"  # type: ignore[arg-type]


def test_command_lookup_honours_whiteouts_opaque_dirs_and_symlinks(tmp_path: Path) -> None:
    low = make_layer(tmp_path / "low", {"bin/busybox": "", "opt/bin/tool": "", "usr/bin/gone": "", "usr/bin/env": ""})
    for f in ("bin/busybox", "opt/bin/tool", "usr/bin/gone", "usr/bin/env"):
        (low / f).chmod(0o755)
    os.symlink("busybox", low / "bin" / "sh")
    os.symlink("/usr/bin/env", low / "bin" / "env-abs")
    os.symlink("../usr/../bin/busybox", low / "bin" / "dotdot")
    high = make_layer(tmp_path / "high", {})
    (high / "usr" / "bin").mkdir(parents=True)
    os.mknod(high / "usr" / "bin" / "gone", 0o020000, os.makedev(0, 0))  # whiteout
    (high / "opt" / "bin").mkdir(parents=True)
    os.setxattr(high / "opt" / "bin", "trusted.overlay.opaque", b"y")
    plan = prepare(make_unit("web", tmp_path, [low, high], "readonly"), tmp_path)
    assert overlay.command_in_rootfs(plan, "/bin/sh")
    assert overlay.command_in_rootfs(plan, "sh")  # through PATH
    assert overlay.command_in_rootfs(plan, "env", "/nowhere:/usr/bin")
    assert overlay.command_in_rootfs(plan, "/bin/env-abs")
    assert overlay.command_in_rootfs(plan, "/bin/dotdot")
    assert not overlay.command_in_rootfs(plan, "/usr/bin/gone")  # whited out above
    assert not overlay.command_in_rootfs(plan, "/opt/bin/tool")  # hidden by the opaque dir
    assert not overlay.command_in_rootfs(plan, "nothere")
    assert not overlay.command_in_rootfs(plan, "/bin")  # a directory
