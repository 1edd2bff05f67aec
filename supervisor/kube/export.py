"""A unit as Kubernetes manifests: one Pod or Deployment, plus a Service when
it publishes ports. Pure: the caller gives the unit as its file says it, the
user's ids when `[exec].user` is a name (looked up in the image's passwd),
and the image reference when the unit's own is not one a cluster can pull.

The mapping is the table in docs/kubernetes.md. A key with no Kubernetes
field is never dropped silently: it becomes a warning naming the unit and the
key, and an annotation `supd.dev/unmapped-<section>.<key>` holding its value
as JSON, which `supctl import kube` puts back.
"""

from __future__ import annotations

import json
import signal
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

from supervisor.kube import mapping as m
from supervisor.rootfs.oci import ImageConfig
from supervisor.units.imageconfig import ImageConfigError, health_from_image
from supervisor.units.model import (
    FreezeSpec,
    HealthSpec,
    Resources,
    RestartSpec,
    StopSpec,
    TmpfsSpec,
    Unit,
)

Kind = Literal["pod", "deployment"]
KINDS: Final = ("pod", "deployment")
REGISTRY_PREFIX: Final = "docker://"


class ExportError(ValueError):
    """The unit cannot be exported at all; the message names the unit and why."""


@dataclass(frozen=True)
class ExportOptions:
    kind: Kind = "pod"
    namespace: str | None = None
    # the image to run instead of the unit's own: a pushed "REG/NAME:TAG@sha256:…"
    image: str | None = None


@dataclass(frozen=True)
class KubeExport:
    unit: str
    documents: tuple[dict[str, Any], ...]
    warnings: tuple[str, ...] = ()
    # lines the YAML carries as comments above the documents
    comments: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "documents": list(self.documents),
            "warnings": list(self.warnings),
            "comments": list(self.comments),
        }


def name_clash(units: list[str]) -> str | None:
    """Two units of one export whose objects get the same name ("web_1" and
    "web.1" both become Pod and Service "web-1": applied together, the second
    would replace the first), as a message; None when every name is its own."""
    owner: dict[str, str] = {}
    for unit in units:
        name = m.kube_name(unit)
        first = owner.setdefault(name, unit)
        if first != unit:
            return (
                f"units {first} and {unit} would both be named {name!r} in Kubernetes "
                "(its names have no '_' or '.'): export them one at a time, or rename one"
            )
    return None


def needs_push(unit: Unit) -> str | None:
    """Why a cluster could not pull this unit's root filesystem (then it must
    be pushed to a registry first), or None."""
    rootfs = unit.rootfs
    if rootfs is None:
        return None
    if rootfs.layers:
        return "it is built from layer folders (no image reference)"
    if rootfs.image is not None and not rootfs.image.startswith(REGISTRY_PREFIX):
        return f"its image {rootfs.image} is not in a registry"
    return None


def registry_image(unit: Unit) -> str | None:
    """The unit's image as a cluster names it ("docker.io/library/nginx:1.25")."""
    image = unit.rootfs.image if unit.rootfs else None
    if image is None or not image.startswith(REGISTRY_PREFIX):
        return None
    return image.removeprefix(REGISTRY_PREFIX)


def numeric_ids(user: str | None) -> tuple[int, int | None] | None:
    """"1000:100" → (1000, 100); "1000" → (1000, None); a name → None."""
    if user is None:
        return None
    uid, _colon, gid = user.partition(":")
    if uid.isdigit() and (not gid or gid.isdigit()):
        return int(uid), int(gid) if gid else None
    return None


@dataclass
class _Doc:
    """What export collects while it walks the unit."""

    unit: Unit
    warnings: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    annotations: dict[str, str] = field(default_factory=dict)

    def warn(self, key: str, message: str) -> None:
        self.warnings.append(f"{self.unit.name}: {key}: {message}")

    def unmapped(self, section: str, key: str, value: object, why: str) -> None:
        """A key with no Kubernetes field: a warning and an annotation with its value."""
        self.annotations[f"{m.UNMAPPED_PREFIX}{section}.{key}"] = json.dumps(value, separators=(",", ":"))
        self.warn(f"[{section}].{key}", f"{why}; kept as annotation {m.UNMAPPED_PREFIX}{section}.{key}")


def export_unit(
    unit: Unit,
    options: ExportOptions = ExportOptions(),
    ids: tuple[int, int | None] | None = None,
    image_config: ImageConfig | None = None,
) -> KubeExport:
    """The manifests for `unit`. `ids`: the (uid, gid) a named `[exec].user`
    has in the image's passwd (None when it is numeric, unset or unknown).
    `image_config`: its image's config, when the image is in the store: a
    Healthcheck there becomes the probe (Kubernetes runs no image's
    Healthcheck); the rest of the config the cluster's runtime applies itself."""
    if options.kind not in KINDS:
        raise ExportError(f"{unit.name}: kind: expected pod or deployment, got {options.kind!r}")
    if unit.rootfs is None:
        raise ExportError(f"{unit.name}: a unit without [rootfs] runs on the host; there is no image to run in a pod")
    image = options.image or registry_image(unit)
    if image is None:
        raise ExportError(f"{unit.name}: {needs_push(unit)}: export it with --push REGISTRY to push it first")
    doc = _Doc(unit)
    if unit.health is None and image_config is not None and image_config.healthcheck is not None:
        unit = _with_image_health(doc, unit, image_config)
        doc.unit = unit
    name = m.kube_name(unit.name)
    container = _container(doc, name, image, ids)
    pod_spec = _pod_spec(doc, container, options.kind)
    labels = {m.UNIT_LABEL: name}
    if unit.unit.slice is not None:
        if len(unit.unit.slice) <= m.MAX_LABEL_VALUE:
            labels[m.SLICE_LABEL] = unit.unit.slice
        else:
            doc.unmapped("unit", "slice", unit.unit.slice, f"a label value has at most {m.MAX_LABEL_VALUE} characters")
    doc.annotations[m.UNIT_ANNOTATION] = unit.name
    if unit.unit.description:
        doc.annotations[m.DESCRIPTION_ANNOTATION] = unit.unit.description
    _unit_section(doc)
    service = _service(doc, name, options.namespace)  # before the annotations are copied
    metadata: dict[str, Any] = {"name": name}
    if options.namespace:
        metadata["namespace"] = options.namespace
    metadata["labels"] = labels
    metadata["annotations"] = dict(sorted(doc.annotations.items()))
    if options.kind == "pod":
        main: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}
    else:
        main = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": metadata,
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {m.UNIT_LABEL: name}},
                "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
            },
        }
    documents = [main]
    if service is not None:
        documents.append(service)
    return KubeExport(unit.name, tuple(documents), tuple(doc.warnings), tuple(doc.comments))


def _with_image_health(doc: _Doc, unit: Unit, config: ImageConfig) -> Unit:
    assert config.healthcheck is not None
    try:
        health = health_from_image(config.healthcheck, f"{unit.name}: image")
    except ImageConfigError as exc:
        doc.warn("[health]", f"the image's Healthcheck cannot be a probe: {exc}")
        return unit
    if health is None:
        return unit
    doc.warn("[health]", "the image's Healthcheck, which Kubernetes does not run, is the probe")
    return replace(unit, health=health)


def _unit_section(doc: _Doc) -> None:
    section = doc.unit.unit
    if section.after:
        doc.unmapped("unit", "after", list(section.after), "Kubernetes has no start order between pods")
    if section.requires:
        doc.unmapped("unit", "requires", list(section.requires), "Kubernetes has no dependencies between pods")
    if section.priority != 0:
        doc.unmapped("unit", "priority", section.priority, "the freeze order under host pressure has no Kubernetes equivalent")
    if not section.enabled:
        doc.unmapped("unit", "enabled", False, "a pod always starts once created")


def _container(doc: _Doc, name: str, image: str, ids: tuple[int, int | None] | None) -> dict[str, Any]:
    unit = doc.unit
    spec, rootfs = unit.exec, unit.rootfs
    assert rootfs is not None
    container: dict[str, Any] = {"name": name, "image": image, "imagePullPolicy": m.PULL_TO_KUBE[rootfs.pull]}
    # Kubernetes' command replaces the image's Entrypoint and drops its Cmd,
    # args replaces the Cmd: the unit's own rule (units/imageconfig.py)
    if spec.entrypoint:
        container["command"] = list(spec.entrypoint)
        if spec.command:
            container["args"] = list(spec.command)
    elif spec.entrypoint is not None or rootfs.layers:
        # no Entrypoint ([] or no image of its own): the command is the whole argv,
        # whatever config a pushed image carries
        container["command"] = list(spec.command)
    elif spec.command:
        container["args"] = list(spec.command)
    if spec.environment:
        container["env"] = [{"name": k, "value": v} for k, v in spec.environment]
    if spec.working_directory is not None:
        container["workingDir"] = spec.working_directory
    ports = [_container_port(p) for p in rootfs.ports]
    if ports:
        container["ports"] = ports
    resources = _resources(doc, unit.resources)
    if resources:
        container["resources"] = resources
    security = _security(doc, ids)
    if security:
        container["securityContext"] = security
    if unit.health is not None:
        probe_kind, probe = _probe(doc, unit.health)
        container[probe_kind] = probe
    stop_signal = unit.stop.signal
    if stop_signal is not None and stop_signal != int(signal.SIGTERM):
        # the kubelet sends TERM after the hook: the unit's signal goes first
        word = m.signal_word(stop_signal)
        container["lifecycle"] = {"preStop": {"exec": {"command": ["/bin/sh", "-c", f"kill -{word} 1"]}}}
        doc.warn("[stop].signal", f"sent by a preStop hook (kill -{word} 1, needs /bin/sh in the image), before the kubelet's TERM")
    mounts = _mounts(doc)
    if mounts:
        container["volumeMounts"] = mounts
    return container


def _container_port(port: Any) -> dict[str, Any]:
    return {"containerPort": port.container_port, "protocol": port.protocol.upper()}


def _resources(doc: _Doc, res: Resources) -> dict[str, Any]:
    limits: dict[str, str] = {}
    requests: dict[str, str] = {}
    if res.memory_max is not None:
        limits["memory"] = m.memory_quantity(res.memory_max)
    if res.memory_high is not None:
        requests["memory"] = m.memory_quantity(res.memory_high)
    if res.cpu_quota is not None:
        limits["cpu"] = m.cpu_quota_quantity(res.cpu_quota)
        if abs(res.cpu_quota * 1000 - round(res.cpu_quota * 1000)) > 1e-6:
            doc.unmapped("resources", "cpu_quota", f"{res.cpu_quota * 100:g}%", "Kubernetes counts CPUs in millicores; rounded")
    if res.cpu_weight is not None:
        requests["cpu"] = m.cpu_weight_quantity(res.cpu_weight)
        if res.cpu_quota is not None and m.millicores(requests["cpu"]) > m.millicores(limits["cpu"]):
            # Kubernetes refuses requests above limits
            requests["cpu"] = limits["cpu"]
            doc.unmapped("resources", "cpu_weight", res.cpu_weight, "requests.cpu would exceed limits.cpu (cpu_quota); lowered to it")
    if res.pids_max is not None:
        doc.unmapped("resources", "pids_max", res.pids_max, "a pod's pid limit is the kubelet's (podPidsLimit), not the pod's")
    if res.io_weight is not None:
        doc.unmapped("resources", "io_weight", res.io_weight, "Kubernetes has no IO weight")
    if res.cpuset is not None:
        doc.comments.append(f"{doc.unit.name}: cpuset {res.cpuset}: pinning is the kubelet's CPU manager (static policy, whole CPUs)")
        doc.unmapped("resources", "cpuset", res.cpuset, "CPU pinning is the kubelet's CPU manager policy, not the pod's")
    out: dict[str, Any] = {}
    if limits:
        out["limits"] = limits
    if requests:
        out["requests"] = requests
    return out


def _security(doc: _Doc, ids: tuple[int, int | None] | None) -> dict[str, Any]:
    spec, rootfs = doc.unit.exec, doc.unit.rootfs
    assert rootfs is not None
    security: dict[str, Any] = {}
    found = numeric_ids(spec.user) or ids
    if spec.user is not None:
        if found is None:
            doc.unmapped("exec", "user", spec.user, "no uid for the name: not in the image's /etc/passwd, or the image is not pulled yet")
        else:
            uid, gid = found
            security["runAsUser"] = uid
            if gid is not None:
                security["runAsGroup"] = gid
            if numeric_ids(spec.user) is None:
                doc.unmapped("exec", "user", spec.user, f"the name is uid {uid} gid {gid} in the image's /etc/passwd")
    caps: dict[str, list[str]] = {}
    if spec.cap_add:
        caps["add"] = list(spec.cap_add)
    if spec.cap_drop:
        caps["drop"] = list(spec.cap_drop)
    if caps:
        security["capabilities"] = caps
    if rootfs.writable == "readonly":
        security["readOnlyRootFilesystem"] = True
    mode = doc.unit.seccomp
    if mode == "default":
        security["seccompProfile"] = {"type": "RuntimeDefault"}
    elif mode == "unconfined":
        security["seccompProfile"] = {"type": "Unconfined"}
    else:
        doc.unmapped("exec", "seccomp", mode, "a profile file must be installed on each node (seccompProfile Localhost)")
    if spec.log_driver is not None:
        doc.unmapped("exec", "log_driver", spec.log_driver, "a container's output is the kubelet's to keep (kubectl logs)")
    if spec.oneshot:
        doc.unmapped("exec", "type", spec.type, "a step that runs to its end before others is an init container of their pod; "
                     "exported alone it is a container its restartPolicy runs once")
    return security


def _probe(doc: _Doc, health: HealthSpec) -> tuple[str, dict[str, Any]]:
    probe: dict[str, Any] = {
        "exec": {"command": list(health.command)},
        "periodSeconds": m.whole_seconds(health.interval),
        "timeoutSeconds": m.whole_seconds(health.timeout),
        "failureThreshold": health.retries,
    }
    if health.start_period:
        probe["initialDelaySeconds"] = m.whole_seconds(health.start_period)
    for key, seconds in (("interval", health.interval), ("timeout", health.timeout), ("start_period", health.start_period)):
        if seconds and seconds != int(seconds):
            doc.unmapped("health", key, m.duration_text(seconds), "probes count whole seconds; rounded up")
    if health.on_failure == "none":
        # supd only reports; a liveness probe would restart the container
        doc.warn("[health].on_failure", '"none" (report only) is a readinessProbe: it marks the pod not ready, nothing restarts')
        return "readinessProbe", probe
    if health.on_failure != "restart":
        doc.unmapped("health", "on_failure", health.on_failure, "a failing livenessProbe restarts the container")
    return "livenessProbe", probe


def _mounts(doc: _Doc) -> list[dict[str, Any]]:
    rootfs = doc.unit.rootfs
    assert rootfs is not None
    mounts: list[dict[str, Any]] = []
    for index, bind in enumerate(rootfs.binds):
        mount: dict[str, Any] = {"name": f"bind-{index}", "mountPath": bind.target}
        if bind.readonly:
            mount["readOnly"] = True
        mounts.append(mount)
    if rootfs.binds:
        doc.warn("[rootfs].binds", "hostPath volumes: the pod sees the node's folders, which must exist on every node it may run on")
    for index, tmpfs in enumerate(rootfs.tmpfs):
        mounts.append({"name": f"tmpfs-{index}", "mountPath": tmpfs.target})
    if any(_tmpfs_needs_annotation(t) for t in rootfs.tmpfs):
        doc.unmapped("rootfs", "tmpfs", [m.tmpfs_text(t) for t in rootfs.tmpfs], "an emptyDir in memory has no mode or mount flags")
    return mounts


def _tmpfs_needs_annotation(spec: TmpfsSpec) -> bool:
    return spec.mode != 0o1777 or spec.options != TmpfsSpec(spec.target).options


def _volumes(doc: _Doc) -> list[dict[str, Any]]:
    rootfs = doc.unit.rootfs
    assert rootfs is not None
    volumes: list[dict[str, Any]] = []
    for index, bind in enumerate(rootfs.binds):
        volumes.append({"name": f"bind-{index}", "hostPath": {"path": str(bind.source)}})
    for index, tmpfs in enumerate(rootfs.tmpfs):
        empty: dict[str, Any] = {"medium": "Memory"}
        if tmpfs.size is not None:
            empty["sizeLimit"] = m.memory_quantity(tmpfs.size)
        volumes.append({"name": f"tmpfs-{index}", "emptyDir": empty})
    return volumes


def _pod_spec(doc: _Doc, container: dict[str, Any], kind: Kind) -> dict[str, Any]:
    unit = doc.unit
    rootfs = unit.rootfs
    assert rootfs is not None
    spec: dict[str, Any] = {"containers": [container]}
    policy = m.RESTART_TO_KUBE[unit.restart.policy]
    if kind == "deployment" and policy != "Always":
        doc.unmapped("restart", "policy", unit.restart.policy, "a Deployment's pods always restart (restartPolicy Always)")
        policy = "Always"
    elif unit.restart.policy == "on-abnormal":
        doc.unmapped("restart", "policy", "on-abnormal", "Kubernetes restarts on any failure (OnFailure), also a non-zero exit")
    spec["restartPolicy"] = policy
    _restart_timing(doc, unit.restart)
    spec["terminationGracePeriodSeconds"] = m.whole_seconds(unit.stop.timeout)
    _stop_timing(doc, unit.stop)
    if rootfs.network == "host":
        spec["hostNetwork"] = True
    elif rootfs.network != "bridge":
        doc.unmapped("rootfs", "network", rootfs.network, "a pod is on the cluster's network (or the node's, hostNetwork)")
    if rootfs.userns == "auto":
        spec["hostUsers"] = False
    if rootfs.hostname is not None:
        if m.DNS_LABEL_RE.fullmatch(rootfs.hostname):
            spec["hostname"] = rootfs.hostname
        else:
            doc.unmapped("rootfs", "hostname", rootfs.hostname, "a pod's hostname is one DNS label (no dots)")
    if rootfs.hosts:
        by_address: dict[str, list[str]] = {}
        for host, address in rootfs.hosts:
            by_address.setdefault(address, []).append(host)
        spec["hostAliases"] = [{"ip": a, "hostnames": hs} for a, hs in sorted(by_address.items())]
    if rootfs.dns:
        spec["dnsPolicy"] = "None"
        spec["dnsConfig"] = {"nameservers": list(rootfs.dns)}
    volumes = _volumes(doc)
    if volumes:
        spec["volumes"] = volumes
    if rootfs.init:
        doc.unmapped("rootfs", "init", True, "no init process is put in front of the command (shareProcessNamespace makes the pause container reap)")
    if rootfs.devices:
        doc.unmapped("rootfs", "devices", [f"{d.path}:{d.access}" for d in rootfs.devices], "host devices need a device plugin")
    if rootfs.writable == "persistent":
        doc.unmapped(
            "rootfs", "writable", "persistent",
            "a container's root is ephemeral in Kubernetes, lost when the pod goes; mount a PersistentVolumeClaim where data must last",
        )  # fmt: skip
    if unit.freeze is not None:
        _freeze(doc, unit.freeze)
    return spec


def _restart_timing(doc: _Doc, restart: RestartSpec) -> None:
    defaults = RestartSpec()
    for key in ("delay", "max_delay", "reset_after", "limit_interval"):
        value = getattr(restart, key)
        if value != getattr(defaults, key):
            doc.unmapped("restart", key, m.duration_text(value), "the kubelet's restart back-off is fixed (10s doubling to 5m)")
    if restart.limit_burst != defaults.limit_burst:
        doc.unmapped("restart", "limit_burst", restart.limit_burst, "the kubelet has no start limit")


def _stop_timing(doc: _Doc, stop: StopSpec) -> None:
    if stop.timeout != int(stop.timeout):
        doc.unmapped("stop", "timeout", m.duration_text(stop.timeout), "terminationGracePeriodSeconds counts whole seconds; rounded up")


def _freeze(doc: _Doc, freeze: FreezeSpec) -> None:
    why = "Kubernetes never freezes a container"
    if freeze.near_memory_max is not None:
        doc.unmapped("freeze", "near_memory_max", freeze.near_memory_max, why)
    if freeze.on_host_pressure:
        doc.unmapped("freeze", "on_host_pressure", dict(freeze.on_host_pressure), why)
    if freeze.max_frozen is not None:
        doc.unmapped("freeze", "max_frozen", m.duration_text(freeze.max_frozen), why)


def _service(doc: _Doc, name: str, namespace: str | None) -> dict[str, Any] | None:
    rootfs = doc.unit.rootfs
    assert rootfs is not None
    if not rootfs.ports:
        return None
    ports = []
    for port in rootfs.ports:
        ports.append({
            "name": f"{port.protocol}-{port.host_port}",
            "port": port.host_port,
            "targetPort": port.container_port,
            "protocol": port.protocol.upper(),
        })  # fmt: skip
    if any(p.host_ip for p in rootfs.ports):
        doc.unmapped("rootfs", "ports", [str(p) for p in rootfs.ports], "a Service listens on the cluster's addresses, not one host address")
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    metadata["labels"] = {m.UNIT_LABEL: name}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {"selector": {m.UNIT_LABEL: name}, "ports": ports},
    }
