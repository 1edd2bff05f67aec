"""supctl import kube (supervisor/kube/imports.py): real-world manifests
written for these tests (tests/data/kube/) become unit files that
units/parse.py accepts, with warnings for what does not carry over; bad
input fails naming the document and the field, and writes nothing."""

from __future__ import annotations

import io
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from supervisor.cli.main import main
from supervisor.kube.imports import ImportedUnit, KubeImport, KubeImportError, import_manifests, write_units
from supervisor.units import parse
from supervisor.units.model import Unit

pytest.importorskip("kubernetes_validate")
from tests.helpers.kube import validate  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data" / "kube"
UNITS_DIR = Path("/etc/supd/units")


def load(name: str) -> KubeImport:
    path = DATA / name
    return import_manifests(path.read_text(), name, UNITS_DIR)


def units_of(result: KubeImport) -> dict[str, Unit]:
    return {u.name: parse.parse_unit(u.name, tomllib.loads(u.text), UNITS_DIR / f"{u.name}.toml") for u in result.units}


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("*.yaml")))
def test_the_test_manifests_are_valid_kubernetes(name: str) -> None:
    validate(d for d in yaml.safe_load_all((DATA / name).read_text()) if d)


def test_nginx_deployment_and_its_service() -> None:
    result = load("nginx.yaml")
    unit = units_of(result)["nginx"]
    assert unit.rootfs is not None
    assert unit.rootfs.image == "docker://docker.io/library/nginx:1.25.3"
    assert unit.exec.command == () and unit.exec.entrypoint is None  # the image's own
    assert [str(p) for p in unit.rootfs.ports] == ["8080:80/tcp"]  # the Service's port on the host
    assert unit.resources.memory_max == 128 * 2**20 and unit.resources.memory_high == 64 * 2**20
    assert unit.resources.cpu_quota == 0.5 and unit.resources.cpu_weight == 25
    assert [(str(b.source), b.target, b.readonly) for b in unit.rootfs.binds] == [("/srv/www", "/usr/share/nginx/html", True)]
    assert unit.restart.policy == "always" and unit.stop.timeout == 30.0
    assert unit.rootfs.writable == "ephemeral"
    assert unit.health is None  # an httpGet probe has no unit equivalent...
    warnings = "\n".join(result.warnings)
    assert "nginx.yaml: document 1 (Deployment nginx): spec.template.spec.containers[0].readinessProbe.httpGet: a unit's health check runs a command" in warnings
    assert "metadata.labels: app: no unit equivalent" in warnings


def test_redis_pod_with_host_port_and_tmpfs() -> None:
    result = load("redis.yaml")
    unit = units_of(result)["redis"]
    assert unit.exec.command == ("redis-server", "--save", "", "--appendonly", "no")
    assert unit.exec.environment == (("MASTER", "true"),)
    assert unit.rootfs is not None
    assert [str(p) for p in unit.rootfs.ports] == ["127.0.0.1:6379:6379/tcp"]
    assert [(t.target, t.size) for t in unit.rootfs.tmpfs] == [("/data", 128 * 2**20)]
    assert unit.resources.memory_max == 256 * 2**20 and unit.resources.cpu_quota == 1.0


def test_a_job_like_pod_runs_once() -> None:
    unit = units_of(load("job-pod.yaml"))["migrate"]
    assert unit.restart.policy == "no"
    assert unit.stop.timeout == 5.0
    # command without args: the whole argv, no Entrypoint of the image's
    assert unit.exec.entrypoint == ("/bin/sh", "-c")
    assert unit.exec.command == ("echo migrating; sleep 2; echo done",)
    assert unit.exec.working_directory == "/tmp"


def test_probes_and_security_context() -> None:
    result = load("probes-security.yaml")
    unit = units_of(result)["api"]
    assert unit.exec.user == "1000:1000"  # the pod's securityContext
    assert unit.exec.cap_drop == ("ALL",) and unit.exec.cap_add == ("NET_BIND_SERVICE",)
    assert unit.exec.seccomp is None  # RuntimeDefault: supd's default profile
    assert unit.rootfs is not None and unit.rootfs.writable == "readonly" and unit.rootfs.pull == "always"
    assert unit.exec.entrypoint == ("/usr/local/bin/api",) and unit.exec.command == ("--listen", ":8080")
    assert unit.health is not None
    assert unit.health.command == ("/usr/local/bin/api", "health")
    assert (unit.health.interval, unit.health.timeout, unit.health.retries, unit.health.start_period) == (20.0, 3.0, 5, 15.0)
    assert unit.health.on_failure == "restart"  # a liveness probe restarts
    assert unit.stop.signal == 3  # the preStop hook's kill -QUIT
    assert [t.target for t in unit.rootfs.tmpfs] == ["/tmp"]
    warnings = "\n".join(result.warnings)
    assert "spec.containers[0].readinessProbe: a unit has one health check" in warnings
    assert "spec.containers[0].securityContext.allowPrivilegeEscalation: no unit equivalent" in warnings
    assert "spec.volumes[0].emptyDir.medium: a unit's scratch space is a tmpfs" in warnings


def test_a_multi_container_pod_is_one_unit_each_in_one_slice_in_init_order() -> None:
    result = load("sidecars.yaml")
    units = units_of(result)
    assert list(units) == ["shop-schema", "shop-app", "shop-logs"]
    assert {u.unit.slice for u in units.values()} == {"shop"}
    assert units["shop-schema"].unit.after == () and units["shop-schema"].restart.policy == "on-failure"
    # the init container runs to its end, and the containers start after that end
    assert units["shop-schema"].exec.oneshot
    for name in ("shop-app", "shop-logs"):
        assert units[name].unit.after == ("shop-schema",) and units[name].unit.requires == ("shop-schema",)
        assert units[name].restart.policy == "always" and not units[name].exec.oneshot
    assert not any("initContainers" in w for w in result.warnings)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("configmap.yaml", "configmap.yaml: document 1: kind: expected Pod or Deployment (or a Service for them), got \"ConfigMap\""),
        ("invalid.yaml", "invalid.yaml: expected valid YAML: "),
        ("networks.yaml", 'networks.yaml: document 1 (Pod multi): metadata.annotations["k8s.v1.cni.cncf.io/networks"]: expected no extra networks'),
        ("csi.yaml", "csi.yaml: document 1 (Pod storage): spec.volumes[0].csi: expected a hostPath or emptyDir volume, got a CSI volume"),
        ("bad-name.yaml", 'bad-name.yaml: document 1 (Pod Web.Frontend): metadata.name: expected a unit name matching [a-z0-9][a-z0-9_.-]{0,63} without "..", got "Web.Frontend"'),
    ],
)
def test_bad_input_names_document_and_field_and_writes_nothing(name: str, message: str, tmp_path: Path) -> None:
    path = DATA / "bad" / name
    with pytest.raises(KubeImportError) as caught:
        import_manifests(path.read_text(), name, UNITS_DIR)
    assert str(caught.value).startswith(message)
    # the real supctl, writing into a folder of its own: exit 1, the message, no file
    stdout, stderr = io.StringIO(), io.StringIO()
    assert main(["import", "kube", str(path), "--units", str(tmp_path)], stdout=stdout, stderr=stderr) == 1
    assert message.split(": ", 1)[1] in stderr.getvalue()
    assert list(tmp_path.iterdir()) == []


def _pod(**spec: Any) -> str:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": {"containers": [{"name": "x", "image": "busybox"}], **spec}}
    return yaml.safe_dump(pod)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a\n- b\n", "document 1: expected a Kubernetes object (a mapping with kind), got [\"a\", \"b\"]"),
        ("apiVersion: v2\nkind: Pod\n", "document 1: apiVersion: expected v1 for a Pod, got \"v2\""),
        ("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containers: []}\n", "spec.containers: expected a list of at least one container"),
        (_pod(containers=[{"name": "x"}]), "spec.containers[0].image: expected an image reference like nginx:1.25, got nothing"),
        (_pod(volumes=[{"name": "v", "persistentVolumeClaim": {"claimName": "c"}}]), "spec.volumes[0].persistentVolumeClaim: expected a hostPath or emptyDir volume"),
        (_pod(containers=[{"name": "x", "image": "b", "volumeMounts": [{"name": "nope", "mountPath": "/d"}]}]), "spec.containers[0].volumeMounts[0].name: expected the name of a volume"),
        (_pod(restartPolicy="Sometimes"), "spec.restartPolicy: expected Always, OnFailure or Never, got \"Sometimes\""),
        (_pod(containers=[{"name": "x", "image": "b", "env": [{"name": "1X", "value": "v"}]}]), "would give an invalid unit: /etc/supd/units/x.toml: [exec].environment"),
        (_pod() + "---\n" + _pod(), "document 2 (Pod x): metadata.name: unit x comes from s.yaml: document 1 (Pod x) already"),
        ("", "expected at least one Pod or Deployment, got none"),
    ],
)
def test_more_bad_input(text: str, message: str) -> None:
    with pytest.raises(KubeImportError, match="^s.yaml: .*" + __import__("re").escape(message)):
        import_manifests(text, "s.yaml", UNITS_DIR)


def test_what_has_no_unit_equivalent_is_a_warning() -> None:
    text = _pod(
        nodeSelector={"disk": "ssd"},
        containers=[{
            "name": "x", "image": "busybox", "stdin": True,
            "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
            "resources": {"limits": {"nvidia.com/gpu": 1}},
            "ports": [{"containerPort": 9090}],
        }],
    )  # fmt: skip
    result = import_manifests(text, "s.yaml", UNITS_DIR)
    warnings = "\n".join(result.warnings)
    for field in (
        "spec.nodeSelector: no unit equivalent",
        "spec.containers[0].stdin: no unit equivalent",
        "spec.containers[0].env[0].valueFrom: POD_IP: a value from the cluster",
        "spec.containers[0].resources.limits.nvidia.com/gpu: no unit equivalent",
        "containerPort 9090/tcp: not published",
    ):
        assert field in warnings


def test_write_units_writes_all_or_nothing(tmp_path: Path) -> None:
    units = (ImportedUnit("a", "[exec]\ncommand = [\"/bin/true\"]\n"), ImportedUnit("b", "[exec]\ncommand = [\"/bin/true\"]\n"))
    (tmp_path / "b.toml").write_text("mine")
    with pytest.raises(KubeImportError, match=r"b.toml: exists already"):
        write_units(units, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.toml"]
    (tmp_path / "b.toml").unlink()
    written = write_units(units, tmp_path)
    assert [p.name for p in written] == ["a.toml", "b.toml"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.toml", "b.toml"]  # no temp file left
    with pytest.raises(KubeImportError, match="expected a units folder"):
        write_units(units, tmp_path / "missing")
