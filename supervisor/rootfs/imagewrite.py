"""What `supctl image push` writes besides the layers: the image config a unit
stands for, and the config, manifest and index JSON of an OCI layout. Pure.

The config is the inverse of `units.imageconfig.effective_unit`: pulled back
and run by a unit with no `[exec]`, `[stop].signal` or `[health]`, the image
gives the same command, environment, user, working directory, stop signal and
health check. docker's split of the command is kept: the unit's (or its
image's) entrypoint is Entrypoint, its command Cmd. `[health].on_failure` has
no place in docker's Healthcheck (docker only reports) and is not carried.

Every JSON document is written with sorted keys and no spaces, so the same
inputs give the same bytes, and so the same digests.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from supervisor.rootfs.oci import (
    INDEX_FILE,
    MEDIA_LAYER_GZIP,
    MEDIA_OCI_INDEX,
    MEDIA_OCI_MANIFEST,
    REF_NAME_ANNOTATION,
    Healthcheck,
    ImageConfig,
)
from supervisor.units import values
from supervisor.units.imageconfig import NS_PER_SECOND, merge_environment
from supervisor.units.model import HealthSpec, Unit

MEDIA_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYOUT_JSON = b'{"imageLayoutVersion":"1.0.0"}'

__all__ = ["INDEX_FILE", "Blob", "config_for_unit", "config_json", "manifest_json", "index_json", "rfc3339"]


@dataclass(frozen=True)
class Blob:
    """A descriptor's three facts."""

    media_type: str
    digest: str
    size: int

    @classmethod
    def of(cls, media_type: str, data: bytes) -> Blob:
        return cls(media_type, "sha256:" + hashlib.sha256(data).hexdigest(), len(data))

    def to_json(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def config_for_unit(unit: Unit, base: ImageConfig | None = None) -> ImageConfig:
    """The image config that gives a unit with no `[exec]` what `unit` runs
    (`base`: the config of the image the unit runs on, if any)."""
    config = base or ImageConfig()
    spec = unit.exec
    entrypoint = spec.entrypoint if spec.entrypoint is not None else config.entrypoint
    if spec.command:
        cmd = spec.command
    elif spec.entrypoint is not None:
        cmd = ()  # docker run --entrypoint drops the image's Cmd, and so does a unit
    else:
        cmd = config.cmd
    env = tuple(f"{key}={value}" for key, value in merge_environment(config.env, spec.environment))
    user = spec.user if spec.user is not None else config.user
    working_dir = spec.working_directory or config.working_dir
    stop_signal = values.signal_name(unit.stop.signal) if unit.stop.signal is not None else config.stop_signal
    healthcheck = healthcheck_for(unit.health) if unit.health is not None else config.healthcheck
    return ImageConfig(
        env=env,
        cmd=tuple(cmd),
        entrypoint=tuple(entrypoint),
        working_dir=working_dir,
        user=user or "",
        stop_signal=stop_signal,
        healthcheck=healthcheck,
    )


def healthcheck_for(health: HealthSpec) -> Healthcheck:
    """A `[health]` section as docker's Healthcheck (exec form, durations in ns)."""

    def ns(seconds: float) -> int:
        return round(seconds * NS_PER_SECOND)

    return Healthcheck(
        test=("CMD", *health.command),
        interval_ns=ns(health.interval),
        timeout_ns=ns(health.timeout),
        start_period_ns=ns(health.start_period),
        retries=health.retries,
    )


def rfc3339(epoch_seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_seconds))


def _config_section(config: ImageConfig) -> dict[str, Any]:
    """docker's config object, with only the keys that say something."""
    section: dict[str, Any] = {}
    if config.env:
        section["Env"] = list(config.env)
    if config.entrypoint:
        section["Entrypoint"] = list(config.entrypoint)
    if config.cmd:
        section["Cmd"] = list(config.cmd)
    if config.working_dir:
        section["WorkingDir"] = config.working_dir
    if config.user:
        section["User"] = config.user
    if config.stop_signal:
        section["StopSignal"] = config.stop_signal
    if config.healthcheck is not None:
        section["Healthcheck"] = config.healthcheck.to_json()
    return section


def config_json(
    config: ImageConfig, diff_ids: Sequence[str], created: str | None, architecture: str, os_name: str = "linux"
) -> bytes:
    """The OCI image config. `created` must come from the content (never the
    clock), or be None, for the digest to stay the same push after push."""
    doc: dict[str, Any] = {
        "architecture": architecture,
        "os": os_name,
        "config": _config_section(config),
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
    }
    if created is not None:
        doc["created"] = created
    return _canonical(doc)


def manifest_json(config: Blob, layers: Sequence[Blob]) -> bytes:
    return _canonical(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_OCI_MANIFEST,
            "config": config.to_json(),
            "layers": [layer.to_json() for layer in layers],
        }
    )


def index_json(manifest: Blob, tag: str) -> bytes:
    entry = {**manifest.to_json(), "annotations": {REF_NAME_ANNOTATION: tag}}
    return _canonical({"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": [entry]})


def layer_blob(digest: str, size: int) -> Blob:
    return Blob(MEDIA_LAYER_GZIP, digest, size)


def config_blob(data: bytes) -> Blob:
    return Blob.of(MEDIA_OCI_CONFIG, data)


def manifest_blob(data: bytes) -> Blob:
    return Blob.of(MEDIA_OCI_MANIFEST, data)
