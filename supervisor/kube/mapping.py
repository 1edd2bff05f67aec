"""What export and import share: annotation names, value conversions between
unit values and Kubernetes quantities, and unit values written back as TOML
values. Pure; the table itself is docs/kubernetes.md.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import Final

from supervisor.units import values
from supervisor.units.model import TmpfsSpec

ANNOTATION_PREFIX: Final = "supd.dev/"
UNIT_ANNOTATION: Final = "supd.dev/unit"  # the unit's name (a Kubernetes name may differ)
DESCRIPTION_ANNOTATION: Final = "supd.dev/description"
# "supd.dev/unmapped-<section>.<key>": the key's value, JSON as in the unit
# file, for keys Kubernetes has no field for; import puts it back
UNMAPPED_PREFIX: Final = "supd.dev/unmapped-"
UNIT_LABEL: Final = "supd.dev/unit"
SLICE_LABEL: Final = "supd.dev/slice"
MAX_LABEL_VALUE: Final = 63
# Multus' annotation for extra networks: a unit has exactly one network
NETWORKS_ANNOTATION: Final = "k8s.v1.cni.cncf.io/networks"

# cpu_weight → requests.cpu: proportional, 10 millicores per weight point, so
# systemd's default weight 100 asks for one CPU (1000m) and the range 1..10000
# is 10m..100 CPUs. Import divides by the same figure.
MILLICPU_PER_WEIGHT: Final = 10
WEIGHT_RANGE: Final = (1, 10000)

RESTART_TO_KUBE: Final = {"always": "Always", "on-failure": "OnFailure", "on-abnormal": "OnFailure", "no": "Never"}
RESTART_FROM_KUBE: Final = {"Always": "always", "OnFailure": "on-failure", "Never": "no"}
PULL_TO_KUBE: Final = {"missing": "IfNotPresent", "always": "Always", "never": "Never"}
PULL_FROM_KUBE: Final = {v: k for k, v in PULL_TO_KUBE.items()}

# Kubernetes' defaults for what a manifest leaves out (import reads a manifest
# as Kubernetes would run it)
KUBE_PERIOD_SECONDS: Final = 10
KUBE_TIMEOUT_SECONDS: Final = 1
KUBE_FAILURE_THRESHOLD: Final = 3
KUBE_GRACE_SECONDS: Final = 30

# DNS-1123 label: container, port and volume names, hostnames
DNS_LABEL_RE: Final = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
PRESTOP_KILL_RE: Final = re.compile(r"kill -([A-Za-z0-9+]+) 1")

_BINARY: Final = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL: Final = {"m": Decimal("0.001"), "": Decimal(1), "k": Decimal(10**3), "M": Decimal(10**6),
                   "G": Decimal(10**9), "T": Decimal(10**12), "P": Decimal(10**15), "E": Decimal(10**18)}  # fmt: skip
_QUANTITY_RE: Final = re.compile(r"([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|[mkMGTPE]|[eE][+-]?[0-9]+)?")


def kube_name(unit_name: str) -> str:
    """A unit name as a DNS-1123 label (Pod, container and Service names):
    "_" and "." become "-". The unit's own name stays in an annotation."""
    name = re.sub(r"[_.]", "-", unit_name)[:63].strip("-")
    return name or "unit"


def parse_quantity(value: object) -> Decimal:
    """A Kubernetes quantity ("64Mi", "500m", "1.5", 2) as a number; ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("a quantity like \"64Mi\", \"500m\" or \"2\"")
    text = str(value).strip()
    match = _QUANTITY_RE.fullmatch(text)
    if match is None:
        raise ValueError("a quantity like \"64Mi\", \"500m\" or \"2\"")
    number, suffix = Decimal(match.group(1)), match.group(2) or ""
    try:
        if suffix in _BINARY:
            result = number * _BINARY[suffix]
        elif suffix in _DECIMAL:
            result = number * _DECIMAL[suffix]
        else:
            result = number * Decimal(10) ** int(suffix[1:])
    except (InvalidOperation, ValueError):
        raise ValueError("a quantity like \"64Mi\", \"500m\" or \"2\"") from None
    if result < 0:
        raise ValueError("a quantity not below 0")
    return result


def memory_quantity(size: int) -> str:
    """Bytes in the largest binary unit that divides them: 67108864 → "64Mi"."""
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        unit = _BINARY[suffix]
        if size >= unit and size % unit == 0:
            return f"{size // unit}{suffix}"
    return str(size)


def size_text(size: int) -> str | int:
    """Bytes as a unit file writes a size: 134217728 → "128M" (base 1024, as
    units/values.py reads it); bytes as a number when no unit divides them."""
    for suffix, unit in (("T", 2**40), ("G", 2**30), ("M", 2**20), ("K", 2**10)):
        if size >= unit and size % unit == 0:
            return f"{size // unit}{suffix}"
    return size


def cpu_quota_quantity(quota: float) -> str:
    """A fraction of one CPU as millicores: 0.5 → "500m" (at least 1m)."""
    return f"{max(1, round(quota * 1000))}m"


def cpu_weight_quantity(weight: int) -> str:
    return f"{weight * MILLICPU_PER_WEIGHT}m"


def millicores(value: object) -> int:
    return int((parse_quantity(value) * 1000).to_integral_value())


def weight_from_millicores(milli: int) -> int:
    low, high = WEIGHT_RANGE
    return min(high, max(low, round(milli / MILLICPU_PER_WEIGHT)))


def percent_from_millicores(milli: int) -> str:
    """500 → "50%" ([resources].cpu_quota's syntax)."""
    text = f"{Decimal(milli) / 10:f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text + "%"


def whole_seconds(seconds: float) -> int:
    """Probe and grace fields are whole seconds, at least 1: rounded up."""
    return max(1, math.ceil(seconds - 1e-9))


def duration_text(seconds: float) -> str:
    """Seconds as a unit-file duration: 10.0 → "10s", 0.1 → "100ms"."""
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    ms = seconds * 1000
    if abs(ms - round(ms)) < 1e-6:
        return f"{round(ms)}ms"
    return f"{round(seconds * 1_000_000)}us"


def signal_word(number: int) -> str:
    """What `kill -WORD` and a unit file both accept: "HUP", "RTMIN+3" or "77"."""
    name = values.signal_name(number)
    return name.removeprefix("SIG") if not name.startswith("signal ") else str(number)


def tmpfs_text(spec: TmpfsSpec) -> str:
    """A TmpfsSpec in `[rootfs].tmpfs` syntax (parse_tmpfs reads it back)."""
    options = [f"mode={spec.mode:o}"]
    if spec.size is not None:
        options.append(f"size={spec.size}")
    flags = {"nosuid": "suid", "nodev": "dev", "noexec": "exec"}
    options += [word if word in spec.options else opposite for word, opposite in flags.items()]
    if "ro" in spec.options:
        options.append("ro")
    return f"{spec.target}:{','.join(options)}"
