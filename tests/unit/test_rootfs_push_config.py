"""What `image push` writes besides the layers: the config a unit stands for
(the inverse of units.imageconfig), the layout's JSON, the skopeo command. Pure."""

from __future__ import annotations

import json
import signal
from dataclasses import replace
from pathlib import Path

import pytest

from supervisor.rootfs import imagewrite
from supervisor.rootfs.oci import Healthcheck, ImageConfig
from supervisor.rootfs.pull import PullSettings
from supervisor.rootfs.push import parse_destination, skopeo_push_argv
from supervisor.rootfs.reference import parse_reference
from supervisor.units.imageconfig import effective_unit
from supervisor.units.model import ExecSpec, HealthSpec, RootfsSpec, StopSpec, Unit

FILE = Path("/srv/units/web.toml")
BASE = ImageConfig(
    env=("PATH=/opt/bin:/usr/bin", "LANG=C.UTF-8"),
    cmd=("--port", "6379"),
    entrypoint=("/usr/bin/redis-server",),
    working_dir="/data",
    user="redis",
    stop_signal="SIGQUIT",
    healthcheck=Healthcheck(test=("CMD-SHELL", "redis-cli ping"), interval_ns=5 * 10**9, retries=4),
)


def unit(image: bool = False, **exec_fields: object) -> Unit:
    rootfs = RootfsSpec(image="/srv/images/redis:7") if image else RootfsSpec(layers=(Path("/srv/layers/app"),))
    return Unit(name="web", file=FILE, exec=ExecSpec(**{"command": (), **exec_fields}), rootfs=rootfs)  # type: ignore[arg-type]


def runs_the_same(u: Unit, base: ImageConfig | None) -> None:
    """Pulled back and run by a unit with no [exec], [stop].signal or [health],
    the pushed config gives what `u` ran."""
    pushed = imagewrite.config_for_unit(u, base)
    bare = Unit(name="copy", file=FILE, exec=ExecSpec(command=()), rootfs=RootfsSpec(image="/x:y"))
    ran, again = effective_unit(u, base), effective_unit(bare, pushed)
    assert again.exec.command == ran.exec.command
    assert again.exec.environment == ran.exec.environment
    assert again.exec.user == ran.exec.user
    assert again.exec.working_directory == ran.exec.working_directory
    assert again.stop.signal == ran.stop.signal
    assert (again.health is None) == (ran.health is None)
    if ran.health is not None and again.health is not None:
        assert replace(again.health, on_failure="none") == replace(ran.health, on_failure="none")


@pytest.mark.parametrize(
    "fields",
    [
        {"command": ("/bin/app", "--serve")},
        {"entrypoint": ("/bin/tini", "--"), "command": ("/bin/app",)},
        {"entrypoint": ("/bin/app",)},
        {"command": ("/bin/app",), "environment": (("A", "1"), ("B", "x=y")), "user": "1000:1000", "working_directory": "/srv"},
    ],
)
def test_a_unit_of_layer_folders_runs_the_same_from_its_pushed_config(fields: dict[str, object]) -> None:
    runs_the_same(unit(**fields), None)


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"command": ("--port", "7000")},
        {"entrypoint": ("/bin/sh", "-c")},
        {"entrypoint": ("/bin/sh", "-c"), "command": ("exec redis-server",), "environment": (("LANG", "C"),)},
        {"user": "root", "working_directory": "/"},
    ],
)
def test_a_unit_on_an_image_runs_the_same_from_its_pushed_config(fields: dict[str, object]) -> None:
    runs_the_same(unit(image=True, **fields), BASE)


def test_entrypoint_and_cmd_keep_dockers_split() -> None:
    pushed = imagewrite.config_for_unit(unit(image=True, command=("--port", "7000")), BASE)
    assert pushed.entrypoint == ("/usr/bin/redis-server",) and pushed.cmd == ("--port", "7000")
    # an entrypoint of the unit's own drops the image's Cmd, as docker run --entrypoint does
    pushed = imagewrite.config_for_unit(unit(image=True, entrypoint=("/bin/sh",)), BASE)
    assert pushed.entrypoint == ("/bin/sh",) and pushed.cmd == ()


def test_stop_signal_and_health_of_the_unit_win_and_are_written_as_docker_does() -> None:
    u = replace(
        unit(command=("/bin/app",)),
        stop=StopSpec(signal=int(signal.SIGINT), timeout=3.0),
        health=HealthSpec(command=("/bin/check", "-q"), interval=1.5, timeout=2.0, retries=5, start_period=0.25, on_failure="restart"),
    )
    pushed = imagewrite.config_for_unit(u, BASE)
    assert pushed.stop_signal == "SIGINT"
    assert pushed.healthcheck == Healthcheck(
        test=("CMD", "/bin/check", "-q"), interval_ns=1_500_000_000, timeout_ns=2 * 10**9, start_period_ns=250_000_000, retries=5
    )
    section = json.loads(imagewrite.config_json(pushed, [], None, "amd64"))["config"]
    assert section["Healthcheck"] == {
        "Test": ["CMD", "/bin/check", "-q"], "Interval": 1_500_000_000, "Timeout": 2 * 10**9,
        "StartPeriod": 250_000_000, "Retries": 5,
    }  # fmt: skip
    # nothing set by the unit: the image's own values are carried
    carried = imagewrite.config_for_unit(unit(image=True), BASE)
    assert carried.stop_signal == "SIGQUIT" and carried.healthcheck == BASE.healthcheck


def test_config_json_is_canonical_and_has_no_clock() -> None:
    config = imagewrite.config_for_unit(unit(command=("/bin/app",), environment=(("B", "2"), ("A", "1"))))
    one = imagewrite.config_json(config, ["sha256:" + "a" * 64], None, "amd64")
    assert one == imagewrite.config_json(config, ["sha256:" + "a" * 64], None, "amd64")
    doc = json.loads(one)
    assert "created" not in doc and b" " not in one.replace(b"/bin/app", b"")
    assert doc["config"] == {"Cmd": ["/bin/app"], "Env": ["A=1", "B=2"]}  # only keys that say something
    assert doc["rootfs"] == {"type": "layers", "diff_ids": ["sha256:" + "a" * 64]}
    assert list(doc) == sorted(doc)
    dated = json.loads(imagewrite.config_json(config, [], imagewrite.rfc3339(86400), "arm64"))
    assert dated["created"] == "1970-01-02T00:00:00Z" and dated["architecture"] == "arm64"


def test_manifest_and_index_name_their_blobs() -> None:
    config = imagewrite.config_blob(b"{}")
    layer = imagewrite.layer_blob("sha256:" + "b" * 64, 123)
    manifest = imagewrite.manifest_json(config, [layer])
    doc = json.loads(manifest)
    assert doc["config"]["digest"] == "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    assert doc["layers"] == [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer.digest, "size": 123}]
    index = json.loads(imagewrite.index_json(imagewrite.manifest_blob(manifest), "push"))
    [entry] = index["manifests"]
    assert entry["size"] == len(manifest) and entry["annotations"] == {"org.opencontainers.image.ref.name": "push"}


def test_destination_needs_a_tag_not_a_digest() -> None:
    assert str(parse_destination("127.0.0.1:5000/app")) == "127.0.0.1:5000/app:latest"
    with pytest.raises(ValueError, match="not a digest"):
        parse_destination("127.0.0.1:5000/app@sha256:" + "0" * 64)
    with pytest.raises(ValueError, match="lowercase"):
        parse_destination("127.0.0.1:5000/App:v1")


def test_skopeo_push_argv_follows_the_pull_rules(tmp_path: Path) -> None:
    layout, digestfile = tmp_path / "layout", tmp_path / "digest"
    local = parse_reference("127.0.0.1:5000/app:v1")
    remote = parse_reference("registry.example:5000/app:v1")
    argv = skopeo_push_argv(layout, local, PullSettings(), None, None, digestfile)
    assert argv == [
        "skopeo", "copy", "--quiet", "--preserve-digests", f"--digestfile={digestfile}", "--dest-tls-verify=false",
        f"oci:{layout}:push", "docker://127.0.0.1:5000/app:v1",
    ]  # fmt: skip
    assert "--dest-tls-verify=false" not in skopeo_push_argv(layout, remote, PullSettings(), None, None, digestfile)
    insecure = PullSettings(insecure_registries=("registry.example:5000",))
    assert "--dest-tls-verify=false" in skopeo_push_argv(layout, remote, insecure, None, None, digestfile)
    # asked for: verified even on loopback; not verified anywhere
    forced = skopeo_push_argv(layout, local, PullSettings(), None, True, digestfile)
    assert "--dest-tls-verify=true" in forced and "--dest-tls-verify=false" not in forced
    assert "--dest-tls-verify=false" in skopeo_push_argv(layout, remote, PullSettings(), None, False, digestfile)
    auth = tmp_path / "auth.json"
    assert f"--dest-authfile={auth}" in skopeo_push_argv(layout, remote, PullSettings(), auth, None, digestfile)


def test_the_push_request_body() -> None:
    from supervisor.api.commands import BadRequestError, PushImageRequest, parse_push_image_body

    request = PushImageRequest("web", "127.0.0.1:5000/web:1", "/etc/auth.json", False)
    assert parse_push_image_body(request.to_json()) == request
    assert PushImageRequest("web", "r/web:1").to_json() == {"source": "web", "destination": "r/web:1"}
    for body, key in (
        ({"destination": "r/web:1"}, "source"),
        ({"source": "web"}, "destination"),
        ({"source": "web", "destination": "r/web:1", "authfile": "auth.json"}, "authfile"),
        ({"source": "web", "destination": "r/web:1", "tls_verify": "no"}, "tls_verify"),
        ({"source": "web", "destination": "r/web:1", "force": True}, "unknown keys"),
    ):
        with pytest.raises(BadRequestError, match=key):
            parse_push_image_body(body)
