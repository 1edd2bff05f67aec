"""supctl export kube / import kube through a real supd: the daemon exports
the unit it loaded (a named user looked up in the pulled image's passwd),
supctl imports manifests into the daemon's own units folder and the daemon
loads them by itself; export → import → export gives the same YAML."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from supervisor.api.client import Client
from supervisor.api.routes import ROUTES, export_kube_path
from tests.e2e.conftest import Supd, wait_for
from tests.helpers.busybox import make_busybox_rootfs
from tests.helpers.oci import BuiltImage, build_busybox_image
from tests.helpers.registry import REGISTRY, Registry

pytest.importorskip("kubernetes_validate")
from tests.helpers.kube import validate  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data" / "kube"

# enabled = false: the unit is loaded, never started (nothing is pulled)
WEB = """[unit]
description = "web front"
enabled = false
[exec]
command = ["httpd", "-f", "-p", "80"]
environment = { TZ = "UTC" }
user = "1000:1000"
[rootfs]
image = "busybox:1.36"
ports = ["18080:80"]
[resources]
memory_max = "64M"
cpu_weight = 50
cpuset = "0"
[restart]
policy = "on-failure"
[stop]
signal = "SIGQUIT"
[health]
command = ["wget", "-q", "-O-", "http://127.0.0.1/"]
on_failure = "restart"
"""


def export(supd: Supd, *args: str) -> tuple[str, str]:
    r = supd.ctl("export", "kube", *args)
    assert r.returncode == 0, r.stderr
    return r.stdout, r.stderr


def test_export_import_export_through_supd(supd: Supd, tmp_path: Path) -> None:
    supd.write_unit("web", WEB)
    supd.start()
    supd.wait_state("web", "inactive")
    first, warnings = export(supd, "web")
    documents = [d for d in yaml.safe_load_all(first) if d]
    assert [d["kind"] for d in documents] == ["Pod", "Service"]
    validate(documents)
    container = documents[0]["spec"]["containers"][0]
    assert container["image"] == "docker.io/library/busybox:1.36"
    assert container["securityContext"]["runAsUser"] == 1000
    assert documents[1]["spec"]["ports"][0]["port"] == 18080
    assert "supctl: warning: web: [unit].enabled: a pod always starts once created" in warnings
    assert "supctl: warning: web: [rootfs].writable: a container's root is ephemeral" in warnings
    assert first.startswith("# web: cpuset 0: pinning is the kubelet's CPU manager")

    deployment, _ = export(supd, "web", "--kind", "deployment", "--namespace", "shop")
    documents = [d for d in yaml.safe_load_all(deployment) if d]
    validate(documents)
    assert documents[0]["kind"] == "Deployment" and documents[0]["metadata"]["namespace"] == "shop"

    # the YAML back into the daemon's own units folder (from /v1/info), which loads it by itself
    manifest = tmp_path / "web.yaml"
    manifest.write_text(first)
    (supd.units / "web.toml").unlink()
    wait_for(lambda: supd.ctl("status", "web").returncode == 4, what="web forgotten")
    r = supd.ctl("import", "kube", str(manifest))
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"wrote {supd.units / 'web.toml'}\n"
    supd.wait_state("web", "inactive")
    again, _ = export(supd, "web")
    assert again == first

    # the same again: the file is there, so nothing is written
    r = supd.ctl("import", "kube", str(manifest))
    assert r.returncode == 1 and "web.toml: exists already" in r.stderr


def test_import_bad_input_writes_nothing(supd: Supd) -> None:
    supd.start()
    before = sorted(supd.units.iterdir())
    for name, field in (("csi.yaml", "spec.volumes[0].csi"), ("configmap.yaml", "kind"), ("bad-name.yaml", "metadata.name")):
        r = supd.ctl("import", "kube", str(DATA / "bad" / name))
        assert r.returncode == 1, r.stdout
        assert f"{DATA / 'bad' / name}: document 1" in r.stderr and f"{field}: expected" in r.stderr
        assert r.stdout == ""
    assert sorted(supd.units.iterdir()) == before
    assert supd.proc is not None and supd.proc.poll() is None


def test_a_unit_from_layers_needs_push(supd: Supd, tmp_path: Path) -> None:
    rootfs = make_busybox_rootfs(tmp_path / "rootfs")
    supd.write_unit("lay", f'[unit]\nenabled = false\n[exec]\ncommand = ["/bin/sleep", "1d"]\n[rootfs]\nlayers = ["{rootfs}"]\n')
    supd.start()
    supd.wait_state("lay", "inactive")
    r = supd.ctl("export", "kube", "lay")
    assert r.returncode == 2 and r.stdout == ""
    assert "export kube lay: it is built from layer folders (no image reference): use --push REGISTRY" in r.stderr
    # nothing listens there: the push fails, and nothing is printed
    r = supd.ctl("export", "kube", "lay", "--push", "127.0.0.1:1")
    assert r.returncode == 1 and r.stdout == ""
    assert "pushing lay to 127.0.0.1:1/lay:latest" in r.stderr
    # what --push asks once the image is pushed: the unit run from that reference
    pushed = "127.0.0.1:5000/lay:latest@sha256:" + "0" * 64
    with Client(supd.socket) as client:
        answer = client.call("GET", export_kube_path("lay", "pod", None, pushed))
    container = answer["documents"][0]["spec"]["containers"][0]
    assert container["image"] == pushed and container["command"] == ["/bin/sleep", "1d"]
    validate(answer["documents"])
    r = supd.ctl("export", "kube", "nope")
    assert r.returncode == 4 and "no such unit: nope" in r.stderr
    # two units that would be one Pod: refused before anything is asked or pushed
    r = supd.ctl("export", "kube", "lay", "lay_x", "lay.x", "--push", "127.0.0.1:1")
    assert r.returncode == 2 and r.stdout == "" and "pushing" not in r.stderr
    assert "units lay_x and lay.x would both be named 'lay-x'" in r.stderr


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    if not Path(REGISTRY).exists() or shutil.which("skopeo") is None or shutil.which("umoci") is None:
        pytest.skip("needs docker-registry, skopeo and umoci")
    image: BuiltImage = build_busybox_image(tmp_path_factory.mktemp("oci") / "layout", "v1")
    reg = Registry(tmp_path_factory.mktemp("registry")).start()
    try:
        reg.push(f"oci:{image.layout}:v1", "test/bb:v1")
        yield reg
    finally:
        reg.stop()


def test_a_named_user_is_looked_up_in_the_pulled_image(supd: Supd, registry: Registry) -> None:
    ref = f"{registry.host}/test/bb:v1"
    supd.write_unit("named", f'[unit]\nenabled = false\n[exec]\ncommand = ["/bin/sleep", "1d"]\nuser = "app"\n[rootfs]\nimage = "{ref}"\n')
    supd.start()
    supd.wait_state("named", "inactive")
    # not pulled yet: no uid for the name, and a warning says so
    before, warnings = export(supd, "named")
    assert "runAsUser" not in before
    assert "named: [exec].user: no uid for the name" in warnings
    r = supd.ctl("image", "pull", ref)
    assert r.returncode == 0, r.stderr
    text, warnings = export(supd, "named")
    documents = [d for d in yaml.safe_load_all(text) if d]
    validate(documents)
    security = documents[0]["spec"]["containers"][0]["securityContext"]
    assert (security["runAsUser"], security["runAsGroup"]) == (1000, 1000)  # app in the image's /etc/passwd
    assert "named: [exec].user: the name is uid 1000 gid 1000 in the image's /etc/passwd" in warnings


HAS_PUSH = any(route.pattern == "/v1/images/push" for route in ROUTES)


@pytest.mark.skipif(not HAS_PUSH, reason="supctl image push (issue 15, part 2) is not on this branch")
def test_export_push_then_import_runs_the_pushed_image(supd: Supd, registry: Registry, tmp_path: Path) -> None:
    rootfs = make_busybox_rootfs(tmp_path / "rootfs")
    supd.write_unit("lay", f'[unit]\nenabled = false\n[exec]\ncommand = ["/bin/sleep", "1d"]\n[rootfs]\nlayers = ["{rootfs}"]\nwritable = "ephemeral"\n')
    supd.start()
    supd.wait_state("lay", "inactive")
    text, warnings = export(supd, "lay", "--push", registry.host, "--tls-verify", "false")
    assert f"pushing lay to {registry.host}/lay:latest" in warnings
    documents = [d for d in yaml.safe_load_all(text) if d]
    validate(documents)
    image = documents[0]["spec"]["containers"][0]["image"]
    assert image.startswith(f"{registry.host}/lay:latest@sha256:")
    # the same layers pushed again: the same digest (content-addressed)
    again, _ = export(supd, "lay", "--push", registry.host, "--tls-verify", "false")
    assert again == text
    # back as a unit of the pushed image, which supd pulls and runs
    manifest = tmp_path / "lay.yaml"
    manifest.write_text(text)
    (supd.units / "lay.toml").unlink()
    wait_for(lambda: supd.ctl("status", "lay").returncode == 4, what="lay forgotten")
    r = supd.ctl("import", "kube", str(manifest))
    assert r.returncode == 0, r.stderr
    supd.wait_state("lay", "inactive")
    r = supd.ctl("start", "lay", timeout=120)
    assert r.returncode == 0, r.stderr
    st = supd.wait_state("lay", "running", "failed", timeout=60)
    assert st["state"] == "running", st
    supd.ctl("stop", "lay")
