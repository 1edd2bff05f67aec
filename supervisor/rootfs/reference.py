"""Docker image references, parsed and normalised (pure).

`registry[:port]/path[:tag][@digest]`, with docker's rules: a first path
part is a registry only if it has a "." or a ":" or is "localhost";
otherwise the registry is docker.io, and a one-part name there gets
"library/"; no tag and no digest means ":latest". Repository paths are
lowercase. A digest is "algorithm:hex" and sha256 must have 64 hex digits.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

DEFAULT_REGISTRY = "docker.io"
LEGACY_REGISTRIES = ("index.docker.io", "registry-1.docker.io")
DEFAULT_TAG = "latest"
MAX_NAME_LENGTH = 255

_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_HOST = re.compile(r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*")
_DIGEST = re.compile(r"([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-fA-F0-9]+)")


class ReferenceError(ValueError):
    """A reference that does not parse; the message names it and the cause."""

    def __init__(self, reference: str, cause: str) -> None:
        self.reference = reference
        self.cause = cause
        super().__init__(f'image reference "{reference}": {cause}')


@dataclass(frozen=True)
class Reference:
    registry: str  # "docker.io", "127.0.0.1:5000", "[::1]:5000"
    repository: str  # "library/busybox"
    tag: str | None  # None only when pinned by digest without a tag
    digest: str | None  # "sha256:<64 hex>"

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        tag = f":{self.tag}" if self.tag else ""
        digest = f"@{self.digest}" if self.digest else ""
        return f"{self.name}{tag}{digest}"

    @property
    def pull_form(self) -> str:
        """What to fetch: a digest wins over a tag, as in docker (and skopeo
        takes no reference with both)."""
        return f"{self.name}@{self.digest}" if self.digest else str(self)

    @property
    def host(self) -> str:
        """The registry without its port ("[::1]" → "::1")."""
        if self.registry.startswith("["):
            return self.registry[1 : self.registry.index("]")]
        return self.registry.rsplit(":", 1)[0]

    def is_local(self) -> bool:
        """localhost or a loopback address: reached without TLS, as docker does."""
        host = self.host
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False


def _split_registry(name: str) -> tuple[str, str]:
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        return first, rest
    return DEFAULT_REGISTRY, name


def _check_registry(reference: str, registry: str) -> str:
    host, port = registry, ""
    if registry.startswith("["):
        end = registry.find("]")
        if end < 0:
            raise ReferenceError(reference, f'registry "{registry}": an IPv6 address needs a closing "]"')
        try:
            ipaddress.IPv6Address(registry[1:end])
        except ValueError:
            raise ReferenceError(reference, f'registry "{registry}": not an IPv6 address') from None
        rest = registry[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ReferenceError(reference, f'registry "{registry}": expected ":PORT" after "]"')
        port = rest[1:] if rest else ""
        if rest and not port:
            raise ReferenceError(reference, f'registry "{registry}": expected a port number after ":"')
    else:
        host, colon, port = registry.partition(":")
        if colon and not port:
            raise ReferenceError(reference, f'registry "{registry}": expected a port number after ":"')
        if not _HOST.fullmatch(host):
            raise ReferenceError(reference, f'registry "{registry}": not a host name')
    if port and (not port.isdigit() or not 0 < int(port) < 65536):
        raise ReferenceError(reference, f'registry "{registry}": port must be a number 1..65535')
    if registry in LEGACY_REGISTRIES:
        return DEFAULT_REGISTRY
    return registry


def _check_digest(reference: str, digest: str) -> str:
    m = _DIGEST.fullmatch(digest)
    if not m:
        raise ReferenceError(reference, f'digest "{digest}": expected "sha256:<64 hex digits>"')
    algorithm, hexdigest = m.groups()
    if algorithm == "sha256" and len(hexdigest) != 64:
        raise ReferenceError(reference, f'digest "{digest}": a sha256 digest has 64 hex digits, not {len(hexdigest)}')
    if algorithm == "sha512" and len(hexdigest) != 128:
        raise ReferenceError(reference, f'digest "{digest}": a sha512 digest has 128 hex digits, not {len(hexdigest)}')
    if algorithm not in ("sha256", "sha512"):
        raise ReferenceError(reference, f'digest "{digest}": unsupported algorithm "{algorithm}" (expected sha256)')
    return f"{algorithm}:{hexdigest.lower()}"


def parse_reference(reference: str) -> Reference:
    """Parse and normalise a docker reference: "busybox" →
    docker.io/library/busybox:latest. Raises ReferenceError."""
    if not isinstance(reference, str) or not reference:
        raise ReferenceError(str(reference), "expected a non-empty reference like busybox:1.36")
    if reference != reference.strip() or any(c.isspace() for c in reference):
        raise ReferenceError(reference, "contains white space")
    if "://" in reference:
        raise ReferenceError(reference, 'a transport prefix ("docker://") is not part of a reference')
    rest, at, digest = reference.partition("@")
    if at and not digest:
        raise ReferenceError(reference, 'expected a digest after "@"')
    registry, path = _split_registry(rest)
    tag: str | None = None
    head, colon, tail = path.rpartition(":")
    if colon:
        if not _TAG.fullmatch(tail):
            raise ReferenceError(reference, f'tag "{tail}": expected up to 128 letters, digits, "_", "." or "-", not starting with "." or "-"')
        path, tag = head, tail
    if not path:
        raise ReferenceError(reference, "expected a repository name")
    if path != path.lower():
        raise ReferenceError(reference, f'repository "{path}" must be lowercase')
    for component in path.split("/"):
        if not _PATH_COMPONENT.fullmatch(component):
            raise ReferenceError(
                reference,
                f'repository "{path}": part "{component}" must be lowercase letters and digits, separated by ".", "_", "__" or "-"',
            )
    registry = _check_registry(reference, registry)
    if registry == DEFAULT_REGISTRY and "/" not in path:
        path = f"library/{path}"
    if len(f"{registry}/{path}") > MAX_NAME_LENGTH:
        raise ReferenceError(reference, f"the name is longer than {MAX_NAME_LENGTH} characters")
    checked_digest = _check_digest(reference, digest) if at else None
    if tag is None and checked_digest is None:
        tag = DEFAULT_TAG
    return Reference(registry=registry, repository=path, tag=tag, digest=checked_digest)
