"""An image's own config on a real supd: Entrypoint, Cmd, Env, User,
WorkingDir, StopSignal and Healthcheck of an OCI image made by umoci, each
seen from inside the running container; a unit's own keys win over them.
Also tmpfs mounts and a read-only root's scratch space."""

from __future__ import annotations

import json
import shutil
import signal
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import Supd, wait_for
from tests.e2e.test_containers import exec_in, sh, start_unit
from tests.helpers.oci import BuiltImage, build_busybox_image, set_healthcheck, umoci

pytestmark = pytest.mark.skipif(shutil.which("umoci") is None, reason="needs umoci")

# pid 1 of the container: ignores SIGTERM (no handler), says which signal stopped it
SCRIPT = (
    'echo "ran as $(id -u):$(id -g) in $(pwd) greeting=$GREETING lang=$LANG args=$#"; '
    'trap "echo stopped-by-quit; exit 0" QUIT; '
    "while :; do sleep 1 & wait $!; done"
)


@pytest.fixture(scope="module")
def configured(tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    image = build_busybox_image(tmp_path_factory.mktemp("oci") / "layout", "base")
    umoci(
        "config", "--image", f"{image.layout}:base", "--tag", "app",
        "--config.entrypoint", "/bin/sh", "--config.entrypoint", "-c",
        "--config.cmd", SCRIPT, "--config.cmd", "argv0",
        "--config.env", "GREETING=hello from the image", "--config.env", "LANG=C.UTF-8",
        "--config.user", "1000:1000", "--config.workingdir", "/home/app",
        "--config.stopsignal", "SIGQUIT",
    )  # fmt: skip
    set_healthcheck(
        image.layout,
        "app",
        {"Test": ["CMD-SHELL", "echo check as $(id -u) in $(pwd)"], "Interval": 500_000_000, "Retries": 1},
    )
    return BuiltImage(image.layout, "app")


def image_unit(image: BuiltImage, extra_exec: str = "", extra: str = "") -> str:
    exec_section = f"[exec]\n{extra_exec}\n" if extra_exec else ""
    return f'{exec_section}[rootfs]\nimage = "{image.ref}"\nwritable = "ephemeral"\n[stop]\ntimeout = "10s"\n{extra}'


def logs(supd: Supd, unit: str) -> str:
    return supd.ctl("logs", unit).stdout


def test_the_images_config_runs_the_unit(supd: Supd, configured: BuiltImage) -> None:
    start_unit(supd, "app", image_unit(configured))
    line = wait_for(lambda: "ran as" in logs(supd, "app") and logs(supd, "app"), what="the image's Cmd to run")
    # Entrypoint + Cmd ("argv0" is $0 of sh -c, so no arguments), User, WorkingDir, Env
    assert "ran as 1000:1000 in /home/app greeting=hello from the image lang=C.UTF-8 args=0" in line, line
    # supctl exec gets the same user, directory and environment
    assert sh(supd, "app", 'echo "$(id -u) $(pwd) $GREETING"') == "1000 /home/app hello from the image\n"
    status = supd.status("app")
    assert status["command"] == ["/bin/sh", "-c", SCRIPT, "argv0"]
    text = supd.ctl("status", "app").stdout
    assert "Command: /bin/sh -c 'echo" in text and "argv0" in text, text
    # the image's Healthcheck runs (as the image's user, in its directory)
    healthy = wait_for(lambda: (s := supd.status("app"))["health"] == "healthy" and s, what="healthy")
    assert "check as 1000 in /home/app" in (healthy.get("health_output") or ""), healthy
    # the image's StopSignal: SIGQUIT, which pid 1 traps; SIGTERM it would ignore until the kill
    started = time.monotonic()
    assert supd.ctl("stop", "app").returncode == 0
    supd.wait_state("app", "inactive", "exited", "failed", timeout=15)
    assert time.monotonic() - started < 8, "stopped by the timeout's SIGKILL, not by SIGQUIT"
    assert "stopped-by-quit" in logs(supd, "app")


def test_the_units_keys_win(supd: Supd, configured: BuiltImage) -> None:
    # [exec].command replaces Cmd, not Entrypoint; the unit's env, user, directory,
    # stop signal and health replace the image's
    start_unit(
        supd,
        "own",
        image_unit(
            configured,
            'command = [\'echo "own as $(id -u) in $(pwd) $GREETING $LANG [$1]"; exec sleep 1000\', "argv0", ""]\n'
            'environment = { LANG = "de_DE.UTF-8" }\nuser = "0:0"\nworking_directory = "/etc"',
            '[health]\ncommand = ["/bin/true"]\ninterval = "300ms"\n',
        ).replace('timeout = "10s"', 'timeout = "10s"\nsignal = "SIGKILL"'),
    )
    line = wait_for(lambda: "own as" in logs(supd, "own") and logs(supd, "own"), what="the unit's command")
    # the empty argument reaches the program as $1
    assert "own as 0 in /etc hello from the image de_DE.UTF-8 []" in line, line
    assert supd.status("own")["command"][:2] == ["/bin/sh", "-c"]
    assert supd.status("own")["command"][-2:] == ["argv0", ""]
    wait_for(lambda: supd.status("own")["health"] == "healthy", what="the unit's own health check")
    assert "check as" not in (supd.status("own").get("health_output") or "")


def test_an_entrypoint_without_a_command_drops_the_images_cmd(supd: Supd, configured: BuiltImage) -> None:
    supd.write_unit("echo", image_unit(configured, 'entrypoint = ["/bin/echo", "only", "the", "entrypoint"]'))
    supd.start()
    st = supd.wait_state("echo", "exited", "failed", timeout=20)
    assert st["state"] == "exited", st
    assert supd.status("echo")["command"] == ["/bin/echo", "only", "the", "entrypoint"]
    assert "only the entrypoint" in logs(supd, "echo")


def test_nothing_to_run_is_a_clear_error(supd: Supd, tmp_path: Path) -> None:
    bare = build_busybox_image(tmp_path / "bare", "bare")  # no Entrypoint, no Cmd
    supd.write_unit("bare", image_unit(bare))
    supd.start()
    st = supd.wait_state("bare", "failed", "error", timeout=20)
    assert "bare.toml: [exec].command: expected a command" in (st.get("error") or ""), st
    assert supd.ctl("list").returncode == 0  # and supd is fine


def test_image_inspect(supd: Supd, configured: BuiltImage) -> None:
    supd.start()
    assert supd.ctl("image", "import", configured.ref).returncode == 0
    r = supd.ctl("image", "inspect", configured.ref, "--json")
    assert r.returncode == 0, r.stderr
    config = json.loads(r.stdout)["config"]
    assert config["Entrypoint"] == ["/bin/sh", "-c"] and config["StopSignal"] == "SIGQUIT"
    assert config["User"] == "1000:1000" and config["WorkingDir"] == "/home/app"
    assert "GREETING=hello from the image" in config["Env"]
    assert config["Healthcheck"]["Test"][0] == "CMD-SHELL" and config["Healthcheck"]["Interval"] == 500_000_000
    text = supd.ctl("image", "inspect", configured.ref).stdout
    assert "Entrypoint: /bin/sh -c" in text and "StopSignal: SIGQUIT" in text and "Interval: 500ms" in text, text
    r = supd.ctl("image", "inspect", f"{configured.layout}:nope")
    assert r.returncode != 0 and "no image" in r.stderr, r.stderr


def test_tmpfs_and_a_readonly_roots_scratch(supd: Supd, configured: BuiltImage) -> None:
    unit = (
        '[exec]\nentrypoint = []\ncommand = ["/bin/sleep", "1000"]\nuser = "0"\n'
        f'[rootfs]\nimage = "{configured.ref}"\nwritable = "readonly"\n'
        'tmpfs = ["/scratch:size=1M,mode=700", "/tmp:size=2M"]\n'
    )
    start_unit(supd, "ro", unit)
    # /run and /var/tmp get podman's scratch tmpfs; /tmp is the unit's own (2M)
    assert sh(supd, "ro", "touch /tmp/a /run/a /var/tmp/a /scratch/a && echo ok") == "ok\n"
    rc, _out, err = exec_in(supd, "ro", "/bin/touch", "/etc/nope")
    assert rc != 0 and "Read-only file system" in err, err
    mounts = {line.split()[1]: line.split() for line in sh(supd, "ro", "cat /proc/mounts").splitlines()}
    for target in ("/run", "/tmp", "/var/tmp", "/scratch"):
        assert mounts[target][2] == "tmpfs", mounts.get(target)
    assert "size=2048k" in mounts["/tmp"][3] and "noexec" in mounts["/tmp"][3], mounts["/tmp"]
    assert "size=1024k" in mounts["/scratch"][3] and "mode=700" in mounts["/scratch"][3], mounts["/scratch"]
    assert "noexec" not in mounts["/run"][3] and "nosuid" in mounts["/run"][3], mounts["/run"]
    # and nothing of it shows on the host
    with open("/proc/self/mountinfo") as f:
        assert not [line for line in f if "/scratch" in line.split()[4]]


def test_bad_tmpfs_is_a_unit_file_error(supd: Supd, configured: BuiltImage) -> None:
    supd.write_unit("badtmp", f'[rootfs]\nimage = "{configured.ref}"\ntmpfs = ["/ok", "/x:size=lots"]\n')
    supd.start()
    st = supd.wait_state("badtmp", "error", timeout=20)
    assert "badtmp.toml: [rootfs].tmpfs[1]: expected a tmpfs like" in (st.get("error") or ""), st


def test_an_adopted_unit_keeps_its_images_stop_signal_and_command(supd: Supd, configured: BuiltImage) -> None:
    supd.extra_args = ["--live-restore"]
    pid = int(start_unit(supd, "kept", image_unit(configured))["pid"])  # type: ignore[arg-type]
    wait_for(lambda: "ran as" in logs(supd, "kept"), what="the image's Cmd to run")
    assert supd.stop(signal.SIGTERM) == 0  # live restore: the unit stays
    supd.start()
    st = supd.wait_state("kept", "running")
    assert st["pid"] == pid
    assert supd.status("kept")["command"] == ["/bin/sh", "-c", SCRIPT, "argv0"]
    started = time.monotonic()
    assert supd.ctl("stop", "kept").returncode == 0
    supd.wait_state("kept", "inactive", "exited", "failed", timeout=15)
    assert time.monotonic() - started < 8, "stopped by the timeout's SIGKILL, not by the image's SIGQUIT"
    assert "stopped-by-quit" in logs(supd, "kept")
