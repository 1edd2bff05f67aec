"""What supd attached to a CNI network, written down before the plugins run:
`state_dir/networks/<unit>.json`. A record outlives supd (a kill -9, a
reboot), so the next supd can run DEL for whatever has no running unit, with
the very configuration ADD used (the conflist may have changed or gone).

A record is written before ADD (the plugins may have done part of their work
when supd dies) and again with ADD's result; it is removed after DEL."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import structlog

from supervisor.network.conflist import NetworkConfig

log = structlog.get_logger()

FOLDER = "networks"


@dataclass(frozen=True)
class AttachmentRecord:
    unit: str
    network: str
    cni_version: str
    plugins: tuple[str, ...]  # the plugin configurations ADD ran with
    container_id: str
    netns: str  # the pinned namespace
    ifname: str
    runtime_config: dict[str, Any]
    result: dict[str, Any] | None = None  # ADD's result, once it succeeded

    def network_config(self) -> NetworkConfig:
        return NetworkConfig(self.network, self.cni_version, Path(f"<record of {self.unit}>"), self.plugins)

    def with_result(self, result: dict[str, Any]) -> AttachmentRecord:
        return replace(self, result=result)


class AttachmentStore:
    def __init__(self, state_dir: Path) -> None:
        self.folder = state_dir / FOLDER

    def path_for(self, unit: str) -> Path:
        return self.folder / f"{unit}.json"

    def save(self, record: AttachmentRecord) -> None:
        """Atomically, and durably: a record lost to a power cut would leave
        an address reserved in host-local's store (which is on disk) forever."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        payload = json.dumps(asdict(record), sort_keys=True)
        fd, temp = tempfile.mkstemp(dir=self.folder, prefix=f".{record.unit}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp, self.path_for(record.unit))
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise

    def load(self, unit: str) -> AttachmentRecord | None:
        path = self.path_for(unit)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            data["plugins"] = tuple(data["plugins"])
            return AttachmentRecord(**data)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError) as e:
            log.warning("network_record_unreadable", unit=unit, path=str(path), error=str(e))
            aside = path.with_name(path.name + ".corrupt")
            os.replace(path, aside)
            return None

    def remove(self, unit: str) -> None:
        self.path_for(unit).unlink(missing_ok=True)

    def units(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        for temp in self.folder.glob(".*.tmp"):
            temp.unlink(missing_ok=True)
        return sorted(p.name.removesuffix(".json") for p in self.folder.glob("*.json"))
