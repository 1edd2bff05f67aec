"""Kubernetes Pods and Deployments as unit files: the inverse of export.py.

`import_manifests` is pure: YAML text in, unit files (TOML text, each
checked by units/parse.py) and warnings out, or one `KubeImportError` naming
the document and the field. `write_units` puts them in a units folder all at
once or not at all.

A pod with one container becomes one unit, named after the pod (or its
`supd.dev/unit` annotation); a pod with several becomes one unit per
container, `<pod>-<container>`, in one slice, each started after the one
before it in initContainers order. Services next to the pods publish their
ports on the host. Whatever has no unit equivalent is a warning; what the
unit could not run without (a CSI or other cluster volume, extra networks)
is an error.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from supervisor.kube import mapping as m
from supervisor.kube.tomlwrite import unit_toml
from supervisor.units import values
from supervisor.units.parse import (
    EXEC_KEYS,
    FREEZE_KEYS,
    HEALTH_KEYS,
    RESOURCES_KEYS,
    RESTART_KEYS,
    ROOTFS_KEYS,
    STOP_KEYS,
    UNIT_KEYS,
    UnitFileError,
    parse_unit,
)

SECTION_KEYS: Final = {
    "unit": UNIT_KEYS, "exec": EXEC_KEYS, "rootfs": ROOTFS_KEYS, "resources": RESOURCES_KEYS,
    "restart": RESTART_KEYS, "stop": STOP_KEYS, "health": HEALTH_KEYS, "freeze": FREEZE_KEYS,
}  # fmt: skip
KINDS: Final = {"Pod": "v1", "Deployment": "apps/v1", "Service": "v1"}
LEFT_OUT: Final = "no unit equivalent, left out"
MAX_DOCUMENTS: Final = 1000


class KubeImportError(ValueError):
    """A manifest that cannot become units; the message names the document and field."""


@dataclass(frozen=True)
class ImportedUnit:
    name: str
    text: str  # the unit file, TOML


@dataclass(frozen=True)
class KubeImport:
    units: tuple[ImportedUnit, ...]
    warnings: tuple[str, ...]


class _Node:
    """One mapping of a manifest, with its field path; remembers which keys
    were read so the rest can be reported."""

    def __init__(self, where: str, path: str, data: object, warnings: list[str]) -> None:
        if not isinstance(data, Mapping):
            raise KubeImportError(f"{where}: {path or 'document'}: expected a mapping, got {_short(data)}")
        self.where, self.path, self.data, self.warnings = where, path, data, warnings
        self.used: set[str] = set()

    def field(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, expected: str) -> KubeImportError:
        got = self.data.get(key)
        return KubeImportError(f"{self.where}: {self.field(key)}: expected {expected}, got {_short(got)}")

    def warn(self, key: str, message: str) -> None:
        self.warnings.append(f"{self.where}: {self.field(key)}: {message}")

    def has(self, key: str) -> bool:
        return key in self.data

    def get(self, key: str, kind: type | tuple[type, ...], expected: str, default: Any = None) -> Any:
        self.used.add(key)
        if key not in self.data or self.data[key] is None:
            return default
        value = self.data[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
            raise self.error(key, expected)
        return value

    def node(self, key: str) -> _Node | None:
        self.used.add(key)
        if self.data.get(key) is None:
            return None
        return _Node(self.where, self.field(key), self.data[key], self.warnings)

    def nodes(self, key: str) -> list[_Node]:
        raw = self.get(key, list, "a list", [])
        return [_Node(self.where, f"{self.field(key)}[{i}]", item, self.warnings) for i, item in enumerate(raw)]

    def strings(self, key: str) -> list[str] | None:
        raw = self.get(key, list, "a list of strings")
        if raw is not None and not all(isinstance(s, str) for s in raw):
            raise self.error(key, "a list of strings")
        return raw

    def leftover(self, ignore: tuple[str, ...] = ()) -> None:
        for key in self.data:
            if key not in self.used and key not in ignore:
                self.warn(str(key), LEFT_OUT)


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _short(value: object) -> str:
    text = json.dumps(value, default=str) if value is not None else "nothing"
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass
class _Pending:
    """A unit being built: its sections, and what Services need to find it."""

    name: str
    where: str
    sections: dict[str, dict[str, Any]]
    labels: dict[str, str]
    container_ports: list[tuple[int, str, str]]  # (port, protocol, port name)
    host_network: bool
    published: set[int] = field(default_factory=set)  # container ports with a host port
    # the keys export kept in annotations: they win over what was mapped
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)


def import_manifests(text: str, source: str, units_dir: Path) -> KubeImport:
    """Units for every Pod and Deployment in the YAML `text` (read from `source`)."""
    import yaml  # only import and export need it

    try:
        documents = [d for d in yaml.safe_load_all(text)]
    except yaml.YAMLError as exc:
        raise KubeImportError(f"{source}: expected valid YAML: {' '.join(str(exc).split())}") from None
    if len(documents) > MAX_DOCUMENTS:
        raise KubeImportError(f"{source}: expected at most {MAX_DOCUMENTS} documents, got {len(documents)}")
    warnings: list[str] = []
    pending: list[_Pending] = []
    services: list[_Node] = []
    for index, raw in enumerate(documents, 1):
        if raw is None:
            continue
        where = f"{source}: document {index}"
        if not isinstance(raw, Mapping):
            raise KubeImportError(f"{where}: expected a Kubernetes object (a mapping with kind), got {_short(raw)}")
        kind = raw.get("kind")
        if kind not in KINDS:
            raise KubeImportError(f"{where}: kind: expected Pod or Deployment (or a Service for them), got {_short(kind)}")
        if raw.get("apiVersion") != KINDS[kind]:
            raise KubeImportError(f"{where}: apiVersion: expected {KINDS[kind]} for a {kind}, got {_short(raw.get('apiVersion'))}")
        name = raw.get("metadata", {}).get("name") if isinstance(raw.get("metadata"), Mapping) else None
        where = f"{where} ({kind} {name})" if isinstance(name, str) else where
        doc = _Node(where, "", raw, warnings)
        doc.used.update(("kind", "apiVersion"))
        if kind == "Service":
            services.append(doc)
        else:
            pending += _workload(doc, kind)
    if not pending:
        raise KubeImportError(f"{source}: expected at least one Pod or Deployment, got none")
    seen: dict[str, str] = {}
    for p in pending:
        if p.name in seen:
            raise KubeImportError(f"{p.where}: metadata.name: unit {p.name} comes from {seen[p.name]} already")
        seen[p.name] = p.where
    for service in services:
        _service(service, pending)
    for p in pending:
        ports = p.sections["rootfs"].get("ports", [])
        for port, protocol, _name in p.container_ports:
            if port not in p.published:
                if p.host_network:
                    continue  # on the host's network already
                warnings.append(f"{p.where}: containerPort {port}/{protocol}: not published (no hostPort or Service), reachable on the container's address only")
        if ports:
            p.sections["rootfs"]["ports"] = ports
        for section, keys in p.overrides.items():
            p.sections[section].update(keys)
    units = tuple(_render(p, source, units_dir) for p in pending)
    return KubeImport(units, tuple(warnings))


def _render(p: _Pending, source: str, units_dir: Path) -> ImportedUnit:
    kind_name = p.where.split(": ", 1)[-1]
    # each section's keys in the order docs/units.md lists them
    ordered = {s: {k: p.sections[s][k] for k in SECTION_KEYS[s] if k in p.sections[s]} for s in SECTION_KEYS}
    text = unit_toml(ordered, header=f"imported from {source}, {kind_name}, by supctl import kube")
    path = units_dir / f"{p.name}.toml"
    try:
        parse_unit(p.name, tomllib.loads(text), path)
    except UnitFileError as exc:
        raise KubeImportError(f"{p.where}: would give an invalid unit: {exc}") from None
    return ImportedUnit(p.name, text)


def _workload(doc: _Node, kind: str) -> list[_Pending]:
    metadata = doc.node("metadata")
    if metadata is None:
        raise doc.error("metadata", "a mapping with name")
    name = metadata.get("name", str, "a name")
    if not name:
        raise metadata.error("name", "a name")
    labels = dict(metadata.get("labels", Mapping, "a mapping of labels", {}))
    annotations = dict(metadata.get("annotations", Mapping, "a mapping of annotations", {}))
    metadata.used.add("namespace")  # a unit has none; the folder is the namespace
    metadata.leftover()
    spec = doc.node("spec")
    if spec is None:
        raise doc.error("spec", "a mapping")
    if kind == "Deployment":
        replicas = spec.get("replicas", int, "an integer", 1)
        if replicas != 1:
            spec.warn("replicas", f"a unit runs once; {replicas} replicas become one")
        spec.used.add("selector")
        template = spec.node("template")
        if template is None:
            raise spec.error("template", "a pod template")
        tmeta = template.node("metadata")
        if tmeta is not None:
            labels.update(tmeta.get("labels", Mapping, "a mapping of labels", {}))
            annotations.update(tmeta.get("annotations", Mapping, "a mapping of annotations", {}))
            tmeta.leftover()
        pod = template.node("spec")
        if pod is None:
            raise template.error("spec", "a pod spec")
        template.leftover()
        spec.leftover()
        doc.leftover()
        return _pod(pod, metadata, name, labels, annotations)
    doc.used.add("status")
    doc.leftover()
    return _pod(spec, metadata, name, labels, annotations)


def _pod(spec: _Node, metadata: _Node, name: str, labels: dict[str, str], annotations: dict[str, str]) -> list[_Pending]:
    for key, value in annotations.items():
        if key == m.NETWORKS_ANNOTATION:
            raise KubeImportError(
                f'{spec.where}: metadata.annotations["{key}"]: expected no extra networks (a unit has one network), got {_short(value)}'
            )
    shared: dict[str, dict[str, Any]] = {s: {} for s in SECTION_KEYS}
    restart = spec.get("restartPolicy", str, "Always, OnFailure or Never", "Always")
    if restart not in m.RESTART_FROM_KUBE:
        raise spec.error("restartPolicy", "Always, OnFailure or Never")
    grace = spec.get("terminationGracePeriodSeconds", int, "a number of seconds", m.KUBE_GRACE_SECONDS)
    shared["stop"]["timeout"] = f"{grace}s"
    rootfs = shared["rootfs"]
    host_network = spec.get("hostNetwork", bool, "true or false", False)
    if host_network:
        rootfs["network"] = "host"
    if spec.get("hostUsers", bool, "true or false", True) is False:
        rootfs["userns"] = "auto"
    hostname = spec.get("hostname", str, "a hostname")
    if hostname:
        rootfs["hostname"] = hostname
    hosts = {}
    for alias in spec.nodes("hostAliases"):
        ip = alias.get("ip", str, "an IP address")
        for host in alias.strings("hostnames") or []:
            hosts[host] = ip
        alias.leftover()
    if hosts:
        rootfs["hosts"] = dict(sorted(hosts.items()))
    _dns(spec, rootfs)
    pod_security = _pod_security(spec)
    volumes = _volumes(spec)
    containers = spec.nodes("containers")
    if not containers:
        raise spec.error("containers", "a list of at least one container")
    inits = spec.nodes("initContainers")
    spec.leftover(ignore=("dnsConfig",))
    unmapped = _unmapped_annotations(spec.where, annotations)
    other = sorted(k for k in annotations if not k.startswith(m.ANNOTATION_PREFIX))
    if other:
        spec.warnings.append(f"{spec.where}: metadata.annotations: {', '.join(other)}: {LEFT_OUT}")
    other_labels = sorted(k for k in labels if k not in (m.UNIT_LABEL, m.SLICE_LABEL))
    if other_labels:
        spec.warnings.append(f"{spec.where}: metadata.labels: {', '.join(other_labels)}: {LEFT_OUT}")
    single = len(containers) == 1 and not inits
    if single:
        unit_name = annotations.get(m.UNIT_ANNOTATION, name)
        if not values.valid_unit_name(unit_name):
            field_name = f'metadata.annotations["{m.UNIT_ANNOTATION}"]' if m.UNIT_ANNOTATION in annotations else "metadata.name"
            raise KubeImportError(f"{spec.where}: {field_name}: expected {values.UNIT_NAME_EXPECTED}, got {_short(unit_name)}")
        slice_name = labels.get(m.SLICE_LABEL)
    else:
        slice_name = labels.get(m.SLICE_LABEL) or re.sub(r"-+", "-", re.sub(r"[^a-z0-9_-]", "_", name)).strip("-")
        if not values.valid_slice_name(slice_name):
            raise KubeImportError(f"{spec.where}: metadata.name: expected a name that makes {values.SLICE_NAME_EXPECTED}, got {_short(name)}")
    if slice_name is not None and not values.valid_slice_name(slice_name):
        raise KubeImportError(f'{spec.where}: metadata.labels["{m.SLICE_LABEL}"]: expected {values.SLICE_NAME_EXPECTED}, got {_short(slice_name)}')
    found: list[_Pending] = []
    previous: str | None = None
    for is_init, container in [(True, c) for c in inits] + [(False, c) for c in containers]:
        cname = container.get("name", str, "a container name")
        if not cname:
            raise container.error("name", "a container name")
        unit_name = unit_name if single else f"{name}-{cname}"
        if not values.valid_unit_name(unit_name):
            raise KubeImportError(f"{container.where}: {container.field('name')}: expected a name that makes {values.UNIT_NAME_EXPECTED} (<pod>-<container>), got {_short(unit_name)}")
        sections = {s: dict(v) for s, v in shared.items()}
        sections["restart"]["policy"] = m.RESTART_FROM_KUBE[restart]
        if is_init:
            # an init container runs to its end (again only on a failure), and
            # what comes after it waits for that end
            sections["restart"]["policy"] = "no" if restart == "Never" else "on-failure"
            sections["exec"]["type"] = "oneshot"
        if slice_name is not None:
            sections["unit"]["slice"] = slice_name
        if m.DESCRIPTION_ANNOTATION in annotations:
            sections["unit"]["description"] = str(annotations[m.DESCRIPTION_ANNOTATION])
        if previous is not None:
            sections["unit"]["after"] = [previous]
            sections["unit"]["requires"] = [previous]
        if is_init:
            previous = unit_name
        ports = _container(container, sections, pod_security, volumes)
        found.append(_Pending(unit_name, spec.where, sections, labels, ports, host_network, overrides=unmapped))
    return found


def _unmapped_annotations(where: str, annotations: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """`supd.dev/unmapped-<section>.<key>` annotations: the keys export kept."""
    found: dict[str, dict[str, Any]] = {}
    for key, raw in annotations.items():
        if not key.startswith(m.UNMAPPED_PREFIX):
            continue
        section, _dot, name = key.removeprefix(m.UNMAPPED_PREFIX).partition(".")
        field_name = f'metadata.annotations["{key}"]'
        if name not in SECTION_KEYS.get(section, ()):
            raise KubeImportError(f"{where}: {field_name}: expected {m.UNMAPPED_PREFIX}<section>.<key> naming a unit key")
        try:
            value = json.loads(str(raw))
        except json.JSONDecodeError:
            raise KubeImportError(f"{where}: {field_name}: expected the key's value as JSON, got {_short(raw)}") from None
        found.setdefault(section, {})[name] = value
    return found


def _dns(spec: _Node, rootfs: dict[str, Any]) -> None:
    policy = spec.get("dnsPolicy", str, "a DNS policy", "ClusterFirst")
    config = spec.node("dnsConfig")
    if config is not None:
        servers = config.strings("nameservers")
        if servers:
            rootfs["dns"] = servers
        config.leftover()
    if policy != "None" and policy != "ClusterFirst":
        spec.warn("dnsPolicy", f"{policy}: {LEFT_OUT} (a unit uses the host's resolv.conf unless [rootfs].dns is set)")


def _pod_security(spec: _Node) -> dict[str, Any]:
    security = spec.node("securityContext")
    if security is None:
        return {}
    found = {
        "runAsUser": security.get("runAsUser", int, "a uid"),
        "runAsGroup": security.get("runAsGroup", int, "a gid"),
        "seccompProfile": security.node("seccompProfile"),
    }
    security.leftover()
    return {k: v for k, v in found.items() if v is not None}


@dataclass(frozen=True)
class _Volume:
    kind: str  # "bind" or "tmpfs"
    source: str = ""
    size: int | None = None


def _volumes(spec: _Node) -> dict[str, _Volume]:
    found: dict[str, _Volume] = {}
    for volume in spec.nodes("volumes"):
        name = volume.get("name", str, "a volume name")
        host = volume.node("hostPath")
        empty = volume.node("emptyDir")
        if host is not None:
            path = host.get("path", str, "an absolute path")
            if not path or not path.startswith("/"):
                raise host.error("path", "an absolute path")
            host.used.add("type")
            if host.data.get("type") not in (None, "", "Directory", "File"):
                host.warn("type", f"{host.data['type']}: {LEFT_OUT} (the path must exist when the unit starts)")
            host.leftover()
            found[name] = _Volume("bind", source=path)
        elif empty is not None:
            medium = empty.get("medium", str, "Memory or nothing", "")
            if medium != "Memory":
                empty.warn("medium", "a unit's scratch space is a tmpfs: kept in memory")
            limit = empty.get("sizeLimit", (str, int), "a quantity")
            size = None
            if limit is not None:
                try:
                    size = int(m.parse_quantity(limit))
                except ValueError as exc:
                    raise empty.error("sizeLimit", str(exc)) from None
            empty.leftover()
            found[name] = _Volume("tmpfs", size=size)
        else:
            kinds = [k for k in volume.data if k != "name"]
            what = kinds[0] if kinds else "nothing"
            article = "a CSI" if what in ("csi", "ephemeral") else f"a {what}"
            raise KubeImportError(
                f"{volume.where}: {volume.field(what)}: expected a hostPath or emptyDir volume, got {article} volume "
                "(no unit equivalent: a unit mounts host folders and tmpfs only)"
            )
        volume.leftover()
    return found


def _container(c: _Node, sections: dict[str, dict[str, Any]], pod_security: dict[str, Any], volumes: dict[str, _Volume]) -> list[tuple[int, str, str]]:
    exec_, rootfs = sections["exec"], sections["rootfs"]
    image = c.get("image", str, "an image reference")
    if not image:
        raise c.error("image", "an image reference like nginx:1.25")
    rootfs["image"] = image
    pull = c.get("imagePullPolicy", str, "Always, IfNotPresent or Never")
    if pull is not None:
        if pull not in m.PULL_FROM_KUBE:
            raise c.error("imagePullPolicy", "Always, IfNotPresent or Never")
        rootfs["pull"] = m.PULL_FROM_KUBE[pull]
    command, args = c.strings("command"), c.strings("args")
    if command:
        exec_["entrypoint"] = command if args else []
        exec_["command"] = args if args else command
    elif args:
        exec_["command"] = args
    env = {}
    for item in c.nodes("env"):
        key = item.get("name", str, "a variable name")
        if item.has("valueFrom"):
            item.used.add("valueFrom")
            item.warn("valueFrom", f"{key}: a value from the cluster (secret, field, config map): {LEFT_OUT}")
            continue
        env[key] = item.get("value", str, "a string", "")
        item.leftover()
    if env:
        exec_["environment"] = dict(sorted(env.items()))
    workdir = c.get("workingDir", str, "an absolute path")
    if workdir:
        exec_["working_directory"] = workdir
    ports: list[tuple[int, str, str]] = []
    published: list[str] = []
    for port in c.nodes("ports"):
        number = port.get("containerPort", int, "a port number")
        if number is None:
            raise port.error("containerPort", "a port number")
        protocol = port.get("protocol", str, "TCP, UDP or SCTP", "TCP").lower()
        ports.append((number, protocol, port.get("name", str, "a port name", "")))
        host_port = port.get("hostPort", int, "a port number")
        if host_port:
            host_ip = port.get("hostIP", str, "an IPv4 address", "")
            published.append(f"{host_ip + ':' if host_ip else ''}{host_port}:{number}/{protocol}")
        port.leftover()
    if published:
        rootfs["ports"] = published
    _resources(c, sections["resources"])
    _security(c, exec_, rootfs, pod_security)
    _probes(c, sections)
    _lifecycle(c, sections["stop"])
    _mounts(c, rootfs, volumes)
    c.used.add("name")
    c.leftover(ignore=("terminationMessagePath", "terminationMessagePolicy"))
    return ports


def _resources(c: _Node, resources: dict[str, Any]) -> None:
    node = c.node("resources")
    if node is None:
        return
    for part, memory_key, cpu_key in (("limits", "memory_max", "cpu_quota"), ("requests", "memory_high", "cpu_weight")):
        values_ = node.node(part)
        if values_ is None:
            continue
        for name in ("memory", "cpu"):
            raw = values_.get(name, (str, int, float), "a quantity")
            if raw is None:
                continue
            try:
                if name == "memory":
                    resources[memory_key] = m.size_text(max(1, int(m.parse_quantity(raw))))
                elif part == "limits":
                    resources[cpu_key] = m.percent_from_millicores(max(1, m.millicores(raw)))
                else:
                    resources[cpu_key] = m.weight_from_millicores(m.millicores(raw))
            except ValueError as exc:
                raise values_.error(name, str(exc)) from None
        values_.leftover()
    node.leftover()


def _security(c: _Node, exec_: dict[str, Any], rootfs: dict[str, Any], pod: dict[str, Any]) -> None:
    node = c.node("securityContext")
    uid = gid = None
    profile = pod.get("seccompProfile")
    if node is not None:
        uid = node.get("runAsUser", int, "a uid")
        gid = node.get("runAsGroup", int, "a gid")
        caps = node.node("capabilities")
        if caps is not None:
            for key, unit_key in (("add", "cap_add"), ("drop", "cap_drop")):
                names = caps.strings(key)
                if names:
                    exec_[unit_key] = names
            caps.leftover()
        if node.get("readOnlyRootFilesystem", bool, "true or false", False):
            rootfs["writable"] = "readonly"
        profile = node.node("seccompProfile") or profile
        node.leftover()
    uid = uid if uid is not None else pod.get("runAsUser")
    gid = gid if gid is not None else pod.get("runAsGroup")
    if uid is not None:
        exec_["user"] = f"{uid}:{gid}" if gid is not None else str(uid)
    elif gid is not None:
        c.warn("securityContext.runAsGroup", "without runAsUser: the image's user keeps its own group; left out")
    rootfs.setdefault("writable", "ephemeral")  # a container's root in Kubernetes
    if profile is not None:
        kind = profile.get("type", str, "RuntimeDefault, Unconfined or Localhost")
        profile.used.add("localhostProfile")
        if kind == "Unconfined":
            exec_["seccomp"] = "unconfined"
        elif kind == "Localhost":
            profile.warn("type", "a profile on the node: its path there is not known here; supd's default profile applies")
        elif kind != "RuntimeDefault":
            raise profile.error("type", "RuntimeDefault, Unconfined or Localhost")
        profile.leftover()


def _probes(c: _Node, sections: dict[str, dict[str, Any]]) -> None:
    liveness, readiness = c.node("livenessProbe"), c.node("readinessProbe")
    startup = c.node("startupProbe")
    if startup is not None:
        c.warn("startupProbe", f"{LEFT_OUT} ([health].start_period is the grace before checks count)")
    chosen, action = (liveness, "restart") if liveness is not None else (readiness, "none")
    if liveness is not None and readiness is not None:
        c.warn("readinessProbe", f"a unit has one health check, the livenessProbe: {LEFT_OUT}")
    if chosen is None:
        return
    run = chosen.node("exec")
    if run is None:
        kinds = [k for k in ("httpGet", "tcpSocket", "grpc") if chosen.has(k)] or ["nothing"]
        chosen.warn(kinds[0], "a unit's health check runs a command: no [health] for this probe")
        chosen.used.update(("httpGet", "tcpSocket", "grpc", "periodSeconds", "timeoutSeconds", "failureThreshold", "initialDelaySeconds", "successThreshold"))
        chosen.leftover()
        return
    command = run.strings("command")
    if not command:
        raise run.error("command", "a command to run")
    run.leftover()
    health = sections["health"]
    health["command"] = command
    health["interval"] = f"{chosen.get('periodSeconds', int, 'seconds', m.KUBE_PERIOD_SECONDS)}s"
    health["timeout"] = f"{chosen.get('timeoutSeconds', int, 'seconds', m.KUBE_TIMEOUT_SECONDS)}s"
    health["retries"] = chosen.get("failureThreshold", int, "a count", m.KUBE_FAILURE_THRESHOLD)
    delay = chosen.get("initialDelaySeconds", int, "seconds", 0)
    if delay:
        health["start_period"] = f"{delay}s"
    health["on_failure"] = action
    if chosen.get("successThreshold", int, "a count", 1) != 1:
        chosen.warn("successThreshold", f"a unit is healthy after one success: {LEFT_OUT}")
    chosen.leftover()


def _lifecycle(c: _Node, stop: dict[str, Any]) -> None:
    node = c.node("lifecycle")
    if node is None:
        return
    pre = node.node("preStop")
    if pre is not None:
        run = pre.node("exec")
        command = run.strings("command") if run is not None else None
        match = m.PRESTOP_KILL_RE.fullmatch(command[2]) if command and len(command) == 3 and command[:2] == ["/bin/sh", "-c"] else None
        signal_number = None
        if match is not None:
            try:
                signal_number = values.parse_signal(int(match.group(1)) if match.group(1).isdigit() else match.group(1))
            except ValueError:
                signal_number = None
        if signal_number is not None:
            stop["signal"] = m.signal_word(signal_number)
            if run is not None:
                run.leftover()
            pre.leftover()
        else:
            node.warn("preStop", f"only a hook that sends a signal (kill -SIG 1) becomes [stop].signal: {LEFT_OUT}")
    node.leftover(ignore=("preStop",))


def _mounts(c: _Node, rootfs: dict[str, Any], volumes: dict[str, _Volume]) -> None:
    binds: list[dict[str, Any]] = []
    tmpfs: list[str] = []
    for mount in c.nodes("volumeMounts"):
        name = mount.get("name", str, "a volume name")
        target = mount.get("mountPath", str, "an absolute path")
        volume = volumes.get(name)
        if volume is None:
            raise mount.error("name", f"the name of a volume in spec.volumes ({', '.join(sorted(volumes)) or 'none'})")
        readonly = mount.get("readOnly", bool, "true or false", False)
        if volume.kind == "bind":
            bind: dict[str, Any] = {"source": volume.source, "target": target}
            if readonly:
                bind["readonly"] = True
            binds.append(bind)
        else:
            options = [f"size={m.size_text(volume.size)}"] if volume.size else []
            if readonly:
                options.append("ro")
            tmpfs.append(target + (":" + ",".join(options) if options else ""))
        mount.leftover()
    if binds:
        rootfs["binds"] = binds
    if tmpfs:
        rootfs["tmpfs"] = tmpfs


def _service(doc: _Node, pending: list[_Pending]) -> None:
    spec = doc.node("spec")
    if spec is None:
        raise doc.error("spec", "a Service spec")
    selector = spec.get("selector", Mapping, "a mapping of labels", {})
    targets = [p for p in pending if selector and all(p.labels.get(k) == v for k, v in selector.items())]
    if not targets:
        doc.warn("spec.selector", f"selects none of the pods here: {LEFT_OUT}")
        spec.used.update(spec.data)
    for port in spec.nodes("ports"):
        number = port.get("port", int, "a port number")
        if number is None:
            raise port.error("port", "a port number")
        target = port.get("targetPort", (int, str), "a port number or name", number)
        protocol = port.get("protocol", str, "TCP, UDP or SCTP", "TCP").lower()
        port.used.add("name")
        for p in targets:
            found = [cp for cp, proto, pname in p.container_ports if proto == protocol and (cp == target or pname == target)]
            if not found and isinstance(target, int):
                found = [target]
            if not found:
                port.warn("targetPort", f"{target}: no such port in {p.name}: {LEFT_OUT}")
                continue
            if p.host_network:
                continue
            p.sections["rootfs"].setdefault("ports", []).append(f"{number}:{found[0]}/{protocol}")
            p.published.add(found[0])
        port.leftover()
    spec.used.add("type")
    if spec.data.get("type") not in (None, "ClusterIP"):
        spec.warn("type", f"{spec.data['type']}: the ports are published on this host")
    spec.leftover()
    metadata = doc.node("metadata")
    if metadata is not None:
        metadata.used.update(metadata.data)
    doc.leftover()


def write_units(units: tuple[ImportedUnit, ...], units_dir: Path) -> list[Path]:
    """Write every unit file, or none: a name already there is an error before
    anything is written; each file is written to a dotfile (which supd ignores)
    and renamed into place once all are written."""
    targets = [units_dir / f"{u.name}.toml" for u in units]
    if not units_dir.is_dir():
        raise KubeImportError(f"{units_dir}: expected a units folder, got {'nothing' if not units_dir.exists() else 'no directory'}")
    for target in targets:
        if os.path.lexists(target):
            raise KubeImportError(f"{target}: exists already; remove it or import into another folder (--units DIR)")
    temps: list[Path] = []
    renamed: list[Path] = []
    try:
        for unit, target in zip(units, targets):
            temp = units_dir / f".{target.name}.import-{os.getpid()}"
            temps.append(temp)
            with open(temp, "x", encoding="utf-8") as f:
                f.write(unit.text)
                f.flush()
                os.fsync(f.fileno())
        for temp, target in zip(temps, targets):
            os.rename(temp, target)
            renamed.append(target)
    except OSError as exc:
        for path in temps + renamed:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        raise KubeImportError(f"{units_dir}: writing the unit files failed, none written: {exc.strerror or exc}") from None
    return targets
