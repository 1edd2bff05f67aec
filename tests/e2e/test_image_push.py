"""`supctl image push` against a real registry (Debian's docker-registry):
a unit built from layer folders and a stored image are pushed, pulled back
with `supctl image pull` and run from their image config alone."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Supd, wait_for
from tests.e2e.test_containers import sh, start_unit, toml_list
from tests.helpers.busybox import make_busybox_rootfs
from tests.helpers.oci import BuiltImage, build_busybox_image
from tests.helpers.registry import Registry, auth_json

SCRIPT = "trap 'exit 0' TERM INT; echo started; sleep 1000 & wait"


@pytest.fixture(scope="module")
def layers(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """busybox; /data/{keep,gone} and /opt/x/a; then a whiteout of /data/gone
    and /opt/x made opaque with /opt/x/b (overlayfs' own forms, as a layer
    folder holds them)."""
    base = tmp_path_factory.mktemp("push-layers")
    busybox = make_busybox_rootfs(base / "busybox")
    mid = base / "mid"
    (mid / "data").mkdir(parents=True)
    (mid / "data" / "keep").write_text("keep\n")
    (mid / "data" / "gone").write_text("gone\n")
    (mid / "opt" / "x").mkdir(parents=True)
    (mid / "opt" / "x" / "a").write_text("a\n")
    (mid / "srv").mkdir()
    top = base / "top"
    (top / "data").mkdir(parents=True)
    os.mknod(top / "data" / "gone", 0o600 | 0o020000, os.makedev(0, 0))
    (top / "opt" / "x").mkdir(parents=True)
    os.setxattr(top / "opt" / "x", "trusted.overlay.opaque", b"y")
    (top / "opt" / "x" / "b").write_text("b\n")
    return busybox, mid, top


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    reg = Registry(tmp_path_factory.mktemp("push-registry")).start()
    try:
        yield reg
    finally:
        reg.stop()


def source_unit(layers: tuple[Path, ...]) -> str:
    return (
        "[exec]\n"
        'entrypoint = ["/bin/sh", "-c"]\n'
        f"command = {toml_list([SCRIPT])}\n"
        'environment = { GREETING = "hello world", TZ = "UTC" }\n'
        'user = "app"\n'
        'working_directory = "/srv"\n'
        f"[rootfs]\nlayers = {toml_list(str(p) for p in layers)}\n"
        'writable = "ephemeral"\n'
        '[stop]\nsignal = "SIGINT"\ntimeout = "5s"\n'
        '[health]\ncommand = ["/bin/true"]\ninterval = "1s"\ntimeout = "3s"\nretries = 2\nstart_period = "2s"\n'
    )


def image_unit(image: str) -> str:
    return f'[rootfs]\nimage = {json.dumps(image)}\nwritable = "ephemeral"\npull = "never"\n[stop]\ntimeout = "5s"\n'


def pushed(supd: Supd, *args: str) -> tuple[int, str, str]:
    r = supd.ctl("image", "push", *args, timeout=120)
    return r.returncode, r.stdout, r.stderr


def pid_environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(entry.decode().split("=", 1) for entry in raw if entry)


def uid_of(pid: int) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return line.split()[1]
    raise AssertionError("no Uid line")


def test_push_a_unit_pull_it_back_and_run_it_from_its_config(
    supd: Supd, layers: tuple[Path, Path, Path], registry: Registry
) -> None:
    src = start_unit(supd, "src", source_unit(layers))
    dest = f"{registry.host}/supd/pushed:v1"
    rc, out, err = pushed(supd, "src", dest)
    assert rc == 0, err
    assert err == f"pushing src to {dest}\n"
    assert out.split()[0] == dest and out.split()[1].startswith("sha256:"), out
    digest = out.split()[1]
    # content-addressed: the same layers again, and under another tag, are the same image
    assert "push_layer_cached" not in supd.daemon_log()
    rc, out, err = pushed(supd, "src", dest, "--json")
    assert rc == 0, err
    assert json.loads(out) == {"reference": dest, "digest": digest}
    assert supd.daemon_log().count("push_layer_cached") == 3  # the unchanged folders were not tarred again
    rc, out, err = pushed(supd, "src", f"{registry.host}/supd/pushed:again")
    assert rc == 0 and out.split()[1] == digest, (out, err)
    assert [p.name for p in (supd.state / "pushes").iterdir()] == ["cache"]  # no scratch layout left

    r = supd.ctl("image", "pull", dest, timeout=120)
    assert r.returncode == 0 and r.stdout.split() == [f"docker://{dest}", digest], r.stderr
    r = supd.ctl("image", "inspect", dest, "--json")
    assert r.returncode == 0, r.stderr
    config = json.loads(r.stdout)["config"]
    assert config["Entrypoint"] == ["/bin/sh", "-c"] and config["Cmd"] == [SCRIPT], config
    assert config["User"] == "app" and config["WorkingDir"] == "/srv" and config["StopSignal"] == "SIGINT", config
    assert {"GREETING=hello world", "TZ=UTC"} <= set(config["Env"]), config
    assert config["Healthcheck"] == {
        "Test": ["CMD", "/bin/true"], "Interval": 10**9, "Timeout": 3 * 10**9, "StartPeriod": 2 * 10**9, "Retries": 2,
    }  # fmt: skip

    copy = start_unit(supd, "copy", image_unit(dest))  # no [exec], no [stop].signal, no [health]
    assert copy["command"] == src["command"] == ["/bin/sh", "-c", SCRIPT]
    src_pid, copy_pid = src["pid"], copy["pid"]
    assert isinstance(src_pid, int) and isinstance(copy_pid, int)
    src_env, copy_env = pid_environ(src_pid), pid_environ(copy_pid)
    for own in ("HOSTNAME", "SUPD_UNIT"):  # supd's per unit
        src_env.pop(own, None), copy_env.pop(own, None)
    assert copy_env == src_env and copy_env["GREETING"] == "hello world", (copy_env, src_env)
    assert uid_of(copy_pid) == uid_of(src_pid) == "1000"
    assert sh(supd, "copy", "readlink /proc/1/cwd") == sh(supd, "src", "readlink /proc/1/cwd") == "/srv\n"
    # the whiteout and the opaque directory of the top layer folder came through
    listing = "ls /data /opt/x; cat /data/keep /opt/x/b"
    assert sh(supd, "copy", listing) == sh(supd, "src", listing) == "/data:\nkeep\n\n/opt/x:\nb\nkeep\nb\n"
    # the health check came from the image's config
    wait_for(lambda: supd.status("copy")["health"] == "healthy", timeout=20, what="copy healthy")
    # and the stop signal: SIGINT, which the script traps (an exit 0, not a SIGKILL)
    r = supd.ctl("stop", "copy")
    assert r.returncode == 0, r.stderr
    st = supd.wait_state("copy", "inactive", "exited", "failed")
    stopped = [e for e in supd.events("copy") if e.get("event") in ("inactive", "exited")]
    assert stopped and "signal 9" not in str(stopped[-1]), (st, stopped)


def test_push_a_stored_image(supd: Supd, registry: Registry, tmp_path: Path) -> None:
    built: BuiltImage = build_busybox_image(tmp_path / "layout", "v1")
    supd.start()
    r = supd.ctl("image", "import", built.ref)
    assert r.returncode == 0, r.stderr
    dest = f"{registry.host}/supd/stored:v1"
    rc, out, err = pushed(supd, built.ref, dest)
    assert rc == 0, err
    digest = out.split()[1]
    rc, out, err = pushed(supd, built.ref, dest)
    assert rc == 0 and out.split()[1] == digest, (out, err)
    r = supd.ctl("image", "pull", dest, timeout=120)
    assert r.returncode == 0, r.stderr
    supd.write_unit(
        "stored",
        image_unit(dest) + f"[exec]\ncommand = {toml_list(['/bin/sh', '-c', SCRIPT])}\n",
    )
    assert supd.wait_state("stored", "running", "failed", timeout=30)["state"] == "running"
    # the image's whiteouts and opaque dir, read back from the store's overlay form
    assert sh(supd, "stored", "cat /opt/old/c /etc/motd; ls /opt/old; ls /www; test ! -e /www/index.html && echo ok") == (
        "c\nlayered\nc\nok\n"
    )
    # a unit on an image: the image's layers, with the unit's command over the image's config
    unit_dest = f"{registry.host}/supd/on-image:v1"
    rc, out, err = pushed(supd, "stored", unit_dest)
    assert rc == 0 and out.split()[1] != digest, (out, err)
    r = supd.ctl("image", "pull", unit_dest, timeout=120)
    assert r.returncode == 0, r.stderr
    r = supd.ctl("image", "inspect", unit_dest, "--json")
    assert r.returncode == 0, r.stderr
    on_image = json.loads(r.stdout)
    assert on_image["config"]["Cmd"] == ["/bin/sh", "-c", SCRIPT] and len(on_image["layers"]) == 3, on_image


def test_bad_destination_unknown_source_and_auth_errors(
    supd: Supd, layers: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    secure = Registry(tmp_path / "secure", tls=True, auth=True).start()
    try:
        config = tmp_path / "supd.toml"
        config.write_text(f'certs_dir = "{secure.certs_dir()}"\n')
        (supd.state / "pushes" / "push-killed" / "layout").mkdir(parents=True)  # a supd killed mid-push left it
        supd.start("--config", str(config))
        supd.write_unit("src", source_unit(layers).replace("[exec]\n", "[unit]\nenabled = false\n[exec]\n"))
        supd.wait_state("src", "inactive")
        rc, _, err = pushed(supd, "src", "127.0.0.1:1/Bad/Name:v1")
        assert rc == 1 and "Bad/Name" in err and "lowercase" in err, err
        rc, _, err = pushed(supd, "src", f"{secure.host}/x@sha256:" + "0" * 64)
        assert rc == 1 and "not a digest" in err, err
        rc, _, err = pushed(supd, "nosuch", f"{secure.host}/x:v1")
        assert rc == 1 and "nosuch" in err and "no such unit" in err, err
        dest = f"{secure.host}/private/pushed:v1"
        rc, _, err = pushed(supd, "src", dest)
        assert rc == 1 and dest in err and "authentication required" in err, err
        right = auth_json(tmp_path / "right.json", secure.host)
        rc, out, err = pushed(supd, "src", dest, "--authfile", str(right))
        assert rc == 0 and out.split()[0] == dest, err
        assert [p.name for p in (supd.state / "pushes").iterdir()] == ["cache"]  # no scratch layout left
        # a layer folder that is gone: the error names it
        supd.write_unit("gone", source_unit((tmp_path / "nothing-here",)).replace("[exec]\n", "[unit]\nenabled = false\n[exec]\n"))
        supd.wait_state("gone", "inactive")
        rc, _, err = pushed(supd, "gone", f"{secure.host}/x:v1")
        assert rc == 1 and str(tmp_path / "nothing-here") in err, err
    finally:
        secure.stop()
