"""Kubernetes manifests checked with kubernetes-validate (the Kubernetes
OpenAPI schemas, PyPI) against the two newest versions it ships, strict:
a field Kubernetes does not know is an error."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from kubernetes_validate import utils

# The schemas are megabytes of JSON that validate() reads again on every
# call; reading each file once keeps hundreds of checks to seconds. The check
# itself is the library's, unchanged.
utils.schema_contents = functools.lru_cache(maxsize=None)(utils.schema_contents)


def newest_versions(count: int = 2) -> list[str]:
    versions = sorted(set(utils.all_versions()), key=lambda v: tuple(int(x) for x in v.split(".")))
    return versions[-count:]


KUBE_VERSIONS = newest_versions()


def validate(documents: Iterable[dict[str, Any]]) -> None:
    """Raises kubernetes_validate's ValidationError for the first bad document."""
    for document in documents:
        for version in KUBE_VERSIONS:
            utils.validate(document, version, strict=True)
