"""supctl export kube's mapping (supervisor/kube/export.py), one example per
unit key: what it becomes in the manifest (or the warning and annotation that
keep it), every manifest valid for the two newest Kubernetes versions
kubernetes-validate ships (strict: unknown fields refused), and export →
import → export giving the same manifests."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from supervisor.kube import mapping as m
from supervisor.kube.export import ExportError, ExportOptions, KubeExport, export_unit, name_clash, needs_push
from supervisor.kube.imports import import_manifests
from supervisor.units import parse
from supervisor.units.model import Unit

pytest.importorskip("kubernetes_validate")
from tests.helpers.kube import validate  # noqa: E402

UNITS_DIR = Path("/etc/supd/units")
PUSHED = "registry.example:5000/built:latest@sha256:" + "ab" * 32


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = {k: dict(v) for k, v in base.items()}
    for section, keys in extra.items():
        out.setdefault(section, {}).update(keys)
    return out


BASE = {"exec": {"command": ["sleep", "1d"]}, "rootfs": {"image": "busybox:1.36", "writable": "ephemeral"}}


def unit_of(toml: str, name: str = "app", base: dict[str, Any] = BASE) -> Unit:
    data = merge(base, tomllib.loads(toml))
    return parse.parse_unit(name, data, UNITS_DIR / f"{name}.toml")


def pod(e: KubeExport) -> dict[str, Any]:
    main = e.documents[0]
    return main["spec"]["template"]["spec"] if main["kind"] == "Deployment" else main["spec"]


def container(e: KubeExport) -> dict[str, Any]:
    return pod(e)["containers"][0]


def annotations(e: KubeExport) -> dict[str, str]:
    return e.documents[0]["metadata"]["annotations"]


def unmapped(e: KubeExport, key: str) -> Any:
    """The value kept for `[section].key`, and a warning naming unit and key."""
    section, name = key.split(".")
    assert any(w.startswith(f"{e.unit}: [{section}].{name}: ") for w in e.warnings), e.warnings
    return json.loads(annotations(e)[f"{m.UNMAPPED_PREFIX}{key}"])


def round_trip(unit: Unit, options: ExportOptions, ids: tuple[int, int | None] | None = None) -> KubeExport:
    """Export, import the YAML, export the imported unit: both exports equal."""
    first = export_unit(unit, options, ids)
    text = "".join("---\n" + yaml.safe_dump(d, sort_keys=False) for d in first.documents)
    imported = import_manifests(text, "exported.yaml", UNITS_DIR)
    assert [u.name for u in imported.units] == [unit.name]
    again = parse.parse_unit(unit.name, tomllib.loads(imported.units[0].text), UNITS_DIR / f"{unit.name}.toml")
    second = export_unit(again, ExportOptions(kind=options.kind, namespace=options.namespace), ids)
    assert second.documents == first.documents
    return first


Check = Callable[[KubeExport], None]
# (unit key, TOML adding it to BASE, what the export shows)
EXAMPLES: list[tuple[str, str, Check]] = [
    ("unit.description", '[unit]\ndescription = "the shop"', lambda e: annotations(e)[m.DESCRIPTION_ANNOTATION] == "the shop" or fail()),
    ("unit.slice", '[unit]\nslice = "web-front"', lambda e: e.documents[0]["metadata"]["labels"][m.SLICE_LABEL] == "web-front" or fail()),
    ("unit.after", '[unit]\nafter = ["db"]', lambda e: unmapped(e, "unit.after") == ["db"] or fail()),
    ("unit.requires", '[unit]\nrequires = ["db", "cache"]', lambda e: unmapped(e, "unit.requires") == ["db", "cache"] or fail()),
    ("unit.enabled", "[unit]\nenabled = false", lambda e: unmapped(e, "unit.enabled") is False or fail()),
    ("unit.priority", "[unit]\npriority = -5", lambda e: unmapped(e, "unit.priority") == -5 or fail()),
    ("exec.command", '[exec]\ncommand = ["httpd", "-f"]', lambda e: (container(e)["args"] == ["httpd", "-f"] and "command" not in container(e)) or fail()),
    ("exec.entrypoint", '[exec]\nentrypoint = ["/bin/sh", "-c"]\ncommand = ["echo hi"]',
     lambda e: (container(e)["command"] == ["/bin/sh", "-c"] and container(e)["args"] == ["echo hi"]) or fail()),
    ("exec.entrypoint", '[exec]\nentrypoint = []\ncommand = ["/bin/echo", "alone"]',
     lambda e: (container(e)["command"] == ["/bin/echo", "alone"] and "args" not in container(e)) or fail()),
    ("exec.environment", '[exec]\nenvironment = { TZ = "UTC", A = "x=y" }',
     lambda e: container(e)["env"] == [{"name": "A", "value": "x=y"}, {"name": "TZ", "value": "UTC"}] or fail()),
    ("exec.working_directory", '[exec]\nworking_directory = "/srv"', lambda e: container(e)["workingDir"] == "/srv" or fail()),
    ("exec.user", '[exec]\nuser = "1000:100"',
     lambda e: (container(e)["securityContext"]["runAsUser"] == 1000 and container(e)["securityContext"]["runAsGroup"] == 100) or fail()),
    ("exec.user", '[exec]\nuser = "33"', lambda e: (container(e)["securityContext"]["runAsUser"] == 33 and "runAsGroup" not in container(e)["securityContext"]) or fail()),
    ("exec.log_driver", '[exec]\nlog_driver = "journald"', lambda e: unmapped(e, "exec.log_driver") == "journald" or fail()),
    ("exec.type", '[exec]\ntype = "oneshot"', lambda e: unmapped(e, "exec.type") == "oneshot" or fail()),
    ("exec.cap_add", '[exec]\ncap_add = ["NET_RAW"]', lambda e: container(e)["securityContext"]["capabilities"] == {"add": ["NET_RAW"]} or fail()),
    ("exec.cap_drop", '[exec]\ncap_drop = ["ALL"]', lambda e: container(e)["securityContext"]["capabilities"] == {"drop": ["ALL"]} or fail()),
    ("exec.seccomp", '[exec]\nseccomp = "default"', lambda e: container(e)["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"} or fail()),
    ("exec.seccomp", '[exec]\nseccomp = "unconfined"', lambda e: container(e)["securityContext"]["seccompProfile"] == {"type": "Unconfined"} or fail()),
    ("exec.seccomp", '[exec]\nseccomp = "/etc/supd/strict.json"',
     lambda e: (unmapped(e, "exec.seccomp") == "/etc/supd/strict.json" and "securityContext" not in container(e)) or fail()),
    ("rootfs.image", '[rootfs]\nimage = "nginx:1.25"', lambda e: container(e)["image"] == "docker.io/library/nginx:1.25" or fail()),
    ("rootfs.pull", '[rootfs]\npull = "always"', lambda e: container(e)["imagePullPolicy"] == "Always" or fail()),
    ("rootfs.pull", '[rootfs]\npull = "never"', lambda e: container(e)["imagePullPolicy"] == "Never" or fail()),
    ("rootfs.writable", '[rootfs]\nwritable = "readonly"', lambda e: container(e)["securityContext"]["readOnlyRootFilesystem"] is True or fail()),
    ("rootfs.writable", '[rootfs]\nwritable = "persistent"',
     lambda e: (unmapped(e, "rootfs.writable") == "persistent" and any("PersistentVolumeClaim" in w for w in e.warnings)) or fail()),
    ("rootfs.hostname", '[rootfs]\nhostname = "shop"', lambda e: pod(e)["hostname"] == "shop" or fail()),
    ("rootfs.hostname", '[rootfs]\nhostname = "shop.example.com"', lambda e: (unmapped(e, "rootfs.hostname") == "shop.example.com" and "hostname" not in pod(e)) or fail()),
    ("rootfs.network", '[rootfs]\nnetwork = "host"', lambda e: pod(e)["hostNetwork"] is True or fail()),
    ("rootfs.network", '[rootfs]\nnetwork = "none"', lambda e: (unmapped(e, "rootfs.network") == "none" and "hostNetwork" not in pod(e)) or fail()),
    ("rootfs.network", '[rootfs]\nnetwork = "bridge"', lambda e: "hostNetwork" not in pod(e) or fail()),
    ("rootfs.ports", '[rootfs]\nports = ["8080:80", "5353:53/udp"]', lambda e: check_ports(e)),
    ("rootfs.ports", '[rootfs]\nports = ["127.0.0.1:8080:80"]', lambda e: unmapped(e, "rootfs.ports") == ["127.0.0.1:8080:80/tcp"] or fail()),
    ("rootfs.binds", '[rootfs]\nbinds = [{ source = "/srv/www", target = "/www", readonly = true }, { source = "/var/log/app", target = "/log" }]',
     lambda e: check_binds(e)),
    ("rootfs.tmpfs", '[rootfs]\ntmpfs = ["/tmp:size=64M", "/run"]', lambda e: check_tmpfs(e)),
    ("rootfs.tmpfs", '[rootfs]\ntmpfs = ["/scratch:mode=700,exec"]', lambda e: unmapped(e, "rootfs.tmpfs") == ["/scratch:mode=700,nosuid,nodev,exec"] or fail()),
    ("rootfs.init", "[rootfs]\ninit = true", lambda e: unmapped(e, "rootfs.init") is True or fail()),
    ("rootfs.devices", '[rootfs]\ndevices = ["/dev/fuse", "/dev/net/tun:rw"]', lambda e: unmapped(e, "rootfs.devices") == ["/dev/fuse:rwm", "/dev/net/tun:rw"] or fail()),
    ("rootfs.userns", '[rootfs]\nuserns = "auto"', lambda e: pod(e)["hostUsers"] is False or fail()),
    ("rootfs.hosts", '[rootfs]\nhosts = { "db.local" = "10.1.2.3", "db" = "10.1.2.3", "cache" = "fd00::3" }',
     lambda e: pod(e)["hostAliases"] == [{"ip": "10.1.2.3", "hostnames": ["db", "db.local"]}, {"ip": "fd00::3", "hostnames": ["cache"]}] or fail()),
    ("rootfs.dns", '[rootfs]\ndns = ["1.1.1.1", "9.9.9.9"]',
     lambda e: (pod(e)["dnsPolicy"] == "None" and pod(e)["dnsConfig"] == {"nameservers": ["1.1.1.1", "9.9.9.9"]}) or fail()),
    ("resources.memory_max", '[resources]\nmemory_max = "256M"', lambda e: container(e)["resources"] == {"limits": {"memory": "256Mi"}} or fail()),
    ("resources.memory_max", "[resources]\nmemory_max = 1000000", lambda e: container(e)["resources"] == {"limits": {"memory": "1000000"}} or fail()),
    ("resources.memory_high", '[resources]\nmemory_high = "1.5G"', lambda e: container(e)["resources"] == {"requests": {"memory": "1536Mi"}} or fail()),
    ("resources.cpu_weight", "[resources]\ncpu_weight = 100", lambda e: container(e)["resources"] == {"requests": {"cpu": "1000m"}} or fail()),
    ("resources.cpu_weight", "[resources]\ncpu_weight = 25", lambda e: container(e)["resources"] == {"requests": {"cpu": "250m"}} or fail()),
    ("resources.cpu_quota", '[resources]\ncpu_quota = "150%"', lambda e: container(e)["resources"] == {"limits": {"cpu": "1500m"}} or fail()),
    ("resources.cpu_quota", '[resources]\ncpu_quota = "50%"\ncpu_weight = 100',
     lambda e: (container(e)["resources"] == {"limits": {"cpu": "500m"}, "requests": {"cpu": "500m"}} and unmapped(e, "resources.cpu_weight") == 100) or fail()),
    ("resources.pids_max", "[resources]\npids_max = 64", lambda e: unmapped(e, "resources.pids_max") == 64 or fail()),
    ("resources.io_weight", "[resources]\nio_weight = 200", lambda e: unmapped(e, "resources.io_weight") == 200 or fail()),
    ("resources.cpuset", '[resources]\ncpuset = "0-1,3"', lambda e: (unmapped(e, "resources.cpuset") == "0-1,3" and "cpuset 0-1,3" in e.comments[0]) or fail()),
    ("restart.policy", '[restart]\npolicy = "always"', lambda e: pod(e)["restartPolicy"] == "Always" or fail()),
    ("restart.policy", '[restart]\npolicy = "on-failure"', lambda e: pod(e)["restartPolicy"] == "OnFailure" or fail()),
    ("restart.policy", '[restart]\npolicy = "on-abnormal"', lambda e: (pod(e)["restartPolicy"] == "OnFailure" and unmapped(e, "restart.policy") == "on-abnormal") or fail()),
    ("restart.policy", '[restart]\npolicy = "no"', lambda e: pod(e)["restartPolicy"] == "Never" or fail()),
    ("restart.delay", '[restart]\ndelay = "2s"', lambda e: unmapped(e, "restart.delay") == "2s" or fail()),
    ("restart.max_delay", '[restart]\nmax_delay = "1m"', lambda e: unmapped(e, "restart.max_delay") == "60s" or fail()),
    ("restart.reset_after", '[restart]\nreset_after = "500ms"', lambda e: unmapped(e, "restart.reset_after") == "500ms" or fail()),
    ("restart.limit_burst", "[restart]\nlimit_burst = 9", lambda e: unmapped(e, "restart.limit_burst") == 9 or fail()),
    ("restart.limit_interval", '[restart]\nlimit_interval = "5m"', lambda e: unmapped(e, "restart.limit_interval") == "300s" or fail()),
    ("stop.signal", '[stop]\nsignal = "SIGQUIT"',
     lambda e: container(e)["lifecycle"] == {"preStop": {"exec": {"command": ["/bin/sh", "-c", "kill -QUIT 1"]}}} or fail()),
    ("stop.signal", '[stop]\nsignal = "SIGRTMIN+3"', lambda e: container(e)["lifecycle"]["preStop"]["exec"]["command"][2] == "kill -RTMIN+3 1" or fail()),
    ("stop.signal", '[stop]\nsignal = "TERM"', lambda e: "lifecycle" not in container(e) or fail()),
    ("stop.timeout", '[stop]\ntimeout = "45s"', lambda e: pod(e)["terminationGracePeriodSeconds"] == 45 or fail()),
    ("stop.timeout", '[stop]\ntimeout = "2500ms"', lambda e: (pod(e)["terminationGracePeriodSeconds"] == 3 and unmapped(e, "stop.timeout") == "2500ms") or fail()),
    ("health.command", '[health]\ncommand = ["pgrep", "sleep"]\non_failure = "restart"', lambda e: check_probe(e, "livenessProbe", ["pgrep", "sleep"], 30, 30, 3)),
    ("health.interval", '[health]\ncommand = ["true"]\ninterval = "5s"\non_failure = "restart"', lambda e: check_probe(e, "livenessProbe", ["true"], 5, 30, 3)),
    ("health.interval", '[health]\ncommand = ["true"]\ninterval = "1500ms"\non_failure = "restart"',
     lambda e: (check_probe(e, "livenessProbe", ["true"], 2, 30, 3) or True) and unmapped(e, "health.interval") == "1500ms" or fail()),
    ("health.timeout", '[health]\ncommand = ["true"]\ntimeout = "2s"\non_failure = "restart"', lambda e: check_probe(e, "livenessProbe", ["true"], 30, 2, 3)),
    ("health.retries", '[health]\ncommand = ["true"]\nretries = 7\non_failure = "restart"', lambda e: check_probe(e, "livenessProbe", ["true"], 30, 30, 7)),
    ("health.start_period", '[health]\ncommand = ["true"]\nstart_period = "20s"\non_failure = "restart"',
     lambda e: container(e)["livenessProbe"]["initialDelaySeconds"] == 20 or fail()),
    ("health.on_failure", '[health]\ncommand = ["true"]', lambda e: check_probe(e, "readinessProbe", ["true"], 30, 30, 3)),
    ("health.on_failure", '[health]\ncommand = ["true"]\non_failure = "freeze"',
     lambda e: (check_probe(e, "livenessProbe", ["true"], 30, 30, 3) or True) and unmapped(e, "health.on_failure") == "freeze" or fail()),
    ("freeze.near_memory_max", '[resources]\nmemory_max = "64M"\n[freeze]\nnear_memory_max = 0.9', lambda e: unmapped(e, "freeze.near_memory_max") == 0.9 or fail()),
    ("freeze.on_host_pressure", "[freeze]\non_host_pressure = { memory = 40.0, cpu = 80.0 }",
     lambda e: unmapped(e, "freeze.on_host_pressure") == {"cpu": 80.0, "memory": 40.0} or fail()),
    ("freeze.max_frozen", '[freeze]\nmax_frozen = "30s"', lambda e: unmapped(e, "freeze.max_frozen") == "30s" or fail()),
]


def fail() -> bool:
    raise AssertionError("the manifest does not show the key as expected")


def check_ports(e: KubeExport) -> None:
    assert container(e)["ports"] == [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 53, "protocol": "UDP"}]
    service = e.documents[1]
    assert service["kind"] == "Service"
    assert service["spec"]["selector"] == {m.UNIT_LABEL: "app"} == e.documents[0]["metadata"]["labels"]
    assert service["spec"]["ports"] == [
        {"name": "tcp-8080", "port": 8080, "targetPort": 80, "protocol": "TCP"},
        {"name": "udp-5353", "port": 5353, "targetPort": 53, "protocol": "UDP"},
    ]


def check_binds(e: KubeExport) -> None:
    assert pod(e)["volumes"] == [{"name": "bind-0", "hostPath": {"path": "/srv/www"}}, {"name": "bind-1", "hostPath": {"path": "/var/log/app"}}]
    assert container(e)["volumeMounts"] == [
        {"name": "bind-0", "mountPath": "/www", "readOnly": True},
        {"name": "bind-1", "mountPath": "/log"},
    ]
    assert any(w.startswith("app: [rootfs].binds: hostPath") for w in e.warnings)


def check_tmpfs(e: KubeExport) -> None:
    assert pod(e)["volumes"] == [
        {"name": "tmpfs-0", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
        {"name": "tmpfs-1", "emptyDir": {"medium": "Memory"}},
    ]
    assert container(e)["volumeMounts"] == [{"name": "tmpfs-0", "mountPath": "/tmp"}, {"name": "tmpfs-1", "mountPath": "/run"}]
    assert not any("tmpfs" in w for w in e.warnings)


def check_probe(e: KubeExport, kind: str, command: list[str], period: int, timeout: int, retries: int) -> None:
    probe = container(e)[kind]
    assert probe == {"exec": {"command": command}, "periodSeconds": period, "timeoutSeconds": timeout, "failureThreshold": retries}


# a Deployment forces restartPolicy Always: test_a_deployment_forces_always
CASES = [
    pytest.param(key, toml, check, kind, id=f"{kind}-{key}-{index}")
    for kind in ("pod", "deployment")
    for index, (key, toml, check) in enumerate(EXAMPLES)
    if not (kind == "deployment" and key == "restart.policy")
]


@pytest.mark.parametrize(("key", "toml", "check", "kind"), CASES)
def test_each_key_maps_validates_and_round_trips(key: str, toml: str, check: Check, kind: str) -> None:
    unit = unit_of(toml)
    exported = round_trip(unit, ExportOptions(kind=kind))  # type: ignore[arg-type]
    validate(exported.documents)
    check(exported)


def test_the_examples_cover_every_unit_key() -> None:
    sections = {
        "unit": parse.UNIT_KEYS, "exec": parse.EXEC_KEYS, "rootfs": parse.ROOTFS_KEYS, "resources": parse.RESOURCES_KEYS,
        "restart": parse.RESTART_KEYS, "stop": parse.STOP_KEYS, "health": parse.HEALTH_KEYS, "freeze": parse.FREEZE_KEYS,
    }  # fmt: skip
    every = {f"{s}.{k}" for s, keys in sections.items() for k in keys}
    covered = {key for key, _toml, _check in EXAMPLES} | {"rootfs.layers"}  # test_a_unit_from_layers_*
    assert every - covered == set()


def test_a_unit_from_layers_needs_push_then_runs_the_pushed_image(tmp_path: Path) -> None:
    base = {"exec": {"command": ["/bin/httpd", "-f"]}, "rootfs": {"layers": [str(tmp_path / "base"), str(tmp_path / "app")]}}
    unit = unit_of('[rootfs]\nwritable = "ephemeral"', base=base)
    assert needs_push(unit) == "it is built from layer folders (no image reference)"
    with pytest.raises(ExportError, match=r"^app: it is built from layer folders .*--push REGISTRY"):
        export_unit(unit)
    exported = export_unit(unit, ExportOptions(image=PUSHED))
    validate(exported.documents)
    # no Entrypoint of its own: the command is the whole argv, whatever the pushed config says
    assert container(exported)["image"] == PUSHED
    assert container(exported)["command"] == ["/bin/httpd", "-f"] and "args" not in container(exported)
    # imported back it is an image unit of the pushed image, with the same manifest
    text = "---\n".join(yaml.safe_dump(d) for d in exported.documents)
    back = import_manifests(text, "x.yaml", UNITS_DIR).units[0]
    again = parse.parse_unit("app", tomllib.loads(back.text), UNITS_DIR / "app.toml")
    assert again.rootfs is not None and again.rootfs.image == "docker://" + PUSHED
    assert export_unit(again).documents == exported.documents


def test_an_image_that_is_no_registry_reference_needs_push(tmp_path: Path) -> None:
    unit = unit_of(f'[rootfs]\nimage = "{tmp_path}/layout:v1"')
    assert needs_push(unit) == f"its image {tmp_path}/layout:v1 is not in a registry"
    assert needs_push(unit_of("")) is None


def test_a_unit_without_rootfs_cannot_be_exported() -> None:
    unit = parse.parse_unit("host", {"exec": {"command": ["/bin/true"]}}, UNITS_DIR / "host.toml")
    with pytest.raises(ExportError, match="without \\[rootfs\\] runs on the host"):
        export_unit(unit)


def test_a_named_user_is_resolved_to_the_ids_given() -> None:
    unit = unit_of('[exec]\nuser = "www-data"')
    exported = round_trip(unit, ExportOptions(), ids=(33, 33))
    validate(exported.documents)
    assert container(exported)["securityContext"]["runAsUser"] == 33
    assert container(exported)["securityContext"]["runAsGroup"] == 33
    assert unmapped(exported, "exec.user") == "www-data"  # import gives the name back
    unknown = export_unit(unit, ExportOptions(), ids=None)
    assert "runAsUser" not in container(unknown)["securityContext"]
    assert unmapped(unknown, "exec.user") == "www-data"


def test_a_deployment_forces_always() -> None:
    unit = unit_of('[restart]\npolicy = "on-failure"')
    exported = round_trip(unit, ExportOptions(kind="deployment"))
    validate(exported.documents)
    assert pod(exported)["restartPolicy"] == "Always"
    assert unmapped(exported, "restart.policy") == "on-failure"
    deployment = exported.documents[0]
    assert deployment["spec"]["selector"] == {"matchLabels": {m.UNIT_LABEL: "app"}}
    assert deployment["spec"]["template"]["metadata"]["labels"] == {m.UNIT_LABEL: "app"}
    always = export_unit(unit_of('[restart]\npolicy = "always"'), ExportOptions(kind="deployment"))
    assert not any("[restart].policy" in w for w in always.warnings)


def test_units_whose_kubernetes_names_clash_are_not_exported_together() -> None:
    assert name_clash(["web", "db", "web_1"]) is None
    message = name_clash(["web_1", "db", "web.1"])
    assert message is not None and "web_1" in message and "web.1" in message and "'web-1'" in message
    # a unit named twice is one unit (supctl drops the repeat)
    assert name_clash(["web", "web"]) is None


def test_namespace_and_names_kubernetes_accepts() -> None:
    unit = unit_of('[rootfs]\nports = ["8080:80"]', name="my_app.v2")
    exported = round_trip(unit, ExportOptions(namespace="shop"))
    validate(exported.documents)
    for document in exported.documents:
        assert document["metadata"]["name"] == "my-app-v2"
        assert document["metadata"]["namespace"] == "shop"
    assert container(exported)["name"] == "my-app-v2"
    assert annotations(exported)[m.UNIT_ANNOTATION] == "my_app.v2"


def test_a_slice_too_long_for_a_label_is_kept_as_an_annotation() -> None:
    long = "s" * 64
    exported = round_trip(unit_of(f'[unit]\nslice = "{long}"'), ExportOptions())
    validate(exported.documents)
    assert m.SLICE_LABEL not in exported.documents[0]["metadata"]["labels"]
    assert unmapped(exported, "unit.slice") == long


def test_a_unit_with_everything_at_once_round_trips() -> None:
    toml = "\n".join(t for _k, t, _c in EXAMPLES if "policy" not in t and "seccomp" not in t and "network" not in t)
    data: dict[str, Any] = {}
    for _key, snippet, _check in EXAMPLES:
        parsed = tomllib.loads(snippet)
        if any(k in parsed.get("exec", {}) for k in ("entrypoint", "user", "seccomp", "cap_drop")) or "network" in parsed.get("rootfs", {}):
            continue
        for section, keys in parsed.items():
            data.setdefault(section, {}).update(keys)
    assert toml
    data["rootfs"].pop("hostname")
    data["rootfs"]["ports"] = ["8080:80"]
    data["unit"].pop("requires")
    data["resources"]["memory_high"] = "32M"  # at most memory_max
    unit = parse.parse_unit("app", merge(BASE, data), UNITS_DIR / "app.toml")
    exported = round_trip(unit, ExportOptions())
    validate(exported.documents)
    # every key there is either in the manifest or named by a warning
    assert len(exported.warnings) >= 15


def test_the_images_healthcheck_becomes_the_probe() -> None:
    from supervisor.rootfs.oci import Healthcheck, ImageConfig

    config = ImageConfig(healthcheck=Healthcheck(("CMD-SHELL", "pgrep httpd"), interval_ns=5_000_000_000, retries=2))
    unit = unit_of("")
    exported = export_unit(unit, ExportOptions(), image_config=config)
    validate(exported.documents)
    check_probe(exported, "readinessProbe", ["/bin/sh", "-c", "pgrep httpd"], 5, 30, 2)  # docker's checks only report
    assert "app: [health]: the image's Healthcheck, which Kubernetes does not run, is the probe" in exported.warnings
    # the unit's own [health] wins; "NONE" turns the image's off
    own = export_unit(unit_of('[health]\ncommand = ["true"]'), ExportOptions(), image_config=config)
    assert container(own)["readinessProbe"]["exec"]["command"] == ["true"]
    off = export_unit(unit, ExportOptions(), image_config=ImageConfig(healthcheck=Healthcheck(("NONE",))))
    assert "readinessProbe" not in container(off) and "livenessProbe" not in container(off)
    # imported back, the probe is the unit's own [health]: the same manifest
    text = "---\n".join(yaml.safe_dump(d) for d in exported.documents)
    again = parse.parse_unit("app", tomllib.loads(import_manifests(text, "x.yaml", UNITS_DIR).units[0].text), UNITS_DIR / "app.toml")
    assert export_unit(again, ExportOptions(), image_config=config).documents == exported.documents
